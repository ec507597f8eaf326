"""reftrace: find memory leaks by following references.

``with reftrace.watch() as w:`` snapshots the heap around a lifecycle; once
the block exits, ``w.report`` says which tracked objects are still alive,
the shortest chain of references from a root that keeps each one, and which
new objects outlived the block, grouped by where they attach to the old heap.
"""

from __future__ import annotations

from reftrace import interpreter as _interpreter

_interpreter.check()  # a free-threaded build is refused here, with the reason

from reftrace import renderers  # noqa: E402,F401  (registers how results are shown)
from reftrace.locate import locate  # noqa: E402
from reftrace.redact import set_masking  # noqa: E402
from reftrace.report import (  # noqa: E402
    Allocation,
    Finding,
    Leak,
    LeakGroup,
    Path,
    Report,
    ReportFormatError,
    Root,
    Step,
    SurvivorGroup,
    load,
)
from reftrace.snapshot import Snapshot, SnapshotDiff, snapshot  # noqa: E402
from reftrace.soak import SoakReport, soak  # noqa: E402
from reftrace.watch import TrackedStream, Watch, watch  # noqa: E402

__all__ = [
    "Allocation",
    "Finding",
    "Leak",
    "LeakGroup",
    "Path",
    "Report",
    "ReportFormatError",
    "Root",
    "Snapshot",
    "SnapshotDiff",
    "SoakReport",
    "Step",
    "SurvivorGroup",
    "TrackedStream",
    "Watch",
    "load",
    "locate",
    "set_masking",
    "snapshot",
    "soak",
    "watch",
]

__version__ = "0.1.0"
