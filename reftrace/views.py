"""How a result is shown: text, HTML and files, drawn by the renderers.

Results sit below the renderers: ``str(report)``, ``report._repr_html_()``
and ``report.render(path)`` call these generic functions, and each renderer
module registers the function for the types it draws
(``@views.text.register``). Importing ``reftrace`` imports the renderers, so
every result has its views whichever module it came from. A result type with
no renderer registered raises ``TypeError`` naming it.
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any


def _missing(view: str, result: object) -> TypeError:
    return TypeError(f"no {view} renderer is registered for {type(result).__name__}")


@singledispatch
def text(result: object, **options: Any) -> str:
    """``result`` as plain text, for a terminal or a log."""
    raise _missing("text", result)


@singledispatch
def html(result: object, **options: Any) -> str:
    """``result`` as an HTML fragment (``mask``, ``graph`` where they apply)."""
    raise _missing("HTML", result)


@singledispatch
def write(result: object, path: object, format: object = None, **options: Any) -> str:
    """Write ``result`` to the file ``path`` in ``format`` (else from the
    suffix); returns the path written."""
    raise _missing("file", result)


class Shown:
    """A result that prints (``str()``) and shows in a notebook (``_repr_html_``)
    through these views."""

    __slots__ = ()

    def __str__(self) -> str:
        return text(self)

    def _repr_html_(self) -> str:
        return html(self)
