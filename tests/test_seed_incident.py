"""The seed incident, replayed with reftrace.

The seed's investigators replayed 101 chunks from a finished stream and could not
tell whether that buffer was a leak or kept by design.  With reftrace the question
is one block: an object that should be collectable after its lifecycle either is
(no leak, however much it buffered while alive), or the report names the chain of
references, from a root, that keeps it alive.

For each retention pattern of :mod:`reftrace.demo.agent` there is a test with the
bug (the leak is found, from the right root, through the right edges, with the
right suspect reference) and one without (no leak, although the output buffered
100+ chunks inside the block).  As the contract asks, a block ends with nothing of
its own still holding a tracked object: ``del out``, and ``del`` the loop variable,
which still holds the last chunk of a tracked stream.  ``test_ground_truth`` checks
the demo agent itself with plain weak references, so that a disagreement points at
reftrace, not at the demo.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import reftrace
from reftrace.demo import agent as demo
from reftrace.demo.agent import Bug

MODULE = "reftrace.demo.agent"


@pytest.fixture(autouse=True)
def _fresh_agent() -> Iterator[None]:
    demo.reset()
    yield
    demo.reset()


def install(bugs: Bug) -> None:
    """Replace ``demo.AGENT`` and serve one request, as a running service would have.

    The tests never keep the agent in a local variable: the only root that holds it
    is the module global ``AGENT``, which is therefore the root a leak trace must name.
    """
    demo.install(bugs)
    for _chunk in demo.AGENT.stream("warm-up", chunks=3):
        pass


def labels(leak: Any) -> list[str]:
    assert leak.path is not None, leak.reason
    return [step.label for step in leak.path.steps]


def statuses(leak: Any) -> list[str]:
    return [step.status for step in leak.path.steps]


def assert_module_root(leak: Any) -> None:
    assert leak.path is not None, leak.reason
    assert leak.path.root.kind == "module"
    assert leak.path.root.name == MODULE


def blamed_reference(leak: Any) -> tuple[str, str, tuple[str, ...]]:
    """The root and the steps up to the suspect: the reference a leak is blamed on."""
    assert leak.path is not None, leak.reason
    steps = leak.path.steps
    end = next((i for i, step in enumerate(steps) if step.is_suspect), len(steps) - 1)
    return leak.path.root.kind, leak.path.root.name, tuple(s.label for s in steps[: end + 1])


def single_leak(report: Any, type_name: str) -> Any:
    """The one leak of ``type_name``.

    Any other leak -- the chunks that ``track_stream`` tracked, kept alive by the
    leaked object -- must be blamed on the same reference: one bug, one culprit.
    """
    found = [leak for leak in report.leaks if leak.type_name == type_name]
    assert len(found) == 1, f"expected one {type_name} leak, got {len(found)}:\n{report}"
    [leak] = found
    blamed = blamed_reference(leak)
    for other in report.leaks:
        assert blamed_reference(other) == blamed, str(other)
    return leak


def assert_suspect(leak: Any, label: str, type_name: str) -> None:
    """The suspect is the one edge from the last old object to the first new one."""
    suspect = leak.suspect
    assert suspect is not None
    assert (suspect.label, suspect.type_name, suspect.is_suspect) == (label, type_name, True)
    assert [step.label for step in leak.path.steps if step.is_suspect] == [label]


# -- 1. listener never removed ------------------------------------------------------


def test_listener_never_removed_leaks_the_output_from_the_agent_global() -> None:
    install(Bug.LISTENER)
    index = demo.AGENT.events.listener_count("chunk")  # the warm-up's listener is [0]
    with reftrace.watch() as w:
        out = w.track(demo.AGENT.stream("hi"))
        for _chunk in w.track_stream(out):
            pass
        del _chunk  # the loop variable still holds the last chunk
        assert len(out.buffer) == 101
        del out
    report = w.report

    leak = single_leak(report, "ModelOutput")
    assert_module_root(leak)
    assert labels(leak) == [
        "AGENT",
        ".events",
        "._listeners",
        "['chunk']",
        f"[{index}]",
        ".__self__",
    ]
    assert leak.path.expression == f"AGENT.events._listeners['chunk'][{index}].__self__"
    assert statuses(leak) == ["old", "old", "old", "old", "new", "new"]
    assert_suspect(leak, f"[{index}]", "method")
    assert [step.type_name for step in leak.path.steps][:4] == [
        "Agent",
        "EventEmitter",
        "dict",
        "list",
    ]
    text = str(leak)
    assert "ModelOutput" in text
    assert MODULE in text
    assert "._listeners" in text and ".__self__" in text


def test_listener_removed_no_leak_although_the_output_buffered_101_chunks() -> None:
    install(Bug.NONE)
    with reftrace.watch() as w:
        out = w.track(demo.AGENT.stream("hi"))
        for _chunk in w.track_stream(out):
            pass
        del _chunk
        assert len(out.buffer) == 101
        assert list(out.replay()) == out.buffer  # the replay buffer works: by design
        del out
    assert w.report.leaks == []
    assert demo.AGENT.events.listener_count("chunk") == 0


# -- 2. failed workflow run kept in _runs ---------------------------------------------


def test_failed_run_skips_cleanup_and_stays_in_the_workflow_runs() -> None:
    install(Bug.FAILED_RUN)
    demo.AGENT.create_workflow("research", steps=3, chunks_per_step=100)
    with reftrace.watch() as w:
        run = w.track(demo.AGENT.workflows["research"].create_run())
        for _chunk in w.track_stream(run.stream("hi", fail_at_step=1)):
            pass
        del _chunk
        assert run.status == "failed"
        assert [len(output.buffer) for output in run.outputs] == [101, 51]
        run_id = run.run_id
        del run
    report = w.report

    leak = single_leak(report, "Run")
    assert_module_root(leak)
    assert labels(leak) == ["AGENT", ".workflows", "['research']", "._runs", f"[{run_id}]"]
    assert leak.path.expression == f"AGENT.workflows['research']._runs[{run_id}]"
    assert statuses(leak) == ["old", "old", "old", "old", "new"]
    assert_suspect(leak, f"[{run_id}]", "Run")
    assert "Run" in str(leak) and "._runs" in str(leak)


def test_failed_run_cleaned_up_no_leak() -> None:
    install(Bug.NONE)
    demo.AGENT.create_workflow("research", steps=3, chunks_per_step=100)
    with reftrace.watch() as w:
        run = w.track(demo.AGENT.workflows["research"].create_run())
        for _chunk in w.track_stream(run.stream("hi", fail_at_step=1)):
            pass
        del _chunk
        assert run.status == "failed"
        assert [len(output.buffer) for output in run.outputs] == [101, 51]
        assert demo.AGENT.workflows["research"].active_runs == []
        del run
    assert w.report.leaks == []


# -- 3. processor states accumulated --------------------------------------------------


def test_processor_states_accumulate_on_the_agent() -> None:
    install(Bug.PROCESSOR_STATES)
    index = len(demo.AGENT.processor_states)
    with reftrace.watch() as w:
        out = w.track(demo.AGENT.stream("hi", chunks=500))
        w.track(out.processor_state)
        for _chunk in w.track_stream(out):
            pass
        del _chunk
        assert len(out.processor_state.parts) == 501
        del out
    report = w.report

    # The processor state leaks, and with it its parts; the output that owned it was freed.
    leak = single_leak(report, "ProcessorState")
    assert "ModelOutput" not in {leak.type_name for leak in report.leaks}
    assert_module_root(leak)
    assert labels(leak) == ["AGENT", ".processor_states", f"[{index}]"]
    assert leak.path.expression == f"AGENT.processor_states[{index}]"
    assert statuses(leak) == ["old", "old", "new"]
    assert_suspect(leak, f"[{index}]", "ProcessorState")


def test_processor_states_released_no_leak_although_500_parts() -> None:
    install(Bug.NONE)
    with reftrace.watch() as w:
        out = w.track(demo.AGENT.stream("hi", chunks=500))
        w.track(out.processor_state)
        for _chunk in w.track_stream(out):
            pass
        del _chunk
        assert len(out.processor_state.parts) == 501
        assert len(out.buffer) == 501
        del out
    assert w.report.leaks == []


# -- 4. custom state registry ---------------------------------------------------------


def test_custom_state_stays_in_the_module_registry() -> None:
    install(Bug.CUSTOM_STATE)
    with reftrace.watch() as w:
        out = w.track(demo.AGENT.stream("hi"))
        state = w.track(out.custom_state)
        state["documents"] = [bytearray(256) for _ in range(1000)]
        for _chunk in w.track_stream(out):
            pass
        del _chunk
        assert len(out.buffer) == 101
        run_id = out.run_id
        del out, state
    report = w.report

    leak = single_leak(report, "CustomState")
    assert_module_root(leak)
    assert labels(leak) == ["CUSTOM_STATES", f"[{run_id}]"]
    assert leak.path.expression == f"CUSTOM_STATES[{run_id}]"
    assert statuses(leak) == ["old", "new"]
    assert_suspect(leak, f"[{run_id}]", "CustomState")
    # What the leak keeps counts the 1000 documents put in the state.
    assert leak.objects > 1000


def test_custom_state_unregistered_no_leak() -> None:
    install(Bug.NONE)
    with reftrace.watch() as w:
        out = w.track(demo.AGENT.stream("hi"))
        state = w.track(out.custom_state)
        state["documents"] = [bytearray(256) for _ in range(1000)]
        for _chunk in w.track_stream(out):
            pass
        del _chunk
        assert len(out.buffer) == 101
        assert demo.CUSTOM_STATES == {}
        del out, state
    assert w.report.leaks == []


# -- 5. stored last error with its traceback -------------------------------------------


def test_stored_last_error_keeps_the_failed_output_through_its_traceback() -> None:
    install(Bug.LAST_ERROR)
    with reftrace.watch() as w:
        out = w.track(demo.AGENT.stream("hi", fail_at=50))
        for _chunk in w.track_stream(out):
            pass
        del _chunk
        assert isinstance(out.error, demo.ModelError)
        assert len(out.buffer) == 51
        del out
    report = w.report

    leak = single_leak(report, "ModelOutput")
    assert_module_root(leak)
    steps = labels(leak)
    assert steps[:4] == ["AGENT", ".last_error", ".__traceback__", ".tb_frame"]
    assert len(steps) == 5
    assert re.fullmatch(r"local 'output' in _produce \(.*agent\.py:\d+\)", steps[4]), steps[4]
    assert_suspect(leak, ".last_error", "ModelError")
    assert statuses(leak)[0] == "old"
    assert statuses(leak)[1:] == ["new"] * 4


def test_last_error_kept_as_text_no_leak() -> None:
    install(Bug.NONE)
    with reftrace.watch() as w:
        out = w.track(demo.AGENT.stream("hi", fail_at=50))
        for _chunk in w.track_stream(out):
            pass
        del _chunk
        assert isinstance(out.error, demo.ModelError)
        assert len(out.buffer) == 51
        del out
    assert w.report.leaks == []
    assert isinstance(demo.AGENT.last_error, demo.ErrorRecord)
    assert demo.AGENT.last_error.type == "ModelError"


# -- 6. multi-step workflow: 10 steps x 100 chunks ---------------------------------------


def test_multi_step_workflow_with_listener_bug_leaks_every_step_output_as_one_finding() -> None:
    install(Bug.LISTENER)
    first = demo.AGENT.events.listener_count("chunk")
    demo.AGENT.create_workflow("pipeline", steps=10, chunks_per_step=100)
    with reftrace.watch() as w:
        run = w.track(demo.AGENT.workflows["pipeline"].create_run())
        for _chunk in w.track_stream(run.stream("summarise")):
            pass
        del _chunk
        assert run.status == "success"
        for output in run.outputs:
            w.track(output)
        assert sum(len(output.buffer) for output in run.outputs) == 1010
        assert sum(len(output.processor_state.parts) for output in run.outputs) == 1010
        del run, output
    report = w.report

    # The run itself was freed (its cleanup ran); its 10 outputs were not.  Any
    # other leak (a chunk the tracked stream yielded) hangs off the same listeners.
    outputs = [leak for leak in report.leaks if leak.type_name == "ModelOutput"]
    assert len(outputs) == 10, str(report)
    assert "Run" not in {leak.type_name for leak in report.leaks}
    for leak in report.leaks:
        assert_module_root(leak)
        assert labels(leak)[:4] == ["AGENT", ".events", "._listeners", "['chunk']"], str(leak)
        assert labels(leak)[5] == ".__self__"
    indices = sorted(labels(leak)[4] for leak in outputs)
    assert indices == sorted(f"[{i}]" for i in range(first, first + 10))
    text = str(report)
    assert text.count("ModelOutput leaked") == 1
    assert "ModelOutput leaked (10 instances" in text


def test_multi_step_workflow_fixed_no_leak_although_1010_chunks_buffered() -> None:
    install(Bug.NONE)
    demo.AGENT.create_workflow("pipeline", steps=10, chunks_per_step=100)
    with reftrace.watch() as w:
        run = w.track(demo.AGENT.workflows["pipeline"].create_run())
        for _chunk in w.track_stream(run.stream("summarise")):
            pass
        del _chunk
        assert run.status == "success"
        for output in run.outputs:
            w.track(output)
        assert sum(len(output.buffer) for output in run.outputs) == 1010
        assert sum(len(output.processor_state.parts) for output in run.outputs) == 1010
        del run, output
    assert w.report.leaks == []


# -- async --------------------------------------------------------------------------


def test_async_stream_listener_bug_is_found() -> None:
    install(Bug.LISTENER)
    index = demo.AGENT.events.listener_count("chunk")

    async def scenario() -> Any:
        async with reftrace.watch() as w:
            out = w.track(await demo.AGENT.stream_async("hi"))
            async for _chunk in w.track_stream(out):
                pass
            del _chunk
            assert len(out.buffer) == 101
            del out
        return w.report

    report = asyncio.run(scenario())
    leak = single_leak(report, "ModelOutput")
    assert_module_root(leak)
    assert leak.path.expression == f"AGENT.events._listeners['chunk'][{index}].__self__"
    assert_suspect(leak, f"[{index}]", "method")


def test_async_stream_fixed_no_leak() -> None:
    install(Bug.NONE)

    async def scenario() -> Any:
        async with reftrace.watch() as w:
            out = w.track(await demo.AGENT.stream_async("hi"))
            async for _chunk in w.track_stream(out):
                pass
            del _chunk
            assert len(out.buffer) == 101
            del out
        return w.report

    assert asyncio.run(scenario()).leaks == []


def test_async_stream_stored_error_keeps_the_async_generator_frame() -> None:
    install(Bug.LAST_ERROR)

    async def scenario() -> Any:
        async with reftrace.watch() as w:
            out = w.track(await demo.AGENT.stream_async("hi", fail_at=50))
            async for _chunk in w.track_stream(out):
                pass
            del _chunk
            assert len(out.buffer) == 51
            del out
        return w.report

    leak = single_leak(asyncio.run(scenario()), "ModelOutput")
    assert_module_root(leak)
    steps = labels(leak)
    assert steps[:4] == ["AGENT", ".last_error", ".__traceback__", ".tb_frame"]
    assert re.fullmatch(r"local 'output' in _produce_async \(.*agent\.py:\d+\)", steps[4]), steps
    assert_suspect(leak, ".last_error", "ModelError")


# -- grouping -----------------------------------------------------------------------


def test_hundred_outputs_leaked_through_one_listener_list_are_one_finding() -> None:
    install(Bug.LISTENER)
    with reftrace.watch() as w:
        for i in range(100):
            out = w.track(demo.AGENT.stream(f"request {i}"))
            for _chunk in out:
                pass
            assert len(out.buffer) == 101
        del out
    report = w.report

    assert len(report.leaks) == 100, str(report)
    assert {leak.type_name for leak in report.leaks} == {"ModelOutput"}
    expressions = {leak.path.expression for leak in report.leaks}
    assert len(expressions) == 100
    assert all(
        re.fullmatch(r"AGENT\.events\._listeners\['chunk'\]\[\d+\]\.__self__", e)
        for e in expressions
    )
    [group] = report.leak_groups
    assert group.count == 100
    text = str(report)
    assert text.count("ModelOutput leaked") == 1
    assert "ModelOutput leaked (100 instances" in text


# -- ground truth: the demo agent itself, checked with weak references -------------------


def _drain(stream: Any) -> None:
    for _chunk in stream:
        pass


def _listener() -> list[object]:
    out = demo.AGENT.stream("hi")
    _drain(out)
    return [out]


def _failed_run() -> list[object]:
    demo.AGENT.create_workflow("research", steps=3)
    run = demo.AGENT.workflows["research"].create_run()
    _drain(run.stream("hi", fail_at_step=1))
    return [run, *run.outputs]


def _processor_state() -> list[object]:
    out = demo.AGENT.stream("hi", chunks=500)
    _drain(out)
    return [out.processor_state]


def _custom_state() -> list[object]:
    out = demo.AGENT.stream("hi")
    _drain(out)
    return [out.custom_state]


def _last_error() -> list[object]:
    out = demo.AGENT.stream("hi", fail_at=50)
    _drain(out)
    return [out]


def _multi_step() -> list[object]:
    demo.AGENT.create_workflow("pipeline", steps=10)
    run = demo.AGENT.workflows["pipeline"].create_run()
    _drain(run.stream("hi"))
    return list(run.outputs)


def _async_listener() -> list[object]:
    async def scenario() -> object:
        out = await demo.AGENT.stream_async("hi")
        async for _chunk in out:
            pass
        return out

    return [asyncio.run(scenario())]


@pytest.mark.parametrize(
    ("scenario", "bug"),
    [
        (_listener, Bug.LISTENER),
        (_failed_run, Bug.FAILED_RUN),
        (_processor_state, Bug.PROCESSOR_STATES),
        (_custom_state, Bug.CUSTOM_STATE),
        (_last_error, Bug.LAST_ERROR),
        (_multi_step, Bug.LISTENER),
        (_async_listener, Bug.LISTENER),
    ],
)
@pytest.mark.parametrize("buggy", [True, False], ids=["bug", "fixed"])
def test_ground_truth(scenario: Callable[[], list[object]], bug: Bug, buggy: bool) -> None:
    """Each bug keeps its objects alive, and only that bug: the fixed agent frees them."""
    demo.install(bug if buggy else Bug.NONE)
    refs = [weakref.ref(obj) for obj in scenario()]
    gc.collect()
    assert [ref() is not None for ref in refs] == [buggy] * len(refs)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the proof forks")
def test_listener_proved_by_cutting_and_its_registration_located() -> None:
    """The seed's question answered in full: cutting the listener reference
    frees the output with its 100+ buffered chunks, and the line that stored
    it is the registration ``self.events.on("chunk", output._on_chunk)``."""
    install(Bug.LISTENER)

    def handle() -> Any:
        out = demo.AGENT.stream("why is my service using 10 GB")
        for _chunk in out:
            pass
        return out

    with reftrace.watch(prove=True) as w:
        out = w.track(handle())
        del out
    (group,) = w.report.leak_groups
    proof = group.proof
    assert proof is not None and proof.status == "confirmed", proof
    assert proof.cut == "AGENT.events._listeners['chunk'][1]"
    assert proof.freed_types == [("ModelOutput", 1)]
    assert proof.freed_objects > 100  # the output, its buffer and its 101 chunks

    located = reftrace.locate(handle)
    site = located.leak_groups[0].stored_at
    assert site is not None
    assert [frame.function for frame in site.frames[:2]] == ["on", "_open"]
    assert site.frames[1].code == 'self.events.on("chunk", output._on_chunk)'
