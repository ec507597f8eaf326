"""Weighing a soak's evidence: leaking, not leaking or inconclusive, and why.

After each stage of calls, the readings of the ``Ledger`` are judged
(``reftrace.stats``): the trend of each counter over the judged calls, the
containers that grew at every checkpoint and what bounds them, and whether
a rate seen once was confirmed by a second stage. ``next_target`` says how
far to extend a run whose evidence is weak, within its ``Budget``;
``explain`` puts the verdict in one line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from reftrace.bounds import Bound, find_bounds, holds_weak_references
from reftrace.ledger import Ledger, bracketed
from reftrace.memory import malloc_measured
from reftrace.soak_report import Confidence, ContainerStatus, GrowingContainer, Verdict
from reftrace.stats import Trend, fewer_than_expected, judge
from reftrace.units import human_size, plural

#: Judged calls a decisive verdict needs.
DECISIVE_WINDOW = 10


#: Checkpoint intervals a holder must have grown in, for high confidence.
DECISIVE_INTERVALS = 3


#: ``malloc`` growth below this many times tracemalloc's own growth is its tables'.
_TRACEMALLOC_SHARE = 2.5


@dataclass(frozen=True)
class StageRates:
    """The growth over the stretch of calls before, and over the stretch since.

    ``before`` and ``since`` count what grew (objects, blocks, bytes or
    items) over ``before_calls`` and ``since_calls`` calls.
    """

    before: int
    since: int
    before_calls: int
    since_calls: int

    @property
    def rates(self) -> tuple[float, float]:
        """Growth per call before, and since."""
        return self.before / self.before_calls, self.since / self.since_calls

    @property
    def slower(self) -> bool:
        """The rate since fell by a quarter or more, by more than counting explains.

        Few events cannot show a slowdown: a dict every fifth call is 2 or
        3 dicts in 12 calls, depending on where the stretch starts.
        """
        before, since = self.rates
        if before <= 0 or since >= _CONFIRMING_SHARE * before:
            return False
        share = self.since_calls / (self.before_calls + self.since_calls)
        return fewer_than_expected(self.before, self.since, share) < _SLOWER_P


@dataclass
class Budget:
    """How far a soak may go: the calls asked for, and the most calls and
    seconds it may spend deciding."""

    requested: int
    max_iterations: int
    max_seconds: float | None
    started: float = field(default_factory=time.perf_counter)

    def out_of_time(self) -> bool:
        """Whether ``max_seconds`` have passed since the soak started."""
        limit = self.max_seconds
        return limit is not None and time.perf_counter() - self.started >= limit


@dataclass
class Weighing:
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
    #: the growth over the stage before and since: growth confirmed, or slowing down
    stage_rates: StageRates | None
    verdict: Verdict = "not leaking"
    confidence: Confidence = "low"
    #: why more calls could change the verdict ("" when they could not)
    weak_because: str = ""
    #: the call by which every bounded container still filling would be full
    filled_by: int | None = None

    @property
    def exact(self) -> list[Trend]:
        """The exact counters (gc objects, allocated blocks) that grow."""
        return [t for t in (self.objects, self.blocks) if t.growing]

    @property
    def window(self) -> int:
        """How many calls were judged."""
        return max(self.objects.window, self.blocks.window)

    def count(self, status: ContainerStatus) -> int:
        """How many growing containers have ``status``."""
        return sum(1 for s in self.statuses.values() if s == status)

    @property
    def holders(self) -> int:
        """How many growing containers have no bound: the holders of a leak."""
        return self.count("unbounded")

    @property
    def declining(self) -> bool:
        """The growth rate fell by a quarter or more since the stage before,
        by more than counting noise explains."""
        return self.stage_rates is not None and self.stage_rates.slower

    @property
    def confirmed(self) -> bool:
        """A later stage grew at the rate of the one before, within counting noise."""
        if self.stage_rates is None:
            return False
        before, since = self.stage_rates.rates
        return before > 0 and since > 0 and not self.stage_rates.slower


#: A later stage confirms growth when it grows at least this share of the rate before.
_CONFIRMING_SHARE = 0.75


#: A slowdown counts when fewer events than an unchanged rate gives are this unlikely.
_SLOWER_P = 0.05


#: Calls between warm-up and the judged half, at the least, to compare their rates.
_MIN_COMPARED = 5


#: ``malloc`` growth over the judged calls below this is its free chunk caches' noise.
_MALLOC_NOISE = 8192


#: Large strings and buffers must grow by at least this much over the last checkpoints.
_ATOMIC_MIN_GROWTH = 256


def _classify(ledger: Ledger, declared: dict[int, str]) -> dict[int, ContainerStatus]:
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


def weigh_stage(
    ledger: Ledger, n: int, warmup: int, declared: dict[int, str], *, live: bool = False
) -> Weighing:
    """The evidence after ``n`` calls, judged; what judging keeps is the soak's own.

    ``live``: the iterations are samples of a program that runs its own loop
    (``reftrace attach``), taken while its work is in flight. Its counters
    then move with the requests under way, not only with what stays: growth
    is judged by the holders' items, and counters alone never make a leak.
    """
    holder: list[Weighing] = []
    bracketed(ledger, lambda: holder.append(_weigh(ledger, n, warmup, declared, live)))
    return holder[0]


def _weigh(
    ledger: Ledger, n: int, warmup: int, declared: dict[int, str], live: bool = False
) -> Weighing:
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
    statuses = _classify(ledger, declared)
    holders = [key for key, status in statuses.items() if status == "unbounded"]
    w = Weighing(
        objects,
        blocks,
        malloc,
        malloc_growth,
        buffers,
        buffer_rate,
        statuses,
        max(len(ledger.points) - 1 if ledger.candidates else 0, 3 if buffer_rate > 0 else 0),
        n - warmup,
        regular=any(t.regular for t in growing) or (not growing and buffers_regular),
        stage_rates=_stage_rates(
            ledger, n, warmup, objects, blocks, buffers, holders if live else []
        ),
    )
    _decide(w, second_look=len(ledger.stages) > 0, live=live)
    if w.count("filling"):
        w.filled_by = _filled_by(ledger, w.statuses)
    return w


def _atomic_growth(ledger: Ledger) -> tuple[bool, float, bool]:
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
    ledger: Ledger,
    n: int,
    warmup: int,
    objects: Trend,
    blocks: Trend,
    buffers: bool,
    holders: Sequence[int] = (),
) -> StageRates | None:
    """The growth rate over the part of the run before, and since.

    On the first stage, "before" is the run from warm-up to the judged half
    and "since" the judged half; later, the stage before and this one. Of the
    counter that grows; or of the large strings and buffers; or of the
    holder that gains the most items. ``None`` with nothing growing, or too
    few calls before the judged half to compare. With ``holders`` (ids of
    the unbounded containers, for live samples), their items come first.
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
    if holders:
        rates = [
            _at_points(ledger.points, ledger.candidates[key], [start, end, n]) for key in holders
        ]
        points, values = max(rates, key=lambda pv: pv[1][-1] - pv[1][0])
    elif trend.growing:
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
    return StageRates(
        values[1] - values[0],
        values[2] - values[1],
        max(points[1] - points[0], 1),
        max(points[2] - points[1], 1),
    )


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


def _decide(w: Weighing, second_look: bool, live: bool = False) -> None:
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
    if live and not holders:
        # Counters that grow with no holder, in a program with work in flight:
        # never a leak; worth a longer look only when they grew at every sample.
        w.weak_because = "in flight"
        if any(t.every_interval for t in exact):
            w.verdict, w.confidence = "inconclusive", "low"
        else:
            w.verdict = "not leaking"
            w.confidence = "medium" if window >= DECISIVE_WINDOW else "low"
        return
    # Live samples with a holder: its items say whether growth slows down;
    # the counters also move with the work in flight at each sample.
    halves_slow = any(not t.steady for t in exact) and not (live and holders)
    slowing = halves_slow or w.declining
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
            if not w.regular or live:
                # A live run is never extended, and over a few samples a
                # container a program trims by hand, or a cache that fills in
                # bursts, grows as regularly as a leak: not enough to say one.
                w.verdict, w.confidence = "inconclusive", "low"
        elif w.intervals < DECISIVE_INTERVALS:
            w.weak_because = "few checkpoints"
        return
    if exact or w.buffers:
        if window < DECISIVE_WINDOW:
            w.verdict, w.confidence, w.weak_because = "inconclusive", "low", "short"
        elif w.regular:
            w.verdict, w.confidence = "leaking", "medium"
        elif w.confirmed:
            # Confirmed at its rate, yet with nothing that holds it and a
            # growth that varies from call to call: a cache of many keys that
            # fills over a thousand calls looks like this over a few hundred.
            w.verdict, w.confidence, w.weak_because = "inconclusive", "low", "irregular"
        else:
            w.verdict, w.confidence, w.weak_because = "inconclusive", "low", "no holder"
        return
    # Memory outside pymalloc, and nothing else.
    if window >= 2 * DECISIVE_WINDOW and w.confirmed:
        w.verdict, w.confidence = "leaking", "medium"
    else:
        w.verdict, w.confidence, w.weak_because = "inconclusive", "low", "memory only"


def _filled_by(ledger: Ledger, statuses: dict[int, ContainerStatus]) -> int | None:
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


def next_target(w: Weighing, ledger: Ledger, n: int, warmup: int, budget: Budget) -> int | None:
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


def _rates(w: Weighing) -> str:
    parts = []
    for trend in w.exact:
        rate = trend.per_iteration
        parts.append(
            f"{rate:+,.0f} {trend.name}" if abs(rate) >= 1000 else f"{rate:+,.3g} {trend.name}"
        )
    if w.malloc_growth and w.malloc is not None:
        parts.append(f"+{human_size(w.malloc.per_iteration)} of malloc")
    if not parts and w.buffers:
        parts.append("large strings and buffers grew")
    return " and ".join(parts)


def _how_often(w: Weighing, unit: str) -> str:
    trends = w.exact or ([w.malloc] if w.malloc is not None else [])
    trend = max(trends, key=lambda t: t.grew / max(t.window, 1))
    if trend.every_interval:
        return f"in each of the last {plural(trend.window, unit)}"
    return f"in {trend.grew} of the last {plural(trend.window, unit)}"


def _distinct(containers: list[GrowingContainer]) -> list[GrowingContainer]:
    """One container per description (a cache's dict and its order list have one bound)."""
    seen: dict[str, GrowingContainer] = {}
    for container in containers:
        seen.setdefault(container.describe(), container)
    return list(seen.values())


#: Why growth was too weak to call, as the inconclusive verdict says it
#: (``{unit}``: what one iteration is).
_WEAK_BECAUSE = {
    "memory only": "memory outside pymalloc only, not steady enough to call",
    "unconfirmed": (
        "the growth varies from {unit} to {unit} and no second stage confirmed its "
        "rate (a cache filling from many keys looks like this)"
    ),
    "no holder": "not yet seen at the same rate a second time",
    "irregular": (
        "the growth varies from {unit} to {unit}, and with no holder only growth that "
        "is the same every {unit} is called a leak (a cache filling from many keys "
        "looks like this)"
    ),
    "in flight": (
        "no container holds what grew, and the work in flight at each sample moves the "
        "counters too (a longer run, or a quieter time, settles it)"
    ),
    "holder only": (
        "but no count of objects, blocks or bytes grows with it (a container that "
        "fills and empties looks like this between checkpoints)"
    ),
}


def explain(
    w: Weighing,
    containers: list[GrowingContainer],
    stopped: list[GrowingContainer],
    n: int,
    *,
    unit: str = "call",
) -> str:
    """One line a person believes: what was seen, over how long, and what holds it.

    ``unit`` is what one iteration is: ``"call"`` for a soak, ``"sample"``
    for a process measured over time.
    """
    window = max(w.objects.window, w.blocks.window)
    holders = [c for c in containers if c.holder]
    filling = _distinct([c for c in containers if c.status == "filling"])
    full = _distinct(
        [c for c in [*containers, *stopped] if c.bound is not None and c.bound.bounded]
    )
    if w.verdict == "not leaking" and w.weak_because == "in flight":
        return (
            f"no container grew at every checkpoint; {_rates(w) or 'memory'} per {unit}, "
            f"{_how_often(w, unit)}, rose and fell with the work in flight: no steady growth"
        )
    if w.verdict == "not leaking" and not w.weak_because:
        if window < 4 and not w.exact:
            return f"no growth seen, but judged on only {plural(w.measured, unit)} after warm-up"
        if (w.exact or w.buffers) and full:
            listed = "; ".join(c.describe() for c in full[:2])
            if all(c.status == "declared" for c in full):
                return f"what grows is held by containers declared bounded: {listed}"
            return f"what grew is bounded containers that filled: {listed}"
        if w.objects.change == 0 and w.blocks.change == 0 and not w.objects.grew + w.blocks.grew:
            text = (
                f"flat: objects and allocated blocks unchanged over the last {plural(window, unit)}"
            )
        elif not w.exact and not w.malloc_growth:
            rose = [t for t in (w.objects, w.blocks) if t.grew]
            detail = ", ".join(f"{t.name} rose in {t.grew} and fell in {t.shrank}" for t in rose)
            text = f"no steady growth over the last {plural(window, unit)}"
            if detail:
                text += f" ({detail}): it falls back, not a trend"
        else:
            text = f"no growth over the last {plural(window, unit)}"
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
            f"{human_size(holder.per_iteration)} per {unit}, at each of the last "
            f"{plural(len(holder.lengths) - 1, 'checkpoint')}"
        )
        if w.exact:
            text = f"{_rates(w)} per {unit}; {text}"
    elif holders:
        holder = holders[0]
        intervals = len(holder.lengths) - 1
        text = (
            f"{rates} per {unit}, {_how_often(w, unit)}; held by {holder.name}, which grew at each "
            f"of {plural(intervals, 'checkpoint')} with no bound"
        )
    elif w.exact or w.malloc_growth:
        text = f"{rates} per {unit}, {_how_often(w, unit)}; no container on the heap holds them"
    else:
        text = "no growth"
    if w.verdict == "inconclusive":
        halves = [t for t in w.exact if not t.steady]
        if w.declining and w.stage_rates is not None:
            before, since = w.stage_rates.rates
            text += (
                f"; slowing down, from {before:,.3g} to {since:,.3g} per {unit} since the "
                "stage before: a cache still filling looks like this"
            )
        elif halves:
            t = halves[0]
            text += (
                f"; slowing down ({t.name} +{t.early:,} then +{t.late:,} over the two halves "
                f"of the judged {unit}s): a cache still filling looks like this"
            )
        elif w.weak_because in _WEAK_BECAUSE:
            text += "; " + _WEAK_BECAUSE[w.weak_because].format(unit=unit)
        elif w.weak_because == "short":
            text += f"; judged on only {plural(window, unit)}"
        # A soak ran out of calls it may add; a live run is never extended.
        ended = "the budget of {} ran out" if unit == "call" else "the run ended after {}"
        text += "; " + ended.format(plural(n, unit))
    elif w.weak_because == "no holder":
        text += " (held from C, or by a chain of objects)"
    elif w.weak_because == "memory only":
        text += " (a string or buffer that keeps growing)"
    return text
