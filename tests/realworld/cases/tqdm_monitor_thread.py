"""tqdm: the monitor thread keeps the last progress bars it looked at.

tqdm's ``TMonitor`` thread wakes every ``tqdm.monitor_interval`` seconds, lists
the open bars (``instances = self.get_instances()``), loops over them
(``for instance in instances``), then sleeps again, and up to 4.48.0 it slept
with both locals still bound: a closed bar stayed reachable from the sleeping
thread's frame as long as any other bar kept the monitor running (e.g. an outer
epoch bar around per-batch inner bars holding a data loader). 4.48.1 ends each
pass with ``del instance`` / ``del instances``
(https://github.com/tqdm/tqdm/commit/3bf905184f8ad83a39d10596aba06589de30a899,
https://github.com/tqdm/tqdm/commit/9d6a07c9783ad83ffe3ed245c546f4ba7e502ba3).

Lifecycle: with a long-running outer bar open (made at start-up, outside the
watch), open an inner bar, let the monitor make one pass over it, finish and
close the inner bar. The check happens within the monitor's next sleep
(``monitor_interval`` is set to 3 s), so the result is deterministic.
"""

from __future__ import annotations

import io
import time

from _harness import run
from tqdm import tqdm

OUTER = None


def setup():
    global OUTER
    tqdm.monitor_interval = 3
    OUTER = tqdm(total=100, desc="epochs", file=io.StringIO())


def lifecycle(track, keep):
    inner = track(tqdm(total=10, desc="batches", file=io.StringIO()))
    created = time.time()
    monitor = tqdm.monitor
    deadline = created + 15
    # Wait for one full monitor pass that started after the inner bar existed.
    while monitor.woken <= created and time.time() < deadline:
        time.sleep(0.01)
    passes_seen = monitor.woken > created
    inner.update(10)
    inner.close()
    return {"monitor_pass_seen": passes_seen, "monitor_interval": tqdm.monitor_interval}


if __name__ == "__main__":
    run("tqdm_monitor_thread", "tqdm", lifecycle, setup)
