"""Hand-offs to other heap tools, one call each, imported only when used.

``pip install reftrace[tools]`` installs them. :func:`to_guppy` gives a
guppy3 ``IdentitySet``, :func:`to_pympler` a pympler summary,
:func:`asizeof` pympler's deep size and :func:`show_backrefs` objgraph's
graph of referrers, laid out by reftrace's Graphviz. Each takes any
iterable of objects: an ``ObjectList`` from a snapshot, a plain list.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import sys
from collections.abc import Iterable
from typing import Any

from reftrace.files import target_path, write_atomic
from reftrace.layout import layout
from reftrace.objects import is_own

_TOOLS_HINT = "pip install 'reftrace[tools]' installs objgraph, pympler and guppy3"


def _tool(module: str, project: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{what} needs {project}: pip install {project} ({_TOOLS_HINT})"
        ) from error


def object_items(objs: Iterable[Any], what: str) -> list[Any]:
    """``objs`` as a list, or ``TypeError`` naming ``what`` when it is one object."""
    # (Not isinstance(objs, Iterable): an ABC check fills caches, a diff's noise.)
    if isinstance(objs, (str, bytes, dict)) or not hasattr(type(objs), "__iter__"):
        raise TypeError(
            f"{what} needs an iterable of objects (an ObjectList, a list), "
            f"got {type(objs).__name__}; wrap a single object in a list"
        )
    return list(objs)


_GUPPY: list[Any] = []


def to_guppy(objs: Iterable[Any], hp: Any = None) -> Any:
    """The objects as a guppy3 ``IdentitySet``: ``hp.idset(objs)``.

    ``hp`` is a guppy session (``guppy.hpy()``); by default one session
    that reftrace keeps for all its hand-offs, so their sets combine
    (``a | b``). The set holds the objects. From it, guppy's C-speed views:
    ``.byrcs`` (grouped by what refers to them), ``.byvia``, ``.domisize``
    (what they alone keep alive), ``.sp`` (shortest paths).
    """
    items = object_items(objs, "to_guppy()")
    if hp is None:
        if not _GUPPY:
            if sys.version_info >= (3, 15) and importlib.util.find_spec("guppy") is None:
                raise ImportError(
                    "to_guppy() needs guppy3, which does not build on CPython 3.15 (its C "
                    "code reads interpreter internals 3.15 changed); use to_pympler() or "
                    "to_objgraph() here, or guppy3 on CPython 3.14 or older"
                )
            guppy = _tool("guppy", "guppy3", "to_guppy()")
            _GUPPY.append(guppy.hpy())
        hp = _GUPPY[0]
    return hp.idset(items)


def to_pympler(objs: Iterable[Any]) -> list[list[Any]]:
    """A pympler summary of the objects: ``pympler.summary.summarize(objs)``.

    Rows of ``[type, count, total shallow size]``; ``summary.print_(rows)``
    prints them, ``summary.get_diff(a, b)`` compares two.
    """
    items = object_items(objs, "to_pympler()")
    summary = _tool("pympler.summary", "pympler", "to_pympler()")
    return summary.summarize(items)  # type: ignore[no-any-return]


def asizeof(objs: Iterable[Any], **options: Any) -> int:
    """The deep size of the objects together: ``pympler.asizeof.asizeof(*objs)``.

    Everything they reference is counted, each object once (so two objects
    sharing a cache count it once). ``options`` go to pympler (``limit``,
    ``code``, ``stats``, ...). It runs no ``__sizeof__`` of reftrace's, and
    pympler may call the objects' own.
    """
    items = object_items(objs, "asizeof()")
    module = _tool("pympler.asizeof", "pympler", "asizeof()")
    return int(module.asizeof(*items, **options))


_GRAPH_FORMATS = ("dot", "svg", "png")


def show_backrefs(
    objs: Iterable[Any],
    filename: str | os.PathLike[str],
    *,
    max_depth: int = 3,
    **options: Any,
) -> str:
    """objgraph's graph of what refers to the objects, written to ``filename``.

    ``objgraph.show_backrefs(objs, max_depth=...)``, with reftrace's own
    objects filtered out, laid out by reftrace's Graphviz (the system
    ``dot``, else ``graphviz-pure``): ``.svg``, ``.png``, or ``.dot`` for
    the source. Other ``options`` go to objgraph (``too_many``, ``filter``,
    ``highlight``, ``refcounts``, ``shortnames``, ...). objgraph labels
    nodes with ``repr()`` of the objects, unmasked. Returns the file's path.
    """
    items = object_items(objs, "show_backrefs()")
    name = target_path(filename, "show_backrefs()")
    fmt = os.path.splitext(name)[1].lstrip(".").lower()
    if fmt not in _GRAPH_FORMATS:
        raise ValueError(
            f"show_backrefs() writes {', '.join('.' + f for f in _GRAPH_FORMATS)} files, "
            f"not {name!r}"
        )
    objgraph = _tool("objgraph", "objgraph", "show_backrefs()")
    user_filter = options.pop("filter", None)

    def keep(obj: object) -> bool:
        return not is_own(obj) and (user_filter is None or bool(user_filter(obj)))

    source = io.StringIO()
    objgraph.show_backrefs(items, max_depth=max_depth, filter=keep, output=source, **options)
    items.clear()
    text = source.getvalue()
    write_atomic(name, text.encode("utf-8") if fmt == "dot" else layout(text, fmt))
    return name
