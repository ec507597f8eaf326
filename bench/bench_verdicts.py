"""soak()'s verdicts on the corpus of bounded and leaking workloads, and what they cost.

    python bench/bench_verdicts.py                         # every workload, soak() defaults
    python bench/bench_verdicts.py --before ../old-checkout --repeat 3
    python bench/bench_verdicts.py --tenfold               # also a run 10x as long, per workload

Each workload of ``tests/soak_corpus.py`` is soaked as a new user would
(``soak(fn)``, defaults), each run in a fresh interpreter. For every run the
table gives the verdict, its confidence, the calls it made (``30+24``: the 30
asked and 24 more it ran to decide) and the seconds the soak took (median of
``--repeat`` runs). ``--before`` runs the same corpus against another checkout
of reftrace (its ``reftrace`` package first on ``sys.path``), for a before and
after in one run. ``--tenfold`` also soaks each workload for 300 calls and
checks the claim every verdict makes: a leak still leaks, and memory kept by
design is still not a leak, in a run ten times longer.

The summary counts false alarms (a bounded workload called leaking), leaks
found (with the expected holder first, where one is named), and the total and
median soak time. The corpus needs the ``test`` extra (cachetools, jinja2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "soak_corpus.py"
sys.path.insert(0, str(CORPUS.parent))

from soak_corpus import WORKLOADS, Workload  # noqa: E402


@dataclass
class Run:
    """One soak of one workload, as its JSON report says."""

    verdict: str
    confidence: str
    iterations: int
    requested: int
    seconds: float
    first_holder: str

    @classmethod
    def from_report(cls, data: dict[str, Any]) -> Run:
        verdict = data.get("verdict") or ("leaking" if data["leaking"] else "not leaking")
        containers = data.get("containers") or []
        return cls(
            verdict,
            data["confidence"],
            data["iterations"],
            data.get("requested", data["iterations"]),
            data["seconds"],
            containers[0]["name"] if containers else "",
        )

    @property
    def calls(self) -> str:
        extra = self.iterations - self.requested
        return f"{self.requested}+{extra}" if extra else str(self.requested)


def soak(workload: Workload, package_root: Path, *options: str) -> Run:
    env = dict(os.environ, PYTHONPATH=str(package_root))
    argv = [sys.executable, str(CORPUS), workload.name, *options]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{workload.name}: {proc.stderr.strip().splitlines()[-1]}")
    return Run.from_report(json.loads(proc.stdout.splitlines()[-1]))


def median_run(workload: Workload, package_root: Path, repeat: int, *options: str) -> Run:
    runs = [soak(workload, package_root, *options) for _ in range(repeat)]
    chosen = runs[0]
    chosen.seconds = statistics.median(run.seconds for run in runs)
    return chosen


def correct(workload: Workload, run: Run) -> bool:
    if workload.kind == "bounded":
        return run.verdict != "leaking"
    return run.verdict == "leaking" and workload.holder in run.first_holder


def summary(label: str, workloads: list[Workload], runs: list[Run]) -> str:
    bounded = [(w, r) for w, r in zip(workloads, runs) if w.kind == "bounded"]
    leaking = [(w, r) for w, r in zip(workloads, runs) if w.kind == "leaking"]
    alarms = sum(r.verdict == "leaking" for _, r in bounded)
    high = sum(r.verdict == "leaking" and r.confidence == "high" for _, r in bounded)
    found = sum(r.verdict == "leaking" for _, r in leaking)
    holders = sum(correct(w, r) for w, r in leaking)
    inconclusive = sum(r.verdict == "inconclusive" for r in runs)
    extra = sum(r.iterations - r.requested for r in runs)
    seconds = [r.seconds for r in runs]
    return (
        f"{label}: false alarms {alarms} of {len(bounded)} bounded ({high} of them 'high'); "
        f"leaks found {found} of {len(leaking)}, holder first {holders}; inconclusive "
        f"{inconclusive}; calls beyond those asked {extra:,}; soak time total "
        f"{sum(seconds):.1f} s, median {statistics.median(seconds):.2f} s"
    )


def row(run: Run | None) -> str:
    if run is None:
        return f"{'':<26}"
    text = f"{run.verdict} ({run.confidence})"
    return f"{text:<26} {run.calls:>8} {run.seconds:>6.2f}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another reftrace checkout to compare")
    parser.add_argument("--repeat", type=int, default=1, help="runs per soak (median time)")
    parser.add_argument("--tenfold", action="store_true", help="also soak 300 calls each")
    parser.add_argument("--workloads", help="comma-separated names (default: all)")
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args(argv)
    workloads = WORKLOADS
    if args.workloads:
        wanted = set(args.workloads.split(","))
        workloads = [w for w in WORKLOADS if w.name in wanted]
    print(f"Python {sys.version.split()[0]}, {len(workloads)} workloads, soak() defaults")
    header = f"{'workload':<28} {'kind':<8} "
    if args.before:
        header += f"{'before':<42} "
    header += f"{'after':<42}"
    if args.tenfold:
        header += " 300 calls"
    print(header)
    after: list[Run] = []
    before: list[Run] = []
    tenfold: list[Run] = []
    for workload in workloads:
        line = f"{workload.name:<28} {workload.kind:<8} "
        if args.before:
            before.append(median_run(workload, args.before.resolve(), args.repeat))
            line += f"{row(before[-1])} "
        after.append(median_run(workload, ROOT, args.repeat))
        line += row(after[-1])
        if args.tenfold:
            tenfold.append(soak(workload, ROOT, "--iterations", "300", "--max-iterations", "300"))
            same = (tenfold[-1].verdict == "leaking") == (after[-1].verdict == "leaking")
            line += f" {tenfold[-1].verdict}{'' if same else '  <- differs'}"
        print(line, flush=True)
    print()
    if args.before:
        print(summary("before", workloads, before))
    print(summary("after", workloads, after))
    if args.tenfold:
        print(summary("300 calls", workloads, tenfold))
    if args.before:
        ratios = [a.seconds / b.seconds for a, b in zip(after, before) if b.seconds > 0]
        print(f"soak time after/before: median {statistics.median(ratios):.2f}x per workload")
    if args.json:
        data = {
            "after": [vars(r) for r in after],
            "before": [vars(r) for r in before],
            "tenfold": [vars(r) for r in tenfold],
            "workloads": [w.name for w in workloads],
        }
        args.json.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
