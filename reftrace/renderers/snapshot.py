"""Heap snapshots, their diffs and the paths they find, as text and HTML."""

from __future__ import annotations

import html
from collections.abc import Iterable

from reftrace import views
from reftrace.redact import clean
from reftrace.renderers.common import NAME_LIMIT, REASON_LIMIT, escape, wrap
from reftrace.renderers.html import graph_block, trace_table
from reftrace.renderers.text import render_path
from reftrace.snapshot import (
    SHOWN_ROWS,
    ObjectList,
    ObjectPath,
    Snapshot,
    SnapshotDiff,
    TypeStats,
)
from reftrace.units import duration, human_size, signed_size

#: Width of the type column in text tables.
NAME_WIDTH = 48
#: How a path marks its suspect reference: the first made after the snapshot.
SUSPECT_NOTE = "this reference was made after the snapshot"


def _totals(snap: Snapshot) -> str:
    text = f"{snap.count:,} objects, {human_size(snap.size)} (gc-tracked, shallow sizes)"
    if snap.traced is not None:
        text += f"; tracemalloc traces {human_size(snap.traced)}"
    return text


@views.text.register(Snapshot)
def render_snapshot_text(snap: Snapshot) -> str:
    """The totals and the largest types by shallow size."""
    types = snap.types
    rows = types[:SHOWN_ROWS]
    lines = [
        f"heap snapshot: {_totals(snap)}, {len(types):,} types, taken in {duration(snap.seconds)}",
        f"largest {len(rows)} types by shallow size:",
        f"  {'type':<{NAME_WIDTH}} {'objects':>10} {'size':>11}",
    ]
    for row in rows:
        lines.append(
            f"  {clean(row.name, NAME_WIDTH):<{NAME_WIDTH}} {row.count:>10,} "
            f"{human_size(row.size):>11}"
        )
    lines.extend(f"note: {clean(note, 300)}" for note in snap.notes)
    return "\n".join(lines)


@views.text.register(SnapshotDiff)
def render_diff_text(diff: SnapshotDiff) -> str:
    """The totals of the change and the types that grew, most bytes first."""
    head = (
        f"heap diff over {duration(diff.seconds)}: {diff.count:+,} objects, "
        f"{signed_size(diff.size)} (gc-tracked, shallow sizes)"
    )
    if diff.traced is not None:
        head += f"; tracemalloc traces {signed_size(diff.traced)}"
    grown = diff.grown(SHOWN_ROWS)
    lines = [head]
    if grown:
        lines.append(f"types that grew, most bytes first ({len(grown)} shown):")
        lines.append(f"  {'type':<{NAME_WIDTH}} {'objects':>10} {'size':>11}")
        for row in grown:
            lines.append(
                f"  {clean(row.name, NAME_WIDTH):<{NAME_WIDTH}} {row.count:>+10,} "
                f"{signed_size(row.size):>11}"
            )
    else:
        lines.append("no type grew")
    shrunk = len(diff.shrunk(len(diff.changes)))
    if shrunk:
        lines.append(f"{shrunk:,} types shrank (diff.shrunk())")
    for note in dict.fromkeys([*diff.before.notes, *diff.after.notes]):
        lines.append(f"note: {clean(note, 300)}")
    return "\n".join(lines)


def _stats_table(rows: list[TypeStats], mask: bool | None) -> str:
    out = [
        "<table class='types'><thead><tr><th>type</th><th>objects</th><th>size</th>"
        "</tr></thead><tbody>"
    ]
    for row in rows:
        out.append(
            f"<tr><td class='code'>{escape(row.name, NAME_LIMIT, mask)}</td>"
            f"<td>{row.count:,}</td><td>{human_size(row.size)}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _notes_html(notes: Iterable[str], mask: bool | None) -> str:
    items = [f"<li>{escape(note, 300, mask)}</li>" for note in notes]
    return "<ul class='note'>" + "".join(items) + "</ul>" if items else ""


@views.html.register(Snapshot)
def render_snapshot_html(snap: Snapshot, *, mask: bool | None = None) -> str:
    """The largest types as an HTML table; every name masked and escaped."""
    types = snap.types
    body = (
        f"<p><strong>Heap snapshot</strong>: {html.escape(_totals(snap))}, "
        f"{len(types):,} types</p>"
        + _stats_table(types[:SHOWN_ROWS], mask)
        + _notes_html(snap.notes, mask)
    )
    return wrap(body, False)


@views.html.register(SnapshotDiff)
def render_diff_html(diff: SnapshotDiff, *, mask: bool | None = None) -> str:
    """The grown types as an HTML table; every name masked and escaped."""
    head = f"{diff.count:+,} objects, {signed_size(diff.size)} (gc-tracked, shallow sizes)"
    if diff.traced is not None:
        head += f"; tracemalloc traces {signed_size(diff.traced)}"
    out = [f"<p><strong>Heap diff over {duration(diff.seconds)}</strong>: {html.escape(head)}</p>"]
    grown = diff.grown(SHOWN_ROWS)
    if grown:
        out.append(
            "<table class='types'><thead><tr><th>type</th><th>objects</th><th>size</th>"
            "</tr></thead><tbody>"
        )
        for row in grown:
            out.append(
                f"<tr><td class='code'>{escape(row.name, NAME_LIMIT, mask)}</td>"
                f"<td>{row.count:+,}</td><td>{signed_size(row.size)}</td></tr>"
            )
        out.append("</tbody></table>")
    else:
        out.append("<p>No type grew.</p>")
    out.append(_notes_html(dict.fromkeys([*diff.before.notes, *diff.after.notes]), mask))
    return wrap("\n".join(out), False)


@views.text.register(ObjectPath)
def render_path_text(found: ObjectPath) -> str:
    """The path as a trace, or why there is none."""
    name = clean(found.type_name, NAME_LIMIT)
    if found.path is None:
        return f"no path from a root to {name}: {clean(found.reason, REASON_LIMIT)}"
    lines = [f"shortest path from a root to {name} ({len(found.path.steps)} references)"]
    lines += render_path(found.path, suspect_note=SUSPECT_NOTE)
    lines.append("(old: alive at the snapshot; new: made since)")
    return "\n".join(lines)


@views.html.register(ObjectPath)
def render_path_html(found: ObjectPath, *, mask: bool | None = None, graph: bool = True) -> str:
    """The path as an HTML table, with its drawing inline (SVG) when ``graph``."""
    name = escape(found.type_name, NAME_LIMIT, mask)
    if found.path is None:
        body = f"<p>No path from a root to {name}: {escape(found.reason, REASON_LIMIT, mask)}</p>"
        return wrap(body, False)
    table = trace_table(found.path, None, mask, suspect_note="made after the snapshot")
    parts = [f"<h4>Shortest path from a root to {name}</h4>", table]
    parts.append("<p class='note'>old: alive at the snapshot; new: made since</p>")
    if graph:
        parts.append(graph_block([(found.path, found.type_name, "", "")], 0, mask))
    return wrap("\n".join(parts), False)


@views.html.register(ObjectList)
def render_object_list_html(objects: ObjectList, *, mask: bool | None = None) -> str:
    """How many objects, of what, and their types as a table."""
    what = f" of <code>{escape(objects.label, NAME_LIMIT, mask)}</code>" if objects.label else ""
    body = f"<p><strong>{len(objects):,} objects</strong>{what}</p>" + _stats_table(
        objects.types[:SHOWN_ROWS], mask
    )
    return wrap(body)
