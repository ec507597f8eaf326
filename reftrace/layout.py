"""Graphviz: finding a layout program and running it on DOT source.

The program is the one named by the ``REFTRACE_DOT`` environment variable
when set, else the system's ``dot``, else the ``graphviz-pure`` command that
reftrace's install brings along.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

#: Environment variable naming the layout program to use (a path or a name on PATH).
DOT_ENV = "REFTRACE_DOT"


class GraphvizNotFound(RuntimeError):
    """No Graphviz layout program could be found or run."""


def find_dot() -> str | None:
    """The layout program: ``$REFTRACE_DOT``, else system ``dot``, else ``graphviz-pure``.

    When ``REFTRACE_DOT`` is set, nothing else is tried: it must name an
    executable (a path, or a name found on ``PATH``), or there is none.
    """
    chosen = os.environ.get(DOT_ENV)
    if chosen:
        return shutil.which(chosen)
    system = shutil.which("dot")
    if system:
        return system
    beside = os.path.join(os.path.dirname(sys.executable), "graphviz-pure")
    if os.path.exists(beside):
        return beside
    return shutil.which("graphviz-pure")


def missing_dot_message() -> str:
    """Why no layout program was found, and how to get one."""
    chosen = os.environ.get(DOT_ENV)
    if chosen:
        where = f"{DOT_ENV}={chosen!r} names no executable program"
    else:
        where = "no `dot` on PATH and no `graphviz-pure` beside Python"
    return (
        f"no Graphviz layout program found ({where}): install Graphviz "
        "(apt-get install graphviz, brew install graphviz, or https://graphviz.org/download/), "
        f"or `pip install graphviz-pure`, or set {DOT_ENV} to a `dot` executable"
    )


def layout(source: str, fmt: str, timeout: float = 120) -> bytes:
    """Run the layout program on DOT ``source``; the drawing in ``fmt`` (svg, png).

    Raises ``GraphvizNotFound`` when there is no layout program, and
    ``RuntimeError`` when it fails or takes longer than ``timeout`` seconds.
    """
    dot = find_dot()
    if dot is None:
        raise GraphvizNotFound(missing_dot_message())
    try:
        result = subprocess.run(
            [dot, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{dot} took longer than {timeout:g} s to lay out the graph") from None
    except OSError as error:
        raise GraphvizNotFound(f"cannot run {dot}: {error}; {missing_dot_message()}") from None
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip()[:2000]
        raise RuntimeError(f"{dot} failed (exit status {result.returncode}): {message}")
    return result.stdout
