"""The result of a soak: plain data, with the verdict and what grew.

``reftrace.soak()`` builds a ``SoakReport``; the renderers (text, HTML, SVG)
read it and nothing else. Like a watch's report, it keeps no strong
reference to an object of the program.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from reftrace import views
from reftrace.bounds import Bound, BoundKind
from reftrace.redact import mask_data
from reftrace.report import Leak, Path, Reader, Report, ReportFormatError, StoreSite
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

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<data>") -> SoakReport:
        """A soak report rebuilt from ``to_dict()`` data (after ``json.loads``).

        Every field is checked; ``ReportFormatError`` names ``source`` and the
        field that is wrong. What ``to_dict`` derives (``leaking``,
        ``projection``, a container's ``name``, ``expression`` and
        ``status``) is not read back: it is derived again.
        """
        return SoakReader(source).soak_report(data)

    def render(self, path: str, format: str | None = None) -> str:
        """Write an SVG: growth over the iterations, and the retention graph
        of the growing containers. Returns the path written."""
        return views.write(self, path, format=format)


def loads(text: str | bytes, *, source: str = "<string>") -> SoakReport:
    """A soak report from JSON text, as ``SoakReport.to_json`` writes it.

    Raises ``ReportFormatError`` naming ``source`` and the field when the
    text is not JSON or not a valid soak report.
    """
    return SoakReport.from_dict(json_value(text, source=source), source=source)


def json_value(text: str | bytes, *, source: str) -> Any:
    """``text`` (UTF-8 bytes or str) parsed as JSON; ``ReportFormatError`` naming
    ``source`` when it is not."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ReportFormatError(
                source, "", f"not UTF-8 text (invalid byte at offset {error.start})"
            ) from None
    if not isinstance(text, str):
        raise TypeError(f"loads() needs str or bytes, got {type(text).__name__}")
    try:
        return json.loads(text)
    except RecursionError:
        raise ReportFormatError(source, "", "not valid JSON: nested too deeply") from None
    except ValueError as error:
        raise ReportFormatError(source, "", f"not valid JSON: {error}") from None


_T = TypeVar("_T")

#: What one iteration may be called: a short lowercase word or two (shown as is).
_UNIT = re.compile(r"[a-z]+(?:[ -][a-z]+)?")


class SoakReader(Reader):
    """Reads the parts of a soak report, on top of a saved report's checks."""

    def trend(self, value: object, where: str) -> Trend:
        """A counter's trend (``Trend.to_dict``)."""
        data = self.obj(value, where)
        return Trend(
            name=self.str_(data, "name", where),
            per_iteration=self.float_(data, "per_iteration", where),
            window=self.int_(data, "window", where),
            grew=self.int_(data, "grew", where),
            shrank=self.int_(data, "shrank", where),
            change=self.int_(data, "change", where, signed=True),
            p_value=self.float_(data, "p_value", where),
            growing=self.bool_(data, "growing", where),
            early=self.int_(data, "early", where, signed=True),
            late=self.int_(data, "late", where, signed=True),
            regular=self.bool_(data, "regular", where),
        )

    def bound(self, data: dict[str, Any], where: str) -> Bound | None:
        """``data["bound"]``: what limits a container, or None for null."""
        value = self.get(data, "bound", where)
        if value is None:
            return None
        where = self.at(where, "bound")
        bound = self.obj(value, where)
        return Bound(
            kind=self.choice(bound, "kind", where, BoundKind),
            limit=self.opt_int(bound, "limit", where),
            owner=self.str_(bound, "owner", where),
        )

    def lengths(self, data: dict[str, Any], where: str) -> list[tuple[int, int]]:
        """A container's ``[iteration, length]`` pairs: at least one."""
        at = self.at(where, "lengths")
        out: list[tuple[int, int]] = []
        for i, pair in enumerate(self.list_(data, "lengths", where)):
            if not isinstance(pair, list) or len(pair) != 2:
                self.fail(f"{at}[{i}]", "expected an [iteration, length] pair")
            out.append(
                (self.int_value(pair[0], f"{at}[{i}][0]"), self.int_value(pair[1], f"{at}[{i}][1]"))
            )
        if not out:
            self.fail(at, "expected at least one [iteration, length] pair")
        return out

    def container(self, value: object, where: str) -> GrowingContainer:
        """One growing (or stopped) container."""
        data = self.obj(value, where)
        # derived from the rest: checked, not kept
        self.choice(data, "status", where, ContainerStatus)
        item_types = self.list_(data, "item_types", where)
        samples = self.list_(data, "samples", where)
        stored = self.get(data, "stored_at", where)
        return GrowingContainer(
            type_name=self.str_(data, "type", where),
            path=self.path(data, where),
            lengths=self.lengths(data, where),
            per_iteration=self.float_(data, "per_iteration", where),
            item_types=[
                self.pair(t, f"{self.at(where, 'item_types')}[{i}]")
                for i, t in enumerate(item_types)
            ],
            samples=[
                self.leak(leak, f"{self.at(where, 'samples')}[{i}]")
                for i, leak in enumerate(samples)
            ],
            reason=self.str_(data, "reason", where),
            stored_at=(
                None if stored is None else self.store_site(stored, self.at(where, "stored_at"))
            ),
            bound=self.bound(data, where),
            weak=self.bool_(data, "weak", where),
            kept_objects=self.int_(data, "kept_objects", where),
            kept_bytes=self.int_(data, "kept_bytes", where),
            unit=self.choice(data, "unit", where, Literal["items", "bytes"]),
        )

    def type_growth(self, value: object, where: str) -> TypeGrowth:
        """One type's growth."""
        data = self.obj(value, where)
        return TypeGrowth(
            name=self.str_(data, "type", where),
            per_iteration=self.float_(data, "per_iteration", where),
            bytes_per_iteration=self.float_(data, "bytes_per_iteration", where),
            count=self.int_(data, "count", where),
            tracked=self.bool_(data, "tracked", where),
        )

    def site(self, value: object, where: str) -> SiteGrowth:
        """One allocation site's growth."""
        data = self.obj(value, where)
        return SiteGrowth(
            site=self.str_(data, "site", where),
            bytes_per_iteration=self.float_(data, "bytes_per_iteration", where),
            blocks_per_iteration=self.float_(data, "blocks_per_iteration", where),
        )

    def items(self, data: dict[str, Any], key: str, read: Callable[[object, str], _T]) -> list[_T]:
        """Each item of the list ``data[key]``, read by ``read(item, where)``."""
        return [read(item, f"{key}[{i}]") for i, item in enumerate(self.list_(data, key, ""))]

    def soak_report(self, value: object) -> SoakReport:
        """A whole soak report, as ``SoakReport.to_dict`` writes it."""
        data = self.obj(value, "")
        objects = self.ints(data, "objects", "")
        blocks = self.ints(data, "blocks", "")
        # malloc's bytes in use, less the soak's own: below the first reading
        # when the program frees more than the soak keeps
        malloc = self.ints(data, "malloc", "", signed=True)
        warmup = self.int_(data, "warmup", "")
        if not objects:
            self.fail("objects", "expected at least one count")
        if len(blocks) != len(objects):
            self.fail("blocks", f"expected {len(objects)} counts, one per object count")
        if malloc and len(malloc) != len(objects):
            self.fail("malloc", f"expected none or {len(objects)} counts")
        if warmup >= len(objects):
            self.fail("warmup", f"expected fewer than the {len(objects)} counts, got {warmup}")
        malloc_trend = self.get(data, "malloc_trend", "")
        sample = self.get(data, "sample", "")
        # absent from reports written before soak reports said what an iteration is
        unit = self.str_(data, "unit", "") if "unit" in data else "call"
        if not _UNIT.fullmatch(unit) or len(unit) > 30:
            self.fail("unit", f"expected a short lowercase word, got {unit!r:.80}")
        return SoakReport(
            verdict=self.choice(data, "verdict", "", Verdict),
            confidence=self.choice(data, "confidence", "", Confidence),
            reason=self.str_(data, "reason", ""),
            iterations=self.int_(data, "iterations", ""),
            requested=self.int_(data, "requested", ""),
            warmup=warmup,
            objects=objects,
            blocks=blocks,
            malloc=malloc,
            objects_trend=self.trend(self.get(data, "objects_trend", ""), "objects_trend"),
            blocks_trend=self.trend(self.get(data, "blocks_trend", ""), "blocks_trend"),
            malloc_trend=(
                None if malloc_trend is None else self.trend(malloc_trend, "malloc_trend")
            ),
            types=self.items(data, "types", self.type_growth),
            containers=self.items(data, "containers", self.container),
            stopped=self.items(data, "stopped", self.container),
            sites=self.items(data, "sites", self.site),
            sample=None if sample is None else self.report(sample, "sample"),
            notes=self.strs(data, "notes", ""),
            timings=self.timings(data, "timings", ""),
            checkpoints=self.ints(data, "checkpoints", ""),
            stages=self.ints(data, "stages", ""),
            bytes_per_iteration=self.float_(data, "bytes_per_iteration", ""),
            settle=self.str_(data, "settle", ""),
            unit=unit,
        )
