"""The result of a soak: plain data, with the verdict and what grew.

``reftrace.soak()`` builds a ``SoakReport``; the renderers (text, HTML, SVG)
read it and nothing else. Like a watch's report, it keeps no strong
reference to an object of the program.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from reftrace import views
from reftrace.bounds import Bound
from reftrace.redact import mask_data
from reftrace.report import Leak, Path, Report, StoreSite
from reftrace.stats import Trend

Verdict = Literal["leaking", "not leaking", "inconclusive"]
Confidence = Literal["high", "medium", "low"]
ContainerStatus = Literal["unbounded", "filling", "bounded", "declared", "weak"]

#: What ``str(sr)`` projects: the memory these many iterations would keep.
PROJECTIONS = (1_000, 10_000, 100_000)


@dataclass(frozen=True)
class TypeGrowth:
    """How many more objects of one type each iteration leaves alive.

    For types the gc tracks, ``per_iteration`` is the Theil-Sen slope of the
    type's live count over the judged iterations and ``bytes_per_iteration``
    that times the mean shallow size of its instances. Types the gc does not
    track (``str``, ``int``, atomic tuples) cannot be counted on the heap;
    they appear with ``tracked=False`` when they are items the growing
    containers gained in the sampled iteration, counted there.
    """

    name: str
    per_iteration: float
    bytes_per_iteration: float
    count: int
    tracked: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``SoakReport.to_dict`` masks the strings of all its parts."""
        return {
            "type": self.name,
            "per_iteration": self.per_iteration,
            "bytes_per_iteration": self.bytes_per_iteration,
            "count": self.count,
            "tracked": self.tracked,
        }


@dataclass
class GrowingContainer:
    """A ``dict``, ``list``, ``set`` or ``deque`` that grew at every checkpoint.

    ``path`` leads to it from a root (None when none was found; ``reason``
    says why). ``lengths`` holds ``(iteration, length)`` at each checkpoint.
    ``bound`` is what limits it, where something declares a limit; ``weak``
    says it holds only weak references. ``kept_objects`` and ``kept_bytes``
    are what the items it gained in the sampled call keep alive;
    ``item_types`` counts those items, and ``samples`` are the leak traces of
    a few of them.
    """

    type_name: str
    path: Path | None
    lengths: list[tuple[int, int]]
    per_iteration: float
    item_types: list[tuple[str, int]] = field(default_factory=list)
    samples: list[Leak] = field(default_factory=list)
    reason: str = ""
    #: the line that stored into it during the sampled call, with its callers
    stored_at: StoreSite | None = None
    bound: Bound | None = None
    weak: bool = False
    kept_objects: int = 0
    kept_bytes: int = 0
    #: what ``lengths`` count: ``"items"``, or ``"bytes"`` for a string or buffer that grows
    unit: Literal["items", "bytes"] = "items"

    @property
    def length(self) -> int:
        """Its length at the last checkpoint."""
        return self.lengths[-1][1] if self.lengths else 0

    @property
    def status(self) -> ContainerStatus:
        """``unbounded`` (a holder: the leak), ``filling`` (a declared limit
        not reached yet), ``bounded`` (at its limit), ``declared`` (said
        bounded, no number) or ``weak`` (weak references only: a symptom)."""
        if self.weak:
            return "weak"
        bound = self.bound
        if bound is None or not bound.bounded:
            return "unbounded"
        if bound.limit is None:
            return "declared"
        return "bounded" if self.length >= bound.limit else "filling"

    @property
    def holder(self) -> bool:
        """True for a container that keeps what it gains alive with no limit."""
        return self.status == "unbounded"

    @property
    def expression(self) -> str:
        """The path as code from its root (``AGENT.events._listeners['chunk']``)."""
        return self.path.expression if self.path is not None else ""

    @property
    def name(self) -> str:
        """Where it is, as one expression: ``module.global...`` for a module root."""
        path = self.path
        if path is None:
            if self.bound is not None:
                return self.bound.owner
            return f"<{self.type_name} with no path from a root>"
        if path.root.kind == "module":
            if not path.steps:
                return f"{path.root.name} (the module's globals)"
            return f"{path.root.name}.{path.expression}"
        if path.root.kind == "frame" and path.steps:
            return f"{path.steps[0].code}{''.join(s.code for s in path.steps[1:])}"
        return path.expression or f"<{self.type_name}>"

    def describe(self) -> str:
        """One line: what kind of growth this is (``filling: 40 of 128, ...``)."""
        if self.weak:
            return "weak references only: a symptom of growth elsewhere, never the holder"
        if self.bound is not None:
            return self.bound.describe(self.length)
        return "no declared bound"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``SoakReport.to_dict`` masks the strings of all its parts."""
        return {
            "name": self.name,
            "type": self.type_name,
            "expression": self.expression,
            "path": self.path.to_dict() if self.path is not None else None,
            "reason": self.reason,
            "lengths": [list(pair) for pair in self.lengths],
            "per_iteration": self.per_iteration,
            "status": self.status,
            "bound": self.bound.to_dict() if self.bound is not None else None,
            "weak": self.weak,
            "kept_objects": self.kept_objects,
            "kept_bytes": self.kept_bytes,
            "unit": self.unit,
            "item_types": [list(pair) for pair in self.item_types],
            "samples": [leak.to_dict() for leak in self.samples],
            "stored_at": self.stored_at.to_dict() if self.stored_at is not None else None,
        }


@dataclass(frozen=True)
class SiteGrowth:
    """Memory one source line allocated in the sampled call that was still in use after it."""

    site: str
    bytes_per_iteration: float
    blocks_per_iteration: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``SoakReport.to_dict`` masks the strings of all its parts."""
        return {
            "site": self.site,
            "bytes_per_iteration": self.bytes_per_iteration,
            "blocks_per_iteration": self.blocks_per_iteration,
        }


@dataclass(frozen=True)
class Projection:
    """What ``iterations`` more iterations would keep at the measured rate."""

    iterations: int
    objects: int
    bytes: int
    items: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``SoakReport.to_dict`` masks the strings of all its parts."""
        return {
            "iterations": self.iterations,
            "objects": self.objects,
            "bytes": self.bytes,
            "items": self.items,
        }


@dataclass
class SoakReport(views.Shown):
    """What ``reftrace.soak()`` measured, and its verdict.

    ``verdict`` is ``"leaking"``, ``"not leaking"`` or ``"inconclusive"``;
    ``confidence`` (``"high"``, ``"medium"``, ``"low"``) and ``reason`` (one
    line) say how sure that is and why. ``objects[k]``, ``blocks[k]`` and
    ``malloc[k]`` were measured after call ``k`` (``k = 0``: before the first
    call); ``malloc`` is empty where it cannot be read. ``iterations`` calls
    ran: the ``requested`` ones and those the soak added to decide.
    ``containers`` are the containers that grew to the end, the holders
    first; ``stopped`` those that grew for a while and then stopped (a cache
    that filled).
    """

    verdict: Verdict
    confidence: Confidence
    reason: str
    iterations: int
    requested: int
    warmup: int
    objects: list[int]
    blocks: list[int]
    malloc: list[int]
    objects_trend: Trend
    blocks_trend: Trend
    malloc_trend: Trend | None
    types: list[TypeGrowth] = field(default_factory=list)
    containers: list[GrowingContainer] = field(default_factory=list)
    stopped: list[GrowingContainer] = field(default_factory=list)
    sites: list[SiteGrowth] = field(default_factory=list)
    #: the report of the extra call run under ``reftrace.watch()`` (when it grew)
    sample: Report | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: the checkpoints at which container lengths were compared
    checkpoints: list[int] = field(default_factory=list)
    #: the iterations after which the evidence was weighed
    stages: list[int] = field(default_factory=list)
    #: bytes one call keeps, from what the sampled call left at the holders
    bytes_per_iteration: float = 0.0
    #: what to run to settle an inconclusive verdict
    settle: str = ""
    #: what one iteration is, as the text says it: ``"call"`` for ``soak()``,
    #: ``"sample"`` for a process watched over time
    unit: str = "call"

    @property
    def leaking(self) -> bool:
        """True when the verdict is ``leaking``."""
        return self.verdict == "leaking"

    @property
    def inconclusive(self) -> bool:
        """True when the budget ran out before the evidence decided."""
        return self.verdict == "inconclusive"

    @property
    def extra(self) -> int:
        """Calls the soak ran beyond the requested ones, to decide."""
        return self.iterations - self.requested

    @property
    def holders(self) -> list[GrowingContainer]:
        """The growing containers with no bound that hold what they gain."""
        return [c for c in self.containers if c.holder]

    @property
    def per_iteration(self) -> tuple[float, float]:
        """(objects, bytes) each iteration keeps, at the judged rate."""
        return self.objects_trend.per_iteration, self.bytes_per_iteration

    def projection(self, iterations: Sequence[int] = PROJECTIONS) -> list[Projection]:
        """What each number of further iterations would keep, at the judged rate.

        Rates that are not positive project to zero: a series that does not
        grow keeps nothing more.
        """
        objects, memory = self.per_iteration
        items = sum(max(c.per_iteration, 0.0) for c in self.holders)
        return [
            Projection(
                n, round(max(objects, 0.0) * n), round(max(memory, 0.0) * n), round(items * n)
            )
            for n in iterations
        ]

    def __bool__(self) -> bool:
        # Never let `if sr:` mean "is leaking" by accident.
        return True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; every string from the program is masked (``reftrace.set_masking``)."""

        data = {
            "verdict": self.verdict,
            "leaking": self.leaking,
            "confidence": self.confidence,
            "reason": self.reason,
            "settle": self.settle,
            "iterations": self.iterations,
            "requested": self.requested,
            "warmup": self.warmup,
            "objects": list(self.objects),
            "blocks": list(self.blocks),
            "malloc": list(self.malloc),
            "objects_trend": self.objects_trend.to_dict(),
            "blocks_trend": self.blocks_trend.to_dict(),
            "malloc_trend": self.malloc_trend.to_dict() if self.malloc_trend else None,
            "bytes_per_iteration": self.bytes_per_iteration,
            "types": [t.to_dict() for t in self.types],
            "containers": [c.to_dict() for c in self.containers],
            "stopped": [c.to_dict() for c in self.stopped],
            "sites": [s.to_dict() for s in self.sites],
            "projection": [p.to_dict() for p in self.projection()],
            "checkpoints": list(self.checkpoints),
            "stages": list(self.stages),
            "sample": self.sample.to_dict() if self.sample is not None else None,
            "notes": list(self.notes),
            "timings": dict(self.timings),
            "unit": self.unit,
        }
        masked = mask_data(data)
        assert isinstance(masked, dict)
        return masked

    def to_json(self, **kwargs: Any) -> str:
        """``to_dict()`` as JSON text; ``kwargs`` go to ``json.dumps``."""
        return json.dumps(self.to_dict(), **kwargs)

    def render(self, path: str, format: str | None = None) -> str:
        """Write an SVG: growth over the iterations, and the retention graph
        of the growing containers. Returns the path written."""
        return views.write(self, path, format=format)
