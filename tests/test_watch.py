"""The core contract: watch(), track(), track_stream(), and the leak traces."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import gc
import json
import re
import sys
import threading
import tracemalloc
import weakref
from collections.abc import Iterator

import pytest

import reftrace

# Module globals act as roots in these tests, the way an application's
# singletons would.
REGISTRY: list[object] = []
SERVICES: dict[str, object] = {}
CALLBACKS: list[object] = []
TASKS: list[object] = []
ERRORS: list[BaseException] = []


class Payload:
    def __init__(self, size: int = 100) -> None:
        self.data = [str(i) * 3 for i in range(size)]

    def on_event(self, value: object) -> None:
        self.data.append(value)


class Emitter:
    def __init__(self) -> None:
        self._listeners: dict[str, list[object]] = {}

    def on(self, event: str, fn: object) -> None:
        self._listeners.setdefault(event, []).append(fn)


class Service:
    def __init__(self) -> None:
        self.events = Emitter()


SERVICE = Service()


class Slotted:
    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: object = None


SLOTTED = Slotted()


class Registry:
    items: list[object] = []


@pytest.fixture(autouse=True)
def _clean_globals():
    yield
    for container in (REGISTRY, CALLBACKS, TASKS, ERRORS, Registry.items):
        container.clear()
    SERVICE.events._listeners.clear()
    SLOTTED.held = None


def only_leak(report: reftrace.Report) -> reftrace.Leak:
    assert len(report.leaks) == 1, str(report)
    return report.leaks[0]


# -- the basic contract ---------------------------------------------------------


def test_listener_leak_is_traced_from_the_module_global_with_labelled_edges():
    SERVICE.events.on("chunk", print)  # an old listener, registered before the block
    with reftrace.watch() as w:
        out = w.track(Payload())
        SERVICE.events.on("chunk", out.on_event)
        del out
    leak = only_leak(w.report)
    assert leak.type_name == "Payload"
    assert leak.path is not None
    assert leak.path.root.kind == "module"
    assert leak.path.root.name == __name__
    assert leak.path.labels == [
        "SERVICE",
        ".events",
        "._listeners",
        "['chunk']",
        "[1]",
        ".__self__",
    ]
    assert leak.path.expression == "SERVICE.events._listeners['chunk'][1].__self__"
    assert [s.status for s in leak.path.steps] == ["old", "old", "old", "old", "new", "new"]
    assert leak.suspect is not None and leak.suspect.label == "[1]"
    text = str(leak)
    assert "SERVICE" in text and "suspect" in text and "Payload" in text
    first_line = test_listener_leak_is_traced_from_the_module_global_with_labelled_edges.__code__
    assert leak.allocated_at is not None
    assert leak.allocated_at.endswith(f"test_watch.py:{first_line.co_firstlineno + 3}")
    assert leak.size > 100 * 40  # the payload's 100 strings are part of what it keeps


def test_clean_block_reports_no_leak_and_no_survivor():
    with reftrace.watch() as w:
        out = w.track(Payload(500))
        assert len(out.data) == 500
        del out
    assert w.report.leaks == []
    assert w.report.survivors == []
    assert w.report.collected == 1
    assert "no leaks" in str(w.report)


def test_track_returns_its_argument_and_never_keeps_it_alive():
    with reftrace.watch() as w:
        obj = Payload()
        assert w.track(obj) is obj
        ref = weakref.ref(obj)
        del obj
        assert ref() is None  # dead inside the block already
    assert w.report.leaks == []


@pytest.mark.parametrize(
    "factory", [dict, list, lambda: (object(),), lambda: "".join(["chunk "] * 100)]
)
def test_objects_that_cannot_be_weakly_referenced_are_tracked(factory):
    with reftrace.watch() as w:
        obj = w.track(factory())
        REGISTRY.append(obj)
        del obj
    leak = only_leak(w.report)
    assert leak.path is not None and leak.path.expression == "REGISTRY[0]"


def test_address_reuse_is_not_a_false_leak():
    with reftrace.watch() as w:
        for _ in range(200):
            d = w.track({})
            address = id(d)
            del d
            kept = {}  # very likely at the address just freed
            REGISTRY.append(kept)
        assert any(id(k) == address for k in REGISTRY) or True
    assert w.report.leaks == []
    assert w.report.collected == 200


@pytest.mark.parametrize("value", [None, True, 7, 10**30, 2.5, sys.intern("interned-name")])
def test_values_that_cannot_leak_are_refused_with_their_type(value):
    with reftrace.watch() as w, pytest.raises(TypeError) as info:
        w.track(value)
    assert type(value).__name__ in str(info.value)


def test_track_outside_the_block_and_early_report_are_errors():
    w = reftrace.watch()
    with pytest.raises(RuntimeError, match="inside the watch"):
        w.track(Payload())
    with pytest.raises(RuntimeError, match="after the watch"):
        w.report  # noqa: B018
    with w:
        pass
    with pytest.raises(RuntimeError, match="inside the watch"):
        w.track(Payload())
    with pytest.raises(RuntimeError, match="entered only once"), w:
        pass


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="frames"):
        reftrace.watch(frames=0)
    with pytest.raises(ValueError, match="max_depth"):
        reftrace.watch(max_depth=-1)


# -- the hard cases ---------------------------------------------------------------


def _untracked_container() -> object:
    atomic = {"a": 1, "b": "two"}
    if gc.is_tracked(atomic):
        # 3.14+ tracks every dict; a tuple of atomic values is untracked from birth.
        return ("a", 1, "".join(["two-", str(id(atomic))]))
    return atomic


def test_untracked_container_can_leak():
    with reftrace.watch() as w:
        atomic = w.track(_untracked_container())
        assert not gc.is_tracked(atomic)
        REGISTRY.append(atomic)
        del atomic
    assert only_leak(w.report).path.expression == "REGISTRY[0]"


class _Plain:
    pass


def test_an_untracked_leak_is_given_its_shortest_path_through_an_untracked_dict():
    # `near`'s __dict__ holds nothing but the tuple of strings, so (before
    # 3.14) the gc does not track it and never lists it as a referrer; the
    # longer way through tracked holders (`far.middle`) is not the shortest.
    with reftrace.watch() as w:
        leaked = w.track(("kept", "".join(["by-", str(id(w))])))
        top, far, middle, near = _Plain(), _Plain(), _Plain(), _Plain()
        for obj in (top, far, middle, near):
            vars(obj)  # a real __dict__ (3.11+ keep values inline until asked)
        middle.t, middle.me = leaked, middle
        far.middle = middle
        top.far, top.near = far, near
        near.t = leaked
        REGISTRY.append(top)
        del leaked, top, far, middle, near, obj
    paths = {leak.path.expression for leak in w.report.leaks if leak.path is not None}
    assert paths == {"REGISTRY[0].near.t"}, str(w.report)


def test_cycle_without_root_is_garbage_not_a_leak():
    with reftrace.watch() as w:
        a, b = Payload(1), Payload(1)
        a.other, b.other = b, a
        w.track(a)
        w.track(b)
        del a, b
    assert w.report.leaks == []
    assert w.report.collected == 2


class _Cycle:
    def __init__(self) -> None:
        self.me = self
        self.payload = Payload(1)


def test_garbage_from_before_the_block_is_not_reported_and_is_freed_after():
    # Garbage made before the block is frozen with the old heap, not collected
    # on entry: nothing in the block can reach it, so it changes no finding.
    # The interpreter's own collection is off until the block has started:
    # one that the allocations of watch() trigger would free it first (how
    # many allocations that takes depends on the tests run before).
    gc.disable()
    try:
        old_garbage = _Cycle()
        gone = weakref.ref(old_garbage)
        del old_garbage
        with reftrace.watch() as w:
            gc.enable()
            CALLBACKS.append(w.track(Payload(1)).on_event)
    finally:
        gc.enable()
    assert only_leak(w.report).path.expression == "CALLBACKS[0].__self__"
    assert w.report.survivors and all("_Cycle" not in str(g) for g in w.report.survivors)
    assert gone() is not None  # still there: the watch did not collect it
    gc.collect()
    assert gone() is None


def test_new_dicts_stay_new_when_dicts_were_freed_just_before_the_block():
    # Freed dicts wait in the interpreter's free list with memory tracemalloc
    # never saw; the block's dicts must not reuse it, or they would look old.
    junk = [{"n": [i]} for i in range(500)]
    del junk
    with reftrace.watch() as w:
        for i in range(50):
            REGISTRY.append({"n": [i]})
    (group,) = w.report.survivors
    assert group.attachment == "REGISTRY[*]"
    assert dict(group.top_types) == {"dict": 50, "list": 50}


HOLDERS: list[list[object]] = [[] for _ in range(300)]


def test_survivors_shared_by_one_holder_and_spread_over_many_are_all_grouped():
    # 2,000 in one old list (one referrer scan answers for all of them), then
    # one in each of 300 old lists (no holder answers for another: the rest
    # are found by a forward scan).
    try:
        with reftrace.watch() as w:
            for _ in range(2_000):
                REGISTRY.append(Payload(1))
            for holder in HOLDERS:
                holder.append(Payload(1))
        groups = w.report.survivors
        assert groups[0].attachment == "REGISTRY[*]"
        assert dict(groups[0].top_types)["Payload"] == 2_000
        # Another thread of the test runner (pytest-xdist's) may allocate while
        # the block runs: reftrace reports what it keeps too, in groups of its own.
        spread = [g for g in groups[1:] if "Payload" in dict(g.top_types)]
        others = len(groups) - 1 - len(spread)
        assert len(spread) == 300
        assert all(dict(g.top_types)["Payload"] == 1 for g in spread)
        named = {g.attachment for g in spread if g.path}
        assert 49 - others <= len(named) <= 49  # the 50 largest groups get a path
        assert all(re.fullmatch(r"HOLDERS\[\d+\]\[0\]", a) for a in named)
    finally:
        for holder in HOLDERS:
            holder.clear()


def test_handles_in_the_watching_function_are_not_leaks():
    with reftrace.watch() as w:
        out = w.track(Payload())
        for _chunk in w.track_stream(iter([Payload(1), Payload(1)])):
            pass
    # `out` and the loop variable still refer to tracked objects, but only
    # until this function returns: a note, not a leak.
    assert w.report.leaks == []
    assert w.report.handles == 2
    assert "test_handles_in_the_watching_function_are_not_leaks" in "\n".join(w.report.notes)
    assert out is not None


def test_handle_does_not_hide_the_real_holder():
    with reftrace.watch() as w:
        out = w.track(Payload())
        SERVICE.events.on("chunk", out.on_event)
    leak = only_leak(w.report)
    assert leak.path.expression == "SERVICE.events._listeners['chunk'][0].__self__"
    del out


@contextlib.contextmanager
def held_by_a_thread_local():
    """Yields a function that hands an object to another thread, which keeps
    it in its local variable ``kept_here`` until the block ends."""
    handed, holding, release = [], threading.Event(), threading.Event()

    def worker():
        while not handed:
            holding.wait(0.01)
        kept_here = handed.pop()
        holding.set()
        release.wait()
        del kept_here

    def hand(obj: object) -> None:
        handed.append(obj)
        assert holding.wait(10)

    thread = threading.Thread(target=worker, name="holder-thread")
    thread.start()
    try:
        yield hand
    finally:
        release.set()
        thread.join()


def test_local_variable_of_another_running_frame_is_a_frame_root():
    with held_by_a_thread_local() as hand, reftrace.watch() as w:
        hand(w.track(Payload()))
    leak = only_leak(w.report)
    assert leak.path.root.kind == "frame"
    assert leak.path.root.name == "holder-thread"
    assert leak.path.root.function.endswith("worker")
    assert leak.path.steps[0].label == "local 'kept_here'"


@pytest.mark.parametrize("indexed", [False, True], ids=["scanned", "globals indexed"])
def test_a_frame_local_is_a_nearer_root_than_a_global_list(monkeypatch, indexed):
    # Held by a running frame's local (no step) and by a global list (one
    # step): the frame is the shortest root, also when what globals hold is
    # indexed (as on a big heap), which could end the search at REGISTRY[0].
    if indexed:
        monkeypatch.setattr(reftrace.heap, "GLOBAL_CONTAINERS_MIN_BLOCKS", 0)
    with held_by_a_thread_local() as hand, reftrace.watch() as w:
        payload = w.track(Payload())
        REGISTRY.append(payload)
        hand(payload)
        del payload
    leak = only_leak(w.report)
    assert leak.path.root.kind == "frame"
    assert [step.label for step in leak.path.steps] == ["local 'kept_here'"]


def test_a_global_container_ends_the_search_with_the_same_path(monkeypatch):
    def leak_through_service() -> reftrace.Report:
        with reftrace.watch() as w:
            SERVICE.events.on("chunk", w.track(Payload()).on_event)
        SERVICE.events._listeners.clear()
        return w.report

    scanned = only_leak(leak_through_service()).path.expression
    monkeypatch.setattr(reftrace.heap, "GLOBAL_CONTAINERS_MIN_BLOCKS", 0)
    assert only_leak(leak_through_service()).path.expression == scanned
    assert scanned == "SERVICE.events._listeners['chunk'][0].__self__"


class Box:
    def __init__(self) -> None:
        self.items: list[object] = []


BOX = Box()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="instances keep a real __dict__ before 3.11")
def test_labelling_an_attribute_leaves_the_instance_without_a_dict():
    # Reading __dict__ would make one (a new object in the program's heap,
    # and one more step on every later path through the instance).
    for _ in range(2):  # the second search walks the same instance
        with reftrace.watch() as w:
            BOX.items.append(w.track(Payload(1)))
        assert only_leak(w.report).path.expression == "BOX.items[0]"
        assert not any(type(r) is dict for r in gc.get_referents(BOX))
        BOX.items.clear()


def test_an_attribute_set_from_outside_the_class_is_still_named():
    box = Box()
    box.extra = []  # no code of Box names it
    REGISTRY.append(box)
    try:
        with reftrace.watch() as w:
            box.extra.append(w.track(Payload(1)))
        assert only_leak(w.report).path.expression == "REGISTRY[0].extra[0]"
    finally:
        box.extra.clear()


def test_closure_cell_is_labelled_with_its_variable_name():
    def register(target):
        def callback():
            return target

        CALLBACKS.append(callback)

    with reftrace.watch() as w:
        register(w.track(Payload()))
    leak = only_leak(w.report)
    assert leak.path.labels == ["CALLBACKS", "[0]", "cell 'target'"]
    assert leak.path.expression == "CALLBACKS[0].__closure__[0].cell_contents"


def test_bound_method_partial_slots_and_class_attribute():
    with reftrace.watch() as w:
        a, b, c, d = (w.track(Payload()) for _ in range(4))
        CALLBACKS.append(a.on_event)
        CALLBACKS.append(functools.partial(print, b))
        SLOTTED.held = c
        Registry.items.append(d)
        del a, b, c, d
    expressions = sorted(leak.path.expression for leak in w.report.leaks)
    assert expressions == sorted(
        [
            "CALLBACKS[0].__self__",
            "CALLBACKS[1].args[0]",
            "SLOTTED.held",
            "Registry.items[0]",
        ]
    )


def _raise_with(payload):
    local_payload = payload  # noqa: F841  (kept alive by the traceback's frame)
    raise ValueError("boom")


def test_stored_exception_keeps_the_frame_that_raised_it():
    with reftrace.watch() as w:
        try:
            _raise_with(w.track(Payload()))
        except ValueError as exc:
            ERRORS.append(exc)
    leak = only_leak(w.report)
    labels = leak.path.labels
    assert labels[:3] == ["ERRORS", "[0]", ".__traceback__"]
    assert ".tb_frame" in labels
    # `payload` and `local_payload` both hold it: either name is the truth
    assert any(
        label.startswith(("local 'local_payload' in _raise_with", "local 'payload' in _raise_with"))
        for label in labels
    )
    assert labels[-1].startswith("local ")


def test_suspended_generator_local_is_labelled():
    def producer(item):
        held = item
        yield 1
        yield held

    with reftrace.watch() as w:
        gen = producer(w.track(Payload()))
        next(gen)
        REGISTRY.append(gen)
        del gen
    leak = only_leak(w.report)
    assert leak.path.labels[:2] == ["REGISTRY", "[0]"]
    assert leak.path.labels[-1].startswith("local 'held' in producer") or leak.path.labels[
        -1
    ].startswith("local 'item' in producer")


def test_asyncio_task_result_is_found_on_every_version():
    async def compute():
        return Payload()

    async def main():
        task = asyncio.ensure_future(compute())
        await task
        TASKS.append(task)
        return task.result()

    with reftrace.watch() as w:
        w.track(asyncio.run(main()))
    leak = only_leak(w.report)
    assert leak.path.labels == ["TASKS", "[0]", "._result"]


# -- streams ----------------------------------------------------------------------


def test_track_stream_tracks_every_item_and_passes_them_through():
    def chunks():
        for i in range(50):
            yield {"i": i, "text": f"chunk {i}"}

    with reftrace.watch() as w:
        seen = []
        for chunk in w.track_stream(chunks()):
            seen.append(chunk["i"])
            if chunk["i"] % 10 == 0:
                REGISTRY.append(chunk)
        del chunk
    assert seen == list(range(50))
    assert len(w.report.leaks) == 5
    assert {leak.path.expression for leak in w.report.leaks} == {f"REGISTRY[{i}]" for i in range(5)}
    assert len(w.report.leak_groups) == 1
    assert w.report.collected == 45


def test_track_stream_forwards_close_and_skips_untrackable_items():
    closed = []

    def numbers():
        try:
            yield from range(10)
        finally:
            closed.append(True)

    with reftrace.watch() as w:
        stream = w.track_stream(numbers())
        assert next(stream) == 0
        stream.close()
        assert closed == [True]
        with pytest.raises(StopIteration):
            next(stream)
    assert w.report.tracked == 0


def test_track_stream_rejects_non_iterables():
    with reftrace.watch() as w, pytest.raises(TypeError, match="iterable"):
        w.track_stream(42)


def test_async_watch_and_async_stream():
    async def chunks():
        for i in range(20):
            yield {"i": i}

    async def main():
        async with reftrace.watch() as w:
            got = [c["i"] async for c in w.track_stream(chunks())]
            stream = w.track_stream(chunks())
            first = await stream.__anext__()
            REGISTRY.append(first)
            await stream.aclose()
            del first
        return w, got

    w, got = asyncio.run(main())
    assert got == list(range(20))
    assert only_leak(w.report).path.expression == "REGISTRY[0]"


# -- report behaviour ----------------------------------------------------------------


def test_exception_in_block_propagates_and_report_is_built():
    with pytest.raises(KeyError), reftrace.watch() as w:
        REGISTRY.append(w.track(Payload()))
        raise KeyError("boom")
    assert only_leak(w.report).path.expression == "REGISTRY[0]"


def test_report_never_keeps_the_leaked_object_alive():
    with reftrace.watch() as w:
        obj = w.track(Payload())
        REGISTRY.append(obj)
        ref = weakref.ref(obj)
        del obj
    leak = only_leak(w.report)
    assert leak.object is ref()  # handed out on request while alive
    text = str(w.report)
    REGISTRY.clear()
    gc.collect()
    assert ref() is None
    assert leak.object is None
    assert str(w.report) == text


def test_leaks_through_the_same_reference_are_one_finding_with_a_count():
    with reftrace.watch() as w:
        for _ in range(100):
            out = w.track(Payload(10))
            SERVICE.events.on("chunk", out.on_event)
        del out
    report = w.report
    assert len(report.leaks) == 100
    assert len(report.leak_groups) == 1
    assert report.leak_groups[0].count == 100
    text = str(report)
    assert text.count("Payload leaked") == 1
    assert "100 instances" in text


def test_survivors_are_grouped_where_they_attach_without_any_track():
    with reftrace.watch() as w:
        for i in range(300):
            REGISTRY.append({"request": i, "body": [i] * 5})
        SERVICE.events.on("done", Payload(3).on_event)
    survivors = w.report.survivors
    by_place = {g.attachment: g for g in survivors}
    assert "REGISTRY[*]" in by_place, str(w.report)
    group = by_place["REGISTRY[*]"]
    assert group.count == 600  # 300 dicts and their 300 lists
    assert dict(group.top_types) == {"dict": 300, "list": 300}
    assert group.size > 300 * 64
    assert group.path.root.name == __name__
    assert "SERVICE.events._listeners['done']" in by_place
    assert not any("reftrace" in g.attachment for g in survivors)


def test_allocations_name_the_line_that_allocated_what_survived():
    with reftrace.watch() as w:
        REGISTRY.append(bytearray(2_000_000))
    top = w.report.allocations[0]
    first_line = test_allocations_name_the_line_that_allocated_what_survived.__code__.co_firstlineno
    assert top.site.endswith(f"test_watch.py:{first_line + 2}")
    assert top.size >= 2_000_000
    assert not any("reftrace" in a.site.split(":")[0] for a in w.report.allocations)


def test_to_dict_is_json_serialisable():
    with reftrace.watch() as w:
        REGISTRY.append(w.track(Payload()))
    data = json.loads(json.dumps(w.report.to_dict()))
    assert data["leaks"][0]["path"]["expression"] == "REGISTRY[0]"
    assert data["leaks"][0]["path"]["steps"][1]["suspect"] is True
    assert data["survivors"] and data["allocations"]


def test_reftrace_objects_never_appear():
    with reftrace.watch() as w:
        for _ in range(20):
            w.track(Payload(1))
        list(w.track_stream(iter([Payload(1) for _ in range(5)])))
    assert w.report.leaks == []
    assert w.report.survivors == []


def test_state_is_restored_after_the_block():
    gc_enabled = gc.isenabled()
    thresholds = gc.get_threshold()
    freeze = gc.get_freeze_count()
    with pytest.raises(ZeroDivisionError), reftrace.watch():
        1 / 0  # noqa: B018
    assert gc.isenabled() == gc_enabled
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == freeze
    assert not tracemalloc.is_tracing()

    tracemalloc.start(3)
    try:
        with reftrace.watch() as w:
            REGISTRY.append(bytearray(100_000))
        assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 3
        assert w.report.allocations[0].size >= 100_000
    finally:
        tracemalloc.stop()


def test_nested_watches_each_report_their_own_block():
    with reftrace.watch() as outer:
        a = outer.track(Payload())
        with reftrace.watch() as inner:
            b = inner.track(Payload())
            REGISTRY.append(b)
            del b
        del a
    assert only_leak(inner.report).path.expression == "REGISTRY[0]"
    assert outer.report.leaks == []


def test_other_threads_keep_running_while_the_report_is_built():
    stop = threading.Event()
    shared: dict[int, list[int]] = {}

    def churn():
        i = 0
        while not stop.is_set():
            shared[i % 500] = [i] * 10
            i += 1

    workers = [threading.Thread(target=churn) for _ in range(4)]
    for t in workers:
        t.start()
    try:
        for _ in range(5):
            with reftrace.watch() as w:
                REGISTRY.append(w.track(Payload()))
            assert only_leak(w.report).path.expression == f"REGISTRY[{len(REGISTRY) - 1}]"
    finally:
        stop.set()
        for t in workers:
            t.join()


class Hostile:
    """User code that must never run while reftrace looks at it."""

    calls: list[str] = []

    def __init__(self) -> None:
        self.payload = [1, 2, 3]

    def __repr__(self) -> str:
        Hostile.calls.append("repr")
        raise RuntimeError("repr is user code")

    def __eq__(self, other: object) -> bool:
        Hostile.calls.append("eq")
        raise RuntimeError("eq is user code")

    __hash__ = object.__hash__

    def __getattr__(self, name: str) -> object:
        Hostile.calls.append(f"getattr {name}")
        raise RuntimeError("getattr is user code")

    def __sizeof__(self) -> int:
        Hostile.calls.append("sizeof")
        raise RuntimeError("sizeof is user code")

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # a lie: isinstance() would believe it
        Hostile.calls.append("__class__")
        return dict


def test_user_code_on_the_path_is_never_run():
    Hostile.calls.clear()
    with reftrace.watch() as w:
        holder = Hostile()
        holder.child = w.track(Payload())
        REGISTRY.append({holder: holder})
        del holder
    leak = only_leak(w.report)
    assert leak.path.labels == ["REGISTRY", "[0]", "[<Hostile key>]", ".child"]
    str(w.report)
    json.dumps(w.report.to_dict())
    assert Hostile.calls == []


def test_first_use_registries_are_not_leaks():
    import logging
    import re

    with reftrace.watch() as w:
        item = w.track(Payload())
        logging.getLogger(f"reftrace-test-{id(item)}").debug("first use")
        re.compile(rf"reftrace-{id(item)}-\d+")
        isinstance(item, type(REGISTRY))
        del item
    assert w.report.leaks == []
    # what the registries kept is visible as survivors, with its holder
    assert any("loggerDict" in group.attachment for group in w.report.survivors)


def test_suspended_coroutine_local_is_labelled():
    async def waiter(item):
        held = item
        await asyncio.sleep(3600)
        return held

    loop = asyncio.new_event_loop()
    try:
        with reftrace.watch() as w:
            coro = waiter(w.track(Payload()))
            task = loop.create_task(coro)
            loop.run_until_complete(asyncio.sleep(0))  # the coroutine is now suspended
            TASKS.append(task)
            del coro, task
        leak = only_leak(w.report)
        assert leak.path.labels[:2] == ["TASKS", "[0]"]
        assert leak.path.labels[-1].startswith(("local 'held' in waiter", "local 'item' in waiter"))
    finally:
        for task in TASKS:
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_reference_held_from_c_is_named_honestly():
    import ctypes

    with reftrace.watch() as w:
        obj = w.track(Payload())
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))  # a reference no object shows
        del obj
    try:
        leak = only_leak(w.report)
        assert leak.path.root.kind == "hidden"
        assert "cannot see" in str(leak)
    finally:
        target = leak.object
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(target))


def test_a_leak_with_no_path_says_why():
    chain: list[object] = []
    REGISTRY.append(chain)
    with reftrace.watch(max_depth=3) as w:
        node = chain
        for _ in range(10):
            node.append([])
            node = node[0]
        node.append(w.track(Payload()))
        del node
    leak = only_leak(w.report)
    assert leak.path is None
    assert "no root within 3 references" in leak.reason
    assert "raise max_depth" in str(leak)


def test_allocation_tracebacks_when_asked_for():
    def allocate():
        return bytearray(500_000)

    with reftrace.watch(frames=4) as w:
        REGISTRY.append(allocate())
    top = w.report.allocations[0]
    assert top.size >= 500_000
    assert len(top.traceback) >= 2
    assert top.traceback[0].endswith(f"test_watch.py:{allocate.__code__.co_firstlineno + 1}")


def test_render_draws_the_finding_once_with_its_count(tmp_path):
    with reftrace.watch() as w:
        for _ in range(3):
            out = w.track(Payload(5))
            SERVICE.events.on("chunk", out.on_event)
        del out
    svg = (tmp_path / "leak.svg").as_posix()
    assert w.report.render(svg) == svg
    text = (tmp_path / "leak.svg").read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "SERVICE" in text and "Payload ×3" in text and "suspect" in text
    w.report.render(str(tmp_path / "leak.dot"))
    assert (tmp_path / "leak.dot").read_text(encoding="utf-8").startswith("digraph")
    with pytest.raises(ValueError, match="unknown format"):
        w.report.render(str(tmp_path / "leak.gif"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        w.report.render(str(tmp_path / "missing" / "leak.svg"))


# -- ignore, allocations, trace ---------------------------------------------------------

KEPT_BY_A_FRAMEWORK: list[object] = []
KEPT_BY_THE_PROGRAM: list[object] = []


def test_ignore_leaves_survivors_out_by_their_holder_before_their_paths() -> None:
    asked: list[tuple[str, int]] = []

    def ignore(holder: object, objects: list[object]) -> bool:
        asked.append((type(holder).__name__, len(objects)))
        return holder is KEPT_BY_A_FRAMEWORK

    with reftrace.watch(ignore=ignore) as w:
        KEPT_BY_A_FRAMEWORK.append({"request": [1, 2]})
        KEPT_BY_THE_PROGRAM.append({"request": [3, 4]})
    holders = [group.attachment for group in w.report.survivors]
    assert any("KEPT_BY_THE_PROGRAM" in h for h in holders), holders
    assert not any("KEPT_BY_A_FRAMEWORK" in h for h in holders), holders
    assert ("list", 1) in asked
    KEPT_BY_A_FRAMEWORK.clear()
    KEPT_BY_THE_PROGRAM.clear()


def test_an_ignore_that_raises_leaves_nothing_out() -> None:
    def ignore(holder: object, objects: list[object]) -> bool:
        raise RuntimeError("a bug in the caller's predicate")

    with reftrace.watch(ignore=ignore) as w:
        KEPT_BY_THE_PROGRAM.append({"request": [5]})
    assert any("KEPT_BY_THE_PROGRAM" in g.attachment for g in w.report.survivors)
    KEPT_BY_THE_PROGRAM.clear()


def test_hidden_is_asked_before_counting_references_from_c() -> None:
    from reftrace.analysis import HIDDEN

    seen = []

    def ignore(holder: object, objects: list[object]) -> bool:
        seen.append(holder is HIDDEN)
        return holder is HIDDEN

    import io

    with reftrace.watch(ignore=ignore) as w:
        KEPT_BY_THE_PROGRAM.append(io.StringIO("text kept in lists on 3.10 and 3.11"))
        KEPT_BY_THE_PROGRAM[0].write("more")
    assert all(
        group.path is None or group.path.root.kind != "hidden" for group in w.report.survivors
    )
    KEPT_BY_THE_PROGRAM.clear()


def test_no_allocation_sites_and_no_tracing_when_asked() -> None:
    was_tracing = tracemalloc.is_tracing()
    with reftrace.watch(allocations=0) as w:
        KEPT_BY_THE_PROGRAM.append([1, 2, 3])
    assert w.report.allocations == []
    with reftrace.watch(trace=False) as w:
        assert tracemalloc.is_tracing() == was_tracing
        KEPT_BY_THE_PROGRAM.append([4, 5, 6])
    assert w.report.allocations == []
    assert any("KEPT_BY_THE_PROGRAM" in g.attachment for g in w.report.survivors)
    KEPT_BY_THE_PROGRAM.clear()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ignore": 3}, "ignore must be callable"),
        ({"allocations": -1}, "allocations must be an int >= 0"),
        ({"trace": "no"}, "trace must be a bool"),
    ],
)
def test_bad_watch_options_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        reftrace.watch(**kwargs)  # type: ignore[arg-type]


def test_a_generator_running_the_block_is_not_the_leaks_holder() -> None:
    # A pytest fixture is such a generator. From 3.14 on its locals show
    # through the generator object too; they are still only its handles.
    # The leak's path from a global is longer than the one through the generator.
    SERVICES["deep"] = {"a": {"b": []}}

    def fixture() -> Iterator[reftrace.Report]:
        with reftrace.watch() as w:
            out = w.track(Payload())
            SERVICES["deep"]["a"]["b"].append(out)  # type: ignore[index]
        yield w.report

    running = fixture()
    report = next(running)
    assert only_leak(report).path.expression == "SERVICES['deep']['a']['b'][0]"
    running.close()
    del SERVICES["deep"]


@pytest.mark.skipif(not hasattr(builtins, "frozendict"), reason="frozendict is new in 3.15")
def test_a_frozendicts_value_is_named_by_its_key() -> None:
    with reftrace.watch() as w:
        item = w.track(Payload())
        REGISTRY.append(builtins.frozendict(config=item))  # type: ignore[attr-defined]
        del item
    assert only_leak(w.report).path.expression == f"REGISTRY[{len(REGISTRY) - 1}]['config']"


def test_a_finding_is_stored_once_and_what_is_set_on_it_stays():
    try:
        with reftrace.watch() as w:
            REGISTRY.append(w.track(Payload()))
            REGISTRY.append(w.track(Payload()))
        report = w.report
        (finding,) = report.findings
        assert report.leak_groups is report.findings  # not rebuilt on each access
        assert finding.count == 2 and report.finding(finding.signature) is finding
        assert report.finding_sizes == {
            finding.signature: (finding.retained, finding.retained_objects)
        }
        site = reftrace.model.StoreSite((reftrace.model.Frame("app.py", 3, "f", "x.append(y)"),))
        finding.stored_at = site
        assert report.leak_groups[0].stored_at is site and report.stores == {
            finding.signature: site
        }
        again = reftrace.Report.from_dict(report.to_dict(mask=False))
        assert again.findings[0].stored_at == site
        assert again.finding_sizes == report.finding_sizes
        # A report made from leaks alone groups them itself.
        assert reftrace.Report(leaks=report.leaks).findings[0].count == 2
    finally:
        REGISTRY.clear()


def test_store_slots_are_asked_for_before_the_block_ends():
    slots: dict[tuple[str, str], list[object]] = {}
    watch = reftrace.Watch()
    watch.record_store_slots(slots)  # type: ignore[arg-type]
    try:
        with watch:
            REGISTRY.append(watch.track(Payload()))
        (finding,) = watch.report.findings
        assert ("leak", finding.signature) in slots  # live places, for reftrace.locate()
        slots.clear()
        with pytest.raises(RuntimeError, match="before the block ends"):
            watch.record_store_slots({})
    finally:
        REGISTRY.clear()


def test_a_result_with_no_renderer_says_so():
    from reftrace import views

    class Unknown(views.Shown):
        pass

    with pytest.raises(TypeError, match="no text renderer is registered for Unknown"):
        str(Unknown())
    with pytest.raises(TypeError, match="no HTML renderer is registered for Unknown"):
        Unknown()._repr_html_()
