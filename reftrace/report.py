"""The report: plain data describing what a watched block left behind.

Everything here is a description (types, labels, sizes, sites). A report keeps
no strong reference to any object of the watched program: a leaked object is
handed out only through a weak reference (``Leak.object``), so building or
keeping a report never makes a leak permanent. Renderers read these classes
and nothing else.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from reftrace import views
from reftrace.files import atomic_file, path_argument, target_path
from reftrace.redact import JSON_LIMIT, bound, masking_enabled

#: The ``"format"`` field of a saved report, and the version this code writes and reads.
FORMAT_NAME = "reftrace-report"
FORMAT_VERSION = 1


class ReportFormatError(ValueError):
    """A file (or data) that is not a valid saved reftrace report.

    ``source`` names the file, ``field`` the part of the report that was wrong
    (``leaks[2].path.steps[0].status``; empty when the whole file was), and
    ``problem`` what was wrong with it.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{field}: " if field else ""
        super().__init__(f"{source}: not a valid reftrace report: {where}{problem}")


def _masking(mask: bool | None) -> bool:
    if mask is None:
        return masking_enabled()
    if not isinstance(mask, bool):
        raise TypeError(f"mask must be a bool or None, got {type(mask).__name__}")
    return mask


def _j(text: str, mask: bool) -> str:
    """A user string as JSON keeps it: masked (when ``mask``) and bounded."""
    return bound(text, JSON_LIMIT, mask)


@dataclass(frozen=True)
class Root:
    """What keeps the start of a path alive.

    ``kind`` is one of:

    - ``"module"``: a global of an imported module (``name`` is the module).
    - ``"frame"``: a local variable of a function running in some thread
      (``name`` is the thread; ``function``, ``filename``, ``lineno`` say where).
    - ``"exception"``: the exception propagating out of the watched block.
    - ``"hidden"``: a reference the garbage collector cannot see: one held by C
      code, by an object frozen with ``gc.freeze()``, or by a container the gc
      does not track. Python offers no way to name such a holder; the path
      starts at the object it holds.
    """

    kind: str
    name: str
    function: str = ""
    filename: str = ""
    lineno: int = 0

    def describe(self) -> str:
        if self.kind == "module":
            return f"module {self.name}"
        if self.kind == "frame":
            return f"thread {self.name}, {self.function} ({self.filename}:{self.lineno})"
        if self.kind == "exception":
            return "the exception propagating out of the watched block"
        return "a reference the gc cannot see (C code, a frozen or untracked container)"

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        m = _masking(mask)
        return {
            "kind": _j(self.kind, m),
            "name": _j(self.name, m),
            "function": _j(self.function, m),
            "filename": _j(self.filename, m),
            "lineno": self.lineno,
        }


@dataclass(frozen=True)
class Step:
    """One reference on a path: the edge ``label`` and the object it reaches.

    ``kind`` says what sort of reference it is (``global``, ``local``, ``attr``,
    ``key``, ``index``, ``item``, ``dictkey``, ``cell``, ``self``, ``func``,
    ``slot``, ``frame``, ``referent``), so renderers and programs can match on
    it. ``code`` is the same edge written as a Python expression fragment
    (``.events``, ``['chunk']``, ``.__closure__[0].cell_contents``).
    ``status`` is ``"old"`` (alive before the block), ``"new"`` (created in it)
    or ``"unknown"`` (an object the gc does not track, whose age cannot be told).
    ``module`` is the ``__module__`` of the object's type (``"builtins"`` for
    ``dict``), which tells a program's ``Config`` from a library's.
    """

    label: str
    kind: str
    code: str
    type_name: str
    status: str
    is_suspect: bool = False
    detail: str = ""
    module: str = ""

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        m = _masking(mask)
        return {
            "label": _j(self.label, m),
            "kind": _j(self.kind, m),
            "code": _j(self.code, m),
            "type": _j(self.type_name, m),
            "status": _j(self.status, m),
            "suspect": self.is_suspect,
            "detail": _j(self.detail, m),
            "module": _j(self.module, m),
        }


@dataclass(frozen=True)
class Path:
    """The shortest chain of strong references from a root to an object."""

    root: Root
    steps: tuple[Step, ...]

    @property
    def expression(self) -> str:
        """The path as one Python expression, e.g. ``AGENT.events._listeners['chunk'][3]``."""
        return "".join(step.code for step in self.steps)

    @property
    def labels(self) -> list[str]:
        return [step.label for step in self.steps]

    @property
    def suspect(self) -> Step | None:
        for step in self.steps:
            if step.is_suspect:
                return step
        return None

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        """JSON-ready; every step is kept, each string masked and bounded.

        ``expression`` is derived: the ``code`` of the steps, as written here.
        """
        m = _masking(mask)
        steps = [step.to_dict(mask=m) for step in self.steps]
        return {
            "root": self.root.to_dict(mask=m),
            "expression": "".join(step["code"] for step in steps),
            "steps": steps,
        }


@dataclass
class Leak:
    """A tracked object that is still alive after the block.

    ``path`` is None when no root could be found; ``reason`` then says why.
    ``size`` and ``objects`` count what the leak keeps: the object plus the
    objects created in the block that are reachable from it.
    """

    type_name: str
    path: Path | None
    signature: str
    size: int
    objects: int
    allocated_at: str | None = None
    reason: str = ""
    _ref: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def suspect(self) -> Step | None:
        """The reference created inside the block that attaches the leak to old objects."""
        return self.path.suspect if self.path else None

    @property
    def object(self) -> Any:
        """The leaked object if it is still alive and weakly referenceable, else None."""
        return self._ref() if self._ref is not None else None

    def __str__(self) -> str:
        return views.text(self)

    def _repr_html_(self) -> str:
        return views.html(self)

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        m = _masking(mask)
        return {
            "type": _j(self.type_name, m),
            "signature": _j(self.signature, m),
            "size": self.size,
            "objects": self.objects,
            "allocated_at": None if self.allocated_at is None else _j(self.allocated_at, m),
            "reason": _j(self.reason, m),
            "path": self.path.to_dict(mask=m) if self.path else None,
        }


@dataclass(frozen=True)
class Frame:
    """One frame of a call stack: where, in which function, and the line's code."""

    filename: str
    lineno: int
    function: str
    code: str = ""

    @property
    def where(self) -> str:
        return f"{self.filename}:{self.lineno}"

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        m = _masking(mask)
        return {
            "filename": _j(self.filename, m),
            "lineno": self.lineno,
            "function": _j(self.function, m),
            "code": _j(self.code, m),
        }


@dataclass(frozen=True)
class StoreSite:
    """The line that stored a retaining reference, with the calls that led to it.

    ``frames`` go from the store outwards (``frames[0]`` ran the ``append``,
    the ``d[key] = ...``, the ``self.x = ...``). ``user`` is the index of the
    first frame in the program's own code (not the standard library, not an
    installed package): for a listener registered through a library call,
    the line that called the library.
    """

    frames: tuple[Frame, ...]
    user: int = 0

    @property
    def line(self) -> Frame:
        """The frame to name: the program's own line that stored (or called the store)."""
        return self.frames[self.user]

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        m = _masking(mask)
        return {"frames": [frame.to_dict(mask=m) for frame in self.frames], "user": self.user}


@dataclass
class Proof:
    """The suspect reference of a finding, tested by cutting it in a forked copy.

    ``status`` is ``"confirmed"`` (the leaked objects died once ``cut`` was
    removed), ``"not sufficient"`` (some lived on: ``remaining`` is the path
    that still holds one) or ``"unavailable"`` (the proof could not run here;
    ``reason`` says why, and the suspect is the heuristic one). ``freed_*``
    count what died with them: objects, bytes (their own sizes), and the
    leaked objects by type.
    """

    status: str
    cut: str
    reason: str = ""
    freed_objects: int = 0
    freed_bytes: int = 0
    freed_leaks: int = 0
    leaks: int = 0
    freed_types: list[tuple[str, int]] = field(default_factory=list)
    remaining: Path | None = None
    seconds: float = 0.0

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        m = _masking(mask)
        return {
            "status": _j(self.status, m),
            "cut": _j(self.cut, m),
            "reason": _j(self.reason, m),
            "freed_objects": self.freed_objects,
            "freed_bytes": self.freed_bytes,
            "freed_leaks": self.freed_leaks,
            "leaks": self.leaks,
            "freed_types": [[_j(name, m), n] for name, n in self.freed_types],
            "remaining": self.remaining.to_dict(mask=m) if self.remaining else None,
            "seconds": self.seconds,
        }


@dataclass
class LeakGroup:
    """Leaks that share a signature (the same suspect reference): one finding."""

    signature: str
    leaks: list[Leak]
    #: bytes the group keeps, shared objects counted once (0: not measured)
    retained: int = 0
    #: the suspect reference tested by cutting it (``watch(prove=True)``)
    proof: Proof | None = None
    #: the line that stored the retaining reference (``reftrace.locate()``)
    stored_at: StoreSite | None = None

    @property
    def count(self) -> int:
        return len(self.leaks)

    @property
    def size(self) -> int:
        return self.retained or sum(leak.size for leak in self.leaks)

    @property
    def example(self) -> Leak:
        """The leak nearest the suspect reference (the output, not its chunks)."""
        return min(self.leaks, key=lambda leak: len(leak.path.steps) if leak.path else 0)

    @property
    def types(self) -> list[tuple[str, int]]:
        """Leaked types and their counts, most common first."""
        counts: dict[str, int] = {}
        for leak in self.leaks:
            counts[leak.type_name] = counts.get(leak.type_name, 0) + 1
        return sorted(counts.items(), key=lambda item: -item[1])

    def __str__(self) -> str:
        return views.text(self)

    def _repr_html_(self) -> str:
        return views.html(self)

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        m = _masking(mask)
        return {
            "signature": _j(self.signature, m),
            "count": self.count,
            "size": self.size,
            "types": [[_j(name, m), n] for name, n in self.types],
            "proof": self.proof.to_dict(mask=m) if self.proof else None,
            "stored_at": self.stored_at.to_dict(mask=m) if self.stored_at else None,
        }


@dataclass
class SurvivorGroup:
    """New objects still alive after the block, attached to the old heap at one place.

    ``holder_type`` and ``edge`` name where: the old object and the reference
    from it (``[*]`` when the block added several items to one container).
    ``path`` leads from a root to the new objects through that reference.
    ``holder_length`` is the holder's length when the report was made, where
    it is a ``dict``, ``list``, ``set`` or ``deque`` (a module's globals
    count as a dict): run the block again and compare, to tell a container
    that keeps growing from an entry replaced. ``holder_id`` is the holder's
    ``id()`` then (0 for a root) and ``entry_ids`` those of the new objects it
    refers to: meaningful only while those objects live, and never saved.
    """

    attachment: str
    holder_type: str
    edge: str
    path: Path | None
    count: int
    size: int
    top_types: list[tuple[str, int]]
    reason: str = ""
    #: the line that stored the reference from the old holder (``reftrace.locate()``)
    stored_at: StoreSite | None = None
    holder_length: int | None = None
    holder_id: int = field(default=0, compare=False)
    #: ids of the new objects the holder refers to (as ``holder_id``: never saved)
    entry_ids: tuple[int, ...] = field(default=(), compare=False, repr=False)

    def __str__(self) -> str:
        return views.text(self)

    def _repr_html_(self) -> str:
        return views.html(self)

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        m = _masking(mask)
        return {
            "attachment": _j(self.attachment, m),
            "holder_type": _j(self.holder_type, m),
            "edge": _j(self.edge, m),
            "count": self.count,
            "size": self.size,
            "top_types": [[_j(name, m), n] for name, n in self.top_types],
            "reason": _j(self.reason, m),
            "path": self.path.to_dict(mask=m) if self.path else None,
            "stored_at": self.stored_at.to_dict(mask=m) if self.stored_at else None,
            "holder_length": self.holder_length,
        }


@dataclass(frozen=True)
class Allocation:
    """Memory allocated in the block and still in use, by source line.

    ``traceback`` lists ``file:line`` from the allocating line outwards (as
    many frames as ``watch(frames=N)`` asked tracemalloc to keep).
    """

    site: str
    size: int
    count: int
    traceback: tuple[str, ...] = ()

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        m = _masking(mask)
        return {
            "site": _j(self.site, m),
            "size": self.size,
            "count": self.count,
            "traceback": [_j(frame, m) for frame in self.traceback],
        }


@dataclass
class Report:
    """What a watched block left behind: leaks, survivors and allocations."""

    leaks: list[Leak] = field(default_factory=list)
    survivors: list[SurvivorGroup] = field(default_factory=list)
    allocations: list[Allocation] = field(default_factory=list)
    tracked: int = 0
    collected: int = 0
    new_objects: int = 0
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: bytes and objects each finding keeps, its leaks' shared objects counted once
    finding_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: tracked objects held only by the watching function's own locals
    handles: int = 0
    #: the proof of each finding's suspect reference, by signature
    proofs: dict[str, Proof] = field(default_factory=dict)
    #: where each finding's reference was stored (``reftrace.locate()``), by signature
    stores: dict[str, StoreSite] = field(default_factory=dict)
    #: places to watch for stores, by signature or survivor attachment: live
    #: objects, kept only between the two calls of ``reftrace.locate()``
    _slots: dict[str, list[Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def leak_groups(self) -> list[LeakGroup]:
        """Leaks grouped by signature (one per suspect reference), largest first."""
        groups: dict[str, LeakGroup] = {}
        for leak in self.leaks:
            group = groups.setdefault(leak.signature, LeakGroup(leak.signature, []))
            group.leaks.append(leak)
        for signature, group in groups.items():
            if signature in self.finding_sizes:
                group.retained = self.finding_sizes[signature][0]
            group.proof = self.proofs.get(signature)
            group.stored_at = self.stores.get(signature)
        return sorted(groups.values(), key=lambda g: (-g.size, -g.count))

    @property
    def survivor_count(self) -> int:
        return sum(group.count for group in self.survivors)

    def __str__(self) -> str:
        return views.text(self)

    def _repr_html_(self) -> str:
        return views.html(self)

    def to_html(self, *, mask: bool | None = None, graph: bool = True) -> str:
        """The report as an HTML fragment: traces as tables, the graph as inline SVG."""
        return views.html(self, mask=mask, graph=graph)

    def __bool__(self) -> bool:
        # A report is always a report, even when clean: never let `if report:`
        # mean "has leaks" by accident.
        return True

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        """JSON-ready data: everything the report holds, with nothing left out.

        Every string that comes from the watched program is masked (unless
        ``mask=False``, or masking is off for the process) and cut to
        ``reftrace.redact.JSON_LIMIT`` characters. ``leak_groups`` and each
        path's ``expression`` are derived from the rest.
        """
        return {
            key: list(value) if isinstance(value, Iterator) else value
            for key, value in self._fields(_masking(mask))
        }

    def _fields(self, m: bool) -> list[tuple[str, object]]:
        """The fields of ``to_dict`` in order; the long lists as iterators, made one
        item at a time (``save`` writes each item as it is made)."""
        return [
            ("format", FORMAT_NAME),
            ("version", FORMAT_VERSION),
            ("leaks", (leak.to_dict(mask=m) for leak in self.leaks)),
            ("leak_groups", [group.to_dict(mask=m) for group in self.leak_groups]),
            ("handles", self.handles),
            ("survivors", (group.to_dict(mask=m) for group in self.survivors)),
            ("allocations", (a.to_dict(mask=m) for a in self.allocations)),
            ("tracked", self.tracked),
            ("collected", self.collected),
            ("new_objects", self.new_objects),
            ("notes", [_j(note, m) for note in self.notes]),
            ("timings", {_j(name, m): value for name, value in self.timings.items()}),
            (
                "finding_sizes",
                {
                    _j(signature, m): [size, objects]
                    for signature, (size, objects) in self.finding_sizes.items()
                },
            ),
            (
                "proofs",
                {_j(signature, m): p.to_dict(mask=m) for signature, p in self.proofs.items()},
            ),
            (
                "stores",
                {_j(signature, m): s.to_dict(mask=m) for signature, s in self.stores.items()},
            ),
        ]

    def to_json(self, *, mask: bool | None = None, **kwargs: Any) -> str:
        """``to_dict(mask=mask)`` as JSON text; ``kwargs`` go to ``json.dumps``.

        ``<``, ``>`` and ``&`` are written as ``\\u`` escapes, so the text can
        sit inside an HTML ``<script>`` element without closing it.
        """
        return _html_safe(json.dumps(self.to_dict(mask=mask), **kwargs))

    def save(self, path: str | os.PathLike[str], *, mask: bool | None = None) -> str:
        """Write the report to ``path`` as JSON (``to_dict``) and return the path.

        Masked by default, like every rendering. The file is UTF-8 (ASCII, in
        fact: other characters are JSON escapes, and ``<``, ``>``, ``&`` too)
        with one leak, survivor group or allocation per line, written as each
        is made; and it is written whole or not at all: to a temporary file
        beside ``path``, then renamed over it. ``reftrace.load`` reads it back.
        """
        name = target_path(path, "save()")
        fields = self._fields(_masking(mask))
        with atomic_file(name) as handle:
            for i, (key, value) in enumerate(fields):
                chunk = ("{\n" if i == 0 else ",\n") + json.dumps(key) + ": "
                if isinstance(value, Iterator):
                    handle.write(chunk.encode("ascii"))
                    empty = True
                    for item in value:
                        lead = "[\n  " if empty else ",\n  "
                        handle.write((lead + _html_safe(json.dumps(item))).encode("ascii"))
                        empty = False
                    handle.write(b"[]" if empty else b"\n ]")
                else:
                    handle.write((chunk + _html_safe(json.dumps(value))).encode("ascii"))
            handle.write(b"\n}\n")
        return name

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Report:
        """The report saved at ``path`` (see :func:`load`)."""
        return load(path)

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<data>") -> Report:
        """A report rebuilt from ``to_dict()`` data; ``ReportFormatError`` when invalid."""
        return _Reader(source).report(data)

    def render(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        *,
        mask: bool | None = None,
    ) -> str:
        """Draw the retention graph of the leaks (or survivors) to ``path``.

        The format comes from the file suffix (``.svg``, ``.png``, ``.dot``,
        or ``.html`` for the whole report as a page) unless given. Returns the
        path written. Raises ``TypeError`` for a path that is not a str or
        path-like, ``ValueError`` for an unknown format, ``OSError`` when the
        file cannot be written (nothing is half-written), and
        ``reftrace.renderers.graph.GraphvizNotFound`` (a ``RuntimeError``)
        when no Graphviz is installed: the DOT source is then written beside
        ``path``.
        """
        return views.write(self, path, format=format, mask=mask)


def load(path: str | os.PathLike[str]) -> Report:
    """Read a report written by ``Report.save`` (or ``to_json``): JSON only, never pickle.

    The report has everything the saved one had except the objects
    themselves: ``leak.object`` is None. A missing file raises
    ``FileNotFoundError``; a file that is not a valid report (not JSON,
    another format or version, a field missing or of the wrong type) raises
    ``ReportFormatError`` naming the file and the field.
    """
    name = path_argument(path, "load()")
    with open(name, "rb") as handle:
        raw = handle.read()
    return loads(raw, source=name)


def loads(text: str | bytes, *, source: str = "<string>") -> Report:
    """A report from JSON text (as ``to_json`` and ``save`` write it)."""
    reader = _Reader(source)
    if isinstance(text, bytes):
        if text[:1] == b"\x80":
            reader.fail(
                "", "this looks like a Python pickle; reftrace reads JSON and never unpickles"
            )
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            reader.fail("", f"not UTF-8 text (invalid byte at offset {error.start})")
    if not isinstance(text, str):
        raise TypeError(f"loads() needs str or bytes, got {type(text).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        reader.fail("", f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})")
    except RecursionError:
        reader.fail("", "not valid JSON for a report: nested too deeply")
    except ValueError as error:
        reader.fail("", f"not valid JSON: {error}")
    return reader.report(data)


# -- reading saved reports ------------------------------------------------------------

_STATUSES = ("old", "new", "unknown")


def _type_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


class _Reader:
    """Checks and converts saved data, naming the field of any mistake (no recursion)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> NoReturn:
        raise ReportFormatError(self.source, where, problem)

    def obj(self, value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected an object, got {_type_of(value)}")
        return value

    def get(self, data: dict[str, Any], key: str, where: str) -> Any:
        if key not in data:
            self.fail(_at(where, key), "missing")
        return data[key]

    def str_(self, data: dict[str, Any], key: str, where: str) -> str:
        value = self.get(data, key, where)
        if not isinstance(value, str):
            self.fail(_at(where, key), f"expected str, got {_type_of(value)}")
        return value

    def opt_str(self, data: dict[str, Any], key: str, where: str) -> str | None:
        value = self.get(data, key, where)
        if value is not None and not isinstance(value, str):
            self.fail(_at(where, key), f"expected str or null, got {_type_of(value)}")
        return value

    def int_(self, data: dict[str, Any], key: str, where: str) -> int:
        value = self.get(data, key, where)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(_at(where, key), f"expected int, got {_type_of(value)}")
        if value < 0:
            self.fail(_at(where, key), f"expected a count (0 or more), got {value}")
        return value

    def bool_(self, data: dict[str, Any], key: str, where: str) -> bool:
        value = self.get(data, key, where)
        if not isinstance(value, bool):
            self.fail(_at(where, key), f"expected bool, got {_type_of(value)}")
        return value

    def list_(self, data: dict[str, Any], key: str, where: str) -> list[Any]:
        value = self.get(data, key, where)
        if not isinstance(value, list):
            self.fail(_at(where, key), f"expected a list, got {_type_of(value)}")
        return value

    def dict_(self, data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        return self.obj(self.get(data, key, where), _at(where, key))

    def pair(self, value: object, where: str) -> tuple[str, int]:
        if not isinstance(value, list) or len(value) != 2:
            self.fail(where, f"expected a [name, count] pair, got {_type_of(value)}")
        name, count = value
        if not isinstance(name, str):
            self.fail(f"{where}[0]", f"expected str, got {_type_of(name)}")
        if isinstance(count, bool) or not isinstance(count, int):
            self.fail(f"{where}[1]", f"expected int, got {_type_of(count)}")
        return name, count

    # -- the parts of a report --

    def root(self, value: object, where: str) -> Root:
        data = self.obj(value, where)
        return Root(
            kind=self.str_(data, "kind", where),
            name=self.str_(data, "name", where),
            function=self.str_(data, "function", where),
            filename=self.str_(data, "filename", where),
            lineno=self.int_(data, "lineno", where),
        )

    def step(self, value: object, where: str) -> Step:
        data = self.obj(value, where)
        status = self.str_(data, "status", where)
        if status not in _STATUSES:
            self.fail(
                _at(where, "status"), f"expected one of {', '.join(_STATUSES)}, got {status!r}"
            )
        return Step(
            label=self.str_(data, "label", where),
            kind=self.str_(data, "kind", where),
            code=self.str_(data, "code", where),
            type_name=self.str_(data, "type", where),
            status=status,
            is_suspect=self.bool_(data, "suspect", where),
            detail=self.str_(data, "detail", where),
            # absent from reports saved before it existed
            module=self.str_(data, "module", where) if "module" in data else "",
        )

    def store_site(self, value: object, where: str) -> StoreSite:
        data = self.obj(value, where)
        frames = []
        for i, item in enumerate(self.list_(data, "frames", where)):
            at = f"{_at(where, 'frames')}[{i}]"
            frame = self.obj(item, at)
            frames.append(
                Frame(
                    filename=self.str_(frame, "filename", at),
                    lineno=self.int_(frame, "lineno", at),
                    function=self.str_(frame, "function", at),
                    code=self.str_(frame, "code", at),
                )
            )
        user = self.int_(data, "user", where)
        if not frames or not 0 <= user < len(frames):
            self.fail(_at(where, "user"), f"expected an index into {len(frames)} frames")
        return StoreSite(tuple(frames), user)

    def proof(self, value: object, where: str) -> Proof:
        data = self.obj(value, where)
        types = self.list_(data, "freed_types", where)
        seconds = self.get(data, "seconds", where)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            self.fail(_at(where, "seconds"), f"expected a number, got {_type_of(seconds)}")
        return Proof(
            status=self.str_(data, "status", where),
            cut=self.str_(data, "cut", where),
            reason=self.str_(data, "reason", where),
            freed_objects=self.int_(data, "freed_objects", where),
            freed_bytes=self.int_(data, "freed_bytes", where),
            freed_leaks=self.int_(data, "freed_leaks", where),
            leaks=self.int_(data, "leaks", where),
            freed_types=[
                self.pair(t, f"{_at(where, 'freed_types')}[{i}]") for i, t in enumerate(types)
            ],
            remaining=self.path({"path": data.get("remaining")}, _at(where, "remaining")),
            seconds=float(seconds),
        )

    def path(self, data: dict[str, Any], where: str) -> Path | None:
        value = self.get(data, "path", where)
        if value is None:
            return None
        where = _at(where, "path")
        path = self.obj(value, where)
        root = self.root(self.get(path, "root", where), _at(where, "root"))
        steps = self.list_(path, "steps", where)
        at = _at(where, "steps")
        return Path(root, tuple([self.step(step, f"{at}[{i}]") for i, step in enumerate(steps)]))

    def leak(self, value: object, where: str) -> Leak:
        data = self.obj(value, where)
        return Leak(
            type_name=self.str_(data, "type", where),
            path=self.path(data, where),
            signature=self.str_(data, "signature", where),
            size=self.int_(data, "size", where),
            objects=self.int_(data, "objects", where),
            allocated_at=self.opt_str(data, "allocated_at", where),
            reason=self.str_(data, "reason", where),
        )

    def survivor(self, value: object, where: str) -> SurvivorGroup:
        data = self.obj(value, where)
        types = self.list_(data, "top_types", where)
        at = _at(where, "top_types")
        return SurvivorGroup(
            attachment=self.str_(data, "attachment", where),
            holder_type=self.str_(data, "holder_type", where),
            edge=self.str_(data, "edge", where),
            path=self.path(data, where),
            count=self.int_(data, "count", where),
            size=self.int_(data, "size", where),
            top_types=[self.pair(t, f"{at}[{i}]") for i, t in enumerate(types)],
            reason=self.str_(data, "reason", where),
            stored_at=(
                self.store_site(data["stored_at"], _at(where, "stored_at"))
                if data.get("stored_at") is not None
                else None
            ),
            holder_length=(
                self.int_(data, "holder_length", where)
                if data.get("holder_length") is not None
                else None
            ),
        )

    def allocation(self, value: object, where: str) -> Allocation:
        data = self.obj(value, where)
        frames = self.list_(data, "traceback", where)
        at = _at(where, "traceback")
        for i, frame in enumerate(frames):
            if not isinstance(frame, str):
                self.fail(f"{at}[{i}]", f"expected str, got {_type_of(frame)}")
        return Allocation(
            site=self.str_(data, "site", where),
            size=self.int_(data, "size", where),
            count=self.int_(data, "count", where),
            traceback=tuple(frames),
        )

    def report(self, value: object) -> Report:
        data = self.obj(value, "")
        if "format" not in data:
            self.fail("format", f"missing: not a reftrace report (expected {FORMAT_NAME!r})")
        if data["format"] != FORMAT_NAME:
            self.fail("format", f"expected {FORMAT_NAME!r}, got {data['format']!r:.80}")
        version = self.get(data, "version", "")
        if isinstance(version, bool) or not isinstance(version, int):
            self.fail("version", f"expected int, got {_type_of(version)}")
        if version != FORMAT_VERSION:
            self.fail(
                "version", f"unsupported version {version}: this reftrace reads {FORMAT_VERSION}"
            )
        notes = self.list_(data, "notes", "")
        for i, note in enumerate(notes):
            if not isinstance(note, str):
                self.fail(f"notes[{i}]", f"expected str, got {_type_of(note)}")
        timings: dict[str, float] = {}
        for name, seconds in self.dict_(data, "timings", "").items():
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                self.fail(f"timings[{name!r:.80}]", f"expected a number, got {_type_of(seconds)}")
            timings[name] = seconds
        finding_sizes: dict[str, tuple[int, int]] = {}
        for signature, sizes in self.dict_(data, "finding_sizes", "").items():
            where = f"finding_sizes[{signature!r:.80}]"
            if not isinstance(sizes, list) or len(sizes) != 2:
                self.fail(where, f"expected a [bytes, objects] pair, got {_type_of(sizes)}")
            if not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
                self.fail(where, "expected two ints")
            finding_sizes[signature] = (sizes[0], sizes[1])
        proofs: dict[str, Proof] = {}
        # absent from reports saved before proofs existed
        saved = self.dict_(data, "proofs", "") if "proofs" in data else {}
        for signature, value in saved.items():
            proofs[signature] = self.proof(value, f"proofs[{signature!r:.80}]")
        stores: dict[str, StoreSite] = {}
        saved = self.dict_(data, "stores", "") if "stores" in data else {}
        for signature, value in saved.items():
            stores[signature] = self.store_site(value, f"stores[{signature!r:.80}]")
        leaks = self.list_(data, "leaks", "")
        survivors = self.list_(data, "survivors", "")
        allocations = self.list_(data, "allocations", "")
        return Report(
            leaks=[self.leak(leak, f"leaks[{i}]") for i, leak in enumerate(leaks)],
            survivors=[self.survivor(s, f"survivors[{i}]") for i, s in enumerate(survivors)],
            allocations=[
                self.allocation(a, f"allocations[{i}]") for i, a in enumerate(allocations)
            ],
            tracked=self.int_(data, "tracked", ""),
            collected=self.int_(data, "collected", ""),
            new_objects=self.int_(data, "new_objects", ""),
            notes=list(notes),
            timings=timings,
            finding_sizes=finding_sizes,
            proofs=proofs,
            stores=stores,
            handles=self.int_(data, "handles", ""),
        )


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _html_safe(text: str) -> str:
    # In JSON text these characters can only occur inside strings, where the
    # escapes mean the same characters.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def weak_handle(obj: object) -> Callable[[], Any] | None:
    """A weak reference to ``obj``, or None when it cannot be weakly referenced."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return None
