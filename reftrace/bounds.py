"""Bounded containers: memory a program keeps on purpose, up to a limit.

A container that keeps growing is a leak only when nothing bounds it. This
module recognises the bounds a program declares, without running its code:

- ``collections.deque(maxlen=N)``: the deque's own ``maxlen``;
- ``functools.lru_cache(maxsize=N)``: the cache dict of an
  ``_lru_cache_wrapper``, read through its C ``cache_info()``
  (``maxsize=None`` is unbounded, and said so);
- an object that owns the container and carries its limit in an instance
  attribute (``maxsize``, ``capacity``, ``maxlen``, ...): ``cachetools``
  caches (``Cache.__maxsize``), ``logging.handlers.MemoryHandler.capacity``,
  jinja2's ``LRUCache.capacity``; read only where no class defines the name,
  so no property or descriptor (user code) runs;
- the ``re`` module's pattern caches (``re._MAXCACHE``);
- caches in an extension module's C state that it empties at a fixed size
  (``_struct``'s format cache, 100 formats);
- whatever the user declares bounded (``soak(..., bounded=[obj])``).

It also recognises containers of weak references (``WeakSet``,
``WeakValueDictionary``, ``WeakKeyDictionary``, the ABC caches): they hold
nothing alive, so when they grow, something else keeps their referents; they
are a symptom, never the holder.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal, cast

from reftrace.objects import class_attribute, referents, type_module, type_name

__all__ = ["Bound", "BoundKind", "find_bounds", "holds_weak_references", "resolve_declared"]

BoundKind = Literal["maxlen", "maxsize", "capacity", "keyed", "declared", "unbounded"]

#: Instance attributes that carry a container's limit, most specific first.
_LIMIT_NAMES = (
    "maxsize",
    "_Cache__maxsize",  # cachetools.Cache
    "maxlen",
    "capacity",
    "max_size",
    "_maxsize",
    "_capacity",
    "max_entries",
)
#: Module globals that are bounded caches, with the global that holds their limit.
_BOUNDED_GLOBALS = {
    ("re", "_cache"): "_MAXCACHE",
    ("re", "_cache2"): "_MAXCACHE2",
}
#: Module globals that keep one entry per member of a finite set, by design:
#: they grow while new members are seen, and stop. Only caches whose keys
#: cannot be made up at run time belong here (a logger per request name can).
_KEYED_GLOBALS = {
    ("linecache", "cache"): "one entry per source file whose lines were read",
}
#: Caches in an extension module's C state, with the size at which the module empties them.
_MODULE_STATE_CACHES = {
    "_struct": ("format cache", 100),  # Modules/_struct.c: MAXCACHE
}
_WEAK_TYPES = (weakref.ReferenceType, weakref.ProxyType, weakref.CallableProxyType)
_SAMPLED_ITEMS = 8


@dataclass(frozen=True)
class Bound:
    """What limits a container, and by how much.

    ``kind`` is ``"maxlen"`` (a deque's), ``"maxsize"`` (a cache's),
    ``"capacity"``, ``"keyed"`` (a cache of the standard library with one
    entry per member of a finite set, such as ``linecache.cache``: one per
    source file), ``"declared"`` (said bounded by the user, with or without
    a ``limit``), or ``"unbounded"``: a cache that says it has no limit
    (``lru_cache(maxsize=None)``). ``owner`` says, as a person would, what
    declares it (``functools.lru_cache(maxsize=128) on render``).
    """

    kind: BoundKind
    limit: int | None
    owner: str

    @property
    def bounded(self) -> bool:
        """True unless the owner declares the container unbounded."""
        return self.kind != "unbounded"

    def describe(self, length: int) -> str:
        """``bounded: 128 of 128 entries`` / ``filling: 40 of 128, stops at 128``."""
        if not self.bounded:
            return f"unbounded: {self.owner}"
        if self.limit is None:
            return f"bounded by design ({self.owner}), {length:,} entries"
        if length >= self.limit:
            return f"bounded: {length:,} of {self.limit:,} entries ({self.owner})"
        return f"filling: {length:,} of {self.limit:,}, stops at {self.limit:,} ({self.owner})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: ``kind``, ``limit`` and ``owner``, unmasked (the soak report masks)."""
        return {"kind": self.kind, "limit": self.limit, "owner": self.owner}


def holds_weak_references(container: object) -> bool:
    """Whether every item sampled from ``container`` (a dict's keys or values)
    is a weak reference: such a container keeps nothing alive."""
    items: list[object]
    if isinstance(container, dict):
        try:
            pairs = list(islice(dict.items(container), _SAMPLED_ITEMS))
        except RuntimeError:  # changed by another thread of a live program
            return False
        if not pairs:
            return False
        keys = [k for k, _ in pairs]
        values = [v for _, v in pairs]
        return all(isinstance(k, _WEAK_TYPES) for k in keys) or all(
            isinstance(v, _WEAK_TYPES) for v in values
        )
    if isinstance(container, (set, frozenset)):
        items = list(islice(set.__iter__(cast("set[Any]", container)), _SAMPLED_ITEMS))
    elif isinstance(container, list):
        items = list(islice(list.__iter__(container), _SAMPLED_ITEMS))
    elif isinstance(container, deque):
        items = list(islice(deque.__iter__(container), _SAMPLED_ITEMS))
    else:
        return False
    return bool(items) and all(isinstance(item, _WEAK_TYPES) for item in items)


def resolve_declared(declared: Iterable[object] | None) -> dict[int, str]:
    """The ids of the objects a user declared bounded, with how each is shown.

    A string is a dotted name (``package.module.CACHE`` or
    ``package.module.Class.attr``), looked up among the imported modules; an
    object is taken as it is. The containers an object keeps directly (a
    cache object's dict, an ``lru_cache``'s dict) count as declared too. A name
    that leads nowhere raises ``ValueError``.
    """
    if declared is None:
        return {}
    if isinstance(declared, (str, bytes)) or not isinstance(declared, Iterable):
        declared = [declared]
    out: dict[int, str] = {}
    for entry in declared:
        shown = entry if isinstance(entry, str) else f"a {type_name(entry)} given in bounded="
        obj = _lookup(entry) if isinstance(entry, str) else entry
        out[id(obj)] = shown
        for owned in _owned_containers(obj):
            out.setdefault(id(owned), shown)
    return out


def _owned_containers(obj: object) -> list[object]:
    """The containers ``obj`` refers to, and those its instance dict refers to."""
    if isinstance(obj, (dict, list, set, frozenset, tuple, deque)):
        return []
    direct = [child for child in referents(obj) if isinstance(child, (dict, list, set, deque))]
    out: list[object] = list(direct)
    for child in direct:
        if type(child) is dict:
            out.extend(c for c in referents(child) if isinstance(c, (dict, list, set, deque)))
    return out


def _lookup(name: str) -> object:
    parts = name.split(".")
    if not name or not all(part.isidentifier() for part in parts):
        raise ValueError(f"bounded: {name!r} is not a dotted name (module.NAME)")
    for cut in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj: object = module
        for attr in parts[cut:]:
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                raise ValueError(
                    f"bounded: {name!r} names nothing: {type_name(obj)} has no attribute {attr!r}"
                ) from None
        return obj
    raise ValueError(f"bounded: {name!r} names nothing: no imported module {parts[0]!r}")


def _instance_limit(obj: object) -> tuple[str, int] | None:
    """An int limit the instance carries in one of ``_LIMIT_NAMES``, read
    only where no class in its MRO defines that name (so no descriptor runs)."""
    cls = type(obj)
    if type_module(obj) == "builtins":
        return None
    for name in _LIMIT_NAMES:
        if class_attribute(cls, name) is not None:
            continue
        try:
            value = object.__getattribute__(obj, name)
        except Exception:
            continue
        if type(value) is int and value >= 0:
            return name.rpartition("__")[2].lstrip("_") or name, value
    return None


def _lru_bound(wrapper: object) -> Bound:
    info = wrapper.cache_info()  # type: ignore[attr-defined]
    qualname = ""
    namespace = getattr(wrapper, "__dict__", None)
    if type(namespace) is dict:
        qualname = namespace.get("__qualname__", "")
    where = f" on {qualname}" if type(qualname) is str and qualname else ""
    if info.maxsize is None:
        return Bound("unbounded", None, f"functools.lru_cache(maxsize=None){where}")
    return Bound("maxsize", info.maxsize, f"functools.lru_cache(maxsize={info.maxsize}){where}")


def _is_lru_wrapper(obj: object) -> bool:
    return type_name(obj) == "_lru_cache_wrapper" and type_module(obj) == "functools"


def _module_globals() -> dict[int, str]:
    out = {}
    for module_name, _ in [*_BOUNDED_GLOBALS, *_KEYED_GLOBALS]:
        module = sys.modules.get(module_name)
        if module is not None:
            out[id(vars(module))] = module_name
    return out


def find_bounds(
    containers: list[object],
    declared: dict[int, str] | None = None,
    ignore: Iterable[int] = (),
) -> list[Bound | None]:
    """The bound of each container (None where nothing bounds it).

    One ``gc.get_referrers`` pass finds what holds the containers (the cache
    wrapper, the owning instance or its ``__dict__``); a second, only for
    instance dicts among those holders, finds their instances. ``ignore``:
    ids of the caller's own objects (its lists of the containers).
    """
    declared = declared or {}
    ignored = set(ignore)
    ignored.add(id(containers))
    holders = _holders(containers, ignored)
    module_dicts = {
        id(vars(m)) for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)
    }
    instance_dicts: list[object] = [
        h for found in holders for h in found if type(h) is dict and id(h) not in module_dicts
    ]
    owners = _holders(instance_dicts, ignored | {id(holders)})
    owner_of = {id(d): found for d, found in zip(instance_dicts, owners)}
    modules = _module_globals()
    out = [
        _bound(container, found, owner_of, modules, declared)
        for container, found in zip(containers, holders)
    ]
    holders.clear()
    instance_dicts.clear()
    owners.clear()
    owner_of.clear()
    return out


def _holders(objects: list[object], ignored: set[int]) -> list[list[object]]:
    """For each object, the objects that refer to it (frames and ignored ids left out)."""
    if not objects:
        return []
    wanted = {id(obj): i for i, obj in enumerate(objects)}
    out: list[list[object]] = [[] for _ in objects]
    ignored = ignored | {id(objects), id(out), id(wanted)}
    for holder in gc.get_referrers(*objects):
        if id(holder) in ignored or type(holder).__name__ == "frame":
            continue
        for child in referents(holder):
            index = wanted.get(id(child))
            if index is not None and not any(h is holder for h in out[index]):
                out[index].append(holder)
    return out


def _bound(
    container: object,
    holders: list[object],
    owner_of: dict[int, list[object]],
    modules: dict[int, str],
    declared: dict[int, str],
) -> Bound | None:
    if id(container) in declared:
        return Bound("declared", None, f"declared: {declared[id(container)]}")
    if isinstance(container, deque):
        maxlen = deque.maxlen.__get__(container)
        if maxlen is not None:
            return Bound("maxlen", maxlen, f"deque(maxlen={maxlen})")
    owners: list[object] = []
    for holder in holders:
        if _is_lru_wrapper(holder):
            return _lru_bound(holder)
        if isinstance(holder, types.ModuleType):
            bound = _module_state_bound(holder, container)
            if bound is not None:
                return bound
        if type(holder) is dict:
            module_name = modules.get(id(holder))
            if module_name is not None:
                bound = _global_bound(module_name, cast("dict[str, Any]", holder), container)
                if bound is not None:
                    return bound
            owners.extend(owner_of.get(id(holder), ()))
        else:
            owners.append(holder)
    for owner in owners:
        if id(owner) in declared:
            return Bound("declared", None, f"declared: {declared[id(owner)]}")
        found = _instance_limit(owner)
        if found is not None:
            name, limit = found
            kind: BoundKind = "maxlen" if name == "maxlen" else "maxsize"
            if "capacity" in name:
                kind = "capacity"
            return Bound(kind, limit, f"{type_name(owner)}({name}={limit})")
    return None


def _module_state_bound(module: types.ModuleType, container: object) -> Bound | None:
    known = _MODULE_STATE_CACHES.get(getattr(module, "__name__", ""))
    if known is None or getattr(module, "__dict__", None) is container:
        return None
    what, limit = known
    return Bound("maxsize", limit, f"the {module.__name__} module's {what}, emptied at {limit}")


def _global_bound(module_name: str, namespace: dict[str, Any], container: object) -> Bound | None:
    for (module, name), keys in _KEYED_GLOBALS.items():
        if module == module_name and namespace.get(name) is container:
            return Bound("keyed", None, f"{module}.{name}: {keys}")
    for (module, name), limit_name in _BOUNDED_GLOBALS.items():
        if module == module_name and namespace.get(name) is container:
            limit = namespace.get(limit_name)
            if type(limit) is int:
                return Bound("maxsize", limit, f"{module}.{name}, the {module} module's cache")
    return None
