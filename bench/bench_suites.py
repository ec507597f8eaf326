"""Real libraries' own test suites, plain and under ``pytest --reftrace``.

    python bench/bench_suites.py                      # every suite below, once each
    python bench/bench_suites.py --suites idna --repeat 3
    python bench/bench_suites.py --workdir /tmp/suites --keep

Each library's source distribution ships its tests. The script downloads the
pinned sdist (``pip download --no-binary``), unpacks it into a scratch
directory, makes one virtualenv there with reftrace (this checkout, editable),
pytest, the library and what its tests need, and runs the library's suite as
a whole ``pytest`` process: plain, then with ``--reftrace``. For each run it
records the wall time, the resident memory (sampled every second from
``/proc``: its median, its 95th percentile and its peak) and pytest's last
line; for ``--reftrace`` also reftrace's summary (tests checked, failed, run
again, time on leak checks). Nothing is written into this repository.

Linux only (``/proc``); needs PyPI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Suite:
    name: str
    sdist: str  # pip requirement, pinned
    tests: str  # the test directory inside the unpacked sdist
    extra: tuple[str, ...] = ()  # what the tests need besides pytest


SUITES = [
    Suite("cachetools", "cachetools==8.0.2", "tests"),
    Suite("toolz", "toolz==1.2.0", "toolz/tests"),
    Suite("idna", "idna==3.20", "tests", ("hypothesis",)),
    Suite("packaging", "packaging==26.4", "tests", ("hypothesis", "pretend", "tomli_w")),
]


@dataclass
class Run:
    seconds: float
    rss: list[float] = field(default_factory=list)
    last_line: str = ""
    summary: str = ""

    def memory(self) -> str:
        if not self.rss:
            return "?"
        ordered = sorted(self.rss)
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        return f"{statistics.median(self.rss):.0f} / {p95:.0f} / {max(self.rss):.0f} MB"


def sh(*argv: str, cwd: Path | None = None) -> None:
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def prepare(suite: Suite, workdir: Path, python: Path) -> Path:
    """The unpacked sdist, its tests installed in the shared venv."""
    downloads = workdir / "sdists"
    downloads.mkdir(exist_ok=True)
    sh(str(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
       suite.sdist, "-d", str(downloads))  # fmt: skip
    name, _, version = suite.sdist.partition("==")
    stem = f"{name.replace('-', '_')}-{version}"
    archive = next(p for p in downloads.iterdir() if p.name.lower().startswith(stem.lower()))
    source = workdir / archive.name.removesuffix(".tar.gz")
    if not source.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(workdir, filter="data")
    sh(str(python), "-m", "pip", "install", "-q", "-e", str(source), *suite.extra)
    return source


def run_pytest(python: Path, source: Path, tests: str, *options: str) -> Run:
    argv = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, tests]
    with tempfile.TemporaryFile(mode="w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=source, stdout=out, stderr=subprocess.STDOUT)
        rss: list[float] = []
        ticks = 0
        while proc.poll() is None:
            if ticks % 20 == 0:  # RSS every second; the end within 50 ms
                rss.extend(_rss_mb(proc.pid))
            ticks += 1
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        out.seek(0)
        lines = [line.rstrip() for line in out if line.strip()]
    summaries = [line for line in lines if line.startswith("reftrace: ") and "checked" in line]
    return Run(seconds, rss, lines[-1] if lines else "", summaries[0] if summaries else "")


def _rss_mb(pid: int) -> list[float]:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:") and int(line.split()[1]) > 0:
                    return [int(line.split()[1]) / 1024]
    except OSError:
        pass
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", help="comma-separated names (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each mode (median)")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temp one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    suites = SUITES
    if args.suites:
        wanted = set(args.suites.split(","))
        suites = [s for s in SUITES if s.name in wanted]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reftrace-suites-"))
    workdir.mkdir(parents=True, exist_ok=True)
    venv = workdir / "venv"
    if not (venv / "bin" / "python").exists():
        sh(sys.executable, "-m", "venv", str(venv))
    python = venv / "bin" / "python"
    sh(str(python), "-m", "pip", "install", "-q", "-e", str(ROOT), "pytest")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; scratch: {workdir}")
    print(f"{'suite':<12} {'mode':<10} {'wall':>8} {'ratio':>6}  RSS median / p95 / peak")
    for suite in suites:
        source = prepare(suite, workdir, python)
        plain = [run_pytest(python, source, suite.tests) for _ in range(args.repeat)]
        checked = [
            run_pytest(python, source, suite.tests, "--reftrace") for _ in range(args.repeat)
        ]
        base = statistics.median(r.seconds for r in plain)
        for mode, runs in (("plain", plain), ("--reftrace", checked)):
            wall = statistics.median(r.seconds for r in runs)
            print(
                f"{suite.name:<12} {mode:<10} {wall:>7.1f}s {wall / base:>5.2f}x  "
                f"{runs[0].memory()}   | {runs[0].last_line}"
            )
        print(f"{'':<12} {checked[0].summary}")
    if not args.keep and args.workdir is None:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
