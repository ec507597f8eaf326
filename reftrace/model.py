"""What a finding is made of: plain data describing what a block left behind.

Everything here is a description (types, labels, sizes, sites). Nothing
keeps a strong reference to an object of the watched program: a leaked
object is handed out only through a weak reference (``Leak.object``), so
building or keeping a result never makes a leak permanent. The kinds and
statuses are ``Literal`` types; JSON keeps them as strings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from reftrace import views
from reftrace.redact import JSON_LIMIT, bound, masking_enabled

#: What keeps the start of a path alive (see :class:`Root`).
RootKind = Literal["module", "frame", "exception", "hidden"]
#: What sort of reference a step is (see :class:`Step`).
EdgeKind = Literal[
    "global",
    "local",
    "attr",
    "key",
    "index",
    "item",
    "dictkey",
    "cell",
    "self",
    "func",
    "slot",
    "frame",
    "referent",
    "exception",
    "hidden",
]
#: Whether an object was alive before the block (see :class:`Step`).
Age = Literal["old", "new", "unknown"]
#: What cutting a finding's suspect reference showed (see :class:`Proof`).
ProofStatus = Literal["confirmed", "not sufficient", "unavailable"]


def resolve_mask(mask: bool | None) -> bool:
    """``mask`` as given, or the process-wide setting when None (``set_masking``)."""
    if mask is None:
        return masking_enabled()
    if not isinstance(mask, bool):
        raise TypeError(f"mask must be a bool or None, got {type(mask).__name__}")
    return mask


def json_text(text: str, mask: bool) -> str:
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

    kind: RootKind
    name: str
    function: str = ""
    filename: str = ""
    lineno: int = 0

    def describe(self) -> str:
        """The root in words: ``module x``, ``thread MainThread, f (x.py:3)``, ..."""
        if self.kind == "module":
            return f"module {self.name}"
        if self.kind == "frame":
            return f"thread {self.name}, {self.function} ({self.filename}:{self.lineno})"
        if self.kind == "exception":
            return "the exception propagating out of the watched block"
        return "a reference the gc cannot see (C code, a frozen or untracked container)"

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        """JSON-ready; every string from the program masked (``mask``, else the
        process setting) and bounded."""
        m = resolve_mask(mask)
        return {
            "kind": json_text(self.kind, m),
            "name": json_text(self.name, m),
            "function": json_text(self.function, m),
            "filename": json_text(self.filename, m),
            "lineno": self.lineno,
        }


@dataclass(frozen=True)
class Step:
    """One reference on a path: the edge ``label`` and the object it reaches.

    ``kind`` says what sort of reference it is (``global``, ``local``, ``attr``,
    ``key``, ``index``, ``item``, ``dictkey``, ``cell``, ``self``, ``func``,
    ``slot``, ``frame``, ``referent``; a path's first step from an exception
    or a hidden root is ``exception`` or ``hidden``), so renderers and
    programs can match on it. ``code`` is the same edge written as a Python expression fragment
    (``.events``, ``['chunk']``, ``.__closure__[0].cell_contents``).
    ``status`` is ``"old"`` (alive before the block), ``"new"`` (created in it)
    or ``"unknown"`` (an object the gc does not track, whose age cannot be told).
    ``module`` is the ``__module__`` of the object's type (``"builtins"`` for
    ``dict``), which tells a program's ``Config`` from a library's.
    """

    label: str
    kind: EdgeKind
    code: str
    type_name: str
    status: Age
    is_suspect: bool = False
    detail: str = ""
    module: str = ""

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        """JSON-ready; every string from the program masked (``mask``, else the
        process setting) and bounded."""
        m = resolve_mask(mask)
        return {
            "label": json_text(self.label, m),
            "kind": json_text(self.kind, m),
            "code": json_text(self.code, m),
            "type": json_text(self.type_name, m),
            "status": json_text(self.status, m),
            "suspect": self.is_suspect,
            "detail": json_text(self.detail, m),
            "module": json_text(self.module, m),
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
        """The edge labels, root first."""
        return [step.label for step in self.steps]

    @property
    def suspect(self) -> Step | None:
        """The first reference made inside the block, or None."""
        for step in self.steps:
            if step.is_suspect:
                return step
        return None

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        """JSON-ready; every step is kept, each string masked and bounded.

        ``expression`` is derived: the ``code`` of the steps, as written here.
        """
        m = resolve_mask(mask)
        steps = [step.to_dict(mask=m) for step in self.steps]
        return {
            "root": self.root.to_dict(mask=m),
            "expression": "".join(step["code"] for step in steps),
            "steps": steps,
        }


@dataclass
class Leak(views.Shown):
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
    #: returns the leaked object while it lives (a weak reference), else None
    handle: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def suspect(self) -> Step | None:
        """The reference created inside the block that attaches the leak to old objects."""
        return self.path.suspect if self.path else None

    @property
    def object(self) -> Any:
        """The leaked object if it is still alive and weakly referenceable, else None."""
        return self.handle() if self.handle is not None else None

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        """JSON-ready; every string from the program masked (``mask``, else the
        process setting) and bounded."""
        m = resolve_mask(mask)
        return {
            "type": json_text(self.type_name, m),
            "signature": json_text(self.signature, m),
            "size": self.size,
            "objects": self.objects,
            "allocated_at": None if self.allocated_at is None else json_text(self.allocated_at, m),
            "reason": json_text(self.reason, m),
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
        """``file:line``."""
        return f"{self.filename}:{self.lineno}"

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        """JSON-ready; every string from the program masked (``mask``, else the
        process setting) and bounded."""
        m = resolve_mask(mask)
        return {
            "filename": json_text(self.filename, m),
            "lineno": self.lineno,
            "function": json_text(self.function, m),
            "code": json_text(self.code, m),
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
        """JSON-ready; every string from the program masked (``mask``, else the
        process setting) and bounded."""
        m = resolve_mask(mask)
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

    status: ProofStatus
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
        """JSON-ready; every string from the program masked (``mask``, else the
        process setting) and bounded."""
        m = resolve_mask(mask)
        return {
            "status": json_text(self.status, m),
            "cut": json_text(self.cut, m),
            "reason": json_text(self.reason, m),
            "freed_objects": self.freed_objects,
            "freed_bytes": self.freed_bytes,
            "freed_leaks": self.freed_leaks,
            "leaks": self.leaks,
            "freed_types": [[json_text(name, m), n] for name, n in self.freed_types],
            "remaining": self.remaining.to_dict(mask=m) if self.remaining else None,
            "seconds": self.seconds,
        }


@dataclass
class Finding(views.Shown):
    """Leaks that share a signature (the same suspect reference): one finding."""

    signature: str
    leaks: list[Leak]
    #: bytes the group keeps, shared objects counted once (0: not measured)
    retained: int = 0
    #: objects the group keeps, counted the same way (0: not measured)
    retained_objects: int = 0
    #: the suspect reference tested by cutting it (``watch(prove=True)``)
    proof: Proof | None = None
    #: the line that stored the retaining reference (``reftrace.locate()``)
    stored_at: StoreSite | None = None

    @property
    def count(self) -> int:
        """How many leaked objects share this signature."""
        return len(self.leaks)

    @property
    def size(self) -> int:
        """Bytes the finding keeps: ``retained`` when measured, else its leaks' sizes."""
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

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        """JSON-ready; every string from the program masked (``mask``, else the
        process setting) and bounded."""
        m = resolve_mask(mask)
        return {
            "signature": json_text(self.signature, m),
            "count": self.count,
            "size": self.size,
            "types": [[json_text(name, m), n] for name, n in self.types],
            "proof": self.proof.to_dict(mask=m) if self.proof else None,
            "stored_at": self.stored_at.to_dict(mask=m) if self.stored_at else None,
        }


#: The name reports used for a finding before ``Finding``.
LeakGroup = Finding


def group_leaks(
    leaks: list[Leak],
    sizes: dict[str, tuple[int, int]] | None = None,
    proofs: dict[str, Proof] | None = None,
    stores: dict[str, StoreSite] | None = None,
) -> list[Finding]:
    """``leaks`` as findings, one per signature, largest first; ``sizes``
    (bytes and objects), ``proofs`` and ``stores`` are by signature."""
    groups: dict[str, Finding] = {}
    for leak in leaks:
        group = groups.get(leak.signature)
        if group is None:
            group = groups[leak.signature] = Finding(leak.signature, [])
            retained = (sizes or {}).get(leak.signature)
            if retained is not None:
                group.retained, group.retained_objects = retained
            group.proof = (proofs or {}).get(leak.signature)
            group.stored_at = (stores or {}).get(leak.signature)
        group.leaks.append(leak)
    return sorted(groups.values(), key=lambda g: (-g.size, -g.count))


@dataclass
class SurvivorGroup(views.Shown):
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

    def to_dict(self, *, mask: bool | None = None) -> dict[str, Any]:
        """JSON-ready; every string from the program masked (``mask``, else the
        process setting) and bounded."""
        m = resolve_mask(mask)
        return {
            "attachment": json_text(self.attachment, m),
            "holder_type": json_text(self.holder_type, m),
            "edge": json_text(self.edge, m),
            "count": self.count,
            "size": self.size,
            "top_types": [[json_text(name, m), n] for name, n in self.top_types],
            "reason": json_text(self.reason, m),
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
        """JSON-ready; every string from the program masked (``mask``, else the
        process setting) and bounded."""
        m = resolve_mask(mask)
        return {
            "site": json_text(self.site, m),
            "size": self.size,
            "count": self.count,
            "traceback": [json_text(frame, m) for frame in self.traceback],
        }
