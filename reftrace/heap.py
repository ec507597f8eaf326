"""The heap graph: who refers to whom, read from the live gc.

``HeapView`` answers "which objects refer to these?" for a batch of objects,
with one pass over the heap per call, and knows the roots: module globals,
local variables of running frames, and the exception leaving the watched
block. Weak references never appear: ``gc.get_referents`` of a weak
reference does not return its referent, so they cannot retain anything here.

Two ways to find referrers, picked by batch size:

- ``gc.get_referrers(*batch)`` scans the heap in C, but compares every edge
  with every object of the batch, so it is used for small batches;
- a forward scan over ``gc.get_objects()`` that asks, chunk by chunk, whether
  any referent is in the batch (a set lookup), for large ones.

Everything reftrace itself creates while looking (its lists, its dicts, the
frames of its functions) is excluded from every answer.
"""

from __future__ import annotations

import gc
import random
import sys
import types
from collections import Counter
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import compress, islice

from reftrace import frames as _frames
from reftrace.model import RootKind
from reftrace.objects import (
    is_immortal,
    is_own,
    loop_refcounts,
    module_dict,
    module_name,
    referents,
    referents_of_all,
)

#: Above this many objects per call, a forward scan beats gc.get_referrers.
SMALL_BATCH = 100
_CHUNK = 1024
_SUBCHUNK = 32
#: From this many allocated memory blocks on (about 500,000 objects), what
#: module globals hold is indexed (HeapView.global_container).
GLOBAL_CONTAINERS_MIN_BLOCKS = 2_000_000
_INDEXED_REFERENTS = 1_000
#: Batches of survivors whose holders are looked up before a forward scan.
_COVERING_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class RootEdge:
    """A root holding an object directly: a module global, a frame local, ..."""

    kind: RootKind
    holder_id: int  # id of the module dict, or 0
    frame_local: _frames.FrameLocal | None = None
    module: str = ""

    @property
    def priority(self) -> int:
        """Which root a path prefers, lowest first: module, frame, exception, hidden."""
        return ("module", "frame", "exception", "hidden").index(self.kind)


class HeapView:
    """A read-only view of the heap for one analysis."""

    def __init__(
        self,
        own_ids: set[int],
        exception: BaseException | None = None,
        caller: types.FrameType | None = None,
        young_ids: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        self.own = own_ids
        self.module_dicts: dict[int, str] = {}
        #: the module dicts themselves, where a forward search starts
        self.module_namespaces: list[dict[str, object]] = []
        for name, module in list(sys.modules.items()):
            if issubclass(type(module), types.ModuleType):
                namespace = module_dict(module)
                canonical = module_name(module)
                if id(namespace) not in self.module_dicts:
                    self.module_dicts[id(namespace)] = canonical if canonical != "?" else name
                    self.module_namespaces.append(namespace)
        running = _frames.running_frames()
        self.frame_ids = {id(frame) for _, _, frame in running}
        # The function running the `with` block keeps handles on what it
        # watched (`out = w.track(...)`); they die when it returns, so its
        # locals are not roots: a leak must be held by something else.
        # At module level (a script, a notebook cell) those handles are the
        # globals the block bound to new objects.
        self.caller_refs: Counter[int] = Counter()
        self.caller_handles: set[int] = set()
        self.caller_namespace = 0
        self.caller_function = ""
        if caller is not None:
            self.caller_function = _frames.frame_function(caller)
            if caller.f_code.co_flags & 0x01:  # a function: its locals are invisible
                self.caller_refs = _frames.frame_references([caller])
                self.caller_handles = set(self.caller_refs)
                # A generator running the block (a pytest fixture) shows the
                # same locals through the generator object from 3.14 on: it
                # is the caller's frame, not a holder of its own.
                owner = getattr(caller, "f_generator", None)
                if owner is not None:
                    self.own.add(id(owner))
                del owner
            elif caller.f_locals is caller.f_globals:
                self.caller_namespace = id(caller.f_globals)
                self.caller_handles = {id(v) for v in list(caller.f_globals.values())}
        self.young_ids = young_ids
        #: tracked objects of the watch the gc does not track (a dict of
        #: numbers) that the block allocated: new, though not in young_ids
        self.new_untracked: set[int] = set()
        self.locals, snapshots, values = _frames.locals_index(
            [entry for entry in running if entry[2] is not caller]
        )
        del running, caller
        self.snapshots = snapshots  # kept alive while their ids are in `own`
        self.own.update(id(s) for s in snapshots)
        #: the objects frame locals hold (``locals`` maps their ids to where)
        self.local_values = values
        self.own.add(id(values))
        self.exception_id = id(exception) if exception is not None else 0
        self.exception = exception
        self._all: list[object] | None = None
        self._future_holders: dict[int, list[object]] | None = None
        self._global_containers: dict[int, object] | None = None
        self._container_modules: dict[int, dict[str, object]] = {}
        #: Every object the analysis has touched, by id: the only place it keeps them.
        self.nodes: dict[int, object] = {}
        #: Referrer ids found so far, by id: the leak and survivor searches share scans.
        self.referrer_cache: dict[int, list[int]] = {}
        self.own.update((id(self.__dict__), id(self.nodes), id(self.locals)))
        self.own.add(id(self.module_namespaces))
        #: tracked objects (of the watch) the gc does not track, such as a dict
        #: of atomic values: gc.get_referrers never returns them as holders.
        self.untracked_holders: list[object] = []
        self.own.add(id(self.untracked_holders))

    # -- roots ---------------------------------------------------------------

    def direct_roots(self, obj: object) -> list[RootEdge]:
        """Roots that hold ``obj`` without any object in between."""
        found = []
        local = self.locals.get(id(obj))
        if local is not None:
            found.append(RootEdge("frame", 0, frame_local=local))
        if self.exception_id and id(obj) == self.exception_id:
            found.append(RootEdge("exception", 0))
        return found

    def module_holders(self, keys: AbstractSet[int]) -> dict[int, dict[str, object]]:
        """For the objects of ``keys`` that are globals (or keys) of a module,
        the first such module's dict in ``sys.modules`` order.

        Read from the module dicts themselves, in C but for the hits (about a
        millisecond for a thousand modules): a search whose frontier holds a
        global ends at that level without a heap scan. Asked afresh at each
        level rather than indexed once: an index of every global's id (ten
        thousand ints), alive through each analysis, grew a small process
        from 34 to 77 MB of resident memory over 3,000 watches on 3.13 (its
        objects and memory blocks stayed flat: arenas the ints fragmented).
        """
        found: dict[int, dict[str, object]] = {}
        for namespace in self.module_namespaces:
            held = referents(namespace)
            if not keys.isdisjoint(map(id, held)):
                for obj in held:
                    key = id(obj)
                    if key in keys and key not in found:
                        found[key] = namespace
            del held
        return found

    def global_container(self, key: int) -> tuple[object, dict[str, object]] | None:
        """An object a module global refers to directly that holds ``key``,
        with that module's dict; None when none does, or when the heap is too
        small for the index to pay.

        Indexed once from the globals themselves (containers of up to
        ``_INDEXED_REFERENTS`` references; modules and module dicts left
        out): a search meeting one ends a level early, without a scan. The
        index costs about what one scan of half a million objects does, so
        it is built only on a heap that big (read in O(1) from the number of
        memory blocks the interpreter has allocated, about 4 per object).
        """
        if self._global_containers is None:
            if sys.getallocatedblocks() < GLOBAL_CONTAINERS_MIN_BLOCKS:
                return None
            # Both dicts are reftrace's own: no scan counts them as holders.
            index: dict[int, object] = {}
            modules = self._container_modules
            self.own.update((id(index), id(modules)))
            for namespace in reversed(self.module_namespaces):
                for value in list(dict.values(namespace)):
                    if (
                        not gc.is_tracked(value)
                        or id(value) in self.module_dicts
                        or isinstance(value, types.ModuleType)
                        or self.excluded(value)
                    ):
                        continue
                    held = referents(value)
                    if len(held) <= _INDEXED_REFERENTS:
                        index.update(dict.fromkeys(map(id, held), value))
                        modules[id(value)] = namespace
                    del held
                value = None
            self._global_containers = index
        container = self._global_containers.get(key)
        if container is None:
            return None
        return container, self._container_modules[id(container)]

    def made_in_block(self, key: int) -> bool:
        """True when the object with id ``key`` was made in the block (young, or new untracked)."""
        return key in self.young_ids or key in self.new_untracked

    def excluded(self, obj: object) -> bool:
        """True for what no answer includes: reftrace's own objects, and running frames."""
        key = id(obj)
        return key in self.own or key in self.frame_ids or is_own(obj)

    # -- referrers -----------------------------------------------------------

    def all_objects(self) -> list[object]:
        """Every gc-tracked object but reftrace's own, listed on the first call and reused after."""
        if self._all is None:
            # Leave out reftrace's containers alive right now (a batch tuple,
            # say): this list would otherwise keep them, and their contents
            # would look held by them in every later scan.
            own = self.own
            self._all = [obj for obj in gc.get_objects() if id(obj) not in own]
            own.add(id(self._all))
        return self._all

    def release(self) -> None:
        """Let go of every object the view holds (a proof's child does, before
        the collection that decides whether a leak dies)."""
        self.nodes.clear()
        self.local_values.clear()
        self.untracked_holders.clear()
        self.release_scan()
        self._future_holders = None

    def release_scan(self) -> None:
        """Drop the list of every object: it refers to everything, so it would be
        counted as a holder of each object in a later reference count."""
        if self._all is not None:
            self.own.discard(id(self._all))
            self._all = None

    def referrers(self, ids: list[int]) -> dict[int, list[int]]:
        """For each object id in ``ids`` (objects kept in ``self.nodes``), the ids
        of the objects that refer to it; those are added to ``self.nodes``.

        Module dicts are included (they are where module roots start); running
        frames and reftrace's own objects are not.
        """
        cached = {key: self.referrer_cache[key] for key in ids if key in self.referrer_cache}
        ids = [key for key in ids if key not in cached]
        if not ids:
            return cached
        result: dict[int, list[int]] = {key: [] for key in ids}
        batch = tuple([self.nodes[key] for key in ids])
        # 3.13 returns the argument tuple of get_referrers among the referrers.
        self.own.add(id(batch))
        try:
            if len(batch) <= SMALL_BATCH:
                found = gc.get_referrers(*batch)
                self._distribute(found, result)
                del found
            else:
                objects = self.all_objects()
                want = result.keys()
                for start in range(0, len(objects), _CHUNK):
                    chunk = objects[start : start + _CHUNK]
                    if not want.isdisjoint(map(id, referents_of_all(chunk))):
                        # Narrow the hit down in C before looking at objects
                        # one by one: with many targets most chunks hit once.
                        for sub in range(0, len(chunk), _SUBCHUNK):
                            part = chunk[sub : sub + _SUBCHUNK]
                            if not want.isdisjoint(map(id, referents_of_all(part))):
                                self._distribute(part, result)
                            del part
                    del chunk
        finally:
            self.own.discard(id(batch))
            del batch
        for holder in self.untracked_holders:
            holder_id = id(holder)
            for key in map(id, referents(holder)):
                if key in result and holder_id not in result[key]:
                    result[key].append(holder_id)
                    self.nodes[holder_id] = holder
        for key, holders in self.future_holders().items():
            if key in result:
                for holder in holders:
                    self.nodes[id(holder)] = holder
                    result[key].append(id(holder))
        self.referrer_cache.update(result)
        result.update(cached)
        return result

    def covering_holders(self, ids: list[int], young: AbstractSet[int]) -> dict[int, list[int]]:
        """Holders of many objects that share few holders, as a block's
        survivors do (thousands appended to one old list): one
        ``gc.get_referrers`` call for a batch, then each old holder it finds
        answers for every other object of ``ids`` it refers to, from its own
        referents. An object answered for that way gets that holder, not its
        full list of referrers. A batch whose holders answer for fewer other
        objects than twice its size means the holders are many: the rest get
        one forward scan, as they do after a few batches.
        """
        result: dict[int, list[int]] = {key: [] for key in ids}
        remaining = dict.fromkeys(ids)
        rounds = 0
        while len(remaining) > SMALL_BATCH and rounds < _COVERING_ROUNDS:
            rounds += 1
            if rounds == 1:
                # A sample of all of them, where the biggest groups show up
                # first; drawn at random, as a fixed step would follow a
                # pattern of the block's (every other object to one place).
                batch = random.Random(0).sample(list(remaining), SMALL_BATCH)
            else:
                # What is left comes in creation order, where neighbours were
                # often stored in different places (round-robin, per key).
                batch = list(islice(remaining, SMALL_BATCH))
            found = self.referrers(batch)
            before = len(remaining)
            for key in batch:
                result[key] = found[key]
                del remaining[key]
            old = {h for key in batch for h in found[key] if h not in young}
            for holder_id in old:
                for key in map(id, referents(self.nodes[holder_id])):
                    if key in remaining:
                        result[key].append(holder_id)
                        del remaining[key]
            if before - len(remaining) < 2 * SMALL_BATCH:
                break  # its holders answered for fewer others than it held itself
        if remaining:
            result.update(self.referrers(list(remaining)))
        return result

    def _distribute(self, holders: list[object], result: dict[int, list[int]]) -> None:
        for holder in holders:
            if self.excluded(holder):
                continue
            holder_id = id(holder)
            seen = set()
            for key in map(id, referents(holder)):
                if key in result and key not in seen:
                    seen.add(key)
                    result[key].append(holder_id)
                    self.nodes[holder_id] = holder

    def future_holders(self) -> dict[int, list[object]]:
        """asyncio futures by the id of their result or exception (3.10 and 3.11 only).

        On those versions the C ``Future``'s traverse skips its result, so
        ``gc.get_referrers(result)`` never returns the task that holds it.
        """
        if self._future_holders is not None:
            return self._future_holders
        holders: dict[int, list[object]] = {}
        asyncio = sys.modules.get("asyncio")
        futures: list[object] = []
        if sys.version_info < (3, 12) and asyncio is not None and _a_loop_was_made(asyncio):
            # The types on the heap first, in C: most heaps hold no future at
            # all, and a loop over every object in Python costs ~0.5 s per 1M.
            future_type = asyncio.Future
            every = gc.get_objects()
            kinds = {t for t in set(map(type, every)) if issubclass(t, future_type)}
            if kinds:
                futures = list(compress(every, map(kinds.__contains__, map(type, every))))
            del every
        for obj in futures:
            if self.excluded(obj):
                continue
            for value in future_values(obj):
                holders.setdefault(id(value), []).append(obj)
        futures.clear()
        self._future_holders = holders
        self.own.add(id(holders))
        self.own.update(id(v) for v in holders.values())
        return holders

    # -- references the gc cannot see ---------------------------------------

    def hidden_references(self, ids: list[int]) -> list[int]:
        """How many references to each object (ids of ``self.nodes``) the gc cannot see.

        Those come from C code, from objects frozen with ``gc.freeze()``, from
        untracked containers, or from running frames. Computed as the
        reference count minus the references found on the heap.
        """
        out: list[int] = []
        for start in range(0, len(ids), SMALL_BATCH):
            batch = [self.nodes[key] for key in ids[start : start + SMALL_BATCH]]
            out.extend(_hidden_counts(batch, self.caller_refs, self.untracked_holders))
            del batch
        return out


def _a_loop_was_made(asyncio: types.ModuleType) -> bool:
    """Whether asyncio ever made an event loop (its policy is made with the
    first one, or set by the program): with none, there is no future."""
    events = sys.modules.get("asyncio.events")
    policy = getattr(events, "_event_loop_policy", True) if events is not None else True
    return policy is not None


def future_values(future: object) -> list[object]:
    """The result and exception an asyncio future holds (those that are set),
    read through the C slots: on 3.10 and 3.11 the gc does not show them."""
    values = []
    for attr in ("_result", "_exception"):
        try:
            value = object.__getattribute__(future, attr)
        except Exception:
            continue
        if value is not None:
            values.append(value)
    return values


def _all_referrers(batch: list[object]) -> list[object]:
    """Every tracked object referring to a batch member, reftrace's own included."""
    return gc.get_referrers(*batch)


def _visible_counts(batch: list[object], holders: list[object]) -> dict[int, int]:
    counts = dict.fromkeys(map(id, batch), 0)
    for holder in holders:
        for key in map(id, referents(holder)):
            if key in counts:
                counts[key] += 1
    return counts


def _hidden_counts(batch: list[object], known: Counter[int], untracked: list[object]) -> list[int]:
    # No local variable of this function may refer to a batch member while
    # the referrers are read, or it would be counted as hidden.
    holders = _all_referrers(batch)
    want = set(map(id, batch))
    holders += [h for h in untracked if not want.isdisjoint(map(id, referents(h)))]
    counts = _visible_counts(batch, holders)
    in_holders = Counter(map(id, holders))
    in_frames = _frames.own_frame_references(skip=1)
    out = []
    # References: the heap (counts), the holders list, reftrace's own frames,
    # the `known` ones (the watching function's locals); `batch`'s own is in
    # both the count and `counts`.
    refcounts = loop_refcounts(batch)
    for i, key in enumerate(map(id, batch)):
        if is_immortal(batch[i]):
            out.append(0)
            continue
        rc = refcounts[i] - counts[key] - in_holders.get(key, 0)
        rc -= in_frames.get(key, 0) + known.get(key, 0)
        out.append(max(rc, 0))
    return out
