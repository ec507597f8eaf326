"""The report: plain data describing what a watched block left behind.

Everything here is a description (types, labels, sizes, sites). A report keeps
no strong reference to any object of the watched program: a leaked object is
handed out only through a weak reference (``Leak.object``), so building or
keeping a report never makes a leak permanent. Renderers read these classes
and nothing else.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "function": self.function,
            "filename": self.filename,
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
    """

    label: str
    kind: str
    code: str
    type_name: str
    status: str
    is_suspect: bool = False
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "code": self.code,
            "type": self.type_name,
            "status": self.status,
            "suspect": self.is_suspect,
            "detail": self.detail,
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root.to_dict(),
            "expression": self.expression,
            "steps": [step.to_dict() for step in self.steps],
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
        from reftrace.renderers.text import render_leak

        return render_leak(self, count=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "signature": self.signature,
            "size": self.size,
            "objects": self.objects,
            "allocated_at": self.allocated_at,
            "reason": self.reason,
            "path": self.path.to_dict() if self.path else None,
        }


@dataclass
class LeakGroup:
    """Leaks that share a signature (the same suspect reference): one finding."""

    signature: str
    leaks: list[Leak]
    #: bytes the group keeps, shared objects counted once (0: not measured)
    retained: int = 0

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
        from reftrace.renderers.text import render_group

        return render_group(self)


@dataclass
class SurvivorGroup:
    """New objects still alive after the block, attached to the old heap at one place.

    ``holder_type`` and ``edge`` name where: the old object and the reference
    from it (``[*]`` when the block added several items to one container).
    ``path`` leads from a root to the new objects through that reference.
    """

    attachment: str
    holder_type: str
    edge: str
    path: Path | None
    count: int
    size: int
    top_types: list[tuple[str, int]]
    reason: str = ""

    def __str__(self) -> str:
        from reftrace.renderers.text import render_survivor_group

        return render_survivor_group(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attachment": self.attachment,
            "holder_type": self.holder_type,
            "edge": self.edge,
            "count": self.count,
            "size": self.size,
            "top_types": [list(t) for t in self.top_types],
            "reason": self.reason,
            "path": self.path.to_dict() if self.path else None,
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "size": self.size,
            "count": self.count,
            "traceback": list(self.traceback),
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
        return sorted(groups.values(), key=lambda g: (-g.size, -g.count))

    @property
    def survivor_count(self) -> int:
        return sum(group.count for group in self.survivors)

    def __str__(self) -> str:
        from reftrace.renderers.text import render_report

        return render_report(self)

    def __bool__(self) -> bool:
        # A report is always a report, even when clean: never let `if report:`
        # mean "has leaks" by accident.
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "leaks": [leak.to_dict() for leak in self.leaks],
            "leak_groups": [
                {
                    "signature": g.signature,
                    "count": g.count,
                    "size": g.size,
                    "types": [list(t) for t in g.types],
                }
                for g in self.leak_groups
            ],
            "handles": self.handles,
            "survivors": [group.to_dict() for group in self.survivors],
            "allocations": [a.to_dict() for a in self.allocations],
            "tracked": self.tracked,
            "collected": self.collected,
            "new_objects": self.new_objects,
            "notes": list(self.notes),
            "timings": dict(self.timings),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def render(self, path: str, format: str | None = None) -> str:
        """Draw the retention graph of the leaks (or survivors) to ``path``.

        The format comes from the file suffix (``.svg``, ``.png``, ``.dot``)
        unless given. Returns the path written.
        """
        from reftrace.renderers.graph import render_report_graph

        return render_report_graph(self, path, format=format)


def weak_handle(obj: object) -> Callable[[], Any] | None:
    """A weak reference to ``obj``, or None when it cannot be weakly referenced."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return None
