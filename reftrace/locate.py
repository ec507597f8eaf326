"""Where was the retaining reference stored? The line, and the calls that led there.

A leak trace says which reference keeps an object; this module finds the line
of code that created that reference: the ``append``, the ``d[key] = ...``,
the ``self.x = ...``, the ``nonlocal`` assignment, the ``on(...)`` that
registered a listener. Python keeps no record of who stored a reference, so
the lifecycle runs once more under a tracer (:mod:`reftrace.stores`) that
watches the places on the leak's path and names the line that changed one
of them, with its callers.

``reftrace.locate(fn)`` does this for a function: a first call under
``watch()`` finds the leaks, a second call is traced. ``reftrace.soak()``
traces its extra sampling call, for the containers that grew.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reftrace.analysis import SlotKey
from reftrace.calls import Lifecycle
from reftrace.objects import untrackable_reason
from reftrace.report import Report
from reftrace.stores import Slot, trace_stores
from reftrace.watch import Watch


def locate(fn: Callable[[], Any]) -> Report:
    """Find what ``fn`` leaks and the lines that stored the references keeping it.

    ``fn`` runs twice. The first call runs under :func:`reftrace.watch`, with
    what it returns tracked (a coroutine function runs on a fresh event loop);
    its report is returned. The second call runs under a tracer watching the
    references that keep each finding (and each survivor group) alive; the
    first line that changes one of them is that finding's ``stored_at``.
    Both calls have their side effects: a leak grows by one more call.
    """
    if not callable(fn):
        raise TypeError(f"locate() needs a function to call, got {type(fn).__name__}")
    call = Lifecycle(fn, what="locate()")
    slots: dict[SlotKey, list[Slot]] = {}
    try:
        watch = Watch()
        watch.record_store_slots(slots)
        with watch:
            _tracked_call(watch, call, untrackable_reason)
        report = watch.report
        found = trace_stores(call, slots)
        slots.clear()
    finally:
        call.close()
    survivors = {group.attachment: group for group in report.survivors}
    for (kind, name), site in found.items():
        if kind == "leak":
            finding = report.finding(name)
            if finding is not None:
                finding.stored_at = site
        elif name in survivors:
            survivors[name].stored_at = site
    return report


def _tracked_call(watch: Watch, call: Callable[[], Any], untrackable: Callable[[Any], Any]) -> None:
    """The first call; its result is tracked and no local here outlives it."""
    result = call()
    if result is not None and untrackable(result) is None:
        watch.track(result)
