"""Edge labels: how a person would write a reference in code.

``edge(parent, child)`` names the reference from ``parent`` to ``child``:
``.events``, ``['chunk']``, ``[17]``, ``.__self__``, ``cell 'callback'``,
``local 'out' in run (agent.py:88)``. It is only called for the few edges on
reported paths, never during the search, and it reads CPython's own slots and
descriptors so no user ``__getattr__``, ``__eq__`` or ``__repr__`` runs.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import sys
import types
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from reftrace import frames as _frames
from reftrace.model import EdgeKind
from reftrace.objects import (
    FROZENDICT,
    class_dict,
    class_mro,
    short_path,
    type_module,
    type_name,
)


@dataclass(frozen=True)
class Edge:
    """One reference as code reads it: its ``kind`` (``attr``, ``key``, ``index``, ...), the
    ``label`` shown for it, and the ``code`` that follows it in an expression."""

    kind: EdgeKind
    label: str
    code: str


def key_text(key: object) -> str:
    """A dict key as code, for keys whose repr is CPython's own; else a placeholder."""
    t = type(key)
    if t in (str, bytes):
        text = repr(key)
        return text if len(text) <= 60 else text[:57] + "...'"
    if t in (int, float, bool, type(None), complex):
        return repr(key)
    if t is tuple:
        items = cast("tuple[object, ...]", key)
        if len(items) <= 4:
            inner = ", ".join(key_text(k) for k in items)
            return f"({inner}{',' if len(items) == 1 else ''})"
    return f"<{type_name(key)} key>"


def instance_dict(obj: object) -> dict[str, Any] | None:
    """The instance ``__dict__`` through CPython's descriptor, or None."""
    for klass in class_mro(type(obj)):
        descr = class_dict(klass).get("__dict__")
        if descr is not None and type(descr).__name__ == "getset_descriptor":
            try:
                value = descr.__get__(obj, type(obj))
            except Exception:
                return None
            return value if type(value) is dict else None
    return None


def _attr_from_dict(namespace: dict[str, Any], child: object, prefix: str = ".") -> Edge | None:
    for name, value in dict.copy(namespace).items():
        if value is child:
            if type(name) is str and name.isidentifier():
                return Edge("attr", f"{prefix}{name}", f".{name}")
            return Edge("key", f".__dict__[{key_text(name)}]", f".__dict__[{key_text(name)}]")
    return None


def _slot_edge(obj: object, child: object) -> Edge | None:
    for klass in class_mro(type(obj)):
        for name, descr in list(class_dict(klass).items()):
            if type(descr) is types.MemberDescriptorType:
                try:
                    if descr.__get__(obj, type(obj)) is child:
                        return Edge("slot", f".{name}", f".{name}")
                except Exception:
                    continue
    return None


def _container_edge(parent: object, child: object) -> Edge | None:
    t = type(parent)  # never isinstance(): a lying __class__ is user code
    if issubclass(t, dict):
        mapping = cast("dict[object, object]", parent)
        try:
            return _dict_edge(mapping, child)
        except RuntimeError:  # another thread changed it meanwhile: read a copy
            return _dict_edge(dict.copy(mapping), child)
    if FROZENDICT is not None and issubclass(t, FROZENDICT):  # 3.15+: named by key
        frozen = cast("Mapping[object, object]", parent)
        for key, value in FROZENDICT.items(frozen):
            if value is child:
                text = key_text(key)
                return Edge("key", f"[{text}]", f"[{text}]")
        return None
    for base in (list, tuple, collections.deque):
        if issubclass(t, base):
            break
    else:
        base = None
    if base is not None:
        sequence = cast("list[object]", parent)
        for i, value in enumerate(base.__iter__(sequence)):  # type: ignore[arg-type]
            if value is child:
                return Edge("index", f"[{i}]", f"[{i}]")
        return None
    if issubclass(t, (set, frozenset)):
        return Edge("item", "<set item>", "{...}")
    return None


def _dict_edge(items: dict[object, object], child: object) -> Edge | None:
    # A copy (one C call, so no other thread of a live program changes it
    # mid-way), iterated in place: the items iterator reuses one tuple, where
    # a list of the items would allocate one per entry (60,000 for one label
    # of a big dict, enough to bring on a collection of the whole heap).
    items = dict.copy(items)
    for key, value in dict.items(items):
        if value is child:
            text = key_text(key)
            return Edge("key", f"[{text}]", f"[{text}]")
    for key in dict.keys(items):
        if key is child:
            return Edge("dictkey", "<dict key>", ".keys()")
    return None


def _frame_edge(frame: types.FrameType, child: object, owner: object = None) -> Edge | None:
    name = _frames.frame_local_name(frame, child, owner)
    code = frame.f_code
    where = f"{code.co_name} ({short_path(code.co_filename)}:{frame.f_lineno})"
    if name is not None:
        return Edge("local", f"local '{name}' in {where}", f".f_locals[{name!r}]")
    for attr in ("f_back", "f_globals", "f_builtins", "f_code", "f_trace"):
        try:
            if getattr(frame, attr) is child:
                return Edge("attr", f".{attr}", f".{attr}")
        except Exception:
            continue
    return Edge("local", f"a value on the stack of {where}", ".f_locals")


def _generator_frame(gen: object) -> types.FrameType | None:
    for attr in ("gi_frame", "cr_frame", "ag_frame"):
        frame = getattr(gen, attr, None)
        if type(frame) is types.FrameType:
            return frame
    return None


def _named_attrs(parent: object, child: object, names: tuple[str, ...]) -> Edge | None:
    for attr in names:
        try:
            value = object.__getattribute__(parent, attr)
        except Exception:
            continue
        if value is child:
            return Edge("self" if attr == "__self__" else "attr", f".{attr}", f".{attr}")
    return None


_FUNCTION_ATTRS = (
    "__closure__",
    "__defaults__",
    "__kwdefaults__",
    "__globals__",
    "__dict__",
    "__code__",
    "__annotations__",
    "__module__",
    "__name__",
    "__qualname__",
    "__doc__",
)


def edge(parent: object, child: object) -> Edge:
    """Name the strong reference from ``parent`` to ``child``."""
    try:
        found = _edge(parent, child)
    except Exception:
        found = None
    return found or Edge("referent", f"<referent of {type_name(parent)}>", ".<?>")


def _edge(parent: object, child: object) -> Edge | None:
    t = type(parent)
    if t is types.MethodType:
        return _named_attrs(parent, child, ("__self__", "__func__"))
    if t is types.BuiltinMethodType:
        return _named_attrs(parent, child, ("__self__",))
    if t is types.FunctionType:
        return _named_attrs(parent, child, _FUNCTION_ATTRS)
    if t is types.CellType:
        try:
            if parent.cell_contents is child:  # type: ignore[attr-defined]
                return Edge("attr", ".cell_contents", ".cell_contents")
        except ValueError:
            return None
    if t is types.FrameType:
        return _frame_edge(parent, child)  # type: ignore[arg-type]
    if t in (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType):
        frame = _generator_frame(parent)
        if frame is not None and child is not frame:
            found = _frame_edge(frame, child, owner=parent)
            if found is not None and found.kind == "local":
                prefix = {"generator": ".gi_frame", "coroutine": ".cr_frame"}.get(
                    type_name(parent), ".ag_frame"
                )
                return Edge("local", found.label, prefix + found.code)
        return _named_attrs(
            parent,
            child,
            (
                "gi_frame",
                "cr_frame",
                "ag_frame",
                "gi_yieldfrom",
                "cr_await",
                "ag_await",
                "gi_code",
                "cr_code",
            ),
        )
    if t is types.TracebackType:
        return _named_attrs(parent, child, ("tb_frame", "tb_next"))
    if issubclass(t, types.ModuleType):
        if getattr(parent, "__dict__", None) is child:
            return Edge("attr", ".__dict__", ".__dict__")
        # held by the module's C state (``_struct``'s format cache), not its globals
        return Edge("referent", "<module state>", ".<module state>")
    if issubclass(t, BaseException):
        found = _named_attrs(parent, child, ("__traceback__", "__context__", "__cause__", "args"))
        if found is not None:
            return found
    if issubclass(t, functools.partial):
        found = _named_attrs(parent, child, ("func", "args", "keywords"))
        if found is not None:
            return found
    if issubclass(t, type):
        namespace = class_dict(parent)
        if any(real is child for real in gc.get_referents(namespace)):
            return Edge("attr", ".__dict__", ".__dict__")
        found = _attr_from_dict(dict(namespace), child)
        if found is not None:
            return found
        return _named_attrs(parent, child, ("__mro__", "__bases__", "__base__", "__dict__"))
    for finder in (_container_edge, _cache_edge, _future_edge, _inline_attr):
        found = finder(parent, child)
        if found is not None:
            return found
    namespace = instance_dict(parent)
    if namespace is not None:
        if namespace is child:
            return Edge("attr", ".__dict__", ".__dict__")
        found = _attr_from_dict(namespace, child)
        if found is not None:
            return found
    return _slot_edge(parent, child)


def _cache_edge(parent: object, child: object) -> Edge | None:
    """The caches CPython keeps in C structs: an ``lru_cache``'s dict, and the
    registry and caches of an ABC's ``_abc_impl`` (its C traversal visits
    them in that order; with one not made yet, they go unnamed)."""
    kind, module = type_name(parent), type_module(parent)
    if kind == "_lru_cache_wrapper" and module == "functools" and type(child) is dict:
        return Edge("referent", "<lru_cache's dict>", ".<lru_cache>")
    if kind == "_abc_data" and module == "_abc":
        sets = [item for item in gc.get_referents(parent) if type(item) is set]
        if len(sets) == 3:
            for name, value in zip(("_abc_registry", "_abc_cache", "_abc_negative_cache"), sets):
                if value is child:
                    return Edge("referent", f"<{name}>", f".<{name}>")
        return Edge("referent", "<an ABC's cache>", ".<abc cache>")
    return None


_MANAGED_DICT = 1 << 4  # Py_TPFLAGS_MANAGED_DICT, 3.11+
#: Attribute names a class's own code uses, by class (see _inline_attr).
_NAMES: weakref.WeakKeyDictionary[type, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _inline_attr(parent: object, child: object) -> Edge | None:
    """The attribute of an instance with inline values (3.11+) holding
    ``child``, found without reading ``__dict__``: that would make the dict
    (a new object in the program's heap, and one more reference on every
    later path through the instance). The names tried are those the class's
    own code uses; an attribute only other code sets is found through
    ``__dict__`` after all.
    """
    cls = type(parent)
    if sys.version_info < (3, 11) or not cls.__flags__ & _MANAGED_DICT:
        return None
    names = _NAMES.get(cls)
    if names is None:
        names = _class_names(cls)
        with contextlib.suppress(TypeError):
            _NAMES[cls] = names
    return _named_attrs(parent, child, names)


def _class_names(cls: type) -> tuple[str, ...]:
    """Names used by the code of ``cls`` and its bases, that no class in its
    MRO defines: looked up on an instance, they can only come from its own
    attributes, and no descriptor (user code) runs."""
    defined: set[str] = set()
    codes: list[types.CodeType] = []
    for klass in class_mro(cls):
        for name, value in list(class_dict(klass).items()):
            defined.add(name)
            # Only types whose attributes are known: no user code runs here.
            kind = type(value)
            if kind is staticmethod or kind is classmethod:
                functions = [value.__func__]
            elif kind is property:
                functions = [value.fget, value.fset, value.fdel]
            elif kind is functools.cached_property:
                functions = [value.func]
            else:
                functions = [value]
            codes.extend(f.__code__ for f in functions if type(f) is types.FunctionType)
    names: dict[str, None] = {}
    while codes:
        code = codes.pop()
        names.update(dict.fromkeys(code.co_names))
        codes.extend(c for c in code.co_consts if type(c) is types.CodeType)
    return tuple(n for n in names if n not in defined and n.isidentifier())


def _future_edge(parent: object, child: object) -> Edge | None:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or not issubclass(type(parent), asyncio.Future):
        return None
    return _named_attrs(
        parent, child, ("_result", "_exception", "_callbacks", "_coro", "_loop", "_fut_waiter")
    )


def global_edge(namespace: dict[str, Any], child: object) -> Edge:
    """The edge from a module's globals to ``child``: the global's name."""
    for name, value in dict.copy(namespace).items():
        if value is child:
            text = str(name) if type(name) is str else key_text(name)
            return Edge("global", text, text)
    return Edge("global", "<global>", "<global>")
