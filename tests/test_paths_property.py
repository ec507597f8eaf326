"""Paths are true: random heaps, checked against a model of their references.

Hypothesis builds object graphs out of instances, ``__slots__`` objects,
dicts, lists, closures, bound methods and weak references, with reference
cycles and random roots (globals of a module), all created inside a watch
block and all tracked. The model knows every strong edge it made, so it
knows which objects a root reaches and how short a path can be. For every
heap the report must then:

- report exactly the objects a root reaches (no missed leak, and a cycle no
  root reaches is never reported);
- give each a path that is real: evaluating ``path.expression`` in the
  module's globals returns the leaked object itself;
- give a shortest one (counted in the gc's own references: an instance
  attribute is one reference when its values are inline (3.11+) and two
  through a real ``__dict__``; a closure variable is three: function,
  closure tuple, cell);
- never step through a weak reference.
"""

from __future__ import annotations

import gc
import heapq
import sys
import types
import weakref
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reftrace

KINDS = ("instance", "slots", "dict", "list", "closure", "method", "weakref")
WEIGHT = {"slots": 1, "dict": 1, "list": 1, "closure": 3, "method": 1}
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
        if kind == "weakref":
            continue  # a weak reference holds nothing
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
        elif kind == "method":
            objects.append(None)  # bound once its instance is known
        else:
            objects.append(None)  # a weak reference, made once its target exists
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


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(heaps())
def test_reported_paths_are_real_shortest_and_complete(model: Model) -> None:
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
        found = {}
        for leak in report.leaks:
            assert leak.path is not None, str(leak)
            assert leak.path.root.kind == "module" and leak.path.root.name == MODULE_NAME
            target = eval(leak.path.expression, vars(module))  # noqa: S307
            assert id(target) in index_of, leak.path.expression
            assert leak.object is None or leak.object is target
            found[index_of[id(target)]] = leak
            for before, step in zip(leak.path.steps, leak.path.steps[1:]):
                assert before.type_name != "ReferenceType", "stepped through a weak reference"
                assert step.kind != "referent", step.label
        assert sorted(found) == sorted(expected), "leaks differ from what the roots reach"
        assert len(found) == len(report.leaks)
        for index, leak in found.items():
            weighted = _weighted(leak.path, module, model, index_of)
            assert weighted == expected[index], leak.path.expression
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


def _weighted(
    path: reftrace.Path, module: types.ModuleType, model: Model, nodes: dict[int, int]
) -> int:
    """A reported path's length in gc references (see the module docstring)."""
    total = 1  # the global
    for i, step in enumerate(path.steps[1:], start=1):
        if step.kind == "cell":
            total += 3
        elif step.kind == "attr":
            prefix = "".join(s.code for s in path.steps[:i])
            holder = eval(prefix, vars(module))  # noqa: S307
            total += model.attr_weights[nodes[id(holder)]]
        else:
            total += 1
    return total
