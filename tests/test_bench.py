"""bench/bench_watch.py --quick: every tool runs on the same heap and finds the planted leaks.

No timing is asserted: the smoke test only keeps the comparison runnable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("objgraph")
pytest.importorskip("guppy")
pytest.importorskip("pympler")

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_watch.py"
#: The start of each row's label in the table, one row per tool.
ROWS = (
    "reftrace: clean watch",
    "reftrace: 10-leak watch",
    "reftrace: 5,000-survivor watch",
    "objgraph:",
    "guppy3:",
    "pympler:",
    "tracemalloc:",
)


def test_quick_bench_runs_every_tool_and_each_finds_the_leaks() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.split("\ntargets")[0].splitlines()
    verdicts = {}
    for label in ROWS:
        [row] = [line for line in table if label in line]
        verdicts[label] = row.rstrip()
    guppy = verdicts.pop("guppy3:")
    for label, row in verdicts.items():
        assert row.endswith(" ok"), f"{label} check failed:\n{done.stdout}"
    if "guppy3 does not work" in guppy:
        pytest.skip(guppy[guppy.index("guppy3 does not work") :])
    assert guppy.endswith(" ok"), f"guppy3 check failed:\n{done.stdout}"
