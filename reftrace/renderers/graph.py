"""Retention graphs: the leak paths of a report drawn with Graphviz.

Roots at the top, one node per object on a reported path, edges labelled
the way code reads. Old objects (alive before the block) are grey, new ones
orange, the suspect reference red. Leaks sharing a signature are drawn once
with their count. When the report has no leaks, its survivor groups are
drawn instead.

The DOT source is built with the ``graphviz`` package and laid out by a
``dot`` executable: the system's Graphviz when installed, else the
``graphviz-pure`` command that reftrace's install brings along.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import graphviz  # type: ignore[import-untyped]

from reftrace.renderers.text import human_size

if TYPE_CHECKING:
    from reftrace.report import Path, Report

_FORMATS = ("svg", "png", "dot")
_OLD = {"style": "filled", "fillcolor": "#eeeeee", "color": "#888888"}
_NEW = {"style": "filled", "fillcolor": "#ffd8a8", "color": "#d9480f"}
_ROOT = {"shape": "box", "style": "filled,rounded", "fillcolor": "#d0ebff", "color": "#1c7ed6"}


def _text(value: str, limit: int = 60) -> str:
    value = "".join(ch if ch.isprintable() else "?" for ch in value)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return str(graphviz.escape(value))


def find_dot() -> str | None:
    """The layout program: system ``dot`` first, then ``graphviz-pure``."""
    system = shutil.which("dot")
    if system:
        return system
    beside = os.path.join(os.path.dirname(sys.executable), "graphviz-pure")
    if os.path.exists(beside):
        return beside
    return shutil.which("graphviz-pure")


def build_graph(report: Report) -> graphviz.Digraph:
    graph = graphviz.Digraph("reftrace", graph_attr={"rankdir": "TB", "fontname": "Helvetica"})
    graph.attr("node", fontname="Helvetica", fontsize="11", shape="box")
    graph.attr("edge", fontname="Helvetica", fontsize="10")
    drawn: set[str] = set()
    items: list[tuple[Path, str]] = []
    for group in report.leak_groups:
        leak = group.example
        if leak.path is None:
            continue
        same = sum(1 for other in group.leaks if other.type_name == leak.type_name)
        summary = f"{leak.type_name} ×{same}"
        if group.count > same:
            summary += f" (+{group.count - same} more tracked objects)"
        items.append((leak.path, f"{summary}, {human_size(group.size)} retained"))
    if not items:
        for survivor in report.survivors:
            if survivor.path is not None:
                items.append(
                    (survivor.path, f"{survivor.count} new objects, {human_size(survivor.size)}")
                )
    for path, summary in items:
        _add_path(graph, drawn, path, summary)
    if not items:
        graph.node("empty", "no leaks and no survivors", shape="plaintext")
    return graph


def _add_path(graph: graphviz.Digraph, drawn: set[str], path: Path, summary: str) -> None:
    root = path.root
    root_key = "root:" + root.kind + ":" + root.name + ":" + root.function
    root_id = "r" + hashlib.sha1(root_key.encode("utf-8", "replace")).hexdigest()[:12]
    if root_id not in drawn:
        graph.node(root_id, _text(root.describe(), 80), **_ROOT)
        drawn.add(root_id)
    parent = root_id
    key = root_key
    last = len(path.steps) - 1
    for i, step in enumerate(path.steps):
        key = key + "/" + step.label
        node_id = "n" + hashlib.sha1(key.encode("utf-8", "replace")).hexdigest()[:12]
        if node_id not in drawn:
            label = _text(step.type_name, 40)
            if step.detail:
                label += "\\n" + _text(step.detail, 50)
            if i == last:
                label += "\\n" + _text(summary, 60)
            graph.node(node_id, label, **(_NEW if step.status != "old" else _OLD))
            drawn.add(node_id)
        edge_key = parent + "->" + node_id
        if edge_key not in drawn:
            attrs = {"label": _text(step.label, 50)}
            if step.is_suspect:
                attrs.update(color="#e03131", fontcolor="#e03131", penwidth="2.5")
                attrs["label"] = _text(step.label, 50) + "\\n(suspect)"
            graph.edge(parent, node_id, **attrs)
            drawn.add(edge_key)
        parent = node_id


def render_report_graph(report: Report, path: str, format: str | None = None) -> str:
    """Write the retention graph of ``report`` to ``path`` and return the path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"render() needs a file path, got {type(path).__name__}")
    path = os.fspath(path)
    fmt = (format or os.path.splitext(path)[1].lstrip(".") or "svg").lower()
    if fmt not in _FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(_FORMATS)}")
    source = build_graph(report).source
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
    if fmt == "dot":
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(source)
        return path
    dot = find_dot()
    if dot is None:
        fallback = os.path.splitext(path)[0] + ".dot"
        with open(fallback, "w", encoding="utf-8") as handle:
            handle.write(source)
        raise RuntimeError(
            "no Graphviz layout program found: install Graphviz (e.g. apt-get install graphviz) "
            f"or `pip install graphviz-pure`. The DOT source was written to {fallback}"
        )
    result = subprocess.run(
        [dot, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"{dot} failed: {result.stderr.decode('utf-8', 'replace').strip()}")
    with open(path, "wb") as handle:
        handle.write(result.stdout)
    return path
