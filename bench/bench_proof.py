"""What proving and locating cost: watch(prove=True) and locate() against watch().

    python bench/bench_proof.py                  # 100k and 1M objects, 5 runs each
    python bench/bench_proof.py --sizes 3M --repeat 3

For each heap size it builds a heap of instances with a list and a dict each,
installs the demo agent with its listener bug, and times, as medians, a watch
around one stream of the agent (the output leaks through the listener list)
without and with ``prove=True``, ``reftrace.locate()`` of a function doing
the same (two calls: one watched, one traced), and one ``gc.collect()`` as the
baseline. Each run checks that the proof is confirmed (and freed the output
with its buffered chunks) and that the storing line was found.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time

from _args import parse_sizes

import reftrace
from reftrace.demo import agent as demo

HEAP: list[object] = []


class Record:
    def __init__(self, i: int) -> None:
        self.id = i
        self.tags = [i]
        self.meta = {"n": i}


def build_heap(target: int) -> int:
    HEAP.clear()
    gc.collect()
    start = len(gc.get_objects())
    while len(gc.get_objects()) - start < target:
        HEAP.extend(Record(i) for i in range(10_000))
    gc.collect()
    return len(gc.get_objects())


def one_watch(prove: bool) -> reftrace.Report:
    with reftrace.watch(prove=prove) as w:
        out = w.track(demo.AGENT.stream("hi"))
        for _chunk in out:
            pass
        del out, _chunk
    demo.AGENT.events._listeners.clear()
    return w.report


def one_request() -> object:
    out = demo.AGENT.stream("hi")
    for _chunk in out:
        pass
    return out


def one_locate() -> reftrace.Report:
    report = reftrace.locate(one_request)
    demo.AGENT.events._listeners.clear()
    return report


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100k,1M", type=parse_sizes, help="heap sizes, e.g. 100k,1M,3M"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per size (medians)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    demo.install(demo.Bug.LISTENER)
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} cores; medians of {args.repeat} runs"
    )
    print(
        f"{'heap objects':>13} {'gc.collect':>11} {'watch':>9} {'prove=True':>11} "
        f"{'proof':>9} {'proof/collect':>14} {'locate':>9} {'locate/watch':>13}"
    )
    for size in args.sizes:
        objects = build_heap(size)
        collect, plain, proving, proof, locating = [], [], [], [], []
        for _ in range(args.repeat):  # interleaved: drift hits each alike
            collect.append(timed(gc.collect)[0])
            plain.append(timed(lambda: one_watch(False))[0])
            seconds, report = timed(lambda: one_watch(True))
            proving.append(seconds)
            found = report.leak_groups[0].proof  # type: ignore[attr-defined]
            assert found is not None and found.status == "confirmed", found
            assert found.freed_objects > 100, found
            proof.append(report.timings["proofs"])  # type: ignore[attr-defined]
            seconds, located = timed(one_locate)
            locating.append(seconds)
            assert located.leak_groups[0].stored_at is not None  # type: ignore[attr-defined]
        median = statistics.median
        c = median(collect)
        print(
            f"{objects:>13,} {c * 1000:>9.0f}ms {median(plain) * 1000:>7.0f}ms "
            f"{median(proving) * 1000:>9.0f}ms {median(proof) * 1000:>7.0f}ms "
            f"{median(proof) / c:>13.1f}x {median(locating) * 1000:>7.0f}ms "
            f"{median(locating) / median(plain):>12.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
