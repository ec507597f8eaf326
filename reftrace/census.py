"""A census of the heap: live objects by type, and every container's length.

``count_types`` counts live objects by type without allocating per object;
``type_key`` names a type without running user code. ``length_table`` reads
the length of every ``dict``, ``list``, ``set`` and ``deque`` on the heap
(dicts the gc does not track included, found through the objects that refer
to them) into arrays partitioned by id, so that two censuses can be compared
(``grown``) without a Python dict of the whole heap. Every pass over the heap
is a C-level pipeline (``compress`` over ``map``): with ``tracemalloc`` on, a
Python loop over a million objects costs seconds.
"""

from __future__ import annotations

import gc
import operator
import sys
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence, Sized
from itertools import compress, filterfalse, repeat
from typing import Any, cast

from reftrace.objects import class_module, class_qualname, referents_of_all

__all__ = [
    "container_length",
    "count_types",
    "display_type",
    "find_atomic",
    "find_containers",
    "grown",
    "large_atomics",
    "untracked_dicts",
    "length_table",
    "type_key",
]

_CHUNK = 4096
#: Container ids are compared in this many partitions (see length_table).
_PARTITIONS = 8
_SELECT = [
    bytes(1 if b % _PARTITIONS == part else 0 for b in range(256)) for part in range(_PARTITIONS)
]
_EXACT_TYPES = frozenset({dict, list, set, deque})
_DICT_ONLY = frozenset({dict})

#: One census: (ids, lengths) of every container, in partitions by id.
LengthTable = list[tuple["array[int]", "array[int]"]]


def type_key(cls: type) -> str:
    """``module.QualName`` (builtins by their bare name), read without user code."""
    try:
        name = class_qualname(cls)
        module = class_module(cls)
    except Exception:
        return "?"
    if type(name) is not str:
        return "?"
    if type(module) is not str:
        module = "?"
    # Always a new string (never the type's own name): the soak owns it.
    return f"{module}.{name}"


def display_type(key: str) -> str:
    """A type key as shown: builtins by their bare name."""
    return key[9:] if key.startswith("builtins.") else key


def length_function(cls: type) -> Callable[[Any], int] | None:
    """The C ``len`` of a container type we follow (never a user ``__len__``)."""
    if issubclass(cls, dict):
        return dict.__len__
    if issubclass(cls, list):
        return list.__len__
    if issubclass(cls, set):
        return set.__len__
    if issubclass(cls, deque):
        return deque.__len__
    return None


def count_types(objects: list[object]) -> dict[type, int]:
    """How many of ``objects`` there are of each type.

    Counted 256 at a time: a count above 256 is a new int object, and with
    ``tracemalloc`` tracing, one allocation per object would cost as much as
    the collection itself.
    """
    total: dict[type, int] = {}
    get = total.get
    for start in range(0, len(objects), 256):
        for cls, count in Counter(map(type, objects[start : start + 256])).items():
            total[cls] = get(cls, 0) + count
    return total


def untracked_dicts(objects: list[object]) -> list[dict[Any, Any]]:
    """Dicts the gc does not track (atomic keys and values), found through
    the tracked objects that refer to them (a dict held twice is listed twice)."""
    found: list[dict[Any, Any]] = []
    is_tracked = gc.is_tracked
    is_dict = _DICT_ONLY.__contains__
    for start in range(0, len(objects), _CHUNK):
        refs = cast("list[dict[Any, Any]]", referents_of_all(objects[start : start + _CHUNK]))
        # (Only the dicts among them are kept.)
        found.extend(filterfalse(is_tracked, compress(refs, map(is_dict, map(type, refs)))))
        del refs
    return found


def _all_containers(
    untracked: bool = True,
) -> tuple[list[object], list[dict[Any, Any]], list[object]]:
    """Every container on the heap: those of the exact builtin types, the
    dicts the gc does not track (with ``untracked``), and those of subclasses
    (whose ``len`` could be user code, so it is read through their base type).

    Each step is a C-level pass (``compress`` over ``map(type, ...)``): with
    ``tracemalloc`` on, a Python loop over a million objects costs seconds.
    """
    objects = gc.get_objects()
    exact = _EXACT_TYPES.__contains__
    plain = list(compress(objects, map(exact, map(type, objects))))
    subclasses = {
        cls
        for cls in set(map(type, objects))
        if cls not in _EXACT_TYPES and length_function(cls) is not None
    }
    special = list(compress(objects, map(subclasses.__contains__, map(type, objects))))
    hidden = untracked_dicts(objects) if untracked else []
    del objects
    return plain, hidden, special


def _partition_of(objects: Sequence[object]) -> bytes:
    """One byte per object: bits 8-15 of its id, read from an array's memory."""
    raw = memoryview(array("q", map(id, objects))).cast("B")
    keys = bytes(raw[1::8] if sys.byteorder == "little" else raw[6::8])
    raw.release()
    return keys


def length_table() -> list[tuple[array[int], array[int]]]:
    """(ids, lengths) of every container on the heap, in partitions by id.

    A dict the gc does not track has its length stored as ``-1 - len``, so a
    candidate says where to look for it later. Partitions keep the comparison
    of two checkpoints to one partition's dict at a time (one dict of every
    container's id would add ~140 MB at a million objects, counting
    tracemalloc's record of each int); each partition is taken with
    ``compress``, never a Python-level loop over the heap.
    """
    plain, hidden, special = _all_containers()
    plain_keys, hidden_keys = _partition_of(plain), _partition_of(hidden)
    parts = []
    for part in range(_PARTITIONS):
        select = _SELECT[part]
        sized = cast("list[Sized]", list(compress(plain, plain_keys.translate(select))))
        ids = array("q", map(id, sized))
        lengths = array("q", map(len, sized))  # exact builtin types: their own C len
        del sized
        chosen = [o for o in special if (id(o) >> 8) % _PARTITIONS == part]
        ids.extend(map(id, chosen))
        lengths.extend(map(_safe_len, chosen))
        del chosen
        dicts = list(compress(hidden, hidden_keys.translate(select)))
        ids.extend(map(id, dicts))
        lengths.extend(map(operator.sub, repeat(-1), map(len, dicts)))
        parts.append((ids, lengths))
        del dicts
    plain.clear()
    hidden.clear()
    special.clear()
    return parts


def _safe_len(obj: object) -> int:
    cls = type(obj)
    if cls in _EXACT_TYPES:
        return len(obj)  # type: ignore[arg-type]
    length = length_function(cls)
    return length(obj) if length is not None else -1


def grown(
    before: list[tuple[array[int], array[int]]], after: list[tuple[array[int], array[int]]]
) -> tuple[dict[int, array[int]], set[int]]:
    """Containers (by id) longer in ``after`` than in ``before``, with their
    [old, new] lengths, and which of them the gc does not track."""
    grown: dict[int, array[int]] = {}
    hidden: set[int] = set()
    for (old_ids, old_lengths), (ids, lengths) in zip(before, after):
        previous = dict(zip(old_ids, old_lengths))
        get = previous.get
        for key, length in zip(ids, lengths):
            old = get(key)
            if old is None or old == length:
                continue
            old = old if old >= 0 else -1 - old
            new = length if length >= 0 else -1 - length
            if new > old:
                grown[key] = array("q", [old, new])
                if length < 0:
                    hidden.add(key)
        previous.clear()
    return grown, hidden


def find_containers(wanted: set[int] | dict[int, Any], untracked: bool) -> dict[int, object]:
    """The live containers with the given ids (``untracked``: look among the
    dicts the gc does not track too)."""
    plain, hidden, special = _all_containers(untracked)
    plain += hidden
    found = {id(obj): obj for obj in compress(plain, map(wanted.__contains__, map(id, plain)))}
    found.update((id(obj), obj) for obj in special if id(obj) in wanted)
    plain.clear()
    hidden.clear()
    special.clear()
    return found


def container_length(obj: object) -> int:
    """The length of a ``dict``, ``list``, ``set`` or ``deque`` (through its
    base type's C ``len``), or -1 for anything else."""
    length = length_function(type(obj))
    return length(obj) if length is not None else -1


#: Strings and buffers the census weighs: above pymalloc's 512-byte limit they
#: live in ``malloc``, where allocated blocks cannot see them grow.
_ATOMIC_TYPES = frozenset({str, bytes, bytearray})
LARGE = 512


def large_atomics() -> dict[int, int]:
    """The size of every ``str``, ``bytes`` and ``bytearray`` of more than
    512 bytes that a tracked object refers to, by id (a bytearray by its
    length: its allocation grows in jumps).

    These are what a bytes-only leak grows (``self.log += text``, a buffer
    that is extended): no new object, no new block. The sizes are exact, where
    ``malloc``'s own counters also hold the freed chunks it caches.
    """
    sizes: dict[int, int] = {}
    for atomics in _atomic_referents(gc.get_objects()):
        big = [size > LARGE for size in map(sys.getsizeof, atomics)]
        chosen = list(compress(atomics, big))
        sizes.update(zip(map(id, chosen), map(sys.getsizeof, chosen)))
        for buffer in chosen:
            if type(buffer) is bytearray:
                sizes[id(buffer)] = len(buffer)
        del atomics, big, chosen
    return sizes


def find_atomic(key: int) -> object | None:
    """The ``str``, ``bytes`` or ``bytearray`` with this id that a tracked
    object refers to, or None."""
    for atomics in _atomic_referents(gc.get_objects()):
        for obj in atomics:
            if id(obj) == key:
                return obj
        del atomics
    return None


def _atomic_referents(objects: list[object]) -> Iterator[list[object]]:
    """The ``str``, ``bytes`` and ``bytearray`` objects that ``objects`` refer to,
    a chunk of ``objects`` at a time: directly, or through a dict the gc does
    not track (on 3.10 an instance's ``__dict__`` that holds only strings)."""
    is_atomic = _ATOMIC_TYPES.__contains__
    is_dict = _DICT_ONLY.__contains__
    for start in range(0, len(objects), _CHUNK):
        refs = referents_of_all(objects[start : start + _CHUNK])
        hidden = list(filterfalse(gc.is_tracked, compress(refs, map(is_dict, map(type, refs)))))
        if hidden:
            refs += referents_of_all(hidden)
        del hidden
        atomics = list(compress(refs, map(is_atomic, map(type, refs))))
        del refs
        yield atomics
        del atomics
