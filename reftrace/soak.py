"""``soak()``: run a lifecycle many times and tell a leak from memory kept by design.

Some retention stops by itself (a cache that fills, a ring buffer, a pool
that reaches its size); a leak does not. ``soak(fn, iterations=N)`` calls
``fn`` N times and, after each call, runs a full collection and reads three
counters no observer biases (:mod:`reftrace.memory`): live gc-tracked
objects, pymalloc's allocated blocks (objects the gc does not track, like
``str``, included) and the bytes in use in ``malloc`` (large allocations).
Whatever the soak's own bookkeeping keeps is read before and after it and
subtracted, so the soak never measures itself. ``tracemalloc`` is not used to
judge growth: started mid-life it sees memory climb that does not grow. It
only says which lines allocated what one more call left behind.

At a few checkpoints the length of every ``dict``, ``list``, ``set`` and
``deque`` on the heap is compared (dicts the gc does not track included):
the containers that grew at every checkpoint are the candidate holders. Each
is checked for a declared bound (:mod:`reftrace.bounds`: ``deque.maxlen``,
``lru_cache`` ``maxsize``, cachetools, the ``re`` cache, ``bounded=`` from the
user) and for holding only weak references (a symptom, never the holder).

The first ``warmup`` calls fill caches and lazily made objects; only the
later half of the run after them is judged (:func:`reftrace.stats.judge`).
The verdict is one of:

- ``leaking``: an exact counter grew steadily over at least 10 judged calls,
  and an unbounded container grew at every checkpoint (high confidence); or
  growth that stayed steady through the whole budget without a holder on the
  heap (medium).
- ``not leaking``: flat, or noise, or growth that is only bounded containers
  filling.
- ``inconclusive``: the budget ran out while the evidence was weak (growth
  slowing down, memory only, no holder): the report says why, and how long a
  run would settle it.

When the evidence after the requested iterations is weak, the soak keeps
going, doubling the judged part of the run (or up to the call where a bounded
container fills), within ``max_iterations`` and ``max_seconds``.

When there is growth, ``fn`` runs once more inside :func:`reftrace.watch`:
the items the growing containers gain in that call are tracked, so each
comes with its leak trace, and what that call left behind is counted per
holder, which ranks the holders by what they keep alive.

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
import functools
import gc
import math
import random
import sys
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any, cast

from reftrace.analysis import make_path
from reftrace.bounds import Bound, find_bounds, holds_weak_references, resolve_declared
from reftrace.calls import Lifecycle
from reftrace.census import (
    container_length,
    count_types,
    display_type,
    find_atomic,
    find_containers,
    grown,
    large_atomics,
    length_table,
    type_key,
)
from reftrace.heap import HeapView
from reftrace.memory import empty_free_lists, malloc_in_use, malloc_measured, tracemalloc_own
from reftrace.objects import (
    safe_sizeof,
    type_name,
    untrackable_reason,
)
from reftrace.paths import DEFAULT_MAX_DEPTH, Found, shortest_paths
from reftrace.report import Path, Report, Root, SurvivorGroup
from reftrace.soak_report import (
    Confidence,
    ContainerStatus,
    GrowingContainer,
    Projection,
    SiteGrowth,
    SoakReport,
    TypeGrowth,
    Verdict,
)
from reftrace.stats import Trend, judge
from reftrace.stores import Slot, StoreTracer
from reftrace.units import human_size, plural

#: Judged calls a decisive verdict needs.
DECISIVE_WINDOW = 10
#: Checkpoint intervals a holder must have grown in, for high confidence.
DECISIVE_INTERVALS = 3
#: Default budget: this many times the requested iterations, and seconds.
BUDGET_FACTOR = 10
DEFAULT_MAX_SECONDS = 60.0
#: ``malloc`` growth below this many times tracemalloc's own growth is its tables'.
_TRACEMALLOC_SHARE = 2.5
#: At most this many growing containers (the holders first), types and sites are reported.
_MAX_CONTAINERS = 10
_MAX_TYPES = 12
_MAX_SITES = 8
#: The mean size of a type is taken over at most this many of its instances.
_MAX_SIZED = 10_000
#: Checkpoints in each stage that extends a run.
_EXTENSION_CHECKPOINTS = 2


# -- what the soak keeps ---------------------------------------------------------


class _OwnList(list[object]):
    """A list of reftrace's: its type makes the heap search skip it."""


class _Ledger:
    """Everything the soak keeps between iterations (updated in place, never
    replaced: what it made before the first reading counts as the program's).

    What it keeps is not estimated: every iteration's bookkeeping is
    bracketed by two readings of the counters, and what it kept is added to
    ``own_objects``, ``own_blocks`` and ``own_malloc``, subtracted from later
    readings. ``containers()`` lists its containers, so that a search for
    growing ones leaves them out.
    """

    __slots__ = (
        "objects",
        "blocks",
        "malloc",
        "tracemalloc",
        "scratch",
        "own_blocks",
        "own_malloc",
        "own_objects",
        "baseline_types",
        "type_series",
        "baseline",
        "candidates",
        "untracked",
        "points",
        "final",
        "stopped",
        "bounds",
        "weak",
        "checkpoints",
        "stages",
        "atomic_points",
        "atomic_totals",
        "atomic_largest",
        "atomic_id",
        "atomic_sizes",
    )

    def __init__(self) -> None:
        self.objects = array("q")
        self.blocks = array("q")
        self.malloc = array("q")
        self.tracemalloc = array("q")
        #: readings before and after the bookkeeping, held as C longs (no int objects)
        self.scratch = array("q", bytes(8 * 6))
        self.own_blocks = 0
        self.own_malloc = 0
        self.own_objects = 0
        self.baseline_types: dict[str, int] = {}
        #: type name -> its live count at each iteration from warm-up on,
        #: kept only for types whose count ever differed from the baseline
        self.type_series: dict[str, array[int]] = {}
        #: (ids, lengths) of every container when a search for growing ones starts
        self.baseline: list[tuple[array[int], array[int]]] | None = None
        #: id -> the length at each point of the search, for containers that grew at every one
        self.candidates: dict[int, array[int]] = {}
        #: ids of the candidates that are dicts the gc does not track
        self.untracked: set[int] = set()
        #: the iterations of the current search's checkpoints (its baseline first)
        self.points = array("q")
        #: the candidates themselves, found at the last checkpoint
        self.final: list[object] = _OwnList()
        #: containers that grew, then stopped: id -> (points, lengths, the container)
        self.stopped: dict[int, tuple[list[int], list[int], object]] = {}
        self.bounds: dict[int, Bound | None] = {}
        self.weak: set[int] = set()
        self.checkpoints = array("q")
        self.stages = array("q")
        #: at each checkpoint: the bytes of large strings and buffers, and the largest
        self.atomic_points = array("q")
        self.atomic_totals = array("q")
        self.atomic_largest = array("q")
        #: the id of the largest new or grown one at the last checkpoint
        self.atomic_id = 0
        #: the size of every large string and buffer at the last checkpoint, by id
        self.atomic_sizes: dict[int, int] = {}

    def containers(self) -> list[object]:
        """The ledger and every container it holds (arrays are tracked too)."""
        out: list[object] = [
            self,
            self.objects,
            self.blocks,
            self.malloc,
            self.tracemalloc,
            self.scratch,
            self.baseline_types,
            self.type_series,
            self.candidates,
            self.untracked,
            self.points,
            self.final,
            self.stopped,
            self.bounds,
            self.weak,
            self.checkpoints,
            self.stages,
            self.atomic_points,
            self.atomic_totals,
            self.atomic_largest,
            self.atomic_sizes,
        ]
        out.extend(self.type_series.values())
        out.extend(self.candidates.values())
        for entry in self.stopped.values():
            out.append(entry)
            out.extend(entry[:2])
        if self.baseline is not None:
            out.append(self.baseline)
            for pair in self.baseline:
                out.append(pair)
                out.extend(pair)
        return out


# -- the progress bar ----------------------------------------------------------------


class _Progress:
    """A one-line progress bar on stderr, drawn only where a person watches it."""

    __slots__ = ("enabled", "total", "requested", "started", "last")

    def __init__(self, enabled: bool | None, total: int) -> None:
        if enabled is None:
            try:
                enabled = bool(sys.stderr is not None and sys.stderr.isatty())
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = enabled
        self.total = total
        self.requested = total
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
        if self.total > self.requested:
            line += f"  (+{self.total - self.requested} to decide)"
        if done > warmup + 1:
            span = done - warmup
            objects = (ledger.objects[done] - ledger.objects[warmup]) / span
            blocks = (ledger.blocks[done] - ledger.blocks[warmup]) / span
            line += f"  objects {objects:+.1f}/it  blocks {blocks:+.1f}/it"
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


# -- running the lifecycle --------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def default_warmup(iterations: int) -> int:
    """``max(3, iterations // 5)``, but never more than half the run."""
    return min(max(3, iterations // 5), iterations // 2)


def default_budget(iterations: int) -> int:
    """The most iterations a soak runs to decide: ten times the requested, at least 100."""
    return max(BUDGET_FACTOR * iterations, 100)


def _checkpoint_schedule(start: int, end: int, checkpoints: int) -> list[int]:
    """``start`` and ``checkpoints`` more points spread up to ``end``.

    The points between are moved by up to a quarter of their spacing (the
    same way for the same run): evenly spaced checkpoints alias with a
    container that fills and empties in a period of its own.
    """
    measured = end - start
    count = max(min(checkpoints, measured), 1)
    rng = random.Random(start * 7919 + end)
    points = [start]
    for j in range(1, count + 1):
        point = start + round(j * measured / count)
        if j < count:
            spread = measured // (4 * count)
            point += rng.randint(-spread, spread)
        if point > points[-1]:
            points.append(point)
    return points


def soak(
    fn: Callable[[], Any],
    iterations: int = 30,
    warmup: int | None = None,
    *,
    max_iterations: int | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    bounded: Iterable[object] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    progress: bool | None = None,
    samples: int = 3,
    checkpoints: int = 4,
    max_depth: int | None = DEFAULT_MAX_DEPTH,
) -> SoakReport:
    """Call ``fn`` at least ``iterations`` times and say whether memory keeps growing.

    ``fn`` takes no arguments (use a ``lambda`` or ``functools.partial``); a
    coroutine function, or a function returning an awaitable, is run to
    completion on ``loop``, or on a fresh event loop the soak creates and
    closes. The first ``warmup`` calls (default ``max(3, iterations // 5)``,
    at most half the run) are not judged.

    When the evidence is weak after ``iterations`` calls (growth slowing
    down, memory only, no holder, a bounded cache still filling), the soak
    keeps calling ``fn`` until the verdict is decisive, up to
    ``max_iterations`` calls (default ten times ``iterations``, at least 100)
    and ``max_seconds`` (default 60; ``None``: no limit). If it is still not
    decisive, the verdict is ``inconclusive``, with the reason and the run
    that would settle it. ``max_iterations=iterations`` never extends.

    ``bounded`` names containers (or the objects that own them, or dotted
    names such as ``"myapp.cache.ENTRIES"``) that are bounded by design:
    their growth is shown, never taken for a leak.

    ``progress`` draws a progress bar on stderr (default: when stderr is a
    terminal). When there is growth, ``fn`` is called once more under
    :func:`reftrace.watch` and ``samples`` of the items each growing
    container gains are traced (0: skip that call). ``checkpoints`` is how
    many times after warm-up every container's length is compared.

    An exception from ``fn`` propagates (with a note saying which iteration
    raised it, on Python 3.11+); the event loop is closed first.

    >>> sr = reftrace.soak(handle_request, iterations=50)  # doctest: +SKIP
    >>> sr.verdict, sr.confidence
    ('leaking', 'high')
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
    if max_iterations is None:
        max_iterations = default_budget(iterations)
    max_iterations = _check_int("max_iterations", max_iterations, iterations)
    if max_seconds is not None:
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)):
            raise TypeError(
                f"max_seconds must be a number or None, got {type(max_seconds).__name__}"
            )
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
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
    declared = resolve_declared(bounded)

    runner = Lifecycle(fn, loop, what="soak()")
    try:
        budget = _Budget(iterations, max_iterations, max_seconds)
        return _soak(runner, budget, warmup, progress, samples, checkpoints, max_depth, declared)
    finally:
        runner.close()


@dataclass
class _Budget:
    requested: int
    max_iterations: int
    max_seconds: float | None
    started: float = field(default_factory=time.perf_counter)

    def out_of_time(self) -> bool:
        limit = self.max_seconds
        return limit is not None and time.perf_counter() - self.started >= limit


def _soak(
    runner: Lifecycle,
    budget: _Budget,
    warmup: int,
    progress_setting: bool | None,
    samples: int,
    checkpoints: int,
    max_depth: int | None,
    declared: dict[int, str],
) -> SoakReport:
    ledger = _Ledger()
    progress = _Progress(progress_setting, budget.requested)
    timings = {"calls": 0.0, "measure": 0.0, "checkpoints": 0.0}
    # Fill the caches the bookkeeping fills on first use (Counter's
    # isinstance() checks fill ABC caches) before anything is measured.
    Counter(map(type, [ledger]))
    schedule = set(_checkpoint_schedule(warmup, budget.requested, checkpoints))
    end = budget.requested
    weighed: _Weighing | None = None
    try:
        _measure(ledger, 0, warmup, schedule, declared, timings)
        k = 0
        while True:
            while k < end:
                k += 1
                t0 = time.perf_counter()
                try:
                    runner()
                except BaseException as exc:
                    progress.close()
                    progress.enabled = False
                    if hasattr(exc, "add_note"):
                        exc.add_note(f"(raised by call {k} of {end} in reftrace.soak())")
                    raise
                timings["calls"] += time.perf_counter() - t0
                _measure(ledger, k, warmup, schedule, declared, timings)
                progress.update(k, ledger, warmup)
                if k > budget.requested and budget.out_of_time():
                    end = k
            weighed = _weigh_stage(ledger, k, warmup, declared)
            ledger.stages.append(k)
            target = _next_target(weighed, ledger, k, warmup, budget)
            if target is None:
                break
            schedule.update(_checkpoint_schedule(k, target, _EXTENSION_CHECKPOINTS))
            if not ledger.candidates and ledger.baseline is None:
                # Nothing grew at every checkpoint yet: search again from here.
                ledger.checkpoints.append(k)
                _bracketed(ledger, functools.partial(_search, ledger, k))
            end = target
            progress.total = target
        progress.update(k, ledger, warmup, force=True)
    finally:
        progress.close()
    timings["measured_total"] = time.perf_counter() - budget.started
    assert weighed is not None
    return _report(ledger, runner, budget, k, warmup, weighed, samples, max_depth, timings)


def _bracketed(ledger: _Ledger, work: Callable[[], None]) -> None:
    """Run bookkeeping ``work``; add what it kept to the soak's own objects, blocks and bytes."""
    # Opened as it is closed: after the same collections, so that what a
    # gc callback of the program allocates and frees around each collection
    # (hypothesis's timer: floats, and on 3.15 the info dict's duration) sits
    # in the free lists alike at both readings.
    empty_free_lists()
    scratch = ledger.scratch
    scratch[0] = sys.getallocatedblocks()
    scratch[1] = malloc_in_use() or 0
    scratch[4] = len(gc.get_objects())
    work()
    _close_bracket(ledger)


def _close_bracket(ledger: _Ledger) -> None:
    # What the bookkeeping freed sits in the free lists until the next full
    # collection: emptied now, it is not counted as kept.
    empty_free_lists()
    scratch = ledger.scratch
    scratch[2] = sys.getallocatedblocks()
    scratch[3] = malloc_in_use() or 0
    scratch[5] = len(gc.get_objects())
    ledger.own_blocks += scratch[2] - scratch[0]
    ledger.own_malloc += scratch[3] - scratch[1]
    ledger.own_objects += scratch[5] - scratch[4]


def _measure(
    ledger: _Ledger,
    k: int,
    warmup: int,
    schedule: set[int],
    declared: dict[int, str],
    timings: dict[str, float],
) -> None:
    """Collect, read the counters, then do the bookkeeping, bracketed.

    The readings before and after the bookkeeping are taken with the same
    locals alive, so their difference is what the bookkeeping kept; it is
    subtracted from every later reading. They are held in ``ledger.scratch``
    (C longs): no int object of theirs is alive at either reading.
    """
    t0 = time.perf_counter()
    gc.collect()
    empty_free_lists()  # as _close_bracket does: see _bracketed
    scratch = ledger.scratch
    scratch[0] = sys.getallocatedblocks()
    scratch[1] = malloc_in_use() or 0
    objects = gc.get_objects()
    scratch[4] = len(objects)
    _bookkeeping(ledger, objects, k, warmup, schedule, declared, timings)
    del objects
    _close_bracket(ledger)
    timings["measure"] += time.perf_counter() - t0


def _bookkeeping(
    ledger: _Ledger,
    objects: list[object],
    k: int,
    warmup: int,
    schedule: set[int],
    declared: dict[int, str],
    timings: dict[str, float],
) -> None:
    scratch = ledger.scratch
    ledger.blocks.append(scratch[0] - ledger.own_blocks)
    ledger.malloc.append(scratch[1] - ledger.own_malloc)
    ledger.objects.append(scratch[4] - ledger.own_objects)
    ledger.tracemalloc.append(tracemalloc_own())
    by_type = count_types(objects) if k >= warmup else None
    objects.clear()
    if by_type is not None:
        names: dict[str, int] = {}
        for cls, count in by_type.items():
            key = type_key(cls)
            names[key] = names.get(key, 0) + count
        del by_type
        _record_types(ledger, names, k - warmup)
        del names
    if k in schedule:
        _checkpoint(ledger, k, warmup, declared, timings)


def _record_types(ledger: _Ledger, names: dict[str, int], index: int) -> None:
    if index == 0:
        ledger.baseline_types.update(names)
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


def _still_searching(ledger: _Ledger, k: int, warmup: int) -> bool:
    """Whether the container search has anything to do at ``k``."""
    return k == warmup or ledger.baseline is not None or bool(ledger.candidates)


def _checkpoint(
    ledger: _Ledger, k: int, warmup: int, declared: dict[int, str], timings: dict[str, float]
) -> None:
    """Weigh the large strings and buffers, and compare every container's length."""
    t0 = time.perf_counter()
    if not ledger.atomic_points or ledger.atomic_points[-1] != k:
        _weigh_atomics(ledger, k)
    if _still_searching(ledger, k, warmup):
        ledger.checkpoints.append(k)
        _search(ledger, k)
    timings["checkpoints"] += time.perf_counter() - t0


def _weigh_atomics(ledger: _Ledger, k: int) -> None:
    """The bytes in large strings and buffers, and the largest one that is new
    or grew since the checkpoint before (0 at the first)."""
    sizes = large_atomics()
    before = ledger.atomic_sizes
    largest, largest_id = 0, 0
    if before:
        for key, size in sizes.items():
            if size > largest and size > before.get(key, 0):
                largest, largest_id = size, key
    ledger.atomic_points.append(k)
    ledger.atomic_totals.append(sum(sizes.values()))
    ledger.atomic_largest.append(largest)
    ledger.atomic_id = largest_id
    ledger.atomic_sizes.clear()
    ledger.atomic_sizes.update(sizes)
    sizes.clear()


def _search(ledger: _Ledger, k: int) -> None:
    """Start a search for growing containers, compare with its start, or follow the candidates."""
    if ledger.baseline is None and not ledger.candidates:
        ledger.untracked.clear()
        ledger.baseline = length_table()
        del ledger.points[:]
        ledger.points.append(k)
    elif ledger.baseline is not None:
        current = length_table()
        grew, hidden = grown(ledger.baseline, current)
        del current
        for key in set(map(id, ledger.containers())):
            grew.pop(key, None)  # the soak's own dicts
        ledger.baseline = None
        ledger.candidates.update(grew)
        ledger.untracked.update(hidden)
        ledger.points.append(k)
        del grew, hidden
        found = find_containers(ledger.candidates, untracked=bool(ledger.untracked))
        ledger.final[:] = [found[key] for key in ledger.candidates if key in found]
        found.clear()
    elif ledger.candidates:
        found = find_containers(ledger.candidates, untracked=bool(ledger.untracked))
        ledger.points.append(k)
        for key in list(ledger.candidates):
            obj = found.get(key)
            lengths = ledger.candidates[key]
            length = container_length(obj) if obj is not None else -1
            if length > lengths[-1]:
                lengths.append(length)
            else:
                if obj is not None and len(ledger.stopped) < _MAX_CONTAINERS:
                    ledger.stopped[key] = (list(ledger.points[:-1]), list(lengths), obj)
                del ledger.candidates[key]
            del obj
        ledger.final[:] = [found[key] for key in ledger.candidates if key in found]
        found.clear()
        del found


# -- weighing the evidence ------------------------------------------------------------


@dataclass
class _Weighing:
    """The evidence after a stage, and what it says."""

    objects: Trend
    blocks: Trend
    malloc: Trend | None
    #: malloc grew beyond its noise and what tracemalloc's own tables explain
    malloc_growth: bool
    #: large strings and buffers grew at each of the last checkpoints
    buffers: bool
    #: ... and the largest of them is the one growing (bytes per call, or 0)
    buffer_rate: float
    #: the status of each container that grew at every checkpoint, by id
    statuses: dict[int, ContainerStatus]
    intervals: int
    measured: int
    #: the growth is the same every call (nothing to confirm)
    regular: bool
    #: (rate over the stage before, rate since): growth confirmed, or slowing down
    stage_rates: tuple[float, float] | None
    verdict: Verdict = "not leaking"
    confidence: Confidence = "low"
    #: why more calls could change the verdict ("" when they could not)
    weak_because: str = ""
    #: the call by which every bounded container still filling would be full
    filled_by: int | None = None

    @property
    def exact(self) -> list[Trend]:
        return [t for t in (self.objects, self.blocks) if t.growing]

    @property
    def window(self) -> int:
        return max(self.objects.window, self.blocks.window)

    def count(self, status: ContainerStatus) -> int:
        return sum(1 for s in self.statuses.values() if s == status)

    @property
    def holders(self) -> int:
        return self.count("unbounded")

    @property
    def declining(self) -> bool:
        """The growth rate fell by a quarter or more since the stage before."""
        if self.stage_rates is None:
            return False
        before, since = self.stage_rates
        return before > 0 and since < _CONFIRMING_SHARE * before

    @property
    def confirmed(self) -> bool:
        """A later stage grew at (nearly) the rate of the one before."""
        if self.stage_rates is None:
            return False
        before, since = self.stage_rates
        return before > 0 and since >= _CONFIRMING_SHARE * before


#: A later stage confirms growth when it grows at least this share of the rate before.
_CONFIRMING_SHARE = 0.75
#: Calls between warm-up and the judged half, at the least, to compare their rates.
_MIN_COMPARED = 5
#: ``malloc`` growth over the judged calls below this is its free chunk caches' noise.
_MALLOC_NOISE = 8192
#: Large strings and buffers must grow by at least this much over the last checkpoints.
_ATOMIC_MIN_GROWTH = 256


def _classify(ledger: _Ledger, declared: dict[int, str]) -> dict[int, ContainerStatus]:
    """Bounds and weakness of the candidates not classified yet; each one's status."""
    fresh = [obj for obj in ledger.final if id(obj) not in ledger.bounds]
    if fresh:
        bounds = find_bounds(fresh, declared, ignore=[id(ledger.final), id(fresh)])
        for obj, bound in zip(fresh, bounds):
            ledger.bounds[id(obj)] = bound
            if holds_weak_references(obj):
                ledger.weak.add(id(obj))
        fresh.clear()
    statuses: dict[int, ContainerStatus] = {}
    for obj in ledger.final:
        key = id(obj)
        lengths = ledger.candidates.get(key)
        if lengths is None:
            continue
        statuses[key] = _status(ledger.bounds.get(key), key in ledger.weak, lengths[-1])
    return statuses


def _status(bound: Bound | None, weak: bool, length: int) -> ContainerStatus:
    if weak:
        return "weak"
    if bound is None or not bound.bounded:
        return "unbounded"
    if bound.limit is None:
        return "declared"
    return "bounded" if length >= bound.limit else "filling"


def _weigh_stage(ledger: _Ledger, n: int, warmup: int, declared: dict[int, str]) -> _Weighing:
    holder: list[_Weighing] = []
    _bracketed(ledger, lambda: holder.append(_weigh(ledger, n, warmup, declared)))
    return holder[0]


def _weigh(ledger: _Ledger, n: int, warmup: int, declared: dict[int, str]) -> _Weighing:
    """What the measurements so far say, and whether more calls could change it."""
    objects = judge("objects", ledger.objects[warmup:], exact=True)
    blocks = judge("blocks", ledger.blocks[warmup:], exact=True)
    malloc: Trend | None = None
    malloc_growth = False
    if malloc_measured():
        malloc = judge("malloc", ledger.malloc[warmup:], exact=False)
        own = judge("tracemalloc", ledger.tracemalloc[warmup:], exact=False)
        malloc_growth = (
            malloc.growing
            and malloc.change >= _MALLOC_NOISE
            and malloc.per_iteration > _TRACEMALLOC_SHARE * max(own.per_iteration, 0.0)
        )
    buffers, buffer_rate, buffers_regular = _atomic_growth(ledger)
    growing = [t for t in (objects, blocks) if t.growing]
    w = _Weighing(
        objects,
        blocks,
        malloc,
        malloc_growth,
        buffers,
        buffer_rate,
        _classify(ledger, declared),
        max(len(ledger.points) - 1 if ledger.candidates else 0, 3 if buffer_rate > 0 else 0),
        n - warmup,
        regular=any(t.regular for t in growing) or (not growing and buffers_regular),
        stage_rates=_stage_rates(ledger, n, warmup, objects, blocks, buffers),
    )
    _decide(w, second_look=len(ledger.stages) > 0)
    if w.count("filling"):
        w.filled_by = _filled_by(ledger, w.statuses)
    return w


def _atomic_growth(ledger: _Ledger) -> tuple[bool, float, bool]:
    """Whether large strings and buffers grew at each of the last 3 checkpoints;
    the largest one's growth per call when it is the one growing; and whether
    that growth is the same per call between checkpoints."""
    points, totals, largest = ledger.atomic_points, ledger.atomic_totals, ledger.atomic_largest
    if len(points) < 4:
        return False, 0.0, False
    last = range(len(points) - 3, len(points))
    if not all(totals[i] > totals[i - 1] for i in last):
        return False, 0.0, False
    if totals[-1] - totals[-4] < _ATOMIC_MIN_GROWTH:
        return False, 0.0, False
    rates = [(totals[i] - totals[i - 1]) / max(points[i] - points[i - 1], 1) for i in last]
    regular = max(rates) <= 1.1 * min(rates)
    rate = 0.0
    if all(largest[i] > largest[i - 1] for i in last):
        rate = (largest[-1] - largest[-4]) / max(points[-1] - points[-4], 1)
    return True, rate, regular


def _stage_rates(
    ledger: _Ledger, n: int, warmup: int, objects: Trend, blocks: Trend, buffers: bool
) -> tuple[float, float] | None:
    """The growth rate over the part of the run before, and since.

    On the first stage, "before" is the run from warm-up to the judged half
    and "since" the judged half; later, the stage before and this one. Of the
    counter that grows; or of the large strings and buffers; or of the
    holder that gains the most items. ``None`` with nothing growing, or too
    few calls before the judged half to compare.
    """
    stages = list(ledger.stages)
    if stages:
        end = stages[-1]
        start = stages[-2] if len(stages) > 1 else end - max((end - warmup) // 2, 1)
    else:
        end = n - max(objects.window, blocks.window)
        start = warmup
        if end - start < _MIN_COMPARED:
            return None
    trend = max((objects, blocks), key=lambda t: (t.growing, t.grew))
    if trend.growing:
        series = ledger.objects if trend is objects else ledger.blocks
        points, values = [start, end, n], [series[start], series[end], series[n]]
    elif buffers:
        points, values = _at_points(ledger.atomic_points, ledger.atomic_totals, [start, end, n])
    else:
        rates = [
            _at_points(ledger.points, lengths, [start, end, n])
            for key, lengths in ledger.candidates.items()
        ]
        if not rates:
            return None
        points, values = max(rates, key=lambda pv: pv[1][-1] - pv[1][0])
    if len(points) < 3:
        return None
    before = (values[1] - values[0]) / max(points[1] - points[0], 1)
    since = (values[2] - values[1]) / max(points[2] - points[1], 1)
    return before, since


def _at_points(
    points: Sequence[int], values: Sequence[int], wanted: list[int]
) -> tuple[list[int], list[int]]:
    """The values at the last point at or before each wanted one (where there is one)."""
    out_points: list[int] = []
    out_values: list[int] = []
    for target in wanted:
        index = -1
        for i, point in enumerate(points):
            if point <= target:
                index = i
        if index >= 0 and (not out_points or points[index] > out_points[-1]):
            out_points.append(points[index])
            out_values.append(values[index])
    return out_points, out_values


def _decide(w: _Weighing, second_look: bool) -> None:
    """Set the verdict, its confidence, and why more calls could change it."""
    window = w.window
    exact = w.exact
    signal = bool(exact) or w.buffers or w.malloc_growth
    holders = w.holders + (1 if w.buffer_rate > 0 else 0)
    if not signal and not holders:
        w.verdict = "not leaking"
        w.confidence = "high" if window >= DECISIVE_WINDOW else "medium" if window >= 4 else "low"
        return
    if not holders and (w.count("filling") or w.count("bounded") or w.count("declared")):
        # Growth, and the containers that grow all have a declared bound.
        w.verdict, w.confidence = "not leaking", "medium"
        w.weak_because = "filling" if w.count("filling") else ""
        return
    slowing = any(not t.steady for t in exact) or w.declining
    settled = w.regular or w.confirmed
    if slowing:
        w.verdict, w.confidence, w.weak_because = "inconclusive", "low", "slowing"
        return
    if holders:
        if signal and settled and window >= DECISIVE_WINDOW and w.intervals >= DECISIVE_INTERVALS:
            w.verdict, w.confidence = "leaking", "high"
            return
        w.verdict, w.confidence = "leaking", "medium"
        if not signal:
            # Longer at every checkpoint, yet no counter grows: a container
            # that fills and empties in a period the checkpoints alias with,
            # or items that are not new objects. Not enough to call a leak.
            w.verdict, w.confidence, w.weak_because = "inconclusive", "low", "holder only"
        elif not settled:
            # Growth that varies from call to call, not seen again at the same
            # rate: a cache filling from a large set of keys looks like this.
            w.verdict, w.confidence, w.weak_because = "inconclusive", "low", "unconfirmed"
        elif window < DECISIVE_WINDOW:
            w.weak_because = "short"
            if not w.regular:
                w.verdict, w.confidence = "inconclusive", "low"
        elif w.intervals < DECISIVE_INTERVALS:
            w.weak_because = "few checkpoints"
        return
    if exact or w.buffers:
        if window < DECISIVE_WINDOW:
            w.verdict, w.confidence, w.weak_because = "inconclusive", "low", "short"
        elif settled:
            w.verdict, w.confidence = "leaking", "medium"
        else:
            w.verdict, w.confidence, w.weak_because = "inconclusive", "low", "no holder"
        return
    # Memory outside pymalloc, and nothing else.
    if window >= 2 * DECISIVE_WINDOW and w.confirmed:
        w.verdict, w.confidence = "leaking", "medium"
    else:
        w.verdict, w.confidence, w.weak_because = "inconclusive", "low", "memory only"


def _filled_by(ledger: _Ledger, statuses: dict[int, ContainerStatus]) -> int | None:
    """The call by which every bounded container still filling would be full, at its rate."""
    latest = 0
    points = list(ledger.points)
    for key, status in statuses.items():
        if status != "filling":
            continue
        bound = ledger.bounds.get(key)
        lengths = ledger.candidates[key]
        if bound is None or bound.limit is None or len(points) < 2:
            return None
        rate = (lengths[-1] - lengths[0]) / max(points[-1] - points[0], 1)
        if rate <= 0:
            return None
        latest = max(latest, points[-1] + math.ceil((bound.limit - lengths[-1]) / rate))
    return latest or None


def _next_target(w: _Weighing, ledger: _Ledger, n: int, warmup: int, budget: _Budget) -> int | None:
    """How far to run to decide, or None when the verdict stands."""
    if not w.weak_because:
        return None
    if n >= budget.max_iterations or budget.out_of_time():
        return None
    target = warmup + 2 * (n - warmup)
    if w.filled_by is not None:
        # Far enough that the judged half of the run starts after it filled.
        target = max(target, warmup + 2 * (w.filled_by - warmup) + 2)
    return min(max(target, n + DECISIVE_WINDOW), budget.max_iterations)


# -- the report ------------------------------------------------------------------------


def _report(
    ledger: _Ledger,
    runner: Lifecycle,
    budget: _Budget,
    n: int,
    warmup: int,
    w: _Weighing,
    samples: int,
    max_depth: int | None,
    timings: dict[str, float],
) -> SoakReport:
    t0 = time.perf_counter()
    measured = n - warmup
    points = list(ledger.points)
    growing = _OwnList(obj for obj in ledger.final if id(obj) in ledger.candidates)
    containers = []
    for obj in growing:
        lengths = list(ledger.candidates[id(obj)])
        bound = ledger.bounds.get(id(obj))
        containers.append(_grown(obj, points, lengths, bound, id(obj) in ledger.weak))
    order = sorted(range(len(growing)), key=lambda i: _rank(containers[i]))[:_MAX_CONTAINERS]
    growing = _OwnList(growing[i] for i in order)
    containers = [containers[i] for i in order]
    buffer = _growing_buffer(ledger, w)
    if buffer is not None:
        growing.insert(0, buffer[0])
        containers.insert(0, buffer[1])
        del buffer
    stopped_objects = _OwnList(obj for _, _, obj in ledger.stopped.values())
    stopped = _stopped_containers(ledger, stopped_objects)
    growing_types = _growing_types(ledger, warmup)
    sizes = _type_sizes({name: rate * measured for name, rate in growing_types})
    types = [
        TypeGrowth(
            display_type(name),
            rate,
            rate * sizes.get(name, (0, 0.0))[1],
            sizes.get(name, (0, 0.0))[0],
        )
        for name, rate in growing_types
    ]
    timings["analysis"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    paths = _container_paths(_OwnList([*growing, *stopped_objects]), max_depth)
    for container, (path, reason_text) in zip([*containers, *stopped], paths):
        container.path = path
        container.reason = reason_text
    stopped_objects.clear()
    timings["paths"] = time.perf_counter() - t1

    notes: list[str] = []
    sample: Report | None = None
    if w.verdict != "not leaking" and samples:
        t2 = time.perf_counter()
        sample, untracked = _sample_run(runner, growing, containers, samples)
        types.extend(untracked)
        for container in containers:
            _attach_unmatched(container, sample)
        _attribute(containers, sample)
        timings["sample"] = time.perf_counter() - t2
        notes.append(
            f"the sample traces come from one more call (call {n + 1}), run under reftrace.watch()"
        )
        order = sorted(range(len(containers)), key=lambda i: _rank(containers[i]))
        containers = [containers[i] for i in order]
    growing.clear()
    if len(ledger.candidates) > _MAX_CONTAINERS:
        notes.append(
            f"{len(ledger.candidates)} containers grew at every checkpoint; "
            f"the {_MAX_CONTAINERS} holding the most are shown"
        )
    if not malloc_measured():
        notes.append(
            "malloc'd memory cannot be read on this platform (glibc's mallinfo2): "
            "growth of large allocations alone is not seen"
        )
    elif sum(ledger.tracemalloc) and w.malloc is not None and w.malloc.growing:
        notes.append(
            "tracemalloc was tracing during the soak: its own tables grow in malloc "
            "with what it traces, and that growth is set apart"
        )
    bytes_rate = _bytes_per_iteration(containers, sample, w, types)
    sites = _sites(sample)
    settle = ""
    if w.verdict == "inconclusive" or w.weak_because:
        settle = f"reftrace.soak(fn, iterations={_settling_run(n, budget)})"
    reason = _explain(w, containers, stopped, n)
    timings["total"] = time.perf_counter() - t0 + timings.pop("measured_total")
    timings["per_iteration_calls"] = timings["calls"] / max(n, 1)
    timings["per_iteration_overhead"] = (timings["measure"] + timings["checkpoints"]) / max(n, 1)
    return SoakReport(
        verdict=w.verdict,
        confidence=w.confidence,
        reason=reason,
        iterations=n,
        requested=budget.requested,
        warmup=warmup,
        objects=list(ledger.objects),
        blocks=list(ledger.blocks),
        malloc=list(ledger.malloc) if malloc_measured() else [],
        objects_trend=w.objects,
        blocks_trend=w.blocks,
        malloc_trend=w.malloc,
        types=types,
        containers=containers,
        stopped=stopped,
        sites=sites,
        sample=sample,
        notes=notes,
        timings=timings,
        checkpoints=list(ledger.checkpoints),
        stages=list(ledger.stages),
        bytes_per_iteration=bytes_rate,
        settle=settle,
    )


def _growing_buffer(ledger: _Ledger, w: _Weighing) -> tuple[object, GrowingContainer] | None:
    """The string or buffer that grows, found again by its id, as a growing container."""
    if w.buffer_rate <= 0:
        return None
    obj = find_atomic(ledger.atomic_id)
    if obj is None:
        return None
    points = list(ledger.atomic_points)[-4:]
    sizes = list(ledger.atomic_largest)[-4:]
    entry = GrowingContainer(
        type_name(obj),
        None,
        list(zip(points, sizes)),
        w.buffer_rate,
        kept_bytes=round(w.buffer_rate),
        unit="bytes",
    )
    return obj, entry


def _settling_run(n: int, budget: _Budget) -> int:
    """A run long enough to settle what ``n`` calls could not: ten times as long."""
    return max(BUDGET_FACTOR * n, budget.max_iterations + 1)


_STATUS_ORDER = {"unbounded": 0, "filling": 1, "declared": 2, "bounded": 3, "weak": 4}


def _rank(container: GrowingContainer) -> tuple[int, int, float]:
    """Holders first, by what they keep alive; weak-reference containers last."""
    return (_STATUS_ORDER[container.status], -container.kept_bytes, -container.per_iteration)


def _grown(
    obj: object, points: list[int], lengths: list[int], bound: Bound | None, weak: bool
) -> GrowingContainer:
    """A container that grew, by its lengths at the checkpoints (no path yet)."""
    span = max(points[-1] - points[0], 1) if points else 1
    return GrowingContainer(
        type_name(obj),
        None,
        list(zip(points, lengths)),
        (lengths[-1] - lengths[0]) / span,
        bound=bound,
        weak=weak,
    )


def _stopped_containers(ledger: _Ledger, objects: list[object]) -> list[GrowingContainer]:
    """The containers that grew for a while and then stopped, with their bounds."""
    bounds = find_bounds(objects, None, ignore=[id(objects)]) if objects else []
    out = []
    for (key, (points, lengths, obj)), bound in zip(ledger.stopped.items(), bounds):
        out.append(
            _grown(obj, points, lengths, ledger.bounds.get(key) or bound, key in ledger.weak)
        )
    return out


def _growing_types(ledger: _Ledger, warmup: int) -> list[tuple[str, float]]:
    out = []
    for name, values in ledger.type_series.items():
        trend = judge(name, values, exact=True)
        if trend.growing and trend.per_iteration > 0:
            out.append((name, trend.per_iteration))
    out.sort(key=lambda item: -item[1])
    return out[:_MAX_TYPES]


def _type_sizes(grown_by: dict[str, float]) -> dict[str, tuple[int, float]]:
    """Live count of each named type, and the mean shallow size of its newest
    instances (as many as it grew by, at most ``_MAX_SIZED``).

    Survivors of a collection join the end of the oldest generation, which
    ``gc.get_objects()`` lists last, so the last instances of a type are the
    ones the iterations added (unless something called ``gc.freeze()``).
    """
    if not grown_by:
        return {}
    objects = gc.get_objects()
    out: dict[str, tuple[int, float]] = {}
    for cls in set(map(type, objects)):
        name = type_key(cls)
        if name not in grown_by:
            continue
        instances = list(compress(objects, map({cls}.__contains__, map(type, objects))))
        newest = min(max(round(grown_by[name]), 1), _MAX_SIZED)
        sized = instances[-newest:]
        mean = sum(map(safe_sizeof, sized)) / len(sized) if sized else 0.0
        count, previous = out.get(name, (0, 0.0))
        out[name] = (count + len(instances), max(previous, mean))
        del instances, sized
    del objects
    return out


def _holder_of(group: SurvivorGroup) -> tuple[Root, str] | None:
    """The root and expression of the old object a survivor group attaches to."""
    if group.path is None or not group.path.steps:
        return None
    return group.path.root, "".join(step.code for step in group.path.steps[:-1])


def _attribute(containers: list[GrowingContainer], sample: Report) -> None:
    """What the items each container gained in the sampled call keep alive."""
    by_holder: dict[tuple[Root, str], list[SurvivorGroup]] = {}
    for group in sample.survivors:
        key = _holder_of(group)
        if key is not None:
            by_holder.setdefault(key, []).append(group)
    for container in containers:
        if container.path is None or container.unit != "items":
            continue
        groups = by_holder.get((container.path.root, container.path.expression), [])
        container.kept_objects = sum(g.count for g in groups)
        container.kept_bytes = sum(g.size for g in groups)


def _bytes_per_iteration(
    containers: list[GrowingContainer],
    sample: Report | None,
    w: _Weighing,
    types: list[TypeGrowth],
) -> float:
    """Bytes one call keeps: what the sampled call left at the holders (at
    every survivor group when no holder was found; without a sampled call,
    the growing types' sizes), plus the growth of ``malloc``."""
    kept = 0.0
    holders = [c for c in containers if c.holder]
    if sample is None:
        if w.verdict != "not leaking":
            kept = sum(max(t.bytes_per_iteration, 0.0) for t in types if t.tracked)
    elif holders:
        kept = float(sum(c.kept_bytes for c in holders))
    elif w.verdict != "not leaking":
        kept = float(sum(g.size for g in sample.survivors))
    if w.malloc_growth and w.malloc is not None:
        kept += max(w.malloc.per_iteration, 0.0)
    return kept


def _sites(sample: Report | None) -> list[SiteGrowth]:
    """Lines that allocated what the sampled call left behind (tracemalloc, one call)."""
    if sample is None:
        return []
    return [
        SiteGrowth(a.site, float(a.size), float(a.count)) for a in sample.allocations[:_MAX_SITES]
    ]


# -- the one-line explanation ------------------------------------------------------------


def _rates(w: _Weighing) -> str:
    parts = []
    for trend in w.exact:
        parts.append(f"{trend.per_iteration:+,.3g} {trend.name}")
    if w.malloc_growth and w.malloc is not None:
        parts.append(f"+{human_size(w.malloc.per_iteration)} of malloc")
    if not parts and w.buffers:
        parts.append("large strings and buffers grew")
    return " and ".join(parts)


def _how_often(w: _Weighing) -> str:
    trends = w.exact or ([w.malloc] if w.malloc is not None else [])
    trend = max(trends, key=lambda t: t.grew / max(t.window, 1))
    if trend.every_interval:
        return f"in each of the last {plural(trend.window, 'call')}"
    return f"in {trend.grew} of the last {plural(trend.window, 'call')}"


def _distinct(containers: list[GrowingContainer]) -> list[GrowingContainer]:
    """One container per description (a cache's dict and its order list have one bound)."""
    seen: dict[str, GrowingContainer] = {}
    for container in containers:
        seen.setdefault(container.describe(), container)
    return list(seen.values())


#: Why growth was too weak to call, as the inconclusive verdict says it.
_WEAK_BECAUSE = {
    "memory only": "memory outside pymalloc only, not steady enough to call",
    "unconfirmed": (
        "the growth varies from call to call and no second stage confirmed its "
        "rate (a cache filling from many keys looks like this)"
    ),
    "no holder": "not yet seen at the same rate a second time",
    "holder only": (
        "but no count of objects, blocks or bytes grows with it (a container that "
        "fills and empties looks like this between checkpoints)"
    ),
}


def _explain(
    w: _Weighing, containers: list[GrowingContainer], stopped: list[GrowingContainer], n: int
) -> str:
    """One line a person believes: what was seen, over how long, and what holds it."""
    window = max(w.objects.window, w.blocks.window)
    holders = [c for c in containers if c.holder]
    filling = _distinct([c for c in containers if c.status == "filling"])
    full = _distinct(
        [c for c in [*containers, *stopped] if c.bound is not None and c.bound.bounded]
    )
    if w.verdict == "not leaking" and not w.weak_because:
        if window < 4 and not w.exact:
            return f"no growth seen, but judged on only {plural(w.measured, 'call')} after warm-up"
        if (w.exact or w.buffers) and full:
            listed = "; ".join(c.describe() for c in full[:2])
            if all(c.status == "declared" for c in full):
                return f"what grows is held by containers declared bounded: {listed}"
            return f"what grew is bounded containers that filled: {listed}"
        if w.objects.change == 0 and w.blocks.change == 0 and not w.objects.grew + w.blocks.grew:
            text = (
                "flat: objects and allocated blocks unchanged over the last "
                f"{plural(window, 'call')}"
            )
        elif not w.exact and not w.malloc_growth:
            rose = [t for t in (w.objects, w.blocks) if t.grew]
            detail = ", ".join(f"{t.name} rose in {t.grew} and fell in {t.shrank}" for t in rose)
            text = f"no steady growth over the last {plural(window, 'call')}"
            if detail:
                text += f" ({detail}): it falls back, not a trend"
        else:
            text = f"no growth over the last {plural(window, 'call')}"
        if full:
            text += "; " + "; ".join(c.describe() for c in full[:2])
        elif stopped:
            first = stopped[0]
            text += f"; {first.name} grew, then stopped at {first.length:,} items"
        return text
    if w.weak_because == "filling":
        listed = "; ".join(c.describe() for c in filling[:2])
        return f"growth is bounded containers filling: {listed}"
    rates = _rates(w) or "container growth"
    if holders and holders[0].unit == "bytes":
        holder = holders[0]
        text = (
            f"the {holder.type_name} at {holder.name} grows by "
            f"{human_size(holder.per_iteration)} per call, at each of the last "
            f"{plural(len(holder.lengths) - 1, 'checkpoint')}"
        )
        if w.exact:
            text = f"{_rates(w)} per call; {text}"
    elif holders:
        holder = holders[0]
        intervals = len(holder.lengths) - 1
        text = (
            f"{rates} per call, {_how_often(w)}; held by {holder.name}, which grew at each "
            f"of {plural(intervals, 'checkpoint')} with no bound"
        )
    elif w.exact or w.malloc_growth:
        text = f"{rates} per call, {_how_often(w)}; no container on the heap holds them"
    else:
        text = "no growth"
    if w.verdict == "inconclusive":
        halves = [t for t in w.exact if not t.steady]
        if w.declining and w.stage_rates is not None:
            before, since = w.stage_rates
            text += (
                f"; slowing down, from {before:,.3g} to {since:,.3g} per call since the "
                "stage before: a cache still filling looks like this"
            )
        elif halves:
            t = halves[0]
            text += (
                f"; slowing down ({t.name} +{t.early:,} then +{t.late:,} over the two halves "
                "of the judged calls): a cache still filling looks like this"
            )
        elif w.weak_because in _WEAK_BECAUSE:
            text += "; " + _WEAK_BECAUSE[w.weak_because]
        elif w.weak_because == "short":
            text += f"; judged on only {plural(window, 'call')}"
        text += f"; the budget of {plural(n, 'call')} ran out"
    elif w.weak_because == "no holder":
        text += " (held from C, or by a chain of objects)"
    elif w.weak_because == "memory only":
        text += " (a string or buffer that keeps growing)"
    return text


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
    runner: Lifecycle,
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
    """Types the gc does not track among the items the holders just gained."""
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for index, obj in enumerate(held):
        for item in _new_items(obj, before[index]):
            if not gc.is_tracked(item):
                name = display_type(type_key(type(item)))
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
        if id(leak) in taken or leak.handle is not None or leak.path is None:
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
    "Confidence",
    "ContainerStatus",
    "GrowingContainer",
    "Projection",
    "SiteGrowth",
    "SoakReport",
    "TypeGrowth",
    "Trend",
    "Verdict",
    "default_budget",
    "default_warmup",
    "soak",
]
