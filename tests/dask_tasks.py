"""Task functions the Dask tests run on their workers (imported there by name),
and the load that submits them from the client side."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

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


class Load:
    """Submits batches of 40 ``fn`` tasks until stopped, spread over the workers:
    as fast as they run them, or ``per_second`` tasks a second. Used from the
    client side (the tests, bench/bench_dask_verdicts.py); leaving the
    ``with`` block raises what the load met, if anything."""

    def __init__(
        self, client: Any, fn: Callable[[int], int], per_second: float | None = None
    ) -> None:
        self.client = client
        self.fn = fn
        self.per_second = per_second
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        try:
            started = time.monotonic()
            while not self.stop.is_set():
                futures = self.client.map(self.fn, range(i, i + 40), pure=False)
                self.client.gather(futures)
                i += 40
                pause = 0.05
                if self.per_second is not None:
                    pause = max(pause, started + i / self.per_second - time.monotonic())
                self.stop.wait(pause)
        except BaseException as exc:  # raised on leaving the block
            self.error = exc

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        if self.error is not None:
            raise RuntimeError(f"the load of {self.fn.__name__} tasks failed") from self.error
