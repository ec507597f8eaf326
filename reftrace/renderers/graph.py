"""Retention graphs: the leak paths of a report drawn with Graphviz.

Roots at the top, one node per object on a reported path, edges labelled
the way code reads. Old objects (alive before the block) are grey, new ones
orange, the suspect reference red. Leaks sharing a signature are drawn once
with their count. When the report has no leaks, its survivor groups are
drawn instead.

Every label comes from user data: it is masked, its control characters are
written as escapes, it is truncated (``reftrace.redact.clean``), and then
escaped for DOT and marked as plain text, so no label can become an HTML-like
Graphviz label or break out of its quotes; the layout program then escapes it
for SVG. A long path is drawn as its first and last steps (and the suspect
reference) with one summary node for the steps between; at most
``MAX_DRAWN`` findings or survivor groups are drawn.

The DOT source is built with the ``graphviz`` package and laid out by a
``dot`` executable: the one named by the ``REFTRACE_DOT`` environment
variable when set, else the system's Graphviz, else the ``graphviz-pure``
command that reftrace's install brings along.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from reftrace.files import write_atomic
from reftrace.layout import DOT_ENV, GraphvizNotFound, find_dot, layout
from reftrace.redact import clean
from reftrace.renderers.common import DETAIL_LIMIT, LABEL_LIMIT, TYPE_LIMIT
from reftrace.renderers.text import gap_text, root_text, shown_steps
from reftrace.units import human_size

if TYPE_CHECKING:
    import graphviz  # type: ignore[import-untyped]

    from reftrace.report import Leak, LeakGroup, Path, Report, StoreSite, SurvivorGroup

#: Formats ``Report.render`` writes: graph images, DOT source, an HTML report.
FORMATS = ("svg", "png", "dot", "html")
#: At most this many findings (or survivor groups) are drawn in one graph.
MAX_DRAWN = 20

_OLD = {"style": "filled", "fillcolor": "#eeeeee", "color": "#888888"}
_NEW = {"style": "filled", "fillcolor": "#ffd8a8", "color": "#d9480f"}
_ROOT = {"shape": "box", "style": "filled,rounded", "fillcolor": "#d0ebff", "color": "#1c7ed6"}
_GAP = {"shape": "box", "style": "dashed", "color": "#888888", "fontcolor": "#555555"}

#: What to draw: each path with the two parts of its summary line, the first
#: from the program (a type name: cleaned) and the second reftrace's own.
#: (path, leaked type, summary, note on the suspect edge)
Items = list[tuple["Path", str, str, str]]


def graphviz_package() -> ModuleType:
    """The ``graphviz`` package, imported when a graph is drawn: the text and
    JSON of a report need none (nor does reftrace in a process it attached to)."""
    import graphviz

    return graphviz  # type: ignore[no-any-return]


def _text(value: str, limit: int = 60, mask: bool | None = None) -> str:
    """``value`` cleaned (masked, control characters escaped, truncated) and DOT-escaped."""
    return str(graphviz_package().escape(clean(value, limit, mask)))


def _label(*lines: str) -> str:
    """Lines already passed through ``_text``, joined, marked as plain (never HTML) text."""
    return graphviz_package().nohtml("\\n".join(lines))  # type: ignore[no-any-return]


# -- what to draw ---------------------------------------------------------------------


def group_summary(group: LeakGroup) -> tuple[str, str]:
    """The finding's leaked type and, apart, its count and size."""
    leak = group.example
    same = sum(1 for other in group.leaks if other.type_name == leak.type_name)
    summary = f" ×{same}"
    if group.count > same:
        summary += f" (+{group.count - same} more tracked objects)"
    return leak.type_name, f"{summary}, {human_size(group.size)} retained"


def store_note(site: StoreSite | None) -> str:
    """``stored at file:line`` for the suspect edge, or ""."""
    return f"stored at {site.line.where}" if site is not None else ""


def leak_items(leak: Leak) -> Items:
    """What to draw for one leak: its path, type and retained size (if it has a path)."""
    if leak.path is None:
        return []
    return [(leak.path, leak.type_name, f", {human_size(leak.size)} retained", "")]


def group_items(group: LeakGroup) -> Items:
    """What to draw for a finding: its example's path, summary and store site (if it has a path)."""
    path = group.example.path
    if path is None:
        return []
    return [(path, *group_summary(group), store_note(group.stored_at))]


def survivor_items(survivor: SurvivorGroup) -> Items:
    """What to draw for a survivor group: its path, count, size, store site (if it has a path)."""
    if survivor.path is None:
        return []
    summary = f"{survivor.count} new objects, {human_size(survivor.size)}"
    return [(survivor.path, "", summary, store_note(survivor.stored_at))]


def report_items(report: Report) -> tuple[Items, int]:
    """The paths to draw for ``report`` and how many more were left out."""
    items: Items = []
    for group in report.leak_groups:
        items.extend(group_items(group))
    if not items:
        for survivor in report.survivors:
            items.extend(survivor_items(survivor))
    return items[:MAX_DRAWN], max(0, len(items) - MAX_DRAWN)


def build_graph(report: Report, *, mask: bool | None = None) -> graphviz.Digraph:
    """The retention graph of ``report`` (at most ``MAX_DRAWN`` paths), not yet laid out."""
    items, more = report_items(report)
    return build_path_graph(items, more, mask=mask)


def build_path_graph(
    items: Sequence[tuple[Path, str, str, str]], more: int = 0, *, mask: bool | None = None
) -> graphviz.Digraph:
    """A ``graphviz.Digraph`` of ``items`` (each node drawn once), noting ``more`` left out."""
    graph = graphviz_package().Digraph(
        "reftrace", graph_attr={"rankdir": "TB", "fontname": "Helvetica"}
    )
    graph.attr("node", fontname="Helvetica", fontsize="11", shape="box")
    graph.attr("edge", fontname="Helvetica", fontsize="10")
    drawn: set[str] = set()
    for path, name, summary, note in items:
        add_path(graph, drawn, path, summary, mask, name=name, note=note)
    if more:
        graph.node("more", _label(_text(f"… and {more:,} more not drawn", 60)), shape="plaintext")
    if not items:
        graph.node("empty", "no leaks and no survivors", shape="plaintext")
    return graph


def _digest(*parts: str) -> str:
    data = "\x00".join(parts).encode("utf-8", "replace")
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:16]


def add_path(
    graph: graphviz.Digraph,
    drawn: set[str],
    path: Path,
    summary: str,
    mask: bool | None = None,
    *,
    name: str = "",
    note: str = "",
) -> None:
    """Draw ``path``; its last node ends with ``name`` (a type name) then ``summary``;
    ``note`` (where the reference was stored) goes on the suspect edge.

    Both are plain text, cleaned here; ``name`` is cut on its own, so a long
    type name never pushes the summary out.
    """
    summary = _text(name, TYPE_LIMIT, mask) + _text(summary, 80, mask)
    root = path.root
    root_id = "r" + _digest("root", root.kind, root.name, root.function)
    if root_id not in drawn:
        graph.node(root_id, _label(_text(root_text(root, mask), 100, mask)), **_ROOT)
        drawn.add(root_id)
    steps = path.steps
    # A node is the same object when the whole path to it is the same: chain
    # the ids (one pass, no quadratic string building, no recursion).
    ids: list[str] = []
    previous = root_id
    for step in steps:
        previous = "n" + _digest(previous, step.label)
        ids.append(previous)
    last = len(steps) - 1
    parent = root_id
    for item in shown_steps(steps):
        if isinstance(item, tuple):
            start, count = item
            gap_id = ids[start + count - 1] + "_gap"
            if gap_id not in drawn:
                graph.node(gap_id, _label(_text(gap_text(count), 40)), **_GAP)
                drawn.add(gap_id)
            if parent + "->" + gap_id not in drawn:
                graph.edge(parent, gap_id, style="dashed", color="#888888")
                drawn.add(parent + "->" + gap_id)
            parent = gap_id
            continue
        i = item
        step = steps[i]
        node_id = ids[i]
        if node_id not in drawn:
            lines = [_text(step.type_name, TYPE_LIMIT, mask)]
            if step.detail:
                lines.append(_text(step.detail, DETAIL_LIMIT, mask))
            if i == last:
                lines.append(summary)
            graph.node(node_id, _label(*lines), **(_NEW if step.status != "old" else _OLD))
            drawn.add(node_id)
        edge_key = parent + "->" + node_id
        if edge_key not in drawn:
            label = _text(step.label, LABEL_LIMIT, mask)
            attrs = {"label": _label(label)}
            if step.is_suspect:
                attrs.update(color="#e03131", fontcolor="#e03131", penwidth="2.5")
                extra = [_text(note, 100, mask)] if note else []
                attrs["label"] = _label(label, "(suspect)", *extra)
            graph.edge(parent, node_id, **attrs)
            drawn.add(edge_key)
        parent = node_id


def svg_markup(
    items: Sequence[tuple[Path, str, str, str]],
    more: int = 0,
    timeout: float = 30,
    *,
    mask: bool | None = None,
) -> str:
    """The graph of ``items`` as an ``<svg>`` element to put inside HTML.

    Raises ``GraphvizNotFound``/``RuntimeError`` as :func:`layout` does, and
    ``RuntimeError`` when the drawing is not a plain SVG element.
    """
    source = build_path_graph(items, more, mask=mask).source
    svg = layout(source, "svg", timeout).decode("utf-8", "replace")
    start = svg.find("<svg")
    if start < 0:
        raise RuntimeError("the layout program produced no <svg> element")
    return svg[start:].strip()


# -- writing files -------------------------------------------------------------------------


def write_graph(report: Report, name: str, fmt: str, *, mask: bool | None = None) -> None:
    """Write the retention graph of ``report`` to ``name`` as ``svg``, ``png`` or ``dot``.

    The file is written whole or not at all. When no Graphviz is found, the
    DOT source is written beside ``name`` (as ``.dot``) and
    ``GraphvizNotFound`` says how to get one.
    """
    source = build_graph(report, mask=mask).source
    if fmt == "dot":
        write_atomic(name, source.encode("utf-8"))
        return
    try:
        data = layout(source, fmt)
    except GraphvizNotFound as error:
        fallback = os.path.splitext(name)[0] + ".dot"
        write_atomic(fallback, source.encode("utf-8"))
        raise GraphvizNotFound(f"{error}. The DOT source was written to {fallback}") from None
    write_atomic(name, data)


__all__ = [
    "DOT_ENV",
    "FORMATS",
    "MAX_DRAWN",
    "GraphvizNotFound",
    "Items",
    "add_path",
    "build_graph",
    "build_path_graph",
    "find_dot",
    "group_items",
    "group_summary",
    "layout",
    "leak_items",
    "report_items",
    "store_note",
    "survivor_items",
    "svg_markup",
    "write_graph",
]
