"""Sizes, durations and counts as people read them, in every output."""

from __future__ import annotations


def human_size(size: float) -> str:
    """``size`` bytes as ``512 B``, ``1.5 KB``, ``3.2 MB`` or ``1.0 GB``."""
    value = float(round(size))
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def signed_size(size: float) -> str:
    """``size`` bytes with its sign: ``+1.5 KB``, ``-512 B``."""
    return ("-" if size < 0 else "+") + human_size(abs(size))


def duration(seconds: float) -> str:
    """``seconds`` as ``850 ms`` under a second, else as ``1.2 s``."""
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: ``1 call``, ``2,000 calls``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
