"""flake8: every StyleGuideManager stays alive forever.

flake8 4.x decorated the method ``StyleGuideManager.style_guide_for`` with
``functools.lru_cache(maxsize=None)``. The cache lives on the class and its keys
are ``(self, filename)``, so every manager (with its options, formatter and
per-file style guides) stayed reachable from the class once it had looked up a
file (https://github.com/PyCQA/flake8/pull/1573). 5.0.0 builds the cache per
instance in ``__init__``: only a self-cycle remains, which the gc collects.

Lifecycle: lint one file in-process through the legacy API, then drop the
style guide.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

from _harness import run
from flake8.api import legacy


def lifecycle(track, keep):
    directory = tempfile.mkdtemp(prefix="reftrace-flake8-")
    path = os.path.join(directory, "module.py")
    with open(path, "w") as f:
        f.write("import os\nx=1\n")
    style_guide = track(legacy.get_style_guide())
    track(style_guide._application.guide)  # the StyleGuideManager
    with contextlib.redirect_stdout(io.TextIOWrapper(io.BytesIO())):
        report = style_guide.check_files([path])
    errors = report.total_errors
    os.unlink(path)
    os.rmdir(directory)
    return {"errors": errors}


if __name__ == "__main__":
    run("flake8_style_guide_cache", "flake8", lifecycle)
