"""Task functions the Dask tests run on their workers (imported there by name)."""

from __future__ import annotations

import functools

#: The planted leak: every result stays in this module-level list on the worker.
RESULTS: list[dict[str, object]] = []


def leaky(i: int) -> int:
    """A task that keeps its result on the worker for good."""
    RESULTS.append({"task": i, "rows": [i] * 8})
    return i


def clean(i: int) -> int:
    """A task that keeps nothing."""
    rows = [{"task": i, "row": j} for j in range(8)]
    return len(rows)


@functools.lru_cache(maxsize=256)
def _lookup(key: int) -> tuple[int, ...]:
    return tuple(range(key % 50))


def cached(i: int) -> int:
    """A task that reads through a bounded cache (256 entries, 1,000 keys)."""
    return len(_lookup(i % 1000))
