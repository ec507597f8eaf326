"""reftrace.dask on a real distributed.LocalCluster of 4 worker processes.

The workers run the task functions of tests/dask_tasks.py, imported there by
name (spawned workers inherit this process's sys.path). A load thread keeps
submitting tasks while a survey or the LeakWatch plugin measures.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

import dask_tasks  # noqa: E402

import reftrace.cluster  # noqa: E402
import reftrace.dask  # noqa: E402

WORKERS = 4

# One pytest-xdist worker runs them all (nox runs pytest with --dist loadgroup),
# so the cluster starts once, and the thread Dask leaves behind is gone before
# that worker runs anything else.
pytestmark = pytest.mark.xdist_group("dask")


@pytest.fixture(scope="module", autouse=True)
def _no_dask_thread_left() -> Iterator[None]:
    """Dask keeps one offload thread for the life of the process; the tests
    that fork (``watch(prove=True)``) refuse while another thread runs. It is
    stopped after this module, and a fresh executor, with no thread until
    used, put in its place."""
    yield
    from concurrent.futures import ThreadPoolExecutor

    import distributed.utils

    old = distributed.utils._offload_executor
    distributed.utils._offload_executor = ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="Dask-Offload"
    )
    old.shutdown(wait=True)
    deadline = time.monotonic() + 30
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [t.name for t in threading.enumerate()] == ["MainThread"]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=WORKERS,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=50,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def _worker_state() -> dict[str, Any]:
    """On a worker: what a measurement must leave as it was (reftrace imported)."""
    import reftrace.dask  # noqa: F401  (its modules' own objects are in both counts)

    gc.collect()
    ours = 0
    for obj in gc.get_objects():
        module = type(obj).__dict__.get("__module__")
        ours += isinstance(module, str) and module.startswith("reftrace")
    return {
        "threads": sorted(t.name for t in threading.enumerate() if t.name.startswith("reftrace")),
        "reftrace_objects": ours,
        "gc": [gc.isenabled(), list(gc.get_threshold())],
    }


def _verdicts(report: reftrace.cluster.ClusterReport) -> list[tuple[str, str, str]]:
    """Each worker's verdict and its reason, for an assertion's message."""
    return [
        (w.address, w.verdict, w.report.reason if w.report is not None else w.error)
        for w in report.workers
    ]


def _reset(client: Any) -> None:
    client.run(dask_tasks.RESULTS.clear)


@pytest.mark.heavy
def test_a_leak_in_a_task_is_one_finding_on_all_four_workers(client: Any, tmp_path: Path) -> None:
    _reset(client)
    before = client.run(_worker_state)
    # A steady leak, at a third of what the workers ran flat out under the
    # whole suite on 2 cores (about 240 tasks a second): a load that runs as
    # fast as it can speeds up and slows down with the other tests, and a
    # worker whose leak slowed by a quarter is rightly "inconclusive, slowing".
    with dask_tasks.Load(client, dask_tasks.leaky, per_second=80):
        time.sleep(1)
        report = reftrace.dask.survey(client, duration=24, interval=0.6)
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    assert report.verdict == "leaking", report
    assert [f.holder for f in report.findings] == ["dask_tasks.RESULTS"], report
    finding = report.findings[0]
    assert finding.type_name == "list"
    assert finding.workers == workers, _verdicts(report)
    assert all(rate > 0 for rate in finding.rates.values())
    assert finding.total == pytest.approx(sum(finding.rates.values()))
    assert ("dict", finding.item_types[0][1]) == finding.item_types[0]
    assert all(w.status == "measured" and w.verdict == "leaking" for w in report.workers)
    text = str(report)
    assert "dask_tasks.RESULTS (list)" in text and "on 4 of 4 workers" in text
    # JSON out and back: the same report
    again = reftrace.cluster.loads(report.to_json())
    assert again.to_dict() == report.to_dict()
    assert str(again) == text
    assert "RESULTS" in report._repr_html_()
    svg = Path(report.render(str(tmp_path / "cluster.svg"))).read_text()
    assert "<svg" in svg and "RESULTS" in svg
    # nothing of the survey stays on the workers: no thread, no object of
    # reftrace's beyond its modules' own (made at import), the same gc settings
    after = client.run(_worker_state)
    assert after == before
    for state in after.values():
        assert state["threads"] == []
        assert state["gc"] == [True, list(gc.get_threshold())]


@pytest.mark.heavy
@pytest.mark.parametrize("task", ["clean", "cached"])
def test_a_clean_workload_and_a_bounded_cache_give_no_finding(client: Any, task: str) -> None:
    _reset(client)
    with dask_tasks.Load(client, getattr(dask_tasks, task)):
        time.sleep(1)
        report = reftrace.dask.survey(client, duration=15, interval=0.5)
    assert report.findings == [], report
    assert report.verdict != "leaking"
    assert all(w.verdict != "leaking" for w in report.workers), report


@pytest.mark.heavy
def test_an_interrupted_survey_stops_measuring_on_every_worker(client: Any) -> None:
    _reset(client)
    before = client.run(_worker_state)
    # Ctrl-C in a terminal, or a notebook's interrupt: SIGINT to the client's
    # main thread while it waits for the workers.
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            reftrace.dask.survey(client, duration=120, interval=1)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, handler)
    assert time.monotonic() - started < 10
    # each worker's thread ends at its next wait (a second at most, here)
    deadline = time.monotonic() + 10
    while True:
        after = client.run(_worker_state)
        if after == before or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    assert after == before
    assert client.run(lambda: sorted(reftrace.dask._STOPS)) == {a: [] for a in after}


def _watched(client: Any, watch: Any, fn: Callable[[int], int]) -> reftrace.cluster.ClusterReport:
    """``findings()`` once every worker sent a round of ``watch`` under a load of
    ``fn`` (or after two minutes); the plugin is unregistered after."""
    client.register_plugin(watch)
    try:
        with dask_tasks.Load(client, fn):
            deadline = time.monotonic() + 120
            while True:
                report = reftrace.dask.findings(client)
                if len(report.workers) == WORKERS or time.monotonic() >= deadline:
                    return report
                time.sleep(1)
    finally:
        client.unregister_worker_plugin("reftrace-leakwatch")


@pytest.mark.heavy
def test_leakwatch_sends_each_workers_findings_while_the_cluster_runs(client: Any) -> None:
    _reset(client)
    watch = reftrace.dask.LeakWatch("leaky", every=20, budget=0.5, samples=30)
    report = _watched(client, watch, dask_tasks.leaky)
    assert len(report.workers) == WORKERS, report
    assert [f.holder for f in report.findings] == ["dask_tasks.RESULTS"], report
    finding = report.findings[0]
    assert len(finding.rates) >= 3, report  # a worker's first round may still be inconclusive
    assert finding.unit == "task"
    # one dict per leaky task, and only leaky tasks ran
    assert all(0.5 < rate < 1.5 for rate in finding.rates.values()), finding.rates
    assert "items per task" in str(report)
    for state in client.run(_worker_state).values():
        assert state["threads"] == []


@pytest.mark.heavy
def test_leakwatch_on_a_clean_workload_finds_nothing(client: Any) -> None:
    _reset(client)
    watch = reftrace.dask.LeakWatch("clean", every=20, budget=0.5, samples=12)
    # the rounds of this watch only, not the leaky one's before it
    report = _watched(client, watch, dask_tasks.clean)
    assert len(report.workers) == WORKERS, report
    assert report.findings == [], report
    assert all(w.verdict != "leaking" for w in report.workers), report


def test_bad_input_is_refused_with_the_reason(client: Any) -> None:
    with pytest.raises(TypeError, match="needs a distributed.Client"):
        reftrace.dask.survey(object(), duration=6)
    for duration, error in ((0, ValueError), (-1, ValueError), (True, TypeError), ("6", TypeError)):
        with pytest.raises(error, match="duration"):
            reftrace.dask.survey(client, duration=duration)
    with pytest.raises(ValueError, match="needs at least 6"):
        reftrace.dask.survey(client, duration=2, interval=1)
    with pytest.raises(ValueError, match="not workers of this cluster: tcp://10.0.0.1:1"):
        reftrace.dask.survey(client, duration=6, workers=["tcp://10.0.0.1:1"])
    with pytest.raises(TypeError, match="not one string"):
        reftrace.dask.survey(client, duration=6, workers="tcp://10.0.0.1:1")
    for kwargs in ({"every": 0}, {"budget": 0}, {"budget": 2}, {"samples": 3}):
        with pytest.raises((TypeError, ValueError)):
            reftrace.dask.LeakWatch(**kwargs)
    with pytest.raises(TypeError, match="prefixes"):
        reftrace.dask.LeakWatch([""])
    closed = distributed.Client(client.scheduler.address)
    closed.close()
    with pytest.raises(ValueError, match="needs a connected Client; this one is closed"):
        reftrace.dask.survey(closed, duration=6)
    with pytest.raises(ValueError, match="closed"):
        reftrace.dask.findings(closed)


_NO_REFTRACE = """
import sys


class NoReftrace:
    \"\"\"A worker where reftrace is not installed: its import fails as it would then.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "reftrace" or name.startswith("reftrace."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoReftrace())
from distributed.cli.dask_worker import main
sys.argv = ["dask-worker", sys.argv[1], "--no-nanny", "--nthreads", "1", "--name", "bare"]
main()
"""


@pytest.mark.heavy
def test_a_worker_without_reftrace_is_reported_and_the_others_measured() -> None:
    with (
        distributed.LocalCluster(
            n_workers=1, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        bare = subprocess.Popen(
            [sys.executable, "-c", _NO_REFTRACE, cluster.scheduler_address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            c.wait_for_workers(2, timeout=60)
            report = reftrace.dask.survey(c, duration=2.4, interval=0.4)
        finally:
            bare.send_signal(signal.SIGTERM)
            bare.wait(timeout=30)
    statuses = sorted(w.status for w in report.workers)
    assert statuses == ["failed", "measured"], report
    failed = next(w for w in report.workers if w.status == "failed")
    assert failed.error == (
        "reftrace cannot be imported on this worker: "
        "ModuleNotFoundError: No module named 'reftrace'"
    )
    assert report.verdict == "inconclusive"
    assert "1 worker could not be measured" in report.notes
    assert failed.error in str(report)


@pytest.mark.heavy
def test_a_worker_that_dies_during_a_survey_is_reported_not_fatal() -> None:
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        pids = c.run(os.getpid)
        victim = sorted(pids)[0]
        timer = threading.Timer(1.5, os.kill, (pids[victim], signal.SIGKILL))
        timer.start()
        try:
            report = reftrace.dask.survey(c, duration=3.6, interval=0.6)
        finally:
            timer.cancel()
    by_address = {w.address: w for w in report.workers}
    assert by_address[victim].status == "left", report
    assert by_address[victim].report is None
    others = [w for w in report.workers if w.address != victim and w.status != "joined"]
    assert [w.status for w in others] == ["measured"], report
    assert "1 worker left during the run" in report.notes


@pytest.mark.heavy
def test_the_dask_benchmark_runs_and_its_checks_pass() -> None:
    bench = Path(__file__).resolve().parent.parent / "bench" / "bench_dask.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for row in (
        "LeakWatch() (every=1000, budget=0.01)",
        "LeakWatch(every=100, budget=0.05)",
        "the cluster's verdict:",
    ):
        assert row in done.stdout, done.stdout
