"""A real leak drawn with each layout program reftrace uses: the system's
Graphviz `dot` and the `graphviz-pure` port installed with reftrace. Both
drawings must name the root global and the leaked type."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import reftrace
from reftrace.demo import agent as demo
from reftrace.renderers import graph

FALLBACK = os.path.join(os.path.dirname(sys.executable), "graphviz-pure")


@pytest.fixture
def demo_leak() -> Iterator[reftrace.Report]:
    demo.install(demo.Bug.LISTENER)
    with reftrace.watch() as w:
        out = w.track(demo.AGENT.stream("hi"))
        for _chunk in out:
            pass
    yield w.report
    demo.reset()


def system_dot() -> str | None:
    found = shutil.which("dot")
    if found is None or os.path.realpath(found) == os.path.realpath(FALLBACK):
        return None
    return found


@pytest.mark.parametrize("program", ["system dot", "graphviz-pure"])
def test_a_real_leak_drawn_names_the_root_global_and_the_leaked_type(
    program: str, demo_leak: reftrace.Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if program == "system dot":
        chosen = system_dot()
        if chosen is None:
            pytest.skip(
                "no system Graphviz on PATH (./run tests installs it with apt-get where it "
                "can: as root on Debian or Ubuntu)"
            )
    else:
        chosen = FALLBACK
        assert os.path.exists(chosen), "graphviz-pure is installed with reftrace on Linux"
    monkeypatch.setenv(graph.DOT_ENV, chosen)
    assert graph.find_dot() == chosen
    written = demo_leak.render(tmp_path / "leak.svg")
    svg = Path(written).read_text(encoding="utf-8")
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg
    assert "AGENT" in svg  # the root global
    assert "reftrace.demo.agent" in svg  # its module
    assert "ModelOutput" in svg  # the leaked type
    assert "(suspect)" in svg
