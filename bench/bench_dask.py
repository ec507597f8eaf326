"""What reftrace.dask costs a Dask cluster: the LeakWatch plugin's share of task
throughput, and the pauses a survey makes on workers that hold a big heap.

    python bench/bench_dask.py                    # 20,000 tasks x 5 rounds; 1,000,000 objects
    python bench/bench_dask.py --tasks 5000 --rounds 3 --objects 300000
    python bench/bench_dask.py --quick            # 1,000 tasks, 1 round, 100k objects: it works

Starts a ``LocalCluster`` of ``--workers`` worker processes (2), one thread
each, and measures, in the same run:

- **throughput**: ``--tasks`` small tasks (each builds and drops 8 dicts),
  mapped at once and gathered, with no plugin, with ``LeakWatch()`` at its
  defaults (``every=1000, budget=0.01``), and with ``LeakWatch(every=100,
  budget=0.05)``. The plugin is registered before a run and unregistered
  after it; the three alternate, in reverse order every other round, for
  ``--rounds`` rounds. Printed: the median tasks per second of each, its
  difference to the median without the plugin, and the CPU time of the
  plugin's sampling thread over the run's wall time (the median of the
  runs, of the mean over the workers; read from ``/proc``, so Linux only).
  Every round of samples the plugin finished meanwhile must find nothing:
  the tasks keep nothing.
- **a survey's pauses**: each worker builds ``--objects`` gc-tracked
  objects (one-element lists in a module-level list) and starts a thread
  that wakes every millisecond and records its longest wait beyond that:
  the pause the worker's own code sees. Then ``reftrace.dask.survey`` runs
  for ``--duration`` seconds at ``--interval``, with no load. Printed per
  worker: one ``gc.collect()`` there (the median of 3, the baseline), the
  survey's samples and its measuring time per sample, its longest single
  measurement (``WorkerOutcome.longest_pause``: the longest stretch between
  two waits of the survey's thread, during which the worker's other threads
  run, except in the passes done in C), and the longest pause the heartbeat
  saw, idle for 3 s (the baseline) and during the survey. The heap does not
  grow: no worker may be found leaking.

A failed check is printed and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import platform
import statistics
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any

#: What a worker holds for the survey's part: ``--objects`` one-element lists.
HELD: list[list[int]] = []
#: The worker's heartbeat: longest wait beyond 1 ms, reset asked, stop asked.
BEAT = array("d", [0.0, 0.0, 0.0])

PLUGINS: dict[str, dict[str, float] | None] = {
    "none": None,
    "LeakWatch() (every=1000, budget=0.01)": {},
    "LeakWatch(every=100, budget=0.05)": {"every": 100, "budget": 0.05},
}


# -- run on the workers (imported there as the module ``bench_dask``) -------------------


def task(i: int) -> int:
    """A small task that keeps nothing."""
    rows = [{"task": i, "row": j} for j in range(8)]
    return len(rows)


def hold(objects: int) -> int:
    """Fill ``HELD`` with ``objects`` one-element lists; the worker's gc objects after."""
    HELD[:] = [[i] for i in range(objects)]
    gc.collect()
    return len(gc.get_objects())


def collect_time(times: int) -> float:
    """The median of ``times`` full collections here, in seconds."""
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        gc.collect()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent)


def _beat() -> None:
    last = time.perf_counter()
    while not BEAT[2]:
        time.sleep(0.001)
        now = time.perf_counter()
        if BEAT[1]:
            BEAT[0] = BEAT[1] = 0.0
        else:
            BEAT[0] = max(BEAT[0], now - last - 0.001)
        last = now


def beat_start() -> None:
    """Start the heartbeat thread."""
    BEAT[0] = BEAT[1] = BEAT[2] = 0.0
    threading.Thread(target=_beat, name="bench-heartbeat", daemon=True).start()


def beat_reset() -> None:
    """Forget the longest pause so far (the heartbeat clears it when it next wakes)."""
    BEAT[1] = 1.0


def beat_read() -> float:
    """The longest pause since the last reset, in seconds."""
    return BEAT[0]


def sampler_cpu() -> float:
    """CPU seconds the plugin's sampling thread used so far (Linux; nan elsewhere)."""
    for thread in threading.enumerate():
        if thread.name == "reftrace-leakwatch" and thread.native_id is not None:
            try:
                with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                break
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def release() -> None:
    """Stop the heartbeat and drop the held objects."""
    BEAT[2] = 1.0
    HELD.clear()
    gc.collect()


# -- the driver --------------------------------------------------------------------------


def throughput(
    client: Any, here: Any, tasks: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], list[str]]:
    """Tasks per second of each variant, per round; the sampling thread's CPU
    time over the run's wall time (the mean over the workers); and the failed
    checks."""
    from reftrace.dask import TOPIC, LeakWatch
    from reftrace.soak_report import loads

    client.gather(client.map(here.task, range(min(tasks, 2000)), pure=False))  # warm up
    rates: dict[str, list[float]] = {name: [] for name in PLUGINS}
    shares: dict[str, list[float]] = {name: [] for name in PLUGINS}
    names = list(PLUGINS)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            options = PLUGINS[name]
            if options is not None:
                client.register_plugin(LeakWatch(**options))
            started = time.perf_counter()
            client.gather(client.map(here.task, range(tasks), pure=False))
            wall = time.perf_counter() - started
            rates[name].append(tasks / wall)
            line = f"  round {r + 1}, {name}: {rates[name][-1]:,.0f} tasks/s"
            if options is not None:
                cpus = client.run(here.sampler_cpu)
                client.unregister_worker_plugin(LeakWatch.name)
                shares[name].append(statistics.mean(cpus.values()) / wall)
                each = ", ".join(f"{cpu:.2f}" for cpu in cpus.values())
                line += f"; sampling thread CPU {each} s in {wall:.1f} s"
            print(line)
    failures = []
    verdicts: dict[str, int] = {}
    for _, message in client.get_events(TOPIC):
        sr = loads(message["report"], source=message["worker"])
        verdicts[sr.verdict] = verdicts.get(sr.verdict, 0) + 1
        if sr.leaking:
            names = ", ".join(c.name for c in sr.holders)
            failures.append(f"a round of the plugin on {message['worker']} found {names} growing")
    said = ", ".join(f"{verdict} {n}" for verdict, n in sorted(verdicts.items()))
    print(f"  rounds of samples the plugin finished: {sum(verdicts.values())} ({said or 'none'})")
    return rates, shares, failures


def survey_pauses(
    client: Any, here: Any, objects: int, duration: float, interval: float
) -> list[str]:
    """Print each worker's pauses during a survey; the failed checks."""
    from reftrace.dask import survey

    counts = client.run(here.hold, objects)
    collect = client.run(here.collect_time, 3)
    client.run(here.beat_start)
    client.run(here.beat_reset)
    time.sleep(3)
    idle = client.run(here.beat_read)
    client.run(here.beat_reset)
    started = time.perf_counter()
    report = survey(client, duration, interval=interval)
    wall = time.perf_counter() - started
    seen = client.run(here.beat_read)
    client.run(here.release)
    print(
        f"  {'worker':<22}{'gc objects':>11}{'gc.collect':>11}{'samples':>8}{'per sample':>11}"
        f"{'longest':>13}{'pause':>9}{'pause':>9}{'/collect':>9}  verdict"
    )
    print(f"  {'':<22}{'':>11}{'':>11}{'':>8}{'':>11}{'measurement':>13}{'idle':>9}{'survey':>9}")
    failures = [
        f"the survey found {f.holder} growing on a heap that does not grow" for f in report.findings
    ]
    for outcome in report.workers:
        address = outcome.address
        sr = outcome.report
        if outcome.status != "measured" or sr is None:
            failures.append(f"{address}: {outcome.status} {outcome.error}")
            continue
        per_sample = sr.timings.get("per_iteration_overhead", float("nan"))
        print(
            f"  {address:<22}{counts[address]:>11,}{collect[address] * 1000:>8.0f} ms"
            f"{sr.iterations:>8}{per_sample * 1000:>8.0f} ms"
            f"{outcome.longest_pause * 1000:>10.0f} ms"
            f"{idle[address] * 1000:>6.1f} ms{seen[address] * 1000:>6.0f} ms"
            f"{seen[address] / collect[address]:>8.1f}x  {outcome.verdict}"
        )
    print(f"  the survey took {wall:.1f} s; the cluster's verdict: {report.verdict}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per throughput run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each variant (medians)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, 1 thread each")
    parser.add_argument(
        "--objects", type=int, default=1_000_000, help="gc-tracked objects each worker holds"
    )
    parser.add_argument("--duration", type=float, default=12.0, help="the survey's seconds")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument(
        "--quick", action="store_true", help="1,000 tasks, 1 round, 100k objects, a 6 s survey"
    )
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.rounds, args.objects, args.duration = 1000, 1, 100_000, 6.0
    if args.tasks < 1 or args.rounds < 1 or args.workers < 1 or args.objects < 0:
        parser.error("--tasks, --rounds and --workers must be at least 1, --objects at least 0")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    import distributed
    from distributed import Client, LocalCluster

    # The workers import this file by its module name (they start with this
    # process's sys.path), so that HELD and the heartbeat live in a module there.
    here_dir = str(Path(__file__).resolve().parent)
    if here_dir not in sys.path:
        sys.path.insert(0, here_dir)
    here = importlib.import_module("bench_dask")

    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"distributed {distributed.__version__}; {args.workers} worker processes, 1 thread each"
    )
    failures: list[str] = []
    with (
        LocalCluster(
            n_workers=args.workers,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        print(f"\nthroughput: {args.tasks:,} tasks a run, {args.rounds} round(s)")
        rates, shares, failed = throughput(client, here, args.tasks, args.rounds)
        failures += failed
        base = statistics.median(rates["none"])
        print(f"  {'plugin':<40}{'median tasks/s':>15}{'vs none':>9}{'sampling CPU':>14}   runs")
        for name, values in rates.items():
            median = statistics.median(values)
            versus = share = ""
            if name != "none":
                versus = f"{(median - base) / base * 100:+.1f}%"
                share = f"{statistics.median(shares[name]) * 100:.2f}%"
            runs = ", ".join(f"{v:,.0f}" for v in values)
            print(f"  {name:<40}{median:>15,.0f}{versus:>9}{share:>14}   {runs}")

        print(
            f"\nsurvey pauses: each worker holds {args.objects:,} objects; "
            f"{args.duration:g} s, one sample every {args.interval:g} s"
        )
        failures += survey_pauses(client, here, args.objects, args.duration, args.interval)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
