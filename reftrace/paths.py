"""Paths to roots: the shortest chain of strong references that keeps an object alive.

A breadth-first search runs backwards from each target, one level of
referrers at a time, until it meets a root (a module global, a local of a
running frame, the exception leaving the block). All searches advance in
lockstep, so each level costs one batched referrer lookup for all targets
together, and the first root met is on a shortest path.

Each backward level costs one pass over the heap, so a search still going
after ``SWITCH_DEPTH`` levels (a long linked chain) changes direction: one
breadth-first pass forward from the roots until it meets the objects at the
searches' current frontier. Every root path must cross that frontier, so the
first one met still gives a shortest path. It costs one walk over what the
roots reach, with a parent map of about 100 bytes per object visited.

A search that runs out of referrers without meeting a root has found either
garbage (a cycle nothing holds: it will be collected) or an object held from
somewhere the gc cannot see; the reference counts tell the two apart.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

from reftrace.heap import HeapView, RootEdge, future_values
from reftrace.objects import referents

#: No limit on path length unless the user sets one.
DEFAULT_MAX_DEPTH: int | None = None
#: Backward levels (one heap pass each) before one forward pass from the roots.
SWITCH_DEPTH = 24


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


@dataclass(slots=True, eq=False)
class _Search:
    target: int
    frontier: list[int]
    #: id -> id of the object one step closer to the target (the target maps to 0)
    toward_target: dict[int, int] = field(default_factory=dict)
    #: id -> how many references away from the target it is
    distance: dict[int, int] = field(default_factory=dict)
    result: Found | NotFound | None = None

    def chain_from(self, start: int) -> list[int]:
        chain = [start]
        while chain[-1] != self.target:
            chain.append(self.toward_target[chain[-1]])
        return chain


def shortest_paths(
    heap: HeapView,
    targets: list[int],
    max_depth: int | None = DEFAULT_MAX_DEPTH,
    switch_depth: int | None = None,
) -> dict[int, Found | NotFound]:
    """Find a shortest root path for every target id (objects held in ``heap.nodes``)."""
    if switch_depth is None:
        switch_depth = SWITCH_DEPTH
    searches = [_Search(t, [t], {t: 0}, {t: 0}) for t in dict.fromkeys(targets)]
    heap.own.update(id(s.toward_target) for s in searches)
    heap.own.update(id(s.distance) for s in searches)
    referrers = heap.referrer_cache
    depth = 0
    active = list(searches)
    walked: set[_Search] = set()  # searches a walk from the roots has finished
    while active:
        if depth >= switch_depth and (max_depth is None or depth < max_depth):
            found = _forward(heap, {s: s.frontier for s in active}, max_depth)
            for search in active:
                search.result = found.get(search) or NotFound("")
            walked.update(active)
            break
        # A global at this level is a root no other root here beats (module
        # roots rank first): that search ends without a scan of the heap.
        globals_ = heap.module_holders({key for s in active for key in s.frontier})
        active = [s for s in active if not _held_by_a_global(s, heap, globals_, depth, max_depth)]
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
    dead_ends = [s for s in searches if isinstance(s.result, NotFound) and s.result.reason == ""]
    for search in dead_ends:
        search.result = _explain_dead_end(search, heap)
    # No referrer the gc shows leads further, yet something holds these: a
    # root may still reach them through a container the gc does not track
    # (a dict of atomic values, say), which only a walk from the roots sees.
    unseen = [s for s in dead_ends if s not in walked and _held_unseen(s.result)]
    if unseen:
        found = _forward(heap, {s: list(s.toward_target) for s in unseen}, max_depth)
        for search, result in found.items():
            search.result = result
        heap.release_scan()
    # The same holds for a target the gc does not track (a tuple of strings
    # given to track()) that the backward search did reach: an instance's
    # __dict__ of atomic values may hold it too, one the gc never lists, on
    # a shorter path. A walk from the roots to the target itself settles it.
    untracked = [
        s
        for s in searches
        if s not in walked
        and isinstance(s.result, Found)
        and s.result.root.kind != "hidden"
        and not gc.is_tracked(heap.nodes[s.target])
    ]
    if untracked:
        found = _forward(heap, {s: [s.target] for s in untracked}, max_depth)
        for search, result in found.items():
            assert isinstance(search.result, Found)
            if len(result.chain) < len(search.result.chain):
                search.result = result
        heap.release_scan()
    # The ids of freed containers must not stay "own": new objects reuse them.
    heap.own.difference_update(id(s.toward_target) for s in searches)
    heap.own.difference_update(id(s.distance) for s in searches)
    return {s.target: s.result for s in searches}  # type: ignore[misc]


def _held_unseen(result: Found | NotFound | None) -> bool:
    if isinstance(result, Found):
        return result.root.kind == "hidden"
    return isinstance(result, NotFound) and not (result.garbage or result.caller_held)


def _held_by_a_global(
    search: _Search,
    heap: HeapView,
    globals_: dict[int, dict[str, object]],
    depth: int,
    max_depth: int | None,
) -> bool:
    """End ``search`` without a scan when a module global holds its frontier
    (a root at this level, and module roots rank first), or when nothing
    roots the frontier here and a global's direct referent holds it (a
    module root at the next level, which nothing there outranks)."""
    handles = False
    for key in search.frontier:
        namespace = globals_.get(key)
        if namespace is None:
            continue
        if _handle(heap, id(namespace), key):
            handles = True  # another module may hold it too: the scan tells
            continue
        _end(search, heap, namespace, [key])
        return True
    if handles or (max_depth is not None and depth >= max_depth):
        return False
    if any(heap.direct_roots(heap.nodes[key]) for key in search.frontier):
        return False  # a frame or the exception roots it at this level
    for key in search.frontier:
        found = heap.global_container(key)
        if found is None:
            continue
        container, namespace = found
        holder = id(container)
        if holder in search.toward_target or _handle(heap, id(namespace), holder):
            continue
        heap.nodes[holder] = container
        search.toward_target[holder] = key
        search.distance[holder] = depth + 1
        _end(search, heap, namespace, [holder, key])
        return True
    return False


def _handle(heap: HeapView, namespace: int, key: int) -> bool:
    """A global the watching module-level code bound to a new object: a handle."""
    return namespace == heap.caller_namespace and heap.made_in_block(key)


def _end(search: _Search, heap: HeapView, namespace: dict[str, object], chain: list[int]) -> None:
    holder = id(namespace)
    heap.nodes[holder] = namespace
    root = RootEdge("module", holder, module=heap.module_dicts[holder])
    search.result = Found(root, chain[:-1] + search.chain_from(chain[-1]))


def _advance(
    search: _Search,
    heap: HeapView,
    referrers: dict[int, list[int]],
    depth: int,
    max_depth: int | None,
) -> None:
    best: tuple[int, int, RootEdge] | None = None
    for key in search.frontier:
        for root in heap.direct_roots(heap.nodes[key]):
            if best is None or root.priority < best[0]:
                best = (root.priority, key, root)
        for holder in referrers[key]:
            module = heap.module_dicts.get(holder)
            if holder == heap.caller_namespace and heap.made_in_block(key):
                continue  # a global the watching module-level code bound: a handle
            if module is not None:
                root = RootEdge("module", holder, module=module)
                if best is None or root.priority < best[0]:
                    best = (root.priority, key, root)
    if best is not None:
        _, key, root = best
        search.result = Found(root, search.chain_from(key))
        return
    if max_depth is not None and depth >= max_depth:
        search.result = _too_deep(max_depth)
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
                search.distance[holder] = depth + 1
                next_frontier.append(holder)
    search.frontier = next_frontier
    if not next_frontier:
        search.result = NotFound("")


def _too_deep(max_depth: int) -> NotFound:
    return NotFound(
        f"no root within {max_depth} references (the search stopped there; "
        "raise max_depth or leave it unset to look further)"
    )


def _forward(
    heap: HeapView, meet: dict[_Search, list[int]], max_depth: int | None
) -> dict[_Search, Found]:
    """Shortest root paths for searches that went backward as far as they
    could, by one breadth-first walk from the roots that stops where it meets
    the objects each search explored (``meet``: their ids).

    A path found this way is the walk's way to an explored object followed by
    the search's way from it to the target; the shortest such sum wins, and a
    search is settled once the walk is deeper than its best sum. Mirrors the
    backward rules: module dicts only start paths, reftrace's objects and
    running frames are never walked, and a global of the watching
    module-level code bound to a new object is a handle.
    """
    futures = {id(f): f for holders in heap.future_holders().values() for f in holders}
    #: explored id -> (search, its distance to that search's target)
    waiting: dict[int, list[tuple[_Search, int]]] = {}
    for search, keys in meet.items():
        for key in keys:
            waiting.setdefault(key, []).append((search, search.distance[key]))
    #: id -> the object one step nearer a root (None for an object a root holds)
    parent: dict[int, object] = {}
    roots: dict[int, RootEdge] = {}
    level: list[object] = []
    #: search -> (length, root priority, the walk's object where it met)
    best: dict[_Search, tuple[int, int, object]] = {}
    scratch = (id(parent), id(roots), id(waiting), id(level), id(futures), id(best))
    heap.own.update(scratch)

    def visit(child: object, holder: object, root: RootEdge | None = None) -> None:
        key = id(child)
        if key in parent or key in heap.module_dicts or heap.excluded(child):
            return
        parent[key] = holder
        if root is not None:
            roots[key] = root
        level.append(child)

    # Level 0: what the roots hold, best root kind first.
    for namespace in heap.module_namespaces:
        dict_id = id(namespace)
        edge = RootEdge("module", dict_id, module=heap.module_dicts[dict_id])
        for child in referents(namespace):
            if dict_id != heap.caller_namespace or not heap.made_in_block(id(child)):
                visit(child, None, edge)
    for value in heap.local_values:
        local = heap.locals.get(id(value))
        if local is not None:
            visit(value, None, RootEdge("frame", 0, frame_local=local))
    if heap.exception is not None:
        visit(heap.exception, None, RootEdge("exception", 0))

    steps = 0
    open_searches = set(meet)
    try:
        while level and open_searches:
            if max_depth is not None and steps >= max_depth:
                break
            for obj in level:
                for search, distance in waiting.get(id(obj), ()):
                    length = steps + distance
                    if max_depth is not None and length >= max_depth:
                        continue
                    priority = _root_of(obj, parent, roots).priority
                    current = best.get(search)
                    if current is None or (length, priority) < current[:2]:
                        best[search] = (length, priority, obj)
            # Anything met deeper makes a path at least `steps + 1` long.
            open_searches = {s for s in open_searches if s not in best or best[s][0] > steps + 1}
            if not open_searches:
                break
            current_level = level[:]
            level.clear()
            for holder in current_level:
                for child in referents(holder):
                    visit(child, holder)
                future = futures.get(id(holder))
                if future is not None:
                    for value in future_values(future):
                        visit(value, holder)
            del current_level
            steps += 1
        found: dict[_Search, Found] = {}
        for search, (_, _, obj) in best.items():
            chain_up = _walk_up(obj, parent)
            root = roots[id(chain_up[0])]
            for node in chain_up:
                heap.nodes[id(node)] = node
            if root.kind == "module" and root.holder_id not in heap.nodes:
                for namespace in heap.module_namespaces:
                    if id(namespace) == root.holder_id:
                        heap.nodes[root.holder_id] = namespace
            ids = [id(node) for node in chain_up[:-1]]
            found[search] = Found(root, ids + search.chain_from(id(obj)))
        return found
    finally:
        level.clear()
        parent.clear()
        best.clear()
        heap.own.difference_update(scratch)


def _root_of(obj: object, parent: dict[int, object], roots: dict[int, RootEdge]) -> RootEdge:
    top = obj
    holder = parent[id(top)]
    while holder is not None:
        top = holder
        holder = parent[id(top)]
    return roots[id(top)]


def _walk_up(obj: object, parent: dict[int, object]) -> list[object]:
    """The objects from a root-held one down to ``obj`` (a loop: chains are long)."""
    chain = [obj]
    holder = parent[id(obj)]
    while holder is not None:
        chain.append(holder)
        holder = parent[id(holder)]
    chain.reverse()
    return chain


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
