"""Interpreters reftrace refuses, with the reason, instead of giving wrong verdicts."""

from __future__ import annotations

import subprocess
import sys
import sysconfig

import pytest

from reftrace.interpreter import UnsupportedInterpreter, unsupported_reason


def test_this_interpreter_is_supported() -> None:
    assert unsupported_reason() is None


def test_a_free_threaded_build_is_refused_with_the_reason() -> None:
    reason = unsupported_reason(free_threaded=True, version=(3, 14))
    assert reason is not None
    assert "free-threaded build of CPython 3.14" in reason
    assert "python3.14, not python3.14t" in reason
    assert "generations" in reason


def test_other_implementations_and_old_versions_are_refused() -> None:
    assert "pypy has neither" in (unsupported_reason(implementation="pypy") or "")
    assert "3.10 or newer, this is 3.9" in (unsupported_reason(version=(3, 9)) or "")


@pytest.mark.skipif(
    bool(sysconfig.get_config_var("Py_GIL_DISABLED")), reason="this is a free-threaded build"
)
def test_import_refuses_a_free_threaded_build() -> None:
    # The build flag faked before the import, as a free-threaded build reports it.
    code = (
        "import sysconfig\n"
        "real = sysconfig.get_config_var\n"
        "sysconfig.get_config_var = lambda name: 1 if name == 'Py_GIL_DISABLED' else real(name)\n"
        "import reftrace\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("reftrace.interpreter.UnsupportedInterpreter: this is a free-threaded")
    assert issubclass(UnsupportedInterpreter, ImportError)
