"""What a set of objects keeps alive: the one walk behind retained sizes.

From the given objects, the walk follows references to the new objects
(those made in the watched block) they reach, each counted once. Objects the
gc does not track (strings, atomic tuples, a buffer's chunks) count when
nothing but the walked objects refers to them, with the first walked object
that holds them: they die with the set. Old objects end the walk.

A finding's retained size (``analysis``) sums the walk; a proof
(``proof``) keeps it per object, to say what a cut freed.
"""

from __future__ import annotations

import gc
import sys
from collections import deque
from typing import Any

from reftrace.objects import referents, safe_sizeof, type_name


def retained_by_id(
    objs: list[object],
    young_ids: set[int] | frozenset[int],
    *,
    limit: int | None = None,
    own: set[int] | None = None,
    names: bool = False,
) -> dict[int, list[Any]]:
    """``objs`` and the new objects they reach, by id: ``[bytes, objects, type name]``.

    ``bytes`` and ``objects`` include the untracked objects owned by that
    object (see the module's docstring); the type name is filled in only
    with ``names``. The walk stops after ``limit`` objects. The ids of its
    own containers are added to ``own`` while it runs, for a heap view that
    must not see them.
    """
    sizes: dict[int, list[Any]] = {
        id(obj): [safe_sizeof(obj), 1, type_name(obj) if names else ""] for obj in objs
    }
    untracked: dict[int, list[Any]] = {}  # id: [object, references from the set, holder id]
    queue = deque(objs)
    scratch = (id(queue), id(untracked), id(sizes))
    if own is not None:
        own.update(scratch)
    try:
        while queue and (limit is None or len(sizes) < limit):
            current = queue.popleft()
            for child in referents(current):
                key = id(child)
                if key in sizes:
                    continue
                if key in young_ids:
                    sizes[key] = [safe_sizeof(child), 1, type_name(child) if names else ""]
                    queue.append(child)
                elif not gc.is_tracked(child):
                    entry = untracked.get(key)
                    if entry is None:
                        untracked[key] = [child, 1, id(current)]
                    else:
                        entry[1] += 1
        current = child = None
        for entry in untracked.values():
            if owned_by_set(entry):
                holder = sizes[entry[2]]
                holder[0] += safe_sizeof(entry[0])
                holder[1] += 1
        untracked.clear()
    finally:
        if own is not None:
            own.difference_update(scratch)
    return sizes


def retained_by_all(
    objs: list[object],
    young_ids: set[int] | frozenset[int],
    *,
    limit: int | None = None,
    own: set[int] | None = None,
) -> tuple[int, int]:
    """Bytes and objects that ``objs`` keep together, each object counted once."""
    sizes = retained_by_id(objs, young_ids, limit=limit, own=own)
    return sum(v[0] for v in sizes.values()), sum(v[1] for v in sizes.values())


def owned_by_set(entry: list[Any]) -> bool:
    """``entry`` is ``[object, references to it from a set of objects, ...]``: True
    when those are all its references (the entry list's own one aside)."""
    return bool(sys.getrefcount(entry[0]) - _ENTRY_REFCOUNT == entry[1])


def _entry_refcount() -> int:
    entries = {0: ["".join(["reftrace", "-calibration"]), 0]}
    for entry in entries.values():
        return sys.getrefcount(entry[0])
    return 0


#: The count of an object that only its entry list holds, read as owned_by_set
#: reads it (the ways counts are taken differ between versions).
_ENTRY_REFCOUNT = _entry_refcount()
