"""What every renderer shares: how much of each user string and list is
shown, and the pieces of an HTML page.

Sizes, durations and counts are written by :mod:`reftrace.units`, below
the results, because verdict reasons carry them too.
"""

from __future__ import annotations

import html

from reftrace.redact import clean
from reftrace.report import Report

#: A path longer than HEAD + TAIL + 3 steps shows its first HEAD steps, its
#: last TAIL steps and the suspect reference, with the rest counted.
HEAD = 6
TAIL = 6
#: At most this many findings, survivor groups, allocations and notes are shown.
MAX_FINDINGS = 20
MAX_SURVIVOR_GROUPS = 20
MAX_ALLOCATIONS = 10
MAX_NOTES = 20
MAX_TYPES = 5

# Longest shown form of each kind of user string.
LABEL_LIMIT = 60
TYPE_LIMIT = 40
DETAIL_LIMIT = 80
NAME_LIMIT = 80
SITE_LIMIT = 90
REASON_LIMIT = 200
NOTE_LIMIT = 300


def escape(text: str, limit: int, mask: bool | None = None) -> str:
    """A user string for HTML: cleaned (``reftrace.redact.clean``) and escaped, quotes too."""
    return html.escape(clean(text, limit, mask), quote=True)


STYLE = """<style>
.reftrace{font-family:system-ui,sans-serif;font-size:13px}
.reftrace table{border-collapse:collapse;margin:4px 0 10px 0}
.reftrace th,.reftrace td{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}
.reftrace td.code{font-family:ui-monospace,monospace}
.reftrace tr.suspect td{background:#ffe3e3}
.reftrace tr.root td,.reftrace tr.gap td{color:#555;font-style:italic}
.reftrace .new{color:#d9480f;font-weight:600}
.reftrace .old{color:#666}
.reftrace .note{color:#555}
.reftrace .graph svg{max-width:100%;height:auto}
</style>"""


def wrap(body: str, page: bool = False) -> str:
    """An HTML fragment in reftrace's style; with ``page``, a whole document."""
    fragment = f"<div class='reftrace'>\n{STYLE}\n{body}\n</div>"
    if not page:
        return fragment
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>reftrace report</title>"
        f"</head><body>\n{fragment}\n</body></html>\n"
    )


def leak_summary(report: Report) -> str:
    """``3 leaked objects in 2 findings``."""
    total, findings = len(report.leaks), len(report.findings)
    objects = "object" if total == 1 else "objects"
    return f"{total} leaked {objects} in {findings} finding{'' if findings == 1 else 's'}"
