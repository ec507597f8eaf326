"""A soak report sent as JSON reads back the same, and bad data is refused by field."""

from __future__ import annotations

import collections
import copy
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

import reftrace
from reftrace.bounds import Bound
from reftrace.model import Path
from reftrace.report import Report, ReportFormatError
from reftrace.soak_report import SoakReport, loads
from reftrace.verdict import Weighing, explain

# Module globals the lifecycles below keep things in, as a service would.
HANDLED: list[list[str]] = []
RECENT: collections.deque[list[int]] = collections.deque(maxlen=10_000)


@pytest.fixture(autouse=True)
def _empty_globals():
    yield
    HANDLED.clear()
    RECENT.clear()


def handle_request() -> None:
    """Leaks: every call keeps its chunks in a module list."""
    HANDLED.append([f"chunk {i} of request" for i in range(20)])


def remember_recent() -> None:
    """Grows a deque with a maxlen: bounded, filling over a short soak."""
    RECENT.append([1, 2, 3])


def compute() -> None:
    """Keeps nothing."""
    sum(len(str(i)) for i in range(50))


@pytest.fixture(scope="module")
def leaking() -> SoakReport:
    sr = reftrace.soak(handle_request, iterations=30)
    HANDLED.clear()
    assert sr.leaking and sr.containers and sr.sample is not None
    return sr


def read_back(sr: SoakReport) -> SoakReport:
    return loads(sr.to_json(), source="test")


def assert_same(back: SoakReport, sr: SoakReport) -> None:
    assert str(back) == str(sr)
    assert reftrace.views.text(back) == reftrace.views.text(sr)
    assert reftrace.views.html(back) == reftrace.views.html(sr)
    assert back.to_dict() == sr.to_dict()
    assert back.to_json() == sr.to_json()


def test_a_leaking_soak_reads_back_with_the_same_text_and_data(leaking: SoakReport) -> None:
    back = read_back(leaking)

    assert_same(back, leaking)
    assert back == leaking
    [container] = back.containers
    assert isinstance(container.path, Path)
    assert container.name == f"{__name__}.HANDLED"
    assert container.status == "unbounded" and container.holder
    assert container.samples and container.samples[0].path is not None
    assert container.stored_at is not None
    assert isinstance(back.sample, Report) and back.sample.leaks
    assert back.objects_trend == leaking.objects_trend
    assert back.projection() == leaking.projection()
    assert back.unit == "call"


def test_a_soak_that_keeps_nothing_reads_back_the_same() -> None:
    sr = reftrace.soak(compute, iterations=30)
    assert sr.verdict == "not leaking"

    back = read_back(sr)

    assert_same(back, sr)
    assert back == sr
    assert back.sample is None and back.containers == []


def test_a_bounded_container_reads_back_with_its_bound() -> None:
    sr = reftrace.soak(remember_recent, iterations=30)
    everything = [*sr.containers, *sr.stopped]
    assert any(c.bound is not None for c in everything), str(sr)

    back = read_back(sr)

    assert_same(back, sr)
    bounds = [c.bound for c in [*back.containers, *back.stopped] if c.bound is not None]
    assert bounds and all(isinstance(b, Bound) for b in bounds)
    assert bounds[0].kind == "maxlen" and bounds[0].limit == 10_000
    assert [c.status for c in back.containers] == [c.status for c in sr.containers]


def weighing_of(sr: SoakReport, **changes: Any) -> Weighing:
    """The evidence a soak report was explained from, as far as it keeps it."""
    w = Weighing(
        objects=sr.objects_trend,
        blocks=sr.blocks_trend,
        malloc=sr.malloc_trend,
        malloc_growth=False,
        buffers=False,
        buffer_rate=0.0,
        statuses={id(c): c.status for c in sr.containers},
        intervals=max((len(c.lengths) - 1 for c in sr.containers), default=0),
        measured=sr.iterations - sr.warmup,
        regular=True,
        stage_rates=None,
        verdict=sr.verdict,
        confidence=sr.confidence,
    )
    return replace(w, **changes)


def test_explain_names_the_unit_it_is_given(leaking: SoakReport) -> None:
    w = weighing_of(leaking)
    by_call = explain(w, leaking.containers, leaking.stopped, leaking.iterations)
    assert by_call == leaking.reason  # the same evidence, explained the same way
    assert "per call" in by_call

    by_sample = explain(w, leaking.containers, leaking.stopped, leaking.iterations, unit="sample")

    assert by_sample == by_call.replace("call", "sample")
    assert "call" not in by_sample

    unsure = weighing_of(leaking, verdict="inconclusive", confidence="low")
    unsure.weak_because = "unconfirmed"
    text = explain(unsure, leaking.containers, [], leaking.iterations, unit="sample")
    assert "varies from sample to sample" in text
    assert f"the run ended after {leaking.iterations} samples" in text
    assert "call" not in text


def test_a_report_of_samples_never_speaks_of_calls(leaking: SoakReport) -> None:
    reason = explain(
        weighing_of(leaking), leaking.containers, leaking.stopped, leaking.iterations, unit="sample"
    )
    notes = [n for n in leaking.notes if "call" not in n]
    sr = replace(leaking, unit="sample", reason=reason, notes=notes)

    text = str(sr)

    assert "30 samples (6 warm-up)" in text
    assert "growth per sample, by type:" in text
    assert "items per sample (" in text and "after sample 6," in text
    assert "measuring per sample" in text
    assert "projection at the measured rate" in text and "per sample):" in text
    page = reftrace.views.html(sr)
    for shown in (text, page):
        assert "per call" not in shown
        assert "calls" not in shown
        assert "iteration" not in shown
    assert "Growth per sample, by type" in page
    # the unit travels with the report
    back = read_back(sr)
    assert back.unit == "sample" and back.to_dict()["unit"] == "sample"
    assert str(back) == text


def test_a_report_of_calls_keeps_its_words(leaking: SoakReport) -> None:
    text = str(leaking)

    assert "30 iterations (6 warm-up)" in text
    assert " per call, " in text and "measuring per iteration" in text
    assert "growth per iteration, by type:" in text
    assert "items per iteration (" in text and "after iteration 6," in text
    assert "gained in one more call:" in text


def _set(path: list[str | int], value: object) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _drop(path: list[str | int]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


BAD = {
    "unknown verdict": (_set(["verdict"], "leaky"), "verdict"),
    "unknown confidence": (_set(["confidence"], "certain"), "confidence"),
    "missing trend": (_drop(["objects_trend"]), "objects_trend"),
    "missing trend field": (_drop(["blocks_trend", "window"]), "blocks_trend.window"),
    "iterations as text": (_set(["iterations"], "30"), "iterations"),
    "a count that is a bool": (_set(["requested"], True), "requested"),
    "a negative count": (_set(["objects", 3], -1), "objects[3]"),
    "blocks of another length": (_set(["blocks"], [1, 2]), "blocks"),
    "warm-up past the end": (_set(["warmup"], 31), "warmup"),
    "rate as text": (_set(["bytes_per_iteration"], "1 KB"), "bytes_per_iteration"),
    "unknown status": (_set(["containers", 0, "status"], "leaky"), "containers[0].status"),
    "unknown item unit": (_set(["containers", 0, "unit"], "objects"), "containers[0].unit"),
    "missing lengths": (_drop(["containers", 0, "lengths"]), "containers[0].lengths"),
    "no lengths": (_set(["containers", 0, "lengths"], []), "containers[0].lengths"),
    "bad bound": (
        _set(["containers", 0, "bound"], {"kind": "huge", "limit": 1, "owner": "x"}),
        "containers[0].bound.kind",
    ),
    "bad path step": (
        _set(["containers", 0, "path", "steps", 0, "status"], "ancient"),
        "containers[0].path.steps[0].status",
    ),
    "bad sample leak": (
        _set(["containers", 0, "samples", 0, "size"], "big"),
        "containers[0].samples[0].size",
    ),
    "bad type row": (_set(["types", 0, "tracked"], "yes"), "types[0].tracked"),
    "bad nested report": (_set(["sample", "leaks", 0, "type"], 3), "sample.leaks[0].type"),
    "bad note": (_set(["notes"], [1]), "notes[0]"),
    "bad timing": (_set(["timings", "total"], None), "timings['total']"),
    "unit with markup": (_set(["unit"], "<b>sample</b>"), "unit"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_is_refused_naming_the_field(leaking: SoakReport, case: str) -> None:
    change, field = BAD[case]
    data = copy.deepcopy(leaking.to_dict())
    SoakReport.from_dict(copy.deepcopy(data))  # valid before the change
    change(data)

    with pytest.raises(ReportFormatError) as raised:
        SoakReport.from_dict(data, source="sent.json")

    assert raised.value.field == field
    assert raised.value.source == "sent.json"
    assert field in str(raised.value)


def test_text_that_is_not_a_soak_report_is_refused() -> None:
    with pytest.raises(ReportFormatError) as raised:
        loads("{not json", source="pipe")
    assert raised.value.source == "pipe" and "not valid JSON" in str(raised.value)

    with pytest.raises(ReportFormatError) as raised:
        loads(json.dumps([1, 2, 3]))
    assert "expected an object" in str(raised.value)

    with pytest.raises(ReportFormatError) as raised:
        loads(b"\xff\xfe")
    assert "not UTF-8" in str(raised.value)


def test_malloc_below_its_first_reading_reads_back(leaking: SoakReport) -> None:
    # malloc is read less what the soak itself keeps: a program that frees
    # more than that (or an attach to a busy process) gives negative readings.
    data = leaking.to_dict()
    data["malloc"] = [-3_721_616 + i for i in range(len(data["objects"]))]
    back = SoakReport.from_dict(data)
    assert back.malloc == data["malloc"]
