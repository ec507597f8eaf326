"""Every example in the README runs as shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)
PYTHON_BLOCKS = [body for lang, body in BLOCKS if lang == "python"]
SIZE = re.compile(r"\d+(\.\d+)? (B|KB|MB)")


def run_python(code: str, cwd: Path) -> str:
    (cwd / "example.py").write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "example.py"], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_first_example_prints_what_the_readme_shows(tmp_path):
    shown = BLOCKS[[i for i, (lang, _) in enumerate(BLOCKS) if lang == "python"][0] + 1][1]
    printed = run_python(PYTHON_BLOCKS[0], tmp_path)
    if sys.version_info[:2] == (3, 11):
        assert printed == shown
    else:
        # Object sizes and allocation counts differ between CPython versions
        # (3.10 instances carry a dict); the leak trace itself must not.
        leak_part = lambda text: SIZE.sub("<size>", text.split("\nsurvivors:")[0])  # noqa: E731
        assert leak_part(printed) == leak_part(shown)


def test_usage_example_runs_and_finds_the_listener(tmp_path):
    printed = run_python(PYTHON_BLOCKS[1], tmp_path)
    assert printed.strip() == "AGENT.events._listeners['chunk'][0].__self__"
    assert (tmp_path / "leak.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_run_demo_command(tmp_path):
    """`./run demo` (the README's first command) installs and runs the demo."""
    svg = tmp_path / "demo.svg"
    result = subprocess.run(
        ["bash", str(ROOT / "run"), "demo", "--svg", str(svg)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "AGENT.events._listeners['chunk'][17].__self__" in result.stdout
    assert "ModelOutput" in svg.read_text(encoding="utf-8")


def test_watch_module_example_prints_what_it_says(tmp_path):
    import importlib
    import textwrap

    doc = importlib.import_module("reftrace.watch").__doc__ or ""
    said = doc.split("it prints ``")[1].split("``")[0]
    code = textwrap.dedent(doc.split("::\n")[1])
    assert run_python(code, tmp_path).strip() == said


def test_soak_example_finds_the_growing_listener_list(tmp_path):
    code = next(body for body in PYTHON_BLOCKS if "reftrace.soak(" in body)
    printed = run_python(code, tmp_path)
    shown = BLOCKS[[body for _, body in BLOCKS].index(code) + 1][1]

    # The verdict, the container and the projection rows are the README's;
    # counts of objects alive, timings and (off 3.11) sizes and per-iteration
    # object counts are this process's (3.10 instances carry a dict). So is
    # malloc's growth, and whether it is named at all: glibc may serve the
    # run's blocks from memory it already had (seen once on 3.15).
    def first(text: str) -> str:
        line = SIZE.sub("<size>", text.splitlines()[0]).replace(" and +<size> of malloc", "")
        return re.sub(r"\d+", "N", line)

    assert first(printed) == first(shown)
    assert "  reftrace.demo.agent.AGENT.events._listeners['chunk']\n" in printed
    for row in ("1,000", "10,000", "100,000"):
        assert any(line.strip().startswith(row) for line in printed.splitlines())


def test_pytest_example_fails_as_shown_and_passes_once_fixed(tmp_path):
    code = next(body for body in PYTHON_BLOCKS if "reftrace_soak" in body)
    shown = BLOCKS[[body for _, body in BLOCKS].index(code) + 1][1]

    def run_pytest(source):
        (tmp_path / "test_agent.py").write_text(source, encoding="utf-8")
        # as a developer's terminal shows it (on CI the summary repeats each message)
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "BUILD_NUMBER")}
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_agent.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )

    result = run_pytest(code)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 failed" in result.stdout
    title = shown.splitlines()[0]
    first = result.stdout.split(title)[1].split("\n___")[0]

    def normal(text):
        text = re.sub(r"allocated at \S*agent\.py:\d+", "allocated at agent.py:N", text)
        return SIZE.sub("<size>", text) if sys.version_info[:2] != (3, 11) else text

    assert normal(first.strip()) == normal(shown.split(title)[1].strip())
    fixed = run_pytest(code.replace("demo.Bug.LISTENER", "demo.Bug.NONE"))
    assert fixed.returncode == 0, fixed.stdout
    assert "3 passed" in fixed.stdout
