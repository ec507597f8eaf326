"""Renderers: each draws one kind of result in one format.

Importing this package registers every renderer with :mod:`reftrace.views`,
through which results print and draw themselves.
"""

from reftrace.renderers import graph, html, snapshot, soak, text

__all__ = ["graph", "html", "snapshot", "soak", "text"]
