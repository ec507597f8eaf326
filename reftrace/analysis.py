"""Analysis: from the state a block left behind to a ``Report``.

Leaks are tracked objects still alive; each gets a shortest root path.
Survivors are all new objects still alive, grouped by where they attach to
the old heap (the old object and the reference from it). Each node on a path
is classified old or new; the reference from the last old node to the first
new one is the *suspect*: where the leak attaches. Leaks with the same suspect
reference share a signature.
"""

from __future__ import annotations

import gc
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

from reftrace import labels
from reftrace.capture import BlockState
from reftrace.census import container_length
from reftrace.heap import HeapView, RootEdge
from reftrace.model import Age, group_leaks
from reftrace.objects import (
    describe,
    referents,
    safe_sizeof,
    type_module,
    type_name,
    weak_handle,
)
from reftrace.paths import DEFAULT_MAX_DEPTH, Found, NotFound, shortest_paths
from reftrace.proof import Cut, forget_handles, prove
from reftrace.report import (
    Leak,
    Path,
    Proof,
    Report,
    Root,
    Step,
    SurvivorGroup,
)
from reftrace.retention import retained_by_all
from reftrace.stores import Slot, slots_for

#: Kinds of edge whose exact label varies between siblings (``[3]``, ``['run-7']``).
_ITEM_KINDS = ("index", "key", "item", "dictkey")
#: Containers whose every reference is an item (labels of kind _ITEM_KINDS).
_ITEM_CONTAINERS = (list, tuple, dict, set, frozenset, deque)
_MAX_RETAINED_WALK = 100_000
#: Findings proved per report (each proof forks the process once).
MAX_PROOFS = 20


#: ``ignore(holder, objects)``: True leaves the new ``objects`` the old
#: ``holder`` (None: a root; HIDDEN: no holder found) holds out of the
#: survivors (``reftrace.watch``).
Ignore = Callable[[object, list[object]], bool]


class _Hidden:
    """The holder ``ignore`` is given for objects no holder was found for."""

    def __repr__(self) -> str:
        return "HIDDEN"


HIDDEN = _Hidden()


#: Where ``reftrace.locate()`` watches for a store: a finding by signature, or
#: a survivor group by attachment.
SlotKey = tuple[Literal["leak", "survivor"], str]


@dataclass(slots=True)
class Options:
    """What ``build_report`` does: path depth, survivor groups (how many), proofs, ``ignore``."""

    max_depth: int | None = DEFAULT_MAX_DEPTH
    survivors: bool = True
    max_survivor_groups: int = 50
    prove: bool = False
    #: filled with the places along each finding's path, for reftrace.locate()
    store_slots: dict[SlotKey, list[Slot]] | None = None
    ignore: Ignore | None = None


def build_report(
    state: BlockState,
    targets: list[object],
    tracked: int,
    own_ids: set[int],
    exception: BaseException | None,
    caller: FrameType | None,
    options: Options,
) -> Report:
    """The ``Report`` of a finished block: a shortest root path for each of ``targets`` (the tracked
    objects still alive), findings (proved with ``options.prove``), survivor groups and notes."""
    t0 = time.perf_counter()
    heap = HeapView(own_ids, exception, caller, state.young_ids)
    # A proof lets go of the watching function's handles in its forked copy.
    proof_caller = caller if options.prove else None
    del caller
    heap.own.add(id(targets))
    heap.untracked_holders.extend(t for t in targets if not gc.is_tracked(t))
    # An untracked target with an allocation site was allocated in the block
    # (tracemalloc traced only the block): a global bound to it is a handle.
    heap.new_untracked.update(id(t) for t in heap.untracked_holders if id(t) in state.sites)
    for obj in targets:
        heap.nodes[id(obj)] = obj
    target_ids = [id(obj) for obj in targets]
    results = shortest_paths(heap, target_ids, options.max_depth)
    t1 = time.perf_counter()

    leaks = []
    leaked_objects: dict[str, list[object]] = {}
    first_leak: dict[str, tuple[Leak, int]] = {}
    collected = tracked - len(targets)
    handles = 0
    for obj, key in zip(targets, target_ids):
        result = results[key]
        if isinstance(result, NotFound) and result.garbage:
            collected += 1
            continue
        if isinstance(result, NotFound) and result.caller_held:
            handles += 1
            continue
        leak = _leak(obj, result, heap, state)
        leaks.append(leak)
        leaked_objects.setdefault(leak.signature, []).append(obj)
        first_leak.setdefault(leak.signature, (leak, key))
    obj = None  # the loop's last target must not stay named here
    finding_sizes = {
        signature: retained_by_all(objects, state.young_ids, limit=_MAX_RETAINED_WALK, own=heap.own)
        for signature, objects in leaked_objects.items()
    }
    t_prove = time.perf_counter()
    proofs: dict[str, Proof] = {}
    if options.prove and first_leak:
        proofs = _prove_findings(
            first_leak, results, leaked_objects, targets, heap, state, options, proof_caller
        )
    del leaked_objects, proof_caller
    slots = options.store_slots
    if slots is not None:
        for signature, (_, key) in first_leak.items():
            result = results[key]
            if isinstance(result, Found):
                slots["leak", signature] = _path_slots(result, heap)
    t2 = time.perf_counter()

    survivors: list[SurvivorGroup] = []
    garbage_survivors = 0
    if options.survivors and state.entries:
        known = known_prefixes(results.values())
        survivors, garbage_survivors = _survivor_groups(heap, state, options, known, slots)
    t3 = time.perf_counter()

    notes = list(state.notes)
    if handles:
        notes.append(
            f"{handles} tracked object{'s are' if handles != 1 else ' is'} still referenced, "
            f"but only by local variables of {heap.caller_function}, the function running "
            "the watch block; not a leak: they go when it returns"
        )
    if garbage_survivors:
        notes.append(
            f"{garbage_survivors} new objects are held only by unreachable cycles "
            "(garbage the next gc run frees); they are not listed as survivors"
        )
    timings = dict(state.timings)
    timings.update(leak_paths=t1 - t0, leaks=t_prove - t1, survivors=t3 - t2)
    if options.prove:
        timings["proofs"] = t2 - t_prove
    heap.nodes.clear()
    return Report(
        leaks=leaks,
        survivors=survivors,
        allocations=state.allocations,
        tracked=tracked,
        collected=collected,
        new_objects=len(state.young),
        notes=notes,
        timings=timings,
        handles=handles,
        findings=group_leaks(leaks, finding_sizes, proofs),
    )


# -- proof by cutting ------------------------------------------------------------


def _prove_findings(
    first_leak: dict[str, tuple[Leak, int]],
    results: dict[int, Found | NotFound],
    leaked_objects: dict[str, list[object]],
    targets: list[object],
    heap: HeapView,
    state: BlockState,
    options: Options,
    caller: FrameType | None,
) -> dict[str, Proof]:
    """Each finding's suspect reference, cut in a forked copy (reftrace.proof).

    Nothing here may name a leaked object in a variable: in the child, every
    reference reftrace holds is let go (``release``) before the collection
    that decides whether the leak dies, and so are the watching function's
    own handles (``out = w.track(...)``), which are not what keeps a leak.
    """

    def release() -> None:  # runs in the child only
        if caller is not None:
            forget_handles(caller, state.young_ids)
        for objects in leaked_objects.values():
            objects.clear()
        leaked_objects.clear()
        targets.clear()
        state.young.clear()
        heap.release()

    def remaining_path(objects: list[object]) -> Path | None:
        heap.referrer_cache.clear()
        ids = [id(obj) for obj in objects]
        for obj in objects:
            heap.nodes[id(obj)] = obj
        obj = None
        found = shortest_paths(heap, ids, options.max_depth)
        for key in ids:
            result = found[key]
            if isinstance(result, Found):
                return make_path(result, heap, heap.young_ids)
        return None

    proofs: dict[str, Proof] = {}
    for number, (signature, (leak, key)) in enumerate(first_leak.items()):
        result = results[key]
        expression = _cut_expression(leak.path)
        if number >= MAX_PROOFS:
            reason = f"only the first {MAX_PROOFS} findings are proved (one fork each)"
            proofs[signature] = Proof("unavailable", expression, reason=reason)
            continue
        if not isinstance(result, Found) or leak.path is None:
            proofs[signature] = Proof("unavailable", "", reason="no path to a root: nothing to cut")
            continue
        box: list[Any] = [_cut_of(result, heap), leaked_objects[signature]]
        if isinstance(box[0], str):
            proofs[signature] = Proof("unavailable", expression, reason=box[0])
            continue
        proofs[signature] = prove(box, expression, heap.young_ids, release, remaining_path)
    return proofs


def _path_slots(found: Found, heap: HeapView) -> list[Any]:
    """The places where the leak of ``found`` attaches: from the holder of its
    suspect reference down to the leaked object (reftrace.locate watches them)."""
    chain = [heap.nodes[key] for key in found.chain]
    suspect = max(0, _suspect_index([_status(obj, heap.young_ids) for obj in chain]))
    objects: list[object] = chain[max(0, suspect - 1) : -1]
    if suspect == 0 and found.root.kind == "module":
        namespace = next(ns for ns in heap.module_namespaces if id(ns) == found.root.holder_id)
        objects.insert(0, namespace)
    children = [*objects[1:], chain[-1]]
    edges = [labels.edge(a, b).label for a, b in zip(objects, children)]
    return slots_for(objects, children, edges)


def _cut_expression(path: Path | None) -> str:
    """The path up to and including its suspect step, as code."""
    if path is None:
        return ""
    for i, step in enumerate(path.steps):
        if step.is_suspect:
            return "".join(s.code for s in path.steps[: i + 1])
    return path.expression


def _cut_of(found: Found, heap: HeapView) -> Any:
    """The suspect reference of ``found`` as live objects (a ``Cut``), or why
    there is none to cut."""
    chain = [heap.nodes[key] for key in found.chain]
    suspect = _suspect_index([_status(obj, heap.young_ids) for obj in chain])
    if suspect < 0:
        return "every object on the path existed before the block: no new reference to cut"
    if suspect > 0:
        holder = chain[suspect - 1]
        edge = labels.edge(holder, chain[suspect])
    elif found.root.kind == "module":
        holder = next(ns for ns in heap.module_namespaces if id(ns) == found.root.holder_id)
        edge = labels.global_edge(holder, chain[0])
    elif found.root.kind == "frame":
        return "the reference is a local variable of a running function"
    elif found.root.kind == "exception":
        return "the reference is the exception propagating out of the block"
    else:
        return "the reference is one the gc cannot see (C code): nothing to cut from Python"
    return Cut(holder, chain[suspect], edge.label)


# -- paths as data ------------------------------------------------------------


def _status(obj: object, young_ids: AbstractSet[int]) -> Age:
    if id(obj) in young_ids:
        return "new"
    return "old" if gc.is_tracked(obj) else "unknown"


def _root(edge: RootEdge) -> Root:
    if edge.kind == "module":
        return Root("module", edge.module)
    if edge.kind == "frame" and edge.frame_local is not None:
        local = edge.frame_local
        return Root("frame", local.thread, local.function, local.filename, local.lineno)
    return Root(edge.kind, "")


def _first_step(edge: RootEdge, heap: HeapView, first: object) -> labels.Edge:
    if edge.kind == "module":
        return labels.global_edge(heap.nodes[edge.holder_id], first)  # type: ignore[arg-type]
    if edge.kind == "frame" and edge.frame_local is not None:
        name = edge.frame_local.name
        return labels.Edge("local", f"local '{name}'", name)
    if edge.kind == "exception":
        return labels.Edge("exception", "<exception in flight>", "<exception>")
    return labels.Edge("hidden", "<held from outside the gc>", "<hidden>")


def make_path(found: Found, heap: HeapView, young_ids: AbstractSet[int]) -> Path:
    """``found``'s chain as a ``Path``: steps labelled as code reads, old or new, suspect marked."""
    objects = [heap.nodes[key] for key in found.chain]
    edges = [_first_step(found.root, heap, objects[0])]
    edges += [labels.edge(parent, child) for parent, child in zip(objects, objects[1:])]
    statuses = [_status(obj, young_ids) for obj in objects]
    names = [(type_name(obj), type_module(obj)) for obj in objects]
    details = [describe(obj) for obj in objects]
    edges, statuses, names, details = _collapse(edges, objects, statuses, names, details)
    suspect = _suspect_index(statuses)
    # Tuples from lists, never from generators, in all of reftrace: another
    # thread listing the heap while a tuple(generator) fills would make its
    # final resize fail (CPython gh-39117).
    steps = tuple(
        [
            Step(e.label, e.kind, e.code, n, s, i == suspect, d, module)
            for i, (e, s, (n, module), d) in enumerate(zip(edges, statuses, names, details))
        ]
    )
    return Path(_root(found.root), steps)


def _collapse(
    edges: list[labels.Edge],
    objects: list[object],
    statuses: list[Age],
    names: list[tuple[str, str]],
    details: list[str],
) -> tuple[list[labels.Edge], list[Age], list[tuple[str, str]], list[str]]:
    """Merge hops a person would write as one: ``.__dict__['x']`` is ``.x``, a
    function's ``.__closure__[0].cell_contents`` is ``cell 'name'``."""
    out_e: list[labels.Edge] = []
    out_s: list[Age] = []
    out_n: list[tuple[str, str]] = []
    out_d: list[str] = []
    i = 0
    while i < len(edges):
        e = edges[i]
        if (
            e.code == ".__dict__"
            and i + 1 < len(edges)
            and edges[i + 1].kind == "key"
            and edges[i + 1].label.startswith("['")
        ):
            name = edges[i + 1].label[2:-2]
            if name.isidentifier():
                e = labels.Edge("attr", f".{name}", f".{name}")
                i += 1
        elif e.code == ".__closure__" and i + 2 < len(edges) and edges[i + 1].kind == "index":
            function = objects[i - 1] if i >= 1 else None
            index = int(edges[i + 1].label[1:-1])
            freevars = getattr(getattr(function, "__code__", None), "co_freevars", ())
            name = freevars[index] if index < len(freevars) else str(index)
            if i + 2 < len(edges) and edges[i + 2].code == ".cell_contents":
                e = labels.Edge("cell", f"cell '{name}'", f".__closure__[{index}].cell_contents")
                i += 2
            else:
                e = labels.Edge("cell", f"cell '{name}' (the cell)", f".__closure__[{index}]")
                i += 1
        out_e.append(e)
        out_s.append(statuses[i])
        out_n.append(names[i])
        out_d.append(details[i])
        i += 1
    return out_e, out_s, out_n, out_d


def _suspect_index(statuses: list[Age]) -> int:
    """The step entering the first non-old object after the last old one (-1 if none)."""
    previous = "old"  # the root itself existed before the block
    suspect = -1
    for i, status in enumerate(statuses):
        if previous == "old" and status != "old":
            suspect = i
        previous = status
    return suspect


def signature(path: Path | None, type_text: str, reason: str = "") -> str:
    """Leaks whose suspect references match share this string.

    It is the path from the root up to and including the suspect reference,
    with item indices and keys generalised (``[*]``): every object that leaks
    through one listener list, whatever its type, is one finding.
    """
    if path is None:
        return f"{type_text} | {reason}"
    parts = [path.root.kind, path.root.name, path.root.function]
    suspect = next((i for i, s in enumerate(path.steps) if s.is_suspect), None)
    if suspect is None:  # all old: the object was already held before the block
        return " | ".join([*parts, *(s.label for s in path.steps), type_text])
    for step in path.steps[: suspect + 1]:
        parts.append("[*]" if step.kind in _ITEM_KINDS else step.label)
    return " | ".join(parts)


# -- leaks ----------------------------------------------------------------------


def _leak(obj: object, result: Found | NotFound, heap: HeapView, state: BlockState) -> Leak:
    name = type_name(obj)
    path = make_path(result, heap, state.young_ids) if isinstance(result, Found) else None
    reason = result.reason if isinstance(result, NotFound) else ""
    size, count = retained(obj, state.young_ids, heap)
    return Leak(
        type_name=name,
        path=path,
        signature=signature(path, name, reason),
        size=size,
        objects=count,
        allocated_at=state.sites.get(id(obj)),
        reason=reason,
        handle=weak_handle(obj),
    )


def retained(obj: object, young_ids: set[int], heap: HeapView) -> tuple[int, int]:
    """Bytes and count of ``obj`` plus the new objects reachable from it.

    Objects the gc does not track (strings, atomic tuples) count when only
    one reference holds them: they belong to what holds them.
    """
    return retained_by_all([obj], young_ids, limit=_MAX_RETAINED_WALK, own=heap.own)


def exclusive_children(holder: object) -> list[object]:
    """The untracked objects (strings, atomic dicts) that only ``holder`` refers to."""
    children = referents(holder)
    out = []
    for child in children:
        if not gc.is_tracked(child) and sys.getrefcount(child) <= _EXCLUSIVE_REFCOUNT:
            out.append(child)
    return out


def _child_refcounts(holder: object) -> list[int]:
    # Same shape as exclusive_children: the holder, the referents list, the
    # loop variable and getrefcount's argument all count.
    children = referents(holder)
    out = []
    for child in children:
        out.append(sys.getrefcount(child))
    return out


# What an exclusively held child's count looks like in exclusive_children,
# measured on a fresh string held by one list, since versions differ.
_EXCLUSIVE_REFCOUNT = _child_refcounts(["".join(["reftrace", "-calibration"])])[0]


def _untracked_size(obj: object) -> int:
    """Bytes of the untracked objects (strings, atomic dicts) only ``obj`` holds."""
    return sum(safe_sizeof(child) for child in exclusive_children(obj))


# -- survivors ------------------------------------------------------------------


def known_prefixes(results: Iterable[Found | NotFound]) -> dict[int, tuple[Found, int]]:
    """Shortest paths to every object on the leak paths already found, as
    (path, length of the prefix that ends at the object).

    A prefix of a shortest path is a shortest path to where it ends (a
    shorter one would shorten the whole), so survivors attached to those
    objects need no search of their own. Prefixes are cut only when used:
    a path of 100,000 steps has 100,000 of them.
    """
    known: dict[int, tuple[Found, int]] = {}
    for result in results:
        if isinstance(result, Found):
            for i, key in enumerate(result.chain):
                known.setdefault(key, (result, i + 1))
    return known


def _prefix(known: tuple[Found, int]) -> Found:
    found, length = known
    return Found(found.root, found.chain[:length])


def _group_path(
    holder: int,
    edge_text: str,
    members: list[int],
    edge: labels.Edge | None,
    result: Found | NotFound | None,
    heap: HeapView,
) -> tuple[Path | None, str]:
    """The path from a root to a survivor group, ending with its attaching edge.

    ``holder`` 0 means the group's objects are held by a root directly (a
    frame local, the exception, a hidden reference). The last step names the
    reference from the old holder; ``[*]`` when it holds several members.
    """
    first = heap.nodes[members[0]]
    if not holder:
        roots = heap.direct_roots(first)
        root_edge = min(roots, key=lambda r: r.priority) if roots else RootEdge("hidden", 0)
        return make_path(Found(root_edge, [members[0]]), heap, heap.young_ids), ""
    assert edge is not None
    if len(members) > 1:
        code = "[*]" if edge.kind in _ITEM_KINDS else edge.code
        edge = labels.Edge(edge.kind, edge_text, code)
    if holder in heap.module_dicts:
        base = Path(Root("module", heap.module_dicts[holder]), ())
    elif isinstance(result, Found):
        base = make_path(result, heap, heap.young_ids)
    else:
        return None, result.reason if isinstance(result, NotFound) else ""
    if (
        len(members) == 1
        and base.steps
        and base.steps[-1].code == ".__dict__"
        and edge.kind == "key"
        and edge.label.startswith("['")
        and edge.label[2:-2].isidentifier()
    ):
        # An instance's own dict (3.10, or a materialised one): `.x`, as make_path writes it.
        name = edge.label[2:-2]
        edge = labels.Edge("attr", f".{name}", f".{name}")
        base = Path(base.root, base.steps[:-1])
    detail = f"{len(members)} references" if len(members) > 1 else describe(first)
    step = Step(
        edge.label,
        edge.kind,
        edge.code,
        type_name(first),
        "new",
        is_suspect=base.suspect is None,
        detail=detail,
        module=type_module(first),
    )
    return Path(base.root, base.steps + (step,)), ""


def _drop_ignored(groups: dict[tuple[int, str], list[int]], heap: HeapView, ignore: Ignore) -> None:
    """Leave out the groups the caller's ``ignore`` accepts, before any path search."""
    for group_key in list(groups):
        holder = heap.nodes[group_key[0]] if group_key[0] else None
        members = [heap.nodes[key] for key in groups[group_key]]
        try:
            drop = bool(ignore(holder, members))
        except Exception:
            drop = False
        del holder, members
        if drop:
            del groups[group_key]


def _survivor_groups(
    heap: HeapView,
    state: BlockState,
    options: Options,
    known: dict[int, tuple[Found, int]],
    slots: dict[SlotKey, list[Slot]] | None = None,
) -> tuple[list[SurvivorGroup], int]:
    young = state.young
    entry_ids = [id(young[i]) for i in state.entries]
    for i in state.entries:
        heap.nodes[id(young[i])] = young[i]
    young_ids = state.young_ids
    holders = heap.covering_holders(entry_ids, young_ids)

    # Group entries by (old holder, kind of reference), or by a direct root.
    groups: dict[tuple[int, str], list[int]] = {}
    edges: dict[tuple[int, str], labels.Edge] = {}
    unexplained: list[int] = []
    for key in entry_ids:
        old_holders = [h for h in holders[key] if h not in young_ids]
        obj = heap.nodes[key]
        roots = heap.direct_roots(obj)
        if roots:
            root = min(roots, key=lambda r: r.priority)
            group_key = (0, f"root:{root.kind}:{root.frame_local}")
            groups.setdefault(group_key, []).append(key)
            continue
        module_holders = [
            h for h in old_holders if h in heap.module_dicts and h != heap.caller_namespace
        ]
        other_holders = [h for h in old_holders if h not in heap.module_dicts]
        holder = (module_holders or other_holders or [0])[0]
        if not holder:
            if not any(h in young_ids for h in holders[key]):
                unexplained.append(key)
            continue
        if (holder, "[*]") in edges and type(heap.nodes[holder]) in _ITEM_CONTAINERS:
            # Every reference from a plain container is an item: labelling each
            # one would scan the container once per member.
            groups[(holder, "[*]")].append(key)
            continue
        if holder in heap.module_dicts:
            edge = labels.global_edge(heap.nodes[holder], obj)  # type: ignore[arg-type]
        else:
            edge = labels.edge(heap.nodes[holder], obj)
        group_key = (holder, "[*]" if edge.kind in _ITEM_KINDS else edge.label)
        groups.setdefault(group_key, []).append(key)
        edges.setdefault(group_key, edge)
    if unexplained and options.ignore is not None:
        # Held from C, or garbage: a caller that leaves out what C holds
        # anyway spares the scan that tells them apart.
        held = [heap.nodes[key] for key in unexplained]
        try:
            skip = bool(options.ignore(HIDDEN, held))
        except Exception:
            skip = False
        del held
        if skip:
            unexplained = []
    if unexplained:
        for key, count in zip(unexplained, heap.hidden_references(unexplained)):
            if count > 0:
                groups.setdefault((0, "root:hidden:None"), []).append(key)
    if options.ignore is not None:
        _drop_ignored(groups, heap, options.ignore)

    # Assign every new object to the first group that reaches it.
    index = {id(obj): i for i, obj in enumerate(young)}
    owner = [-1] * len(young)
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    for group_number, (_, members) in enumerate(ordered):
        queue = deque(index[k] for k in members if owner[index[k]] < 0)
        for i in queue:
            owner[i] = group_number
        while queue:
            i = queue.popleft()
            for child_key in map(id, referents(young[i])):
                j = index.get(child_key)
                if j is not None and owner[j] < 0:
                    owner[j] = group_number
                    queue.append(j)
    counts: list[Counter[str]] = [Counter() for _ in ordered]
    sizes = [0] * len(ordered)
    for i, group_number in enumerate(owner):
        if group_number >= 0:
            counts[group_number][type_name(young[i])] += 1
            sizes[group_number] += safe_sizeof(young[i]) + _untracked_size(young[i])

    # Paths from roots to the old holders.
    holder_ids = [
        group_key[0] for group_key, _ in ordered[: options.max_survivor_groups] if group_key[0]
    ]
    unknown = [key for key in holder_ids if key not in known and key not in heap.module_dicts]
    paths: dict[int, Found | NotFound] = {
        key: _prefix(known[key]) for key in holder_ids if key in known
    }
    if unknown:
        # The edge labels above read instances' __dict__, which makes the
        # dict on 3.11+ (a new object, now the holder of their attributes):
        # a list of the heap made before it would miss that holder.
        heap.release_scan()
        paths.update(shortest_paths(heap, unknown, options.max_depth))

    out: list[SurvivorGroup] = []
    garbage = 0
    for group_number, (group_key, members) in enumerate(ordered):
        count = sum(counts[group_number].values())
        if count == 0:
            continue
        holder = group_key[0]
        result = paths.get(holder) if holder else None
        if isinstance(result, NotFound) and result.garbage:
            garbage += count
            continue
        path, reason = _group_path(
            holder, group_key[1], members, edges.get(group_key), result, heap
        )
        if path is None and not reason:
            reason = f"path not computed: only the {options.max_survivor_groups} largest get one"
        holder_type = type_name(heap.nodes[holder]) if holder else ""
        if path is not None and (not holder or holder in heap.module_dicts):
            holder_type = path.root.describe()
        edge_label = path.steps[-1].label if path else group_key[1]
        attachment = path.expression if path else f"<{holder_type}>{edge_label}"
        if slots is not None and holder:
            # the holder, and what the group attached there (old on the next call)
            first = heap.nodes[members[0]]
            slots["survivor", attachment] = slots_for(
                [heap.nodes[holder], first], [first, None], [edge_label, ""]
            )
            first = None
        length = container_length(heap.nodes[holder]) if holder else -1
        out.append(
            SurvivorGroup(
                attachment=attachment,
                holder_type=holder_type,
                edge=edge_label,
                path=path,
                count=count,
                size=sizes[group_number],
                top_types=counts[group_number].most_common(5),
                reason=reason,
                holder_length=length if length >= 0 else None,
                holder_id=holder,
                entry_ids=tuple(members),
            )
        )
    out.sort(key=lambda g: (-g.size, -g.count))
    return out, garbage
