"""Plain-text leak traces: the default ``str()`` of reports, leaks and survivor groups.

Every string that comes from the watched program (labels, type names, module,
thread, function and file names) is masked, has its control characters
written as escapes and is truncated (``reftrace.redact.clean``), so a
terminal escape sequence or a secret in a dict key never reaches the
terminal. Output is bounded: a path of any length shows its first and last
steps (and the suspect reference) with a line saying how many were left out,
and long lists of findings, survivor groups and notes are cut with a count.
"""

from __future__ import annotations

from collections.abc import Sequence

from reftrace import views
from reftrace.redact import clean
from reftrace.renderers.common import (
    DETAIL_LIMIT,
    HEAD,
    LABEL_LIMIT,
    MAX_ALLOCATIONS,
    MAX_FINDINGS,
    MAX_NOTES,
    MAX_SURVIVOR_GROUPS,
    MAX_TYPES,
    NAME_LIMIT,
    NOTE_LIMIT,
    REASON_LIMIT,
    SITE_LIMIT,
    TAIL,
    TYPE_LIMIT,
    leak_summary,
)
from reftrace.report import (
    Frame,
    Leak,
    LeakGroup,
    Path,
    Proof,
    Report,
    Root,
    Step,
    StoreSite,
    SurvivorGroup,
)
from reftrace.units import human_size

_LABEL_WIDTH = 30
_TYPE_WIDTH = 16


def _clip(text: str, width: int) -> str:
    return clean(text, width)


def root_text(root: Root, mask: bool | None = None) -> str:
    """``root.describe()`` with every name from the program cleaned and bounded."""
    if root.kind == "module":
        return f"module {clean(root.name, NAME_LIMIT, mask)}"
    if root.kind == "frame":
        return (
            f"thread {clean(root.name, 60, mask)}, {clean(root.function, 60, mask)} "
            f"({clean(root.filename, NAME_LIMIT, mask)}:{root.lineno})"
        )
    if root.kind in ("exception", "hidden"):
        return root.describe()
    return clean(root.describe(), NAME_LIMIT, mask)


def shown_steps(steps: Sequence[Step]) -> list[int | tuple[int, int]]:
    """Which steps of a path to show: step indices, and ``(start, count)`` for a gap.

    Short paths show every step. A long one shows the first ``HEAD`` and the
    last ``TAIL`` steps, and the suspect reference with its neighbours when it
    falls between them.
    """
    n = len(steps)
    if n <= HEAD + TAIL + 3:
        return list(range(n))
    keep = set(range(HEAD)) | set(range(n - TAIL, n))
    suspect = next((i for i, step in enumerate(steps) if step.is_suspect), None)
    if suspect is not None:
        keep.update(i for i in (suspect - 1, suspect, suspect + 1) if 0 <= i < n)
    out: list[int | tuple[int, int]] = []
    previous = -1
    for i in sorted(keep):
        if i > previous + 1:
            out.append((previous + 1, i - previous - 1))
        out.append(i)
        previous = i
    return out


def gap_text(count: int) -> str:
    """The line standing for ``count`` steps left out of a path."""
    return f"… {count:,} more step{'s' if count != 1 else ''} …"


#: What the mark under a suspect reference says, for a watched block.
SUSPECT_NOTE = "this reference was created inside the block"


def render_path(
    path: Path, allocated_at: str | None = None, suspect_note: str = SUSPECT_NOTE
) -> list[str]:
    """``path`` as tree lines: the root, then each shown step, the suspect marked under it."""
    lines = [f"root: {root_text(path.root)}"]
    steps = path.steps
    last = len(steps) - 1
    for item in shown_steps(steps):
        if isinstance(item, tuple):
            lines.append(f"│  {gap_text(item[1])}")
            continue
        i = item
        step = steps[i]
        branch = "└─" if i == last else "├─"
        extra = _clip(step.detail, DETAIL_LIMIT)
        if i == last and allocated_at:
            extra = (extra + "  " if extra else "") + f"allocated at {_clip(allocated_at, 120)}"
        label = _clip(step.label, LABEL_LIMIT)
        line = (
            f"{branch} {label:<{_LABEL_WIDTH}} "
            f"{_clip(step.type_name, TYPE_LIMIT):<{_TYPE_WIDTH}} ({_clip(step.status, 12)})"
        )
        if extra:
            line += f"  {extra}"
        lines.append(line.rstrip())
        if step.is_suspect:
            pad = "│  " if i != last else "   "
            mark = "~" * max(3, min(len(label), _LABEL_WIDTH))
            lines.append(f"{pad}{mark} suspect: {suspect_note}")
    return lines


@views.text.register(Leak)
def render_leak(leak: Leak, count: int = 1, total_size: int | None = None) -> str:
    """One leak as text: type, ``count`` and retained size, then its trace (or why it has none)."""
    size = leak.size if total_size is None else total_size
    noun = "instance" if count == 1 else "instances"
    head = (
        f"{_clip(leak.type_name, TYPE_LIMIT)} leaked ({count} {noun}, {human_size(size)} retained)"
    )
    if leak.path is None:
        where = f"\n  allocated at {_clip(leak.allocated_at, 120)}" if leak.allocated_at else ""
        return f"{head}\n  no path to a root: {_clip(leak.reason, REASON_LIMIT)}{where}"
    lines = [head, *render_path(leak.path, leak.allocated_at)]
    if leak.path.suspect is None:
        lines.append("   (every object on this path existed before the block)")
    return "\n".join(lines)


def type_list(types: Sequence[tuple[str, int]], limit: int = MAX_TYPES) -> str:
    """``Output ×1, list ×1``: cleaned names, at most ``limit`` of them."""
    listed = ", ".join(f"{_clip(name, TYPE_LIMIT)} ×{n}" for name, n in types[:limit])
    if len(types) > limit:
        listed += f", and {len(types) - limit:,} more types"
    return listed


@views.text.register(LeakGroup)
def render_group(group: LeakGroup) -> str:
    """One finding: the leak nearest the suspect reference, with what else leaked there."""
    example = group.example
    same = sum(1 for leak in group.leaks if leak.type_name == example.type_name)
    text = render_leak(example, count=same, total_size=group.size)
    others = [(name, n) for name, n in group.types if name != example.type_name]
    if others:
        first, _, rest = text.partition("\n")
        more = sum(n for _, n in others)
        text = (
            f"{first}\n  with {more} more tracked objects through the same reference: "
            f"{type_list(others)}\n{rest}"
        )
    if group.proof is not None:
        text += "\n" + "\n".join(render_proof(group.proof))
    if group.stored_at is not None:
        text += "\n" + "\n".join(render_store(group.stored_at))
    return text


def render_proof(proof: Proof) -> list[str]:
    """The proof of a finding's suspect reference, as lines under its trace."""
    cut = _clip(proof.cut, 120)
    if proof.status == "confirmed":
        leaked = type_list(proof.freed_types) if proof.freed_types else "the leak"
        lines = [
            f"proof: confirmed, cutting {cut} frees {leaked}: "
            f"{proof.freed_objects:,} objects, {human_size(proof.freed_bytes)}"
        ]
        if proof.reason:
            lines.append(f"  ({_clip(proof.reason, REASON_LIMIT)})")
        return lines
    if proof.status == "not sufficient":
        lines = [
            f"proof: not sufficient, after cutting {cut} "
            f"{proof.leaks - proof.freed_leaks} of {proof.leaks} leaked objects live on; "
            "another path still holds them:"
        ]
        if proof.remaining is not None:
            lines += ["  " + line for line in render_path(proof.remaining)]
        return lines
    return [
        f"proof: unavailable ({_clip(proof.reason, REASON_LIMIT)}); "
        "the suspect is the heuristic one"
    ]


#: Callers shown under a storing line (the rest are in ``stored_at.frames``).
MAX_CALLERS = 4


def render_store(site: StoreSite) -> list[str]:
    """The line that stored the reference, then its callers."""

    def frame_text(frame: Frame) -> str:
        code = f": {_clip(frame.code, 100)}" if frame.code else ""
        return f"{_clip(frame.where, SITE_LIMIT)} in {_clip(frame.function, 60)}{code}"

    line = site.line
    if site.user == 0:
        lines = [f"stored at {frame_text(line)}"]
    else:
        lines = [f"stored by {frame_text(line)}", f"  inside {frame_text(site.frames[0])}"]
    callers = site.frames[site.user + 1 :]
    lines += [f"  called from {frame_text(frame)}" for frame in callers[:MAX_CALLERS]]
    if len(callers) > MAX_CALLERS:
        lines.append(f"  … {len(callers) - MAX_CALLERS} more callers (stored_at.frames)")
    return lines


@views.text.register(SurvivorGroup)
def render_survivor_group(group: SurvivorGroup) -> str:
    """One survivor group as text: count, size, holder and types, then its trace and store site."""
    head = (
        f"{group.count} new objects ({human_size(group.size)}) held by "
        f"{_clip(group.attachment, 100)}: {type_list(group.top_types)}"
    )
    stored = ["  " + line for line in render_store(group.stored_at)] if group.stored_at else []
    if group.path is None:
        lines = [head, f"  {_clip(group.reason, REASON_LIMIT)}"] if group.reason else [head]
        return "\n".join(lines + stored)
    return "\n".join([head, *("  " + line for line in render_path(group.path)), *stored])


def more_text(count: int, noun: str, where: str) -> str:
    """``… and N more <noun> (all in <where>)``: the line closing a list that was cut."""
    return f"… and {count:,} more {noun} (all in {where})"


@views.text.register(Report)
def render_report(report: Report, *, clean_line: bool = True) -> str:
    """The whole report: findings, survivors, allocations and notes.

    With ``clean_line=False``, a report without leaks does not open with its
    "no leaks" line (for a caller that shows only what it found).
    """
    out: list[str] = []
    groups = report.leak_groups
    if groups:
        out.append(leak_summary(report))
        for group in groups[:MAX_FINDINGS]:
            out.append("")
            out.append(render_group(group))
        if len(groups) > MAX_FINDINGS:
            out.append("")
            out.append(more_text(len(groups) - MAX_FINDINGS, "findings", "report.leak_groups"))
    elif clean_line:
        out.append(f"no leaks ({report.tracked} tracked, {report.collected} collected)")
    if report.survivors:
        out.append("")
        out.append(
            f"survivors: {report.survivor_count} new objects outlived the block, "
            f"in {len(report.survivors)} group{'s' if len(report.survivors) != 1 else ''}"
        )
        for survivor in report.survivors[:MAX_SURVIVOR_GROUPS]:
            out.append(render_survivor_group(survivor))
        if len(report.survivors) > MAX_SURVIVOR_GROUPS:
            hidden = len(report.survivors) - MAX_SURVIVOR_GROUPS
            out.append(more_text(hidden, "survivor groups", "report.survivors"))
    if report.allocations:
        out.append("")
        out.append("allocations still in use, largest first:")
        for alloc in report.allocations[:MAX_ALLOCATIONS]:
            out.append(
                f"  {human_size(alloc.size):>10}  {alloc.count:>7} blocks  "
                f"{_clip(alloc.site, SITE_LIMIT)}"
            )
        if len(report.allocations) > MAX_ALLOCATIONS:
            hidden = len(report.allocations) - MAX_ALLOCATIONS
            out.append(f"  {more_text(hidden, 'allocation sites', 'report.allocations')}")
    for note in report.notes[:MAX_NOTES]:
        out.append(f"note: {_clip(note, NOTE_LIMIT)}")
    if len(report.notes) > MAX_NOTES:
        out.append(more_text(len(report.notes) - MAX_NOTES, "notes", "report.notes"))
    return "\n".join(out).lstrip("\n")
