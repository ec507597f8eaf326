"""reftrace.cluster: many workers' soak reports merged by holder, and read back from JSON.

No cluster here: the workers' reports are real soaks of this process, given
worker addresses, so merging and the report's verdict are checked alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import reftrace
from reftrace.cluster import ClusterReport, WorkerOutcome, holder_signature, loads, merge
from reftrace.report import ReportFormatError

RUNS: dict[str, list[dict[str, int]]] = {}


@pytest.fixture(autouse=True)
def _empty() -> None:
    RUNS.clear()


def _leaking_in(key: str) -> reftrace.SoakReport:
    RUNS[key] = []
    sr = reftrace.soak(lambda: RUNS[key].append({"n": 1}), iterations=30)
    assert sr.verdict == "leaking", sr
    return sr


def _clean() -> reftrace.SoakReport:
    return reftrace.soak(lambda: [{"n": 1}], iterations=30)


def test_one_holder_seen_through_different_keys_is_one_finding() -> None:
    a1, b7 = _leaking_in("a1"), _leaking_in("b7")
    assert a1.holders[0].name != b7.holders[0].name
    outcomes = [
        WorkerOutcome("tcp://w1:1", "measured", report=a1, per_sample=0.5),
        WorkerOutcome("tcp://w2:1", "measured", report=b7, per_sample=0.5),
        WorkerOutcome("tcp://w3:1", "measured", report=_clean(), per_sample=0.5),
    ]
    (finding,) = merge(outcomes)
    assert finding.holder == f"{__name__}.RUNS[…]"
    assert finding.workers == ["tcp://w1:1", "tcp://w2:1"]
    # per sample / seconds per sample: items per second
    assert finding.rates["tcp://w1:1"] == pytest.approx(a1.holders[0].per_iteration / 0.5)
    assert finding.total == pytest.approx(sum(finding.rates.values()))
    report = ClusterReport("survey", [finding], outcomes, duration=15, interval=0.5)
    assert report.verdict == "leaking" and bool(report)
    text = str(report)
    assert "RUNS[…] (list)" in text and "on 2 of 3 workers" in text


def test_holder_signature_strips_keys_indices_and_addresses() -> None:
    sr = _leaking_in("a1")
    container = sr.holders[0]
    assert container.name == f"{__name__}.RUNS['a1']"
    assert holder_signature(container) == f"{__name__}.RUNS[…]"


def test_the_verdict_says_inconclusive_when_a_worker_could_not_say() -> None:
    clean = WorkerOutcome("tcp://w1:1", "measured", report=_clean())
    assert ClusterReport("survey", [], [clean]).verdict == "not leaking"
    failed = WorkerOutcome("tcp://w2:1", "failed", error="reftrace cannot be imported")
    assert ClusterReport("survey", [], [clean, failed]).verdict == "inconclusive"
    assert ClusterReport("survey", [], [failed]).verdict == "inconclusive"
    left = WorkerOutcome("tcp://w3:1", "left", error="left the cluster during the run")
    assert ClusterReport("survey", [], [clean, left]).verdict == "not leaking"


def test_a_report_survives_json_and_a_bad_one_is_refused_by_field() -> None:
    sr = _leaking_in("a1")
    outcomes = [
        WorkerOutcome("tcp://w1:1", "measured", report=sr, pid=7, seconds=3.0, per_sample=20.0),
        WorkerOutcome("tcp://w2:1", "failed", error="ImportError: no reftrace"),
    ]
    report = ClusterReport("watch", merge(outcomes, unit="task"), outcomes, notes=["2 rounds"])
    again = loads(report.to_json())
    assert again.to_dict() == report.to_dict()
    assert str(again) == str(report)
    assert again.findings[0].unit == "task" and "items per task" in str(again)
    data = report.to_dict()
    data["workers"][1]["status"] = "lost"
    with pytest.raises(ReportFormatError, match="status"):
        loads(json.dumps(data))
    with pytest.raises(ReportFormatError, match="not a reftrace cluster report"):
        loads(json.dumps({"format": "something else"}))
    with pytest.raises(ReportFormatError, match="not valid JSON"):
        loads("{")
    data = report.to_dict()
    data["findings"][0]["rates"]["tcp://w1:1"] = "fast"
    with pytest.raises(ReportFormatError, match="rates"):
        loads(json.dumps(data))


def test_the_svg_is_written_with_the_holder_and_says_so_when_nothing_grew(tmp_path: Path) -> None:
    sr = _leaking_in("a1")
    outcomes = [WorkerOutcome("tcp://w1:1", "measured", report=sr)]
    report = ClusterReport("survey", merge(outcomes), outcomes, duration=6, interval=1)
    written = report.render(str(tmp_path / "c.svg"))
    assert written.endswith("c.svg")
    assert "RUNS" in (tmp_path / "c.svg").read_text()
    quiet = ClusterReport("survey", [], [WorkerOutcome("tcp://w1:1", "measured", report=_clean())])
    quiet.render(str(tmp_path / "q.svg"))
    assert "not leaking" in (tmp_path / "q.svg").read_text()
    with pytest.raises(ValueError):
        report.render(str(tmp_path / "c.png"))
