"""Safe facts about objects: names, sizes, ages and allocation sites.

Object ``__repr__``, ``__eq__``, ``__getattr__``, ``__sizeof__`` and metaclass
properties are user code: they can raise, be slow, lie or leak secrets. Every
helper here reads CPython's own slots and descriptors instead, and never calls
a method a user type could override.
"""

from __future__ import annotations

import builtins
import ctypes
import functools
import gc
import os
import sys
import tracemalloc
import types
import weakref
from collections.abc import Callable
from typing import Any

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

#: A class's ``__qualname__``, ``__module__``, ``__dict__`` and ``__mro__`` read
#: through ``type``'s own descriptors, so that a metaclass or a class attribute
#: of the same name (a proxy's ``__module__`` property) cannot answer instead.
class_qualname = type.__dict__["__qualname__"].__get__
class_module = type.__dict__["__module__"].__get__
class_dict = type.__dict__["__dict__"].__get__
class_mro = type.__dict__["__mro__"].__get__

#: The types of methods written in C (``__sizeof__`` of a builtin, for one).
BUILTIN_DESCRIPTORS = (
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.BuiltinFunctionType,
    types.MethodWrapperType,
)

#: Values that cannot leak on their own: singletons and numbers, shared freely
#: by the interpreter, so "still alive" says nothing about the program.
_UNTRACKABLE_TYPES = (
    type(None),
    bool,
    int,
    float,
    complex,
    type(NotImplemented),
    type(Ellipsis),
)


# CPython 3.12.0-3.12.4 (gh-122695): traversing the `_asyncio` module walks a
# free list of already-freed iterator objects; `gc.get_referents` then hands
# out freed memory and the process hangs or runs out of memory. reftrace never
# asks for that module's referents there. `gc.get_referrers` is safe: its
# visit only compares addresses, as the collector's own passes do.
BROKEN_ASYNCIO_TRAVERSE = (3, 12, 0) <= sys.version_info[:3] < (3, 12, 5)


def untraversable(obj: object) -> bool:
    """True for the ``_asyncio`` module on the CPython versions where traversing it is broken."""
    return BROKEN_ASYNCIO_TRAVERSE and obj is sys.modules.get("_asyncio")


def referents(obj: object) -> list[object]:
    """``gc.get_referents(obj)``, or [] when the type's traverse fails.

    A broken ``tp_traverse`` in some extension type (seen on 3.12.1 with a
    module object) raises MemoryError instead of visiting; one such object
    must not stop an analysis.
    """
    if untraversable(obj):
        return []
    try:
        return gc.get_referents(obj)
    except Exception:
        return []


def referents_of_all(objs: list[object]) -> list[object]:
    """``gc.get_referents(*objs)`` in one C call, falling back to one at a time."""
    if BROKEN_ASYNCIO_TRAVERSE and any(map(untraversable, objs)):
        objs = [o for o in objs if not untraversable(o)]
    try:
        return gc.get_referents(*objs)
    except Exception:
        out: list[object] = []
        for obj in objs:
            out.extend(referents(obj))
        return out


def type_name(obj: object) -> str:
    """The qualified name of ``type(obj)``, read from the type slot itself."""
    try:
        return str(class_qualname(type(obj)))
    except Exception:
        return "?"


def type_module(obj: object) -> str:
    """The ``__module__`` of ``type(obj)`` (``"builtins"`` for built-in types)."""
    try:
        return str(class_module(type(obj)))
    except Exception:
        return "?"


def class_attribute(cls: type, name: str) -> Any:
    """Look ``name`` up in the MRO's own dicts: no metaclass, no descriptors run."""
    for klass in class_mro(cls):
        namespace = class_dict(klass)
        if name in namespace:
            return namespace[name]
    return None


def safe_sizeof(obj: object) -> int:
    """``sys.getsizeof`` when the type's ``__sizeof__`` is CPython's own, else its basic size."""
    try:
        impl = class_attribute(type(obj), "__sizeof__")
        if isinstance(impl, BUILTIN_DESCRIPTORS):
            return int(sys.getsizeof(obj))
        size = int(object.__sizeof__(obj))
        return size + (16 if gc.is_tracked(obj) else 0)
    except Exception:
        return 0


def untrackable_reason(obj: object) -> str | None:
    """Why ``obj`` cannot be tracked as a leak, or None when it can."""
    if issubclass(type(obj), _UNTRACKABLE_TYPES):
        return f"{type_name(obj)} values are shared by the interpreter and cannot leak on their own"
    if type(obj) is str and is_interned(obj):
        return "interned str objects live as long as the interpreter and cannot leak on their own"
    if is_immortal(obj):
        return f"this {type_name(obj)} is immortal in this interpreter and cannot leak"
    return None


def is_immortal(obj: object) -> bool:
    """Whether the interpreter never frees ``obj`` (3.12+)."""
    probe = getattr(sys, "_is_immortal", None)  # 3.14+
    if probe is not None:
        return bool(probe(obj))
    # 3.12 and 3.13 mark immortal objects with a saturated reference count.
    return sys.version_info >= (3, 12) and sys.getrefcount(obj) >= (1 << 30)


#: The immutable mapping of 3.15 (``builtins.frozendict``, not a dict
#: subclass), or None before 3.15.
FROZENDICT: Any = getattr(builtins, "frozendict", None)


def _loop_refcounts_raw(items: list[Any]) -> list[int]:
    out = []
    for obj in items:
        out.append(sys.getrefcount(obj))
    return out


# What the loop above adds to a count: its variable, and getrefcount's
# argument before 3.14 (3.14 passes a local borrowed, LOAD_FAST_BORROW).
# Measured on an object only a list holds, not assumed per version.
_LOOP_EXTRA = _loop_refcounts_raw([object()])[0] - 1


def loop_refcounts(items: list[Any]) -> list[int]:
    """The reference count of each of ``items``, ``items``' own reference
    included and this function's removed, on every supported version."""
    return [count - _LOOP_EXTRA for count in _loop_refcounts_raw(items)]


# The `state.interned` bits sit right after the header of PyASCIIObject
# (refcnt, type, length, hash) on 64-bit CPython 3.10-3.13. Validated below
# against known interned and non-interned strings before use.
_STR_STATE_OFFSET = 32


def _interned_probe_works() -> bool:
    if sys.implementation.name != "cpython" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    interned = sys.intern("reftrace-interned-probe")
    fresh = "".join(["reftrace", "-fresh-", "probe"])
    try:
        return _interned_bits(interned) != 0 and _interned_bits(fresh) == 0
    except Exception:
        return False


def _interned_bits(s: str) -> int:
    return int(ctypes.c_uint8.from_address(id(s) + _STR_STATE_OFFSET).value) & 3


_INTERNED_PROBE = _interned_probe_works()


def is_interned(s: str) -> bool:
    """True when ``s`` is an interned string (without interning it)."""
    if not _INTERNED_PROBE:
        return False
    return _interned_bits(s) != 0


# The demo agent ships inside the package but is a program like any other:
# its objects are watched, never hidden.
_DEMO_DIR = os.path.join(PACKAGE_DIR, "demo") + os.sep


def is_own_file(filename: str) -> bool:
    """A source file of reftrace itself (an absolute path; the demo agent is a
    program like any other)."""
    return filename.startswith(PACKAGE_DIR + os.sep) and not filename.startswith(_DEMO_DIR)


def is_own_code(code: types.CodeType) -> bool:
    """True for code from a source file of reftrace itself (the demo agent's excepted)."""
    return is_own_file(code.co_filename)


def is_own_module(module: object) -> bool:
    """True when ``module`` is the name of reftrace or of one of its modules, not the demo's."""
    return isinstance(module, str) and (
        module == "reftrace"
        or (module.startswith("reftrace.") and not module.startswith("reftrace.demo"))
    )


def is_own(obj: object) -> bool:
    """True for objects that belong to reftrace itself: its types, frames, functions."""
    t = type(obj)
    try:
        module = class_module(t)
    except Exception:
        module = None
    if is_own_module(module):
        return True
    code = None
    if t is types.FrameType:
        code = obj.f_code  # type: ignore[attr-defined]
    elif t is types.FunctionType:
        code = obj.__code__  # type: ignore[attr-defined]
    elif t in (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType):
        code = getattr(obj, "gi_code", None) or getattr(obj, "cr_code", None)
        code = code or getattr(obj, "ag_code", None)
    elif t is types.MethodType:
        return is_own(obj.__self__)  # type: ignore[attr-defined]
    return code is not None and is_own_code(code)


module_dict: Callable[[object], dict[str, Any]] = vars(types.ModuleType)["__dict__"].__get__


def module_name(module: object) -> str:
    """A module's ``__name__``, read from its dict; ``"?"`` when there is none."""
    try:
        return str(module_dict(module).get("__name__", "?"))
    except Exception:
        return "?"


def code_location(code: types.CodeType, lineno: int | None = None) -> str:
    """``file:line`` of ``code`` at ``lineno``, else its first line (file as in ``short_path``)."""
    return f"{short_path(code.co_filename)}:{lineno if lineno is not None else code.co_firstlineno}"


def short_path(filename: str) -> str:
    """A file name relative to the working directory when it lies below it."""
    try:
        cwd = os.getcwd()
    except OSError:  # the working directory was removed
        return filename
    return _short_path(cwd, filename)


@functools.lru_cache(maxsize=1024)
def _short_path(cwd: str, filename: str) -> str:
    # Cached: a report names the same few files for thousands of objects.
    try:
        rel = os.path.relpath(filename, cwd)
    except ValueError:
        return filename
    return filename if rel.startswith("..") else rel


# On 3.11 tracemalloc looks for an object's memory block just before its GC
# header, but instances with an inline __dict__ carry two more pointers before
# that (the "pre-header"), so get_object_traceback() returns None for them.
# Asking tracemalloc for the block at the right address works around it.
_MANAGED_DICT_FLAG = 1 << 4
_GC_HEAD_SIZE = 16
_PRE_HEADER_SIZE = 16


def _raw_traceback_reader() -> Any:
    if sys.version_info[:2] != (3, 11) or sys.implementation.name != "cpython":
        return None
    try:
        fn = ctypes.pythonapi._PyTraceMalloc_GetTraceback
    except AttributeError:
        return None
    fn.restype = ctypes.py_object
    fn.argtypes = [ctypes.c_uint, ctypes.c_size_t]
    return fn


_RAW_TRACEBACK = _raw_traceback_reader()


def allocation_site(obj: object) -> str | None:
    """``file:line`` where ``obj`` was allocated, if tracemalloc traced it."""
    if not tracemalloc.is_tracing():
        return None
    try:
        tb = tracemalloc.get_object_traceback(obj)
        if tb is not None:
            frame = tb[-1]  # the most recent frame: the line that allocated
            return f"{short_path(frame.filename)}:{frame.lineno}"
        if _RAW_TRACEBACK is not None and type(obj).__flags__ & _MANAGED_DICT_FLAG:
            address = id(obj) - _GC_HEAD_SIZE - _PRE_HEADER_SIZE
            frames = _RAW_TRACEBACK(0, address)
            if frames:
                filename, lineno = frames[0]  # the raw C traceback: most recent first
                return f"{short_path(filename)}:{lineno}"
    except Exception:
        return None
    return None


def describe(obj: object) -> str:
    """A short, safe description of ``obj`` for the detail column of a trace.

    Only builtin types are shown by value (their repr is CPython's own, and
    truncated); user objects are never repr'd.
    """
    t = type(obj)
    try:
        if t in (str, bytes):
            text = repr(obj[:40])  # type: ignore[index]
            return text + (f" (+{len(obj) - 40} more)" if len(obj) > 40 else "")  # type: ignore[arg-type]
        if t in (list, tuple, dict, set, frozenset):
            n = len(obj)  # type: ignore[arg-type]
            return f"{n} item" if n == 1 else f"{n} items"
        if t is types.MethodType:
            func = obj.__func__  # type: ignore[attr-defined]
            return (
                str(getattr(func, "__qualname__", ""))
                if isinstance(func, types.FunctionType)
                else ""
            )
        if t is types.FunctionType:
            return f"{obj.__qualname__} ({code_location(obj.__code__)})"  # type: ignore[attr-defined]
        if t is types.FrameType:
            f = obj
            return f"{f.f_code.co_name} ({code_location(f.f_code, f.f_lineno)})"  # type: ignore[attr-defined]
        if issubclass(t, types.ModuleType):
            return f"module {module_name(obj)}"
        if t is type:
            return f"class {class_qualname(obj)}"
    except Exception:
        return ""
    return ""


def weak_handle(obj: object) -> Callable[[], Any] | None:
    """A weak reference to ``obj``, or None when it cannot be weakly referenced."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return None
