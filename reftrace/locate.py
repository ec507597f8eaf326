"""Where was the retaining reference stored? The line, and the calls that led there.

A leak trace says which reference keeps an object; this module finds the line
of code that created that reference: the ``append``, the ``d[key] = ...``,
the ``self.x = ...``, the ``nonlocal`` assignment, the ``on(...)`` that
registered a listener. Python keeps no record of who stored a reference, so
the lifecycle runs once more under a tracer (``sys.settrace``) that watches
the places on the leak's path: the length of each list, dict, set and deque,
the object in each attribute and closure cell. The first event after one of
them changes names the line that just ran, in the frame that ran it, and its
callers. When that line is in the standard library or an installed package
(``logger.addHandler(h)`` stores ``h`` inside ``logging``), the line named is
the program's own line that called it; the whole stack is kept.

``reftrace.locate(fn)`` does this for a function: a first call under
``watch()`` finds the leaks, a second call is traced. ``reftrace.soak()``
traces its extra sampling call, for the containers that grew.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import linecache
import os
import sys
import sysconfig
import types
from collections.abc import Callable
from typing import Any

from reftrace.objects import is_own_file, short_path
from reftrace.report import Frame, Report, StoreSite

#: At most this many frames of a store's call stack are kept.
MAX_FRAMES = 12

_CONTAINERS = (list, dict, set, collections.deque)


class Slot:
    """One place a reference can be stored, and how to read its state."""

    __slots__ = ("kind", "obj", "name")

    def __init__(self, kind: str, obj: object, name: Any = "") -> None:
        self.kind = kind  # "len" | "key" | "attr" | "cell"
        self.obj = obj
        self.name = name

    def state(self) -> object:
        try:
            if self.kind == "len":
                return len(self.obj)  # type: ignore[arg-type]
            if self.kind == "key":
                return id(self.obj.get(self.name))  # type: ignore[attr-defined]
            if self.kind == "cell":
                return id(self.obj.cell_contents)  # type: ignore[attr-defined]
            return id(object.__getattribute__(self.obj, self.name))
        except Exception:
            return None


def slots_for(objects: list[object], children: list[object], labels: list[str]) -> list[Slot]:
    """The places along a path where a new reference could attach: every
    container, attribute and cell from ``objects[0]`` on. ``children[i]`` is
    what ``objects[i]`` refers to on the path (None when not known) and
    ``labels[i]`` that edge's label."""
    slots = []
    for holder, child, label in zip(objects, children, labels):
        if isinstance(holder, _CONTAINERS):
            slots.append(Slot("len", holder))
            if isinstance(holder, dict) and child is not None:
                # a store under an existing key changes what it holds, not the length
                for key, value in list(holder.items()):
                    if value is child:
                        slots.append(Slot("key", holder, key))
                        break
        elif type(holder) is types.CellType:
            slots.append(Slot("cell", holder))
        elif label.startswith(".") and label[1:].isidentifier() and label != ".__dict__":
            slots.append(Slot("attr", holder, label[1:]))
    return slots


def is_library(filename: str) -> bool:
    """Code that is not the program's own: the standard library, installed
    packages, frozen modules, and reftrace itself (its demo agent aside)."""
    if filename.startswith("<"):
        return True
    path = os.path.abspath(filename)
    return is_own_file(path) or path.startswith(_LIBRARY_DIRS)


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    found = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if key in paths:
            found.add(os.path.abspath(paths[key]) + os.sep)
    return tuple(sorted(found))


_LIBRARY_DIRS = _library_dirs()


class StoreTracer:
    """Traces a call; records, for each watched finding, the first store.

    ``slots`` maps a finding's key to the places to watch. Use as a context
    manager around the call; ``found`` then maps keys to their ``StoreSite``.
    Any trace function already installed (a debugger, coverage) is put back.
    """

    def __init__(self, slots: dict[str, list[Slot]]) -> None:
        self.slots = {key: list(places) for key, places in slots.items() if places}
        self.states = {key: [slot.state() for slot in places] for key, places in self.slots.items()}
        #: (filename, line, function) from the store outwards, by key; the
        #: source lines are read only when ``found`` is asked for (linecache
        #: fills its cache: inside a watch around the call, that would show)
        self._stores: dict[str, list[tuple[str, int, str]]] = {}
        self._previous: tuple[types.FrameType, int] | None = None
        self._old: Any = None
        self._stop: types.FrameType | None = None

    def __enter__(self) -> StoreTracer:
        self._old = sys.gettrace()
        self._stop = sys._getframe(1)
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self._old)
        self._previous = None
        self._stop = None
        self.slots.clear()

    @property
    def found(self) -> dict[str, StoreSite]:
        """The store site of each key whose places changed, with its source lines."""
        return {key: _store_site(frames) for key, frames in self._stores.items()}

    def _trace(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        if self.slots:
            self._check()
            self._previous = (frame, frame.f_lineno)
        return self._trace if self.slots else None

    def _check(self) -> None:
        changed = []
        for key, places in self.slots.items():
            states = self.states[key]
            for i, slot in enumerate(places):
                now = slot.state()
                if now != states[i]:
                    changed.append(key)
                    break
        if not changed or self._previous is None:
            for key in changed:  # a change before any line ran here: watch on
                self.states[key] = [slot.state() for slot in self.slots[key]]
            return
        site = self._site()
        for key in changed:
            if site:
                self._stores[key] = site
            del self.slots[key]

    def _site(self) -> list[tuple[str, int, str]]:
        assert self._previous is not None
        frame: types.FrameType | None
        frame, lineno = self._previous
        frames: list[tuple[str, int, str]] = []
        while frame is not None and frame is not self._stop and len(frames) < MAX_FRAMES:
            filename = frame.f_code.co_filename
            if frames and is_own_file(os.path.abspath(filename)):
                break  # reftrace's own caller (locate, soak): not the program's
            line = lineno if not frames else frame.f_lineno
            frames.append((filename, line, frame.f_code.co_name))
            frame = frame.f_back
        del frame
        return frames


def _store_site(raw: list[tuple[str, int, str]]) -> StoreSite:
    """The store's frames, with their source lines, and the first of the program's own."""
    frames = tuple(
        Frame(short_path(filename), line, function, linecache.getline(filename, line).strip())
        for filename, line, function in raw
    )
    user = 0
    for i, item in enumerate(frames):
        if not is_library(item.filename):
            user = i
            break
    return StoreSite(frames, user)


def trace_stores(call: Callable[[], Any], slots: dict[str, list[Slot]]) -> dict[str, StoreSite]:
    """Run ``call`` under a ``StoreTracer`` watching ``slots``."""
    with StoreTracer(slots) as tracer:
        call()
    return tracer.found


def locate(fn: Callable[[], Any]) -> Report:
    """Find what ``fn`` leaks and the lines that stored the references keeping it.

    ``fn`` runs twice. The first call runs under :func:`reftrace.watch`, with
    what it returns tracked (a coroutine function runs on a fresh event loop);
    its report is returned. The second call runs under a tracer watching the
    references that keep each finding (and each survivor group) alive; the
    first line that changes one of them is that finding's ``stored_at``.
    Both calls have their side effects: a leak grows by one more call.
    """
    from reftrace.objects import untrackable_reason
    from reftrace.watch import Watch

    if not callable(fn):
        raise TypeError(f"locate() needs a function to call, got {type(fn).__name__}")
    loop = asyncio.new_event_loop() if inspect.iscoroutinefunction(fn) else None

    def call() -> Any:
        result = fn()
        if loop is not None:
            result = loop.run_until_complete(result)
        return result

    try:
        watch = Watch()
        watch._options.locate = True
        with watch:
            _tracked_call(watch, call, untrackable_reason)
        report = watch.report
        slots, report._slots = report._slots, {}
        found = trace_stores(call, slots)
        slots.clear()
    finally:
        if loop is not None:
            loop.close()
    for key, site in found.items():
        kind, _, name = key.partition(":")
        if kind == "leak":
            report.stores[name] = site
    by_attachment = {f"survivor:{group.attachment}": group for group in report.survivors}
    for key, site in found.items():
        if key in by_attachment:
            by_attachment[key].stored_at = site
    return report


def _tracked_call(watch: Any, call: Callable[[], Any], untrackable: Callable[[Any], Any]) -> None:
    """The first call; its result is tracked and no local here outlives it."""
    result = call()
    if result is not None and untrackable(result) is None:
        watch.track(result)
