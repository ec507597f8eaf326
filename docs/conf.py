"""Sphinx configuration of reftrace's documentation site.

    sphinx-build -W --keep-going docs docs/_build/html

The pages are the Markdown files beside this one (MyST), the API reference
comes from the docstrings (autodoc), and the notebooks are rendered with the
outputs stored in them (myst-nb, no execution: ``nox -s docs`` executes them
separately). They live in ``notebooks/`` at the top of the repository and are
copied into ``_generated/`` here, since Sphinx reads sources only below this
directory.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The pytest plugin is a top-level module beside the package.
sys.path.insert(0, str(ROOT))

import reftrace  # noqa: E402

project = "reftrace"
author = "reftrace contributors"
copyright = "reftrace contributors"
release = reftrace.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# -- MyST -----------------------------------------------------------------------

# Headings get anchors (`performance.md#soak`), as on a repository page.
myst_heading_anchors = 3
# Pages link to each other by path (`proof.md`), so they read the same on a
# repository page; the README's `docs/x.md` links are rewritten by the include
# in quickstart.md (`:relative-docs:`).

# -- notebooks ----------------------------------------------------------------

nb_execution_mode = "off"
nb_merge_streams = True

_NOTEBOOKS = HERE / "_generated" / "notebooks"
shutil.rmtree(_NOTEBOOKS, ignore_errors=True)
_NOTEBOOKS.mkdir(parents=True)
for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    shutil.copy2(notebook, _NOTEBOOKS / notebook.name)

# -- API reference --------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# Reports are made by reftrace, not by users: their constructors would only clutter.
autodoc_class_signature = "separated"
autodoc_default_options = {"members": True}
# reftrace's own classes are documented under `reftrace.X`, where users import them.
add_module_names = False

# -- HTML -------------------------------------------------------------------------

html_theme = "furo"
html_title = f"reftrace {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
