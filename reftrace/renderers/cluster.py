"""Cluster reports as text, HTML and SVG.

``render_cluster`` is ``str(report)``: the verdict, each finding (the holder,
the workers it grows on with their rates, what it gains, one leak trace),
then every worker's own verdict or why it gave none. ``render_cluster_html``
is the Jupyter view, with the retention graph of the holders;
``render_cluster_svg`` writes that graph.

Every string from the workers is stripped of control characters and masked
(``reftrace.redact``); in HTML and SVG it is escaped after that.
"""

from __future__ import annotations

from reftrace import views
from reftrace.cluster import ClusterFinding, ClusterReport, WorkerOutcome
from reftrace.files import output_format, target_path, write_atomic
from reftrace.redact import clean
from reftrace.renderers.common import escape
from reftrace.renderers.soak import containers_svg
from reftrace.renderers.text import render_leak, render_path, render_store
from reftrace.units import duration, plural

#: Workers listed by address under a finding; the rest are counted.
SHOWN_WORKERS = 16


def _rate(value: float, unit: str) -> str:
    text = f"{value:+,.0f}" if abs(value) >= 1000 else f"{value:+.3g}"
    return f"{text} items per {unit}"


def headline(report: ClusterReport) -> str:
    """The first line: what was measured, and the verdict."""
    measured = sum(1 for w in report.workers if w.status == "measured")
    if report.kind == "survey":
        what = (
            f"survey of {plural(measured, 'worker')}, {duration(report.duration)} "
            f"at one sample every {duration(report.interval)}"
        )
    else:
        what = f"LeakWatch on {plural(measured, 'worker')}"
    if report.findings:
        holders = plural(len(report.findings), "holder")
        return f"{report.verdict}: {holders} growing ({what})"
    return f"{report.verdict} ({what})"


def _finding_lines(finding: ClusterFinding, of: int) -> list[str]:
    lines = [
        f"{clean(finding.holder, 100)} ({clean(finding.type_name, 30)}): "
        f"{_rate(finding.total, finding.unit)} in all, on {len(finding.rates)} of "
        f"{plural(of, 'worker')}"
    ]
    for address in finding.workers[:SHOWN_WORKERS]:
        lines.append(f"  {clean(address, 60):<28} {_rate(finding.rates[address], finding.unit)}")
    if len(finding.rates) > SHOWN_WORKERS:
        lines.append(f"  … and {len(finding.rates) - SHOWN_WORKERS} more workers")
    if finding.item_types:
        listed = ", ".join(f"{clean(name, 40)} ×{n}" for name, n in finding.item_types[:6])
        lines.append(f"  items it gained while traced: {listed}")
    if finding.suspect:
        lines.append(f"  suspect reference: {clean(finding.suspect, 100)}")
    container = finding.container
    if finding.sample is not None:
        lines.append("  leak trace of an item it gained (one worker's):")
        lines.extend("  " + line for line in render_leak(finding.sample).splitlines())
    elif container.path is not None:
        lines.extend("  " + line for line in render_path(container.path))
    if container.stored_at is not None:
        lines.extend("  " + line for line in render_store(container.stored_at))
    return lines


def _worker_line(outcome: WorkerOutcome) -> str:
    address = clean(outcome.address, 60)
    report = outcome.report
    if report is None:
        return f"{address:<28} {outcome.status}: {clean(outcome.error, 200)}"
    pause = f"longest sample {duration(outcome.longest_pause)}"
    return (
        f"{address:<28} {report.verdict} ({report.confidence}), {pause}: "
        f"{clean(report.reason, 160)}"
    )


@views.text.register(ClusterReport)
def render_cluster(report: ClusterReport) -> str:
    """The cluster report as text (``str(report)``)."""
    out = [headline(report)]
    measured = sum(1 for w in report.workers if w.status == "measured")
    for finding in report.findings:
        out.append("")
        out.extend(_finding_lines(finding, measured))
    out.append("")
    out.append("workers:")
    out.extend("  " + _worker_line(outcome) for outcome in report.workers)
    for note in report.notes:
        out.append(f"note: {clean(note, 300)}")
    return "\n".join(out)


def _graph(report: ClusterReport) -> str | None:
    return containers_svg(
        [
            (
                f.container,
                f"growing on {plural(len(f.rates), 'worker')}: {_rate(f.total, f.unit)}",
            )
            for f in report.findings
        ]
    )


@views.html.register(ClusterReport)
def render_cluster_html(report: ClusterReport) -> str:
    """The cluster report as HTML (the Jupyter view): the verdict, the findings
    with their workers, the holders' retention graph, and the workers."""
    color = {"leaking": "#c92a2a", "inconclusive": "#e67700"}.get(report.verdict, "#2b8a3e")
    parts = [
        "<div class='reftrace-cluster' style='font-family:sans-serif'>",
        f"<p style='color:{color};font-weight:bold'>{escape(headline(report), 400)}</p>",
    ]
    measured = sum(1 for w in report.workers if w.status == "measured")
    for finding in report.findings:
        parts.append("<pre>")
        parts.append("\n".join(escape(line, 300) for line in _finding_lines(finding, measured)))
        parts.append("</pre>")
    graph = _graph(report) if report.findings else None
    if graph is not None:
        parts.append(graph[graph.index("<svg") :])
    rows = "".join(
        f"<tr><td><code>{escape(w.address, 60)}</code></td><td>{escape(w.verdict, 20)}</td>"
        f"<td>{escape(duration(w.longest_pause), 20) if w.report is not None else ''}</td>"
        f"<td>{escape(w.report.reason if w.report is not None else w.error, 300)}</td></tr>"
        for w in report.workers
    )
    parts.append(
        "<table><tr><th>worker</th><th>verdict</th><th>longest sample</th><th>why</th></tr>"
        f"{rows}</table>"
    )
    parts.extend(f"<p>note: {escape(note, 300)}</p>" for note in report.notes)
    parts.append("</div>")
    return "".join(parts)


@views.write.register(ClusterReport)
def render_cluster_svg(report: ClusterReport, path: str, format: str | None = None) -> str:
    """Write the holders' retention graph to ``path`` (SVG); a one-line SVG
    saying so when nothing grew, or when no Graphviz layout program is found."""
    name = target_path(path, "render()")
    output_format(name, format, ("svg",), "a cluster report's render()")
    graph = _graph(report) if report.findings else None
    if graph is None:
        says = (
            "no Graphviz layout program found: the retention graph is left out"
            if report.findings
            else headline(report)
        )
        graph = (
            "<?xml version='1.0' encoding='UTF-8'?>\n"
            "<svg xmlns='http://www.w3.org/2000/svg' width='720' height='30'>"
            f"<text x='10' y='20' font-family='Helvetica' font-size='13'>{escape(says, 300)}"
            "</text></svg>\n"
        )
    write_atomic(name, graph.encode("utf-8"))
    return name
