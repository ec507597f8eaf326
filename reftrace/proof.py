"""Proof by cutting: does removing the suspect reference free the leak?

For one leak signature, a forked child process (a copy-on-write copy of this
one; the parent is never touched) removes the suspect reference (deletes the
dict key, the list item, the attribute, empties the cell), lets go of
everything reftrace itself holds, collects, and looks at what died:

- ``confirmed``: every leaked object of the signature died; the child counts
  the objects that died with them and their sizes;
- ``not sufficient``: some are still alive; the child finds the path from a
  root that still holds one;
- ``unavailable``: the proof could not run here (no ``os.fork``, other
  threads running that could hold a lock the copy inherits, a reference that
  cannot be removed, a child that did not answer in time); the suspect stays
  the heuristic one, and the reason says why.

Sizes are the objects' own sizes (``sys.getsizeof``, with the strings and
other untracked objects only they held), measured before the cut for the
objects that the collection in the child then freed.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import select
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reftrace.objects import FROZENDICT, type_name
from reftrace.report import Path, Proof, read_proof
from reftrace.retention import retained_by_id

#: Seconds a child may take before it is killed and the proof is unavailable.
DEFAULT_TIMEOUT = 60.0


@dataclass
class Cut:
    """The suspect reference of one signature, as live objects of the parent."""

    holder: object
    child: object
    label: str


def unavailable_reason() -> str:
    """Why a fork cannot be used here, or "" when it can."""
    if not hasattr(os, "fork"):
        return "os.fork is not available on this platform"
    current = threading.current_thread()
    others = [t.name for t in threading.enumerate() if t is not current and t.is_alive()]
    if others:
        listed = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        return (
            f"{len(others)} other thread{'s are' if len(others) != 1 else ' is'} running "
            f"({listed}): a forked copy could inherit a lock one of them holds"
        )
    return ""


def forget_handles(frame: types.FrameType, young_ids: set[int] | frozenset[int]) -> None:
    """In the child only: unbind the watching code's names for what the block
    made (``out = w.track(...)``), so that they do not keep the leak alive.

    A function's locals all go (the child never returns into it); at module
    level only the globals bound to new objects, since the others are roots.
    """
    if frame.f_code.co_flags & 0x01:  # CO_OPTIMIZED: a function's fast locals
        names = list(frame.f_code.co_varnames + frame.f_code.co_cellvars)
        if sys.version_info >= (3, 13):
            proxy = frame.f_locals  # writes through to the frame
            old = [proxy[name] for name in names if name in proxy]
            for name in names:
                if name in proxy:
                    proxy[name] = None
            del proxy
            _drop_overwritten(old)
            return
        snapshot = frame.f_locals
        for name in names:
            if name in snapshot:
                snapshot[name] = None
        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
        return
    namespace = frame.f_globals
    for name, value in list(namespace.items()):
        if id(value) in young_ids:
            namespace[name] = None


def _drop_overwritten(old: list[object]) -> None:
    """3.14+: an executing frame whose locals are written through ``f_locals``
    keeps the values it lost in a tuple until it ends (its stack may still
    borrow them). The child never returns into that frame, so that tuple's
    items are replaced by None, and the values go as they would have."""
    if sys.version_info < (3, 14) or sys.implementation.name != "cpython" or not old:
        return
    # The tuple holds the replaced values in the order they were replaced
    # (None and the values of unset names excepted): any tuple made of them
    # alone, that nothing the gc sees holds, is that one.
    replaced = {id(obj) for obj in old if obj is not None}
    kept = None
    candidates = gc.get_referrers(*[obj for obj in old if obj is not None])
    for holder in candidates:
        if (
            type(holder) is tuple
            and holder
            and all(id(item) in replaced for item in holder)
            and all(referrer is candidates for referrer in gc.get_referrers(holder))
        ):
            kept = holder
            break
    del candidates
    old.clear()
    if kept is None:
        return
    slot = ctypes.sizeof(ctypes.c_void_p)
    # The first item's address, found after the header rather than assumed
    # (3.14 added a cached hash to the tuple's header).
    for offset in range(2 * slot, 8 * slot, slot):
        if ctypes.c_void_p.from_address(id(kept) + offset).value == id(kept[0]):
            break
    else:
        return
    items = list(kept)
    values = [ctypes.c_void_p.from_address(id(kept) + offset + i * slot) for i in range(len(items))]
    if [v.value for v in values] != [id(obj) for obj in items]:
        return
    for value, obj in zip(values, items):
        value.value = id(None)  # immortal: no reference to take
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(obj))
    del kept, values, value, obj
    items.clear()


def cut_reference(cut: Cut) -> str:
    """Remove the reference ``cut.holder`` -> ``cut.child``; "" when done, else why not."""
    holder, child = cut.holder, cut.child
    if type(holder) is types.CellType:
        del holder.cell_contents
        return ""
    if isinstance(holder, dict):
        for key, value in list(holder.items()):
            if value is child:
                del holder[key]
                return ""
        if child in holder:
            del holder[child]
            return ""
        return "the reference is no longer in the dict"
    if isinstance(holder, (list, collections.deque)):
        for index, value in enumerate(holder):
            if value is child:
                del holder[index]
                return ""
        return "the reference is no longer in the list"
    if isinstance(holder, set):
        holder.discard(child)
        return ""
    if isinstance(holder, (tuple, frozenset)) or (
        FROZENDICT is not None and isinstance(holder, FROZENDICT)
    ):
        return f"a {type(holder).__name__} cannot be changed"
    if cut.label.startswith(".") and cut.label[1:].isidentifier():
        try:
            object.__delattr__(holder, cut.label[1:])
        except (AttributeError, TypeError) as error:
            return f"the attribute could not be removed: {error}"
        return ""
    return f"a reference of kind {cut.label!r} from a {type_name(holder)} cannot be removed"


def prove(
    box: list[Any],
    cut: str,
    young_ids: set[int] | frozenset[int],
    release: Callable[[], None],
    remaining_path: Callable[[list[object]], Path | None],
    timeout: float = DEFAULT_TIMEOUT,
) -> Proof:
    """Test a cut in a forked child; ``cut`` is the reference as code.

    ``box`` holds the ``Cut`` and the list of the finding's leaked objects; it
    is emptied, so that no frame of the child names them once the reference is
    cut. ``release`` drops every reference the analysis holds (called in the
    child only); ``remaining_path`` finds a root path to one of the given
    objects, or None. The child sends its ``Proof`` back as report JSON.
    """
    reason = unavailable_reason()
    if reason:
        box.clear()
        return Proof("unavailable", cut, reason)
    t0 = time.perf_counter()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        try:
            result = _in_child(box, cut, young_ids, release, remaining_path)
        except BaseException as error:  # reported to the parent
            result = Proof("unavailable", cut, f"the proof failed: {error!r}")
        try:
            data = json.dumps(result.to_dict(mask=False)).encode()
            while data:
                data = data[os.write(write_end, data) :]
        finally:
            os._exit(0)
    os.close(write_end)
    box.clear()
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                return Proof("unavailable", cut, f"the proof did not finish in {timeout:g} s")
            ready, _, _ = select.select([read_end], [], [], left)
            if not ready:
                continue
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    try:
        result = read_proof(json.loads(b"".join(chunks)), "<proof process>")
    except ValueError:  # no answer, or not a proof (ReportFormatError is one)
        return Proof("unavailable", cut, "the proof process ended without an answer")
    result.seconds = time.perf_counter() - t0
    return result


def _in_child(
    box: list[Any],
    expression: str,
    young_ids: set[int] | frozenset[int],
    release: Callable[[], None],
    remaining_path: Callable[[list[object]], Path | None],
) -> Proof:
    cut: Cut | None = box[0]
    sizes, leak_ids = _candidates(list(box[1]), young_ids)
    box.clear()
    assert cut is not None
    problem = cut_reference(cut)
    cut = None
    if problem:
        return Proof("unavailable", expression, f"the suspect reference cannot be cut: {problem}")
    release()
    gc.collect()
    gc.collect()
    alive = set(map(id, gc.get_objects()))
    freed = [key for key in sizes if key not in alive]
    survivors = [key for key in leak_ids if key in alive]
    types_freed = collections.Counter(sizes[key][2] for key in leak_ids if key not in alive)
    result = Proof(
        "confirmed",
        expression,
        freed_objects=sum(sizes[key][1] for key in freed),
        freed_bytes=sum(sizes[key][0] for key in freed),
        freed_leaks=len(leak_ids) - len(survivors),
        leaks=len(leak_ids),
        freed_types=types_freed.most_common(5),
    )
    if survivors:
        wanted = set(survivors)
        path = remaining_path([obj for obj in gc.get_objects() if id(obj) in wanted])
        if path is not None:
            result.status = "not sufficient"
            result.remaining = path
        else:
            result.reason = (
                f"{len(survivors)} still named only by local variables of the watching "
                "function (they go when it returns)"
            )
    return result


def _candidates(
    targets: list[object], young_ids: set[int] | frozenset[int]
) -> tuple[dict[int, tuple[int, int, str]], list[int]]:
    """What could die with the leak: the leaked objects and the new objects
    they reach, by id: bytes, objects and type name, measured now (see
    :mod:`reftrace.retention`)."""
    sizes = retained_by_id(targets, young_ids, names=True)
    return {key: (v[0], v[1], v[2]) for key, v in sizes.items()}, [id(obj) for obj in targets]
