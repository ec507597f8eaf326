"""``python -m reftrace.demo`` runs end to end: it finds the leak, draws it, and clears the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_finds_the_leak_writes_the_svg_and_clears_the_fixed_agent(tmp_path: Path) -> None:
    svg = tmp_path / "x.svg"
    proc = subprocess.run(
        [sys.executable, "-m", "reftrace.demo", "--svg", str(svg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout

    # The buggy agent: the trace starts at the module global and ends at the output.
    # 17 earlier requests leaked listeners [0] to [16]; the watched one is [17].
    assert "reftrace.demo.agent" in out
    assert "reftrace.demo.agent.AGENT.events._listeners['chunk'][17].__self__" in out
    assert "root: module reftrace.demo.agent" in out
    assert "ModelOutput" in out
    assert "buffered 101 chunks" in out
    # the suspect proved by cutting it, and the line that registered the listener
    # (with its 100 buffered chunks: the stream's items are tracked too)
    assert "proof: confirmed, cutting AGENT.events._listeners['chunk'][17] frees str ×100, " in out
    assert "ModelOutput ×1" in out.split("proof: confirmed")[1].splitlines()[0]
    assert 'in _open: self.events.on("chunk", output._on_chunk)' in out

    # The graph.
    assert str(svg) in out
    assert svg.is_file()
    drawing = svg.read_text(encoding="utf-8")
    assert "<svg" in drawing
    assert "ModelOutput" in drawing

    # The fixed agent: no leak.
    fixed = out[out.index("2. Fixed agent") :]
    assert "No leak" in fixed
    assert "ModelOutput leaked" not in fixed


def test_demo_default_svg_path_is_in_the_working_directory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reftrace.demo"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *_pythonpath()])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "reftrace-demo.svg").is_file()
    assert "<svg" in (tmp_path / "reftrace-demo.svg").read_text(encoding="utf-8")


def _pythonpath() -> list[str]:
    return [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
