"""Test sessions: the suite on every supported CPython found on this machine."""

from __future__ import annotations

import glob

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

nox.options.sessions = ["lint", "tests", "realworld", "docs"]
nox.options.reuse_existing_virtualenvs = True
# A missing interpreter is skipped with nox's own message ("Python interpreter
# 3.X not found"), on CI too, instead of failing the run.
nox.options.error_on_missing_interpreters = False


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The unit suite, once per interpreter."""
    session.install("-e", ".[test]")
    # The path property test runs 1,000 random heaps on 3.11 and 300 on the
    # others (their own layouts still checked), and the soak corpus runs with
    # soak()'s own budget on 3.11 and at most 100 calls a soak on the others
    # (enough to decide every leak of it), to keep the whole run short.
    examples = (
        {}
        if session.python == "3.11"
        else {"REFTRACE_PROPERTY_EXAMPLES": "300", "REFTRACE_SOAK_BUDGET": "100"}
    )
    # Two workers (pytest-xdist): each is a process of its own, so no two tests
    # running at once share the gc, tracemalloc or thread state they check.
    session.run(
        "python", "-m", "pytest", "-n", "2", "-m", "not realworld", *session.posargs, env=examples
    )


@nox.session(python="3.11")
def realworld(session: nox.Session) -> None:
    """Real leaks from public issue trackers, each in its own pinned venv."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-m", "realworld", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff (lint and formatting) and mypy --strict on the package."""
    session.install("-e", ".", "ruff", "mypy", "pytest")
    sources = ["reftrace", "_reftrace_pytestplugin.py", "tests", "bench", "noxfile.py"]
    session.run("mypy", "--strict", "reftrace", "_reftrace_pytestplugin.py")
    session.run("ruff", "check", *sources)
    session.run("ruff", "format", "--check", *sources)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The notebooks, executed end to end, then the site, with warnings as errors."""
    session.install("-e", ".[docs,tools]")
    # Executed fresh and not saved: the outputs stored in the notebooks are for reading.
    notebooks = sorted(glob.glob("notebooks/*.ipynb"))
    session.run("jupyter-execute", "--timeout=300", *notebooks)
    build = ["-W", "--keep-going", "-q", "-b", "html", "docs", "docs/_build/html"]
    session.run("sphinx-build", *build, *session.posargs)
