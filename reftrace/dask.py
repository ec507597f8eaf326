"""Leaks across a Dask cluster: every worker measured, the findings merged.

Two ways in (``pip install reftrace[dask]``):

- :func:`survey` measures every worker at once for ``duration`` seconds,
  through ``Client.run``: on each, a thread of its own samples the heap
  (the soak's machinery, weighed live, as ``reftrace attach`` does), and
  when a holder grows, one more interval runs under ``watch()`` to trace
  what it gained. The workers' reports come back as JSON and merge into one
  :class:`~reftrace.cluster.ClusterReport`: one finding per holder, with the
  workers it grows on.
- :class:`LeakWatch`, a worker plugin, samples the heap every ``every``
  tasks of the prefixes it watches, within a share of the worker's time
  (``budget``), and sends each round's verdict to the scheduler;
  :func:`findings` merges what the workers sent so far.

Neither forks, both put the collector's settings back, and neither leaves a
reftrace object on a worker when it is done (the survey's thread ends with
it; the plugin's ends at ``teardown``). A worker that cannot be measured
(reftrace not installed there, an error) is reported with its reason, as
is one that leaves or joins during a survey; the others' findings stand.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import sys
import threading
import time
import types
import uuid
from array import array
from collections import deque
from collections.abc import Iterable
from typing import Any

try:
    import distributed
    from dask.utils import key_split
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "reftrace.dask needs Dask's distributed scheduler: pip install 'reftrace[dask]'"
    ) from error

from reftrace.cluster import ClusterReport, RateUnit, WorkerOutcome, merge
from reftrace.memory import gc_settings_kept
from reftrace.soak import soak_over_time, timed_waits
from reftrace.soak_report import SoakReport

__all__ = ["LeakWatch", "findings", "survey"]

#: The fewest samples a live verdict is weighed on (as for ``reftrace attach``).
MIN_SAMPLES = 6
#: A survey's samples when no interval is given.
DEFAULT_SAMPLES = 30
#: The topic the plugin's rounds are sent to the scheduler under.
TOPIC = "reftrace-leakwatch"
#: On a worker, the surveys it runs now, by id: set to stop one early.
_STOPS: dict[str, threading.Event] = {}


class SurveyStopped(Exception):
    """A worker's survey was stopped from the client (interrupted there)."""


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return float(value)


def _check_client(client: object, what: str) -> distributed.Client:
    if not isinstance(client, distributed.Client):
        raise TypeError(f"{what} needs a distributed.Client, got {type(client).__name__}")
    if client.asynchronous:
        raise TypeError(f"{what} needs a synchronous Client (asynchronous=False)")
    if client.status != "running":
        raise ValueError(f"{what} needs a connected Client; this one is {client.status}")
    return client


def _worker_addresses(client: distributed.Client) -> list[str]:
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


# -- the survey ------------------------------------------------------------------------


def survey(
    client: distributed.Client,
    duration: float = 60.0,
    *,
    interval: float | None = None,
    workers: Iterable[str] | None = None,
) -> ClusterReport:
    """Measure every worker (or ``workers``) for ``duration`` seconds; one report.

    Each worker samples its heap every ``interval`` seconds (default:
    ``duration / 30``) in a thread of its own, while it goes on running
    tasks: the cluster's own load is what grows. At least 6 samples are
    needed; under 23, what grows is at most inconclusive, never leaking (a
    live run is never extended), and the default is 30.
    Workers that grow the same holder give one finding, with each worker's
    rate in items per second. A survey takes ``duration`` plus one more
    interval when something grows. Interrupted (Ctrl-C, a notebook's
    interrupt), it stops every worker's measurement at its next wait, then
    lets the ``KeyboardInterrupt`` go on.

    Raises ``TypeError`` or ``ValueError`` for a client that is not a
    connected, synchronous ``distributed.Client``, a duration or interval
    that is not positive, too few samples, or ``workers`` not in the
    cluster. A worker that fails is reported as failed, with its reason.

    >>> report = reftrace.dask.survey(client, duration=60)  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
    """
    duration = _positive("duration", duration)
    interval = duration / DEFAULT_SAMPLES if interval is None else _positive("interval", interval)
    samples = int(duration / interval + 1e-9)
    if samples < MIN_SAMPLES:
        raise ValueError(
            f"{duration:g} s at one sample every {interval:g} s is {samples} samples; "
            f"a verdict needs at least {MIN_SAMPLES} (a longer duration or a shorter interval)"
        )
    client = _check_client(client, "survey()")
    present = _worker_addresses(client)
    if workers is None:
        targets = present
    else:
        if isinstance(workers, str):
            raise TypeError("workers must be a list of worker addresses, not one string")
        targets = sorted(set(workers))
        unknown = [address for address in targets if address not in present]
        if unknown:
            raise ValueError(f"not workers of this cluster: {', '.join(unknown)}")
    if not targets:
        raise ValueError("the cluster has no workers to survey")
    # Whether each worker can import reftrace, asked with a builtin (which
    # unpickles anywhere): a worker that cannot unpickle the survey's own
    # function may answer with a closed connection instead of the ImportError.
    imports = client.run(exec, "import reftrace.dask", workers=targets, on_error="return")
    ready = [address for address in targets if imports.get(address, "") is None]
    survey_id = uuid.uuid4().hex
    try:
        results = (
            client.run(
                _survey_worker, samples, interval, survey_id, workers=ready, on_error="return"
            )
            if ready
            else {}
        )
    except KeyboardInterrupt:
        # Interrupted here (Ctrl-C, or a notebook's interrupt): the workers
        # would go on measuring, and pausing their tasks, to the end.
        client.run(_stop_survey, survey_id, workers=ready, on_error="return")
        raise
    after = set(_worker_addresses(client))
    outcomes = []
    for address in targets:
        result = results.get(address, imports.get(address))
        if isinstance(result, dict) and "report" in result:
            outcomes.append(_outcome(address, result, float(result["per_sample"])))
        elif isinstance(result, dict):
            outcomes.append(WorkerOutcome(address, "failed", error="stopped before the end"))
        elif address not in after:
            outcomes.append(WorkerOutcome(address, "left", error="left the cluster during the run"))
        else:
            outcomes.append(WorkerOutcome(address, "failed", error=_failure(result)))
    for address in sorted(after - set(present)):
        outcomes.append(WorkerOutcome(address, "joined", error="joined the cluster during the run"))
    notes = _notes(outcomes)
    return ClusterReport(
        kind="survey",
        findings=merge(outcomes, unit="second"),
        workers=outcomes,
        duration=duration,
        interval=interval,
        notes=notes,
    )


#: ``Exception: ModuleNotFoundError("No module named 'reftrace'")``
_WRAPPED = re.compile(r"Exception: (\w+)\((['\"])(.*)\2\)", re.S)


def _failure(result: object) -> str:
    """One line for a worker's exception (``reftrace`` missing there, said plainly)."""
    if result is None:
        return "gave no result"
    text = f"{type(result).__name__}: {result}"
    # The scheduler hands a worker's exception back wrapped in an Exception
    # whose text is the repr of the original: unwrap it.
    inner = _WRAPPED.fullmatch(text)
    if inner is not None:
        text = f"{inner.group(1)}: {inner.group(3)}"
    if "No module named 'reftrace" in text or ("ImportError" in text and "reftrace" in text):
        return f"reftrace cannot be imported on this worker: {text}"
    return text


def _outcome(address: str, result: dict[str, Any], per_sample: float) -> WorkerOutcome:
    return WorkerOutcome(
        address,
        "measured",
        report=SoakReport.from_dict(json.loads(result["report"]), source=f"worker {address}"),
        pid=int(result["pid"]),
        seconds=float(result["seconds"]),
        longest_pause=float(result["longest_pause"]),
        per_sample=per_sample,
    )


def _notes(outcomes: list[WorkerOutcome]) -> list[str]:
    notes = []
    for status, says in (
        ("failed", "could not be measured"),
        ("left", "left during the run"),
        ("joined", "joined during the run, not measured"),
    ):
        n = sum(1 for outcome in outcomes if outcome.status == status)
        if n:
            notes.append(f"{n} worker{'s' if n != 1 else ''} {says}")
    return notes


async def _survey_worker(
    samples: int, interval: float, survey_id: str, dask_worker: distributed.Worker | None = None
) -> dict[str, Any]:
    """On a worker (through ``Client.run``): the measurement, in a thread of its own.

    The worker's event loop only awaits the thread, so it goes on serving
    the scheduler and running tasks meanwhile. :func:`_stop_survey` with the
    same ``survey_id`` ends it at its next wait.
    """
    stop = _STOPS[survey_id] = threading.Event()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[dict[str, Any]] = loop.create_future()

    def settle(result: dict[str, Any] | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            assert result is not None
            done.set_result(result)

    def work() -> None:
        try:
            result = _measure(samples, interval, dask_worker, stop)
        except SurveyStopped:
            loop.call_soon_threadsafe(settle, {"stopped": True}, None)
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, _without_frames(exc))
        else:
            loop.call_soon_threadsafe(settle, result, None)
        finally:
            _STOPS.pop(survey_id, None)

    threading.Thread(target=work, name="reftrace-survey", daemon=True).start()
    return await done


def _without_frames(error: BaseException) -> BaseException:
    """``error`` and the exceptions it chains, without their tracebacks: Dask
    keeps a failed call's error a while, and the frames of a failed survey
    would keep its objects alive on the worker."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
    return error


def _stop_survey(survey_id: str) -> bool:
    """On a worker: ends the survey ``survey_id`` at its next wait (True if it runs)."""
    stop = _STOPS.get(survey_id)
    if stop is not None:
        stop.set()
    return stop is not None


def _measure(
    samples: int, interval: float, worker: distributed.Worker | None, stop: threading.Event
) -> dict[str, Any]:
    """``samples`` samples, ``interval`` seconds apart: the soak report, as JSON.

    Raises :class:`SurveyStopped` at the first wait after ``stop`` is set.
    """
    pauses = array("d", [0.0, 0.0])
    # when the first and the last wait ended, and how many ended
    ends = array("d", [0.0, 0.0, 0.0])

    def wait() -> None:
        if stop.wait(interval):
            raise SurveyStopped("the survey was stopped from the client")
        ends[1] = time.perf_counter()
        if not ends[2]:
            ends[0] = ends[1]
        ends[2] += 1

    started = time.perf_counter()
    with gc_settings_kept():
        sr = soak_over_time(
            timed_waits(wait, pauses), samples, kept_by_design=dask_bookkeeping(worker)
        )
    # A sample stands for the interval and the measuring after it: the
    # rates are per second of the real time between samples.
    per_sample = (ends[1] - ends[0]) / (ends[2] - 1) if ends[2] > 1 else interval
    return {
        "report": sr.to_json(),
        "pid": os.getpid(),
        "seconds": time.perf_counter() - started,
        "longest_pause": pauses[0],
        "per_sample": per_sample,
    }


#: How deep :func:`dask_bookkeeping` looks into a worker's own objects.
_BOOKKEEPING_DEPTH = 4


def dask_bookkeeping(worker: distributed.Worker | None) -> dict[int, str]:
    """The containers a Dask worker keeps its tasks and their results in.

    The worker's state machine (``worker.state``: tasks, their dependencies,
    what is ready or executing) and its memory manager (``worker.data``:
    the results the scheduler has not released yet, which Dask reports as
    *managed* memory) grow and shrink with the work in flight; when the
    cluster is busier than it can drain, they grow at every sample for a
    while. Dask's collection timer (``distributed.gc``) records every full
    collection, the survey's own among them, in deques it trims at 30. Its
    metrics (``worker.digests_total`` and the like) are cumulative by design
    and gain keys with every new computation.
    They are kept by design, so a survey shows their growth as declared and
    never calls it a leak. Found by following the worker's attributes
    (objects of ``distributed`` and ``zict`` only, never the tasks' own
    data) to a depth of ``_BOOKKEEPING_DEPTH``; maps each container's id to
    its name (``worker.state.tasks``).
    """
    if worker is None:
        return {}
    found: dict[int, str] = {}
    seen: set[int] = set()
    gc_diagnosis = getattr(sys.modules.get("distributed.gc"), "_gc_diagnosis", None)
    stack: list[tuple[object, str, int]] = [
        (getattr(worker, "state", None), "worker.state", 0),
        (getattr(worker, "memory_manager", None), "worker.memory_manager", 0),
        (getattr(worker, "data", None), "worker.data", 0),
        (gc_diagnosis, "distributed.gc._gc_diagnosis", 0),
    ]
    for name in ("digests", "digests_total", "digests_total_since_heartbeat", "digests_max"):
        stack.append((getattr(worker, name, None), f"worker.{name}", 0))
    while stack:
        obj, name, depth = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (dict, list, set, deque)):
            found.setdefault(id(obj), f"Dask's own bookkeeping ({name})")
            continue
        module = type(obj).__module__ or ""
        if depth >= _BOOKKEEPING_DEPTH or not module.startswith(("distributed", "zict")):
            continue
        attributes = getattr(obj, "__dict__", None)
        if isinstance(attributes, dict):
            for attr, value in dict.copy(attributes).items():
                stack.append((value, f"{name}.{attr}", depth + 1))
        for klass in type(obj).__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for attr in [slots] if isinstance(slots, str) else slots:
                descriptor = klass.__dict__.get(attr)
                if isinstance(descriptor, types.MemberDescriptorType):
                    try:
                        value = descriptor.__get__(obj, klass)
                    except AttributeError:
                        continue
                    stack.append((value, f"{name}.{attr}", depth + 1))
    return found


# -- the worker plugin -----------------------------------------------------------------


class _Stopped(Exception):
    """The plugin is being torn down."""


class LeakWatch(WorkerPlugin):
    """A worker plugin that watches what tasks leave on the worker's heap.

    ``client.register_plugin(reftrace.dask.LeakWatch("load-partition"))``.
    On every worker, a thread of its own (``reftrace-leakwatch``) samples the
    heap after every ``every`` tasks whose prefix (``key_split``) is in
    ``prefixes`` (all tasks for None), and weighs each round of ``samples``
    samples live, as ``reftrace attach`` does. Each round's verdict (with the
    holders when it leaks) is sent to the scheduler; :func:`findings` merges
    them.

    The cost is bounded twice: a task only counts (one comparison and an
    addition in the worker's transition hook; never a measurement), and a
    sample waits, after ``every`` tasks, until the time since the last one
    is at least the last sample's cost divided by ``budget`` (default 0.01:
    at most about 1% of the worker's time goes to sampling).
    """

    name = "reftrace-leakwatch"
    #: seconds before the next round after a round that failed
    _ERROR_PAUSE = 10.0

    def __init__(
        self,
        prefixes: str | Iterable[str] | None = None,
        *,
        every: int = 1000,
        budget: float = 0.01,
        samples: int = DEFAULT_SAMPLES,
    ) -> None:
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        if prefixes is not None:
            prefixes = list(prefixes)
            if not prefixes or not all(isinstance(p, str) and p for p in prefixes):
                raise TypeError("prefixes must be a task prefix, a list of them, or None")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive number of tasks, got {every!r}")
        budget = _positive("budget", budget)
        if budget > 1:
            raise ValueError(f"budget is a share of the worker's time, at most 1, got {budget}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < MIN_SAMPLES:
            raise ValueError(f"samples must be an int of at least {MIN_SAMPLES}, got {samples!r}")
        #: tells this watch's rounds from an earlier one's at the scheduler
        self.id = uuid.uuid4().hex
        self.prefixes = None if prefixes is None else frozenset(prefixes)
        self.every = every
        self.budget = budget
        self.samples = samples

    # Called on each worker, in the worker's event loop thread.

    def setup(self, worker: distributed.Worker) -> None:
        """Start the sampling thread on ``worker``."""
        self._worker = worker
        self._tasks = array("q", [0])  # tasks counted; an array: no int objects churn
        self._due = self.every
        self._resumed = array("d", [0.0])  # when the last wait ended
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reftrace-leakwatch", daemon=True)
        self._thread.start()

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        """Count a finished task of the watched prefixes; wake the sampler when due."""
        if start != "executing" or finish not in ("memory", "error"):
            return
        if self.prefixes is not None and key_split(key) not in self.prefixes:
            return
        self._tasks[0] += 1
        if self._tasks[0] >= self._due:
            self._wake.set()

    def teardown(self, worker: distributed.Worker) -> None:
        """Stop the sampling thread and wait for it (a round in progress is dropped)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)

    # The sampling thread.

    def _wait(self, pauses: array[float], tasks: array[int]) -> None:
        """Until ``every`` more tasks ran and the budget allows the next sample.

        The cost is all the sampler did since the last wait ended: a sample,
        or the end of a round (its leak traces, its report) and the first
        sample of the next.
        """
        now = time.perf_counter()
        cost = now - self._resumed[0] if self._resumed[0] else 0.0
        earliest = time.monotonic() + cost / self.budget - cost
        self._due = self._tasks[0] + self.every
        self._wake.clear()
        while True:
            if self._stop.is_set():
                raise _Stopped
            if self._tasks[0] < self._due:
                self._wake.wait(1.0)  # set by the task that makes the count
            elif (left := earliest - time.monotonic()) > 0:
                self._stop.wait(left)  # the count is made: only the budget's time is left
            else:
                break
        tasks[1] += 1
        if tasks[1] == 1:
            tasks[0] = self._tasks[0]
        tasks[2] = self._tasks[0]
        self._resumed[0] = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            pauses = array("d", [0.0, 0.0])
            tasks = array("q", [0, 0, 0])  # count at the first sample, samples, count now
            started = time.perf_counter()
            message: dict[str, Any] = {
                "worker": self._worker.address,
                "watch": self.id,
                "pid": os.getpid(),
            }
            try:
                with gc_settings_kept():
                    sr = soak_over_time(
                        timed_waits(functools.partial(self._wait, pauses, tasks), pauses),
                        self.samples,
                        kept_by_design=dask_bookkeeping(self._worker),
                    )
            except _Stopped:
                return
            except Exception as exc:
                # One round failed (the program changed under it, say): said
                # at the scheduler, and the next round starts after a pause.
                message["error"] = f"{type(exc).__name__}: {exc}"
                del exc
                self._worker.log_event(TOPIC, message)
                if self._stop.wait(self._ERROR_PAUSE):
                    return
                continue
            message.update(
                report=sr.to_json(),
                seconds=time.perf_counter() - started,
                longest_pause=pauses[0],
                per_sample=(tasks[2] - tasks[0]) / max(1, tasks[1] - 1),
                tasks=int(tasks[2]),
            )
            del sr
            self._worker.log_event(TOPIC, message)


def _watch_id(dask_worker: distributed.Worker) -> str:
    """On a worker: the id of the ``LeakWatch`` registered there, or ``""``."""
    plugin = dask_worker.plugins.get(LeakWatch.name)
    return plugin.id if isinstance(plugin, LeakWatch) else ""


def findings(client: distributed.Client) -> ClusterReport:
    """What the ``LeakWatch`` plugin found so far: each worker's last round, merged.

    Only the rounds of the ``LeakWatch`` registered now count (one
    registered before it left its rounds at the scheduler; with none
    registered, the last one's). Rates are in items per task. A worker that has not finished
    a round yet is not listed; the report's notes say how many rounds were
    read.
    """
    client = _check_client(client, "findings()")
    messages = [
        message
        for _, message in client.get_events(TOPIC)
        if isinstance(message, dict) and isinstance(message.get("worker"), str)
    ]
    running = {i for i in client.run(_watch_id, on_error="return").values() if isinstance(i, str)}
    running.discard("")
    newest = messages[-1].get("watch") if messages else None
    wanted: set[object] = set(running) or {newest}
    latest: dict[str, dict[str, Any]] = {}
    rounds = 0
    for message in messages:
        if message.get("watch") in wanted:
            latest[message["worker"]] = message
            rounds += 1
    outcomes = []
    for address in sorted(latest):
        message = latest[address]
        if "error" in message:
            outcomes.append(WorkerOutcome(address, "failed", error=str(message["error"])))
        else:
            outcomes.append(_outcome(address, message, float(message["per_sample"]) or 1.0))
    unit: RateUnit = "task"
    notes = [f"{rounds} round{'s' if rounds != 1 else ''} read from {len(latest)} workers"]
    return ClusterReport(
        kind="watch",
        findings=merge(outcomes, unit=unit),
        workers=outcomes,
        notes=notes,
    )
