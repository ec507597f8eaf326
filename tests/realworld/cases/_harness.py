"""Shared plumbing for the real-world case scripts.

A case script defines one *lifecycle* of a real library (open a log file, lint
a file, create and dispose of a database engine, ...) and hands it to
:func:`run`. The lifecycle receives two callbacks:

- ``track(obj)``: ``obj`` must be collectable once the lifecycle is over. It is
  passed to ``reftrace``'s ``w.track`` and also watched with a plain weak
  reference, which gives the ground truth (``weakref_alive``).
- ``keep(obj)``: ``obj`` is kept alive *on purpose* by the library (a bounded
  cache entry, a registry). It is not tracked by reftrace; only a weak
  reference records whether it is still alive, to show the retention is real.

:func:`run` prints one JSON line on stdout. With ``REFTRACE_REALWORLD_PLAIN=1``
in the environment, or when ``reftrace.watch`` cannot be imported, the
lifecycle runs without reftrace and ``leaked`` is ``null``: only the ground
truth is computed.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import time
import traceback
import weakref
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

Track = Callable[[Any], Any]
Lifecycle = Callable[[Track, Track], "dict[str, Any] | None"]


def _load_reftrace() -> tuple[Any, str]:
    """``(module, "")`` when reftrace.watch is usable, else ``(None, why)``."""
    if os.environ.get("REFTRACE_REALWORLD_PLAIN"):
        return None, "plain mode requested (REFTRACE_REALWORLD_PLAIN)"
    try:
        import reftrace

        reftrace.watch  # noqa: B018 - the attribute is the contract
    except Exception as exc:  # ImportError, AttributeError, or a broken engine
        return None, f"{type(exc).__name__}: {exc}"
    return reftrace, ""


def _leak_facts(leak: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {"type": getattr(leak, "type_name", "?")}
    path = getattr(leak, "path", None)
    if path is None:
        facts.update(root=None, expression=None, reason=getattr(leak, "reason", ""))
        return facts
    try:
        facts["root"] = path.root.kind
        facts["root_name"] = path.root.name
    except Exception as exc:
        facts["root"] = f"<error {type(exc).__name__}: {exc}>"
    try:
        facts["expression"] = path.expression
    except Exception as exc:
        facts["expression"] = f"<error {type(exc).__name__}: {exc}>"
    try:
        suspect = path.suspect
        facts["suspect"] = suspect.label if suspect is not None else None
    except Exception:
        facts["suspect"] = None
    return facts


def run(
    case: str, distribution: str, lifecycle: Lifecycle, setup: Callable[[], None] | None = None
) -> None:
    """Run ``lifecycle`` once (inside ``reftrace.watch`` when available) and print the verdict."""
    result: dict[str, Any] = {
        "case": case,
        "package": distribution,
        "package_version": version(distribution),
        "python": platform.python_version(),
    }
    if setup is not None:
        setup()

    reftrace, unavailable = _load_reftrace()
    tracked: list[weakref.ref[Any]] = []
    kept: list[weakref.ref[Any]] = []

    def keep(obj: Any) -> Any:
        kept.append(weakref.ref(obj))
        return obj

    started = time.perf_counter()
    report = None
    if reftrace is None:

        def track(obj: Any) -> Any:
            tracked.append(weakref.ref(obj))
            return obj

        info = lifecycle(track, keep)
    else:
        # `track` is made before the block, so it is not one of the block's survivors.
        watch = reftrace.watch()

        def track(obj: Any) -> Any:
            tracked.append(weakref.ref(obj))
            return watch.track(obj)

        with watch:
            info = lifecycle(track, keep)
        report = watch.report
    del track
    elapsed = time.perf_counter() - started

    # Ground truth: a plain weak reference after a full collection.
    gc.collect()
    alive = [ref() is not None for ref in tracked]
    result.update(
        reftrace=reftrace is not None,
        reftrace_unavailable=unavailable or None,
        tracked=len(tracked),
        weakref_alive=any(alive),
        alive=alive,
        kept_alive=[ref() is not None for ref in kept],
        info=info or {},
        seconds=round(elapsed, 3),
    )
    if report is None:
        result.update(leaked=None, leak_count=None, leaks=[], trace="")
    else:
        leaks = list(report.leaks)
        result.update(
            leaked=bool(leaks),
            leak_count=len(leaks),
            leaks=[_leak_facts(leak) for leak in leaks],
            survivors=getattr(report, "survivor_count", None),
        )
        try:
            result["trace"] = str(report)
        except Exception:
            result["trace"] = "<str(report) raised>\n" + traceback.format_exc()
        try:
            result["leak_traces"] = [str(leak) for leak in leaks]
        except Exception:
            result["leak_traces"] = ["<str(leak) raised>\n" + traceback.format_exc()]
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
