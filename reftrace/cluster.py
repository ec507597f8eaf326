"""The result of measuring many processes at once: findings merged by signature.

``reftrace.dask.survey()`` measures every worker of a cluster over the same
stretch of time and ``reftrace.dask.findings()`` gathers what the
``LeakWatch`` plugin saw; both return a :class:`ClusterReport`. Each worker
gives its own soak report (the soak's machinery, weighed live); a growing
container that one worker calls a holder is one finding, and the same
holder on other workers joins it. The signature is where the holder is
(its path from a root, with keys and indices left out, so ``RUNS['a1']``
and ``RUNS['b7']`` are one holder) and its type. What each worker traced of
it (the type of the items it gains, the suspect reference, the line that
stored) is shown where known: a worker that traced no item in its extra
interval still joins the finding of its holder.

Plain data, with no dependency on Dask: a report read back from JSON (see
:func:`loads`) is the same report.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from reftrace import views
from reftrace.report import Leak
from reftrace.soak_report import GrowingContainer, SoakReader, SoakReport, json_value

#: What happened to one worker in a survey or a watch.
WorkerStatus = Literal["measured", "failed", "left", "joined"]
#: What a finding's rates count per: a second (a survey) or a task (the plugin).
RateUnit = Literal["second", "task"]

_SUBSCRIPT = re.compile(r"\[[^\[\]]*\]")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def holder_signature(container: GrowingContainer) -> str:
    """Where ``container`` is, with keys, indices and addresses left out.

    ``app.RUNS['a1'].events`` and ``app.RUNS['b7'].events`` give the same
    ``app.RUNS[…].events``: one holder, seen through different keys.
    """
    name = container.name
    previous = None
    while previous != name:
        previous, name = name, _SUBSCRIPT.sub("[…]", name)
    return _ADDRESS.sub("0x…", name)


def _store_line(container: GrowingContainer) -> str:
    site = container.stored_at
    if site is None:
        return ""
    line = site.line
    return f"{line.filename}:{line.lineno} in {line.function}"


def _suspect(container: GrowingContainer) -> str:
    for leak in container.samples:
        step = leak.suspect
        if step is not None:
            return f"{step.code or step.label} ({step.type_name})"
    return ""


@dataclass
class WorkerOutcome:
    """One worker: what its own measurement said, or why it gave none.

    ``status`` is ``measured`` (``report`` holds its soak report),
    ``failed`` (``error`` says why: reftrace not installed there, an
    exception), ``left`` (it left the cluster during the run) or ``joined``
    (it joined during the run, so it was not measured).
    """

    address: str
    status: WorkerStatus
    error: str = ""
    report: SoakReport | None = None
    pid: int | None = None
    #: seconds the measurement took on the worker
    seconds: float = 0.0
    #: the longest one sample's measuring took (a full gc.collect, the census);
    #: the worker's own threads run between its steps, so they wait less
    longest_pause: float = 0.0
    #: what one sample stands for: seconds (a survey) or tasks (the plugin)
    per_sample: float = 1.0

    @property
    def verdict(self) -> str:
        """The worker's own verdict, or its status when it gave none."""
        return self.report.verdict if self.report is not None else self.status

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the soak report's strings masked as its own ``to_dict`` does)."""
        return {
            "address": self.address,
            "status": self.status,
            "error": self.error,
            "report": self.report.to_dict() if self.report is not None else None,
            "pid": self.pid,
            "seconds": self.seconds,
            "longest_pause": self.longest_pause,
            "per_sample": self.per_sample,
        }


@dataclass
class ClusterFinding:
    """One holder that keeps growing, and the workers it grows on.

    ``rates`` maps each worker's address to the items its holder gained per
    ``unit`` (a second in a survey, a task in a watch); ``total`` is their
    sum. ``container`` is one worker's view of it (its path, the items it
    gained and their traces), for the text and the graph.
    """

    holder: str
    type_name: str
    rates: dict[str, float]
    container: GrowingContainer
    unit: RateUnit = "second"
    item_types: list[tuple[str, int]] = field(default_factory=list)
    suspect: str = ""
    stored_at: str = ""

    @property
    def workers(self) -> list[str]:
        """The addresses of the workers it was seen on, in order."""
        return sorted(self.rates)

    @property
    def total(self) -> float:
        """Items gained per ``unit`` over all its workers."""
        return sum(self.rates.values())

    @property
    def sample(self) -> Leak | None:
        """One traced item the holder gained, with its path, where one was traced
        (one whose path shows the suspect reference first)."""
        samples = self.container.samples
        return next((leak for leak in samples if leak.suspect is not None), None) or (
            samples[0] if samples else None
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "holder": self.holder,
            "type": self.type_name,
            "rates": dict(self.rates),
            "unit": self.unit,
            "container": self.container.to_dict(),
            "item_types": [list(pair) for pair in self.item_types],
            "suspect": self.suspect,
            "stored_at": self.stored_at,
        }


@dataclass
class ClusterReport(views.Shown):
    """What many workers said over the same run, merged.

    ``kind`` is ``"survey"`` (``reftrace.dask.survey``: every worker sampled
    over ``duration`` seconds) or ``"watch"`` (``reftrace.dask.findings``:
    what the ``LeakWatch`` plugin has seen so far). ``findings`` are the
    holders, merged by signature, most items gained first; ``workers`` every
    worker with its own outcome.
    """

    kind: Literal["survey", "watch"]
    findings: list[ClusterFinding]
    workers: list[WorkerOutcome]
    duration: float = 0.0
    interval: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``leaking`` when a holder grew on some worker; ``inconclusive`` when
        no worker could say (or one could not be measured and none leaked);
        else ``not leaking``."""
        if self.findings:
            return "leaking"
        measured = [w for w in self.workers if w.report is not None]
        if not measured or any(w.report.inconclusive for w in measured if w.report):
            return "inconclusive"
        if any(w.status == "failed" for w in self.workers):
            return "inconclusive"
        return "not leaking"

    @property
    def leaking(self) -> bool:
        """True when some holder grew."""
        return bool(self.findings)

    def __bool__(self) -> bool:
        """True when something leaks, like ``SoakReport``."""
        return self.leaking

    def worker(self, address: str) -> WorkerOutcome:
        """The outcome of the worker at ``address`` (``KeyError`` when it was not in the run)."""
        for outcome in self.workers:
            if outcome.address == address:
                return outcome
        raise KeyError(address)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; read back with :func:`loads` or :meth:`from_dict`."""
        return {
            "format": "reftrace-cluster",
            "version": 1,
            "kind": self.kind,
            "verdict": self.verdict,
            "duration": self.duration,
            "interval": self.interval,
            "findings": [finding.to_dict() for finding in self.findings],
            "workers": [worker.to_dict() for worker in self.workers],
            "notes": list(self.notes),
        }

    def to_json(self, **kwargs: Any) -> str:
        """``to_dict()`` as JSON text (``kwargs`` go to ``json.dumps``)."""
        return json.dumps(self.to_dict(), **kwargs)

    def render(self, path: str, format: str | None = None) -> str:
        """Write the holders' retention graph to ``path`` (SVG); returns the path."""
        return views.write(self, path, format)

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<data>") -> ClusterReport:
        """The report ``to_dict()`` gave; ``ReportFormatError`` names a bad field."""
        return _ClusterReader(source).cluster(data)


def loads(text: str | bytes, *, source: str = "<string>") -> ClusterReport:
    """A cluster report from the JSON ``ClusterReport.to_json()`` wrote.

    Raises ``ReportFormatError`` naming ``source`` and the field when the
    text is not JSON or not a valid cluster report.
    """
    return ClusterReport.from_dict(json_value(text, source=source), source=source)


def merge(outcomes: Iterable[WorkerOutcome], *, unit: RateUnit = "second") -> list[ClusterFinding]:
    """The holders of every measured worker that leaks, merged by signature.

    A worker's rates are per sample; divided by its ``per_sample`` (the
    interval in seconds, or the tasks between two samples), a finding's
    rates are per ``unit``.
    """
    merged: dict[tuple[str, str], ClusterFinding] = {}
    types: dict[tuple[str, str], Counter[str]] = {}
    for outcome in outcomes:
        report = outcome.report
        if report is None or not report.leaking:
            continue
        for container in report.holders:
            key = (holder_signature(container), container.type_name)
            rate = container.per_iteration / (outcome.per_sample or 1.0)
            finding = merged.get(key)
            if finding is None:
                finding = merged[key] = ClusterFinding(
                    holder=key[0],
                    type_name=container.type_name,
                    rates={},
                    container=container,
                    unit=unit,
                )
                types[key] = Counter()
            finding.rates[outcome.address] = finding.rates.get(outcome.address, 0.0) + rate
            for name, count in container.item_types:
                types[key][name] += count
            if not finding.container.samples and container.samples:
                finding.container = container
            finding.suspect = finding.suspect or _suspect(container)
            finding.stored_at = finding.stored_at or _store_line(container)
    for key, finding in merged.items():
        finding.item_types = types[key].most_common()
    return sorted(merged.values(), key=lambda f: (-len(f.rates), -f.total, f.holder))


class _ClusterReader(SoakReader):
    def outcome(self, value: object, where: str) -> WorkerOutcome:
        data = self.obj(value, where)
        report = self.get(data, "report", where)
        return WorkerOutcome(
            address=self.str_(data, "address", where),
            status=self.choice(data, "status", where, WorkerStatus),
            error=self.str_(data, "error", where),
            report=None if report is None else self.soak_report(report),
            pid=self.opt_int(data, "pid", where),
            seconds=self.float_(data, "seconds", where),
            longest_pause=self.float_(data, "longest_pause", where),
            per_sample=self.float_(data, "per_sample", where),
        )

    def finding(self, value: object, where: str) -> ClusterFinding:
        data = self.obj(value, where)
        rates = self.dict_(data, "rates", where)
        return ClusterFinding(
            holder=self.str_(data, "holder", where),
            type_name=self.str_(data, "type", where),
            rates={
                str(address): self.float_(rates, address, self.at(where, "rates"))
                for address in rates
            },
            container=self.container(self.get(data, "container", where), where),
            unit=self.choice(data, "unit", where, RateUnit),
            item_types=[
                self.pair(pair, f"{self.at(where, 'item_types')}[{i}]")
                for i, pair in enumerate(self.list_(data, "item_types", where))
            ],
            suspect=self.str_(data, "suspect", where),
            stored_at=self.str_(data, "stored_at", where),
        )

    def cluster(self, value: object) -> ClusterReport:
        where = "the report"
        data = self.obj(value, where)
        if data.get("format") != "reftrace-cluster":
            self.fail(where, "is not a reftrace cluster report")
        return ClusterReport(
            kind=self.choice(data, "kind", where, Literal["survey", "watch"]),
            findings=[
                self.finding(f, f"findings[{i}]")
                for i, f in enumerate(self.list_(data, "findings", where))
            ],
            workers=[
                self.outcome(w, f"workers[{i}]")
                for i, w in enumerate(self.list_(data, "workers", where))
            ],
            duration=self.float_(data, "duration", where),
            interval=self.float_(data, "interval", where),
            notes=self.strs(data, "notes", where),
        )
