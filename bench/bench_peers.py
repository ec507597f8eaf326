"""reftrace's soak verdicts against newer peer leak finders, on the same 30 workloads.

    python3 bench/bench_peers.py                      # every tool on every workload (~75 min)
    python3 bench/bench_peers.py --tools reftrace,objgraph --workloads ring_buffer,failed_runs
    python3 bench/bench_peers.py --calls 60 --json /tmp/peers.json

The workloads are those of ``tests/soak_corpus.py``: 15 keep memory by design
(bounded: must not be flagged) and 15 leak (must be flagged; 12 of them have a
container that holds the leak, whose name the report should give). Every run is
one fresh interpreter per workload per tool, from a virtualenv of its own
(``--venv``, created or reused; the peers are pinned, reftrace is installed
editable from this checkout). The seconds are the wall time of that subprocess,
interpreter start and imports included.

How each tool is driven, with N = ``--calls`` (default 30) and, for the peers,
3 warm-up calls before the N measured ones (leak-hunter's own default warm-up):

- reftrace: ``python tests/soak_corpus.py NAME``, i.e. ``soak(fn)`` with its
  defaults (30 calls, 6 of them warm-up; it may run more calls, up to 300 or
  60 s, when the evidence is weak). Flagged: verdict "leaking".
- leak-hunter (python-leak-hunter): ``measure_growth(fn, iterations=N // 2)``
  (two windows of N/2 calls after its default 3 warm-up calls), then, as its
  report suggests, ``why_alive(report.suspect)``. Flagged: ``report.leaked``
  (a gc-tracked type gained >= 0.5 objects per call in both windows).
- memalot: ``create_leak_monitor()`` around every call, defaults except where
  the reports go. Flagged: the report after the last call lists objects (objects
  created during that call and still alive after it). By default memalot writes
  such a report after every call; the reports before the last one are not read,
  so they are skipped (``warmup_calls`` = all calls but the last): each report
  costs seconds to minutes (heap scans and its referrer search), 30 of them hours.
- refleak: ``Snapshot(object, freeze=True)`` after warm-up, N calls,
  ``assert_no_new()``. It has no growth notion: flagged when any gc-tracked
  object created by the N calls is still alive (the assertion fails). Freeze
  mode, which its docs call faster and stricter, because the default id mode,
  asked about every object, reports its own set of ids as a new object: it
  would fail on every workload.
- pytest-memray: a generated test whose body runs the N calls (the warm-up runs
  in its fixture) under ``@pytest.mark.limit_leaks(LIMIT)``, ``LIMIT`` per
  call stack (``--memray-limit``, default 1 KB, about 34 B a call over 30 calls;
  its docs' example is 1 MB). Flagged: the marker fails the test. It reports
  allocation stacks, not holders.
- objgraph: ``show_growth()`` after warm-up (the baseline), after N/2 calls, and
  after N calls. Flagged: the last ``show_growth()`` lists a type, i.e. some type
  reached a new peak count in the last N/2 calls (still growing after warm-up).
  It names no holders.

"Holder" is ``yes`` when the workload's holder (e.g. ``RUNS``) appears in what the
tool reported on a run it flagged, ``~`` when every name in it appears but in
another notation (``AGENT.events._listeners['chunk']`` as a chain of steps), ``no``
otherwise, ``-`` where the tool names no holders or no container holds the leak.
A run that crashes or outlives ``--timeout`` (600 s) is an error, with its reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
CORPUS = TESTS / "soak_corpus.py"
DEFAULT_VENV = Path("/tmp/reftrace-peers-venv")

PEERS = {
    "python-leak-hunter": "0.1.1",
    "memalot": "2.0.3",
    "refleak": "0.2.2",
    "pytest-memray": "1.11.0",
    "objgraph": "3.7.0",
}
SUPPORT = ("cachetools", "jinja2")  # the corpus needs them
SHOWN_VERSIONS = (*PEERS, "memray", "referrers", "pytest", *SUPPORT, "reftrace")

TOOLS = ("reftrace", "leak-hunter", "memalot", "refleak", "pytest-memray", "objgraph")
NAMES_HOLDERS = {"reftrace", "leak-hunter", "memalot", "refleak"}
WARMUP = 3
MARK = "BENCH_PEERS_RESULT "
Call = Callable[[], None]


@dataclass
class Outcome:
    """What one tool said about one workload, inside the worker process."""

    flagged: bool
    text: str  # everything the tool reported, searched for the holder
    detail: str  # one line for the reader
    calls: int


@dataclass
class Result:
    """One tool on one workload, as the table and the JSON file show it."""

    workload: str
    kind: str
    tool: str
    verdict: str  # "leaking", "not leaking", "inconclusive" or "error"
    holder: str = "-"  # "yes", "~", "no" or "-"
    seconds: float = 0.0
    calls: int = 0
    detail: str = ""

    @property
    def flagged(self) -> bool:
        return self.verdict == "leaking"

    @property
    def wrong(self) -> bool:
        if self.verdict == "error":
            return False
        return self.flagged != (self.kind == "leaking")


# -- the worker: runs inside the virtualenv, one tool on one workload ----------------


@contextlib.contextmanager
def lifecycle(name: str) -> Iterator[Call]:
    """The workload's lifecycle from a clean state, as one call; awaitables run to the end."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import soak_corpus

    workload = soak_corpus.get(name)
    soak_corpus.reset()
    fn = workload.make()
    loop = asyncio.new_event_loop()

    def call() -> None:
        result = fn()
        if inspect.isawaitable(result):
            loop.run_until_complete(result)

    if workload.around is not None:
        workload.around[0]()
    try:
        yield call
    finally:
        if workload.around is not None:
            workload.around[1]()
        loop.close()
        soak_corpus.reset()


def repeat(call: Call, times: int) -> None:
    for _ in range(times):
        call()


def drive_leak_hunter(call: Call, calls: int) -> Outcome:
    from leak_hunter import measure_growth, why_alive

    report = measure_growth(call, iterations=calls // 2, warmup=WARMUP)
    text = report.format()
    if report.leaked and report.suspect is not None:
        text += "\n" + why_alive(report.suspect).format()
    growing = report.growing[:3]
    detail = ", ".join(f"{g.type_name} +{g.per_call:g}/call" for g in growing) or "no type grew"
    return Outcome(report.leaked, text, detail, WARMUP + 2 * (calls // 2))


def drive_memalot(call: Call, calls: int) -> Outcome:
    import memalot

    with tempfile.TemporaryDirectory() as reports:
        monitor = memalot.create_leak_monitor(
            warmup_calls=WARMUP + calls - 1,
            report_directory=Path(reports),
            output_func=lambda _text: None,
            force_terminal=False,
        )
        for _ in range(WARMUP + calls):
            with monitor:
                call()
        last = max(Path(reports).rglob("iteration_report_*.json"), key=_iteration_number)
        report = json.loads(last.read_text())
    types = report["leak_summary"]["type_summaries"]
    nodes = [
        node["name"]
        for details in report["object_details_list"]
        for node in (details.get("referrer_graph") or {}).get("graph_nodes", [])
    ]
    detail = ", ".join(f"{t['count']} {t['object_type']}" for t in types[:3]) or "no leaks found"
    return Outcome(bool(types), "\n".join(nodes), detail, WARMUP + calls)


def _iteration_number(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def drive_refleak(call: Call, calls: int) -> Outcome:
    from refleak.testing import Snapshot

    repeat(call, WARMUP)
    snapshot = Snapshot(object, freeze=True)
    repeat(call, calls)
    try:
        snapshot.assert_no_new(when=f"after {calls} calls")
    except AssertionError as error:
        message = str(error).strip()
        return Outcome(True, message, message.splitlines()[0], WARMUP + calls)
    return Outcome(False, "", "no new object alive", WARMUP + calls)


def drive_objgraph(call: Call, calls: int) -> Outcome:
    import objgraph

    repeat(call, WARMUP)
    objgraph.show_growth(file=io.StringIO())  # the baseline
    repeat(call, calls // 2)
    objgraph.show_growth(file=io.StringIO())  # peaks after the first half
    repeat(call, calls - calls // 2)
    last = io.StringIO()
    objgraph.show_growth(file=last)
    lines = last.getvalue().splitlines()
    detail = ", ".join(" ".join(line.split()[::2]) for line in lines[:3]) or "no new peak"
    return Outcome(bool(lines), last.getvalue(), detail, WARMUP + calls)


DRIVERS: dict[str, Callable[[Call, int], Outcome]] = {
    "leak-hunter": drive_leak_hunter,
    "memalot": drive_memalot,
    "refleak": drive_refleak,
    "objgraph": drive_objgraph,
}


def worker(tool: str, name: str, calls: int) -> int:
    """Run one peer on one workload; print its outcome as one marked JSON line."""
    with lifecycle(name) as call:
        outcome = DRIVERS[tool](call, calls)
    print(MARK + json.dumps(asdict(outcome)), flush=True)
    return 0


def list_workloads() -> int:
    sys.path.insert(0, str(TESTS))
    import soak_corpus

    rows = [{"name": w.name, "kind": w.kind, "holder": w.holder} for w in soak_corpus.WORKLOADS]
    print(MARK + json.dumps(rows))
    return 0


# -- the virtualenv ---------------------------------------------------------------

_PROBE = """
import importlib.metadata as m, json, platform, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = m.version(name)
    except m.PackageNotFoundError:
        found[name] = None
try:
    import reftrace
    found["reftrace-path"] = reftrace.__file__
except ImportError:
    found["reftrace-path"] = None
found["python"] = platform.python_version()
print(json.dumps(found))
"""


def probe_versions(python: Path) -> dict[str, str | None]:
    out = subprocess.run(
        [str(python), "-c", _PROBE, *SHOWN_VERSIONS], capture_output=True, text=True, check=True
    )
    found: dict[str, str | None] = json.loads(out.stdout)
    return found


def venv_ready(found: dict[str, str | None]) -> bool:
    pinned = all(found.get(name) == version for name, version in PEERS.items())
    support = all(found.get(name) for name in SUPPORT)
    path = found.get("reftrace-path") or ""
    return pinned and support and path.startswith(str(ROOT))


def ensure_venv(venv: Path) -> tuple[Path, dict[str, str | None]]:
    """Create or reuse the virtualenv; install the pinned peers and this checkout of reftrace."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    found = probe_versions(python)
    if not venv_ready(found):
        wanted = [f"{name}=={version}" for name, version in PEERS.items()] + list(SUPPORT)
        print(f"installing into {venv}: {' '.join(wanted)} -e {ROOT}", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", *wanted, "-e", str(ROOT)]
        subprocess.run(pip, check=True)
        found = probe_versions(python)
    return python, found


# -- running one tool on one workload ------------------------------------------------


@dataclass
class Ran:
    """A finished subprocess."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run(cmd: list[str], cwd: Path, timeout: float) -> Ran:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Ran(done.returncode, done.stdout, done.stderr, time.perf_counter() - start)


def one_line(text: str, limit: int = 160) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else "no output"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def holder_status(tool: str, holder: str, flagged: bool, text: str) -> str:
    """``yes`` / ``~`` / ``no`` / ``-``: does the report name the container that holds the leak?"""
    if not holder or tool not in NAMES_HOLDERS:
        return "-"
    if not flagged:
        return "no"
    if holder in text:
        return "yes"
    names = re.findall(r"[A-Za-z_]\w*", holder)
    return "~" if all(name in text for name in names) else "no"


def run_reftrace(python: Path, workload: dict[str, str], calls: int, timeout: float) -> Result:
    cmd = [str(python), str(CORPUS), workload["name"]]
    if calls != 30:
        cmd += ["--iterations", str(calls)]
    ran = run(cmd, ROOT, timeout)
    result = Result(workload["name"], workload["kind"], "reftrace", "error", seconds=ran.seconds)
    if ran.returncode != 0:
        result.detail = one_line(ran.stderr)
        return result
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    result.verdict = report["verdict"]
    result.calls = report["iterations"]
    result.detail = report["reason"]
    result.holder = holder_status("reftrace", workload["holder"], result.flagged, report["text"])
    return result


def run_peer(
    python: Path, tool: str, workload: dict[str, str], calls: int, timeout: float
) -> Result:
    cmd = [str(python), __file__, "--worker", tool, workload["name"], "--calls", str(calls)]
    ran = run(cmd, ROOT, timeout)
    result = Result(workload["name"], workload["kind"], tool, "error", seconds=ran.seconds)
    marked = [line for line in ran.stdout.splitlines() if line.startswith(MARK)]
    if ran.returncode != 0 or not marked:
        result.detail = one_line(ran.stderr or ran.stdout)
        return result
    outcome = Outcome(**json.loads(marked[-1][len(MARK) :]))
    result.verdict = "leaking" if outcome.flagged else "not leaking"
    result.calls = outcome.calls
    result.detail = outcome.detail
    result.holder = holder_status(tool, workload["holder"], outcome.flagged, outcome.text)
    return result


_MEMRAY_TEST = """
import sys

import pytest

sys.path[:0] = [{bench!r}, {tests!r}]
import bench_peers


@pytest.fixture
def call():
    with bench_peers.lifecycle({name!r}) as call:
        bench_peers.repeat(call, bench_peers.WARMUP)
        yield call


@pytest.mark.limit_leaks({limit!r})
def test_lifecycle(call):
    for _ in range({calls}):
        call()
"""


def run_pytest_memray(
    python: Path, workload: dict[str, str], calls: int, timeout: float, limit: str
) -> Result:
    name = workload["name"]
    source = _MEMRAY_TEST.format(
        bench=str(ROOT / "bench"), tests=str(TESTS), name=name, limit=limit, calls=calls
    )
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "pytest.ini").write_text("[pytest]\n")
        (Path(folder) / "test_lifecycle.py").write_text(source)
        cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_lifecycle.py"]
        ran = run(cmd, Path(folder), timeout)
    result = Result(name, workload["kind"], "pytest-memray", "error", seconds=ran.seconds)
    result.calls = WARMUP + calls
    if "Test was allowed to leak" in ran.stdout:
        result.verdict = "leaking"
        result.detail = "first leaked stack: " + first_python_frame(ran.stdout)
    elif ran.returncode == 0:
        result.verdict = "not leaking"
        result.detail = "no call stack leaked more than the limit"
    else:
        result.detail = one_line(ran.stdout + ran.stderr)
    return result


def first_python_frame(output: str) -> str:
    """The first Python frame pytest-memray lists for a leak (else its first native frame)."""
    section = output.split("List of leaked allocations:", 1)[-1]
    python = re.search(r"^\s*(\S+:\S+\.py:\d+)$", section, re.MULTILINE)
    if python:
        return python.group(1)
    native = re.search(r"allocated here:\n\s*(\S+)", section)
    return f"{native.group(1)} (native; no Python frame shown)" if native else "?"


def run_one(python: Path, tool: str, workload: dict[str, str], args: argparse.Namespace) -> Result:
    try:
        if tool == "reftrace":
            return run_reftrace(python, workload, args.calls, args.timeout)
        if tool == "pytest-memray":
            return run_pytest_memray(python, workload, args.calls, args.timeout, args.memray_limit)
        return run_peer(python, tool, workload, args.calls, args.timeout)
    except subprocess.TimeoutExpired:
        detail = f"timed out after {args.timeout:g} s"
        result = Result(workload["name"], workload["kind"], tool, "error", detail=detail)
        result.seconds = args.timeout
        return result


# -- the report -------------------------------------------------------------------

_SHORT = {"leaking": "LEAK", "not leaking": "ok", "inconclusive": "inconcl", "error": "ERROR"}
CELL = 21


def cell(result: Result) -> str:
    mark = "!" if result.wrong else ""
    return f"{_SHORT[result.verdict] + mark:<8} {result.holder:<3} {result.seconds:7.1f}"


def print_table(results: list[Result], tools: list[str], workloads: list[dict[str, str]]) -> None:
    by_key = {(r.workload, r.tool): r for r in results}
    print()
    print(f"{'workload':<26} {'kind':<8} " + " ".join(f"{t:<{CELL}}" for t in tools))
    print(f"{'':<26} {'':<8} " + " ".join(f"{'verdict  hld    secs':<{CELL}}" for _ in tools))
    for workload in workloads:
        cells = [cell(by_key[workload["name"], tool]) for tool in tools]
        row = " ".join(f"{c:<{CELL}}" for c in cells)
        print(f"{workload['name']:<26} {workload['kind']:<8} {row}")
    print("\n! = wrong verdict (a bounded workload flagged, or a leak missed); hld = holder named")


def summary_line(tool: str, rows: list[Result], holders: int) -> str:
    bounded = [r for r in rows if r.kind == "bounded" and r.verdict != "error"]
    leaking = [r for r in rows if r.kind == "leaking" and r.verdict != "error"]
    alarms = sum(r.flagged for r in bounded)
    found = sum(r.flagged for r in leaking)
    if tool in NAMES_HOLDERS:
        exact = sum(r.holder == "yes" for r in rows)
        other = sum(r.holder == "~" for r in rows)
        named = f"{exact}/{holders}" + (f" (+{other} ~)" if other else "")
    else:
        named = "-"
    errors = sum(r.verdict == "error" for r in rows)
    undecided = sum(r.verdict == "inconclusive" for r in rows)
    seconds = [r.seconds for r in rows]
    return (
        f"{tool:<14} {alarms:>3}/{len(bounded):<4} {found:>3}/{len(leaking):<4} {named:<11} "
        f"{undecided:>6} {errors:>6} {sum(seconds):>9.1f} {statistics.median(seconds):>8.1f}"
    )


def print_summary(results: list[Result], tools: list[str], workloads: list[dict[str, str]]) -> None:
    holders = sum(1 for w in workloads if w["kind"] == "leaking" and w["holder"])
    print()
    print(
        f"{'tool':<14} {'false alarms':<13} {'leaks':<8} {'holders':<11} "
        f"{'inconcl':>6} {'errors':>6} {'total s':>9} {'median s':>8}"
    )
    for tool in tools:
        rows = [r for r in results if r.tool == tool]
        print(summary_line(tool, rows, holders))
    print("false alarms: of the bounded workloads run; leaks: of the leaking ones run;")
    print(f"holders: named exactly (+ in another notation) of the {holders} that have one")


def print_details(results: list[Result]) -> None:
    print("\nwhat each run reported (first growing types, leak site or reason):")
    for r in results:
        print(f"  {r.tool:<14} {r.workload:<26} {r.verdict:<12} {r.detail[:110]}")


# -- the command line ---------------------------------------------------------------


def pick(text: str | None, known: list[str], what: str) -> list[str]:
    if not text:
        return known
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return chosen


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(__doc__ or "").split("\n", 2)[-1],
    )
    parser.add_argument("--tools", help=f"comma-separated, of: {', '.join(TOOLS)}")
    parser.add_argument("--workloads", help="comma-separated workload names (default: all 30)")
    parser.add_argument("--calls", type=int, default=30, help="measured calls per run")
    parser.add_argument("--json", type=Path, help="save the raw results to this file")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the peers' virtualenv")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per subprocess")
    parser.add_argument("--memray-limit", default="1 KB", help="limit_leaks per call stack")
    parser.add_argument("--worker", nargs=2, metavar=("TOOL", "WORKLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--list-workloads", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.calls < 2:
        parser.error("--calls must be at least 2")
    return args


def fetch_workloads(python: Path) -> list[dict[str, str]]:
    ran = run([str(python), __file__, "--list-workloads"], ROOT, timeout=120)
    marked = [line for line in ran.stdout.splitlines() if line.startswith(MARK)]
    if not marked:
        raise SystemExit(f"could not list the workloads: {one_line(ran.stderr)}")
    rows: list[dict[str, str]] = json.loads(marked[-1][len(MARK) :])
    return rows


def print_versions(found: dict[str, str | None], args: argparse.Namespace) -> None:
    shown = ", ".join(f"{name} {found.get(name)}" for name in SHOWN_VERSIONS)
    print(f"python {found['python']} in {args.venv}: {shown}")
    print(f"reftrace from {found['reftrace-path']}")
    print(
        f"{args.calls} measured calls per peer run after {WARMUP} warm-up calls; reftrace: "
        f"soak(iterations={args.calls}) defaults; pytest-memray limit_leaks({args.memray_limit!r})"
    )


def save(
    path: Path, found: dict[str, Any], args: argparse.Namespace, results: list[Result]
) -> None:
    rows = [{**asdict(r), "flagged": r.flagged, "wrong": r.wrong} for r in results]
    settings = {"calls": args.calls, "warmup": WARMUP, "memray_limit": args.memray_limit}
    data = {"versions": found, "settings": settings, "results": rows}
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nraw results written to {path}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.list_workloads:
        return list_workloads()
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.calls)
    tools = pick(args.tools, list(TOOLS), "tools")
    python, found = ensure_venv(args.venv)
    print_versions(found, args)
    every = fetch_workloads(python)
    names = pick(args.workloads, [w["name"] for w in every], "workloads")
    workloads = [w for w in every if w["name"] in names]
    results = []
    for workload in workloads:
        for tool in tools:
            result = run_one(python, tool, workload, args)
            results.append(result)
            print(f"  {workload['name']:<26} {tool:<14} {cell(result)}", flush=True)
    print_table(results, tools, workloads)
    print_summary(results, tools, workloads)
    print_details(results)
    if args.json:
        save(args.json, found, args, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
