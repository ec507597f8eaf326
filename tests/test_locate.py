"""The storing line: reftrace.locate() (and soak) name the line that stored the
reference keeping a leak, with its callers; through a library call, the
program's own line that called it."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import reftrace
from reftrace.demo import agent as demo
from reftrace.report import StoreSite


class Output:
    def __init__(self) -> None:
        self.buffer = [f"chunk {i}" for i in range(20)]


class Holder:
    pass


class KeepHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


REGISTRY: list[Any] = []
BY_ID: dict[int, Any] = {}
HOLDER = Holder()
IDS = itertools.count()
LOGGER = logging.getLogger("reftrace-locate-test")


def _make_slot() -> tuple[Callable[[Any], None], Callable[[], Any]]:
    value: Any = None

    def put(new: Any) -> None:
        nonlocal value
        value = new  # the closure's cell now holds it

    def get() -> Any:
        return value

    return put, get


PUT, GET = _make_slot()


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    REGISTRY.clear()
    BY_ID.clear()
    HOLDER.__dict__.clear()
    PUT(None)
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
    demo.reset()


def stored(report: reftrace.Report) -> StoreSite:
    (group,) = report.leak_groups
    assert group.stored_at is not None, str(report)
    return group.stored_at


def append_to_list() -> Output:
    out = Output()
    REGISTRY.append(out)
    return out


def store_in_dict() -> Output:
    out = Output()
    BY_ID[next(IDS)] = out
    return out


def store_attribute() -> Output:
    out = Output()
    HOLDER.last = out
    return out


def capture_in_closure() -> Output:
    out = Output()
    PUT(out)
    return out


def register_with_library() -> KeepHandler:
    handler = KeepHandler()
    LOGGER.addHandler(handler)
    return handler


@pytest.mark.parametrize(
    ("fn", "code"),
    [
        (append_to_list, "REGISTRY.append(out)"),
        (store_in_dict, "BY_ID[next(IDS)] = out"),
        (store_attribute, "HOLDER.last = out"),
    ],
    ids=["list append", "dict store", "attribute store"],
)
def test_the_line_that_stored_it(fn: Callable[[], Any], code: str) -> None:
    site = stored(reftrace.locate(fn))
    assert site.user == 0
    assert site.line.code == code
    assert site.line.function == fn.__name__
    assert site.line.filename.endswith("test_locate.py")
    assert len(site.frames) == 1  # the stack ends at the function located


def test_a_closure_capture_names_the_assignment_and_its_caller() -> None:
    site = stored(reftrace.locate(capture_in_closure))
    assert site.line.code == "value = new  # the closure's cell now holds it"
    assert site.line.function == "put"
    assert [frame.code for frame in site.frames[1:]] == ["PUT(out)"]


def test_through_a_library_call_the_programs_line_is_named() -> None:
    report = reftrace.locate(register_with_library)
    site = stored(report)
    assert site.user > 0, site
    assert site.line.code == "LOGGER.addHandler(handler)"
    assert site.line.function == "register_with_library"
    inner = site.frames[0]
    assert inner.filename.endswith("logging/__init__.py") and inner.function == "addHandler"
    text = str(report)
    assert "stored by " in text and "LOGGER.addHandler(handler)" in text
    assert "  inside " in text and "in addHandler" in text


def test_the_seed_listener_names_the_registration() -> None:
    demo.install(demo.Bug.LISTENER)

    def handle() -> Any:
        out = demo.AGENT.stream("hi")
        for _chunk in out:
            pass
        return out

    report = reftrace.locate(handle)
    site = stored(report)
    assert site.line.function == "on"
    assert site.line.code == "self._listeners.setdefault(event, []).append(fn)"
    registration = site.frames[1]
    assert registration.function == "_open"
    assert registration.code == 'self.events.on("chunk", output._on_chunk)'
    assert site.frames[-1].code == 'out = demo.AGENT.stream("hi")'
    text = str(report)
    assert "called from reftrace/demo/agent.py" in text or "called from " in text
    assert 'self.events.on("chunk", output._on_chunk)' in text


def test_survivor_groups_get_their_storing_line_too() -> None:
    def handle() -> None:
        REGISTRY.append({"session": [1, 2, 3]})

    report = reftrace.locate(handle)
    (group,) = [g for g in report.survivors if g.attachment.startswith("REGISTRY")]
    assert group.stored_at is not None
    assert group.stored_at.line.code == 'REGISTRY.append({"session": [1, 2, 3]})'
    assert "stored at " in str(group)


def test_coroutine_functions_are_located() -> None:
    async def handle() -> Output:
        await asyncio.sleep(0)
        out = Output()
        REGISTRY.append(out)
        return out

    site = stored(reftrace.locate(handle))
    assert site.line.code == "REGISTRY.append(out)"


def test_shown_in_the_svg_the_html_and_the_json(tmp_path: Path) -> None:
    report = reftrace.locate(append_to_list)
    svg = Path(report.render(tmp_path / "leak.svg")).read_text(encoding="utf-8")
    assert "stored at tests/test_locate.py:" in svg or "stored at " in svg
    assert "stored at " in report.to_html()
    data = json.loads(report.to_json())
    (site,) = data["stores"].values()
    assert site["frames"][0]["code"] == "REGISTRY.append(out)"
    again = reftrace.Report.from_dict(data)
    assert again.leak_groups[0].stored_at == report.leak_groups[0].stored_at
    del data["stores"]
    assert reftrace.Report.from_dict(data).stores == {}


def test_a_debuggers_trace_function_is_put_back() -> None:
    calls: list[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> None:
        calls.append(event)

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        reftrace.locate(append_to_list)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(previous)


def test_nothing_leaked_nothing_located_and_bad_input() -> None:
    report = reftrace.locate(Output)
    assert report.leaks == [] and report.stores == {}
    with pytest.raises(TypeError, match="locate\\(\\) needs a function to call, got int"):
        reftrace.locate(3)  # type: ignore[arg-type]


def test_soak_names_the_line_that_grew_the_container() -> None:
    demo.install(demo.Bug.LISTENER)

    def handle() -> None:
        for _chunk in demo.AGENT.stream("hi"):
            pass

    sr = reftrace.soak(handle, 16)
    assert sr.leaking
    (container,) = sr.containers
    assert container.stored_at is not None
    assert container.stored_at.frames[1].code == 'self.events.on("chunk", output._on_chunk)'
    assert "stored at reftrace/demo/agent.py" in str(sr) or "stored at " in str(sr)
    assert sr.to_dict()["containers"][0]["stored_at"]["frames"][0]["function"] == "on"
