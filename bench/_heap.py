"""The heap bench_watch.py measures on, and the blocks it watches.

A module of its own, so every tool names the same root for the planted
leaks (``_heap.SERVICES``) whatever script imports it.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Objects a leaking block leaks, each through the listeners of a service
#: LEAK_STEP after the previous one's.
LEAKS = 10
LEAK_STEP = 7
#: New objects the survivors block leaves attached to old containers.
SURVIVORS = 5_000
_BATCH = 10_000

HEAP: dict[str, object] = {}
SERVICES: list[Service] = []


class Emitter:
    def __init__(self) -> None:
        self._listeners: dict[str, list[object]] = {"chunk": [], "done": []}


class Service:
    def __init__(self, i: int) -> None:
        self.name = f"service-{i}"
        self.events = Emitter()
        self.config = {"retries": 3, "name": self.name}


class Record:
    def __init__(self, i: int) -> None:
        self.id = i
        self.tags = [i, i + 1]
        self.meta = {"owner": "x" * (i % 7), "n": i}


class Output:
    def __init__(self) -> None:
        self.buffer = [f"chunk {i}" for i in range(20)]

    def on_chunk(self, chunk: object) -> None:
        self.buffer.append(chunk)


def build_heap(target: int) -> int:
    """Grow the heap until about ``target`` gc-tracked objects are alive."""
    HEAP.clear()
    SERVICES.clear()
    gc.collect()
    start = len(gc.get_objects())
    records: list[Record] = []
    groups: list[tuple[object, ...]] = []
    closures = []
    log: list[Record] = []
    sessions: dict[str, Record] = {}
    HEAP.update(records=records, groups=groups, closures=closures, log=log, sessions=sessions)
    for i in range(100):
        SERVICES.append(Service(i))
    i = 0
    grown = 0
    while grown < target:
        # Listing the heap after every batch would cost more than the batches
        # at 10M objects: add, without counting, what is surely still missing.
        batches = 1 if not grown else max(1, int(0.9 * (target - grown) * i / grown / _BATCH))
        for j in range(i, i + batches * _BATCH):
            records.append(Record(j))  # instance, tags list, meta dict: ~3 tracked objects
            if j % 4 == 0:
                groups.append((records[-1], [j]))
            if j % 16 == 0:
                value = records[-1]
                closures.append(lambda value=value: value)
            if j % 64 == 0:
                sessions[f"old-{j}"] = records[-1]
        i += batches * _BATCH
        grown = len(gc.get_objects()) - start
    gc.collect()
    return len(gc.get_objects())


def untracked(obj: T) -> T:
    return obj


def leaking_block(track: Callable[[Output], Output] = untracked) -> None:
    """10 outputs leak: each one's bound method stays in a listener list.

    ``track`` is ``Watch.track`` under reftrace; other tools run the block as is.
    """
    for k in range(LEAKS):
        out = track(Output())
        SERVICES[k * LEAK_STEP].events._listeners["chunk"].append(out.on_chunk)
    del out


def clean_block(track: Callable[[Output], Output] = untracked) -> None:
    for _ in range(LEAKS):
        out = track(Output())
        out.on_chunk("x")
    del out


def survivors_block(track: Callable[[Output], Output] = untracked) -> None:
    """10 tracked outputs die; 5,000 new records, tracked by nobody, stay:
    2,000 appended to an old list, 2,000 stored in an old dict, 10 in each
    service's "done" listener list (100 attachment points)."""
    clean_block(track)
    log = HEAP["log"]
    sessions = HEAP["sessions"]
    assert isinstance(log, list) and isinstance(sessions, dict)
    for j in range(2_000):
        log.append(Record(j))
        sessions[f"new-{j}"] = Record(j)
    for j in range(SURVIVORS - 4_000):
        SERVICES[j % len(SERVICES)].events._listeners["done"].append(Record(j))


def expected_leaks() -> set[str]:
    """The paths reftrace must report for the 10 leaks."""
    return {
        f"SERVICES[{k * LEAK_STEP}].events._listeners['chunk'][0].__self__" for k in range(LEAKS)
    }


def listener_lists() -> list[list[object]]:
    """The lists the 10 leaks hang from, in target order."""
    return [SERVICES[k * LEAK_STEP].events._listeners["chunk"] for k in range(LEAKS)]


def planted() -> list[weakref.ref[Output]]:
    """Weak references to the 10 leaked outputs: the other tools get the very
    objects reftrace reported, and the bench itself holds none of them."""
    refs = []
    for listeners in listener_lists():
        method = listeners[0]
        refs.append(weakref.ref(method.__self__))  # type: ignore[attr-defined]
    return refs


def unplant() -> None:
    """Drop what the blocks left behind: the heap is as built again."""
    for service in SERVICES:
        service.events._listeners["chunk"].clear()
        service.events._listeners["done"].clear()
    log = HEAP["log"]
    sessions = HEAP["sessions"]
    assert isinstance(log, list) and isinstance(sessions, dict)
    log.clear()
    for key in [key for key in sessions if key.startswith("new-")]:
        del sessions[key]
