"""What a watch() costs on a big heap, against one gc.collect() and the other tools.

    python bench/bench_watch.py                      # 100k and 1M objects, 5 runs each
    python bench/bench_watch.py --sizes 100k,1M,3M --repeat 5
    python bench/bench_watch.py --sizes 10M --repeat 3 --tools-repeat 1 --skip pympler,tracemalloc
    python bench/bench_watch.py --quick              # 100k, 1 run of everything: the script works

For each heap size it builds a realistic heap (instances with a __dict__,
dicts, lists, strings, tuples, closures, services with listener lists, see
``_heap.py``) and times, as medians over the runs, in one process:

- ``gc.collect()``: the baseline every ratio is taken against;
- a clean ``watch()``: a block whose 10 tracked objects all die, entry to report;
- a leaking ``watch()``: 10 tracked objects leak through listener lists deep
  in the heap; entry to the 10 leak traces rendered as text; its report
  build (the exit of the block) is also shown alone;
- a survivors ``watch()``: the 10 tracked objects die, but 5,000 records the
  block made stay attached to 102 old containers; entry to the survivor
  groups rendered as text;
- objgraph: ``find_backref_chain(target, is_proper_module)`` for each of the
  same 10 leaked objects, while they are still planted;
- guppy3: ``gc.collect()`` then ``hpy().iso(*targets).shpaths``, rendered;
- pympler: one ``summary.summarize(muppy.get_objects())`` (a summary by
  type, not a path finder), once per size;
- tracemalloc: two full snapshots around the leaking block and their
  ``compare_to(..., "lineno")``, once per size, on the same heap rebuilt with
  tracemalloc tracing from the start (as its user runs it; last, as tracing
  would slow everything else).

"/collect" is a median over gc.collect()'s, "/watch" a tool's median over
the 10-leak watch's. "peak +MB" is the resident memory a run adds at most (``VmHWM`` reset
through ``/proc/self/clear_refs``, Linux only): the first run of each
watch on the fresh heap, the first run of each tool.

Every run checks its answer: reftrace's 10 paths, objgraph's 10 chains from
the ``_heap`` module through the right listener lists, guppy's 10 shortest
paths through the right ``SERVICES`` entries, pympler's row of 10 ``Output``
objects, tracemalloc's growth at the block's lines. A failed check is
printed in the table and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import gc
import io
import math
import os
import platform
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import _heap
from _args import parse_sizes

import reftrace

TOOLS = ("objgraph", "guppy", "pympler", "tracemalloc")
#: (row key, label); the order of the table.
ROWS = (
    ("collect", "gc.collect()"),
    ("clean", "reftrace: clean watch"),
    ("leaking", "reftrace: 10-leak watch"),
    ("build", "reftrace:   its report build"),
    ("survivors", "reftrace: 5,000-survivor watch"),
    ("objgraph", "objgraph: 10 find_backref_chain"),
    ("guppy", "guppy3: gc.collect + shpaths"),
    ("pympler", "pympler: summarize(get_objects)"),
    ("tracemalloc", "tracemalloc: 2 snapshots, compare"),
)
#: Rows compared with the 10-leak watch: tools answering the same question.
PATH_TOOLS = ("objgraph", "guppy")


@dataclass
class Row:
    times: list[float] = field(default_factory=list)
    peak_mb: float = math.nan
    failures: list[str] = field(default_factory=list)
    checked: bool = False
    skipped: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else math.nan

    def check(self, failure: str | None) -> None:
        self.checked = True
        if failure:
            self.failures.append(failure)

    @property
    def verdict(self) -> str:
        if self.failures:
            return "FAILED"
        return "ok" if self.checked else ""


@dataclass
class Size:
    objects: int
    rows: dict[str, Row]
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)


# -- measuring ----------------------------------------------------------------


def measure(fn: Callable[..., Any], *args: Any, peak: bool = False) -> tuple[float, Any, float]:
    """Seconds ``fn(*args)`` took, what it returned, and with ``peak`` the
    resident memory it added at most, in MB (NaN when the system cannot say)."""
    before = _reset_peak() if peak else None
    t0 = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - t0
    added = math.nan
    if before is not None:
        # RSS counters are approximate: a run that adds nothing reads -0.1.
        added = max(0.0, (_status("VmHWM") - before) / 1024)
    return seconds, result, added


def _reset_peak() -> int | None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _status("VmRSS")
    except OSError:
        return None


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


# -- reftrace -------------------------------------------------------------------


def watch_clean() -> reftrace.Report:
    with reftrace.watch() as w:
        _heap.clean_block(w.track)
    return w.report


def watch_leaking() -> tuple[reftrace.Report, float]:
    """One leaking watch, from entry to the 10 traces rendered; returns the
    report and how long its exit (building the report) took."""
    with reftrace.watch() as w:
        _heap.leaking_block(w.track)
        exit_started = time.perf_counter()
    built = time.perf_counter() - exit_started
    out = io.StringIO()
    for leak in w.report.leaks:
        out.write(str(leak))
    return w.report, built


def watch_survivors() -> reftrace.Report:
    """One watch whose block leaves 5,000 untracked survivors, from entry to
    the survivor groups rendered."""
    with reftrace.watch() as w:
        _heap.survivors_block(w.track)
    out = io.StringIO()
    for group in w.report.survivors:
        out.write(str(group))
    return w.report


def check_clean(report: reftrace.Report) -> str | None:
    if report.leaks or report.collected != _heap.LEAKS:
        return f"clean block: {len(report.leaks)} leaks, {report.collected} collected"
    return None


def check_leaks(report: reftrace.Report) -> str | None:
    found = {leak.path.expression for leak in report.leaks if leak.path}
    if found != _heap.expected_leaks() or len(report.leaks) != _heap.LEAKS:
        return f"reftrace found {sorted(found)}"
    return None


_DONE = re.compile(r"SERVICES\[\d+\]\.events\._listeners\['done'\]\[\*\]")


def check_survivors(report: reftrace.Report) -> str | None:
    groups = report.survivors
    records = sum(dict(g.top_types).get("Record", 0) for g in groups)
    paths = [g.attachment for g in groups if g.path]
    big = {g.attachment: dict(g.top_types).get("Record", 0) for g in groups[:2]}
    expected_big = {"HEAP['log'][*]": 2_000, "HEAP['sessions'][*]": 2_000}
    done = [p for p in paths if _DONE.fullmatch(p)]
    if report.leaks or records != _heap.SURVIVORS or len(groups) != 102 or big != expected_big:
        return f"survivors: {records} records in {len(groups)} groups, largest {big}"
    if len(done) != len(paths) - 2:
        return f"survivor paths: {[p for p in paths if p not in big and p not in done]}"
    return None


# -- the other tools ----------------------------------------------------------


class Tools:
    """The other tools, imported once; a tool that cannot run is skipped with why."""

    def __init__(self, skip: set[str]) -> None:
        self.unavailable: dict[str, str] = {tool: "skipped (--skip)" for tool in skip}
        self.objgraph: Any = None
        self.hpy: Any = None
        self.pympler: Any = None
        version = platform.python_version()
        if "objgraph" not in skip:
            try:
                import objgraph

                self.objgraph = objgraph
            except ImportError as exc:
                self.unavailable["objgraph"] = f"objgraph not installed ({exc})"
        if "guppy" not in skip:
            try:
                from guppy import hpy

                self.hpy = hpy()
            except ImportError as exc:
                self.unavailable["guppy"] = f"guppy3 not installed ({exc})"
            except Exception as exc:  # guppy3 is a C extension: any failure is possible
                self.unavailable["guppy"] = f"guppy3 does not work on Python {version}: {exc!r}"
        if "pympler" not in skip:
            try:
                from pympler import muppy, summary

                self.pympler = (muppy, summary)
            except ImportError as exc:
                self.unavailable["pympler"] = f"pympler not installed ({exc})"

    def objgraph_chains(self, refs: list[Any]) -> list[tuple[bool, str]]:
        """One ``find_backref_chain`` per target, each checked as soon as it is
        found (a kept chain would be one more referrer for the next search)."""
        objgraph = self.objgraph
        module = sys.modules[_heap.__name__]
        listener_ids = [id(listeners) for listeners in _heap.listener_lists()]
        out = []
        for ref, listeners_id in zip(refs, listener_ids):
            chain = objgraph.find_backref_chain(ref(), objgraph.is_proper_module)
            ok = (
                chain[0] is module
                and chain[-1] is ref()
                and any(id(obj) == listeners_id for obj in chain)
            )
            out.append((ok, " -> ".join(type(obj).__name__ for obj in chain)))
            del chain
        return out

    def guppy_paths(self, refs: list[Any]) -> str:
        gc.collect()
        return str(self.hpy.iso(*[ref() for ref in refs]).shpaths)

    def pympler_summary(self) -> list[list[Any]]:
        muppy, summary = self.pympler
        rows: list[list[Any]] = summary.summarize(muppy.get_objects())
        return rows


def check_objgraph(chains: list[tuple[bool, str]]) -> str | None:
    bad = [i for i, (ok, _) in enumerate(chains) if not ok]
    if bad or len(chains) != _heap.LEAKS:
        return f"objgraph chains {bad} miss the _heap module or the listener list"
    return None


_GUPPY_PATH = re.compile(
    r"\['_heap'\]\.__dict__\['SERVICES'\]\[(\d+)\]\S*\['chunk'\]\[0\]\.__self__$", re.M
)


def check_guppy(text: str) -> str | None:
    found = {int(k) for k in _GUPPY_PATH.findall(text)}
    if found != {k * _heap.LEAK_STEP for k in range(_heap.LEAKS)}:
        return f"guppy3 shortest paths through SERVICES{sorted(found)}:\n{text}"
    return None


def check_pympler(rows: list[list[Any]]) -> str | None:
    counts = [row[1] for row in rows if str(row[0]).endswith("_heap.Output")]
    if counts != [_heap.LEAKS]:
        return f"pympler summary rows for _heap.Output: {counts}"
    return None


def tracemalloc_compare(size: int) -> tuple[int, float, float, list[Any]]:
    """Rebuild the heap with tracemalloc tracing (1 frame), then time two
    snapshots around the leaking block and their comparison by line."""
    tracemalloc.start(1)
    try:
        objects = _heap.build_heap(size)

        def compare() -> list[Any]:
            before = tracemalloc.take_snapshot()
            _heap.leaking_block()
            after = tracemalloc.take_snapshot()
            return after.compare_to(before, "lineno")

        seconds, stats, peak = measure(compare, peak=True)
    finally:
        tracemalloc.stop()
        _heap.unplant()
    return objects, seconds, peak, stats


def check_tracemalloc(stats: list[Any]) -> str | None:
    grown = [
        s.traceback[0].lineno
        for s in stats[:10]
        if s.size_diff > 0 and s.traceback[0].filename == _heap.__file__
    ]
    if not grown:
        return "tracemalloc: no growth at _heap.py lines among the 10 largest"
    return None


# -- one heap size ----------------------------------------------------------------


def run_size(size: int, repeat: int, tools_repeat: int, tools: Tools) -> Size:
    result = Size(_heap.build_heap(size), {key: Row() for key, _ in ROWS})
    rows = result.rows
    for tool, reason in tools.unavailable.items():
        rows[tool].skipped = reason
    # Peak memory first, before other runs leave freed arenas to reuse.
    rows["leaking"].peak_mb = measure(lambda: (watch_leaking(), _heap.unplant()), peak=True)[2]
    rows["survivors"].peak_mb = measure(lambda: (watch_survivors(), _heap.unplant()), peak=True)[2]
    for run in range(repeat):
        rows["collect"].times.append(measure(gc.collect)[0])

        seconds, report, _ = measure(watch_clean)
        rows["clean"].times.append(seconds)
        rows["clean"].check(check_clean(report))

        seconds, (report, built), _ = measure(watch_leaking)
        rows["leaking"].times.append(seconds)
        rows["build"].times.append(built)
        rows["leaking"].check(check_leaks(report))
        result.stages["10-leak watch"] = report.timings
        if run == 0 and report.leaks and report.leaks[0].path:
            result.answers["reftrace"] = str(report.leaks[0].path.expression)
        del report

        # The other tools, on the very objects reftrace just reported.
        if run < tools_repeat:
            run_tools(result, tools, first=run == 0)
        _heap.unplant()

        seconds, report, _ = measure(watch_survivors)
        rows["survivors"].times.append(seconds)
        rows["survivors"].check(check_survivors(report))
        result.stages["5,000-survivor watch"] = report.timings
        del report
        _heap.unplant()

    if "tracemalloc" not in tools.unavailable:
        _, seconds, peak, stats = tracemalloc_compare(size)
        _add(rows["tracemalloc"], seconds, peak, check_tracemalloc(stats))
        top = next((s for s in stats if s.traceback[0].filename == _heap.__file__), None)
        result.answers["tracemalloc"] = str(top).replace(os.path.dirname(_heap.__file__), "…")
        del stats, top
    _heap.HEAP.clear()
    _heap.SERVICES.clear()
    return result


def run_tools(result: Size, tools: Tools, first: bool) -> None:
    """objgraph, guppy3 and (on the first run) pympler, while the 10 leaks are planted."""
    rows = result.rows
    refs = _heap.planted()
    if tools.hpy is not None:
        try:
            seconds, text, peak = measure(tools.guppy_paths, refs, peak=first)
        except Exception as exc:  # a C extension on a new Python: say so, go on
            version = platform.python_version()
            tools.hpy = None
            tools.unavailable["guppy"] = rows["guppy"].skipped = (
                f"guppy3 does not work on Python {version}: {exc!r}"
            )
        else:
            _add(rows["guppy"], seconds, peak, check_guppy(text))
            if first:
                result.answers["guppy"] = text.splitlines()[0].strip()
            del text
    if tools.objgraph is not None:
        seconds, chains, peak = measure(tools.objgraph_chains, refs, peak=first)
        _add(rows["objgraph"], seconds, peak, check_objgraph(chains))
        if first:
            result.answers["objgraph"] = chains[0][1]
        del chains
    if first and tools.pympler is not None:
        seconds, summary, peak = measure(tools.pympler_summary, peak=True)
        _add(rows["pympler"], seconds, peak, check_pympler(summary))
        output = [row for row in summary if str(row[0]).endswith("_heap.Output")]
        result.answers["pympler"] = repr(output)
        del summary, output


def _add(row: Row, seconds: float, peak: float, failure: str | None) -> None:
    row.times.append(seconds)
    if not math.isnan(peak):
        row.peak_mb = peak
    row.check(failure)


# -- output ---------------------------------------------------------------------


def print_size(result: Size) -> None:
    rows = result.rows
    collect, watch = rows["collect"].median, rows["leaking"].median
    objects = f"{result.objects:,}"
    for key, label in ROWS:
        row = rows[key]
        if row.skipped:
            print(f"{objects:>13}  {label:<34} {row.skipped}")
        elif row.times:
            median = row.median
            vs_watch = f"{median / watch:>5.1f}x" if key in PATH_TOOLS else ""
            peak = "" if math.isnan(row.peak_mb) else f"{row.peak_mb:.1f}"
            line = (
                f"{objects:>13}  {label:<34} {len(row.times):>4} {median * 1000:>9,.0f}ms "
                f"{median / collect:>7.1f}x {vs_watch:>7} {peak:>9}  {row.verdict}"
            )
            print(line.rstrip())
        objects = ""
    for what, stages in result.stages.items():
        text = ", ".join(f"{k} {v * 1000:,.0f}ms" for k, v in stages.items())
        print(f"{'':>13}  stages of the last {what}: {text}")


def print_targets(results: list[Size]) -> None:
    print("\ntargets (medians of this run):")
    for result in results:
        rows = result.rows
        collect, watch = rows["collect"].median, rows["leaking"].median
        millions = result.objects / 1e6
        parts = [
            _target("10-leak watch", watch / collect, "gc.collect", "<=", 3),
            _target("clean watch", rows["clean"].median / collect, "gc.collect", "<=", 3),
            _target("survivors", rows["survivors"].median / collect, "gc.collect", "<=", 3),
        ]
        if rows["objgraph"].times:
            parts.append(_target("objgraph", rows["objgraph"].median / watch, "watch", ">=", 10))
        if rows["guppy"].times:
            parts.append(_target("guppy3", rows["guppy"].median / watch, "watch", ">=", 1))
        for key, what in (("leaking", "10-leak"), ("survivors", "survivors")):
            peak = rows[key].peak_mb
            if not math.isnan(peak):
                per_million = peak / millions
                verdict = "met" if per_million <= 100 else "MISSED"
                parts.append(f"{what} peak {per_million:.1f} MB per 1M objects (<= 100: {verdict})")
        print(f"  {result.objects:>11,}: " + "; ".join(parts))


def _target(what: str, ratio: float, unit: str, sense: str, bound: float) -> str:
    met = ratio <= bound if sense == "<=" else ratio >= bound
    return f"{what} {ratio:.1f}x {unit} ({sense} {bound}: {'met' if met else 'MISSED'})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100k,1M", type=parse_sizes, help="heap sizes, e.g. 100k,1M,3M,10M"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per size (medians)")
    parser.add_argument(
        "--tools-repeat",
        type=int,
        help="runs of objgraph and guppy3 per size (default: --repeat; they are slow)",
    )
    parser.add_argument(
        "--skip", default="", help=f"tools to leave out, comma-separated: {','.join(TOOLS)}"
    )
    parser.add_argument("--quick", action="store_true", help="100k objects, one run of each")
    args = parser.parse_args()
    sizes = [100_000] if args.quick else args.sizes
    repeat = 1 if args.quick else args.repeat
    tools_repeat = repeat if args.tools_repeat is None or args.quick else args.tools_repeat
    skip = {tool.strip() for tool in args.skip.split(",") if tool.strip()}
    if repeat < 1 or tools_repeat < 1:
        parser.error("--repeat and --tools-repeat must be at least 1")
    if skip - set(TOOLS):
        parser.error(f"--skip: unknown tools {sorted(skip - set(TOOLS))}; known: {TOOLS}")
    tools = Tools(skip)
    # Line by line: a size can take minutes, and its rows show as it ends.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"medians of {repeat} run(s), objgraph and guppy3 {tools_repeat}, "
        "pympler and tracemalloc 1"
    )
    print(
        f"{'heap objects':>13}  {'what':<34} {'runs':>4} {'median':>11} "
        f"{'/collect':>8} {'/watch':>7} {'peak +MB':>9}  check"
    )
    results = []
    for size in sizes:
        result = run_size(size, repeat, tools_repeat, tools)
        print_size(result)
        results.append(result)
    print_targets(results)
    print("\nwhat each tool answered for the first target (first size):")
    for tool, answer in results[0].answers.items():
        print(f"  {tool}: {answer}")
    failures = [f for r in results for row in r.rows.values() for f in row.failures]
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
