"""Which interpreters reftrace can give a true answer on, checked at import.

reftrace reads CPython's generational collector (its generations, counts and
``gc.freeze()``), pymalloc's block count (``sys.getallocatedblocks()``) and
exact reference counts. A free-threaded build (3.13t, 3.14t) has none of
these as they are: one non-generational collector, mimalloc instead of
pymalloc, and reference counts split between the owning thread and the
others. Rather than give verdicts built on numbers that mean something else
there, ``import reftrace`` refuses with the reason.
"""

from __future__ import annotations

import sys
import sysconfig


class UnsupportedInterpreter(ImportError):
    """``import reftrace`` on an interpreter it cannot give true answers on."""


def unsupported_reason(
    implementation: str | None = None,
    version: tuple[int, int] | None = None,
    free_threaded: bool | None = None,
) -> str | None:
    """Why reftrace cannot run on this interpreter, or None when it can.

    The arguments default to the running interpreter's; tests pass others.
    """
    implementation = implementation or sys.implementation.name
    version = version or (sys.version_info[0], sys.version_info[1])
    if free_threaded is None:
        free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if implementation != "cpython":
        return (
            f"reftrace reads CPython's collector and allocator; {implementation} has "
            "neither. Run it on CPython 3.10 to 3.15."
        )
    if version < (3, 10):
        return f"reftrace needs CPython 3.10 or newer, this is {version[0]}.{version[1]}"
    if free_threaded:
        return (
            f"this is a free-threaded build of CPython {version[0]}.{version[1]}, which "
            "reftrace does not support: its collector has no generations and "
            "gc.freeze() differs, it allocates with mimalloc (no pymalloc block count), "
            "and its reference counts are split between threads, so reftrace's verdicts "
            "would rest on numbers that mean something else. Use the default build "
            f"(python{version[0]}.{version[1]}, not python{version[0]}.{version[1]}t)."
        )
    return None


def check() -> None:
    """Raise ``UnsupportedInterpreter`` when reftrace cannot run here."""
    reason = unsupported_reason()
    if reason is not None:
        raise UnsupportedInterpreter(reason)
