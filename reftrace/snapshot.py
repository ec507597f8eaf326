"""``snapshot()``: a heap snapshot to explore interactively.

A snapshot is taken right after full collections. For every type it
records how many gc-tracked objects there are and their shallow size
(``sys.getsizeof``; the basic size for a type whose ``__sizeof__`` is user
code), and the bytes ``tracemalloc`` traces when it is running. It keeps no
reference to any object: beside the counts it keeps each object's address
(8 bytes per object, in an array), so a later diff can tell the objects made
since from those already there.

Everything else is looked up live, when asked: ``objects()`` lists the
instances of a type alive now, ``referrers()`` names what refers to an
object, ``path()`` finds the shortest chain of references from a root (the
search behind every leak trace). ``later - earlier`` is a ``SnapshotDiff``:
which types grew, and ``new_objects()`` hands out the objects of those types
made between the two snapshots that are still alive.

reftrace's own objects are never counted: instances of its classes (these
snapshots, the lists they hand out), the containers those keep in their
attributes, and its functions and frames.

Hand-offs to other heap tools, one call each, imported only when used
(``pip install reftrace[tools]``): :func:`to_guppy` (a guppy3
``IdentitySet``), :func:`to_pympler` (a pympler summary), :func:`asizeof`
(pympler's deep size) and :func:`show_backrefs` (objgraph's graph of
referrers, laid out by reftrace's Graphviz).

Example::

    import reftrace

    class Entry:
        pass

    before = reftrace.snapshot()
    CACHE = [Entry() for _ in range(1000)]
    diff = reftrace.snapshot() - before
    print(diff.grown(1)[0].count)        # 1000 (the type: __main__.Entry)
    entry = diff.new_objects(Entry)[0]
    print(diff.path(entry).expression)   # CACHE[0]
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import time
import tracemalloc
import types
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import compress
from typing import TYPE_CHECKING, Any, NamedTuple, SupportsIndex, overload

from reftrace import labels, views
from reftrace.analysis import make_path
from reftrace.capture import ANALYSIS_LOCK
from reftrace.census import count_types, display_type, type_key
from reftrace.heap import HeapView
from reftrace.memory import interpreter_frozen
from reftrace.model import EdgeKind
from reftrace.objects import (
    BUILTIN_DESCRIPTORS,
    class_attribute,
    class_module,
    is_own,
    is_own_module,
    referents,
    safe_sizeof,
    type_name,
)
from reftrace.paths import DEFAULT_MAX_DEPTH, Found, NotFound, shortest_paths
from reftrace.redact import clean
from reftrace.report import Path
from reftrace.tools import asizeof, show_backrefs, to_guppy, to_pympler
from reftrace.units import human_size, signed_size

#: Rows ``str()`` shows: the largest types of a snapshot, the most grown of a diff.
SHOWN_ROWS = 20
#: At most this many referrers are labelled unless ``referrers(limit=...)`` says otherwise.
REFERRER_LIMIT = 100

#: Collections a snapshot runs at most, until one finds no garbage.
_MAX_COLLECTS = 3
#: Longest shown form of a name in a repr.
_REPR_LIMIT = 80

#: Containers reftrace's objects keep their data in: left out of every count.
_CONTAINERS = frozenset({dict, list, tuple, set, frozenset, deque, array})
#: Before 3.11 an instance's attributes sit in its ``__dict__``, one level down.
_ATTRIBUTE_DICTS = sys.version_info < (3, 11)
#: Objects that belong to reftrace when their code is reftrace's.
_CODE_TYPES = frozenset(
    {
        types.FunctionType,
        types.MethodType,
        types.FrameType,
        types.GeneratorType,
        types.CoroutineType,
        types.AsyncGeneratorType,
    }
)

# Counter(iterable) asks isinstance(iterable, Mapping); the ABC caches that
# answer it for zip and map fill once, here, and never between two snapshots.
Counter(zip((), ()))
Counter(map(type, ()))

#: How the suspect reference is worded: here it was made after the snapshot.


# -- data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeStats:
    """One type in a snapshot: its name, how many objects, their shallow bytes.

    Unpacks as ``name, count, size``.
    """

    name: str
    count: int
    size: int

    def __iter__(self) -> Iterator[Any]:
        return iter((self.name, self.count, self.size))


@dataclass(frozen=True, slots=True)
class TypeChange:
    """How one type changed between two snapshots: ``count`` and ``size`` are
    the differences (later minus earlier). Unpacks as ``name, count, size``."""

    name: str
    count: int
    size: int
    count_before: int
    size_before: int

    @property
    def count_after(self) -> int:
        """The type's object count in the later snapshot."""
        return self.count_before + self.count

    @property
    def size_after(self) -> int:
        """The type's total shallow size in the later snapshot."""
        return self.size_before + self.size

    def __iter__(self) -> Iterator[Any]:
        return iter((self.name, self.count, self.size))


class Referrer(NamedTuple):
    """Something that refers to an object: ``label`` says how, as code reads
    (``planted.ITEMS``, ``[3]``, ``.cache``, ``local 'x' in f (app.py:9)``).

    ``holder`` is the referring object itself (a module global's holder is
    the module's ``__dict__``), or None for a local variable of a running
    function: frames are not handed out.
    """

    label: str
    kind: EdgeKind
    holder: Any

    def __repr__(self) -> str:
        # Never the holder's own repr: user code, and often huge.
        held = self.holder
        holder = "None" if held is None else f"<{clean(type_name(held), _REPR_LIMIT)}>"
        return f"Referrer(label={self.label!r}, kind={self.kind!r}, holder={holder})"


class ObjectPath(views.Shown):
    """The answer of ``path()``: the shortest chain of references from a root
    to an object, or why there is none.

    ``path`` is a ``reftrace.Path`` (``path.expression``, ``path.steps``) or
    None; then ``reason`` says why, and ``garbage`` is True when nothing but
    a reference cycle (or the code asking) holds the object. Each step is
    ``old`` when its object was alive at the snapshot and ``new`` when it was
    made since; the reference from the last old object to the first new one
    is marked as the suspect, as in a leak trace.
    """

    __slots__ = ("type_name", "path", "reason", "garbage")

    def __init__(self, type_name: str, path: Path | None, reason: str = "", garbage: bool = False):
        self.type_name = type_name
        self.path = path
        self.reason = reason
        self.garbage = garbage

    @property
    def expression(self) -> str:
        """The path as one Python expression (``ITEMS[3].cache``); "" without a path."""
        return self.path.expression if self.path is not None else ""

    def __repr__(self) -> str:
        if self.path is None:
            return f"<ObjectPath to {clean(self.type_name, _REPR_LIMIT)}: none>"
        return f"<ObjectPath to {clean(self.type_name, _REPR_LIMIT)}: {len(self.path.steps)} steps>"

    def to_html(self, *, mask: bool | None = None, graph: bool = True) -> str:
        """The path as an HTML table, with its drawing inline (SVG) when ``graph``."""
        return views.html(self, mask=mask, graph=graph)


class ObjectList(list[Any]):
    """Objects handed out by a snapshot: a plain list, plus the hand-offs.

    It holds its objects (drop it when done). It is reftrace's own list:
    snapshots do not count it and paths never go through it, so holding
    one does not change what holds its objects.
    """

    __slots__ = ("label",)

    def __init__(self, items: Iterable[Any] = (), label: str = "") -> None:
        super().__init__(items)
        self.label = label

    if TYPE_CHECKING:
        # For type checkers only: at run time, typing.overload keeps every
        # overload in a registry for good, and with it this module's globals,
        # which a process reftrace attached to must not keep.

        @overload
        def __getitem__(self, index: SupportsIndex) -> Any: ...

        @overload
        def __getitem__(self, index: slice) -> ObjectList: ...

        def __getitem__(self, index: SupportsIndex | slice) -> Any: ...

    else:

        def __getitem__(self, index):
            if isinstance(index, slice):  # a part keeps the hand-offs
                return ObjectList(list.__getitem__(self, index), self.label)
            return list.__getitem__(self, index)

    def __repr__(self) -> str:
        what = f" of {clean(self.label, _REPR_LIMIT)}" if self.label else ""
        return f"<ObjectList: {len(self):,} objects{what}>"

    @property
    def types(self) -> list[TypeStats]:
        """The objects by type, largest total shallow size first."""
        counts: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        for obj in self:
            name = display_type(type_key(type(obj)))
            counts[name] += 1
            sizes[name] += safe_sizeof(obj)
        return sorted(
            (TypeStats(name, n, sizes[name]) for name, n in counts.items()),
            key=lambda row: (-row.size, -row.count, row.name),
        )

    def _repr_html_(self) -> str:
        return views.html(self)

    def to_guppy(self, hp: Any = None) -> Any:
        """These objects as a guppy3 ``IdentitySet`` (see :func:`to_guppy`)."""
        return to_guppy(self, hp)

    def to_pympler(self) -> list[list[Any]]:
        """A pympler summary of these objects (see :func:`to_pympler`)."""
        return to_pympler(self)

    def asizeof(self, **options: Any) -> int:
        """Their deep size, shared objects counted once (see :func:`asizeof`)."""
        return asizeof(self, **options)

    def show_backrefs(
        self, filename: str | os.PathLike[str], *, max_depth: int = 3, **options: Any
    ) -> str:
        """objgraph's graph of what refers to these objects (see :func:`show_backrefs`)."""
        return show_backrefs(self, filename, max_depth=max_depth, **options)


class Snapshot(views.Shown):
    """Live gc-tracked objects counted by type, right after full collections.

    Made by :func:`snapshot`. It keeps counts, sizes and addresses, never
    the objects: ``objects()``, ``referrers()`` and ``path()`` look at the
    heap as it is when they are called.

    ``count`` and ``size`` are the totals (objects, shallow bytes);
    ``traced`` the bytes ``tracemalloc`` traced (None when it was not
    running), less what reftrace's own snapshots hold; ``time`` when it was
    taken (``time.time()``); ``seconds`` how long taking it took; ``notes``
    what it could not see.
    """

    __slots__ = ("_counts", "_sizes", "_ids", "count", "size", "traced", "time", "seconds", "notes")

    def __init__(
        self,
        counts: dict[str, int],
        sizes: dict[str, int],
        ids: array[int],
        traced: int | None,
        taken: float,
        seconds: float,
        notes: tuple[str, ...] = (),
    ) -> None:
        self._counts = counts
        self._sizes = sizes
        self._ids = ids
        self.count = sum(counts.values())
        self.size = sum(sizes.values())
        self.traced = traced
        self.time = taken
        self.seconds = seconds
        self.notes = notes

    # -- the counts -------------------------------------------------------------

    @property
    def types(self) -> list[TypeStats]:
        """Every type, largest total shallow size first."""
        rows = [TypeStats(name, n, self._sizes.get(name, 0)) for name, n in self._counts.items()]
        rows.sort(key=lambda row: (-row.size, -row.count, row.name))
        return rows

    def top(self, n: int = SHOWN_ROWS) -> list[TypeStats]:
        """The ``n`` types with the largest total shallow size: (name, count, size) rows."""
        return self.types[: max(0, n)]

    def stats(self, type_or_name: type | str) -> TypeStats:
        """The row of one type, by the type itself or its name (see :meth:`objects`).

        A name matching several types (``Node`` in two modules) sums them; a
        type with no objects gives a row of zeros.
        """
        keys = [key for key in self._counts if _name_matches(key, type_or_name)]
        name = keys[0] if len(keys) == 1 else _query_text(type_or_name)
        return TypeStats(
            name,
            sum(self._counts[key] for key in keys),
            sum(self._sizes.get(key, 0) for key in keys),
        )

    # -- the live heap ----------------------------------------------------------

    def objects(self, type_or_name: type | str, limit: int | None = None) -> ObjectList:
        """The live objects of a type, now (after a full collection).

        ``type_or_name`` is the type itself (its exact instances, not its
        subclasses'), or a name as the tables show it: ``dict``,
        ``myapp.models.User``, or its last parts (``User``, ``models.User``).
        Only objects the gc tracks are found (not ``str`` or ``int``).
        With ``limit``, the last ``limit`` of them in the gc's order, which
        puts the objects that most recently survived a collection last.
        """
        return _live_objects(_query_matcher(type_or_name), limit, None)

    def referrers(self, obj: object, limit: int | None = REFERRER_LIMIT) -> list[Referrer]:
        """What refers to ``obj`` now, each with its label: module globals
        (``planted.ITEMS``), containers (``[3]``, ``['key']``), attributes
        (``.cache``), locals of running functions. The caller's own local
        variables are left out; so are reftrace's objects. At most ``limit``.
        """
        box = [obj]
        del obj
        return _referrers(box, sys._getframe(1), limit)

    def path(self, obj: object, max_depth: int | None = DEFAULT_MAX_DEPTH) -> ObjectPath:
        """The shortest chain of references from a root to ``obj``: an :class:`ObjectPath`.

        Roots are module globals, locals of running functions and references
        the gc cannot see (C code). The caller's own variables are not roots:
        called from a function, its locals are left out; called at module
        level (a script, a notebook), a global bound to ``obj`` itself counts
        only when nothing else holds it. Each step is ``old`` (alive at this
        snapshot) or ``new`` (made since). No path: ``.path`` is None and
        ``.reason`` says why (garbage, only the caller's variables, or no
        root within ``max_depth`` references).
        """
        box = [obj]
        del obj
        return _object_path(self._ids, box, sys._getframe(1), max_depth)

    # -- comparing --------------------------------------------------------------

    def diff(self, earlier: Snapshot) -> SnapshotDiff:
        """What changed since ``earlier``: ``later.diff(earlier)`` is ``later - earlier``."""
        if not isinstance(earlier, Snapshot):
            raise TypeError(f"diff() needs a Snapshot, got {type(earlier).__name__}")
        return SnapshotDiff(earlier, self)

    def __sub__(self, earlier: object) -> SnapshotDiff:
        if not isinstance(earlier, Snapshot):
            return NotImplemented
        return SnapshotDiff(earlier, self)

    # -- rendering --------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"<Snapshot: {self.count:,} objects, {human_size(self.size)}, "
            f"{len(self._counts):,} types>"
        )

    def to_html(self, *, mask: bool | None = None) -> str:
        """The largest types as an HTML table; every name masked and escaped."""
        return views.html(self, mask=mask)


class SnapshotDiff(views.Shown):
    """What changed between two snapshots, type by type: ``later - earlier``.

    ``changes`` lists every type whose count or size changed, the most grown
    (in bytes) first; ``count``, ``size`` and ``traced`` are the differences
    of the totals (``traced`` None unless both snapshots traced memory).
    ``new_objects()`` hands out the objects made between the two that are
    still alive; ``path()`` marks what is new on a path.
    """

    __slots__ = ("before", "after", "changes")

    def __init__(self, before: Snapshot, after: Snapshot) -> None:
        self.before = before
        self.after = after
        changes = []
        for name in dict.fromkeys([*before._counts, *after._counts]):
            count_before = before._counts.get(name, 0)
            size_before = before._sizes.get(name, 0)
            count = after._counts.get(name, 0) - count_before
            size = after._sizes.get(name, 0) - size_before
            if count or size:
                changes.append(TypeChange(name, count, size, count_before, size_before))
        changes.sort(key=lambda row: (-row.size, -row.count, row.name))
        self.changes = changes

    @property
    def count(self) -> int:
        """Change in the number of tracked objects."""
        return self.after.count - self.before.count

    @property
    def size(self) -> int:
        """Change in the total shallow size, in bytes."""
        return self.after.size - self.before.size

    @property
    def traced(self) -> int | None:
        """Change in the bytes ``tracemalloc`` traced; None unless both snapshots traced memory."""
        if self.after.traced is None or self.before.traced is None:
            return None
        return self.after.traced - self.before.traced

    @property
    def seconds(self) -> float:
        """Time between the two snapshots."""
        return self.after.time - self.before.time

    def grown(self, n: int = SHOWN_ROWS) -> list[TypeChange]:
        """The ``n`` types that grew most in bytes (or, at equal bytes, in count)."""
        return [row for row in self.changes if row.size > 0 or row.count > 0][: max(0, n)]

    def shrunk(self, n: int = SHOWN_ROWS) -> list[TypeChange]:
        """The ``n`` types that shrank most in bytes."""
        rows = [row for row in self.changes if row.size < 0 or row.count < 0]
        rows.sort(key=lambda row: (row.size, row.count, row.name))
        return rows[: max(0, n)]

    def new_objects(
        self, type_or_name: type | str | None = None, limit: int | None = None
    ) -> ObjectList:
        """Objects made between the two snapshots and still alive, of one type
        or (None) of every type whose count grew.

        New means: alive now, at an address the later snapshot saw and the
        earlier one did not. An object that took the address of one that
        died in between is missed (addresses are reused at once); so is one
        made after the later snapshot.
        """
        if type_or_name is None:
            grown = {row.name for row in self.changes if row.count > 0}
            matcher = _key_matcher(grown)
            label = f"the {len(grown)} types that grew"
        else:
            matcher = _query_matcher(type_or_name)
            label = ""
        return _live_objects(matcher, limit, (self.before._ids, self.after._ids), label)

    def path(self, obj: object, max_depth: int | None = DEFAULT_MAX_DEPTH) -> ObjectPath:
        """:meth:`Snapshot.path` from the earlier snapshot: ``new`` marks what
        was made since it, the suspect where the new objects attach."""
        box = [obj]
        del obj
        return _object_path(self.before._ids, box, sys._getframe(1), max_depth)

    def to_guppy(self, type_or_name: type | str | None = None, hp: Any = None) -> Any:
        """The new objects (see :meth:`new_objects`) as a guppy3 ``IdentitySet``."""
        return to_guppy(self.new_objects(type_or_name), hp)

    def to_pympler(self, type_or_name: type | str | None = None) -> list[list[Any]]:
        """A pympler summary of the new objects."""
        return to_pympler(self.new_objects(type_or_name))

    def asizeof(self, type_or_name: type | str | None = None, **options: Any) -> int:
        """The deep size of the new objects together (pympler)."""
        return asizeof(self.new_objects(type_or_name), **options)

    def show_backrefs(
        self,
        filename: str | os.PathLike[str],
        type_or_name: type | str | None = None,
        *,
        limit: int | None = 1,
        max_depth: int = 3,
        **options: Any,
    ) -> str:
        """objgraph's graph of what refers to new objects: by default one of
        them (``limit``), since objgraph draws every referrer of each."""
        return show_backrefs(
            self.new_objects(type_or_name, limit), filename, max_depth=max_depth, **options
        )

    def __repr__(self) -> str:
        return (
            f"<SnapshotDiff: {self.count:+,} objects, {signed_size(self.size)}, "
            f"{len(self.changes):,} types changed>"
        )

    def to_html(self, *, mask: bool | None = None) -> str:
        """The grown types as an HTML table; every name masked and escaped."""
        return views.html(self, mask=mask)


# -- taking a snapshot -------------------------------------------------------------------


def snapshot() -> Snapshot:
    """Count the live objects by type, after full collections (``gc.collect()``
    until one finds nothing).

    Costs those collections and one pass over the gc's list of objects,
    plus 8 bytes per object kept for the addresses (see docs/snapshot.md).
    Objects frozen with ``gc.freeze()`` (all of the old heap inside a
    ``reftrace.watch()`` block) are not listed by the gc and not counted;
    the snapshot's ``notes`` say so.
    """
    started = time.perf_counter()
    taken = time.time()
    # One heap pass at a time: an analysis running meanwhile would take this
    # pass's working lists for objects of the program.
    ANALYSIS_LOCK.acquire()
    try:
        _collect()
        traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
        objects = gc.get_objects()
        try:
            counts, sizes, own_bytes = _measure(objects, traced is not None)
            ids = _addresses(objects)
        finally:
            objects.clear()
            del objects
    finally:
        ANALYSIS_LOCK.release()
    notes = []
    # (Beyond the few builtin tuples 3.12.0-3.12.1 start with frozen.)
    frozen = gc.get_freeze_count() - interpreter_frozen()
    if frozen > 0:
        notes.append(
            f"{frozen:,} objects frozen with gc.freeze() are not counted: the gc does not "
            "list them (inside a reftrace.watch() block, that is the whole old heap)"
        )
    if traced is not None:
        traced = max(0, traced - own_bytes)
    return Snapshot(counts, sizes, ids, traced, taken, time.perf_counter() - started, tuple(notes))


def _collect() -> None:
    """Full collections until one finds nothing: freeing garbage can make more
    (a finalizer, a weakref callback, a class rebuilt by ``dataclass(slots=True)``
    whose old functions go only at the next collection)."""
    for _ in range(_MAX_COLLECTS):
        if gc.collect() == 0:
            break


def _read_word(address: int) -> int:
    return int(ctypes.c_size_t.from_address(address).value)


def _list_layout_ok() -> bool:
    """Whether a list's item pointers can be copied straight from its memory:
    a 64-bit CPython whose list header is the usual ``PyVarObject`` (type at
    8, length at 16) followed by the pointer to the items (at 24)."""
    if sys.implementation.name != "cpython" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    probe = [object(), object(), object()]
    try:
        if _read_word(id(probe) + 8) != id(list) or _read_word(id(probe) + 16) != len(probe):
            return False
        raw = array("Q")
        raw.frombytes(ctypes.string_at(_read_word(id(probe) + 24), 8 * len(probe)))
        return raw == array("Q", map(id, probe))
    except Exception:
        return False


_LIST_LAYOUT_OK = _list_layout_ok()


def _addresses(objects: list[object]) -> array[int]:
    """The address of every object of the list, in order, as an array.

    Copied from the list's own memory where the layout was checked at
    import: ``map(id, ...)`` would allocate an int per object, which
    ``tracemalloc``, when on, traces one by one.
    """
    if _LIST_LAYOUT_OK:
        out = array("Q")
        out.frombytes(ctypes.string_at(_read_word(id(objects) + 24), 8 * len(objects)))
        return out
    return array("Q", map(id, objects))


_OBJECT_SIZEOF = object.__dict__["__sizeof__"]
_type_itemsize = type.__dict__["__itemsize__"].__get__


def _size_kind(cls: type) -> str:
    """How to size instances of ``cls``: ``"fixed"`` (CPython's own
    ``object.__sizeof__`` on a type without items: every instance has the
    size of any other), ``"varying"`` (another builtin ``__sizeof__``: ask
    each), or ``"user"`` (a ``__sizeof__`` in Python: never called)."""
    try:
        impl = class_attribute(cls, "__sizeof__")
        if impl is _OBJECT_SIZEOF and _type_itemsize(cls) == 0:
            return "fixed"
        return "varying" if isinstance(impl, BUILTIN_DESCRIPTORS) else "user"
    except Exception:
        return "user"


def _measure(objects: list[object], tracing: bool) -> tuple[dict[str, int], dict[str, int], int]:
    """Counts and shallow sizes by type name, reftrace's own objects left out,
    and the traced bytes those own objects hold.

    Every pass is a C-level pipeline: with ``tracemalloc`` on, a bound
    method and an int allocated per object (what ``sys.getsizeof`` costs)
    would take longer than the collection, so instances of fixed-size
    types are sized once per type.
    """
    classes = set(map(type, objects))
    counts: dict[type, int] = dict.fromkeys(classes, 0)
    for cls, n in count_types(objects).items():
        counts[cls] = n
    kinds = {cls: _size_kind(cls) for cls in classes}
    # One instance of each type (the last listed), to size the fixed ones.
    example = dict(zip(map(type, objects), objects))
    sizes: dict[type, int] = {}
    for cls, kind in kinds.items():
        sizes[cls] = counts[cls] * sys.getsizeof(example[cls]) if kind == "fixed" else 0
    example.clear()
    varying = {cls for cls, kind in kinds.items() if kind == "varying"}
    selected = list(compress(objects, map(varying.__contains__, map(type, objects))))
    for (cls, size), n in _size_pairs(selected).items():
        sizes[cls] += size * n
    user = {cls for cls, kind in kinds.items() if kind == "user"}
    selected = list(compress(objects, map(user.__contains__, map(type, objects)))) if user else []
    for obj in selected:
        sizes[type(obj)] += safe_sizeof(obj)
    selected.clear()
    own = _own_objects(objects, classes)
    for obj in own:
        if gc.is_tracked(obj) and type(obj) in counts:
            counts[type(obj)] -= 1
            sizes[type(obj)] -= sys.getsizeof(obj)
    own_bytes = _traced_bytes(own) if tracing else 0
    own.clear()
    by_name: dict[str, int] = {}
    size_by_name: dict[str, int] = {}
    for cls, n in counts.items():
        if n <= 0:
            continue
        name = display_type(type_key(cls))
        by_name[name] = by_name.get(name, 0) + n
        size_by_name[name] = size_by_name.get(name, 0) + sizes[cls]
    return by_name, size_by_name, own_bytes


def _size_pairs(objects: list[object]) -> dict[tuple[type, int], int]:
    """How many objects there are of each (type, shallow size): counted in C,
    256 objects at a time (a count above 256 is a new int, and with
    ``tracemalloc`` on, one traced allocation per object would cost more
    than the collection)."""
    total: dict[tuple[type, int], int] = {}
    get = total.get
    for start in range(0, len(objects), 256):
        chunk = objects[start : start + 256]
        try:
            pairs = Counter(zip(map(type, chunk), map(sys.getsizeof, chunk)))
        except Exception:  # a broken __sizeof__ in some extension type
            pairs = Counter([(type(obj), safe_sizeof(obj)) for obj in chunk])
        for pair, n in pairs.items():
            total[pair] = get(pair, 0) + n
    return total


def _is_own_class(cls: type) -> bool:
    try:
        return is_own_module(class_module(cls))
    except Exception:
        return False


def _own_objects(objects: list[object], classes: set[type]) -> list[object]:
    """reftrace's objects on the heap: instances of its classes, the containers
    they keep in their attributes, and functions, frames and generators of
    its code. Each once."""
    own_classes = set(filter(_is_own_class, classes))
    instances = list(compress(objects, map(own_classes.__contains__, map(type, objects))))
    code_classes = classes & _CODE_TYPES
    code = list(compress(objects, map(code_classes.__contains__, map(type, objects))))
    found: dict[int, object] = {id(obj): obj for obj in instances}
    found.update((id(obj), obj) for obj in code if is_own(obj))
    del code
    for obj in instances:
        if issubclass(type(obj), (list, tuple, dict, set, frozenset)):
            continue  # an ObjectList or a row: its items are what it holds, not its data
        for value in referents(obj):
            if type(value) not in _CONTAINERS:
                continue
            found[id(value)] = value
            if _ATTRIBUTE_DICTS and type(value) is dict and value is labels.instance_dict(obj):
                for inner in list(dict.values(value)):
                    if type(inner) in _CONTAINERS:
                        found[id(inner)] = inner
    del instances
    return list(found.values())


def _traced_bytes(own: list[object]) -> int:
    """Bytes ``tracemalloc`` traced for reftrace's objects (and the keys and
    values of its dicts): snapshots' tables and address arrays, mostly."""
    seen: set[int] = set()
    total = 0
    items: list[object] = []
    for obj in own:
        items.append(obj)
        if type(obj) is dict:
            for key, value in list(dict.items(obj)):
                items.append(key)
                items.append(value)
    for obj in items:
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if tracemalloc.get_object_traceback(obj) is not None:
            total += safe_sizeof(obj)
    items.clear()
    return total


# -- names ----------------------------------------------------------------------------


def _query_text(type_or_name: object) -> str:
    if isinstance(type_or_name, type):
        return display_type(type_key(type_or_name))
    return str(type_or_name)


def _name_matches(key: str, type_or_name: object) -> bool:
    if isinstance(type_or_name, type):
        return key == display_type(type_key(type_or_name))
    if not isinstance(type_or_name, str):
        raise TypeError(f"expected a type or a type name, got {type(type_or_name).__name__}")
    return key == type_or_name or key.endswith("." + type_or_name)


def _query_matcher(type_or_name: object) -> Any:
    """A test on classes: ``type_or_name`` itself, or the classes its name matches."""
    if isinstance(type_or_name, type):
        cls = type_or_name
        return lambda candidate: candidate is cls
    if not isinstance(type_or_name, str):
        raise TypeError(f"expected a type or a type name, got {type(type_or_name).__name__}")
    if not type_or_name:
        raise ValueError("expected a type or a type name, got an empty string")
    name = type_or_name
    return lambda candidate: _name_matches(display_type(type_key(candidate)), name)


def _key_matcher(keys: set[str]) -> Any:
    return lambda candidate: display_type(type_key(candidate)) in keys


# -- objects, referrers, paths ---------------------------------------------------------


def _live_objects(
    matcher: Any,
    limit: int | None,
    between: tuple[array[int], array[int]] | None,
    label: str = "",
) -> ObjectList:
    """Live objects of the classes ``matcher`` accepts; with ``between``
    (earlier, later address arrays), only those at an address the later
    saw and the earlier did not."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative int, got {limit!r}")
    ANALYSIS_LOCK.acquire()
    try:
        _collect()
        objects = gc.get_objects()
        try:
            classes = set(map(type, objects))
            wanted = {cls for cls in classes if matcher(cls)}
            found = list(compress(objects, map(wanted.__contains__, map(type, objects))))
            if wanted & (_CODE_TYPES | _CONTAINERS) or any(map(_is_own_class, wanted)):
                own = {id(obj) for obj in _own_objects(objects, classes) if type(obj) in wanted}
                found = [obj for obj in found if id(obj) not in own]
        finally:
            objects.clear()
            del objects
    finally:
        ANALYSIS_LOCK.release()
    if between is not None:
        # One int per candidate and one per address passed over: with
        # tracemalloc on, each is a traced allocation, so no pass is repeated.
        earlier, later = between
        by_address = dict(zip(map(id, found), found))
        new = set(by_address).intersection(later)
        new.difference_update(earlier)
        found = [obj for key, obj in by_address.items() if key in new]
        by_address.clear()
    if limit is not None:
        found = found[len(found) - limit :] if limit else []
    if not label:
        names = list(dict.fromkeys(display_type(type_key(type(obj))) for obj in found[:1000]))
        label = names[0] if len(names) == 1 else ""
    return ObjectList(found, label)


def _argument_refs() -> int:
    """References the caller's stack keeps to an argument during a call:
    one before 3.11, none after (arguments move into the callee's frame).
    Measured, not assumed."""
    target = object()
    return _Probe().refs(target)


class _Probe:
    def refs(self, obj: object) -> int:
        # obj, the caller's `target`, getrefcount's argument; the rest is the stack's.
        return sys.getrefcount(obj) - 3


#: See _argument_refs: how ``path(obj)``'s caller holds ``obj`` out of sight.
_ARGUMENT_REFS = max(0, _argument_refs())


def _object_path(
    ids: array[int], box: list[object], caller: types.FrameType, max_depth: int | None
) -> ObjectPath:
    if max_depth is not None and (
        not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < 1
    ):
        raise ValueError(f"max_depth must be None or a positive int, got {max_depth!r}")
    module_level = not caller.f_code.co_flags & 0x01
    ANALYSIS_LOCK.acquire()
    try:
        name = display_type(type_key(type(box[0])))
        result, heap = _search(box, caller, max_depth, handles=True)
        if module_level and isinstance(result, NotFound) and result.caller_held:
            # Only the calling script's own globals hold it: they are its roots.
            heap.nodes.clear()
            result, heap = _search(box, caller, max_depth, handles=False)
        del caller
        try:
            if isinstance(result, Found):
                young = _made_since(ids, [heap.nodes[key] for key in result.chain])
                return ObjectPath(name, make_path(result, heap, young))
            if result.caller_held:
                return ObjectPath(
                    name,
                    None,
                    f"nothing holds it but the local variables of {heap.caller_function}, "
                    "the code asking; it goes when they do",
                    garbage=True,
                )
            return ObjectPath(name, None, result.reason, garbage=result.garbage)
        finally:
            heap.nodes.clear()
    finally:
        box.clear()
        ANALYSIS_LOCK.release()


def _search(
    box: list[object], caller: types.FrameType, max_depth: int | None, handles: bool
) -> tuple[Found | NotFound, HeapView]:
    """One root search for the object in ``box``, from a heap view that
    treats the caller's variables as handles (``handles``) or as roots."""
    key = id(box[0])
    heap = HeapView(
        {id(box)}, caller=caller, young_ids=frozenset({key}) if handles else frozenset()
    )
    del caller
    heap.nodes[key] = box[0]
    # The caller holds the argument on its stack for the call (before 3.11).
    heap.caller_refs[key] += _ARGUMENT_REFS
    if not gc.is_tracked(box[0]):
        heap.untracked_holders.append(box[0])
    results = shortest_paths(heap, [key], max_depth)
    return results[key], heap


def _made_since(ids: array[int], chain: list[object]) -> frozenset[int]:
    """Ids of the tracked objects of ``chain`` at addresses the snapshot did not see."""
    tracked = {id(obj) for obj in chain if gc.is_tracked(obj)}
    return frozenset(tracked - tracked.intersection(ids))


def _referrers(box: list[object], caller: types.FrameType, limit: int | None) -> list[Referrer]:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative int, got {limit!r}")
    ANALYSIS_LOCK.acquire()
    try:
        key = id(box[0])
        heap = HeapView({id(box)}, caller=caller)
        del caller
        heap.nodes[key] = box[0]
        out: list[Referrer] = []
        try:
            for root in heap.direct_roots(box[0]):
                if root.kind == "frame" and root.frame_local is not None:
                    out.append(Referrer(root.frame_local.label, "local", None))
            holders = heap.referrers([key])[key]
            heap.release_scan()
            for holder_id in holders:
                if limit is not None and len(out) >= limit:
                    break
                holder = heap.nodes[holder_id]
                module = heap.module_dicts.get(holder_id)
                if module is not None:
                    edge = labels.global_edge(holder, box[0])  # type: ignore[arg-type]
                    out.append(Referrer(f"{module}.{edge.label}", edge.kind, holder))
                else:
                    edge = labels.edge(holder, box[0])
                    out.append(Referrer(edge.label, edge.kind, holder))
                del holder
        finally:
            heap.nodes.clear()
        return out[:limit] if limit is not None else out
    finally:
        box.clear()
        ANALYSIS_LOCK.release()


# -- hand-offs ------------------------------------------------------------------------


__all__ = [
    "ObjectList",
    "ObjectPath",
    "Referrer",
    "Snapshot",
    "SnapshotDiff",
    "TypeChange",
    "TypeStats",
    "asizeof",
    "show_backrefs",
    "snapshot",
    "to_guppy",
    "to_pympler",
]
