"""What ``reftrace attach`` costs the process it attaches to.

    python3 bench/bench_attach.py                 # 1,000,000 objects
    python3 bench/bench_attach.py --objects 200000 --duration 20 --interval 2

Starts a target holding ``--objects`` gc-tracked objects (one-element
lists) whose main thread wakes every millisecond and records the longest
time it waited beyond that: the pause the target's own code sees. Then
attaches twice (a heap summary, then a growth run of ``--duration`` seconds,
one sample every ``--interval``) and prints, for each, the time the agent
took inside the target, the wall time of the attach, and the target's
longest pause during it. The target's longest pause while idle is the
baseline of the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def target(objects: int, gap_file: str) -> None:
    """The measured process: a heap of ``objects`` lists, and a 1 ms heartbeat."""
    import gc

    held = [[i] for i in range(objects)]
    reset = gap_file + ".reset"
    longest = 0.0
    started = time.perf_counter()
    gc.collect()
    print(f"{time.perf_counter() - started:.6f}", flush=True)  # one full collection
    last = time.perf_counter()
    while held:
        time.sleep(0.001)
        now = time.perf_counter()
        longest = max(longest, now - last - 0.001)
        last = now
        if os.path.exists(reset):
            os.unlink(reset)
            longest = 0.0
        tmp = gap_file + ".tmp"
        with open(tmp, "w") as out:
            out.write(f"{longest:.6f}")
        os.replace(tmp, gap_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--target", metavar="GAP_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.target:
        target(args.objects, args.target)
        return

    from reftrace.attach import HeapSummary, attach

    gap_file = os.path.join(tempfile.mkdtemp(prefix="bench-attach-"), "gap")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--objects", str(args.objects), "--target", gap_file],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    collect = float(proc.stdout.readline())

    def pause_during(action: object) -> tuple[float, float]:
        Path(gap_file + ".reset").touch()
        while os.path.exists(gap_file + ".reset"):
            time.sleep(0.01)
        started = time.perf_counter()
        if callable(action):
            action()
        wall = time.perf_counter() - started
        time.sleep(0.2)
        return wall, float(Path(gap_file).read_text())

    try:
        _, idle = pause_during(lambda: time.sleep(3))
        summary: list[HeapSummary] = []
        wall_s, pause_s = pause_during(lambda: summary.append(attach(proc.pid, snapshot=True)))
        reports: list[object] = []
        wall_g, pause_g = pause_during(
            lambda: reports.append(attach(proc.pid, duration=args.duration, interval=args.interval))
        )
    finally:
        proc.kill()
        proc.wait()
    sr = reports[0]
    timings = sr.timings  # type: ignore[attr-defined]
    samples = sr.iterations  # type: ignore[attr-defined]
    print(f"Python {sys.version.split()[0]}, {args.objects:,} objects in the target")
    print(f"{'':<34}{'in the target':>14}{'wall':>9}{'longest pause':>15}")
    print(f"{'idle (baseline)':<34}{'':>14}{'':>9}{idle * 1000:>12.1f} ms")
    print(f"{'one gc.collect() of its own':<34}{'':>14}{'':>9}{collect * 1000:>12.1f} ms")
    print(
        f"{'heap summary (--snapshot)':<34}{summary[0].data['seconds']:>12.2f} s"
        f"{wall_s:>7.1f} s{pause_s * 1000:>12.1f} ms"
    )
    per_sample = timings["measure"] / max(samples, 1)
    label = f"growth, {samples} samples"
    print(f"{label:<34}{per_sample:>10.2f} s/sample{wall_g:>5.1f} s{pause_g * 1000:>12.1f} ms")
    print(f"longest single measurement in the target: {timings['longest_pause']:.2f} s")


if __name__ == "__main__":
    main()
