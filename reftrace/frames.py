"""Running frames: the roots that hold local variables.

From 3.11 on, the local variables of a function that is still running live in
the interpreter's frame stack, which the gc does not traverse: no
``gc.get_referrers`` call will ever return "the frame of ``test_x``" for them.
This module finds them directly, thread by thread.

Reading ``frame.f_locals`` on 3.10-3.12 has a side effect: it stores a
snapshot dict on the frame that keeps the values alive even after the
function rebinds its variables. For the current thread (where the watched
code usually runs) the locals are read straight from the frame's slots
instead, without that snapshot; the layout is checked against a known frame
at import and the dict is used when the check fails.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import types
from collections import Counter
from dataclasses import dataclass

from reftrace.objects import is_own_code, short_path


@dataclass(frozen=True)
class FrameLocal:
    """Where a value is held: a local variable of a running function."""

    thread: str
    function: str
    filename: str
    lineno: int
    name: str

    @property
    def label(self) -> str:
        return f"local '{self.name}' in {self.function} ({self.filename}:{self.lineno})"


def _read_pointer(address: int) -> int:
    return int(ctypes.c_void_p.from_address(address).value or 0)


def _localsplus_names(code: types.CodeType) -> tuple[str, ...]:
    if sys.version_info >= (3, 11):
        cells = tuple(n for n in code.co_cellvars if n not in code.co_varnames)
        return code.co_varnames + cells + code.co_freevars
    return code.co_varnames + code.co_cellvars + code.co_freevars


class _FastLocals:
    """Reads the pointers in a running frame's local slots (CPython 3.10-3.12, 64-bit)."""

    def __init__(self) -> None:
        self.frame_data_offset = 0  # 3.11+: offset of f_frame in the frame object
        self.locals_offset = -1

    def base(self, frame: types.FrameType) -> int:
        if sys.version_info >= (3, 11):
            return _read_pointer(id(frame) + self.frame_data_offset)
        return id(frame)

    def probe(self) -> bool:
        if (
            sys.implementation.name != "cpython"
            or ctypes.sizeof(ctypes.c_void_p) != 8
            or not (3, 10) <= sys.version_info[:2] <= (3, 12)
        ):
            return False
        try:
            return self._probe()
        except Exception:
            return False

    def _probe(self) -> bool:
        if sys.version_info >= (3, 11):
            self.frame_data_offset = 24
        self.locals_offset = _find_locals_offset(self)
        return self.locals_offset >= 0

    def items(self, frame: types.FrameType) -> list[tuple[int, str]]:
        """(address, name) of every bound local slot of a running frame."""
        names = _localsplus_names(frame.f_code)
        base = self.base(frame) + self.locals_offset
        out = []
        for i, name in enumerate(names):
            address = _read_pointer(base + 8 * i)
            if address:
                out.append((address, name))
        return out


def _find_locals_offset(reader: _FastLocals) -> int:
    # `first` and `second` are this function's first two local slots.
    first, second = object(), object()
    frame = sys._getframe()
    base = reader.base(frame)
    del frame
    for offset in range(0, 512, 8):
        if _read_pointer(base + offset) == id(first) and _read_pointer(base + offset + 8) == id(
            second
        ):
            return offset - 8 * _find_locals_offset.__code__.co_varnames.index("first")
    return -1


_FAST = _FastLocals()
_FAST_OK = _FAST.probe()


def thread_names() -> dict[int, str]:
    return {t.ident: t.name for t in threading.enumerate() if t.ident is not None}


def running_frames() -> list[tuple[str, bool, types.FrameType]]:
    """(thread name, is current thread, frame) for every running frame not of reftrace."""
    names = thread_names()
    current = threading.get_ident()
    out = []
    for ident, top in sys._current_frames().items():
        frame: types.FrameType | None = top
        while frame is not None:
            if not is_own_code(frame.f_code):
                out.append((names.get(ident, f"thread {ident}"), ident == current, frame))
            frame = frame.f_back
    return out


def locals_index(
    frames: list[tuple[str, bool, types.FrameType]],
) -> tuple[dict[int, FrameLocal], list[object]]:
    """Map id(value) to the local variable that holds it, for every running frame.

    Returns the map and the snapshot dicts that had to be created to build it
    (these belong to reftrace's bookkeeping and must be ignored as referrers).
    """
    index: dict[int, FrameLocal] = {}
    snapshots: list[object] = []
    for thread, is_current, frame in frames:
        code = frame.f_code
        where = (thread, code.co_qualname if hasattr(code, "co_qualname") else code.co_name)
        filename, lineno = short_path(code.co_filename), frame.f_lineno
        optimized = bool(code.co_flags & 0x01)  # CO_OPTIMIZED: a function body
        pairs: list[tuple[int, str]]
        if is_current and optimized and _FAST_OK:
            pairs = _FAST.items(frame)
        else:
            try:
                f_locals = frame.f_locals
            except Exception:
                continue
            if f_locals is frame.f_globals:
                continue  # module-level code: its names are globals, found through the module
            if optimized and type(f_locals) is dict:
                snapshots.append(f_locals)
            pairs = [(id(value), name) for name, value in list(f_locals.items())]
        for address, name in pairs:
            index.setdefault(address, FrameLocal(where[0], where[1], filename, lineno, name))
    return index, snapshots


def own_frame_references(skip: int = 1) -> Counter[int]:
    """How many times each object id is held by the locals of reftrace's own
    running frames in this thread (3.11+, where those references are invisible
    to the gc). ``skip`` frames nearest the caller are left out."""
    counts: Counter[int] = Counter()
    if sys.version_info < (3, 11):
        return counts  # frames are gc-visible objects there: already counted
    frame: types.FrameType | None = sys._getframe(skip + 1)
    while frame is not None:
        if is_own_code(frame.f_code):
            if _FAST_OK:
                counts.update(address for address, _ in _FAST.items(frame))
            else:
                try:
                    counts.update(id(value) for value in list(frame.f_locals.values()))
                except Exception:
                    pass
        frame = frame.f_back
    return counts


def frame_local_name(frame: types.FrameType, child: object) -> str | None:
    """The name of the local of a (finished or suspended) frame that holds ``child``."""
    try:
        for name, value in list(frame.f_locals.items()):
            if value is child:
                return str(name)
    except Exception:
        return None
    return None
