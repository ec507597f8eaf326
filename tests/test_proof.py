"""Proof by cutting: the suspect reference removed in a forked copy, what dies,
what another path still holds, and when the proof cannot run."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import reftrace
from reftrace.demo import agent as demo
from reftrace.proof import Cut, cut_reference

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


class Output:
    def __init__(self) -> None:
        self.buffer = [f"chunk {i}" for i in range(120)]

    def on_chunk(self, chunk: str) -> None:
        self.buffer.append(chunk)


class Holder:
    pass


LISTENERS: dict[str, list[Any]] = {"chunk": []}
REGISTRY: list[Any] = []
BY_ID: dict[int, Any] = {}
SEEN: set[Any] = set()
PAIRS: list[tuple[Any, ...]] = []
HOLDER = Holder()


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    LISTENERS["chunk"].clear()
    REGISTRY.clear()
    BY_ID.clear()
    SEEN.clear()
    PAIRS.clear()
    HOLDER.__dict__.clear()
    demo.reset()


def proved(block: Callable[[reftrace.Watch], None]) -> reftrace.Report:
    with reftrace.watch(prove=True) as w:
        block(w)
    return w.report


def only_proof(report: reftrace.Report) -> reftrace.report.Proof:
    (group,) = report.leak_groups
    assert group.proof is not None
    return group.proof


def test_cutting_the_demo_listener_frees_the_output_and_its_buffered_chunks() -> None:
    demo.install(demo.Bug.LISTENER)

    def block(w: reftrace.Watch) -> None:
        out = w.track(demo.AGENT.stream("hi"))
        for _chunk in out:
            pass

    report = proved(block)
    proof = only_proof(report)
    assert proof.status == "confirmed", proof
    assert proof.cut == "AGENT.events._listeners['chunk']"
    assert proof.freed_types == [("ModelOutput", 1)]
    assert proof.freed_leaks == proof.leaks == 1
    # the output, its buffer list and its 101 buffered chunks (at least)
    assert proof.freed_objects > 100
    assert proof.freed_bytes > 5_000
    assert (
        "proof: confirmed, cutting AGENT.events._listeners['chunk'] frees ModelOutput ×1: "
        in str(report)
    )
    # the parent is untouched: the listener still holds the output here
    assert len(demo.AGENT.events._listeners["chunk"]) == 1
    assert report.leaks[0].object is not None


@pytest.mark.parametrize(
    ("store", "cut"),
    [
        (lambda out: REGISTRY.append(out), "REGISTRY[0]"),
        (lambda out: BY_ID.__setitem__(7, out), "BY_ID[7]"),
        (lambda out: setattr(HOLDER, "last", out), "HOLDER.last"),
        (lambda out: SEEN.add(out), "SEEN{...}"),
    ],
    ids=["list item", "dict value", "attribute", "set item"],
)
def test_each_kind_of_reference_is_cut(store: Callable[[Any], None], cut: str) -> None:
    def block(w: reftrace.Watch) -> None:
        store(w.track(Output()))

    proof = only_proof(proved(block))
    assert proof.status == "confirmed", proof
    assert proof.cut == cut
    assert proof.freed_types == [("Output", 1)]
    assert proof.freed_objects >= 122  # the output, its list and its 120 strings


def test_a_closure_cell_is_emptied() -> None:
    def block(w: reftrace.Watch) -> None:
        out = w.track(Output())

        def callback() -> Output:
            return out

        REGISTRY.append(callback)

    proof = only_proof(proved(block))
    assert proof.status == "confirmed", proof
    assert proof.cut == "REGISTRY[0]"


def test_a_cell_already_old_is_emptied() -> None:
    out_cell: list[Any] = []

    def make() -> Callable[[], Any]:
        value: Any = None

        def get() -> Any:
            return value

        def put(new: Any) -> None:
            nonlocal value
            value = new

        out_cell.append(put)
        return get

    REGISTRY.append(make())

    def block(w: reftrace.Watch) -> None:
        out_cell[0](w.track(Output()))

    proof = only_proof(proved(block))
    assert proof.status == "confirmed", proof
    assert proof.cut == "REGISTRY[0].__closure__[0].cell_contents"
    assert proof.freed_types == [("Output", 1)]


def test_not_sufficient_when_another_path_still_holds_the_leak() -> None:
    def block(w: reftrace.Watch) -> None:
        out = w.track(Output())
        LISTENERS["chunk"].append(out.on_chunk)  # the shortest path
        HOLDER.archive = [[[out]]]  # a longer one

    report = proved(block)
    proof = only_proof(report)
    assert proof.status == "not sufficient", proof
    assert proof.cut == "LISTENERS['chunk'][0]"
    assert proof.freed_leaks == 0 and proof.leaks == 1
    assert proof.remaining is not None
    assert proof.remaining.expression == "HOLDER.archive[0][0][0]"
    text = str(report)
    assert "proof: not sufficient, after cutting LISTENERS['chunk'][0]" in text
    assert "archive" in text.split("proof: not sufficient")[1]


def test_unavailable_while_other_threads_run() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, name="busy-worker")
    worker.start()
    try:
        proof = only_proof(proved(lambda w: REGISTRY.append(w.track(Output()))))
    finally:
        stop.set()
        worker.join()
    assert proof.status == "unavailable"
    assert "1 other thread is running (busy-worker)" in proof.reason
    assert proof.cut == "REGISTRY[0]"


def test_unavailable_without_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "fork")
    report = proved(lambda w: REGISTRY.append(w.track(Output())))
    proof = only_proof(report)
    assert proof.status == "unavailable"
    assert proof.reason == "os.fork is not available on this platform"
    assert "proof: unavailable (os.fork is not available on this platform); " in str(report)
    assert "the suspect is the heuristic one" in str(report)


def test_unavailable_when_the_reference_cannot_be_removed() -> None:
    out = Output()
    for holder in (("kept", out), frozenset([out])):
        cut = Cut(holder, out, "[1]")
        assert cut_reference(cut) == f"a {type(holder).__name__} cannot be changed"
    assert "cannot be removed" in cut_reference(Cut(3 + 4j, out, "<referent of complex>"))


def test_unavailable_when_held_from_c() -> None:
    """Held from C (here: a reference count taken with ctypes): nothing to cut."""
    kept: list[Any] = []

    def block(w: reftrace.Watch) -> None:
        out = w.track(Output())
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(out))
        kept.append(id(out))

    report = proved(block)
    try:
        proof = only_proof(report)
        assert proof.status == "unavailable"
        assert proof.reason == (
            "the reference is one the gc cannot see (C code): nothing to cut from Python"
        )
    finally:
        obj = report.leaks[0].object
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(obj))


def test_proofs_survive_json_and_old_reports_still_load() -> None:
    report = proved(lambda w: REGISTRY.append(w.track(Output())))
    data = report.to_dict()
    again = reftrace.Report.from_dict(data)
    assert again.proofs == report.proofs
    assert again.leak_groups[0].proof == report.leak_groups[0].proof
    del data["proofs"]
    assert reftrace.Report.from_dict(data).proofs == {}
    data = report.to_dict()
    (signature,) = data["proofs"]
    data["proofs"][signature]["freed_objects"] = "many"
    with pytest.raises(reftrace.ReportFormatError, match="freed_objects: expected int"):
        reftrace.Report.from_dict(data)
    data = report.to_dict()
    data["proofs"][signature]["status"] = "probably"
    with pytest.raises(reftrace.ReportFormatError, match="status: expected one of confirmed"):
        reftrace.Report.from_dict(data)


def test_off_by_default_and_checked() -> None:
    with reftrace.watch() as w:
        REGISTRY.append(w.track(Output()))
    assert w.report.proofs == {}
    assert w.report.leak_groups[0].proof is None
    with pytest.raises(TypeError, match="prove must be a bool"):
        reftrace.watch(prove="yes")  # type: ignore[arg-type]


def test_the_watching_functions_own_handles_do_not_hide_what_a_cut_frees() -> None:
    """`out` still names the output when the block ends: a handle of the
    watching function, gone when it returns. The child unbinds it before it
    decides what dies."""
    with reftrace.watch(prove=True) as w:
        out = w.track(Output())
        LISTENERS["chunk"].append(out.on_chunk)
    proof = only_proof(w.report)
    assert proof.status == "confirmed", proof
    assert proof.freed_types == [("Output", 1)]
    assert proof.freed_objects >= 122
    assert out.buffer  # and here, in the parent, `out` is untouched


MODULE_LEVEL = """
import reftrace

class Output:
    def __init__(self):
        self.buffer = [f"chunk {i}" for i in range(120)]

LISTENERS = []
with reftrace.watch(prove=True) as w:
    out = w.track(Output())
    LISTENERS.append(out)
proof = w.report.leak_groups[0].proof
print(proof.status, proof.cut, proof.freed_objects >= 122, out is LISTENERS[0])
"""


def test_at_module_level_the_blocks_new_globals_are_handles(tmp_path: Any) -> None:
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(MODULE_LEVEL)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["confirmed", "LISTENERS[0]", "True", "True"]


@pytest.mark.heavy
def test_at_most_max_proofs_findings_are_proved() -> None:
    from reftrace.analysis import MAX_PROOFS

    holders = [Holder() for _ in range(MAX_PROOFS + 2)]
    REGISTRY.append(holders)

    def block(w: reftrace.Watch) -> None:
        for i, holder in enumerate(holders):
            setattr(holder, f"attr{i}", w.track(Output()))

    report = proved(block)
    statuses = [group.proof.status for group in report.leak_groups if group.proof]
    assert len(statuses) == MAX_PROOFS + 2
    assert statuses.count("confirmed") == MAX_PROOFS
    skipped = [g.proof for g in report.leak_groups if g.proof and g.proof.status != "confirmed"]
    assert all("only the first 20 findings are proved" in p.reason for p in skipped)
