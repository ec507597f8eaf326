"""Test sessions: the suite on every supported CPython found on this machine."""

from __future__ import annotations

import glob

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
#: The interpreters that share the heavy tests between them (3.11 runs them all).
SHARED = [python for python in PYTHONS if python != "3.11"]

nox.options.sessions = ["lint", "tests", "realworld", "notebooks", "docs"]
nox.options.reuse_existing_virtualenvs = True
# A missing interpreter is skipped with nox's own message ("Python interpreter
# 3.X not found"), on CI too, instead of failing the run.
nox.options.error_on_missing_interpreters = False


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The unit suite, once per interpreter."""
    session.install("-e", ".[test]")
    # To keep the whole run short: the path property test runs 1,000 random
    # heaps on 3.11 and 300 on the others (their own layouts still checked);
    # the soak corpus runs with soak()'s own budget on 3.11 and at most 100
    # calls a soak on the others (enough to decide every leak of it); and the
    # tests marked heavy all run on 3.11, and each on one other interpreter
    # (tests/conftest.py).
    examples = (
        {}
        if session.python == "3.11"
        else {
            "REFTRACE_PROPERTY_EXAMPLES": "300",
            "REFTRACE_SOAK_BUDGET": "100",
            "REFTRACE_HEAVY_SHARD": f"{SHARED.index(session.python)}/{len(SHARED)}",
        }
    )
    # Two workers (pytest-xdist): each is a process of its own, so no two tests
    # running at once share the gc, tracemalloc or thread state they check.
    # loadgroup: the tests of one xdist_group (the Dask cluster's) share a worker.
    session.run(
        "python",
        "-m",
        "pytest",
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "-m",
        "not realworld",
        *session.posargs,
        env=examples,
    )


@nox.session(python="3.11")
def realworld(session: nox.Session) -> None:
    """Real leaks from public issue trackers, each in its own pinned venv."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-m", "realworld", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff (lint and formatting) and mypy --strict on the package."""
    session.install("-e", ".[dask]", "ruff", "mypy", "pytest")
    sources = ["reftrace", "_reftrace_pytestplugin.py", "tests", "bench", "tools", "noxfile.py"]
    session.run("mypy", "--strict", "reftrace", "_reftrace_pytestplugin.py", "tools")
    session.run("ruff", "check", *sources)
    session.run("ruff", "format", "--check", *sources)


@nox.session(python=["3.14", "3.15"])
def notebooks(session: nox.Session) -> None:
    """The notebooks, executed end to end on the newest interpreters (docs runs them on 3.11)."""
    session.install("-e", ".[tools,dask]", "nbclient>=0.10", "ipykernel>=6.29")
    session.run("jupyter-execute", "--timeout=300", *sorted(glob.glob("notebooks/*.ipynb")))


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The notebooks, executed end to end, then the site, with warnings as errors."""
    session.install("-e", ".[docs,tools,dask]")
    # Executed fresh and not saved: the outputs stored in the notebooks are for reading.
    notebooks = sorted(glob.glob("notebooks/*.ipynb"))
    session.run("jupyter-execute", "--timeout=300", *notebooks)
    build = ["-W", "--keep-going", "-q", "-b", "html", "docs", "docs/_build/html"]
    session.run("sphinx-build", *build, *session.posargs)
