"""tools/debian_python.py: what ./run tests does for a CPython this machine lacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "debian_python.py"


def provide(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "REFTRACE_PYTHON_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(
        [sys.executable, str(TOOL), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


def test_an_installed_version_is_left_to_the_path(tmp_path: Path) -> None:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    done = provide(version, tmp_path=tmp_path, PATH=path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (tmp_path / "cache").exists()


def test_a_version_that_cannot_be_had_is_named_and_the_run_goes_on(tmp_path: Path) -> None:
    # Nothing listens on port 9 of this machine: the package list cannot come.
    done = provide("3.99", tmp_path=tmp_path, REFTRACE_DEBIAN_MIRROR="http://127.0.0.1:9/debian")
    assert done.returncode == 0
    assert done.stdout == ""
    assert done.stderr.startswith("note: CPython 3.99 is not tested here: ")
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_version_that_is_not_one_is_refused(tmp_path: Path) -> None:
    done = provide("3.x", tmp_path=tmp_path)
    assert done.returncode == 2
    assert "not a CPython version: '3.x'" in done.stderr
