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
import contextlib
import functools
import gc
import random
import sys
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable
from itertools import compress
from typing import Any, cast

from reftrace.analysis import make_path
from reftrace.bounds import Bound, find_bounds, resolve_declared
from reftrace.calls import Lifecycle
from reftrace.census import (
    display_type,
    find_atomic,
    type_key,
)
from reftrace.heap import HeapView
from reftrace.ledger import MAX_CONTAINERS, Ledger, OwnList, bracketed, measure, search
from reftrace.memory import malloc_measured
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
from reftrace.verdict import Budget, Weighing, explain, next_target, weigh_stage

#: Default budget: this many times the requested iterations, and seconds.
BUDGET_FACTOR = 10
DEFAULT_MAX_SECONDS = 60.0
#: At most this many growing types and allocation sites are reported.
_MAX_TYPES = 12
_MAX_SITES = 8
#: The mean size of a type is taken over at most this many of its instances.
_MAX_SIZED = 10_000
#: Checkpoints in each stage that extends a run.
_EXTENSION_CHECKPOINTS = 2


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

    def update(self, done: int, ledger: Ledger, warmup: int, force: bool = False) -> None:
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

    runner = Lifecycle(fn, loop, what="reftrace.soak()")
    try:
        budget = Budget(iterations, max_iterations, max_seconds)
        return _soak(runner, budget, warmup, progress, samples, checkpoints, max_depth, declared)
    finally:
        runner.close()


def _soak(
    runner: Lifecycle,
    budget: Budget,
    warmup: int,
    progress_setting: bool | None,
    samples: int,
    checkpoints: int,
    max_depth: int | None,
    declared: dict[int, str],
    unit: str = "call",
    live: bool = False,
) -> SoakReport:
    ledger = Ledger()
    progress = _Progress(progress_setting, budget.requested)
    timings = {"calls": 0.0, "measure": 0.0, "checkpoints": 0.0}
    # Fill the caches the bookkeeping fills on first use (Counter's
    # isinstance() checks fill ABC caches) before anything is measured.
    Counter(map(type, [ledger]))
    schedule = set(_checkpoint_schedule(warmup, budget.requested, checkpoints))
    end = budget.requested
    weighed: Weighing | None = None
    try:
        measure(ledger, 0, warmup, schedule, declared, timings)
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
                        exc.add_note(f"(raised by {unit} {k} of {end} in {runner.what})")
                    raise
                timings["calls"] += time.perf_counter() - t0
                measure(ledger, k, warmup, schedule, declared, timings)
                progress.update(k, ledger, warmup)
                if k > budget.requested and budget.out_of_time():
                    end = k
            weighed = weigh_stage(ledger, k, warmup, declared, live=live)
            ledger.stages.append(k)
            target = next_target(weighed, ledger, k, warmup, budget)
            if target is None:
                break
            schedule.update(_checkpoint_schedule(k, target, _EXTENSION_CHECKPOINTS))
            if not ledger.candidates and ledger.baseline is None:
                # Nothing grew at every checkpoint yet: search again from here.
                ledger.checkpoints.append(k)
                bracketed(ledger, functools.partial(search, ledger, k))
            end = target
            progress.total = target
        progress.update(k, ledger, warmup, force=True)
    finally:
        progress.close()
    timings["measured_total"] = time.perf_counter() - budget.started
    assert weighed is not None
    return _report(
        ledger, runner, budget, k, warmup, weighed, samples, max_depth, timings, unit, live
    )


def soak_over_time(
    wait: Callable[[], Any],
    samples: int,
    *,
    checkpoints: int = 4,
    max_depth: int | None = DEFAULT_MAX_DEPTH,
    kept_by_design: dict[int, str] | None = None,
) -> SoakReport:
    """Measure ``samples`` times, calling ``wait`` between two samples.

    The soak for a program that runs its own loop (``reftrace attach``): the
    growth between samples is the program's, driven by time, not by calls,
    and its work is in flight at every sample, so the evidence is weighed
    as live (``reftrace.verdict.weigh_stage``). When something grows, one
    more wait runs under :func:`reftrace.watch` to trace what the holders
    gained in it. The run is never extended. ``kept_by_design`` maps the ids
    of containers the program keeps on purpose (a framework's own task
    states) to how each is named; their growth is shown as declared, never
    taken for a leak.
    """
    samples = _check_int("samples", samples, 2)
    runner = Lifecycle(wait, None, what="reftrace.soak.soak_over_time()")
    try:
        budget = Budget(samples, samples, None)
        warmup = default_warmup(samples)
        return _soak(
            runner,
            budget,
            warmup,
            False,
            3,
            checkpoints,
            max_depth,
            dict(kept_by_design or {}),
            "sample",
            live=True,
        )
    finally:
        runner.close()


def timed_waits(wait: Callable[[], Any], pauses: array[float]) -> Callable[[], None]:
    """``wait``, keeping in ``pauses[0]`` the longest a measurement held the
    process: the time between the end of one wait and the start of the next
    (the first wait excepted). ``pauses[1]`` is when the last wait ended.

    For ``soak_over_time`` inside a running program (an attach, a survey). An
    array of C doubles: the soak must not see its caller's bookkeeping grow.
    """
    pauses[1] = time.perf_counter()
    first = array("b", [1])

    def timed() -> None:
        if first[0]:
            first[0] = 0
        else:
            pauses[0] = max(pauses[0], time.perf_counter() - pauses[1])
        wait()
        pauses[1] = time.perf_counter()

    return timed


# -- the report ------------------------------------------------------------------------


def _report(
    ledger: Ledger,
    runner: Lifecycle,
    budget: Budget,
    n: int,
    warmup: int,
    w: Weighing,
    samples: int,
    max_depth: int | None,
    timings: dict[str, float],
    unit: str,
    live: bool,
) -> SoakReport:
    t0 = time.perf_counter()
    measured = n - warmup
    points = list(ledger.points)
    growing = OwnList(obj for obj in ledger.final if id(obj) in ledger.candidates)
    containers = []
    for obj in growing:
        lengths = list(ledger.candidates[id(obj)])
        bound = ledger.bounds.get(id(obj))
        containers.append(_grown(obj, points, lengths, bound, id(obj) in ledger.weak))
    order = sorted(range(len(growing)), key=lambda i: _rank(containers[i]))[:MAX_CONTAINERS]
    growing = OwnList(growing[i] for i in order)
    containers = [containers[i] for i in order]
    buffer = _growing_buffer(ledger, w)
    if buffer is not None:
        growing.insert(0, buffer[0])
        containers.insert(0, buffer[1])
        del buffer
    stopped_objects = OwnList(obj for _, _, obj in ledger.stopped.values())
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
    paths = container_paths(OwnList([*growing, *stopped_objects]), max_depth)
    for container, (path, reason_text) in zip([*containers, *stopped], paths):
        container.path = path
        container.reason = reason_text
    stopped_objects.clear()
    timings["paths"] = time.perf_counter() - t1

    notes: list[str] = []
    sample: Report | None = None
    if w.verdict != "not leaking" and samples:
        t2 = time.perf_counter()
        sample, untracked = _sample_run(runner, growing, containers, samples, not live, unit)
        types.extend(untracked)
        for container in containers:
            _attach_unmatched(container, sample)
        _attribute(containers, sample)
        timings["sample"] = time.perf_counter() - t2
        notes.append(
            f"the sample traces come from one more {unit} ({unit} {n + 1}), "
            "run under reftrace.watch()"
        )
        order = sorted(range(len(containers)), key=lambda i: _rank(containers[i]))
        containers = [containers[i] for i in order]
    growing.clear()
    if len(ledger.candidates) > MAX_CONTAINERS:
        notes.append(
            f"{len(ledger.candidates)} containers grew at every checkpoint; "
            f"{MAX_CONTAINERS} are shown: holders first, then those a bound limits, "
            "each group by what it keeps alive"
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
        longer = _settling_run(n, budget)
        settle = (
            f"reftrace.soak(fn, iterations={longer})"
            if unit == "call"
            else f"a run of {longer} {unit}s, ten times as long"
        )
    reason = explain(w, containers, stopped, n, unit=unit)
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
        unit=unit,
    )


def _growing_buffer(ledger: Ledger, w: Weighing) -> tuple[object, GrowingContainer] | None:
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


def _settling_run(n: int, budget: Budget) -> int:
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


def _stopped_containers(ledger: Ledger, objects: list[object]) -> list[GrowingContainer]:
    """The containers that grew for a while and then stopped, with their bounds."""
    bounds = find_bounds(objects, None, ignore=[id(objects)]) if objects else []
    out = []
    for (key, (points, lengths, obj)), bound in zip(ledger.stopped.items(), bounds):
        out.append(
            _grown(obj, points, lengths, ledger.bounds.get(key) or bound, key in ledger.weak)
        )
    return out


def _growing_types(ledger: Ledger, warmup: int) -> list[tuple[str, float]]:
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
    w: Weighing,
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


# -- the sampled iteration --------------------------------------------------------


def _copied(container: object) -> dict[object, object] | list[object]:
    """A copy of a container (a dict's as a dict), made in one C call.

    The program's other threads go on changing its containers while a live
    sample reads them; iterating one could see it change size mid-way
    (``RuntimeError``). ``dict.copy``, a list's slice, ``set.copy`` and
    ``deque.copy`` run no Python code, so no other thread runs meanwhile.
    """
    cls = type(container)
    if issubclass(cls, dict):
        return dict.copy(cast("dict[object, object]", container))
    if issubclass(cls, list):
        return list.__getitem__(cast("list[object]", container), slice(None))
    if issubclass(cls, set):
        return list(set.copy(cast("set[object]", container)))
    if issubclass(cls, deque):
        return list(deque.copy(cast("deque[object]", container)))
    return []


def _contents(container: object) -> list[object]:
    """The items of a container (a dict's values and keys), read through C."""
    items = _copied(container)
    if isinstance(items, dict):
        return [item for pair in items.items() for item in pair]
    return items


def _new_items(container: object, before: set[int]) -> list[object]:
    """Items ``container`` gained since ``before`` (ids); for a dict, the new
    values, or the new key where the value cannot be tracked."""
    items = _copied(container)
    if isinstance(items, dict):
        out: list[object] = []
        for key, value in items.items():
            if id(value) not in before or id(key) not in before:
                out.append(value if untrackable_reason(value) is None else key)
        return out
    return [item for item in items if id(item) not in before]


def _sample_run(
    runner: Lifecycle,
    held: list[object],
    containers: list[GrowingContainer],
    samples: int,
    trace_stores: bool = True,
    unit: str = "call",
) -> tuple[Report, list[TypeGrowth]]:
    """Call ``fn`` once more under ``watch()`` and track what the containers gain.

    ``trace_stores``: look for the line that stores into each container. The
    tracer sees this thread only: for live samples, where the program's own
    threads do the storing, it is off (it would name the soak's own line).
    """
    from reftrace.watch import watch

    before = [set(map(id, _contents(obj))) for obj in held]
    slots = {str(index): [Slot("len", obj)] for index, obj in enumerate(held)}
    with watch() as w:
        try:
            tracer = StoreTracer(slots) if trace_stores else None
            with tracer if tracer is not None else contextlib.nullcontext():
                runner()
        except BaseException as exc:
            if hasattr(exc, "add_note"):
                exc.add_note(f"(raised by the extra {unit} {runner.what} runs under watch())")
            raise
        sampled = _track_new_items(w, held, before, samples)
    slots.clear()
    if tracer is not None:
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


def container_paths(held: list[object], max_depth: int | None) -> list[tuple[Path | None, str]]:
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
