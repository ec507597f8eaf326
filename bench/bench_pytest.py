"""What the pytest plugin adds to a test run, against the same tests without it.

    python bench/bench_pytest.py                # 200 tests, 5 runs of each mode
    python bench/bench_pytest.py --tests 500 --repeat 3

Writes a small project to a temporary directory (a module that streams an
output through a listener it removes, and ``--tests`` tests that each stream
one output) and runs ``pytest -q -p no:cacheprovider`` on it as a whole
process, once per mode:

- plain: the tests as they are (the plugin is loaded and does nothing);
- fixture: each test takes ``reftrace_watch`` and tracks its output;
- no_leaks: each test is marked ``@pytest.mark.no_leaks`` (a warm-up run,
  then a watched run with survivors);
- no_leaks(warmup=0): the watched run only.

Prints the median wall time per mode, the time per test, and the ratio to
plain, all measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

LIBRARY = textwrap.dedent(
    """
    class Emitter:
        def __init__(self):
            self._listeners = {"chunk": []}

        def on(self, fn):
            self._listeners["chunk"].append(fn)

        def off(self, fn):
            self._listeners["chunk"].remove(fn)


    class Output:
        def __init__(self):
            self.chunks = [f"chunk {i}" for i in range(120)]

        def on_chunk(self, chunk):
            self.chunks.append(chunk)


    EVENTS = Emitter()


    def stream():
        out = Output()
        EVENTS.on(out.on_chunk)
        EVENTS.off(out.on_chunk)
        return out
    """
)

MODES = {
    "plain": ("", "", "out = streamlib.stream()"),
    "fixture": ("", ", reftrace_watch", "out = reftrace_watch.track(streamlib.stream())"),
    "no_leaks": ("@pytest.mark.no_leaks", "", "out = streamlib.stream()"),
    "no_leaks(warmup=0)": ("@pytest.mark.no_leaks(warmup=0)", "", "out = streamlib.stream()"),
}


def test_file(mode: str, tests: int) -> str:
    mark, args, body = MODES[mode]
    return textwrap.dedent(
        f"""
        import pytest
        import streamlib

        {mark}
        @pytest.mark.parametrize("n", range({tests}))
        def test_stream(n{args}):
            {body}
            assert len(out.chunks) == 120
        """
    )


def run_once(directory: Path, mode: str, tests: int) -> float:
    (directory / "test_bench.py").write_text(test_file(mode, tests), encoding="utf-8")
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_bench.py"],
        cwd=directory,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(directory)},
    )
    elapsed = time.perf_counter() - t0
    if result.returncode != 0 or f"{tests} passed" not in result.stdout:
        raise SystemExit(f"{mode}: the tests did not pass\n{result.stdout}{result.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=200, help="tests per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per mode (medians)")
    args = parser.parse_args()
    if args.tests < 1 or args.repeat < 1:
        parser.error("--tests and --repeat must be at least 1")
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        (directory / "streamlib.py").write_text(LIBRARY, encoding="utf-8")
        (directory / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n", encoding="utf-8"
        )
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.repeat):  # modes interleaved: drift hits each alike
            for mode in MODES:
                times[mode].append(run_once(directory, mode, args.tests))
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"{args.tests} tests, medians of {args.repeat} runs"
    )
    plain = statistics.median(times["plain"])
    print(f"{'mode':<20} {'wall':>8} {'per test':>9} {'added/test':>11} {'ratio':>6}")
    for mode, values in times.items():
        wall = statistics.median(values)
        added = (wall - plain) / args.tests
        print(
            f"{mode:<20} {wall:>7.2f}s {wall / args.tests * 1000:>7.1f}ms "
            f"{added * 1000:>9.1f}ms {wall / plain:>5.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
