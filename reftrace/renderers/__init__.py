"""Renderers: each draws one kind of result in one format.

Importing this package registers every renderer with :mod:`reftrace.views`,
through which results print and draw themselves.
"""

from reftrace.renderers import cluster, graph, html, snapshot, soak, text

__all__ = ["cluster", "graph", "html", "snapshot", "soak", "text"]
