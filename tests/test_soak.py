"""reftrace.soak(): a leak under load is flagged with its container; a plateau is not."""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import itertools
import json
import sys
import time
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import reftrace
from reftrace.demo import agent as demo
from reftrace.soak import SoakReport, default_warmup
from reftrace.stats import fewer_than_expected, judge

# Module globals the lifecycles below keep things in, as a service would.
REQUESTS_SEEN: list[list[str]] = []
LOG_LINES: list[str] = []
RESULTS_BY_ID: dict[int, str] = {}
RECENT: collections.deque[list[int]] = collections.deque(maxlen=5)
WARM: dict[int, list[int]] = {}
SOMETIMES: list[object] = []
REGISTRY: dict[str, list[object]] = {}
_ids = itertools.count()


@pytest.fixture(autouse=True)
def _empty_globals():
    yield
    for container in (REQUESTS_SEEN, LOG_LINES, RESULTS_BY_ID, RECENT, WARM, SOMETIMES, REGISTRY):
        container.clear()
    demo.reset()


def handle_request() -> None:
    """Leaks: every call keeps its 56 chunks in a module list."""
    REQUESTS_SEEN.append([f"chunk {i} of request" for i in range(56)])


def test_a_list_that_gains_items_every_call_is_leaking_with_its_path() -> None:
    sr = reftrace.soak(handle_request, iterations=30)

    assert isinstance(sr, SoakReport)
    assert sr.leaking is True
    assert sr.confidence == "high"
    assert sr.warmup == default_warmup(30) == 6
    assert sr.verdict == "leaking" and sr.iterations == sr.requested == 30
    assert len(sr.objects) == len(sr.blocks) == 31
    # One list of 56 chunks per call: one more tracked object, 56 more strings.
    assert sr.objects_trend.per_iteration == 1
    assert sr.objects_trend.every_interval and sr.objects_trend.regular
    assert sr.blocks_trend.growing and sr.blocks_trend.per_iteration >= 57

    [container] = sr.containers
    assert container.status == "unbounded" and container.holder
    assert container.bound is None and not container.weak
    # What one call's item keeps: the list of 56 strings.
    assert container.kept_objects >= 1 and container.kept_bytes > 56 * 50
    assert container.path is not None
    assert container.path.root.kind == "module"
    assert container.path.root.name == __name__
    assert container.expression == "REQUESTS_SEEN"
    assert container.name == f"{__name__}.REQUESTS_SEEN"
    assert container.type_name == "list"
    assert container.per_iteration == 1.0
    assert [n for _, n in container.lengths] == sorted(n for _, n in container.lengths)
    assert container.item_types == [("list", 1)]
    # The sampled item's leak trace comes from the watch engine, suspect marked.
    [sample] = container.samples
    assert sample.path is not None
    assert sample.path.expression == f"REQUESTS_SEEN[{len(REQUESTS_SEEN) - 1}]"
    assert sample.suspect is not None and sample.suspect.label.startswith("[")
    assert sr.sample is not None  # the report of the extra watched call
    line = handle_request.__code__.co_firstlineno + 2
    assert any(site.site.endswith(f"test_soak.py:{line}") for site in sr.sites), sr.sites

    text = str(sr)
    assert text.startswith("leaking (high confidence): +1 objects and +")
    assert f"{__name__}.REQUESTS_SEEN" in text
    assert "suspect: this reference was created inside the block" in text


def test_projection_table_in_str() -> None:
    sr = reftrace.soak(handle_request, iterations=20)
    rows = sr.projection()
    assert [row.iterations for row in rows] == [1_000, 10_000, 100_000]
    assert [row.objects for row in rows] == [1_000, 10_000, 100_000]
    assert [row.items for row in rows] == [1_000, 10_000, 100_000]
    assert rows[2].bytes == round(sr.bytes_per_iteration * 100_000) > 0
    text = str(sr)
    table = text[text.index("projection at the measured rate") :].splitlines()
    assert table[1].split() == ["iterations", "objects", "memory", "container", "items"]
    assert table[2].split()[:2] == ["1,000", "+1,000"]
    assert table[3].split()[:2] == ["10,000", "+10,000"]
    assert table[4].split()[:2] == ["100,000", "+100,000"]
    assert table[4].split()[-1] == "+100,000"


def test_strings_the_gc_does_not_track_still_count() -> None:
    def log_request() -> None:
        LOG_LINES.append("GET /api/items?page=" + str(next(_ids)) + " 200 " + "x" * 64)

    sr = reftrace.soak(log_request, iterations=30)
    assert sr.leaking
    # Strings are invisible to the gc: the object count is flat, allocated blocks are not.
    # One block a call; to the nearest block, as the test runner's own thread may
    # allocate or free one during a call (tracemalloc counts every thread).
    assert not sr.objects_trend.growing
    assert sr.blocks_trend.growing and round(sr.blocks_trend.per_iteration) == 1
    assert [c.expression for c in sr.containers] == ["LOG_LINES"]
    assert ("str", 1) in sr.containers[0].item_types
    assert any(t.name == "str" and not t.tracked for t in sr.types)
    assert "str *" in str(sr)


def test_a_dict_the_gc_does_not_track_is_found() -> None:
    # int -> str: this dict holds only atomic values, so gc.get_objects() never
    # lists it (before 3.14, which tracks every dict).
    def remember() -> None:
        key = next(_ids)
        RESULTS_BY_ID[key] = f"result {key}" * 4

    assert gc.is_tracked(RESULTS_BY_ID) is (sys.version_info >= (3, 14))
    sr = reftrace.soak(remember, iterations=30)
    assert sr.leaking
    assert [c.expression for c in sr.containers] == ["RESULTS_BY_ID"]
    assert sr.containers[0].type_name == "dict"


def test_bounded_deque_is_not_leaking() -> None:
    sr = reftrace.soak(lambda: RECENT.append([1, 2, 3]), iterations=30)
    assert not sr.leaking, str(sr)
    assert sr.confidence == "high"
    assert sr.containers == []
    assert "nothing to project" in str(sr)


def test_lru_cache_is_not_leaking_once_full() -> None:
    @functools.lru_cache(maxsize=32)
    def render(page: int) -> list[str]:
        return [f"row {i} of page {page}" for i in range(20)]

    pages = itertools.count()
    # 100 calls, 20 of them warm-up: the cache is full after 32 and evicts from then on.
    sr = reftrace.soak(lambda: render(next(pages)), iterations=100)
    assert not sr.leaking, str(sr)
    assert sr.containers == []
    assert render.cache_info().currsize == 32


def test_the_struct_modules_format_cache_is_bounded_not_a_leak() -> None:
    import _struct
    import struct

    # Every call packs a format never seen before: _struct caches each in a
    # dict of its C state, and empties it at 100 formats.
    formats = itertools.count(1000)
    _struct._clearcache()
    sr = reftrace.soak(lambda: struct.pack(f"{next(formats)}x"), iterations=40)
    assert not sr.leaking, str(sr)
    assert all(c.status != "unbounded" for c in sr.containers + sr.stopped), str(sr)


class _Link:
    # No __dict__: on 3.10 an instance's dict is a container of its own, which
    # soak may follow as a holder.
    __slots__ = ("previous",)

    def __init__(self, previous: _Link | None) -> None:
        self.previous = previous


_CHAIN: list[_Link | None] = [None]


def test_growth_no_container_holds_is_a_leak_only_when_the_same_every_call() -> None:
    # No container grows: each new link refers to the one before. One link a
    # call is a leak. Growth that varies from call to call with nothing to
    # name as its holder is also what a cache of many keys looks like while
    # it fills over a thousand calls (jinja2's templates, compiled code): a
    # few hundred calls cannot tell them apart, so it is never called leaking.
    def regular() -> None:
        _CHAIN[0] = _Link(_CHAIN[0])

    calls = itertools.count()

    def irregular() -> None:
        for _ in range(next(calls) % 3 + 1):
            _CHAIN[0] = _Link(_CHAIN[0])

    try:
        steady = reftrace.soak(regular, iterations=60)
        assert (steady.verdict, steady.confidence) == ("leaking", "medium"), str(steady)
        varying = reftrace.soak(irregular, iterations=60)
        assert (varying.verdict, varying.confidence) == ("inconclusive", "low"), str(varying)
        assert "with no holder only growth that is the same every call" in varying.reason
        assert "no container on the heap holds them" in varying.reason
    finally:
        _CHAIN[0] = None


def test_a_live_run_too_short_to_decide_asks_for_a_longer_one() -> None:
    from reftrace.soak import soak_over_time

    # The same regular leak, sampled as in a running program (attach, a Dask
    # survey): a live run is never extended, so a few samples cannot say more
    # than "run longer"; thirty can say leaking.
    short = soak_over_time(handle_request, 8)
    assert (short.verdict, short.confidence) == ("inconclusive", "low"), str(short)
    assert short.settle == "a run of 80 samples, ten times as long", short.settle
    assert [c.name for c in short.holders] == ["test_soak.REQUESTS_SEEN"], str(short)
    REQUESTS_SEEN.clear()
    full = soak_over_time(handle_request, 30)
    assert (full.verdict, full.confidence) == ("leaking", "high"), str(full)


def test_linecache_filling_with_source_files_is_kept_by_design(tmp_path: Path) -> None:
    import linecache

    # Anything that formats a traceback, or a profiler that names lines (Dask's
    # does, every 10 ms), reads each source file once into linecache.cache.
    files = iter(range(10_000))

    def read_a_new_file() -> None:
        path = tmp_path / f"module_{next(files)}.py"
        path.write_text("x = 1\n")
        linecache.getline(str(path), 1)

    sr = reftrace.soak(read_a_new_file, iterations=40)
    assert not sr.leaking, str(sr)
    (cache,) = [c for c in sr.containers + sr.stopped if c.name == "linecache.cache"]
    assert cache.status == "declared", str(sr)
    assert cache.bound is not None and cache.bound.kind == "keyed"
    assert "one entry per source file" in str(sr)


def test_a_dict_in_a_modules_c_state_is_not_called_its_globals() -> None:
    import struct

    from reftrace.labels import edge

    struct.pack("3x")
    module = sys.modules["_struct"]
    cache = next(r for r in gc.get_referents(module) if type(r) is dict and r is not vars(module))
    assert edge(module, cache).label == "<module state>"
    assert edge(module, vars(module)).label == ".__dict__"
    from reftrace.bounds import find_bounds

    (bound,) = find_bounds([cache])
    assert bound is not None and bound.limit == 100, bound


def test_cache_that_fills_during_warmup_then_plateaus_is_not_leaking() -> None:
    calls = itertools.count()

    def lookup() -> None:
        key = next(calls) % 4  # four distinct keys: full after four calls
        if key not in WARM:
            WARM[key] = list(range(100))

    sr = reftrace.soak(lookup, iterations=30, warmup=6)
    assert not sr.leaking, str(sr)
    assert sr.confidence == "high"
    # It grew during warm-up, and only then.
    assert sr.objects[6] > sr.objects[0]
    assert len(set(sr.objects[6:])) == 1


def _empty_soak_alone(arguments: str) -> SoakReport:
    """``reftrace.soak(lambda: None, <arguments>)`` in a process of its own.

    tracemalloc counts every thread's blocks, and the test runner's threads
    keep what they receive (more tests to run) at any time: a soak of nothing
    in the runner's process may see a block or two it did not make.
    """
    import subprocess

    code = (
        "import json, reftrace\n"
        f"sr = reftrace.soak(lambda: None, {arguments}, progress=False)\n"
        "print(json.dumps(sr.to_dict()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return SoakReport.from_dict(json.loads(proc.stdout))


def test_the_soak_does_not_measure_itself() -> None:
    # Everything the soak keeps (its series, type counts, container censuses)
    # is read before and after its bookkeeping and subtracted: an empty
    # lifecycle is flat, to the object; to the block but for a one-time step
    # the first census's code takes (the interpreter's first-use caches).
    sr = _empty_soak_alone("iterations=60")
    assert sr.verdict == "not leaking" and sr.confidence == "high"
    assert len(set(sr.objects[sr.warmup :])) == 1
    assert max(sr.blocks[sr.warmup :]) - min(sr.blocks[sr.warmup :]) <= 3
    assert len(set(sr.blocks[sr.warmup + 2 :])) == 1
    assert sr.objects_trend.per_iteration == 0
    assert sr.blocks_trend.per_iteration == 0
    assert sr.reason.startswith("flat: objects and allocated blocks unchanged")


def test_a_leak_on_every_third_call_is_still_a_trend() -> None:
    calls = itertools.count()

    def sometimes() -> None:
        if next(calls) % 3 == 0:
            SOMETIMES.append({"call": [1, 2, 3]})

    sr = reftrace.soak(sometimes, iterations=45)
    assert sr.leaking, str(sr)
    assert sr.objects_trend.growing and not sr.objects_trend.every_interval
    assert 0.25 < sr.objects_trend.per_iteration < 0.75


# -- async ---------------------------------------------------------------------------


async def _stream_request() -> None:
    await asyncio.sleep(0)
    REGISTRY.setdefault("streams", []).append(asyncio.get_running_loop().create_future())


def test_coroutine_function_on_a_fresh_loop() -> None:
    sr = reftrace.soak(_stream_request, iterations=20)
    assert sr.leaking
    [container] = sr.containers
    assert container.expression == "REGISTRY['streams']"
    assert container.item_types == [("Future", 1)]
    # The soak's own loop is closed: a new one can run.
    assert asyncio.run(asyncio.sleep(0, result=7)) == 7


def test_coroutine_function_on_the_callers_loop() -> None:
    loop = asyncio.new_event_loop()
    try:
        sr = reftrace.soak(_stream_request, iterations=20, loop=loop)
        assert sr.leaking
        assert not loop.is_closed()  # the caller's loop is the caller's to close
        futures = REGISTRY["streams"]
        assert {f.get_loop() for f in futures} == {loop}
    finally:
        loop.close()


def test_clean_coroutine_function() -> None:
    async def ping() -> list[int]:
        await asyncio.sleep(0)
        return [1, 2, 3]

    sr = reftrace.soak(ping, iterations=20)
    assert not sr.leaking, str(sr)


# -- the demo agent ------------------------------------------------------------------


def _one_stream() -> None:
    for _chunk in demo.AGENT.stream("why is my service using 10 GB", chunks=20):
        pass


def test_demo_agent_with_the_listener_bug_is_leaking() -> None:
    demo.install(demo.Bug.LISTENER)
    sr = reftrace.soak(_one_stream, iterations=24)
    assert sr.leaking and sr.confidence == "high"
    [container] = sr.containers
    assert container.path is not None
    assert container.path.root.name == "reftrace.demo.agent"
    assert container.expression == "AGENT.events._listeners['chunk']"
    assert container.item_types == [("method", 1)]
    leak = container.samples[0]
    assert leak.type_name == "method"
    assert leak.path is not None
    assert leak.path.expression.startswith("AGENT.events._listeners['chunk'][")
    assert {"reftrace.demo.agent.ModelOutput", "method"} <= {t.name for t in sr.types}


def test_fixed_demo_agent_is_not_leaking() -> None:
    demo.install(demo.Bug.NONE)
    sr = reftrace.soak(_one_stream, iterations=24)
    assert not sr.leaking, str(sr)
    assert sr.containers == []


# -- outputs -------------------------------------------------------------------------


def test_to_dict_is_json_and_masks_secrets(tmp_path: Path) -> None:
    def leak_token() -> None:
        REGISTRY.setdefault("token=sk-abcdefghijklmnopqrstuvwx", []).append([next(_ids)])

    sr = reftrace.soak(leak_token, iterations=20)
    data = json.loads(json.dumps(sr.to_dict()))
    assert data["leaking"] is True
    assert data["containers"][0]["per_iteration"] == 1.0
    assert [row["iterations"] for row in data["projection"]] == [1_000, 10_000, 100_000]
    assert data["sample"]["leaks"]
    dumped = json.dumps(data)
    assert "abcdefghijklmnop" not in dumped
    assert "[masked]" in dumped
    assert "abcdefghijklmnop" not in str(sr)
    assert "abcdefghijklmnop" not in sr._repr_html_()
    svg = tmp_path / "secret.svg"
    assert "abcdefghijklmnop" not in Path(sr.render(str(svg))).read_text(encoding="utf-8")
    assert json.loads(sr.to_json())["leaking"] is True


def test_html_escapes_what_the_program_named() -> None:
    def leak_markup() -> None:
        REGISTRY.setdefault("<script>alert(1)</script>", []).append([next(_ids)])

    sr = reftrace.soak(leak_markup, iterations=16)
    page = sr._repr_html_()
    assert sr.leaking
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "<svg" in page  # the growth plot


def test_render_writes_a_valid_svg(tmp_path: Path) -> None:
    sr = reftrace.soak(handle_request, iterations=16)
    out = sr.render(str(tmp_path / "soak.svg"))
    assert out == str(tmp_path / "soak.svg")
    text = Path(out).read_text(encoding="utf-8")
    root = ET.fromstring(text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # Objects, allocated blocks and (with glibc) malloc'd bytes.
    panels = 3 if sr.malloc else 2
    assert len(root.findall(".//{http://www.w3.org/2000/svg}polyline")) == panels
    assert "REQUESTS_SEEN" in text  # the retention graph of the growing container
    with pytest.raises(ValueError, match="svg"):
        sr.render(str(tmp_path / "soak.png"))


# -- arguments and failures ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fn": 42}, TypeError, "fn must be callable"),
        ({"iterations": 0}, ValueError, "iterations must be at least 1"),
        ({"iterations": "30"}, TypeError, "iterations must be an int"),
        ({"iterations": True}, TypeError, "iterations must be an int"),
        ({"iterations": 10, "warmup": 10}, ValueError, "warmup must be less than iterations"),
        ({"warmup": -1}, ValueError, "warmup must be at least 0"),
        ({"warmup": 2.5}, TypeError, "warmup must be an int"),
        ({"progress": "yes"}, TypeError, "progress must be a bool"),
        ({"samples": -1}, ValueError, "samples must be at least 0"),
        ({"loop": "loop"}, TypeError, "loop must be an asyncio event loop"),
        ({"max_depth": 0}, ValueError, "max_depth must be at least 1"),
        ({"iterations": 30, "max_iterations": 20}, ValueError, "max_iterations must be at least"),
        ({"max_seconds": 0}, ValueError, "max_seconds must be positive"),
        ({"max_seconds": "60"}, TypeError, "max_seconds must be a number"),
        ({"bounded": ["nosuchmodule.CACHE"]}, ValueError, "no imported module 'nosuchmodule'"),
        ({"bounded": ["collections.NO_SUCH"]}, ValueError, "has no attribute 'NO_SUCH'"),
        ({"bounded": ["not a name"]}, ValueError, "is not a dotted name"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message) -> None:
    arguments = {"fn": lambda: None, **kwargs}
    with pytest.raises(error, match=message):
        reftrace.soak(**arguments)


def test_a_closed_loop_is_refused() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(ValueError, match="loop must be open"):
        reftrace.soak(_stream_request, loop=loop)


def test_an_exception_from_fn_propagates_and_tracemalloc_is_restored() -> None:
    calls = itertools.count(1)

    def flaky() -> None:
        if next(calls) == 4:
            raise ConnectionError("upstream reset")

    was_tracing = tracemalloc.is_tracing()
    with pytest.raises(ConnectionError, match="upstream reset") as info:
        reftrace.soak(flaky, iterations=10)
    assert tracemalloc.is_tracing() == was_tracing
    if sys.version_info >= (3, 11):
        assert "raised by call 4 of 10" in "".join(info.value.__notes__)


def test_tracing_started_by_the_program_stays_on() -> None:
    tracemalloc.start()
    try:
        sr = reftrace.soak(handle_request, iterations=12, samples=0)
        assert tracemalloc.is_tracing()
        assert sr.leaking and sr.sample is None
    finally:
        tracemalloc.stop()


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys) -> None:
    reftrace.soak(lambda: None, iterations=8)
    assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest
    reftrace.soak(lambda: None, iterations=8, progress=True)
    err = capsys.readouterr().err
    assert "soak [" in err and "8/8" in err


def test_a_gc_callback_of_the_program_is_not_a_leak() -> None:
    # As hypothesis times collections: floats made and dropped around each
    # one (on 3.15 the info dict passed in has a float more). The soak's own
    # readings must see them alike, or each call looks one block bigger.
    timer = {"start": 0.0, "total": 0.0}

    def on_collect(phase: str, info: dict[str, object]) -> None:
        now = time.perf_counter()
        if phase == "start":
            timer["start"] = now
        else:
            timer["total"] += now - timer["start"]

    gc.callbacks.insert(0, on_collect)
    try:
        sr = reftrace.soak(lambda: RECENT.append([1, 2, 3]), iterations=30)
    finally:
        gc.callbacks.remove(on_collect)
    assert sr.verdict == "not leaking" and sr.confidence == "high", str(sr)
    assert not sr.blocks_trend.growing
    assert timer["total"] > 0


def test_too_few_iterations_say_so() -> None:
    sr = _empty_soak_alone("iterations=4, warmup=2")
    assert not sr.leaking
    assert sr.confidence == "low"
    assert "judged on only 2 calls after warm-up" in sr.reason


# -- the trend statistics ------------------------------------------------------------


def test_judge_tells_a_trend_from_a_step_and_from_noise() -> None:
    assert judge("objects", [100 + 5 * i for i in range(13)], exact=True).growing
    # A cache that filled early in the window, then stopped: no trend.
    step = [100, 110, 120] + [130] * 10
    assert not judge("objects", step, exact=True).growing
    # Noise around a level.
    noise = [1000, 1040, 990, 1010, 1030, 995, 1005, 1020, 985, 1000, 1015, 990, 1010]
    trend = judge("memory", noise, exact=False)
    assert not trend.growing
    assert trend.shrank > 0


# -- the README ----------------------------------------------------------------------


def test_readme_soak_example_prints_what_it_shows() -> None:
    import re
    import subprocess

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Soak") :]
    code, shown = re.findall(r"```\w*\n(.*?)```", section, flags=re.S)[:2]
    proc = subprocess.run(
        [sys.executable, "-"], input=code, cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout

    def numbers_masked(text: str) -> str:
        return re.sub(r"\d[\d,.]*", "#", text)

    def type_bytes_masked(lines: list[str]) -> list[str]:
        # A type's bytes per call is the mean size of a sample of its newest
        # instances, which moves by a tenth of a KB between runs; its count does
        # not. Malloc's growth per call, read from glibc, moves too (1.7 or 1.8 KB),
        # and with it the projection's memory; its objects and items do not.
        row = re.compile(r"^(  \S+\s+[+-][\d.,]+\s+)[+-][\d.,]+ (?:B|KB|MB)$")
        malloc = re.compile(r"[+-][\d.,]+ (?:B|KB|MB) of malloc")
        size = re.compile(r"[+-]?[\d.,]+ (?:B|KB|MB|GB)")
        out, projection = [], False
        for line in lines:
            projection = projection or line.startswith("projection at the measured rate")
            line = malloc.sub("<malloc>", row.sub(r"\1<bytes>", line))
            out.append(size.sub("<size>", line) if projection else line)
        return out

    if sys.version_info[:2] == (3, 11):
        # Line 2 holds timings and heap counts; everything else is exact.
        got, want = printed.splitlines(), shown.splitlines()
        assert numbers_masked(got[1]) == numbers_masked(want[1])
        assert type_bytes_masked(got[:1] + got[2:]) == type_bytes_masked(want[:1] + want[2:])
    else:
        # Sizes differ between versions (3.10 instances carry a dict); the finding does not.
        def finding(text: str) -> str:
            part = text[text.index("growing containers") : text.index("allocated by one more call")]
            return numbers_masked(part)

        assert printed.startswith("leaking (high confidence)")
        assert finding(printed) == finding(shown)


def test_judge_needs_growth_spread_over_the_window() -> None:
    # One step inside the judged window (a cache filled once, late) is not a trend.
    one_step = [500] * 9 + [520] * 4
    trend = judge("objects", one_step, exact=True)
    assert trend.window == 6 and trend.grew == 1
    assert not trend.growing
    # Two small steps in memory, growing in 2 of 8 intervals: not sustained growth.
    two_steps = [9000] * 11 + [9400] * 4 + [9800] * 2
    trend = judge("memory", two_steps, exact=False)
    assert trend.window == 8 and trend.grew == 2
    assert not trend.growing
    # An exact count that grows on every third call, all through the window, is a trend.
    trend = judge("objects", [i // 3 for i in range(25)], exact=True)
    assert trend.grew == 4 and trend.shrank == 0
    assert trend.growing


def test_a_slowdown_must_be_more_than_counting_explains() -> None:
    # Equal stretches: 6 events then 4 is what an unchanged rate gives often.
    assert fewer_than_expected(6, 4, 0.5) == pytest.approx(386 / 1024)
    # A vocabulary filling up: 84 new blocks, then 47.
    assert fewer_than_expected(84, 47, 0.5) < 0.001
    # The second stretch twice as long: 47 then 61 is fewer than the 72 expected.
    assert fewer_than_expected(47, 61, 2 / 3) < 0.05
    # Large counts use the normal approximation; a 20% fall is then certain.
    assert fewer_than_expected(5000, 4000, 0.5) < 1e-12
    assert fewer_than_expected(3000, 2950, 0.5) > 0.05
    # Shrinking is a slowdown; nothing at all shows nothing.
    assert fewer_than_expected(10, -3, 0.5) == 0.0
    assert fewer_than_expected(0, 0, 0.5) == 1.0


# -- bounds ----------------------------------------------------------------------------

PAGE_CACHE: dict[int, list[str]] = {}


class PageStore:
    """A cache that bounds itself by its own logic, with no maxsize to read."""

    def __init__(self) -> None:
        self.pages: dict[int, list[str]] = {}

    def get(self, page: int) -> list[str]:
        if page not in self.pages:
            if len(self.pages) >= 10_000:
                self.pages.clear()
            self.pages[page] = [f"row {i}" for i in range(5)]
        return self.pages[page]


STORE = PageStore()


def test_a_container_declared_bounded_is_never_the_leak() -> None:
    pages = itertools.count()

    def render() -> None:
        page = next(pages)
        PAGE_CACHE[page] = [f"row {i}" for i in range(5)]

    undeclared = reftrace.soak(render, iterations=30)
    assert undeclared.verdict == "leaking"
    PAGE_CACHE.clear()
    for declared in ([PAGE_CACHE], [f"{__name__}.PAGE_CACHE"]):
        sr = reftrace.soak(render, iterations=30, bounded=declared)
        assert sr.verdict == "not leaking", str(sr)
        [container] = sr.containers
        assert container.status == "declared" and not container.holder
        assert container.bound is not None and container.bound.kind == "declared"
        assert "bounded by design (declared: " in sr.reason
        PAGE_CACHE.clear()


def test_the_owner_of_a_container_can_be_declared() -> None:
    pages = itertools.count()
    sr = reftrace.soak(lambda: STORE.get(next(pages)), iterations=30, bounded=[STORE])
    assert sr.verdict == "not leaking", str(sr)
    assert sr.containers and sr.containers[0].status == "declared"
    STORE.pages.clear()
