"""Soak reports as text, HTML and SVG.

``render_soak`` is ``str(sr)``: the verdict, growth per iteration by type,
the growing containers with a sample leak trace each, the allocation sites
that grow, and a projection of what more iterations would keep.
``render_soak_html`` is the Jupyter view; ``render_soak_svg`` draws the
object count, allocated blocks and malloc'd bytes over the iterations, and under it the
retention graph of the growing containers (Graphviz, as ``Report.render``).

Every string from the program (type names, paths, sites) is masked
(``reftrace.redact.mask``) and stripped of control characters; in HTML and
SVG it is escaped after masking, so no markup from the program ever runs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import replace

from reftrace import views
from reftrace.files import output_format, target_path, write_atomic
from reftrace.layout import GraphvizNotFound, layout
from reftrace.redact import clean
from reftrace.renderers.common import escape
from reftrace.renderers.graph import add_path, graphviz_package
from reftrace.renderers.text import render_leak, render_path, render_store
from reftrace.report import Path
from reftrace.soak_report import GrowingContainer, SoakReport
from reftrace.units import duration, human_size, plural, signed_size

#: Longest shown form of a container's name or label.
NAME_WIDTH = 70


def _rate(value: float) -> str:
    return f"{value:+,.1f}" if abs(value) < 100 else f"{value:+,.0f}"


def _step(sr: SoakReport) -> str:
    """One iteration, as the text names it: ``iteration`` for a soak's calls, else the unit."""
    return "iteration" if sr.unit == "call" else clean(sr.unit, 30)


def _steps(sr: SoakReport, n: int) -> str:
    """``n`` iterations: ``30 iterations`` for a soak (even one), else ``30 samples``."""
    return f"{n:,} iterations" if sr.unit == "call" else plural(n, _step(sr))


def _one_more(sr: SoakReport) -> str:
    """The extra iteration that was sampled: ``one more call`` (or sample)."""
    return f"one more {clean(sr.unit, 30)}"


def headline(sr: SoakReport) -> str:
    """The first line: the verdict, its confidence and the reason (cleaned)."""
    return f"{sr.verdict} ({sr.confidence} confidence): {clean(sr.reason, 400)}"


def _iterations_text(sr: SoakReport) -> str:
    if sr.extra > 0:
        return (
            f"{_steps(sr, sr.iterations)} ({sr.requested:,} asked, {sr.extra:,} more to "
            f"decide; {sr.warmup} warm-up)"
        )
    return f"{_steps(sr, sr.iterations)} ({sr.warmup} warm-up)"


def _summary(sr: SoakReport) -> str:
    start = sr.warmup
    parts = [
        f"objects {sr.objects[start]:,} → {sr.objects[-1]:,}",
        f"allocated blocks {sr.blocks[start]:,} → {sr.blocks[-1]:,}",
    ]
    if sr.malloc:
        parts.append(f"malloc {signed_size(sr.malloc[-1] - sr.malloc[start])}")
    calls = sr.timings.get("per_iteration_calls", 0.0)
    overhead = sr.timings.get("per_iteration_overhead", 0.0)
    if sr.unit != "call":
        # nothing is called, so nothing is timed but the measuring
        return (
            f"{_iterations_text(sr)}; after warm-up, {', '.join(parts)}; "
            f"{duration(overhead)} measuring per {_step(sr)}"
        )
    return (
        f"{_iterations_text(sr)}; after warm-up, {', '.join(parts)}; "
        f"{duration(calls)} per call, {duration(overhead)} measuring per iteration"
    )


def _types_lines(sr: SoakReport) -> list[str]:
    if not sr.types:
        return []
    width = max(28, min(NAME_WIDTH, max(len(clean(t.name, NAME_WIDTH)) for t in sr.types) + 2))
    lines = [
        f"growth per {_step(sr)}, by type:",
        f"  {'type':<{width}} {'objects':>10} {'bytes':>11}",
    ]
    footnote = False
    for row in sr.types:
        mark = "" if row.tracked else " *"
        footnote = footnote or not row.tracked
        name = clean(row.name, NAME_WIDTH) + mark
        lines.append(
            f"  {name:<{width}} {_rate(row.per_iteration):>10} "
            f"{signed_size(row.bytes_per_iteration):>11}"
        )
    if footnote:
        lines.append(
            "  * not tracked by the gc: counted among the items the growing "
            f"containers gained in {_one_more(sr)}"
        )
    return lines


def _container_stats(sr: SoakReport, container: GrowingContainer) -> str:
    lengths = container.lengths
    step = _step(sr)
    if container.unit == "bytes":
        return (
            f"{clean(container.type_name, 30)}: {signed_size(container.per_iteration)} per "
            f"{step} ({human_size(lengths[0][1])} after {step} {lengths[0][0]}, "
            f"{human_size(lengths[-1][1])} after {lengths[-1][0]})"
        )
    return (
        f"{clean(container.type_name, 30)}: {_rate(container.per_iteration)} items per "
        f"{step} ({lengths[0][1]:,} items after {step} {lengths[0][0]}, "
        f"{lengths[-1][1]:,} after {lengths[-1][0]})"
    )


def _container_head(sr: SoakReport, container: GrowingContainer) -> str:
    return f"{clean(container.name, 100)}  {_container_stats(sr, container)}"


def _status_line(sr: SoakReport, container: GrowingContainer) -> str:
    text = clean(container.describe(), 200)
    if container.kept_objects:
        text = (
            f"one {clean(sr.unit, 30)}'s items keep {container.kept_objects:,} objects, "
            f"{human_size(container.kept_bytes)} alive; {text}"
        )
    return text


def _container_lines(sr: SoakReport, container: GrowingContainer) -> list[str]:
    lines = [
        clean(container.name, 100),
        "  " + _container_stats(sr, container),
        "  " + _status_line(sr, container),
    ]
    if container.item_types:
        listed = ", ".join(f"{clean(name, 40)} ×{n}" for name, n in container.item_types)
        lines.append(f"  gained in {_one_more(sr)}: {listed}")
    if container.samples and not container.weak:
        leak = container.samples[0]
        traced = len(container.samples)
        lines.append(
            "  leak trace of an item it gained"
            + (f" (1 of {traced} traced, all in .samples):" if traced > 1 else ":")
        )
        lines.extend("  " + line for line in render_leak(leak).splitlines())
    elif container.path is not None:
        lines.extend("  " + line for line in render_path(container.path))
    else:
        lines.append(f"  no path from a root: {clean(container.reason, 200)}")
    if container.stored_at is not None:
        lines.extend("  " + line for line in render_store(container.stored_at))
    return lines


def _containers_title(sr: SoakReport) -> str:
    count = sum(1 for c in sr.containers if not c.weak)
    holders = len(sr.holders)
    title = f"growing containers ({count}), each grew at every checkpoint"
    if holders and holders < count:
        title += f"; the {holders} with no bound first"
    return title + ":"


def _stopped_lines(sr: SoakReport) -> list[str]:
    """Containers that grew, then stopped: shown where they explain the verdict
    (a cache that filled), or carry a declared bound."""
    shown = [c for c in sr.stopped if c.bound is not None or sr.verdict != "leaking"]
    if not shown:
        return []
    lines = ["containers that grew, then stopped:"]
    for container in shown:
        first, last = container.lengths[0], container.lengths[-1]
        lines.append(f"  {clean(container.name, 100)}")
        if container.bound is not None:
            lines.append(f"    {clean(container.describe(), 200)}")
        else:
            lines.append(
                f"    {first[1]:,} items after {_step(sr)} {first[0]}, {last[1]:,} after "
                f"{last[0]}, then no more"
            )
    return lines


def _projection_lines(sr: SoakReport) -> list[str]:
    objects, memory = sr.per_iteration
    if not sr.leaking:
        if sr.inconclusive:
            return ["projection: none until the verdict is settled"]
        if sr.containers:
            return ["projection: nothing to project, what grows is bounded"]
        return ["projection: nothing to project, no growth was found after warm-up"]
    rows = sr.projection()
    holders = bool(sr.holders)
    lines = [
        f"projection at the measured rate ({max(objects, 0):,.1f} objects, "
        f"{human_size(round(max(memory, 0)))} per {_step(sr)}):",
        f"  {_step(sr) + 's':>10} {'objects':>12} {'memory':>11}"
        + (f" {'container items':>16}" if holders else ""),
    ]
    for row in rows:
        line = f"  {row.iterations:>10,} {row.objects:>+12,} {'+' + human_size(row.bytes):>11}"
        if holders:
            line += f" {row.items:>+16,}"
        lines.append(line)
    return lines


@views.text.register(SoakReport)
def render_soak(sr: SoakReport) -> str:
    """The soak report as text (``str(sr)``): verdict, summary, growing types and containers,
    growing allocation sites, projection and notes."""
    out = [headline(sr), _summary(sr)]
    if sr.settle:
        out.append(f"to settle it: {clean(sr.settle, 200)}")
    type_lines = _types_lines(sr)
    if type_lines:
        out.append("")
        out.extend(type_lines)
    detailed = [c for c in sr.containers if not c.weak]
    weak = [c for c in sr.containers if c.weak]
    if detailed:
        out.append("")
        out.append(_containers_title(sr))
        for container in detailed:
            out.extend("  " + line for line in _container_lines(sr, container))
    elif sr.verdict != "not leaking" and sr.sample is not None and sr.sample.survivors:
        out.append("")
        out.append(f"no container grew at every checkpoint; {_one_more(sr)} left behind:")
        for group in sr.sample.survivors[:3]:
            out.extend("  " + line for line in str(group).splitlines())
    if weak:
        out.append("")
        out.append(
            f"also growing, weak references only ({len(weak)}): a symptom of the growth "
            "above, never the holder:"
        )
        for container in weak:
            out.append(f"  {clean(container.name, 100)}  {_container_stats(sr, container)}")
    stopped = _stopped_lines(sr)
    if stopped:
        out.append("")
        out.extend(stopped)
    if sr.verdict != "not leaking" and sr.sites:
        out.append("")
        out.append(f"allocated by {_one_more(sr)} and still in use after it, by line:")
        for site in sr.sites[:5]:
            out.append(
                f"  {signed_size(site.bytes_per_iteration):>11} "
                f"{site.blocks_per_iteration:>8,.0f} blocks  {clean(site.site, 90)}"
            )
    out.append("")
    out.extend(_projection_lines(sr))
    for note in sr.notes:
        out.append(f"note: {clean(note, 300)}")
    return "\n".join(out)


# -- HTML ---------------------------------------------------------------------------


def _pre(lines: list[str]) -> str:
    """A ``<pre>`` block of text lines, each masked and escaped."""
    return "<pre>" + "\n".join(escape(line, 300) for line in lines) + "</pre>"


@views.html.register(SoakReport)
def render_soak_html(sr: SoakReport) -> str:
    """The soak report as HTML (the Jupyter view): verdict, growth plot, growing types and
    containers with their traces, projection and notes."""
    color = {"leaking": "#c92a2a", "inconclusive": "#e67700"}.get(sr.verdict, "#2b8a3e")
    parts = [
        "<div class='reftrace-soak' style='font-family:sans-serif'>",
        f"<p style='color:{color};font-weight:bold'>{escape(headline(sr), 600)}</p>",
        f"<p>{escape(_summary(sr), 300)}</p>",
        growth_plot_svg(sr, width=640),
    ]
    if sr.types:
        rows = "".join(
            f"<tr><td><code>{escape(t.name, NAME_WIDTH)}</code>{'' if t.tracked else ' *'}</td>"
            f"<td style='text-align:right'>{html.escape(_rate(t.per_iteration))}</td>"
            f"<td style='text-align:right'>{html.escape(signed_size(t.bytes_per_iteration))}"
            "</td></tr>"
            for t in sr.types
        )
        parts.append(
            f"<h4>Growth per {html.escape(_step(sr))}, by type</h4><table><tr><th>type</th>"
            "<th>objects</th>"
            f"<th>bytes</th></tr>{rows}</table>"
        )
    if sr.containers:
        items = []
        for container in sr.containers:
            trace = ""
            if container.samples:
                trace = _pre(render_leak(container.samples[0]).splitlines())
            elif container.path is not None:
                trace = _pre(render_path(container.path))
            if container.stored_at is not None:
                trace += _pre(render_store(container.stored_at))
            status = f"<br><i>{escape(_status_line(sr, container), 300)}</i>"
            head = escape(_container_head(sr, container), 300)
            items.append(f"<li><code>{head}</code>{status}{trace}</li>")
        parts.append("<h4>Growing containers</h4><ul>" + "".join(items) + "</ul>")
    if sr.stopped:
        parts.append(_pre(_stopped_lines(sr)))
    if sr.settle:
        parts.append(f"<p>to settle it: <code>{escape(sr.settle, 200)}</code></p>")
    if sr.leaking:
        rows = "".join(
            f"<tr><td style='text-align:right'>{p.iterations:,}</td>"
            f"<td style='text-align:right'>{p.objects:+,}</td>"
            f"<td style='text-align:right'>+{html.escape(human_size(p.bytes))}</td>"
            f"<td style='text-align:right'>{p.items:+,}</td></tr>"
            for p in sr.projection()
        )
        parts.append(
            "<h4>Projection at the measured rate</h4><table>"
            f"<tr><th>{html.escape(_step(sr))}s</th>"
            f"<th>objects</th><th>memory</th><th>container items</th></tr>{rows}</table>"
        )
    for note in sr.notes:
        parts.append(f"<p><i>note: {escape(note, 300)}</i></p>")
    parts.append("</div>")
    return "".join(parts)


# -- SVG ------------------------------------------------------------------------------


def _polyline(values: list[int], left: float, top: float, width: float, height: float) -> str:
    low, high = min(values), max(values)
    span = high - low or 1
    steps = max(len(values) - 1, 1)
    points = " ".join(
        f"{left + width * i / steps:.1f},{top + height - height * (v - low) / span:.1f}"
        for i, v in enumerate(values)
    )
    return points


def _panel(
    sr: SoakReport, values: list[int], title: str, label: str, top: float, width: int
) -> list[str]:
    left, right, height = 70.0, 20.0, 120.0
    inner = width - left - right
    steps = max(len(values) - 1, 1)
    warm = inner * sr.warmup / steps
    low, high = min(values), max(values)
    fmt: Callable[[int], str] = (lambda v: f"{v:,}") if label != "bytes" else human_size
    out = [
        f"<text x='{left}' y='{top - 8:.0f}' font-size='13' font-weight='bold'>"
        f"{html.escape(title)}</text>",
        f"<rect x='{left}' y='{top}' width='{inner:.1f}' height='{height}' fill='#fafafa' "
        "stroke='#ced4da'/>",
    ]
    if sr.warmup:
        out.append(
            f"<rect x='{left}' y='{top}' width='{warm:.1f}' height='{height}' fill='#e9ecef'/>"
            f"<text x='{left + 4}' y='{top + 14}' font-size='10' fill='#868e96'>warm-up</text>"
        )
    color = {"leaking": "#c92a2a", "inconclusive": "#e67700"}.get(sr.verdict, "#1c7ed6")
    out.append(
        f"<polyline fill='none' stroke='{color}' stroke-width='2' "
        f"points='{_polyline(values, left, top, inner, height)}'/>"
    )
    out.append(
        f"<text x='{left - 6}' y='{top + 10}' font-size='10' text-anchor='end'>"
        f"{html.escape(fmt(high))}</text>"
        f"<text x='{left - 6}' y='{top + height}' font-size='10' text-anchor='end'>"
        f"{html.escape(fmt(low))}</text>"
        f"<text x='{left}' y='{top + height + 14}' font-size='10'>0</text>"
        f"<text x='{left + inner}' y='{top + height + 14}' font-size='10' text-anchor='end'>"
        f"{html.escape(_steps(sr, len(values) - 1))}</text>"
    )
    return out


def growth_plot_svg(sr: SoakReport, width: int = 720) -> str:
    """Objects, allocated blocks and malloc'd bytes after each call, warm-up shaded."""
    height = 525 if sr.malloc else 360
    body = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' font-family='Helvetica, Arial, sans-serif'>",
        f"<text x='10' y='18' font-size='13'>{html.escape(clean(headline(sr), 110))}</text>",
    ]
    body += _panel(sr, sr.objects, "live gc-tracked objects", "objects", 50, width)
    body += _panel(sr, sr.blocks, "allocated blocks (pymalloc)", "blocks", 215, width)
    if sr.malloc:
        body += _panel(sr, sr.malloc, "bytes in use in malloc", "bytes", 380, width)
    body.append("</svg>")
    return "".join(body)


def _masked(path: Path) -> Path:
    """``path`` with every name from the program masked, for the graph's labels."""
    root = replace(
        path.root,
        name=clean(path.root.name, 200),
        function=clean(path.root.function, 200),
        filename=clean(path.root.filename, 200),
    )
    steps = tuple(
        replace(
            step,
            label=clean(step.label, 200),
            type_name=clean(step.type_name, 100),
            detail=clean(step.detail, 200),
        )
        for step in path.steps
    )
    return replace(path, root=root, steps=steps)


def _graph_svg(sr: SoakReport) -> str | None:
    """The retention graph of the growing containers, laid out by ``dot``;
    None when there is nothing to draw or no layout program."""
    return containers_svg(
        [(c, f"growing: {c.per_iteration:+.1f} items per {_step(sr)}") for c in sr.containers]
    )


def containers_svg(containers: list[tuple[GrowingContainer, str]]) -> str | None:
    """The retention graph of ``containers`` (each with the summary its node
    shows) and of one traced item of each, laid out by ``dot``; None when
    there is nothing to draw or no layout program."""
    items: list[tuple[Path, str]] = []
    for container, summary in containers:
        if container.path is not None:
            items.append((_masked(container.path), summary))
        for leak in container.samples[:1]:
            if leak.path is not None:
                items.append((_masked(leak.path), f"{clean(leak.type_name, 30)}, sampled item"))
    if not items:
        return None
    graph = graphviz_package().Digraph(
        "soak", graph_attr={"rankdir": "TB", "fontname": "Helvetica"}
    )
    graph.attr("node", fontname="Helvetica", fontsize="11", shape="box")
    graph.attr("edge", fontname="Helvetica", fontsize="10")
    drawn: set[str] = set()
    for path, summary in items:
        add_path(graph, drawn, path, summary)
    try:
        return layout(graph.source, "svg").decode("utf-8", "replace")
    except GraphvizNotFound:
        return None


_SVG_START = re.compile(r"<svg\b[^>]*>", re.S)
_SIZE = re.compile(r"\b(width|height)=\"([\d.]+)(pt|px)?\"")


def _nested(svg: str, top: float) -> tuple[str, float, float]:
    """``svg`` (dot's output) as an element placed ``top`` pixels down, and its size."""
    match = _SVG_START.search(svg)
    if match is None:
        raise RuntimeError("the layout program wrote no <svg> element")
    head = match.group(0)
    size = {
        name: float(value) * (4 / 3 if unit in (None, "pt") else 1.0)
        for name, value, unit in _SIZE.findall(head)
    }
    width, height = size.get("width", 600.0), size.get("height", 400.0)
    head = _SIZE.sub("", head)
    head = head.replace(
        "<svg", f"<svg x='0' y='{top:.0f}' width='{width:.0f}' height='{height:.0f}'", 1
    )
    return head + svg[match.end() :], width, height


@views.write.register(SoakReport)
def render_soak_svg(sr: SoakReport, path: str, format: str | None = None) -> str:
    """Write the growth plot and the containers' retention graph to ``path`` (SVG)."""
    name = target_path(path, "render()")
    output_format(name, format, ("svg",), "a soak report's render()")
    width = 720
    plot = growth_plot_svg(sr, width=width)
    inner = plot[plot.index(">") + 1 : plot.rindex("</svg>")]
    parts = [inner]
    total_height, total_width = (525.0 if sr.malloc else 360.0), float(width)
    graph = _graph_svg(sr) if sr.containers else None
    if graph is not None:
        parts.append(
            f"<text x='10' y='{total_height + 10:.0f}' font-size='13' font-weight='bold'>"
            "growing containers: shortest paths from a root</text>"
        )
        nested, graph_width, graph_height = _nested(graph, total_height + 20)
        parts.append(nested)
        total_height += 20 + graph_height
        total_width = max(total_width, graph_width)
    elif sr.containers:
        parts.append(
            f"<text x='10' y='{total_height + 10:.0f}' font-size='12'>no Graphviz layout "
            "program found: the retention graph is left out</text>"
        )
        total_height += 20
    document = (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{total_width:.0f}' "
        f"height='{total_height:.0f}' viewBox='0 0 {total_width:.0f} {total_height:.0f}' "
        "font-family='Helvetica, Arial, sans-serif'>" + "".join(parts) + "</svg>\n"
    )
    write_atomic(name, document.encode("utf-8"))
    return name
