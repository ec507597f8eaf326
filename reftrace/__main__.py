"""``python -m reftrace``: the ``reftrace`` command (see :mod:`reftrace.cli`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from reftrace import cli


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``reftrace soak|watch|demo``; returns the exit status (0 clean, 1 leaking, 2 error)."""
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
