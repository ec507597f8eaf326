"""Plain-text leak traces: the default ``str()`` of reports, leaks and survivor groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reftrace.report import Leak, LeakGroup, Path, Report, SurvivorGroup

_LABEL_WIDTH = 30
_TYPE_WIDTH = 16


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _clip(text: str, width: int) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_path(path: Path, allocated_at: str | None = None) -> list[str]:
    lines = [f"root: {path.root.describe()}"]
    last = len(path.steps) - 1
    for i, step in enumerate(path.steps):
        branch = "└─" if i == last else "├─"
        extra = step.detail
        if i == last and allocated_at:
            extra = (extra + "  " if extra else "") + f"allocated at {allocated_at}"
        line = (
            f"{branch} {_clip(step.label, 60):<{_LABEL_WIDTH}} "
            f"{_clip(step.type_name, 40):<{_TYPE_WIDTH}} ({step.status})"
        )
        if extra:
            line += f"  {_clip(extra, 80)}"
        lines.append(line.rstrip())
        if step.is_suspect:
            pad = "│  " if i != last else "   "
            mark = "~" * max(3, min(len(step.label), _LABEL_WIDTH))
            lines.append(f"{pad}{mark} suspect: this reference was created inside the block")
    return lines


def render_leak(leak: Leak, count: int = 1, total_size: int | None = None) -> str:
    size = leak.size if total_size is None else total_size
    noun = "instance" if count == 1 else "instances"
    head = f"{leak.type_name} leaked ({count} {noun}, {human_size(size)} retained)"
    if leak.path is None:
        where = f"\n  allocated at {leak.allocated_at}" if leak.allocated_at else ""
        return f"{head}\n  no path to a root: {leak.reason}{where}"
    lines = [head, *render_path(leak.path, leak.allocated_at)]
    if leak.path.suspect is None:
        lines.append("   (every object on this path existed before the block)")
    return "\n".join(lines)


def render_group(group: LeakGroup) -> str:
    """One finding: the leak nearest the suspect reference, with what else leaked there."""
    example = group.example
    same = sum(1 for leak in group.leaks if leak.type_name == example.type_name)
    text = render_leak(example, count=same, total_size=group.size)
    others = [(name, n) for name, n in group.types if name != example.type_name]
    if others:
        listed = ", ".join(f"{name} ×{n}" for name, n in others)
        first, _, rest = text.partition("\n")
        more = sum(n for _, n in others)
        text = (
            f"{first}\n  with {more} more tracked objects through the same reference: "
            f"{listed}\n{rest}"
        )
    return text


def render_survivor_group(group: SurvivorGroup) -> str:
    types = ", ".join(f"{name} ×{n}" for name, n in group.top_types)
    head = (
        f"{group.count} new objects ({human_size(group.size)}) held by "
        f"{_clip(group.attachment, 100)}: {types}"
    )
    if group.path is None:
        return f"{head}\n  {group.reason}" if group.reason else head
    return "\n".join([head, *("  " + line for line in render_path(group.path))])


def render_report(report: Report) -> str:
    out: list[str] = []
    groups = report.leak_groups
    if groups:
        total = len(report.leaks)
        objects = "object" if total == 1 else "objects"
        findings = "finding" if len(groups) == 1 else "findings"
        out.append(f"{total} leaked {objects} in {len(groups)} {findings}")
        for group in groups:
            out.append("")
            out.append(str(group))
    else:
        out.append(f"no leaks ({report.tracked} tracked, {report.collected} collected)")
    if report.survivors:
        out.append("")
        out.append(
            f"survivors: {report.survivor_count} new objects outlived the block, "
            f"in {len(report.survivors)} group{'s' if len(report.survivors) != 1 else ''}"
        )
        for survivor in report.survivors:
            out.append(render_survivor_group(survivor))
    if report.allocations:
        out.append("")
        out.append("allocations still in use, largest first:")
        for alloc in report.allocations[:10]:
            out.append(
                f"  {human_size(alloc.size):>10}  {alloc.count:>7} blocks  {_clip(alloc.site, 90)}"
            )
    for note in report.notes:
        out.append(f"note: {note}")
    return "\n".join(out)
