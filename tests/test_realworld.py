"""reftrace against real leaks in released libraries.

Each test takes one release of a real library (see ``tests/realworld/cases.py``
and its README): a release that leaked by reference retention, the release
that fixed it, or a library that keeps memory on purpose in a bounded cache.
The release is installed from PyPI into its own cached venv under
``.realworld-venvs/`` (with ``-e`` of this repo), the lifecycle runs once
without reftrace for the ground truth and once inside ``reftrace.watch()``,
and the verdicts must match: a leak, from the right root and naming the
holding reference, for a leaking release; no leak for the others.

The first run needs PyPI and takes a few minutes (the venvs are built three at
a time); later runs reuse the venvs. ``REFTRACE_SKIP_REALWORLD=1`` skips them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

_RUNNER = Path(__file__).resolve().parent / "realworld" / "run.py"


def _load_runner() -> Any:
    name = "reftrace_realworld_run"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
PAIRS = runner.cases.pairs()
PYTHON = sys.version_info[:2]

pytestmark = [
    pytest.mark.realworld,
    pytest.mark.skipif(
        os.environ.get("REFTRACE_SKIP_REALWORLD") == "1", reason="REFTRACE_SKIP_REALWORLD=1"
    ),
]


def _excerpt(text: str, lines: int = 40) -> str:
    head = text.splitlines()[:lines]
    more = len(text.splitlines()) - len(head)
    return "\n".join(head) + (f"\n... ({more} more lines)" if more > 0 else "")


@pytest.fixture(scope="module")
def venv_errors(request: pytest.FixtureRequest) -> dict[tuple[str, str], str]:
    """Build the venvs the selected tests need, three at a time, before the first one runs."""
    wanted: dict[tuple[str, str], Any] = {}
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or getattr(item, "module", None) is not request.module:
            continue
        case, version = callspec.params["case"], callspec.params["version"]
        if case.unsupported(version, PYTHON) is None:
            wanted[(case.name, version)] = case
    errors: dict[tuple[str, str], str] = {}

    def build(key: tuple[str, str]) -> None:
        try:
            runner.ensure_venv(wanted[key], key[1])
        except runner.SetupError as exc:
            errors[key] = str(exc)

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(build, wanted))
    return errors


@pytest.mark.parametrize(
    ("case", "version", "role"),
    PAIRS,
    ids=[f"{case.name}-{version}-{role}" for case, version, role in PAIRS],
)
def test_realworld(
    case: Any, version: str, role: str, venv_errors: dict[tuple[str, str], str]
) -> None:
    why_not = case.unsupported(version, PYTHON)
    if why_not:
        pytest.skip(why_not)
    if (case.name, version) in venv_errors:
        error = venv_errors[case.name, version]
        pytest.fail(f"could not build the venv for {case.package}=={version}:\n{error}")

    result = runner.run_pair(case, version, role)
    assert result.error is None, result.error
    plain, watched = result.plain, result.watched

    # The ground truth first: if the release does not behave as the case says,
    # the case proves nothing about reftrace.
    assert plain["weakref_alive"] is (role == "leaking"), (
        f"ground truth broken: {case.package} {version} ({role}), alive: {plain['alive']}"
    )
    if role == "bounded":
        assert all(plain["kept_alive"]), (
            "the bounded cache kept nothing alive: the case exercises nothing"
        )

    assert watched["reftrace"], (
        f"reftrace.watch not usable in the venv: {watched['reftrace_unavailable']}"
    )
    if role == "leaking":
        traces = "\n\n".join(watched.get("leak_traces") or [])
        assert watched["leaked"] is True, (
            f"no leak reported for {case.package} {version}:\n{_excerpt(watched['trace'])}"
        )
        assert watched["weakref_alive"], "the tracked object died in the watched run"
        assert case.holder in watched["trace"], (
            f"the trace does not name {case.holder!r}:\n{traces}"
        )
        roots = {leak["root"] for leak in watched["leaks"]}
        assert case.root in roots, f"leak root {roots}, expected {case.root!r}:\n{traces}"
    else:
        assert watched["leaked"] is False, (
            f"false alarm on {case.package} {version} ({role}):\n{_excerpt(watched['trace'])}"
        )
        assert not watched["weakref_alive"], (
            "reftrace kept a tracked object alive (collected without it)"
        )
    assert result.problems == []
