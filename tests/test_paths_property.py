"""Paths are true: random heaps, checked against a model of their references.

Hypothesis builds object graphs out of instances, ``__slots__`` objects,
dicts, lists, tuples, sets, closures, bound methods, weak references and
containers the gc does not track (a dict of atomic values), with reference
cycles and random roots (globals of a module), all created inside a watch
block and all tracked. The model knows every strong edge it made, so it
knows which objects a root reaches and how short a path can be. For every
heap the report must then:

- report exactly the objects a root reaches (no missed leak, and a cycle no
  root reaches is never reported);
- give each a path that is real: starting from the module's global, every
  step is checked against ``gc.get_referents`` of the object before it, and
  the last one is the leaked object itself;
- give a shortest one (counted in the gc's own references: an instance
  attribute is one reference when its values are inline (3.11+) and two
  through a real ``__dict__``; a closure variable is three: function,
  closure tuple, cell);
- never step through a weak reference (``gc.get_referents`` of a weak
  reference does not return its referent, so such a step fails the check).

The same heaps are searched two more ways, which must give the same
answers: forward from the roots from the first level (the search long chains
switch to), and with what the globals hold indexed (which big heaps use to
end a search a level early without a scan).

CI runs 1,000 heaps (and 300 for each other way); a longer run:
``REFTRACE_PROPERTY_EXAMPLES=20000 python -m pytest tests/test_paths_property.py``.
"""

from __future__ import annotations

import gc
import heapq
import os
import sys
import types
import weakref
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reftrace

KINDS = (
    "instance",
    "slots",
    "dict",
    "list",
    "tuple",
    "set",
    "closure",
    "method",
    "weakref",
    "atomic",
)
WEIGHT = {"slots": 1, "dict": 1, "list": 1, "tuple": 1, "set": 1, "closure": 3, "method": 1}
MODULE_NAME = "reftrace_property_heap"


class Node:
    pass


class Slotted:
    __slots__ = ("s0", "s1", "s2", "s3")


@dataclass
class Model:
    kinds: list[str]
    edges: list[tuple[int, int]]  # strong edges as the model made them
    roots: list[int]
    #: references from an instance to its attribute's value: 1 with inline
    #: values (3.11+), 2 when the instance has a real ``__dict__``
    attr_weights: dict[int, int] = field(default_factory=dict)

    def weight(self, source: int) -> int:
        if self.kinds[source] == "instance":
            return self.attr_weights[source]
        return WEIGHT[self.kinds[source]]

    def distances(self) -> dict[int, int]:
        """Shortest distance in gc references from a module global to each node."""
        adjacency: dict[int, list[int]] = {}
        for source, target in self.edges:
            adjacency.setdefault(source, []).append(target)
        best = {root: 1 for root in self.roots}  # the global's own reference
        queue = [(1, root) for root in self.roots]
        while queue:
            dist, node = heapq.heappop(queue)
            if dist > best.get(node, 1 << 30):
                continue
            for target in adjacency.get(node, []):
                candidate = dist + self.weight(node)
                if candidate < best.get(target, 1 << 30):
                    best[target] = candidate
                    heapq.heappush(queue, (candidate, target))
        return best


@st.composite
def heaps(draw: st.DrawFn) -> Model:
    count = draw(st.integers(min_value=1, max_value=10))
    kinds = [draw(st.sampled_from(KINDS)) for _ in range(count)]
    pairs = st.tuples(st.integers(0, count - 1), st.integers(0, count - 1))
    edges = draw(st.lists(pairs, max_size=3 * count))
    roots = draw(st.lists(st.integers(0, count - 1), max_size=3, unique=True))
    return Model(kinds, _feasible(kinds, edges), roots)


def _feasible(kinds: list[str], edges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Keep the edges each kind of object can hold."""
    out: list[tuple[int, int]] = []
    slots_used: dict[int, int] = {}
    single: set[int] = set()
    for source, target in edges:
        kind = kinds[source]
        if kind in ("weakref", "atomic"):
            continue  # a weak reference and a dict of atomic values hold nothing
        if kind == "tuple" and kinds[target] == "tuple" and target >= source:
            continue  # tuples are made in order, each from objects that exist
        if kind == "set" and kinds[target] != "instance":
            continue  # a set holds hashable members: instances here
        if kind in ("closure", "method"):
            # a closure holds one variable; a method is bound to one instance
            if source in single or (kind == "method" and kinds[target] != "instance"):
                continue
            single.add(source)
        if kind == "slots":
            if slots_used.get(source, 0) >= 4:
                continue
            slots_used[source] = slots_used.get(source, 0) + 1
        out.append((source, target))
    return out


def build(model: Model) -> list[object]:
    """Make the objects, then their references; return them in model order."""
    objects: list[object] = []
    for kind in model.kinds:
        if kind == "instance":
            objects.append(Node())
        elif kind == "slots":
            objects.append(Slotted())
        elif kind == "dict":
            objects.append({})
        elif kind == "list":
            objects.append([])
        elif kind == "closure":
            objects.append(_closure())
        elif kind == "set":
            objects.append(set())
        elif kind == "atomic":
            objects.append({"n": 1, "s": "atomic"})  # the gc does not track it
        else:
            # a method, a tuple or a weak reference: made once what it holds exists
            objects.append(None)
    for source, target in model.edges:
        kind = model.kinds[source]
        if kind == "method":
            objects[source] = objects[target].method  # type: ignore[union-attr]
    for index, kind in enumerate(model.kinds):
        if kind == "method" and objects[index] is None:
            objects[index] = Node().method  # bound to an instance outside the model
    for index, kind in enumerate(model.kinds):
        if kind == "weakref":
            referent = next((o for o in objects if isinstance(o, Node)), None)
            # a callback makes each weak reference its own object (CPython
            # shares callback-less ones to the same referent)
            objects[index] = weakref.ref(referent if referent is not None else Node(), _noop)
    for index, kind in enumerate(model.kinds):
        if kind == "tuple":
            # never empty: the empty tuple is one object shared by the whole process
            objects[index] = (f"t{index}", *(objects[t] for s, t in model.edges if s == index))
    for slot, (source, target) in enumerate(model.edges):
        holder, value = objects[source], objects[target]
        kind = model.kinds[source]
        if kind == "instance":
            setattr(holder, f"a{slot}", value)
        elif kind == "slots":
            name = next(n for n in Slotted.__slots__ if not hasattr(holder, n))
            setattr(holder, name, value)
        elif kind == "dict":
            holder[f"k{slot}"] = value  # type: ignore[index]
        elif kind == "list":
            holder.append(value)  # type: ignore[union-attr]
        elif kind == "set":
            holder.add(value)  # type: ignore[union-attr]
        elif kind == "closure":
            holder.__closure__[0].cell_contents = value  # type: ignore[union-attr,index]
    return objects


def _noop(ref: object) -> None:
    pass


def _closure() -> types.FunctionType:
    held = None

    def closure() -> object:
        return held

    return closure  # type: ignore[return-value]


Node.method = lambda self: None  # type: ignore[attr-defined]


EXAMPLES = int(os.environ.get("REFTRACE_PROPERTY_EXAMPLES", "1000"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(heaps())
def test_reported_paths_are_real_shortest_and_complete(model: Model) -> None:
    check(model)


@pytest.mark.heavy
@settings(
    max_examples=max(300, EXAMPLES // 3),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(heaps())
def test_forward_search_gives_the_same_paths(model: Model) -> None:
    switch = reftrace.paths.SWITCH_DEPTH
    reftrace.paths.SWITCH_DEPTH = 0  # search forward from the roots at once
    try:
        check(model)
    finally:
        reftrace.paths.SWITCH_DEPTH = switch


@pytest.mark.heavy
@settings(
    max_examples=max(300, EXAMPLES // 3),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(heaps())
def test_the_index_of_what_globals_hold_gives_the_same_paths(model: Model) -> None:
    blocks = reftrace.heap.GLOBAL_CONTAINERS_MIN_BLOCKS
    reftrace.heap.GLOBAL_CONTAINERS_MIN_BLOCKS = 0  # built on any heap, not only big ones
    try:
        check(model)
    finally:
        reftrace.heap.GLOBAL_CONTAINERS_MIN_BLOCKS = blocks


def check(model: Model) -> None:
    module = types.ModuleType(MODULE_NAME)
    sys.modules[MODULE_NAME] = module
    try:
        with reftrace.watch(survivors=False) as w:
            objects = build(model)
            for obj in objects:
                w.track(obj)
            for root in model.roots:
                setattr(module, f"r{root}", objects[root])
            # ids only from here on: the test must not hold the heap it checks
            index_of = {id(o): i for i, o in enumerate(objects)}
            model.attr_weights = {i: _attr_weight(o, index_of) for i, o in enumerate(objects)}
            del objects, obj
        report = w.report
        expected = model.distances()
        found: dict[int, int] = {}  # model index -> length of its path in gc references
        for leak in report.leaks:
            assert leak.path is not None, str(leak)
            assert leak.path.root.kind == "module" and leak.path.root.name == MODULE_NAME
            ends = _walk(leak.path, module, model, index_of)
            assert ends, f"a step of {leak.path.expression} is not a gc reference"
            if leak.object is not None:
                ends = {key: hops for key, hops in ends.items() if key == id(leak.object)}
                assert ends, f"{leak.path.expression} does not end at the leaked object"
            assert len(ends) == 1, f"{leak.path.expression} names more than one object"
            ((target, hops),) = ends.items()
            assert target in index_of, leak.path.expression
            assert index_of[target] not in found, "one object reported twice"
            found[index_of[target]] = hops
            for step in leak.path.steps[1:]:
                assert step.kind != "referent", step.label
        assert sorted(found) == sorted(expected), "leaks differ from what the roots reach"
        assert len(found) == len(report.leaks)
        for index, hops in found.items():
            assert hops == expected[index], (index, hops, expected[index])
        assert report.handles == 0
        assert report.collected == len(model.kinds) - len(expected)
    finally:
        del sys.modules[MODULE_NAME]
        module.__dict__.clear()


def _attr_weight(obj: object, nodes: dict[int, int]) -> int:
    """2 when the instance refers to a ``__dict__`` of its own, 1 for inline values."""
    if type(obj) is not Node:
        return 1
    own_dict = any(type(r) is dict and id(r) not in nodes for r in gc.get_referents(obj))
    return 2 if own_dict else 1


def _hops(holder: object, value: object, kind: str) -> int:
    """How many gc references lead from ``holder`` to ``value`` for an edge of
    this kind (0: none do)."""
    direct = gc.get_referents(holder)
    if any(r is value for r in direct):
        return 1
    if kind == "attr":  # through the instance's own __dict__
        own = [r for r in direct if type(r) is dict and r is getattr(holder, "__dict__", None)]
        if own and any(r is value for r in gc.get_referents(own[0])):
            return 2
    if kind == "cell":  # function -> closure tuple -> cell -> value
        for closure in direct:
            if type(closure) is tuple:
                for cell in gc.get_referents(closure):
                    if type(cell) is types.CellType and any(
                        r is value for r in gc.get_referents(cell)
                    ):
                        return 3
    return 0


def _walk(
    path: reftrace.Path, module: types.ModuleType, model: Model, nodes: dict[int, int]
) -> dict[int, int]:
    """Follow ``path`` from its global with ``gc.get_referents``: the ids of the
    objects it can end at, each with its length in gc references.

    A set member is not named by the path (``{...}``), so every member of
    the right type is tried; the steps after it must still hold. An
    attribute step counts what it cost when the search ran: labelling it
    reads ``__dict__``, which moves inline values (3.11+) into a real dict.
    """
    first = path.steps[0]
    namespace = vars(module)
    if first.code not in namespace:
        return {}
    states: list[tuple[object, int]] = [(namespace[first.code], 1)]
    for step in path.steps[1:]:
        following: list[tuple[object, int]] = []
        for holder, length in states:
            if step.code == "{...}":
                candidates = [
                    r for r in gc.get_referents(holder) if type(r).__qualname__ == step.type_name
                ]
                following.extend((c, length + 1) for c in candidates)
                continue
            try:
                value = eval("holder" + step.code, {"holder": holder})  # noqa: S307
            except Exception:
                continue
            hops = _hops(holder, value, step.kind)
            if hops and step.kind == "attr" and id(holder) in nodes:
                hops = model.weight(nodes[id(holder)])
            if hops and type(value).__qualname__ == step.type_name:
                following.append((value, length + hops))
        states = following
    return {id(obj): length for obj, length in states}
