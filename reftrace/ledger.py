"""What a soak records after each call, and at its checkpoints.

After every call the soak runs a full collection and reads its counters: gc
objects, allocated blocks and (with glibc) malloc's bytes in use; from the
warm-up on, the live count of every type. At checkpoints it also weighs the
large strings and buffers and compares the length of every container, to
follow the ones that grow at each checkpoint. Everything is kept in one
``Ledger``, and what the bookkeeping itself keeps is measured, not
estimated: each reading's bookkeeping is bracketed by two readings, and the
difference is subtracted from every later one.
"""

from __future__ import annotations

import gc
import sys
import time
from array import array
from collections.abc import Callable

from reftrace.bounds import Bound
from reftrace.census import (
    container_length,
    count_types,
    find_containers,
    grown,
    large_atomics,
    length_table,
    type_key,
)
from reftrace.memory import empty_free_lists, malloc_in_use, tracemalloc_own

#: At most this many containers that grew and then stopped are kept.
MAX_CONTAINERS = 10


class OwnList(list[object]):
    """A list of reftrace's: its type makes the heap search skip it."""


class Ledger:
    """Everything the soak keeps between iterations (updated in place, never
    replaced: what it made before the first reading counts as the program's).

    What it keeps is not estimated: every iteration's bookkeeping is
    bracketed by two readings of the counters, and what it kept is added to
    ``own_objects``, ``own_blocks`` and ``own_malloc``, subtracted from later
    readings. ``containers()`` lists its containers, so that a search for
    growing ones leaves them out.
    """

    __slots__ = (
        "objects",
        "blocks",
        "malloc",
        "tracemalloc",
        "scratch",
        "own_blocks",
        "own_malloc",
        "own_objects",
        "baseline_types",
        "type_series",
        "baseline",
        "candidates",
        "untracked",
        "points",
        "final",
        "stopped",
        "bounds",
        "weak",
        "checkpoints",
        "stages",
        "atomic_points",
        "atomic_totals",
        "atomic_largest",
        "atomic_id",
        "atomic_sizes",
    )

    def __init__(self) -> None:
        self.objects = array("q")
        self.blocks = array("q")
        self.malloc = array("q")
        self.tracemalloc = array("q")
        #: readings before and after the bookkeeping, held as C longs (no int objects)
        self.scratch = array("q", bytes(8 * 6))
        self.own_blocks = 0
        self.own_malloc = 0
        self.own_objects = 0
        self.baseline_types: dict[str, int] = {}
        #: type name -> its live count at each iteration from warm-up on,
        #: kept only for types whose count ever differed from the baseline
        self.type_series: dict[str, array[int]] = {}
        #: (ids, lengths) of every container when a search for growing ones starts
        self.baseline: list[tuple[array[int], array[int]]] | None = None
        #: id -> the length at each point of the search, for containers that grew at every one
        self.candidates: dict[int, array[int]] = {}
        #: ids of the candidates that are dicts the gc does not track
        self.untracked: set[int] = set()
        #: the iterations of the current search's checkpoints (its baseline first)
        self.points = array("q")
        #: the candidates themselves, found at the last checkpoint
        self.final: list[object] = OwnList()
        #: containers that grew, then stopped: id -> (points, lengths, the container)
        self.stopped: dict[int, tuple[list[int], list[int], object]] = {}
        self.bounds: dict[int, Bound | None] = {}
        self.weak: set[int] = set()
        self.checkpoints = array("q")
        self.stages = array("q")
        #: at each checkpoint: the bytes of large strings and buffers, and the largest
        self.atomic_points = array("q")
        self.atomic_totals = array("q")
        self.atomic_largest = array("q")
        #: the id of the largest new or grown one at the last checkpoint
        self.atomic_id = 0
        #: the size of every large string and buffer at the last checkpoint, by id
        self.atomic_sizes: dict[int, int] = {}

    def containers(self) -> list[object]:
        """The ledger and every container it holds (arrays are tracked too)."""
        out: list[object] = [
            self,
            self.objects,
            self.blocks,
            self.malloc,
            self.tracemalloc,
            self.scratch,
            self.baseline_types,
            self.type_series,
            self.candidates,
            self.untracked,
            self.points,
            self.final,
            self.stopped,
            self.bounds,
            self.weak,
            self.checkpoints,
            self.stages,
            self.atomic_points,
            self.atomic_totals,
            self.atomic_largest,
            self.atomic_sizes,
        ]
        out.extend(self.type_series.values())
        out.extend(self.candidates.values())
        for entry in self.stopped.values():
            out.append(entry)
            out.extend(entry[:2])
        if self.baseline is not None:
            out.append(self.baseline)
            for pair in self.baseline:
                out.append(pair)
                out.extend(pair)
        return out


def bracketed(ledger: Ledger, work: Callable[[], None]) -> None:
    """Run bookkeeping ``work``; add what it kept to the soak's own objects, blocks and bytes."""
    # Opened as it is closed: after the same collections, so that what a
    # gc callback of the program allocates and frees around each collection
    # (hypothesis's timer: floats, and on 3.15 the info dict's duration) sits
    # in the free lists alike at both readings.
    empty_free_lists()
    scratch = ledger.scratch
    scratch[0] = sys.getallocatedblocks()
    scratch[1] = malloc_in_use() or 0
    scratch[4] = len(gc.get_objects())
    work()
    _close_bracket(ledger)


def _close_bracket(ledger: Ledger) -> None:
    # What the bookkeeping freed sits in the free lists until the next full
    # collection: emptied now, it is not counted as kept.
    empty_free_lists()
    scratch = ledger.scratch
    scratch[2] = sys.getallocatedblocks()
    scratch[3] = malloc_in_use() or 0
    scratch[5] = len(gc.get_objects())
    ledger.own_blocks += scratch[2] - scratch[0]
    ledger.own_malloc += scratch[3] - scratch[1]
    ledger.own_objects += scratch[5] - scratch[4]


def measure(
    ledger: Ledger,
    k: int,
    warmup: int,
    schedule: set[int],
    declared: dict[int, str],
    timings: dict[str, float],
) -> None:
    """Collect, read the counters, then do the bookkeeping, bracketed.

    The readings before and after the bookkeeping are taken with the same
    locals alive, so their difference is what the bookkeeping kept; it is
    subtracted from every later reading. They are held in ``ledger.scratch``
    (C longs): no int object of theirs is alive at either reading.
    """
    t0 = time.perf_counter()
    gc.collect()
    empty_free_lists()  # as _close_bracket does: see bracketed
    scratch = ledger.scratch
    scratch[0] = sys.getallocatedblocks()
    scratch[1] = malloc_in_use() or 0
    objects = gc.get_objects()
    scratch[4] = len(objects)
    _bookkeeping(ledger, objects, k, warmup, schedule, declared, timings)
    del objects
    _close_bracket(ledger)
    timings["measure"] += time.perf_counter() - t0


def _bookkeeping(
    ledger: Ledger,
    objects: list[object],
    k: int,
    warmup: int,
    schedule: set[int],
    declared: dict[int, str],
    timings: dict[str, float],
) -> None:
    scratch = ledger.scratch
    ledger.blocks.append(scratch[0] - ledger.own_blocks)
    ledger.malloc.append(scratch[1] - ledger.own_malloc)
    ledger.objects.append(scratch[4] - ledger.own_objects)
    ledger.tracemalloc.append(tracemalloc_own())
    by_type = count_types(objects) if k >= warmup else None
    objects.clear()
    if by_type is not None:
        names: dict[str, int] = {}
        for cls, count in by_type.items():
            key = type_key(cls)
            names[key] = names.get(key, 0) + count
        del by_type
        _record_types(ledger, names, k - warmup)
        del names
    if k in schedule:
        _checkpoint(ledger, k, warmup, declared, timings)


def _record_types(ledger: Ledger, names: dict[str, int], index: int) -> None:
    if index == 0:
        ledger.baseline_types.update(names)
        return
    base = ledger.baseline_types
    series = ledger.type_series
    for name, count in names.items():
        if name in series:
            series[name].append(count)
        elif base.get(name, 0) != count:
            values = array("q", [base.get(name, 0)]) * index
            values.append(count)
            series[name] = values
    for values in series.values():
        if len(values) <= index:
            values.append(0)


def _still_searching(ledger: Ledger, k: int, warmup: int) -> bool:
    """Whether the container search has anything to do at ``k``."""
    return k == warmup or ledger.baseline is not None or bool(ledger.candidates)


def _checkpoint(
    ledger: Ledger, k: int, warmup: int, declared: dict[int, str], timings: dict[str, float]
) -> None:
    """Weigh the large strings and buffers, and compare every container's length."""
    t0 = time.perf_counter()
    if not ledger.atomic_points or ledger.atomic_points[-1] != k:
        _weigh_atomics(ledger, k)
    if _still_searching(ledger, k, warmup):
        ledger.checkpoints.append(k)
        search(ledger, k)
    timings["checkpoints"] += time.perf_counter() - t0


def _weigh_atomics(ledger: Ledger, k: int) -> None:
    """The bytes in large strings and buffers, and the largest one that is new
    or grew since the checkpoint before (0 at the first)."""
    sizes = large_atomics()
    before = ledger.atomic_sizes
    largest, largest_id = 0, 0
    if before:
        for key, size in sizes.items():
            if size > largest and size > before.get(key, 0):
                largest, largest_id = size, key
    ledger.atomic_points.append(k)
    ledger.atomic_totals.append(sum(sizes.values()))
    ledger.atomic_largest.append(largest)
    ledger.atomic_id = largest_id
    ledger.atomic_sizes.clear()
    ledger.atomic_sizes.update(sizes)
    sizes.clear()


def search(ledger: Ledger, k: int) -> None:
    """Start a search for growing containers, compare with its start, or follow the candidates."""
    if ledger.baseline is None and not ledger.candidates:
        ledger.untracked.clear()
        ledger.baseline = length_table()
        del ledger.points[:]
        ledger.points.append(k)
    elif ledger.baseline is not None:
        current = length_table()
        grew, hidden = grown(ledger.baseline, current)
        del current
        for key in set(map(id, ledger.containers())):
            grew.pop(key, None)  # the soak's own dicts
        ledger.baseline = None
        ledger.candidates.update(grew)
        ledger.untracked.update(hidden)
        ledger.points.append(k)
        del grew, hidden
        found = find_containers(ledger.candidates, untracked=bool(ledger.untracked))
        ledger.final[:] = [found[key] for key in ledger.candidates if key in found]
        found.clear()
    elif ledger.candidates:
        found = find_containers(ledger.candidates, untracked=bool(ledger.untracked))
        ledger.points.append(k)
        for key in list(ledger.candidates):
            obj = found.get(key)
            lengths = ledger.candidates[key]
            length = container_length(obj) if obj is not None else -1
            if length > lengths[-1]:
                lengths.append(length)
            else:
                if obj is not None and len(ledger.stopped) < MAX_CONTAINERS:
                    ledger.stopped[key] = (list(ledger.points[:-1]), list(lengths), obj)
                del ledger.candidates[key]
            del obj
        ledger.final[:] = [found[key] for key in ledger.candidates if key in found]
        found.clear()
        del found
