"""Paths to roots: the shortest chain of strong references that keeps an object alive.

A breadth-first search runs backwards from each target, one level of
referrers at a time, until it meets a root (a module global, a local of a
running frame, the exception leaving the block). All searches advance in
lockstep, so each level costs one batched referrer lookup for all targets
together, and the first root met is on a shortest path.

A search that runs out of referrers without meeting a root has found either
garbage (a cycle nothing holds: it will be collected) or an object held from
somewhere the gc cannot see; the reference counts tell the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reftrace.heap import HeapView, RootEdge

DEFAULT_MAX_DEPTH = 64


@dataclass(slots=True)
class Found:
    """A root and the chain of object ids from the object it holds to the target."""

    root: RootEdge
    chain: list[int]


@dataclass(slots=True)
class NotFound:
    """No root: ``garbage`` when nothing outside a cycle holds the target."""

    reason: str
    garbage: bool = False
    #: held only by local variables of the function running the watch block
    caller_held: bool = False


@dataclass(slots=True)
class _Search:
    target: int
    frontier: list[int]
    #: id -> id of the object one step closer to the target (the target maps to 0)
    toward_target: dict[int, int] = field(default_factory=dict)
    result: Found | NotFound | None = None

    def chain_from(self, start: int) -> list[int]:
        chain = [start]
        while chain[-1] != self.target:
            chain.append(self.toward_target[chain[-1]])
        return chain


def shortest_paths(
    heap: HeapView, targets: list[int], max_depth: int = DEFAULT_MAX_DEPTH
) -> dict[int, Found | NotFound]:
    """Find a shortest root path for every target id (objects held in ``heap.nodes``)."""
    searches = [_Search(t, [t], {t: 0}) for t in dict.fromkeys(targets)]
    heap.own.update(id(s.toward_target) for s in searches)
    referrers = heap.referrer_cache
    depth = 0
    active = list(searches)
    while active:
        pending = [key for s in active for key in s.frontier if key not in referrers]
        if pending:
            heap.referrers(list(dict.fromkeys(pending)))  # fills the cache
        still_active = []
        for search in active:
            _advance(search, heap, referrers, depth, max_depth)
            if search.result is None:
                still_active.append(search)
        active = still_active
        depth += 1
    heap.release_scan()
    for search in searches:
        if isinstance(search.result, NotFound) and search.result.reason == "":
            search.result = _explain_dead_end(search, heap)
    # The ids of freed containers must not stay "own": new objects reuse them.
    heap.own.difference_update(id(s.toward_target) for s in searches)
    return {s.target: s.result for s in searches}  # type: ignore[misc]


def _advance(
    search: _Search,
    heap: HeapView,
    referrers: dict[int, list[int]],
    depth: int,
    max_depth: int,
) -> None:
    best: tuple[int, int, RootEdge] | None = None
    for key in search.frontier:
        for root in heap.direct_roots(heap.nodes[key]):
            if best is None or root.priority < best[0]:
                best = (root.priority, key, root)
        for holder in referrers[key]:
            module = heap.module_dicts.get(holder)
            if holder == heap.caller_namespace and key in heap.young_ids:
                continue  # a global the watching module-level code bound: a handle
            if module is not None:
                root = RootEdge("module", holder, module=module)
                if best is None or root.priority < best[0]:
                    best = (root.priority, key, root)
    if best is not None:
        _, key, root = best
        search.result = Found(root, search.chain_from(key))
        return
    if depth >= max_depth:
        search.result = NotFound(
            f"no root within {max_depth} references (the search stopped there; "
            "raise max_depth to look further)"
        )
        return
    next_frontier = []
    for key in search.frontier:
        for holder in referrers[key]:
            # A module's globals end a path (as its root) or, for the watching
            # code's own globals, are handles: never a way further up.
            if holder in heap.module_dicts:
                continue
            if holder not in search.toward_target:
                search.toward_target[holder] = key
                next_frontier.append(holder)
    search.frontier = next_frontier
    if not next_frontier:
        search.result = NotFound("")


def _explain_dead_end(search: _Search, heap: HeapView, limit: int = 256) -> Found | NotFound:
    """Every referrer was followed and no root was met: hidden holder or garbage?"""
    keys = list(search.toward_target)[:limit]
    for key, count in zip(keys, heap.hidden_references(keys)):
        if count > 0:
            return Found(RootEdge("hidden", 0), search.chain_from(key))
    for key in keys:
        if key in heap.caller_handles:
            return NotFound(
                f"held only by local variables of {heap.caller_function}, the function "
                "running the watch block; they go when it returns",
                caller_held=True,
            )
    if len(search.toward_target) > limit:
        return NotFound(
            f"no root found; {len(search.toward_target)} objects lead to it, "
            f"and the nearest {limit} are held only by each other"
        )
    return NotFound(
        "held only by a reference cycle that nothing else holds: garbage, "
        "collectable by the next gc run",
        garbage=True,
    )
