"""The ``reftrace`` command: exit status 0 clean, 1 leaking, 2 error; clear messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reftrace.__main__ import main

SERVICE = textwrap.dedent(
    """
    import asyncio

    SESSIONS = []
    RECENT = []

    def handle():
        SESSIONS.append({"user": "u", "history": [1, 2, 3]})

    def clean():
        return {"user": "u", "history": [1, 2, 3]}

    def keep():
        reply = {"user": "u"}
        SESSIONS.append(reply)
        return reply

    def stream():
        for i in range(3):
            item = [i]
            RECENT.append(item)
            yield item

    async def handle_async():
        await asyncio.sleep(0)
        SESSIONS.append([1, 2])

    def parse_request():
        return _decode(b"{not json")

    def _decode(raw):
        raise ValueError(f"bad request body: {raw!r}")

    LIMIT = 3

    import random
    _rng = random.Random(1)
    SEEN = {}
    WORDS = [f"word{i}" for i in range(60)]

    def lookup():
        # A vocabulary of 60 words: it grows more slowly with every call, and
        # 20 calls do not see it stop.
        for _ in range(6):
            word = _rng.choice(WORDS)
            SEEN.setdefault(word, [word])
    """
)


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "service.py").write_text(SERVICE, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", "reftrace", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_soak_of_a_leak_exits_1_with_the_report(tmp_path: Path) -> None:
    proc = run(tmp_path, "soak", "service:handle", "-n", "20")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("leaking (")
    assert "service.SESSIONS" in proc.stdout
    assert "projection at the measured rate" in proc.stdout
    assert proc.stderr == ""  # no progress bar: stderr is not a terminal


def test_soak_of_a_clean_function_exits_0(tmp_path: Path) -> None:
    proc = run(tmp_path, "soak", "service:clean", "-n", "20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("not leaking (")


def test_soak_of_a_coroutine_function_and_a_file_path(tmp_path: Path) -> None:
    proc = run(tmp_path, "soak", "./service.py:handle_async", "-n", "20")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "service.SESSIONS" in proc.stdout


def test_soak_that_cannot_decide_exits_3_and_says_how_to_settle_it(tmp_path: Path) -> None:
    proc = run(tmp_path, "soak", "service:lookup", "-n", "20", "--max-iterations", "20")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.startswith("inconclusive (")
    assert "to settle it: reftrace.soak(fn, iterations=" in proc.stdout


def test_soak_writes_json_and_svg(tmp_path: Path) -> None:
    proc = run(
        tmp_path, "soak", "service:handle", "-n", "16", "--json", "out.json", "--svg", "out.svg"
    )
    assert proc.returncode == 1, proc.stderr
    data = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert data["leaking"] is True
    assert data["containers"][0]["name"] == "service.SESSIONS"
    assert data["requested"] == 16
    assert len(data["objects"]) == data["iterations"] + 1
    root = ET.fromstring((tmp_path / "out.svg").read_text(encoding="utf-8"))
    assert root.tag.endswith("svg")
    assert "out.svg" in proc.stdout and "out.json" in proc.stdout


def test_watch_exit_status_follows_the_tracked_return_value(tmp_path: Path) -> None:
    leaked = run(tmp_path, "watch", "service:keep", "--json", "watch.json")
    assert leaked.returncode == 1, leaked.stderr
    assert "dict leaked" in leaked.stdout
    assert "root: module service" in leaked.stdout
    [leak] = json.loads((tmp_path / "watch.json").read_text(encoding="utf-8"))["leaks"]
    assert leak["path"]["expression"] == "SESSIONS[0]"

    clean = run(tmp_path, "watch", "service:clean")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.startswith("no leaks (1 tracked, 1 collected)")


def test_watch_consumes_a_generator_and_tracks_its_items(tmp_path: Path) -> None:
    proc = run(tmp_path, "watch", "service:stream")
    assert proc.returncode == 1, proc.stderr
    assert "3 leaked objects in 1 finding" in proc.stdout
    assert "├─ RECENT" in proc.stdout


def test_missing_module(tmp_path: Path) -> None:
    proc = run(tmp_path, "soak", "no_such_service:handle")
    assert proc.returncode == 2
    assert "no module named 'no_such_service'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_file(tmp_path: Path) -> None:
    proc = run(tmp_path, "watch", "./missing.py:handle")
    assert proc.returncode == 2
    assert "no such file: ./missing.py" in proc.stderr


def test_missing_function_lists_what_is_there(tmp_path: Path) -> None:
    proc = run(tmp_path, "soak", "service:handel")
    assert proc.returncode == 2
    assert "module 'service' has no attribute 'handel'" in proc.stderr
    assert "handle" in proc.stderr.split("functions in it:")[1]


def test_not_a_function(tmp_path: Path) -> None:
    proc = run(tmp_path, "soak", "service:LIMIT")
    assert proc.returncode == 2
    assert "service:LIMIT is a int, not a function" in proc.stderr


def test_a_function_that_raises_shows_its_traceback(tmp_path: Path) -> None:
    for command in ("soak", "watch"):
        proc = run(tmp_path, command, "service:parse_request")
        assert proc.returncode == 2, proc.stdout
        err = proc.stderr
        assert err.startswith("Traceback (most recent call last):"), err
        assert 'service.py", line' in err and "in _decode" in err
        assert "ValueError: bad request body: b'{not json'" in err
        assert "reftrace/soak.py" not in err  # the traceback starts in the program
        assert err.rstrip().endswith("raised ValueError")


def test_a_module_that_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import json\nraise RuntimeError('no config')\n")
    proc = run(tmp_path, "soak", "broken:handle")
    assert proc.returncode == 2
    assert "RuntimeError: no config" in proc.stderr
    assert "importing module 'broken' raised RuntimeError" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["soak", "service:handle", "-n", "0"], "must be a positive integer, got '0'"),
        (["soak", "service:handle", "-n", "abc"], "must be a positive integer, got 'abc'"),
        (["soak", "service:handle", "--warmup", "-2"], "must be an integer >= 0, got '-2'"),
        (["soak", "service:handle", "-n", "5", "--warmup", "5"], "must be less than"),
        (["soak", "service:handle", "-n", "50", "--max-iterations", "20"], "must be at least"),
        (["soak", "service:handle", "--max-seconds", "0"], "must be a positive number"),
        (["soak", "service"], "expected MODULE:FUNCTION, got 'service'"),
        (["soak", "service:handle", "--svg", "no/such/dir/x.svg"], "does not exist"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    tmp_path: Path, monkeypatch, capsys, args, message
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "service.py").write_text(SERVICE, encoding="utf-8")
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_help_exits_0(capsys) -> None:
    assert main(["soak", "--help"]) == 0
    assert "MODULE:FUNCTION" in capsys.readouterr().out


def test_demo_command(tmp_path: Path) -> None:
    proc = run(tmp_path, "demo", "--svg", "demo.svg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "AGENT.events._listeners['chunk'][17].__self__" in proc.stdout
    assert "ModelOutput" in (tmp_path / "demo.svg").read_text(encoding="utf-8")


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("reftrace")
    if not script.exists():
        found = shutil.which("reftrace")
        assert found, "the reftrace console script is not installed"
        script = Path(found)
    (tmp_path / "service.py").write_text(SERVICE, encoding="utf-8")
    proc = subprocess.run(
        [str(script), "soak", "service:clean", "-n", "12"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("not leaking (")
