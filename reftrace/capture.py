"""Capture: gc and tracemalloc state before and after a watched block.

On entry: ``gc.freeze()`` moves every object alive at that moment into the
permanent generation, then ``gc.collect()`` empties the free lists (with
nothing left to walk, it costs microseconds, not a pass over the heap). At
exit the ordinary generations hold exactly the block's new tracked objects,
so finding them costs O(new), not O(heap); ``gc.unfreeze()`` then makes the
old heap visible to the referrer search again. When the program has frozen
objects itself (``gc.get_freeze_count() > 0``) unfreezing would undo its
work, so the capture falls back to a set of the ids alive on entry.

``tracemalloc`` traces only during the block (1 frame unless asked for more),
so its cost follows what the block allocates, not the size of the heap.
"""

from __future__ import annotations

import fnmatch
import gc
import threading
import time
import tracemalloc
from dataclasses import dataclass, field

from reftrace.census import untracked_dicts
from reftrace.memory import interpreter_frozen
from reftrace.model import Allocation
from reftrace.objects import (
    allocation_site,
    is_own,
    is_own_file,
    loop_refcounts,
    referents,
    referents_of_all,
    short_path,
)

_MAX_EXIT_COLLECTS = 3

#: Captures between start() and stop(), in every thread. Only a capture that
#: runs alone may keep the heap frozen: a second one demotes the first to ids.
_ACTIVE: list[Capture] = []
_ACTIVE_LOCK = threading.Lock()


#: Held while a snapshot is taken or a block analysed: a process runs one at a
#: time, since each walks (and briefly changes) the whole collector's state.
ANALYSIS_LOCK = threading.RLock()


@dataclass(slots=True)
class BlockState:
    """What the exit of a block leaves for the analysis."""

    young: list[object]
    young_ids: set[int]
    entries: list[int]  # indices into young: new objects held from outside the new set
    allocations: list[Allocation]
    sites: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class Capture:
    """Snapshots around one block. ``start()`` on entry, ``stop()`` on exit."""

    # No instance __dict__: a dict of reftrace's would look like an old
    # holder of the new objects it refers to.
    __slots__ = (
        "frames",
        "max_allocations",
        "trace",
        "freeze_mode",
        "old_ids",
        "started_tracing",
        "untracked_before",
        "before",
        "timings",
    )

    def __init__(self, frames: int = 1, allocations: int = 30, trace: bool = True) -> None:
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
            raise ValueError(f"frames must be a positive int, got {frames!r}")
        self.frames = frames
        # Without tracing, no allocation site can be read.
        self.max_allocations = allocations if trace else 0
        self.trace = trace
        self.freeze_mode = False
        self.old_ids: set[int] | None = None
        self.started_tracing = False
        #: without tracemalloc: ids of the dicts the gc did not track on entry
        self.untracked_before: set[int] = set()
        self.before: tracemalloc.Snapshot | None = None
        self.timings: dict[str, float] = {}

    def start(self) -> None:
        """On entry: start tracemalloc if asked, collect, and mark every live object old (frozen
        when no other capture is active and the program froze nothing, else listed by id)."""
        t0 = time.perf_counter()
        # Trace from before the collection: a full collection empties the
        # interpreter's free lists, so every dict or tuple the block makes
        # gets fresh, traced memory, and "no trace" then means "old".
        if self.trace and not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
            self.started_tracing = True
        with _ACTIVE_LOCK:
            for other in _ACTIVE:
                other._demote()
            frozen = gc.get_freeze_count()
            self.freeze_mode = not _ACTIVE and (frozen == 0 or frozen == interpreter_frozen())
            if self.freeze_mode and not self.trace and not tracemalloc.is_tracing():
                # Without a trace to tell them apart, an old dict the gc does
                # not track (empty, or of numbers) that the block makes tracked
                # would look new: remember them all, once, before freezing.
                every = gc.get_objects()
                self.untracked_before = set(map(id, untracked_dicts(every)))
                del every
            if self.freeze_mode:
                # Frozen first, the collection then has nothing to walk: it
                # costs nothing on any heap, yet it still empties the free
                # lists. Garbage left from before the block is frozen with the
                # rest: it is old, nothing the block runs can reach it, and
                # the next collection after the watch frees it.
                gc.freeze()
                gc.collect()
            else:
                gc.collect()
                self.old_ids = set(map(id, gc.get_objects()))
            t1 = time.perf_counter()
            _ACTIVE.append(self)
        if self.max_allocations > 0 and not self.started_tracing and tracemalloc.is_tracing():
            self.before = tracemalloc.take_snapshot()
        self.timings["enter_collect"] = t1 - t0
        self.timings["enter"] = time.perf_counter() - t0

    def _demote(self) -> None:
        """Another capture starts: stop freezing, remember the old objects by id."""
        if not self.freeze_mode:
            return
        unfrozen = set(map(id, gc.get_objects()))
        gc.unfreeze()
        self.old_ids = {key for key in map(id, gc.get_objects()) if key not in unfrozen}
        self.freeze_mode = False

    def abort(self) -> None:
        """Undo ``start()``: restore tracemalloc and gc (also when the exit fails)."""
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
            if self.started_tracing and tracemalloc.is_tracing():
                tracemalloc.stop()
            self.started_tracing = False
            if self.freeze_mode:
                gc.unfreeze()
                self.freeze_mode = False

    def collect(self) -> None:
        """The exit collection: free the block's garbage, finalizers' garbage too.

        Runs before the watch resolves its weak references into targets, so a
        tracked object in a garbage cycle is gone, not held by the analysis.
        """
        t0 = time.perf_counter()
        for _ in range(_MAX_EXIT_COLLECTS):
            if gc.collect() == 0:
                break
        self.timings["exit_collect"] = time.perf_counter() - t0

    def stop(self, own_ids: set[int], targets: list[object]) -> BlockState:
        """List the new objects, read allocation sites, restore gc and tracemalloc."""
        if "exit_collect" not in self.timings:
            self.collect()
        t1 = time.perf_counter()
        # Until the objects are listed, nothing here may make an object the
        # gc tracks: no list, no closure (a comprehension using a local makes
        # a cell on 3.10-3.11), no `with` (its bound __exit__ on the stack),
        # or it would be listed among the block's new objects.
        try:
            _ACTIVE_LOCK.acquire()  # another thread's start() may demote this capture
            try:
                if self.freeze_mode:
                    young = gc.get_objects(0) + gc.get_objects(1) + gc.get_objects(2)
                else:
                    every = gc.get_objects()
                    known = map((self.old_ids or set()).__contains__, map(id, every))
                    young = [o for o, was in zip(every, known) if not was]
                    del every, known
            finally:
                _ACTIVE_LOCK.release()
            notes: list[str] = []
            if self.old_ids is not None and gc.get_freeze_count():
                notes.append(
                    "the program froze objects with gc.freeze(): new objects were found by id, "
                    "and references from frozen objects are invisible to the search"
                )
            # (These lists are made after the objects were listed, so they
            # are not among them; the caller registers the final one.)
            mine = map(own_ids.__contains__, map(id, young))
            young = [o for o, own in zip(young, mine) if not own and not is_own(o)]
            del mine
            if self.started_tracing:
                young = _drop_presumed_old(young)
            elif self.untracked_before:
                young = _drop_untracked_before(young, self.untracked_before)
                self.untracked_before = set()
            young_ids = set(map(id, young))
            entries = _entry_points(young)
            t2 = time.perf_counter()
            allocations = self._allocations()
            sites: dict[int, str] = {}
            if tracemalloc.is_tracing():
                for obj in targets:
                    site = allocation_site(obj)
                    if site:
                        sites[id(obj)] = site
                for index in entries[:1000]:
                    site = allocation_site(young[index])
                    if site:
                        sites[id(young[index])] = site
            t3 = time.perf_counter()
        finally:
            self.abort()
        timings = dict(self.timings)
        timings.update(new_objects=t2 - t1, allocations=t3 - t2)
        return BlockState(young, young_ids, entries, allocations, sites, notes, timings)

    def _allocations(self) -> list[Allocation]:
        if not tracemalloc.is_tracing() or self.max_allocations <= 0:
            return []
        snapshot = tracemalloc.take_snapshot()
        key = "traceback" if tracemalloc.get_traceback_limit() > 1 else "lineno"
        if self.before is not None:
            stats = [s for s in snapshot.compare_to(self.before, key) if s.size_diff > 0]
            rows = [(s.traceback, s.size_diff, s.count_diff) for s in stats]
        else:
            rows = [(s.traceback, s.size, s.count) for s in snapshot.statistics(key)]
        del snapshot
        # Filtered by site after grouping, not trace by trace (filter_traces
        # matches every trace in Python): the same rule, the allocating
        # frame's file, at the cost of one match per site.
        excluded: dict[str, bool] = {}
        kept = []
        for row in rows:
            filename = row[0][-1].filename if len(row[0]) else "<unknown>"
            if filename not in excluded:
                excluded[filename] = is_own_file(filename) or any(
                    fnmatch.fnmatch(filename, p) for p in _EXCLUDED_SITES
                )
            if not excluded[filename]:
                kept.append(row)
        rows = kept
        rows.sort(key=lambda row: -row[1])
        out = []
        for traceback, size, count in rows[: self.max_allocations]:
            # tracemalloc lists the oldest frame first; the allocating line is last.
            frames = tuple([f"{short_path(f.filename)}:{f.lineno}" for f in reversed(traceback)])
            out.append(Allocation(frames[0] if frames else "?", size, count, frames))
        return out


#: Allocation sites left out of ``Report.allocations``: reftrace's own and the
#: import machinery's (the allocating frame's file, matched with fnmatch).
#: Allocation sites that are not the program's (besides reftrace's own files;
#: its demo agent is a program like any other).
_EXCLUDED_SITES = (
    tracemalloc.__file__,
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
    "<unknown>",
)


def _drop_untracked_before(young: list[object], before: set[int]) -> list[object]:
    """Leave out the dicts the gc did not track on entry (by id) that no new
    object refers to: old dicts the block made tracked (a new object referring
    to one keeps it new: its id may have been reused)."""
    return _without_unreferenced(young, [o for o in young if type(o) is dict and id(o) in before])


def _drop_presumed_old(young: list[object]) -> list[object]:
    """Leave out dicts and tuples that were allocated before the block.

    An empty dict (or a tuple of atomic values) is not tracked by the gc, so
    it was not frozen on entry; when the block stores a container in it, it
    becomes tracked and lands among the new objects. tracemalloc, started
    before the entry collection (which empties the free lists), has no trace
    for memory allocated before: such a dict that no new object refers to is
    old. (A new dict can still get untraced memory from the free list when an
    old dict dies inside the block; a new object referring to it, like a new
    instance to its ``__dict__``, keeps it new.)
    """
    get = tracemalloc.get_object_traceback
    candidates: list[object] = [
        o for o in young if (type(o) is dict or type(o) is tuple) and get(o) is None
    ]
    return _without_unreferenced(young, candidates)


def _without_unreferenced(young: list[object], candidates: list[object]) -> list[object]:
    """``young`` less the ``candidates`` that no object of ``young`` refers to
    (empties ``candidates``)."""
    if not candidates:
        return young
    referenced = set(map(id, referents_of_all(young)))
    old = {id(o) for o in candidates if id(o) not in referenced}
    candidates.clear()
    return [o for o in young if id(o) not in old]


def _entry_points(young: list[object]) -> list[int]:
    """Indices of new objects referenced from outside the new set.

    An object's reference count minus the references it gets from other new
    objects is what the old heap (or C code, or a running frame) holds.
    """
    index = {id(obj): i for i, obj in enumerate(young)}
    incoming = [0] * len(young)
    for i in range(len(young)):
        for key in map(id, referents(young[i])):
            j = index.get(key)
            if j is not None:
                incoming[j] += 1
    # A count beyond the `young` list's own reference and those from young
    # objects comes from outside.
    counts = loop_refcounts(young)
    return [i for i in range(len(young)) if counts[i] - 1 - incoming[i] > 0]
