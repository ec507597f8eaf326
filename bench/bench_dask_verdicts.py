"""A survey's verdicts, at its default length and ten times as long, on the
Dask tests' three loads: does a run ten times longer say the same?

    python bench/bench_dask_verdicts.py                 # 30 s and 300 s surveys, 3 loads
    python bench/bench_dask_verdicts.py --duration 12   # 12 s and 120 s (12 and 120 samples)

Starts a ``LocalCluster`` of ``--workers`` worker processes (2), one thread
each, running the task functions of ``tests/dask_tasks.py``:

- ``leaky``: every result stays in ``dask_tasks.RESULTS`` on its worker;
- ``clean``: each task builds and drops 8 dicts;
- ``cached``: each task reads through an ``lru_cache(maxsize=256)`` over 1,000 keys.

For each load, a thread submits ``--rate`` tasks a second (80), spread over
the workers, and ``reftrace.dask.survey`` runs once for ``--duration``
seconds and once for ten times that, one sample every ``--interval``
seconds (1), after the worker's list is emptied. Printed per run: the
cluster's verdict, its findings (holder, workers, items a second in all),
each worker's verdict, and the seconds the survey took.

The checks are the claims a verdict makes: the leaky load is one finding,
``dask_tasks.RESULTS``, on every worker in both runs (a run under 23 samples
is too short to say leaking: it must say inconclusive); the clean and cached
loads are called leaking on no worker in either run. A failed check is
printed and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
#: Samples a live run needs before it may say "leaking" (fewer: at most inconclusive).
DECIDES = 23


def one_run(client: Any, load: str, duration: float, args: argparse.Namespace) -> list[str]:
    """One survey of ``load``: printed, and the checks it fails."""
    import dask_tasks

    import reftrace.dask

    client.run(dask_tasks.RESULTS.clear)
    with dask_tasks.Load(client, getattr(dask_tasks, load), args.rate):
        time.sleep(1)
        started = time.monotonic()
        report = reftrace.dask.survey(client, duration=duration, interval=args.interval)
        took = time.monotonic() - started
    samples = round(duration / args.interval)
    print(f"\n{load}, {duration:g} s ({samples} samples, took {took:.0f} s): {report.verdict}")
    for f in report.findings:
        print(f"  finding: {f.holder} on {len(f.workers)} workers, {f.total:+,.1f} items/s in all")
    for w in report.workers:
        reason = w.report.reason if w.report is not None else w.error
        print(f"  {w.address}: {w.verdict}: {reason}")
    failures = []
    everyone = sorted(w.address for w in report.workers)
    if load == "leaky" and samples < DECIDES:
        # too short to decide: inconclusive, never "not leaking"
        if report.verdict != "inconclusive" or report.findings:
            failures.append(f"{load} {duration:g} s: {report.verdict} in {samples} samples")
    elif load == "leaky":
        if [(f.holder, f.workers) for f in report.findings] != [("dask_tasks.RESULTS", everyone)]:
            failures.append(f"{load} {duration:g} s: not one finding on every worker")
    elif report.findings or any(w.verdict == "leaking" for w in report.workers):
        failures.append(f"{load} {duration:g} s: a false alarm")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes, 1 thread each")
    parser.add_argument("--duration", type=float, default=30.0, help="the shorter survey's seconds")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=80.0, help="tasks a second, in all")
    parser.add_argument(
        "--loads", default="leaky,clean,cached", help="comma-separated: leaky, clean, cached"
    )
    args = parser.parse_args()
    loads = args.loads.split(",")
    if args.workers < 1 or args.duration <= 0 or args.interval <= 0 or args.rate <= 0:
        parser.error("--workers must be at least 1; --duration, --interval and --rate positive")
    if not set(loads) <= {"leaky", "clean", "cached"}:
        parser.error("--loads takes leaky, clean and cached")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # The workers import the task functions by module name: they start with
    # this process's sys.path.
    sys.path.insert(0, str(TESTS))

    import distributed
    from distributed import Client, LocalCluster

    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"distributed {distributed.__version__}; {args.workers} worker processes, 1 thread each; "
        f"{args.rate:g} tasks/s"
    )
    failures: list[str] = []
    with (
        LocalCluster(
            n_workers=args.workers,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=50,
        ) as cluster,
        Client(cluster) as client,
    ):
        for load in loads:
            for duration in (args.duration, args.duration * 10):
                failures += one_run(client, load, duration, args)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
