"""Running frames: the roots that hold local variables.

The local variables of a function that is still running are invisible to the
gc: from 3.11 they live in the interpreter's frame stack, and on 3.10 the
frame object is not tracked while it runs. No ``gc.get_referrers`` call will
ever return "the frame of ``test_x``" for them.
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
import gc
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
        """``local 'name' in function (file:line)``: the local as a path shows it."""
        return f"local '{self.name}' in {self.function} ({self.filename}:{self.lineno})"


def _read_pointer(address: int) -> int:
    return int(ctypes.c_void_p.from_address(address).value or 0)


def _localsplus_names(code: types.CodeType) -> tuple[str, ...]:
    if sys.version_info >= (3, 11):
        cells = tuple([n for n in code.co_cellvars if n not in code.co_varnames])
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
    """The name of every live ``threading`` thread, by its ident."""
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


def frame_slots(
    frame: types.FrameType, direct: bool
) -> tuple[list[tuple[int, str]], dict[str, object] | None]:
    """(address, name) of each bound local of ``frame``, and the snapshot dict
    created to read them, if one had to be.

    ``direct`` reads the slots in place, which is safe while the frame cannot
    be freed under us: a frame of the current thread, a suspended
    generator's frame, or a finished frame we hold.
    """
    code = frame.f_code
    optimized = bool(code.co_flags & 0x01)  # CO_OPTIMIZED: a function body
    if direct and optimized and _FAST_OK:
        return _FAST.items(frame), None
    f_locals = frame.f_locals
    snapshot = f_locals if optimized and type(f_locals) is dict else None
    return [(id(value), name) for name, value in list(f_locals.items())], snapshot


def frame_function(frame: types.FrameType) -> str:
    """The qualified name of the function ``frame`` runs (its plain name before 3.11)."""
    code = frame.f_code
    return str(getattr(code, "co_qualname", code.co_name))


def _object_at(address: int) -> object:
    """The object at ``address``: only for a slot of a frame of the current
    thread, which keeps the object alive and which no other thread can rebind."""
    return ctypes.cast(address, ctypes.py_object).value


def locals_index(
    frames: list[tuple[str, bool, types.FrameType]],
) -> tuple[dict[int, FrameLocal], list[object], list[object]]:
    """Map id(value) to the local variable that holds it, for every running frame.

    Returns the map, the snapshot dicts that had to be created to build it
    (these belong to reftrace's bookkeeping and must be ignored as referrers),
    and the values themselves (where a search from the roots starts).
    """
    index: dict[int, FrameLocal] = {}
    snapshots: list[object] = []
    values: list[object] = []
    for thread, is_current, frame in frames:
        if not frame.f_code.co_flags & 0x01 and frame.f_locals is frame.f_globals:
            continue  # module-level code: its names are globals, found through the module
        try:
            pairs, snapshot = frame_slots(frame, direct=is_current)
        except Exception:
            continue
        if snapshot is not None:
            snapshots.append(snapshot)
            values.extend(snapshot.values())
        elif is_current and _FAST_OK and frame.f_code.co_flags & 0x01:
            values.extend(_object_at(address) for address, _ in pairs)
        else:
            values.extend(frame.f_locals.values())
        function = frame_function(frame)
        filename, lineno = short_path(frame.f_code.co_filename), frame.f_lineno
        for address, name in pairs:
            index.setdefault(address, FrameLocal(thread, function, filename, lineno, name))
    return index, snapshots, values


def frame_references(frames: list[types.FrameType]) -> Counter[int]:
    """How many times each object id is held by the locals of ``frames``
    (running frames of this thread, whose references the gc cannot see)."""
    counts: Counter[int] = Counter()
    for frame in frames:
        try:
            pairs, _ = frame_slots(frame, direct=True)
        except Exception:
            continue
        counts.update(address for address, _ in pairs)
    return counts


def own_frame_references(skip: int = 1) -> Counter[int]:
    """References held by reftrace's own running frames in this thread; the
    ``skip`` frames nearest the caller are left out."""
    frames = []
    frame: types.FrameType | None = sys._getframe(skip + 1)
    while frame is not None:
        if is_own_code(frame.f_code):
            frames.append(frame)
        frame = frame.f_back
    return frame_references(frames)


def frame_local_name(frame: types.FrameType, child: object, owner: object = None) -> str | None:
    """The name of the local of a finished or suspended frame that holds
    ``child``, directly or through a closure cell. ``owner`` is the generator
    or coroutine the frame belongs to, if any (it keeps the frame alive)."""
    try:
        pairs, _ = frame_slots(frame, direct=True)
    except Exception:
        return None
    target = id(child)
    for address, name in pairs:
        if address == target:
            return name
    cells = {
        id(c): c
        for c in gc.get_referents(owner if owner is not None else frame)
        if type(c) is types.CellType
    }
    for address, name in pairs:
        cell = cells.get(address)
        if cell is not None:
            try:
                if cell.cell_contents is child:
                    return name
            except ValueError:
                continue
    return None
