"""HTML views of reports, for notebooks (``_repr_html_``) and ``render("x.html")``.

A leak trace is a table (root, then each step: reference, type, old/new,
detail; the suspect reference highlighted), with the retention graph inline
as SVG when a Graphviz layout program is available; otherwise the page says
why the graph is missing. Every string from the watched program is masked,
has its control characters escaped and is truncated
(``reftrace.redact.clean``), then HTML-escaped with quotes. The inline SVG
comes from DOT labels escaped the same way, and is checked before it is
embedded: a drawing with a script, an event handler, a link or foreign
content is not shown. Output is bounded like the text renderer's: long paths
show their first and last steps, long lists are cut with a count.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from reftrace import views
from reftrace.files import output_format, target_path, write_atomic
from reftrace.redact import clean
from reftrace.renderers.common import (
    DETAIL_LIMIT,
    LABEL_LIMIT,
    MAX_ALLOCATIONS,
    MAX_FINDINGS,
    MAX_NOTES,
    MAX_SURVIVOR_GROUPS,
    MAX_TYPES,
    NOTE_LIMIT,
    REASON_LIMIT,
    SITE_LIMIT,
    TYPE_LIMIT,
    escape,
    leak_summary,
    wrap,
)
from reftrace.renderers.graph import (
    FORMATS,
    group_items,
    leak_items,
    report_items,
    survivor_items,
    svg_markup,
    write_graph,
)
from reftrace.renderers.text import (
    gap_text,
    render_proof,
    render_store,
    root_text,
    shown_steps,
)
from reftrace.report import Leak, LeakGroup, Path, Report, SurvivorGroup
from reftrace.units import human_size

#: More allocation sites are listed in HTML than in text: a table reads easily.
_HTML_ALLOCATIONS = max(MAX_ALLOCATIONS, 20)

# Markup an inline drawing must not carry: scripts, foreign content,
# event handlers and links (Graphviz writes none of these for reftrace's graphs).
_UNSAFE_SVG = re.compile(
    r"<\s*/?\s*(?:script|foreignobject|iframe|object|embed|a|use|image|animate|set)\b"
    r"|<[^>]*\son[a-z]+\s*="
    r"|<[^>]*(?:href|javascript:)",
    re.IGNORECASE,
)


def _types(types: Sequence[tuple[str, int]], mask: bool | None) -> str:
    listed = ", ".join(f"{escape(name, TYPE_LIMIT, mask)} ×{n}" for name, n in types[:MAX_TYPES])
    if len(types) > MAX_TYPES:
        listed += f", and {len(types) - MAX_TYPES:,} more types"
    return listed


def trace_table(
    path: Path,
    allocated_at: str | None = None,
    mask: bool | None = None,
    suspect_note: str = "created inside the block",
) -> str:
    """The path as a table: the root, then one row per (shown) step."""
    rows = [
        "<table class='trace'><thead><tr><th>#</th><th>reference</th><th>type</th>"
        "<th>age</th><th>detail</th></tr></thead><tbody>",
        f"<tr class='root'><td></td><td colspan='4'>root: "
        f"{html.escape(root_text(path.root, mask), quote=True)}</td></tr>",
    ]
    steps = path.steps
    last = len(steps) - 1
    for item in shown_steps(steps):
        if isinstance(item, tuple):
            rows.append(f"<tr class='gap'><td></td><td colspan='4'>{gap_text(item[1])}</td></tr>")
            continue
        step = steps[item]
        detail = escape(step.detail, DETAIL_LIMIT, mask)
        if item == last and allocated_at:
            where = f"allocated at {escape(allocated_at, 120, mask)}"
            detail = f"{detail}<br>{where}" if detail else where
        label = escape(step.label, LABEL_LIMIT, mask)
        if step.is_suspect:
            label += f" <strong>← suspect: {html.escape(suspect_note)}</strong>"
        status = escape(step.status, 12, mask)
        rows.append(
            f"<tr class='{'suspect' if step.is_suspect else 'step'}'><td>{item + 1}</td>"
            f"<td class='code'>{label}</td>"
            f"<td class='code'>{escape(step.type_name, TYPE_LIMIT, mask)}</td>"
            f"<td class='{status}'>{status}</td><td>{detail}</td></tr>"
        )
    rows.append("</tbody></table>")
    if path.suspect is None and steps:
        rows.append("<p class='note'>Every object on this path existed before the block.</p>")
    return "\n".join(rows)


def graph_block(items: list[tuple[Path, str, str, str]], more: int, mask: bool | None) -> str:
    """The drawing of ``items`` as inline SVG, or a note saying why it is not shown."""
    if not items:
        return ""
    try:
        svg = svg_markup(items, more, mask=mask)
    except Exception as error:  # a notebook display must never raise
        reason = html.escape(clean(str(error), 600, mask), quote=True)
        return f"<p class='note'>Retention graph not shown: {reason}</p>"
    if _UNSAFE_SVG.search(svg):
        return (
            "<p class='note'>Retention graph not shown: the drawing held markup "
            "(a script, a link or an event handler) that reftrace does not embed.</p>"
        )
    return f"<div class='graph'>{svg}</div>"


def _leak_block(
    leak: Leak, count: int, size: int, mask: bool | None, others: Sequence[tuple[str, int]] = ()
) -> str:
    noun = "instance" if count == 1 else "instances"
    parts = [
        f"<h4>{escape(leak.type_name, TYPE_LIMIT, mask)} leaked "
        f"({count} {noun}, {human_size(size)} retained)</h4>"
    ]
    if others:
        more = sum(n for _, n in others)
        parts.append(
            f"<p>with {more} more tracked objects through the same reference: "
            f"{_types(others, mask)}</p>"
        )
    if leak.path is None:
        parts.append(f"<p>No path to a root: {escape(leak.reason, REASON_LIMIT, mask)}</p>")
        if leak.allocated_at:
            parts.append(f"<p>Allocated at {escape(leak.allocated_at, 120, mask)}</p>")
    else:
        parts.append(trace_table(leak.path, leak.allocated_at, mask))
    return "\n".join(parts)


def _group_block(group: LeakGroup, mask: bool | None) -> str:
    example = group.example
    same = sum(1 for leak in group.leaks if leak.type_name == example.type_name)
    others = [(name, n) for name, n in group.types if name != example.type_name]
    block = _leak_block(example, same, group.size, mask, others)
    lines = render_proof(group.proof) if group.proof else []
    lines += render_store(group.stored_at) if group.stored_at else []
    if lines:
        text = "<br>".join(escape(line, 400, mask) for line in lines)
        block += f"\n<p class='code'>{text}</p>"
    return block


def _survivor_row(group: SurvivorGroup, mask: bool | None) -> str:
    return (
        f"<tr><td>{group.count:,}</td><td>{human_size(group.size)}</td>"
        f"<td class='code'>{escape(group.attachment, 100, mask)}</td>"
        f"<td>{_types(group.top_types, mask)}</td></tr>"
    )


@views.html.register(Report)
def render_report_html(
    report: Report, *, mask: bool | None = None, graph: bool = True, page: bool = False
) -> str:
    """The whole report: findings, survivors, allocations, notes and the graph."""
    out: list[str] = []
    groups = report.leak_groups
    if groups:
        out.append(f"<p><strong>{leak_summary(report)}</strong></p>")
        for group in groups[:MAX_FINDINGS]:
            out.append(_group_block(group, mask))
        if len(groups) > MAX_FINDINGS:
            hidden = len(groups) - MAX_FINDINGS
            out.append(f"<p class='note'>… and {hidden:,} more findings (report.leak_groups)</p>")
    else:
        out.append(
            f"<p><strong>No leaks</strong> ({report.tracked} tracked, "
            f"{report.collected} collected)</p>"
        )
    if report.survivors:
        count = len(report.survivors)
        out.append(
            f"<h4>Survivors</h4><p>{report.survivor_count:,} new objects outlived the block, "
            f"in {count} group{'s' if count != 1 else ''}</p>"
        )
        out.append(
            "<table class='survivors'><thead><tr><th>objects</th><th>size</th>"
            "<th>held by</th><th>types</th></tr></thead><tbody>"
        )
        out.extend(_survivor_row(g, mask) for g in report.survivors[:MAX_SURVIVOR_GROUPS])
        out.append("</tbody></table>")
        if count > MAX_SURVIVOR_GROUPS:
            hidden = count - MAX_SURVIVOR_GROUPS
            out.append(f"<p class='note'>… and {hidden:,} more groups (report.survivors)</p>")
    if report.allocations:
        out.append(
            "<h4>Allocations still in use, largest first</h4><table class='allocations'>"
            "<thead><tr><th>size</th><th>blocks</th><th>where</th></tr></thead><tbody>"
        )
        for alloc in report.allocations[:_HTML_ALLOCATIONS]:
            out.append(
                f"<tr><td>{human_size(alloc.size)}</td><td>{alloc.count:,}</td>"
                f"<td class='code'>{escape(alloc.site, SITE_LIMIT, mask)}</td></tr>"
            )
        out.append("</tbody></table>")
        if len(report.allocations) > _HTML_ALLOCATIONS:
            hidden = len(report.allocations) - _HTML_ALLOCATIONS
            out.append(f"<p class='note'>… and {hidden:,} more sites (report.allocations)</p>")
    if graph:
        items, more = report_items(report)
        drawing = graph_block(items, more, mask)
        if drawing:
            out.append(f"<h4>Retention graph</h4>\n{drawing}")
    notes = [f"<li>{escape(note, NOTE_LIMIT, mask)}</li>" for note in report.notes[:MAX_NOTES]]
    if len(report.notes) > MAX_NOTES:
        notes.append(f"<li>… and {len(report.notes) - MAX_NOTES:,} more notes</li>")
    if notes:
        out.append("<ul class='note'>" + "".join(notes) + "</ul>")
    return wrap("\n".join(out), page)


@views.html.register(Leak)
def render_leak_html(leak: Leak, *, mask: bool | None = None, graph: bool = True) -> str:
    """One leak as an HTML fragment: its trace table and, with ``graph``, its drawing."""
    body = _leak_block(leak, 1, leak.size, mask)
    if graph:
        body += "\n" + graph_block(leak_items(leak), 0, mask)
    return wrap(body, False)


@views.html.register(LeakGroup)
def render_group_html(group: LeakGroup, *, mask: bool | None = None, graph: bool = True) -> str:
    """One finding as an HTML fragment: trace, proof, store site and, with ``graph``, a drawing."""
    body = _group_block(group, mask)
    if graph:
        body += "\n" + graph_block(group_items(group), 0, mask)
    return wrap(body, False)


@views.html.register(SurvivorGroup)
def render_survivor_html(
    group: SurvivorGroup, *, mask: bool | None = None, graph: bool = True
) -> str:
    """One survivor group as an HTML fragment: count, size, holder, types, trace and drawing."""
    parts = [
        f"<h4>{group.count:,} new objects ({human_size(group.size)}) held by "
        f"<code>{escape(group.attachment, 100, mask)}</code></h4>",
        f"<p>{_types(group.top_types, mask)}</p>",
    ]
    if group.path is None:
        if group.reason:
            parts.append(f"<p>{escape(group.reason, REASON_LIMIT, mask)}</p>")
    else:
        parts.append(trace_table(group.path, None, mask))
        if graph:
            parts.append(graph_block(survivor_items(group), 0, mask))
    return wrap("\n".join(parts), False)


@views.write.register(Report)
def write_report(
    report: Report, path: object, format: object = None, *, mask: bool | None = None
) -> str:
    """Write the retention graph of ``report`` (or, for ``html``, the whole report) to ``path``.

    Checks everything before writing anything: ``path`` must be a str or
    path-like naming a file in an existing directory, and the format (given,
    or the file suffix) one of ``FORMATS``. The file is written whole or not
    at all (see :func:`reftrace.renderers.graph.write_graph` for a missing
    Graphviz).
    """
    name = target_path(path, "render()")
    fmt = output_format(name, format, FORMATS, "render()")
    if fmt == "html":
        write_atomic(name, render_report_html(report, mask=mask, page=True).encode("utf-8"))
    else:
        write_graph(report, name, fmt, mask=mask)
    return name
