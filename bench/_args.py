"""Command-line pieces the benchmarks share."""

from __future__ import annotations

import argparse

_SCALES = {"k": 1_000, "m": 1_000_000}


def parse_sizes(text: str) -> list[int]:
    """``"100k,1M,3M"`` -> ``[100_000, 1_000_000, 3_000_000]`` (an argparse type)."""
    sizes = []
    for part in text.split(","):
        item = part.strip().lower()
        scale = _SCALES.get(item[-1:], 1)
        try:
            size = int(float(item.rstrip("km")) * scale)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a heap size (examples: 100k, 1M, 2500000)"
            ) from None
        if size < 1:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: a heap size must be positive")
        sizes.append(size)
    return sizes
