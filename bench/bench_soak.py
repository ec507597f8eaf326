"""What reftrace.soak() costs per iteration on a big heap, against one gc.collect().

    python bench/bench_soak.py                  # 100k and 1M objects, 3 soaks each
    python bench/bench_soak.py --sizes 3M --repeat 1
    python bench/bench_soak.py --quick          # 100k, 1 soak: checks the script works

For each heap size it builds a heap of mixed objects (instances with a
__dict__, dicts the gc tracks and dicts it does not, lists, tuples, strings,
closures, deques) and times, as medians over the runs:

- ``gc.collect()``: the baseline every ratio is taken against;
- a soak of a leaking lifecycle (each call appends a record to a module
  list) and of a clean one (each call builds and drops the same record);
  the soak's own cost per iteration (the collection, the count by type, the
  container checkpoints, spread over the iterations), its cost once per
  soak (the verdict, the sampled call under watch(), the paths), and the
  peak resident memory it adds (Linux).

Every leaking run must be judged leaking with ``LEAKS`` as the growing
container, every clean run not leaking.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import platform
import statistics
import sys
import time
from typing import Any

from _args import parse_sizes

import reftrace

HEAP: dict[str, object] = {}
LEAKS: list[object] = []


class Record:
    def __init__(self, i: int) -> None:
        self.id = i
        self.tags = [i, i + 1]
        self.meta = {"owner": "x" * (i % 7), "n": i}  # atomic: the gc does not track it


class Session:
    __slots__ = ("user", "history")

    def __init__(self, i: int) -> None:
        self.user = f"user-{i}"
        self.history: collections.deque[int] = collections.deque([i], maxlen=4)


def build_heap(target: int) -> int:
    """Grow the heap until about ``target`` gc-tracked objects are alive."""
    HEAP.clear()
    LEAKS.clear()
    gc.collect()
    start = len(gc.get_objects())
    records: list[Record] = []
    groups: list[tuple[object, ...]] = []
    closures: list[object] = []
    sessions: dict[str, Session] = {}
    HEAP.update(records=records, groups=groups, closures=closures, sessions=sessions)
    i = 0
    while len(gc.get_objects()) - start < target:
        for j in range(i, i + 10_000):
            records.append(Record(j))
            if j % 4 == 0:
                groups.append((records[-1], [j], f"group {j}"))
            if j % 16 == 0:
                value = records[-1]
                closures.append(lambda value=value: value)
            if j % 32 == 0:
                sessions[f"s{j}"] = Session(j)
        i += 10_000
    gc.collect()
    return len(gc.get_objects())


def leaking_call() -> None:
    LEAKS.append(Record(len(LEAKS)))


def clean_call() -> None:
    record = Record(0)
    record.tags.append(record.meta)


def rss_peak_delta(fn) -> tuple[float, object]:
    """Peak resident memory added while ``fn`` runs, in MB (Linux), and its result."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        before = _status("VmRSS")
        result = fn()
        return (_status("VmHWM") - before) / 1024, result
    except OSError:
        return float("nan"), fn()


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_size(size: int, repeat: int, iterations: int) -> dict[str, Any]:
    objects = build_heap(size)
    collect, leak_per, clean_per, once, peaks = [], [], [], [], []
    stages: dict[str, float] = {}
    for _ in range(repeat):
        collect.append(timed(gc.collect))
        peak, sr = rss_peak_delta(
            lambda: reftrace.soak(leaking_call, iterations=iterations, progress=False)
        )
        assert sr.leaking, str(sr)
        assert sr.containers and sr.containers[0].name.endswith(".LEAKS"), str(sr)
        t = sr.timings
        leak_per.append(t["per_iteration_overhead"])
        once.append(t["analysis"] + t.get("sample", 0.0) + t["paths"])
        peaks.append(peak)
        stages = {
            "collect+count per iteration": t["measure"] / (sr.iterations + 1),
            **{k: v for k, v in t.items() if k.startswith("checkpoint ")},
            "verdict and types": t["analysis"],
            "sampled call (watch)": t.get("sample", 0.0),
            "container paths": t["paths"],
        }
        LEAKS.clear()
        sr = reftrace.soak(clean_call, iterations=iterations, progress=False)
        assert not sr.leaking, str(sr)
        clean_per.append(sr.timings["per_iteration_overhead"])
    median = statistics.median
    return {
        "objects": objects,
        "collect": median(collect),
        "leak_per": median(leak_per),
        "clean_per": median(clean_per),
        "once": median(once),
        "peak_mb": median(peaks),
        "stages": stages,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100k,1M", type=parse_sizes, help="heap sizes, e.g. 100k,1M,3M"
    )
    parser.add_argument("--repeat", type=int, default=3, help="soaks per size (medians)")
    parser.add_argument("--iterations", type=int, default=20, help="iterations per soak")
    parser.add_argument("--quick", action="store_true", help="100k objects, one soak")
    args = parser.parse_args()
    sizes = [100_000] if args.quick else args.sizes
    repeat = 1 if args.quick else args.repeat
    if repeat < 1 or args.iterations < 8:
        parser.error("--repeat must be at least 1 and --iterations at least 8")
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} cores; {args.iterations} iterations per soak, medians of {repeat}"
    )
    print(
        f"{'heap objects':>13} {'gc.collect':>11} {'soak/iter (leak)':>17} {'ratio':>6} "
        f"{'soak/iter (clean)':>18} {'ratio':>6} {'once per soak':>14} {'peak +MB':>9}"
    )
    for size in sizes:
        row = run_size(size, repeat, args.iterations)
        c = row["collect"]
        print(
            f"{row['objects']:>13,} {c * 1000:>9.0f}ms {row['leak_per'] * 1000:>15.0f}ms "
            f"{row['leak_per'] / c:>5.2f}x {row['clean_per'] * 1000:>16.0f}ms "
            f"{row['clean_per'] / c:>5.2f}x {row['once'] * 1000:>12.0f}ms {row['peak_mb']:>9.1f}"
        )
        stages = ", ".join(f"{k} {v * 1000:.0f}ms" for k, v in row["stages"].items())
        print(f"{'':>13} stages of the last leaking soak: {stages}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
