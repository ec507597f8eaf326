"""reftrace: find memory leaks by following references.

``with reftrace.watch() as w:`` snapshots the heap around a lifecycle; once
the block exits, ``w.report`` says which tracked objects are still alive,
the shortest chain of references from a root that keeps each one, and which
new objects outlived the block, grouped by where they attach to the old heap.
"""

from __future__ import annotations

from reftrace.locate import locate
from reftrace.redact import set_masking
from reftrace.report import (
    Allocation,
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
from reftrace.snapshot import Snapshot, SnapshotDiff, snapshot
from reftrace.soak import SoakReport, soak
from reftrace.watch import TrackedStream, Watch, watch

__all__ = [
    "Allocation",
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
