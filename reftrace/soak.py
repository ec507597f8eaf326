"""``soak()``: run a lifecycle many times and tell a leak from memory that levels off.

Some retention stops by itself (a cache that fills, a pool that reaches its
size); a leak does not. ``soak(fn, iterations=N)`` calls ``fn`` N times and,
after each call, runs a full collection and measures:

- the number of live gc-tracked objects, by type (one pass over
  ``gc.get_objects()``);
- the bytes ``tracemalloc`` traces (traced from the start of the soak; what
  the soak itself keeps is measured and subtracted);
- at a few checkpoints, the length of every ``dict``, ``list``, ``set`` and
  ``deque`` that exists across them (including dicts the gc does not track,
  found through the objects that refer to them). Only containers that grew at
  every checkpoint are kept: the unbounded collections.

The first ``warmup`` calls fill caches and lazily made objects; only the
later part of the run after them is judged, the way CPython's reference leak
hunter judges only its last runs. A series is growing when it grew in every
judged interval, or when a Mann-Kendall test finds an upward trend (one-sided
p < 0.01) that rarely steps back; its rate per iteration is the Theil-Sen
slope (the median of all pairwise slopes), so one jump does not make a trend
and a cache that filled and then stopped has a slope of zero.

When the run is leaking, ``fn`` runs once more inside :func:`reftrace.watch`:
the new items the growing containers gain in that call are tracked, so each
comes with its leak trace, and the report of that call (``sr.sample``) says
what else it left behind. Every growing container gets its shortest path from
a root, found by the same search as a leak trace.

Cost per iteration: the call, one full ``gc.collect()`` and one pass over the
list of tracked objects (counted by type 256 at a time: with ``tracemalloc``
on, every int a count allocates is traced). The checkpoints add a few passes
per soak, all C-level pipelines (``compress`` over ``map``). At a million
objects that is about 1.5-2 ``gc.collect()`` per iteration in all;
``bench/bench_soak.py`` measures it.

Example::

    import reftrace

    LOG = []

    def handle_request():
        LOG.append([b"x" * 100 for _ in range(50)])

    sr = reftrace.soak(handle_request, iterations=30)
    assert sr.leaking
    print(sr.containers[0].name)    # __main__.LOG
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import math
import operator
import statistics
import sys
import time
import tracemalloc
import types
from array import array
from collections import Counter, deque
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from itertools import compress, filterfalse, repeat
from typing import Any, cast

from reftrace.analysis import make_path
from reftrace.heap import HeapView
from reftrace.locate import Slot, StoreTracer
from reftrace.objects import (
    _type_module,
    _type_qualname,
    class_attribute,
    is_own_file,
    referents_of_all,
    safe_sizeof,
    short_path,
    type_name,
    untrackable_reason,
)
from reftrace.paths import DEFAULT_MAX_DEPTH, Found, shortest_paths
from reftrace.report import Leak, Path, Report, Root, StoreSite

#: What ``str(sr)`` projects: the memory these many iterations would keep.
PROJECTIONS = (1_000, 10_000, 100_000)

#: Fewer judged intervals than this and memory alone cannot decide (its noise
#: is not exact like an object count).
_MIN_MEMORY_WINDOW = 4
#: The one-sided p-value below which a Mann-Kendall trend counts.
_TREND_P = 0.01
#: Pairwise statistics use at most this many points (evenly spaced).
_MAX_POINTS = 200
_CHUNK = 4096
#: Container ids are compared in this many partitions (see _length_table).
_PARTITIONS = 8
_SELECT = [
    bytes(1 if b % _PARTITIONS == part else 0 for b in range(256)) for part in range(_PARTITIONS)
]
_EXACT_TYPES = frozenset({dict, list, set, deque})
_DICT_ONLY = frozenset({dict})
#: At most this many growing containers (fastest first), types and sites are reported.
_MAX_CONTAINERS = 10
_MAX_TYPES = 12
_MAX_SITES = 8
#: The mean size of a type is taken over at most this many of its instances.
_MAX_SIZED = 10_000


# -- the report: plain data ---------------------------------------------------


@dataclass(frozen=True)
class Trend:
    """How one measured series behaved over the judged part of a soak.

    ``window`` intervals are judged: the later half of the iterations after
    warm-up (at least 3, when there are that many). ``grew`` and ``shrank``
    count intervals; ``change`` is the net change over the window;
    ``per_iteration`` is its Theil-Sen slope; ``p_value`` is the one-sided
    Mann-Kendall p-value of an upward trend.
    """

    name: str
    per_iteration: float
    window: int
    grew: int
    shrank: int
    change: int
    p_value: float
    growing: bool

    @property
    def every_interval(self) -> bool:
        """True when the series grew in every judged interval."""
        return self.window > 0 and self.grew == self.window

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "per_iteration": self.per_iteration,
            "window": self.window,
            "grew": self.grew,
            "shrank": self.shrank,
            "change": self.change,
            "p_value": self.p_value,
            "growing": self.growing,
        }


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
    ``item_types`` counts the items it gained in the sampled iteration, and
    ``samples`` are the leak traces of a few of them.
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

    @property
    def length(self) -> int:
        """Its length at the last checkpoint."""
        return self.lengths[-1][1] if self.lengths else 0

    @property
    def expression(self) -> str:
        """The path as code from its root (``AGENT.events._listeners['chunk']``)."""
        return self.path.expression if self.path is not None else ""

    @property
    def name(self) -> str:
        """Where it is, as one expression: ``module.global...`` for a module root."""
        path = self.path
        if path is None:
            return f"<{self.type_name} with no path from a root>"
        if path.root.kind == "module":
            if not path.steps:
                return f"{path.root.name} (the module's globals)"
            return f"{path.root.name}.{path.expression}"
        if path.root.kind == "frame" and path.steps:
            return f"{path.steps[0].code}{''.join(s.code for s in path.steps[1:])}"
        return path.expression or f"<{self.type_name}>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type_name,
            "expression": self.expression,
            "path": self.path.to_dict() if self.path is not None else None,
            "reason": self.reason,
            "lengths": [list(pair) for pair in self.lengths],
            "per_iteration": self.per_iteration,
            "item_types": [list(pair) for pair in self.item_types],
            "samples": [leak.to_dict() for leak in self.samples],
            "stored_at": self.stored_at.to_dict() if self.stored_at is not None else None,
        }


@dataclass(frozen=True)
class SiteGrowth:
    """Traced memory one source line allocates per iteration and keeps."""

    site: str
    bytes_per_iteration: float
    blocks_per_iteration: float

    def to_dict(self) -> dict[str, Any]:
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
        return {
            "iterations": self.iterations,
            "objects": self.objects,
            "bytes": self.bytes,
            "items": self.items,
        }


@dataclass
class SoakReport:
    """What ``reftrace.soak()`` measured, and its verdict.

    ``leaking`` is True when memory keeps growing after warm-up: the object
    count or traced memory has an upward trend over the judged iterations,
    or a container grew at every checkpoint. ``confidence`` (``"high"``,
    ``"medium"``, ``"low"``) and ``reason`` say how sure that is and why.
    ``objects[k]`` and ``memory[k]`` were measured after call ``k``
    (``k = 0``: before the first call).
    """

    leaking: bool
    confidence: str
    reason: str
    iterations: int
    warmup: int
    objects: list[int]
    memory: list[int]
    objects_trend: Trend
    memory_trend: Trend
    types: list[TypeGrowth] = field(default_factory=list)
    containers: list[GrowingContainer] = field(default_factory=list)
    sites: list[SiteGrowth] = field(default_factory=list)
    #: the report of the extra call run under ``reftrace.watch()`` (when leaking)
    sample: Report | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: the checkpoints at which container lengths were compared
    checkpoints: list[int] = field(default_factory=list)

    @property
    def per_iteration(self) -> tuple[float, float]:
        """(objects, bytes) each iteration keeps, at the judged rate."""
        return self.objects_trend.per_iteration, self.memory_trend.per_iteration

    def projection(self, iterations: Sequence[int] = PROJECTIONS) -> list[Projection]:
        """What each number of further iterations would keep, at the judged rate.

        Rates that are not positive project to zero: a series that does not
        grow keeps nothing more.
        """
        objects, memory = self.per_iteration
        items = sum(max(c.per_iteration, 0.0) for c in self.containers)
        return [
            Projection(
                n, round(max(objects, 0.0) * n), round(max(memory, 0.0) * n), round(items * n)
            )
            for n in iterations
        ]

    def __str__(self) -> str:
        from reftrace.renderers.soak import render_soak

        return render_soak(self)

    def __bool__(self) -> bool:
        # Never let `if sr:` mean "is leaking" by accident.
        return True

    def _repr_html_(self) -> str:
        from reftrace.renderers.soak import render_soak_html

        return render_soak_html(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; every string from the program is masked (``reftrace.set_masking``)."""
        from reftrace.redact import mask_data

        data = {
            "leaking": self.leaking,
            "confidence": self.confidence,
            "reason": self.reason,
            "iterations": self.iterations,
            "warmup": self.warmup,
            "objects": list(self.objects),
            "memory": list(self.memory),
            "objects_trend": self.objects_trend.to_dict(),
            "memory_trend": self.memory_trend.to_dict(),
            "types": [t.to_dict() for t in self.types],
            "containers": [c.to_dict() for c in self.containers],
            "sites": [s.to_dict() for s in self.sites],
            "projection": [p.to_dict() for p in self.projection()],
            "checkpoints": list(self.checkpoints),
            "sample": self.sample.to_dict() if self.sample is not None else None,
            "notes": list(self.notes),
            "timings": dict(self.timings),
        }
        masked = mask_data(data)
        assert isinstance(masked, dict)
        return masked

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def render(self, path: str, format: str | None = None) -> str:
        """Write an SVG: growth over the iterations, and the retention graph
        of the growing containers. Returns the path written."""
        from reftrace.renderers.soak import render_soak_svg

        return render_soak_svg(self, path, format=format)


# -- statistics -----------------------------------------------------------------


def _points(values: Sequence[float]) -> list[tuple[int, float]]:
    n = len(values)
    if n <= _MAX_POINTS:
        return list(enumerate(values))
    step = (n - 1) / (_MAX_POINTS - 1)
    picked = sorted({round(i * step) for i in range(_MAX_POINTS)})
    return [(i, values[i]) for i in picked]


def theil_sen(values: Sequence[float]) -> float:
    """The median of the slopes between every two points (x = 0, 1, 2, ...)."""
    points = _points(values)
    slopes = [
        (yj - yi) / (xj - xi) for a, (xi, yi) in enumerate(points) for xj, yj in points[a + 1 :]
    ]
    return float(statistics.median(slopes)) if slopes else 0.0


def mann_kendall(values: Sequence[float]) -> float:
    """One-sided p-value of an upward monotonic trend (Mann-Kendall, ties corrected)."""
    ys = [y for _, y in _points(values)]
    n = len(ys)
    if n < 3:
        return 1.0
    s = 0
    for i in range(n - 1):
        yi = ys[i]
        for yj in ys[i + 1 :]:
            s += (yj > yi) - (yj < yi)
    ties = Counter(ys).values()
    variance = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties)) / 18
    if variance <= 0 or s <= 0:
        return 1.0
    z = (s - 1) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


def judge(name: str, values: Sequence[int], exact: bool) -> Trend:
    """The trend of ``values`` (measured after warm-up) over its later half.

    Growing means: grew in every judged interval, or an upward Mann-Kendall
    trend (p < 0.01) with a positive Theil-Sen slope, growth in both halves
    of the window (one step, like a cache filled once, is not a trend) and
    few intervals that shrank. Traced memory (``exact=False``) has small
    fluctuations an object count does not: it needs at least 4 intervals and
    growth in at least half of them.
    """
    intervals = len(values) - 1
    window = min(intervals, max(3, math.ceil(intervals / 2)))
    recent = list(values[len(values) - window - 1 :]) if window > 0 else list(values[-1:])
    deltas = [b - a for a, b in zip(recent, recent[1:])]
    grew = sum(1 for d in deltas if d > 0)
    shrank = sum(1 for d in deltas if d < 0)
    change = recent[-1] - recent[0]
    slope = theil_sen(recent)
    p_value = mann_kendall(recent)
    half = len(deltas) // 2
    spread = any(d > 0 for d in deltas[:half]) and any(d > 0 for d in deltas[half:])
    if window == 0 or (not exact and window < _MIN_MEMORY_WINDOW):
        growing = False
    elif grew == window:
        growing = True
    else:
        growing = (
            window >= 3
            and slope > 0
            and change > 0
            and p_value < _TREND_P
            and spread
            and shrank * 3 <= grew
            and (exact or grew * 2 >= window)
        )
    return Trend(name, slope, window, grew, shrank, change, p_value, growing)


# -- measuring ------------------------------------------------------------------


def _type_key(cls: type) -> str:
    """``module.QualName`` (builtins by their bare name), read without user code."""
    try:
        name = _type_qualname(cls)
        module = _type_module(cls)
    except Exception:
        return "?"
    if type(name) is not str:
        return "?"
    if type(module) is not str:
        module = "?"
    # Always a new string (never the type's own name): the soak owns it.
    return f"{module}.{name}"


def _display(key: str) -> str:
    """A type key as shown: builtins by their bare name."""
    return key[9:] if key.startswith("builtins.") else key


def _length_function(cls: type) -> Callable[[Any], int] | None:
    """The C ``len`` of a container type we follow (never a user ``__len__``)."""
    if issubclass(cls, dict):
        return dict.__len__
    if issubclass(cls, list):
        return list.__len__
    if issubclass(cls, set):
        return set.__len__
    if issubclass(cls, deque):
        return deque.__len__
    return None


def _traced() -> int:
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0


class _Ledger:
    """Everything the soak keeps between iterations.

    Its containers are left out of the container checkpoints, its tracked
    objects are subtracted from each object count and the bytes it holds from
    the traced memory, so the soak never measures itself.
    """

    __slots__ = (
        "objects",
        "memory",
        "baseline_types",
        "type_series",
        "baseline",
        "candidates",
        "untracked",
        "final",
        "checkpoints",
        "site_sizes",
        "site_counts",
        "site_growth",
    )

    def __init__(self, iterations: int) -> None:
        self.objects = array("q", bytes(8 * (iterations + 1)))
        self.memory = array("q", bytes(8 * (iterations + 1)))
        self.baseline_types: dict[str, int] = {}
        #: type name -> its live count at each sample from the baseline on,
        #: kept only for types whose count ever differed from the baseline
        self.type_series: dict[str, array[int]] = {}
        #: (ids, lengths) of every container at the first checkpoint, in partitions
        self.baseline: list[tuple[array[int], array[int]]] | None = None
        #: id -> the length at each checkpoint, for containers that grew at every one
        self.candidates: dict[int, array[int]] = {}
        #: ids of the candidates that are dicts the gc does not track
        self.untracked: set[int] = set()
        #: the candidates themselves, found at the last checkpoint (after the last sample)
        self.final: list[object] = []
        self.checkpoints = array("q")
        self.site_sizes: dict[str, int] = {}
        self.site_counts: dict[str, int] = {}
        #: (site, bytes, blocks) gained between the baseline and the last iteration
        self.site_growth: list[tuple[str, int, int]] = []

    def containers(self) -> list[object]:
        """The ledger and every container it holds."""
        out: list[object] = [
            self,
            self.objects,
            self.memory,
            self.baseline_types,
            self.type_series,
            self.candidates,
            self.checkpoints,
            self.site_sizes,
            self.site_counts,
            self.site_growth,
            self.final,
        ]
        out.extend(self.type_series.values())
        out.extend(self.candidates.values())
        out.append(self.untracked)
        if self.baseline is not None:
            out.append(self.baseline)
            for pair in self.baseline:
                out.append(pair)
                out.extend(pair)
        return out

    def tracked_count(self) -> int:
        return sum(1 for obj in self.containers() if gc.is_tracked(obj))

    def own_bytes(self) -> int:
        """The bytes the ledger holds: its containers, keys and values.

        Subtracted from the traced memory read right after a full collection,
        which holds exactly the live objects (the collection empties the
        interpreter's free lists), so the soak's temporaries, wherever they
        are freed, never count.
        """
        seen: set[int] = set()
        total = 0
        mappings = (self.baseline_types, self.type_series, self.site_sizes, self.site_counts)
        items: list[object] = self.containers()
        for mapping in mappings:
            items.extend(mapping)
            items.extend(v for v in mapping.values() if type(v) is not int or v > 256)
        items.extend(self.candidates)
        items.extend(self.untracked)
        for obj in items:
            if id(obj) not in seen:
                seen.add(id(obj))
                total += sys.getsizeof(obj)
        return total


def _untracked_dicts(objects: list[object]) -> list[dict[Any, Any]]:
    """Dicts the gc does not track (atomic keys and values), found through
    the tracked objects that refer to them (a dict held twice is listed twice)."""
    found: list[dict[Any, Any]] = []
    is_tracked = gc.is_tracked
    is_dict = _DICT_ONLY.__contains__
    for start in range(0, len(objects), _CHUNK):
        refs = cast("list[dict[Any, Any]]", referents_of_all(objects[start : start + _CHUNK]))
        # (Only the dicts among them are kept.)
        found.extend(filterfalse(is_tracked, compress(refs, map(is_dict, map(type, refs)))))
        del refs
    return found


def _all_containers(
    untracked: bool = True,
) -> tuple[list[object], list[dict[Any, Any]], list[object]]:
    """Every container on the heap: those of the exact builtin types, the
    dicts the gc does not track (with ``untracked``), and those of subclasses
    (whose ``len`` could be user code, so it is read through their base type).

    Each step is a C-level pass (``compress`` over ``map(type, ...)``): with
    ``tracemalloc`` on, a Python loop over a million objects costs seconds.
    """
    objects = gc.get_objects()
    exact = _EXACT_TYPES.__contains__
    plain = list(compress(objects, map(exact, map(type, objects))))
    subclasses = {
        cls
        for cls in set(map(type, objects))
        if cls not in _EXACT_TYPES and _length_function(cls) is not None
    }
    special = list(compress(objects, map(subclasses.__contains__, map(type, objects))))
    hidden = _untracked_dicts(objects) if untracked else []
    del objects
    return plain, hidden, special


def _partition_of(objects: Sequence[object]) -> bytes:
    """One byte per object: bits 8-15 of its id, read from an array's memory."""
    raw = memoryview(array("q", map(id, objects))).cast("B")
    keys = bytes(raw[1::8] if sys.byteorder == "little" else raw[6::8])
    raw.release()
    return keys


def _length_table() -> list[tuple[array[int], array[int]]]:
    """(ids, lengths) of every container on the heap, in partitions by id.

    A dict the gc does not track has its length stored as ``-1 - len``, so a
    candidate says where to look for it later. Partitions keep the comparison
    of two checkpoints to one partition's dict at a time (one dict of every
    container's id would add ~140 MB at a million objects, counting
    tracemalloc's record of each int); each partition is taken with
    ``compress``, never a Python-level loop over the heap.
    """
    plain, hidden, special = _all_containers()
    plain_keys, hidden_keys = _partition_of(plain), _partition_of(hidden)
    parts = []
    for part in range(_PARTITIONS):
        select = _SELECT[part]
        sized = cast("list[Sized]", list(compress(plain, plain_keys.translate(select))))
        ids = array("q", map(id, sized))
        lengths = array("q", map(len, sized))  # exact builtin types: their own C len
        del sized
        chosen = [o for o in special if (id(o) >> 8) % _PARTITIONS == part]
        ids.extend(map(id, chosen))
        lengths.extend(map(_safe_len, chosen))
        del chosen
        dicts = list(compress(hidden, hidden_keys.translate(select)))
        ids.extend(map(id, dicts))
        lengths.extend(map(operator.sub, repeat(-1), map(len, dicts)))
        parts.append((ids, lengths))
        del dicts
    plain.clear()
    hidden.clear()
    special.clear()
    return parts


def _safe_len(obj: object) -> int:
    cls = type(obj)
    if cls in _EXACT_TYPES:
        return len(obj)  # type: ignore[arg-type]
    length = _length_function(cls)
    return length(obj) if length is not None else -1


def _grown(
    before: list[tuple[array[int], array[int]]], after: list[tuple[array[int], array[int]]]
) -> tuple[dict[int, array[int]], set[int]]:
    """Containers (by id) longer in ``after`` than in ``before``, with their
    [old, new] lengths, and which of them the gc does not track."""
    grown: dict[int, array[int]] = {}
    hidden: set[int] = set()
    for (old_ids, old_lengths), (ids, lengths) in zip(before, after):
        previous = dict(zip(old_ids, old_lengths))
        get = previous.get
        for key, length in zip(ids, lengths):
            old = get(key)
            if old is None or old == length:
                continue
            old = old if old >= 0 else -1 - old
            new = length if length >= 0 else -1 - length
            if new > old:
                grown[key] = array("q", [old, new])
                if length < 0:
                    hidden.add(key)
        previous.clear()
    return grown, hidden


def _find_containers(wanted: set[int] | dict[int, Any], untracked: bool) -> dict[int, object]:
    """The live containers with the given ids (``untracked``: look among the
    dicts the gc does not track too)."""
    plain, hidden, special = _all_containers(untracked)
    plain += hidden
    found = {id(obj): obj for obj in compress(plain, map(wanted.__contains__, map(id, plain)))}
    found.update((id(obj), obj) for obj in special if id(obj) in wanted)
    plain.clear()
    hidden.clear()
    special.clear()
    return found


def _container_length(obj: object) -> int:
    length = _length_function(type(obj))
    return length(obj) if length is not None else -1


_SITE_FILTERS = [
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<unknown>"),
]


def _site_totals() -> tuple[dict[str, int], dict[str, int]]:
    """Traced bytes and blocks still allocated, by source line."""
    snapshot = tracemalloc.take_snapshot().filter_traces(_SITE_FILTERS)
    sizes: dict[str, int] = {}
    counts: dict[str, int] = {}
    for stat in snapshot.statistics("lineno"):
        frame = stat.traceback[-1]
        if is_own_file(frame.filename):
            continue
        site = f"{short_path(frame.filename)}:{frame.lineno}"
        sizes[site] = sizes.get(site, 0) + stat.size
        counts[site] = counts.get(site, 0) + stat.count
    del snapshot
    return sizes, counts


class _Progress:
    """A one-line progress bar on stderr, drawn only where a person watches it."""

    __slots__ = ("enabled", "total", "started", "last")

    def __init__(self, enabled: bool | None, total: int) -> None:
        if enabled is None:
            try:
                enabled = bool(sys.stderr is not None and sys.stderr.isatty())
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = enabled
        self.total = total
        self.started = time.perf_counter()
        self.last = 0.0

    def update(self, done: int, ledger: _Ledger, warmup: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.1 and done < self.total:
            return
        self.last = now
        width = 24
        filled = width * done // max(self.total, 1)
        bar = "#" * filled + "-" * (width - filled)
        per = (now - self.started) / max(done, 1)
        line = f"\rsoak [{bar}] {done}/{self.total}  {per:.3g} s/iteration"
        if done > warmup + 1:
            span = done - warmup
            objects = (ledger.objects[done] - ledger.objects[warmup]) / span
            memory = (ledger.memory[done] - ledger.memory[warmup]) / span
            line += f"  objects {objects:+.1f}/it  memory {memory / 1024:+.1f} KB/it"
        elif done <= warmup:
            line += "  (warm-up)"
        try:
            sys.stderr.write(line + " " * 4)
            sys.stderr.flush()
        except (OSError, ValueError):
            self.enabled = False

    def close(self) -> None:
        if self.enabled:
            try:
                sys.stderr.write("\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass


class _OwnList(list[object]):
    """A list of reftrace's: its type makes the heap search skip it."""


# -- running the lifecycle --------------------------------------------------------


class _Runner:
    """Calls ``fn`` once, awaiting what it returns when it is a coroutine."""

    def __init__(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop | None) -> None:
        self.fn = fn
        self.loop = loop
        self.own_loop = False
        if loop is None and _is_coroutine_function(fn):
            self.loop = self._fresh_loop()

    def _fresh_loop(self) -> asyncio.AbstractEventLoop:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "soak() runs coroutines to completion on an event loop of its own and "
                "cannot do that inside a running loop; call it from synchronous code"
            )
        self.own_loop = True
        return asyncio.new_event_loop()

    def __call__(self) -> None:
        result = self.fn()
        if is_awaitable(result):
            if self.loop is None:
                self.loop = self._fresh_loop()
            self.loop.run_until_complete(result)
        del result

    def close(self) -> None:
        loop, self.loop = self.loop, None
        if self.own_loop and loop is not None and not loop.is_closed():
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()


def is_awaitable(obj: object) -> bool:
    """``inspect.isawaitable`` without its ``isinstance(obj, Awaitable)``, which
    fills ABC caches (new objects) the first time it meets a type."""
    cls = type(obj)
    if cls is types.CoroutineType:
        return True
    if cls is types.GeneratorType:
        return bool(obj.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE)  # type: ignore[attr-defined]
    return class_attribute(cls, "__await__") is not None


def _is_coroutine_function(fn: object) -> bool:
    # A callable object whose __call__ is a coroutine function counts too.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        class_attribute(type(fn), "__call__")
    )


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def default_warmup(iterations: int) -> int:
    """``max(3, iterations // 5)``, but never more than half the run."""
    return min(max(3, iterations // 5), iterations // 2)


def _checkpoint_schedule(warmup: int, iterations: int, checkpoints: int) -> list[int]:
    measured = iterations - warmup
    count = min(checkpoints, measured)
    return [warmup] + [warmup + round(j * measured / count) for j in range(1, count + 1)]


def soak(
    fn: Callable[[], Any],
    iterations: int = 30,
    warmup: int | None = None,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    progress: bool | None = None,
    samples: int = 3,
    checkpoints: int = 4,
    max_depth: int | None = DEFAULT_MAX_DEPTH,
) -> SoakReport:
    """Call ``fn`` ``iterations`` times and say whether memory keeps growing.

    ``fn`` takes no arguments (use a ``lambda`` or ``functools.partial``); a
    coroutine function, or a function returning an awaitable, is run to
    completion on ``loop``, or on a fresh event loop the soak creates and
    closes. The first ``warmup`` calls (default ``max(3, iterations // 5)``,
    at most half the run) are not judged. ``progress`` draws a progress bar on stderr (default: when
    stderr is a terminal). When the run is leaking, ``fn`` is called once
    more under :func:`reftrace.watch` and ``samples`` of the items each
    growing container gains are traced (0: skip that call). ``checkpoints``
    is how many times after warm-up every container's length is compared.

    An exception from ``fn`` propagates (with a note saying which iteration
    raised it, on Python 3.11+); tracemalloc and the event loop are restored
    first.

    >>> sr = reftrace.soak(handle_request, iterations=50)  # doctest: +SKIP
    >>> sr.leaking, sr.confidence
    (True, 'high')
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    iterations = _check_int("iterations", iterations, 1)
    if warmup is None:
        warmup = default_warmup(iterations)
    warmup = _check_int("warmup", warmup, 0)
    if warmup >= iterations:
        raise ValueError(
            f"warmup must be less than iterations ({iterations}), got {warmup}: "
            "at least one iteration after warm-up is needed"
        )
    if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be an asyncio event loop, got {type(loop).__name__}")
    if loop is not None and (loop.is_closed() or loop.is_running()):
        raise ValueError("loop must be open and not running")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool or None, got {type(progress).__name__}")
    samples = _check_int("samples", samples, 0)
    checkpoints = _check_int("checkpoints", checkpoints, 1)
    if max_depth is not None:
        max_depth = _check_int("max_depth", max_depth, 1)

    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start(1)
    runner = _Runner(fn, loop)
    try:
        return _soak(runner, iterations, warmup, progress, samples, checkpoints, max_depth)
    finally:
        runner.close()
        if started_tracing and tracemalloc.is_tracing():
            tracemalloc.stop()


def _soak(
    runner: _Runner,
    iterations: int,
    warmup: int,
    progress_setting: bool | None,
    samples: int,
    checkpoints: int,
    max_depth: int | None,
) -> SoakReport:
    t_start = time.perf_counter()
    ledger = _Ledger(iterations)
    schedule = _checkpoint_schedule(warmup, iterations, checkpoints)
    progress = _Progress(progress_setting, iterations)
    timings = {"calls": 0.0, "measure": 0.0, "checkpoints": 0.0}
    # Fill the caches the bookkeeping itself fills on first use (tracemalloc's
    # filters compile patterns, Counter's isinstance() checks fill ABC caches)
    # before anything is measured.
    if tracemalloc.is_tracing():
        _site_totals()
    Counter(map(type, [ledger]))
    try:
        _sample(ledger, 0, warmup, timings)
        if warmup == 0:
            _checkpoint(ledger, 0, schedule, timings)
        for k in range(1, iterations + 1):
            t0 = time.perf_counter()
            try:
                runner()
            except BaseException as exc:
                progress.close()
                progress.enabled = False
                if hasattr(exc, "add_note"):
                    exc.add_note(f"(raised by call {k} of {iterations} in reftrace.soak())")
                raise
            t1 = time.perf_counter()
            timings["calls"] += t1 - t0
            _sample(ledger, k, warmup, timings)
            if k in schedule and _still_searching(ledger, k, schedule):
                _checkpoint(ledger, k, schedule, timings)
            progress.update(k, ledger, warmup)
        progress.update(iterations, ledger, warmup, force=True)
    finally:
        progress.close()
    timings["measured_total"] = time.perf_counter() - t_start
    return _analyse(ledger, runner, iterations, warmup, schedule, samples, max_depth, timings)


def _still_searching(ledger: _Ledger, k: int, schedule: list[int]) -> bool:
    """Whether the checkpoint at ``k`` has anything left to compare."""
    return k == schedule[0] or ledger.baseline is not None or bool(ledger.candidates)


def _sample(ledger: _Ledger, k: int, warmup: int, timings: dict[str, float]) -> None:
    """Collect, then record the object count, traced memory and (after warm-up) types."""
    t0 = time.perf_counter()
    gc.collect()
    traced = _traced()
    own = ledger.own_bytes()
    objects = gc.get_objects()
    total = len(objects) - ledger.tracked_count()
    by_type = count_types(objects) if k >= warmup else None
    del objects
    ledger.objects[k] = total
    ledger.memory[k] = traced - own
    if by_type is not None:
        names: dict[str, int] = {}
        for cls, count in by_type.items():
            key = _type_key(cls)
            names[key] = names.get(key, 0) + count
        del by_type
        _record_types(ledger, names, k - warmup)
        del names
    if k == warmup and tracemalloc.is_tracing():
        ledger.site_sizes, ledger.site_counts = _site_totals()
    elif k == len(ledger.objects) - 1 and tracemalloc.is_tracing():
        ledger.site_growth = _site_difference(ledger)
    timings["measure"] += time.perf_counter() - t0


def count_types(objects: list[object]) -> dict[type, int]:
    """How many of ``objects`` there are of each type.

    Counted 256 at a time: a count above 256 is a new int object, and with
    ``tracemalloc`` tracing, one allocation per object would cost as much as
    the collection itself.
    """
    total: dict[type, int] = {}
    get = total.get
    for start in range(0, len(objects), 256):
        for cls, count in Counter(map(type, objects[start : start + 256])).items():
            total[cls] = get(cls, 0) + count
    return total


def _record_types(ledger: _Ledger, names: dict[str, int], index: int) -> None:
    if index == 0:
        ledger.baseline_types = dict(names)
        return
    base = ledger.baseline_types
    series = ledger.type_series
    for name, count in names.items():
        if name in series:
            series[name].append(count)
        elif base.get(name, 0) != count:
            values = array("q", [base.get(name, 0)]) * index
            values.append(count)
            series[name] = values
    for values in series.values():
        if len(values) <= index:
            values.append(0)


def _checkpoint(ledger: _Ledger, k: int, schedule: list[int], timings: dict[str, float]) -> None:
    """Compare every container's length with the last checkpoint's."""
    t0 = time.perf_counter()
    ledger.checkpoints.append(k)
    if k == schedule[0]:
        ledger.baseline = _length_table()
    elif ledger.baseline is not None:
        current = _length_table()
        grown, hidden = _grown(ledger.baseline, current)
        del current
        for key in set(map(id, ledger.containers())):
            grown.pop(key, None)  # the soak's own dicts
        ledger.baseline = None
        ledger.candidates = grown
        ledger.untracked = hidden
        del grown, hidden
        if k == schedule[-1] and ledger.candidates:
            found = _find_containers(ledger.candidates, untracked=bool(ledger.untracked))
            ledger.final = _OwnList(found.values())
            found.clear()
    elif ledger.candidates:
        found = _find_containers(ledger.candidates, untracked=bool(ledger.untracked))
        for key in list(ledger.candidates):
            obj = found.get(key)
            lengths = ledger.candidates[key]
            length = _container_length(obj) if obj is not None else -1
            if length > lengths[-1]:
                lengths.append(length)
            else:
                del ledger.candidates[key]
            del obj
        if k == schedule[-1]:
            ledger.final = _OwnList(found[key] for key in ledger.candidates if key in found)
        found.clear()
        del found
    spent = time.perf_counter() - t0
    timings["checkpoints"] += spent
    timings[f"checkpoint {k}"] = spent


# -- the verdict and the report -------------------------------------------------


def _analyse(
    ledger: _Ledger,
    runner: _Runner,
    iterations: int,
    warmup: int,
    schedule: list[int],
    samples: int,
    max_depth: int | None,
    timings: dict[str, float],
) -> SoakReport:
    t0 = time.perf_counter()
    objects = list(ledger.objects)
    memory = list(ledger.memory)
    objects_trend = judge("objects", objects[warmup:], exact=True)
    memory_trend = judge("memory", memory[warmup:], exact=False)
    measured = iterations - warmup
    done = list(ledger.checkpoints)
    complete = len(done) == len(schedule)
    candidates = (
        {key: list(lengths) for key, lengths in ledger.candidates.items()} if complete else {}
    )
    growing_types = _growing_types(ledger, warmup)
    sites = _site_growth(ledger, measured, memory_trend.per_iteration)

    held = _OwnList(obj for obj in ledger.final if id(obj) in candidates)
    held.sort(key=lambda obj: candidates[id(obj)][0] - candidates[id(obj)][-1])
    ledger.final = []
    sizes = _type_sizes({name: rate * measured for name, rate in growing_types})
    types = [
        TypeGrowth(
            _display(name), rate, rate * sizes.get(name, (0, 0.0))[1], sizes.get(name, (0, 0.0))[0]
        )
        for name, rate in growing_types
    ]
    timings["analysis"] = time.perf_counter() - t0

    containers: list[GrowingContainer] = []
    for obj in held[:_MAX_CONTAINERS]:
        lengths = candidates[id(obj)]
        points = list(zip(done, lengths))
        rate = (lengths[-1] - lengths[0]) / max(done[-1] - done[0], 1)
        containers.append(GrowingContainer(type_name(obj), None, points, rate))
    leaking, confidence, reason = _verdict(objects_trend, memory_trend, containers, measured, done)

    notes: list[str] = []
    sample: Report | None = None
    if leaking and samples:
        t1 = time.perf_counter()
        sample, untracked = _sample_run(runner, held[:_MAX_CONTAINERS], containers, samples)
        types.extend(untracked)
        timings["sample"] = time.perf_counter() - t1
        notes.append(
            f"the sample traces come from one more call (call {iterations + 1}), "
            "run under reftrace.watch()"
        )
    t2 = time.perf_counter()
    paths = _container_paths(held[:_MAX_CONTAINERS], max_depth)
    for container, (path, reason_text) in zip(containers, paths):
        container.path = path
        container.reason = reason_text
        if sample is not None:
            _attach_unmatched(container, sample)
    held.clear()
    timings["paths"] = time.perf_counter() - t2
    if len(candidates) > _MAX_CONTAINERS:
        notes.append(
            f"{len(candidates)} containers grew at every checkpoint; "
            f"the {_MAX_CONTAINERS} growing fastest are shown"
        )
    if leaking and not measured >= 2 * _MIN_MEMORY_WINDOW:
        notes.append(
            f"only {_count(measured, 'iteration')} after warm-up: over so few, a cache "
            "still filling looks like a leak; soak longer to tell them apart"
        )
    timings["total"] = time.perf_counter() - t0 + timings.pop("measured_total")
    timings["per_iteration_calls"] = timings["calls"] / iterations
    timings["per_iteration_overhead"] = (timings["measure"] + timings["checkpoints"]) / iterations
    return SoakReport(
        leaking=leaking,
        confidence=confidence,
        reason=reason,
        iterations=iterations,
        warmup=warmup,
        objects=objects,
        memory=memory,
        objects_trend=objects_trend,
        memory_trend=memory_trend,
        types=types,
        containers=containers,
        sites=sites,
        sample=sample,
        notes=notes,
        timings=timings,
        checkpoints=done,
    )


def _growing_types(ledger: _Ledger, warmup: int) -> list[tuple[str, float]]:
    out = []
    for name, values in ledger.type_series.items():
        trend = judge(name, values, exact=True)
        if trend.growing and trend.per_iteration > 0:
            out.append((name, trend.per_iteration))
    out.sort(key=lambda item: -item[1])
    return out[:_MAX_TYPES]


def _type_sizes(grown: dict[str, float]) -> dict[str, tuple[int, float]]:
    """Live count of each named type, and the mean shallow size of its newest
    instances (as many as it grew by, at most ``_MAX_SIZED``).

    Survivors of a collection join the end of the oldest generation, which
    ``gc.get_objects()`` lists last, so the last instances of a type are the
    ones the iterations added (unless something called ``gc.freeze()``).
    """
    if not grown:
        return {}
    objects = gc.get_objects()
    out: dict[str, tuple[int, float]] = {}
    for cls in set(map(type, objects)):
        name = _type_key(cls)
        if name not in grown:
            continue
        instances = list(compress(objects, map({cls}.__contains__, map(type, objects))))
        newest = min(max(round(grown[name]), 1), _MAX_SIZED)
        sized = instances[-newest:]
        mean = sum(map(safe_sizeof, sized)) / len(sized) if sized else 0.0
        count, previous = out.get(name, (0, 0.0))
        out[name] = (count + len(instances), max(previous, mean))
        del instances, sized
    del objects
    return out


def _site_difference(ledger: _Ledger) -> list[tuple[str, int, int]]:
    sizes, counts = _site_totals()
    rows = []
    for site, size in sizes.items():
        grown = size - ledger.site_sizes.get(site, 0)
        if grown > 0:
            rows.append((site, grown, counts.get(site, 0) - ledger.site_counts.get(site, 0)))
    rows.sort(key=lambda row: -row[1])
    return rows[:_MAX_SITES]


def _site_growth(ledger: _Ledger, measured: int, memory_rate: float) -> list[SiteGrowth]:
    """Sites that kept memory, per iteration; those under 2% of the measured
    rate are left out (first-use caches filled on the way, not the trend)."""
    rows = [
        SiteGrowth(site, size / measured, blocks / measured)
        for site, size, blocks in ledger.site_growth
    ]
    floor = 0.02 * max(memory_rate, 0.0)
    return [row for row in rows if row.bytes_per_iteration >= floor]


def _size_text(size: float) -> str:
    from reftrace.renderers.text import human_size

    return human_size(round(size))


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _verdict(
    objects: Trend,
    memory: Trend,
    containers: list[GrowingContainer],
    measured: int,
    checkpoints: list[int],
) -> tuple[bool, str, str]:
    """``(leaking, confidence, reason)`` from the two trends and the containers."""
    growing = [t for t in (objects, memory) if t.growing]
    intervals = len(checkpoints) - 1
    if growing or containers:
        rates = []
        for trend in growing:
            if trend.name == "objects":
                rates.append(f"{trend.per_iteration:+,.0f} objects")
            else:
                rates.append(f"+{_size_text(trend.per_iteration)}")
        parts = []
        if rates:
            windows = {(t.grew, t.window) for t in growing}
            if len(windows) == 1:
                grew, window = windows.pop()
                if window == 1:
                    how = "grew in the last iteration" if grew else "did not grow in the last"
                elif grew == window:
                    how = f"grew in each of the last {window:,} iterations"
                else:
                    how = f"grew in {grew} of the last {window:,} iterations"
                parts.append(f"{' and '.join(rates)} per iteration; {how}")
            else:
                parts.append(
                    " and ".join(
                        f"{rate} per iteration (grew in {t.grew} of the last {t.window})"
                        for rate, t in zip(rates, growing)
                    )
                )
        if containers:
            noun = "container" if len(containers) == 1 else "containers"
            if intervals == 1:
                parts.append(f"{len(containers)} {noun} grew between the 2 checkpoints")
            else:
                parts.append(f"{len(containers)} {noun} grew at each of {intervals} checkpoints")
        every = [t for t in growing if t.every_interval and t.window >= 5]
        if every or any(t.p_value < 0.001 and t.shrank == 0 for t in growing):
            confidence = "high"
        elif growing and measured >= _MIN_MEMORY_WINDOW:
            confidence = "medium"
        else:
            confidence = "low"
        if confidence == "medium" and containers and intervals >= 3:
            confidence = "high"
        return True, confidence, "; ".join(parts)
    if measured < _MIN_MEMORY_WINDOW:
        return (
            False,
            "low",
            f"no growth seen, but judged on only {_count(measured, 'iteration')} after warm-up",
        )
    window = max(objects.window, memory.window)
    rising = [t for t in (objects, memory) if t.change > 0 and t.p_value < 0.2]
    if not rising:
        return (
            False,
            "high",
            f"objects and memory flat over the last {_count(window, 'iteration')}",
        )
    details = ", ".join(
        f"{t.name} rose in {t.grew} and fell in {t.shrank} of the last {t.window} iterations"
        for t in rising
    )
    return False, "medium", f"no steady growth ({details}): noise, not a trend"


# -- the sampled iteration --------------------------------------------------------


def _contents(container: object) -> list[object]:
    """The items of a container (a dict's values and keys), read through C."""
    cls = type(container)
    if issubclass(cls, dict):
        pairs = list(dict.items(cast("dict[object, object]", container)))
        return [item for pair in pairs for item in pair]
    if issubclass(cls, list):
        return list(list.__iter__(cast("list[object]", container)))
    if issubclass(cls, set):
        return list(set.__iter__(cast("set[object]", container)))
    if issubclass(cls, deque):
        return list(deque.__iter__(cast("deque[object]", container)))
    return []


def _new_items(container: object, before: set[int]) -> list[object]:
    """Items ``container`` gained since ``before`` (ids); for a dict, the new
    values, or the new key where the value cannot be tracked."""
    cls = type(container)
    if issubclass(cls, dict):
        out: list[object] = []
        for key, value in list(dict.items(cast("dict[object, object]", container))):
            if id(value) not in before or id(key) not in before:
                out.append(value if untrackable_reason(value) is None else key)
        return out
    return [item for item in _contents(container) if id(item) not in before]


def _sample_run(
    runner: _Runner,
    held: list[object],
    containers: list[GrowingContainer],
    samples: int,
) -> tuple[Report, list[TypeGrowth]]:
    """Call ``fn`` once more under ``watch()`` and track what the containers gain."""
    from reftrace.watch import watch

    before = [set(map(id, _contents(obj))) for obj in held]
    slots = {str(index): [Slot("len", obj)] for index, obj in enumerate(held)}
    with watch() as w:
        try:
            with StoreTracer(slots) as tracer:
                runner()
        except BaseException as exc:
            if hasattr(exc, "add_note"):
                exc.add_note("(raised by the extra call reftrace.soak() runs under watch())")
            raise
        sampled = _track_new_items(w, held, before, samples)
    slots.clear()
    for key, site in tracer.found.items():
        containers[int(key)].stored_at = site
    for index, obj in enumerate(held):
        items = _new_items(obj, before[index])
        containers[index].item_types = Counter(type_name(i) for i in items).most_common(5)
        del items
    untracked = _untracked_items(held, before)
    before.clear()
    report = w.report
    for leak in report.leaks:
        obj = leak.object
        index = sampled.get(id(obj), -1) if obj is not None else -1
        del obj
        if index >= 0:
            containers[index].samples.append(leak)
    return report, untracked


def _track_new_items(
    w: Any, held: list[object], before: list[set[int]], samples: int
) -> dict[int, int]:
    """Track the last ``samples`` items each container gained; returns their
    ids with the index of their container. (A function of its own, so that no
    local variable of the block's frame still refers to an item at its exit.)"""
    sampled: dict[int, int] = {}
    for index, obj in enumerate(held):
        items = [i for i in _new_items(obj, before[index]) if untrackable_reason(i) is None]
        for item in items[-samples:]:
            w.track(item)
            sampled[id(item)] = index
    return sampled


def _untracked_items(held: list[object], before: list[set[int]]) -> list[TypeGrowth]:
    """Types the gc does not track among the items the containers just gained."""
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for index, obj in enumerate(held):
        for item in _new_items(obj, before[index]):
            if not gc.is_tracked(item):
                name = _display(_type_key(type(item)))
                counts[name] += 1
                sizes[name] += safe_sizeof(item)
    return [
        TypeGrowth(name, float(n), float(sizes[name]), n, tracked=False)
        for name, n in counts.most_common(5)
    ]


def _attach_unmatched(container: GrowingContainer, sample: Report) -> None:
    """Leaks that cannot be weakly referenced are matched to a container by path."""
    if container.path is None:
        return
    prefix = container.path.expression
    root = container.path.root
    taken = {id(leak) for leak in container.samples}
    for leak in sample.leaks:
        if id(leak) in taken or leak._ref is not None or leak.path is None:
            continue
        if leak.path.root == root and leak.path.expression.startswith(prefix):
            rest = leak.path.steps[len(container.path.steps) :]
            if len(rest) == 1:
                container.samples.append(leak)


def _container_paths(held: list[object], max_depth: int | None) -> list[tuple[Path | None, str]]:
    """The shortest path from a root to each container (all of them old objects)."""
    if not held:
        return []
    own = {id(held)}
    heap = HeapView(own)
    out: list[tuple[Path | None, str]] = []
    try:
        keys = [id(obj) for obj in held]
        for obj in held:
            heap.nodes[id(obj)] = obj
        results = shortest_paths(heap, keys, max_depth)
        for key in keys:
            if key in heap.module_dicts:
                out.append((Path(Root("module", heap.module_dicts[key]), ()), ""))
                continue
            result = results[key]
            if isinstance(result, Found):
                out.append((make_path(result, heap, frozenset()), ""))
            else:
                out.append((None, result.reason))
    finally:
        heap.nodes.clear()
        heap.release_scan()
    return out


__all__ = [
    "GrowingContainer",
    "Projection",
    "SiteGrowth",
    "SoakReport",
    "TypeGrowth",
    "Trend",
    "default_warmup",
    "soak",
]
