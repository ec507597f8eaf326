"""Trend statistics for a series of measurements: is it growing, and how fast?

A series is judged over its later half (at least 3 intervals), the way
CPython's reference leak hunter judges only its last runs. It is *growing*
when it grew in every judged interval, or when a Mann-Kendall test finds an
upward trend (one-sided p < 0.01) that rarely steps back and is spread over
the window (one step, like a cache filled once, is not a trend). Its rate is
the Theil-Sen slope (the median of every pairwise slope), so one jump does not
make a trend and a cache that filled and then stopped has a slope of zero.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Trend", "fewer_than_expected", "judge", "mann_kendall", "theil_sen"]

#: Fewer judged intervals than this and a noisy series cannot decide.
MIN_NOISY_WINDOW = 4
#: The one-sided p-value below which a Mann-Kendall trend counts.
TREND_P = 0.01
#: Pairwise statistics use at most this many points (evenly spaced).
_MAX_POINTS = 200
#: Above this many events, the binomial tail is taken from its normal approximation.
_EXACT_BINOMIAL = 1000


@dataclass(frozen=True)
class Trend:
    """How one measured series behaved over the judged part of a soak.

    ``window`` intervals are judged: the later half of the iterations after
    warm-up (at least 3, when there are that many). ``grew`` and ``shrank``
    count intervals; ``change`` is the net change over the window;
    ``per_iteration`` is its Theil-Sen slope; ``p_value`` is the one-sided
    Mann-Kendall p-value of an upward trend. ``early`` and ``late`` are the
    changes over the first and the second half of the window: a series that
    fills up grows less and less (``steady`` is False).
    """

    name: str
    per_iteration: float
    window: int
    grew: int
    shrank: int
    change: int
    p_value: float
    growing: bool
    early: int = 0
    late: int = 0
    #: the same growth in at least 90% of the judged intervals (a leak of so
    #: much per call, not growth that varies from call to call)
    regular: bool = False

    @property
    def every_interval(self) -> bool:
        """True when the series grew in every judged interval."""
        return self.window > 0 and self.grew == self.window

    @property
    def steady(self) -> bool:
        """Growth that does not die down: the window's second half grew at
        least a third as much as its first half."""
        return self.late > 0 and self.late * 3 >= self.early

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: every field, unmasked (``name`` may be a type name from the program)."""
        return {
            "name": self.name,
            "per_iteration": self.per_iteration,
            "window": self.window,
            "grew": self.grew,
            "shrank": self.shrank,
            "change": self.change,
            "p_value": self.p_value,
            "growing": self.growing,
            "early": self.early,
            "late": self.late,
            "regular": self.regular,
        }


def _points(values: Sequence[float]) -> list[tuple[int, float]]:
    n = len(values)
    if n <= _MAX_POINTS:
        return list(enumerate(values))
    step = (n - 1) / (_MAX_POINTS - 1)
    picked = sorted({round(i * step) for i in range(_MAX_POINTS)})
    return [(i, values[i]) for i in picked]


def theil_sen(values: Sequence[float]) -> float:
    """The median of the slopes between every two points (x = 0, 1, 2, ...).

    >>> theil_sen([0, 1, 2, 30, 4])
    1.0
    """
    points = _points(values)
    slopes = [
        (yj - yi) / (xj - xi) for a, (xi, yi) in enumerate(points) for xj, yj in points[a + 1 :]
    ]
    return float(statistics.median(slopes)) if slopes else 0.0


def mann_kendall(values: Sequence[float]) -> float:
    """One-sided p-value of an upward monotonic trend (Mann-Kendall, ties corrected).

    >>> mann_kendall([1, 2, 3, 4, 5, 6, 7, 8]) < 0.001
    True
    """
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


def fewer_than_expected(before: int, since: int, share: float) -> float:
    """One-sided p-value that ``since`` events are fewer than an unchanged rate gives.

    ``before`` and ``since`` count events (objects, blocks, items) in two
    stretches of calls; ``share`` is the second stretch's share of the calls.
    With the same rate in both, each event falls in the second stretch with
    probability ``share``: the p-value is the binomial tail
    P(X <= since) for X ~ Binomial(before + since, share). Small counts
    cannot show a slowdown: 6 blocks then 4 over equal stretches is 0.38.

    >>> round(fewer_than_expected(6, 4, 0.5), 2)
    0.38
    >>> fewer_than_expected(84, 47, 0.5) < 0.01
    True
    """
    if since < 0:
        return 0.0
    total = before + since
    if total <= 0 or share >= 1.0:
        return 1.0
    if share <= 0.0:
        return 0.0 if since < total else 1.0
    if total <= _EXACT_BINOMIAL:
        return min(
            1.0,
            sum(
                math.comb(total, k) * share**k * (1.0 - share) ** (total - k)
                for k in range(since + 1)
            ),
        )
    mean = total * share
    deviation = math.sqrt(total * share * (1.0 - share))
    z = (since + 0.5 - mean) / deviation
    return 0.5 * math.erfc(-z / math.sqrt(2))


def judge(name: str, values: Sequence[int], exact: bool) -> Trend:
    """The trend of ``values`` (measured after warm-up) over its later half.

    Growing means: grew in every judged interval, or an upward Mann-Kendall
    trend (p < 0.01) with a positive Theil-Sen slope, growth in both halves
    of the window and few intervals that shrank. A noisy series
    (``exact=False``) needs at least 4 intervals and growth in at least half
    of them.

    >>> judge("objects", [100 + 5 * i for i in range(13)], exact=True).growing
    True
    >>> judge("objects", [100, 110, 120] + [130] * 10, exact=True).growing
    False
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
    early = sum(deltas[:half])
    late = sum(deltas[half:])
    if window == 0 or (not exact and window < MIN_NOISY_WINDOW):
        growing = False
    elif grew == window:
        growing = True
    else:
        growing = (
            window >= 3
            and slope > 0
            and change > 0
            and p_value < TREND_P
            and spread
            and shrank * 3 <= grew
            and (exact or grew * 2 >= window)
        )
    regular = False
    if deltas:
        step, times = Counter(deltas).most_common(1)[0]
        regular = step > 0 and times * 10 >= 9 * len(deltas)
    return Trend(name, slope, window, grew, shrank, change, p_value, growing, early, late, regular)
