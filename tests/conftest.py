"""Spreading the heaviest tests over the interpreters of one run (noxfile.py).

A test marked ``heavy`` runs on every interpreter unless ``REFTRACE_HEAVY_SHARD``
is set to ``K/N``: then only every N-th heavy test (by node id, from the K-th)
runs here. The noxfile runs all of them on 3.11 and gives each other
interpreter one share, so every heavy test still runs on two interpreters
while the whole run stays short.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = os.environ.get("REFTRACE_HEAVY_SHARD", "")
    if not shard:
        return
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise pytest.UsageError(f"REFTRACE_HEAVY_SHARD must be K/N, got {shard!r}") from None
    if not 0 <= index < count:
        raise pytest.UsageError(f"REFTRACE_HEAVY_SHARD {shard!r}: K must be in 0..N-1")
    heavy = sorted(item.nodeid for item in items if item.get_closest_marker("heavy"))
    elsewhere = {nodeid for i, nodeid in enumerate(heavy) if i % count != index}
    if not elsewhere:
        return
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid in elsewhere])
    items[:] = [item for item in items if item.nodeid not in elsewhere]
