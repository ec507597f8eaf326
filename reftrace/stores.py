"""Who stored a reference: a tracer that watches the places on a path.

Python keeps no record of who stored a reference, so the code runs once more
under a tracer (``sys.settrace``) that watches the places on the leak's
path: the length of each list, dict, set and deque, the object in each
attribute and closure cell. The first event after one of them changes names
the line that just ran, in the frame that ran it, and its callers. When that
line is in the standard library or an installed package
(``logger.addHandler(h)`` stores ``h`` inside ``logging``), the line named is
the program's own line that called it; the whole stack is kept.

``reftrace.locate()`` traces a second call of a function for its findings;
``reftrace.soak()`` traces its sampling call, for the containers that grew.
"""

from __future__ import annotations

import collections
import linecache
import os
import sys
import sysconfig
import types
from collections.abc import Callable, Hashable
from typing import Any, Generic, Literal, TypeVar

from reftrace.model import Frame, StoreSite
from reftrace.objects import is_own_file, short_path

K = TypeVar("K", bound=Hashable)

#: What a slot watches: a container's length, a dict's value under one key,
#: an attribute, a closure cell.
SlotKind = Literal["len", "key", "attr", "cell"]

#: At most this many frames of a store's call stack are kept.
MAX_FRAMES = 12

_CONTAINERS = (list, dict, set, collections.deque)


class Slot:
    """One place a reference can be stored, and how to read its state."""

    __slots__ = ("kind", "obj", "name")

    def __init__(self, kind: SlotKind, obj: object, name: Any = "") -> None:
        self.kind = kind
        self.obj = obj
        self.name = name

    def state(self) -> object:
        """What the place holds now (a length, an id), or None when unreadable."""
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


class StoreTracer(Generic[K]):
    """Traces a call; records, for each watched finding, the first store.

    ``slots`` maps a finding's key to the places to watch. Use as a context
    manager around the call; ``found`` then maps keys to their ``StoreSite``.
    Any trace function already installed (a debugger, coverage) is put back.
    """

    def __init__(self, slots: dict[K, list[Slot]]) -> None:
        self.slots = {key: list(places) for key, places in slots.items() if places}
        self.states = {key: [slot.state() for slot in places] for key, places in self.slots.items()}
        #: (filename, line, function) from the store outwards, by key; the
        #: source lines are read only when ``found`` is asked for (linecache
        #: fills its cache: inside a watch around the call, that would show)
        self._stores: dict[K, list[tuple[str, int, str]]] = {}
        self._previous: tuple[types.FrameType, int] | None = None
        self._old: Any = None
        self._stop: types.FrameType | None = None

    def __enter__(self) -> StoreTracer[K]:
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
    def found(self) -> dict[K, StoreSite]:
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


def trace_stores(call: Callable[[], Any], slots: dict[K, list[Slot]]) -> dict[K, StoreSite]:
    """Run ``call`` under a ``StoreTracer`` watching ``slots``."""
    with StoreTracer(slots) as tracer:
        call()
    return tracer.found
