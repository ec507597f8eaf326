"""structlog: every file handed to a BytesLogger stays alive forever.

structlog keeps one lock per output file in the module-level dict
``structlog._output.WRITE_LOCKS``, keyed by the file object itself. Up to
25.5.0 it was a plain ``dict``: a per-task log file that the program closed and
dropped was still a key there (https://github.com/hynek/structlog/issues/806).
26.1.0 made it a ``weakref.WeakKeyDictionary``
(https://github.com/hynek/structlog/pull/807).

Lifecycle (the Airflow pattern from the PR): open a task's log file, log to it
through a ``BytesLogger``, close it, drop it.
"""

from __future__ import annotations

import os
import tempfile

import structlog
from _harness import run


def lifecycle(track, keep):
    directory = tempfile.mkdtemp(prefix="reftrace-structlog-")
    path = os.path.join(directory, "task-1.log")
    log_file = track(open(path, "ab"))  # noqa: SIM115 - closed below, like a task's log
    logger = structlog.BytesLogger(log_file)
    logger.msg(b'{"event": "task finished"}')
    log_file.close()
    os.unlink(path)
    os.rmdir(directory)
    return None


if __name__ == "__main__":
    run("structlog_write_locks", "structlog", lifecycle)
