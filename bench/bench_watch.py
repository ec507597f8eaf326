"""What a watch() costs on a big heap, against one gc.collect() in the same process.

    python bench/bench_watch.py                 # 100k and 1M objects, 5 runs each
    python bench/bench_watch.py --sizes 3M --repeat 3
    python bench/bench_watch.py --quick         # 100k, 1 run: checks the script works

For each heap size it builds a realistic heap (instances with a __dict__,
dicts, lists, strings, tuples, closures, services with listener lists) and
times, as medians over the runs:

- ``gc.collect()``: the baseline every ratio is taken against;
- a clean ``watch()``: a block whose objects all die, entry to report;
- a leaking ``watch()``: 10 tracked objects leak through listener lists deep
  in the heap; entry to the 10 leak traces rendered as text; its report
  build (the exit of the block) is also shown alone;
- peak RSS added by the first leaking watch on the fresh heap (``VmHWM``
  reset through ``/proc/self/clear_refs``, Linux only).

Every run checks that the 10 leaks were found with the expected paths.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import platform
import statistics
import sys
import time

import reftrace

HEAP: dict[str, object] = {}
SERVICES: list[Service] = []


class Emitter:
    def __init__(self) -> None:
        self._listeners: dict[str, list[object]] = {"chunk": [], "done": []}


class Service:
    def __init__(self, i: int) -> None:
        self.name = f"service-{i}"
        self.events = Emitter()
        self.config = {"retries": 3, "name": self.name}


class Record:
    def __init__(self, i: int) -> None:
        self.id = i
        self.tags = [i, i + 1]
        self.meta = {"owner": "x" * (i % 7), "n": i}


class Output:
    def __init__(self) -> None:
        self.buffer = [f"chunk {i}" for i in range(20)]

    def on_chunk(self, chunk: object) -> None:
        self.buffer.append(chunk)


def build_heap(target: int) -> int:
    """Grow the heap until about ``target`` gc-tracked objects are alive."""
    HEAP.clear()
    SERVICES.clear()
    gc.collect()
    start = len(gc.get_objects())
    records: list[Record] = []
    groups: list[tuple[object, ...]] = []
    closures = []
    HEAP.update(records=records, groups=groups, closures=closures)
    for i in range(100):
        SERVICES.append(Service(i))
    i = 0
    while len(gc.get_objects()) - start < target:
        for j in range(i, i + 10_000):
            records.append(Record(j))  # instance, tags list, meta dict: ~3 tracked objects
            if j % 4 == 0:
                groups.append((records[-1], [j]))
            if j % 16 == 0:
                value = records[-1]
                closures.append(lambda value=value: value)
        i += 10_000
    gc.collect()
    return len(gc.get_objects())


def leaking_block(w: reftrace.Watch) -> None:
    for k in range(10):
        out = w.track(Output())
        SERVICES[k * 7].events._listeners["chunk"].append(out.on_chunk)
    del out


def clean_block(w: reftrace.Watch) -> None:
    for _ in range(10):
        out = w.track(Output())
        out.on_chunk("x")
    del out


def unplant() -> None:
    for service in SERVICES:
        service.events._listeners["chunk"].clear()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rss_peak_delta(fn) -> float:
    """Peak resident memory added while ``fn`` runs, in MB (Linux), else NaN."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        before = _status("VmRSS")
        fn()
        return (_status("VmHWM") - before) / 1024
    except OSError:
        fn()
        return float("nan")


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


def run_clean() -> None:
    with reftrace.watch() as w:
        clean_block(w)
    assert not w.report.leaks, str(w.report)


def run_leaking() -> tuple[reftrace.Report, float]:
    """One leaking watch, from entry to the 10 traces rendered; returns the
    report and how long its exit (building the report) took."""
    with reftrace.watch() as w:
        leaking_block(w)
        exit_started = time.perf_counter()
    built = time.perf_counter() - exit_started
    out = io.StringIO()
    for leak in w.report.leaks:
        out.write(str(leak))
    return w.report, built


def run_size(size: int, repeat: int) -> dict[str, object]:
    objects = build_heap(size)
    collect, clean, leaking, build, peak = [], [], [], [], []
    expected = {f"SERVICES[{k * 7}].events._listeners['chunk'][0].__self__" for k in range(10)}
    # Peak memory first, before other runs leave freed arenas to reuse.
    peak.append(rss_peak_delta(lambda: (run_leaking(), unplant())))
    for _ in range(repeat):
        collect.append(timed(gc.collect))
        clean.append(timed(run_clean))
        t0 = time.perf_counter()
        report, built = run_leaking()
        leaking.append(time.perf_counter() - t0)
        build.append(built)
        found = {leak.path.expression for leak in report.leaks if leak.path}
        assert found == expected, f"wrong leaks: {sorted(found)}"
        unplant()
    median = statistics.median
    return {
        "objects": objects,
        "collect": median(collect),
        "clean": median(clean),
        "leaking": median(leaking),
        "build": median(build),
        "peak_mb": median(peak),
        "stages": report.timings,
    }


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100k,1M", help="heap sizes, e.g. 100k,1M,3M")
    parser.add_argument("--repeat", type=int, default=5, help="runs per size (medians)")
    parser.add_argument("--quick", action="store_true", help="100k objects, one run")
    args = parser.parse_args()
    sizes = [100_000] if args.quick else [parse_size(s) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} cores; medians of {repeat} run(s)"
    )
    header = (
        f"{'heap objects':>13} {'gc.collect':>11} {'clean watch':>12} {'ratio':>6} "
        f"{'10-leak watch':>14} {'ratio':>6} {'report build':>13} {'peak +MB':>9}"
    )
    print(header)
    for size in sizes:
        row = run_size(size, repeat)
        c, clean, leaking = row["collect"], row["clean"], row["leaking"]
        print(
            f"{row['objects']:>13,} {c * 1000:>9.0f}ms {clean * 1000:>10.0f}ms "
            f"{clean / c:>5.1f}x {leaking * 1000:>12.0f}ms {leaking / c:>5.1f}x "
            f"{row['build'] * 1000:>11.0f}ms {row['peak_mb']:>9.1f}"
        )
        stages = ", ".join(f"{k} {v * 1000:.0f}ms" for k, v in row["stages"].items())
        print(f"{'':>13} stages of the last leaking run: {stages}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
