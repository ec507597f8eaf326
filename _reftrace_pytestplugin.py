"""The pytest plugin: leak regression tests in one line.

pytest loads it through the ``pytest11`` entry point; a test that uses none
of it runs exactly as without it. Three ways to use it:

- the ``reftrace_watch`` fixture, a :class:`reftrace.Watch` around the test
  and its fixtures: ``reftrace_watch.track(obj)`` marks an object that must
  be collectable once the test is over. If it is still alive after the test
  and its function-scoped fixtures are torn down, the test fails with the
  leak trace as its message and the retention graph written under
  ``--reftrace-dir`` (default ``.reftrace/``).
- ``@pytest.mark.no_leaks``: the same watch, and the test also fails when
  objects it created stay attached to the heap that existed before it,
  outside pytest's own machinery (fixtures, capture, logging, plugins) and
  the standard library's caches. The test runs once unwatched first
  (``warmup=1``), so what a first run sets up once is not taken for a leak,
  and an object that replaced another in an attribute, a global or a cell
  (the last error, the current session) is not growth: only what a
  container gained counts.
  ``allow=[type or name, ...]`` accepts objects of those types;
  ``max_objects=N`` accepts up to N new objects.
- the ``reftrace_soak`` fixture: ``reftrace_soak(fn, iterations=30)`` runs a
  lifecycle many times (:func:`reftrace.soak`) and fails the test when it is
  leaking; it returns the :class:`reftrace.SoakReport` otherwise.

The verdict comes after teardown, so an object a fixture lets go when it is
torn down (``monkeypatch`` undoing a ``setattr``, a client closed at
teardown) is not taken for a leak. A leak is reported as the failure of the
test itself, not as an error in some fixture's teardown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import re
import sys
import traceback
import types
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.runner import runtestprotocol

if TYPE_CHECKING:
    # reftrace itself is imported only by a test that uses the plugin.
    import reftrace
    from reftrace.report import Report, SurvivorGroup


class ReftraceWarning(pytest.PytestWarning):
    """reftrace could not decide: an inconclusive soak, a leak it could not confirm."""


_WATCH = pytest.StashKey["reftrace.Watch"]()
_MACHINERY_KEY = pytest.StashKey[tuple[frozenset[str], tuple[str, ...]]]()

#: Packages that are pytest's own machinery, besides the plugins it loaded.
_MACHINERY = (
    "_pytest",
    "pytest",
    "pluggy",
    "py",
    "_py",
    "iniconfig",
    "_reftrace_pytestplugin",
    "__main__",  # `python -m pytest`, or the pytest script
)

#: Types of the standard library that hold what they are given on purpose.
_CACHE_TYPES = {("functools", "_lru_cache_wrapper"), ("_abc", "_abc_data")}

#: References that hold one object at a time: a new object there replaced the
#: one before it (a last error, a current session), so it cannot accumulate.
_SINGLE_SLOTS = {"attr", "global", "slot", "cell"}

#: Module globals that Python itself fills the first time something happens.
_BY_DESIGN_GLOBALS = {"__warningregistry__"}

_STDLIB = frozenset(sys.stdlib_module_names) | {"builtins"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reftrace", "leak tests with reftrace")
    group.addoption(
        "--reftrace",
        action="store_true",
        default=None,
        help="check every test for leaks, as @pytest.mark.no_leaks does (ini: reftrace = true)",
    )
    group.addoption(
        "--reftrace-dir",
        default=".reftrace",
        metavar="DIR",
        help="where the retention graphs of leaking tests are written "
        "(relative to the rootdir; default: .reftrace)",
    )
    group.addoption(
        "--reftrace-warmup",
        type=int,
        default=None,
        metavar="N",
        help="with --reftrace: unwatched runs of each test first (default 0: a test that "
        "leaves something behind is run again to confirm it anyway)",
    )
    group.addoption(
        "--reftrace-max-objects",
        type=int,
        default=None,
        metavar="N",
        help="with --reftrace: new objects a test may leave behind (default 0)",
    )
    parser.addini(
        "reftrace", "check every test for leaks (as --reftrace)", type="bool", default=False
    )
    parser.addini("reftrace_warmup", "as --reftrace-warmup", default="0")
    parser.addini("reftrace_max_objects", "as --reftrace-max-objects", default="0")
    parser.addini(
        "reftrace_allow",
        "with --reftrace: types (or names) every test may leave behind",
        type="linelist",
        default=[],
    )
    parser.addini(
        "reftrace_bounded",
        "with --reftrace: containers bounded by design, as module.NAME",
        type="linelist",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "no_leaks(allow=(), max_objects=0, warmup=1, bounded=()): after a warm-up run, fail "
        "the test when objects it created stay attached to the heap that existed before "
        "it, and stay so when it runs once more (reftrace)",
    )
    config.addinivalue_line(
        "markers", "reftrace_off: under --reftrace, do not check this test for leaks"
    )
    enabled = _suite_mode(config)
    if enabled and _INCREMENTAL_GC:
        raise pytest.UsageError(
            "pytest --reftrace needs CPython's generational collector, which "
            f"{'.'.join(map(str, sys.version_info[:3]))} replaced by an incremental one "
            "(3.14.0 to 3.14.4; 3.14.5 restored it): use 3.14.5 or later, or mark the "
            "tests to check with @pytest.mark.no_leaks"
        )
    config.stash[_STATE] = _State(enabled=enabled)


#: CPython 3.14.0-3.14.4 collect incrementally: a young collection there does
#: not tell one test's objects from the next one's, as --reftrace needs.
_INCREMENTAL_GC = (3, 14, 0) <= sys.version_info[:3] < (3, 14, 5)


def _suite_mode(config: pytest.Config) -> bool:
    flag = config.getoption("reftrace", None)
    return bool(flag) if flag is not None else bool(config.getini("reftrace"))


@dataclasses.dataclass
class _State:
    """What the plugin counts over a session, for its summary."""

    enabled: bool
    checked: int = 0
    failed: int = 0
    reruns: int = 0
    not_confirmed: int = 0
    skipped_when_watched: int = 0
    seconds: float = 0.0
    since_full_collect: int = 0
    chunk: _Chunk | None = None
    chunk_size: int = 8
    #: objects the program had frozen, unfrozen before the first test
    thawed: int = 0


_STATE = pytest.StashKey[_State]()
#: Watched tests between two full collections (garbage from before a test is
#: frozen with the old heap while it runs, and only a full collection frees it).
_FULL_COLLECT_EVERY = 25


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not state.checked:
        return
    parts = [
        f"{state.checked} tests checked for leaks",
        f"{state.failed} failed",
        f"{state.reruns} run again to confirm"
        + (f" ({state.not_confirmed} did not grow again)" if state.not_confirmed else ""),
    ]
    if state.skipped_when_watched:
        parts.append(f"{state.skipped_when_watched} skipped when watched, not checked")
    parts.append(f"{state.seconds:.1f} s on leak checks")
    if state.thawed:
        parts.append(
            f"{state.thawed:,} objects the program froze with gc.freeze() were unfrozen "
            "(a leak search cannot see what frozen objects hold)"
        )
    terminalreporter.write_sep("-", "reftrace")
    terminalreporter.write_line("reftrace: " + "; ".join(parts))


@pytest.fixture
def reftrace_watch(request: pytest.FixtureRequest) -> reftrace.Watch:
    """A reftrace watch over this test and its fixtures: ``track()`` what must die.

    The test fails if a tracked object is still alive after the test and its
    function-scoped fixtures are torn down; the message is the leak trace.
    """
    watch: reftrace.Watch | None = request.node.stash.get(_WATCH, None)
    if watch is None:
        pytest.fail(
            "reftrace_watch must be a parameter of the test (or of a fixture it "
            "uses): the watch starts before the test's fixtures are set up",
            pytrace=False,
        )
    return watch


@pytest.fixture
def reftrace_soak(request: pytest.FixtureRequest) -> Callable[..., reftrace.SoakReport]:
    """``reftrace_soak(fn, iterations=30, **options)``: run ``fn`` many times.

    Fails the test when :func:`reftrace.soak` finds it leaking (the message is
    the soak report; its graphs go under ``--reftrace-dir``); otherwise
    returns the :class:`reftrace.SoakReport`. An inconclusive soak does not
    fail the test: it issues a :class:`ReftraceWarning` that says why, and the
    run that would settle it. Options are those of
    :func:`reftrace.soak`. Call it from a synchronous test: a coroutine
    function is run on a fresh event loop.
    """
    import reftrace

    directory = _directory(request.config)

    def run(fn: Callable[[], Any], iterations: int = 30, **options: Any) -> reftrace.SoakReport:
        result = reftrace.soak(fn, iterations, **options)
        name = getattr(fn, "__name__", type(fn).__name__)
        if result.leaking:
            message = [
                f"reftrace: {name} leaks over {result.iterations} iterations",
                "",
                str(result),
            ]
            message += _drawn(result.render, directory, request.node.nodeid, "soak")
            pytest.fail("\n".join(message), pytrace=False)
        if result.inconclusive:
            warnings.warn(
                ReftraceWarning(
                    f"reftrace: {name}: inconclusive after {result.iterations} iterations: "
                    f"{result.reason}; to settle it: {result.settle}"
                ),
                stacklevel=2,
            )
        return result

    return run


# -- running a watched test ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Settings:
    survivors: bool
    allow: tuple[str, ...] = ()
    max_objects: int = 0
    warmup: int = 0
    #: ids of the containers declared bounded by design, with how each is shown
    bounded: tuple[tuple[int, str], ...] = ()
    #: checked with the tests around it, under one watch (--reftrace, no warm-up)
    chunked: bool = False


def _settings(item: pytest.Item) -> _Settings | None:
    marker = item.get_closest_marker("no_leaks")
    if marker is None:
        if "reftrace_watch" in getattr(item, "fixturenames", ()):
            return _Settings(survivors=False)
        state = item.config.stash.get(_STATE, None)
        if state is not None and state.enabled and item.get_closest_marker("reftrace_off") is None:
            return _suite_settings(item.config)
        return None
    if marker.args:
        raise TypeError(
            "no_leaks takes keyword arguments only: allow=[...], max_objects=N, warmup=N"
        )
    return _checked_settings(dict(marker.kwargs), "no_leaks")


def _checked_settings(options: dict[str, Any], where: str) -> _Settings:
    """The options of the marker (or of ``--reftrace``), checked."""
    allow = options.pop("allow", ())
    max_objects = options.pop("max_objects", 0)
    warmup = options.pop("warmup", 1)
    bounded = options.pop("bounded", ())
    if options:
        raise TypeError(
            f"{where} got unknown option(s) {', '.join(sorted(options))}; "
            "it takes allow=[type or name, ...], max_objects=N, warmup=N and "
            "bounded=[container or 'module.NAME', ...]"
        )
    if isinstance(allow, (str, type)):
        allow = (allow,)
    if not isinstance(allow, Iterable):
        raise TypeError(f"{where}(allow=...) takes types or names, got {type(allow).__name__}")
    names = []
    for entry in allow:
        if isinstance(entry, type):
            names += [entry.__qualname__, f"{entry.__module__}.{entry.__qualname__}"]
        elif isinstance(entry, str) and entry:
            names.append(entry)
        else:
            raise TypeError(f"{where}(allow=...) takes types or names, got {entry!r}")
    if isinstance(max_objects, bool) or not isinstance(max_objects, int) or max_objects < 0:
        raise TypeError(f"{where}(max_objects=...) takes an int >= 0, got {max_objects!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise TypeError(f"{where}(warmup=...) takes an int >= 0, got {warmup!r}")
    declared: tuple[tuple[int, str], ...] = ()
    if bounded:
        from reftrace.bounds import resolve_declared

        try:
            declared = tuple(resolve_declared(bounded).items())
        except ValueError as error:
            raise TypeError(f"{where}(bounded=...): {error}") from None
    return _Settings(True, tuple(names), max_objects, warmup, declared)


def _suite_settings(config: pytest.Config) -> _Settings:
    """``--reftrace``'s settings for every test: the marker's, set for the session."""
    warmup = config.getoption("reftrace_warmup", None)
    max_objects = config.getoption("reftrace_max_objects", None)
    settings = _checked_settings(
        {
            "allow": list(config.getini("reftrace_allow")),
            "bounded": list(config.getini("reftrace_bounded")),
            "warmup": warmup if warmup is not None else _ini_int(config, "reftrace_warmup"),
            "max_objects": (
                max_objects if max_objects is not None else _ini_int(config, "reftrace_max_objects")
            ),
        },
        "--reftrace",
    )
    return dataclasses.replace(settings, chunked=settings.warmup == 0)


def _ini_int(config: pytest.Config, name: str) -> int:
    text = str(config.getini(name)).strip()
    try:
        return int(text)
    except ValueError:
        raise TypeError(f"ini option {name} takes an int >= 0, got {text!r}") from None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    problem = None
    try:
        settings = _settings(item)
    except TypeError as error:
        settings, problem = None, str(error)
    if settings is not None and settings.chunked and _can_chunk(item.config):
        _run_in_chunk(item, nextitem, settings)
        return True
    # The tests of a chunk are logged before any other test starts.
    _flush(item.config)
    if settings is None and problem is None:
        return None
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    if settings is None:
        # A misspelt marker fails its test, with the reason; the run goes on.
        reports = runtestprotocol(item, log=False, nextitem=nextitem)
        _fail(reports, str(problem))
    else:
        reports = _run_watched(item, nextitem, settings)
    for report in reports:
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _run_watched(
    item: pytest.Item, nextitem: pytest.Item | None, settings: _Settings
) -> list[pytest.TestReport]:
    """Setup, call and teardown inside one watch; the verdict goes into the
    call's report, which is logged only after teardown.

    With ``warmup``, the test first runs unwatched that many times: what a
    first run sets up once (a logger, a cache entry, a registry's empty list)
    is there before the watched run, which then shows only what grows. When
    the watched run left new objects attached to old holders, the test runs
    again, watched, and fails only for the holders that grew again (an entry
    replaced, a bounded cache that churns, do not grow). Every run but the
    last is torn down as if a sibling test came next; the last one tears
    down to the real next test.
    """
    import time

    state = item.config.stash[_STATE]
    started = time.perf_counter()
    beside: Any = _Beside(item)
    for _ in range(settings.warmup):
        reports = _run_once(item, beside, None)
        if any(r.outcome != "passed" for r in reports):
            # A failing or skipped first run is the result.
            return _torn_down(item, nextitem, reports)
        item._report_sections.clear()  # output of the warm-up run is not shown
    _collect_now_and_then(state)
    watch = _new_watch(item, settings)
    reports = _run_inside(item, beside, watch)
    test_time = sum(r.duration for r in reports)
    message = None
    try:
        watch.__exit__(None, None, None)
        found = _left_behind(item, watch.report, settings, reports)
        del watch
        if found is not None and found[1]:
            state.reruns += 1
            found = _confirmed(item, beside, settings, found, state)
        if found is not None:
            message = _message(item, settings, *found)
    except Exception:
        message = "reftrace could not analyse this test:\n" + traceback.format_exc()
    if settings.survivors and _skipped(reports):
        # Skipped when watched (a test that skips under tracemalloc): its
        # outcome is the one it has unwatched, and nothing is checked.
        item._report_sections.clear()
        unwatched = _run_once(item, beside, None)
        if not _skipped(unwatched):
            state.skipped_when_watched += 1
            reports = unwatched
    elif settings.survivors:
        state.checked += 1
    if settings.warmup and _failed_on_a_later_run(reports):
        _note(
            reports,
            "reftrace: this test passed on its warm-up run and failed when run again in the "
            "same process (its first run changes what the second sees). If that is by "
            "design, mark it @pytest.mark.no_leaks(warmup=0).",
        )
    reports = _torn_down(item, nextitem, reports)
    if message is not None:
        state.failed += 1
        _fail(reports, message)
    else:
        # A graph left by an earlier failing run of this test is out of date.
        stale = os.path.join(_directory(item.config), _file_name(item.nodeid, ""))
        with contextlib.suppress(OSError):
            os.remove(stale)
    state.seconds += time.perf_counter() - started - test_time
    return reports


def _run_once(item: pytest.Item, nextitem: Any, watch: reftrace.Watch | None) -> list[Any]:
    """One more run of the item; watched for the fixture when it asks for one."""
    import reftrace

    if watch is None and "reftrace_watch" in getattr(item, "fixturenames", ()):
        warm = reftrace.watch(survivors=False)  # for the fixture; never analysed
        reports = _run_inside(item, nextitem, warm)
        warm.abandon()
        return reports
    if watch is not None:
        return _run_inside(item, nextitem, watch)
    return runtestprotocol(item, log=False, nextitem=nextitem)


def _new_watch(item: pytest.Item, settings: _Settings) -> reftrace.Watch:
    import reftrace

    if not settings.survivors:
        return reftrace.watch(survivors=False)
    # Under --reftrace the message of a failing test shows no allocation
    # site: its runs go without tracemalloc, at full speed.
    ignore = _MachineryFilter(_machinery(item.config)[0])
    return reftrace.watch(ignore=ignore, trace=not settings.chunked)


def _skipped(reports: list[pytest.TestReport]) -> bool:
    return any(r.skipped and not hasattr(r, "wasxfail") for r in reports)


def _collect_now_and_then(state: _State) -> None:
    """A full collection every few watched tests: garbage from before a test
    is frozen with the old heap while it runs, and nothing else frees it soon."""
    import gc

    state.since_full_collect += 1
    if state.since_full_collect >= _FULL_COLLECT_EVERY:
        state.since_full_collect = 0
        gc.collect()


#: New objects that hold nothing alive, or that a process keeps by design:
#: weak references (a WeakSet, a registry gaining them is a symptom at most)
#: and modules (imported on first use).
_BY_DESIGN_ITEMS = (weakref.ReferenceType, weakref.KeyedRef, types.ModuleType)


def _is_abc_cache(holder: object) -> bool:
    from reftrace.objects import type_module, type_name

    return type_name(holder) == "_abc_data" and type_module(holder) == "_abc"


class _MachineryFilter:
    """``watch(ignore=...)`` for pytest's own survivors, judged before any path
    search: a holder whose type is pytest's (or a plugin's), a plain container
    all of whose new items are pytest's (a fixture's finalizers), an ABC's
    caches, and weak references or modules wherever they are held."""

    def __init__(self, packages: frozenset[str]) -> None:
        self.packages = packages

    def __call__(self, holder: object, objects: list[object]) -> bool:
        from reftrace.analysis import HIDDEN

        if holder is HIDDEN:
            return True  # held from C: left out anyway ("hidden")
        if holder is None:
            return False
        if self.made_by_machinery(holder) or _is_abc_cache(holder):
            return True
        if objects and all(type(obj) in _BY_DESIGN_ITEMS for obj in objects):
            return True
        plain = type(holder) in (list, dict, set, tuple)
        return plain and bool(objects) and all(map(self.made_by_machinery, objects))

    def made_by_machinery(self, obj: object) -> bool:
        from reftrace.objects import type_module

        kind = type(obj)
        if kind is types.FunctionType:
            return self.is_machinery(getattr(obj, "__module__", None) or "")
        if kind is types.MethodType:
            return self.made_by_machinery(obj.__self__)  # type: ignore[attr-defined]
        if kind is functools.partial:
            return self.made_by_machinery(obj.func)  # type: ignore[attr-defined]
        return self.is_machinery(type_module(obj))

    def is_machinery(self, module: str) -> bool:
        return _is_machinery(module, self.packages)


# -- --reftrace: chunks of tests under one watch -------------------------------
#
# Finding what holds a test's new objects takes a scan of the whole heap, and
# a suite's heap is big (pytest's items alone): one scan per test costs more
# than most tests. Under --reftrace consecutive tests share one watch and one
# analysis. After each test a collection (cheap: the old heap is frozen) and a
# list of the young objects tell which test made each new object; a holder
# the analysis finds is put on the test that made what it holds, and that
# test alone is run again to confirm it grows. The reports of a chunk's tests
# are logged when their verdicts are in.


@dataclasses.dataclass
class _Pending:
    """A test of the chunk: its reports, held back until the verdicts are in."""

    item: pytest.Item
    reports: list[Any]
    judged: bool
    settings: _Settings
    #: ids of the objects it made that were alive after it
    made: set[int]
    #: it ran a collection of its own, which moved some of them out of sight
    incomplete: bool


@dataclasses.dataclass
class _Chunk:
    watch: reftrace.Watch
    pending: list[_Pending] = dataclasses.field(default_factory=list)
    #: the collector's thresholds before the chunk
    thresholds: tuple[int, ...] = ()
    #: collections of generations 1 and 2 counted so far (the chunk's own)
    collections: tuple[int, int] = (0, 0)


#: Tests in a chunk, at most.
_MAX_CHUNK = 5000
#: Analysis time, at most, per unit of the chunk's own test time.
_ANALYSIS_SHARE = 0.5


def _can_chunk(config: pytest.Config) -> bool:
    """A chunk is under way, or one can start: nothing of the program's frozen."""
    import gc

    from reftrace.memory import interpreter_frozen

    if config.stash[_STATE].chunk is not None:
        return True
    frozen = gc.get_freeze_count()
    return frozen == 0 or frozen == interpreter_frozen()


def _chunked(item: pytest.Item | None) -> bool:
    if item is None:
        return False
    try:
        settings = _settings(item)
    except TypeError:
        return False
    return settings is not None and settings.chunked


def _run_in_chunk(item: pytest.Item, nextitem: pytest.Item | None, settings: _Settings) -> None:
    """Run the test inside the chunk's watch; analyse the chunk after its last test."""
    import gc

    state = item.config.stash[_STATE]
    chunk = state.chunk
    if chunk is None:
        watch = _new_watch(item, settings)
        watch.__enter__()
        chunk = state.chunk = _Chunk(watch, thresholds=gc.get_threshold())
        # No automatic collection of generation 1 while the chunk runs: what
        # a test makes and keeps waits there until the test is over.
        gc.set_threshold(chunk.thresholds[0], 1 << 30, 1 << 30)
        chunk.collections = _collections()
    last = nextitem is None or len(chunk.pending) + 1 >= state.chunk_size or not _chunked(nextitem)
    # The last test of a chunk stops at its parents: a test that must run
    # again to confirm needs them set up.
    after: Any = _Beside(item) if last else nextitem
    reports = runtestprotocol(item, log=False, nextitem=after)
    still_frozen = chunk.watch.frozen
    judged = still_frozen and _passed(reports)
    # What the test made and kept is in generation 1 now (the old heap is
    # frozen, and generation 1 was emptied after the test before).
    incomplete = _collections() != chunk.collections
    gc.collect(0)
    made = set(map(id, gc.get_objects(1)))
    gc.collect(1)
    chunk.collections = _collections()
    chunk.pending.append(_Pending(item, reports, judged, settings, made, incomplete))
    if last or not still_frozen:
        # (A test that watched a block of its own unfroze the heap: the chunk
        # cannot tell what later tests make.)
        _flush(item.config, item if last else None, nextitem)


def _flush(
    config: pytest.Config,
    last: pytest.Item | None = None,
    nextitem: pytest.Item | None = None,
) -> None:
    """Analyse the chunk, confirm its candidates test by test, log its reports."""
    import math
    import time

    state = config.stash.get(_STATE, None)
    chunk = state.chunk if state is not None else None
    if state is None or chunk is None:
        return
    state.chunk = None
    started = time.perf_counter()
    pending = chunk.pending
    import gc

    try:
        gc.set_threshold(*chunk.thresholds)
        chunk.watch.__exit__(None, None, None)
        report = chunk.watch.report
        owed = _attribute(pending, report) if pending else {}
        analysed = time.perf_counter() - started
        for index, groups in owed.items():
            _judge_pending(pending[index], report, groups, state)
    except Exception:
        analysed = time.perf_counter() - started
        message = "reftrace could not analyse these tests:\n" + traceback.format_exc()
        for entry in pending:
            if entry.judged:
                _note(entry.reports, message)
    del chunk
    if last is not None:
        pending[-1].reports = _torn_down(last, nextitem, pending[-1].reports)
    state.checked += sum(entry.judged for entry in pending)
    state.seconds += time.perf_counter() - started
    test_time = sum(r.duration for entry in pending for r in entry.reports)
    if pending and test_time > 0:
        per_test = test_time / len(pending)
        wanted = math.ceil(analysed / (_ANALYSIS_SHARE * per_test))
        state.chunk_size = max(1, min(_MAX_CHUNK, wanted))
    for entry in pending:
        hook = entry.item.ihook
        hook.pytest_runtest_logstart(nodeid=entry.item.nodeid, location=entry.item.location)
        for test_report in entry.reports:
            hook.pytest_runtest_logreport(report=test_report)
        hook.pytest_runtest_logfinish(nodeid=entry.item.nodeid, location=entry.item.location)


def _collections() -> tuple[int, int]:
    """How many collections of generations 1 and 2 the collector has run."""
    import gc

    stats = gc.get_stats()
    return stats[1]["collections"], stats[2]["collections"]


def _attribute(pending: list[_Pending], report: Report) -> dict[int, list[SurvivorGroup]]:
    """The candidate groups of the chunk's report, by the test that made what
    they hold; what no test's list has goes to the tests that ran a
    collection of their own (it moved their objects out of sight)."""
    owed: dict[int, list[SurvivorGroup]] = {}
    first = pending[0]
    unsure = {index for index, entry in enumerate(pending) if entry.incomplete}
    for group in _candidates(first.item, report, first.settings):
        ids = set(group.entry_ids)
        makers = {index for index, entry in enumerate(pending) if not entry.made.isdisjoint(ids)}
        if not makers:
            makers = unsure
        for index in sorted(makers):
            if pending[index].judged:
                owed.setdefault(index, []).append(group)
    return owed


def _judge_pending(
    entry: _Pending, report: Report, groups: list[SurvivorGroup], state: _State
) -> None:
    """Confirm a test's candidates by running it alone once more; fail it if they grew."""
    if sum(group.count for group in groups) <= entry.settings.max_objects:
        return
    state.reruns += 1
    found = _confirmed(entry.item, _Beside(entry.item), entry.settings, (report, groups), state)
    if found is not None and found[1]:
        state.failed += 1
        _fail(entry.reports, _message(entry.item, entry.settings, report, found[1]))


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    state = session.config.stash.get(_STATE, None)
    if state is not None and state.enabled:
        _thaw(state)
    try:
        return (yield)
    finally:
        _flush(session.config)


def _thaw(state: _State) -> None:
    """Unfreeze what the program froze (a conftest may freeze the collected
    tests for speed): a leak search cannot see what frozen objects hold."""
    import gc

    from reftrace.memory import interpreter_frozen

    frozen = gc.get_freeze_count()
    if frozen and frozen != interpreter_frozen():
        gc.unfreeze()
        state.thawed = frozen


class _Beside:
    """The ``nextitem`` of a run before the last: a test beside this one, in
    the same parents. Its teardown ends the function's fixtures and keeps
    every wider one, so that the next run finds them old (as the test's real
    ``nextitem`` may not: the last test of a module would set its module
    fixtures up anew, and what they hold would all look new)."""

    def __init__(self, item: pytest.Item) -> None:
        self._chain = item.listchain()[:-1]

    def listchain(self) -> list[Any]:
        return self._chain


def _torn_down(
    item: pytest.Item, nextitem: pytest.Item | None, reports: list[pytest.TestReport]
) -> list[pytest.TestReport]:
    """Tear down what the real next test does not share (the runs so far
    stopped at the test's own parents), into the teardown's report."""
    from _pytest.runner import CallInfo

    if item.session.shouldfail or item.session.shouldstop:
        nextitem = None
    call = CallInfo.from_call(
        lambda: item.session._setupstate.teardown_exact(nextitem), when="teardown"
    )
    if call.excinfo is None:
        return reports
    report: pytest.TestReport = item.ihook.pytest_runtest_makereport(item=item, call=call)
    return [r for r in reports if r.when != "teardown"] + [report]


def _failed_on_a_later_run(reports: list[pytest.TestReport]) -> bool:
    return any(r.failed and r.when in ("setup", "call") for r in reports)


def _note(reports: list[pytest.TestReport], text: str) -> None:
    for report in reports:
        if report.failed and report.when in ("setup", "call"):
            report.sections.append(("reftrace", text))
            return


def _run_inside(item: pytest.Item, nextitem: Any, watch: reftrace.Watch) -> list[pytest.TestReport]:
    """pytest's own run of the item (setup, call, teardown), the watch entered
    before the setup; the reports are not logged yet."""
    item.stash[_WATCH] = watch
    watch.__enter__()
    try:
        return runtestprotocol(item, log=False, nextitem=nextitem)
    except BaseException:
        watch.abandon()
        raise
    finally:
        del item.stash[_WATCH]


def _fail(reports: list[pytest.TestReport], message: str) -> None:
    """Turn the test's call into a failure with ``message`` (no call: nothing to
    judge, its setup already failed)."""
    call = next((r for r in reports if r.when == "call"), None)
    if call is not None:
        call.outcome = "failed"
        call.longrepr = message


_Found = tuple["Report", "list[SurvivorGroup]"]


def _left_behind(
    item: pytest.Item,
    report: Report,
    settings: _Settings,
    reports: list[pytest.TestReport],
) -> _Found | None:
    """The report and the survivor groups the test is to fail for, or None
    when it left nothing behind."""
    if any(r.outcome != "passed" or hasattr(r, "wasxfail") for r in reports):
        # The test failed or was skipped: its traceback (sys.last_exc, the
        # report) keeps its locals, which would all look leaked.
        return None
    if len(reports) < 3:
        return None
    survivors = _candidates(item, report, settings)
    if not report.leaks and not survivors:
        return None
    return report, survivors


def _candidates(item: pytest.Item, report: Report, settings: _Settings) -> list[SurvivorGroup]:
    """The survivor groups that are not pytest's, the standard library's,
    allowed, or declared bounded; none when they are under ``max_objects``."""
    if not settings.survivors:
        return []
    machinery = _machinery(item.config)
    declared = {key for key, _ in settings.bounded}
    survivors = [
        group
        for group in report.survivors
        if _kept_by_design(group, machinery) is None
        and not _allowed(group, settings)
        and group.holder_id not in declared
    ]
    if sum(group.count for group in survivors) <= settings.max_objects:
        return []
    return survivors


def _holder_key(group: SurvivorGroup) -> tuple[object, ...]:
    """Where a group attaches, the same from one run to the next: the old
    holder's path and the kind of reference (an index differs, ``[17]``/``[18]``)."""
    if group.path is None or not group.path.steps:
        return (group.holder_type, group.edge)
    steps = group.path.steps
    return (group.path.root, tuple(step.code for step in steps[:-1]), steps[-1].kind)


#: Runs, at most, after the first watched one, to see a holder grow again.
_CONFIRMING_RUNS = 2


def _confirmed(
    item: pytest.Item, beside: Any, settings: _Settings, found: _Found, state: _State
) -> _Found | None:
    """Run the test again, watched: keep the groups whose holder grew again.

    A holder that is a container must be longer after the later run; one
    that is not must have new objects attached again. A holder seen for the
    first time in the later run (a registry's list made on the first run,
    filled on the second) gets one more run. A test that does not pass when
    run again cannot confirm anything: a warning says so, and the test is
    not failed for its survivors.
    """

    report, previous = found
    for _ in range(_CONFIRMING_RUNS):
        item._report_sections.clear()
        watch = _new_watch(item, settings)
        try:
            # (Run again after other tests, from other modules maybe: what is
            # set up for them and not for this one is torn down first.)
            item.session._setupstate.teardown_exact(item)
        except Exception:
            watch.abandon()
            return (report, []) if report.leaks else None
        again = _run_inside(item, beside, watch)
        watch.__exit__(None, None, None)
        later = _candidates(item, watch.report, settings) if _passed(again) else None
        del watch
        item._report_sections.clear()
        if later is None:
            warnings.warn(
                ReftraceWarning(
                    f"reftrace: {item.nodeid} left {sum(g.count for g in previous)} new "
                    "objects attached to old holders, but did not pass when run again to "
                    f"confirm they keep growing ({_outcome(again)}); not failed for them"
                ),
                stacklevel=2,
            )
            return (report, []) if report.leaks else None
        kept, fresh = _grew_again(previous, later)
        if kept:
            return report, kept
        if not fresh:
            break
        previous = fresh
    state.not_confirmed += 1
    return (report, []) if report.leaks else None


def _outcome(reports: list[pytest.TestReport]) -> str:
    """How a run that did not pass ended, in one line: ``call failed: AssertionError...``."""
    for report in reports:
        if report.outcome != "passed" or hasattr(report, "wasxfail"):
            text = str(report.longrepr or "").strip().splitlines()
            reason = text[-1] if text else ""
            kind = "xfailed" if hasattr(report, "wasxfail") else report.outcome
            return f"{report.when} {kind}: {reason[:200]}"
    return "passed"


def _passed(reports: list[pytest.TestReport]) -> bool:
    return all(r.outcome == "passed" and not hasattr(r, "wasxfail") for r in reports)


def _grew_again(
    previous: list[SurvivorGroup], later: list[SurvivorGroup]
) -> tuple[list[SurvivorGroup], list[SurvivorGroup]]:
    """The groups of ``later`` whose holder grew again since ``previous``, and
    those whose holder ``previous`` did not have."""
    before = {_holder_key(group): group for group in previous}
    kept, fresh = [], []
    for group in later:
        twin = before.get(_holder_key(group))
        if twin is None:
            fresh.append(group)
        elif group.holder_length is None or twin.holder_length is None:
            kept.append(group)
        elif group.holder_length > twin.holder_length:
            kept.append(
                dataclasses.replace(
                    group,
                    reason=(
                        f"grew again when the test ran once more: {twin.holder_length:,} → "
                        f"{group.holder_length:,} items"
                    ),
                )
            )
    return kept, fresh


def _message(
    item: pytest.Item, settings: _Settings, report: Report, survivors: list[SurvivorGroup]
) -> str:
    """The failure message: the leak traces, the graph, and what to do if it is by design."""
    from reftrace import views
    from reftrace.report import Report

    shown = Report(
        leaks=report.leaks,
        survivors=survivors,
        tracked=report.tracked,
        collected=report.collected,
        findings=report.findings,
    )
    text = views.text(shown, clean_line=False)
    lines = [_headline(item, report, survivors), "", text]
    confirmed = [group for group in survivors if group.reason.startswith("grew again")]
    if confirmed:
        lines += ["", "confirmed: the test ran once more, and"]
        lines += [f"  {group.attachment}: {group.reason}" for group in confirmed]
    lines += _drawn(shown.render, _directory(item.config), item.nodeid, "")
    if survivors:
        names = sorted({_attached_type(group) for group in survivors})
        lines += [
            "",
            "if they are kept on purpose: "
            f"@pytest.mark.no_leaks(allow=[{', '.join(map(repr, names))}]), or "
            "bounded=[the container] when it is bounded by design",
        ]
    return "\n".join(lines)


def _headline(item: pytest.Item, report: Report, survivors: list[SurvivorGroup]) -> str:
    """One line: how many tracked objects and new objects the test left behind."""
    parts = []
    if report.leaks:
        n = len(report.leaks)
        parts.append(f"{n} tracked object{'s' if n != 1 else ''} still alive")
    if survivors:
        n = sum(group.count for group in survivors)
        parts.append(
            f"{n} new object{'s' if n != 1 else ''} attached to the heap that existed before it"
        )
    return (
        f"reftrace: {item.name} left {' and '.join(parts)} "
        "(after the test and its fixtures were torn down)"
    )


# -- what counts as left behind ----------------------------------------------------


def _machinery(config: pytest.Config) -> tuple[frozenset[str], tuple[str, ...]]:
    """Top-level packages of pytest and of the plugins it loaded (conftest
    files are the project's own code, not machinery), and their directories;
    worked out once per session (the plugins are all loaded by the first test)."""
    found = config.stash.get(_MACHINERY_KEY, None)
    if found is None:
        found = config.stash[_MACHINERY_KEY] = _find_machinery(config)
    return found


def _find_machinery(config: pytest.Config) -> tuple[frozenset[str], tuple[str, ...]]:
    import importlib.metadata

    names = set(_MACHINERY)
    plugin_distributions = set()
    for _plugin, dist in config.pluginmanager.list_plugin_distinfo():
        for entry in getattr(dist, "entry_points", ()):
            if entry.group == "pytest11":
                names.add(entry.value.split(":")[0].split(".")[0])
                plugin_distributions.add(str(getattr(dist, "project_name", "")).lower())
    # The packages a plugin's distribution installs are its too: hypothesis
    # ships its pytest plugin as _hypothesis_pytestplugin beside hypothesis.
    # (reftrace itself is left to is_own_module, which keeps its demo apart.)
    plugin_distributions.discard("reftrace")
    with contextlib.suppress(Exception):
        for package, distributions in importlib.metadata.packages_distributions().items():
            if plugin_distributions.intersection(d.lower() for d in distributions):
                names.add(package)
    directories = []
    for name in names:
        module = sys.modules.get(name)
        location = getattr(module, "__file__", None)
        if location:
            directories.append(os.path.dirname(os.path.abspath(location)) + os.sep)
    return frozenset(names), tuple(directories)


def _top(module: str) -> str:
    return module.partition(".")[0]


def _is_machinery(module: str, packages: frozenset[str]) -> bool:
    """pytest's, a plugin's, or reftrace's own (its demo agent is a program like
    any other)."""
    from reftrace.objects import is_own_module

    return _top(module) in packages or is_own_module(module)


def _kept_by_design(
    group: SurvivorGroup, machinery: tuple[frozenset[str], tuple[str, ...]]
) -> str | None:
    """Why the group is not the test's leak (pytest's or the standard library's
    own keeping), or None when it is."""
    packages, directories = machinery
    path = group.path
    if path is None or path.root.kind == "hidden":
        # Nothing names the holder (C code; on 3.10-3.11 an io.StringIO keeps
        # its text in lists the gc does not see): nothing a test could act on.
        return "hidden"
    root = path.root
    if root.kind == "module" and _is_machinery(root.name, packages):
        return "pytest"
    if root.kind == "frame" and os.path.abspath(root.filename).startswith(directories):
        return "pytest"
    if any(_is_machinery(step.module, packages) for step in path.steps):
        return "pytest"
    if path.steps and path.steps[0].kind == "global" and path.steps[0].code in _BY_DESIGN_GLOBALS:
        return "warnings registry"
    suspect = path.suspect
    if suspect is not None and suspect.kind in _SINGLE_SLOTS:
        return "replaced"
    old = [step for step in path.steps if step.status != "new"]
    if any((step.module, step.type_name) in _CACHE_TYPES for step in old):
        return "cache"
    if (
        root.kind == "module"
        and _top(root.name) in _STDLIB
        and all(_top(step.module or "builtins") in _STDLIB for step in path.steps)
    ):
        return "standard library"
    return None


def _attached_type(group: SurvivorGroup) -> str:
    """The type of the new object the old heap holds (the group's entry)."""
    if group.path and group.path.steps:
        return group.path.steps[-1].type_name
    return group.top_types[0][0] if group.top_types else "?"


def _allowed(group: SurvivorGroup, settings: _Settings) -> bool:
    if not settings.allow:
        return False
    if group.path and group.path.steps:
        last = group.path.steps[-1]
        names = {last.type_name, f"{last.module}.{last.type_name}"}
    else:
        names = {name for name, _ in group.top_types}
    return bool(names & set(settings.allow))


# -- graphs --------------------------------------------------------------------


def _directory(config: pytest.Config) -> str:
    directory = str(config.getoption("reftrace_dir"))
    if not os.path.isabs(directory):
        directory = os.path.join(str(config.rootpath), directory)
    return directory


def _file_name(nodeid: str, suffix: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_.")
    if len(name) > 120:
        name = name[:100] + "-" + hashlib.sha1(nodeid.encode()).hexdigest()[:10]
    return f"{name}{'-' + suffix if suffix else ''}.svg"


def _drawn(render: Callable[[str], str], directory: str, nodeid: str, suffix: str) -> list[str]:
    """Draw the graph; the lines that tell where it went (or why it did not)."""
    path = os.path.join(directory, _file_name(nodeid, suffix))
    try:
        os.makedirs(directory, exist_ok=True)
        written = render(path)
    except Exception as error:  # GraphvizNotFound (DOT still written), OSError
        return ["", f"retention graph not drawn: {error}"]
    from reftrace.objects import short_path

    return ["", f"retention graph: {short_path(written)}"]
