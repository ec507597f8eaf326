"""``python -m reftrace.demo [--svg PATH]``: find the seed incident's leak in one block.

It streams one answer from the buggy process-wide agent under ``reftrace.watch()``,
prints the leak trace reftrace finds (from the module global ``AGENT`` to the
``ModelOutput``), the proof that cutting the suspect reference frees the output,
and the line that stored it (found by ``reftrace.locate()`` on one more request),
writes the retention graph as SVG, then does the same with the fixed agent, whose
output is freed although it buffered every chunk while alive.

Exit status 0 when both come out as described, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import reftrace
from reftrace.demo import agent as demo

EARLIER_REQUESTS = 17
"""Streams the agent served before the watched one, as a service would have."""


def _serve(requests: int) -> None:
    for i in range(requests):
        for _chunk in demo.AGENT.stream(f"earlier request {i}", chunks=5):
            pass


def _watch_one_stream(bugs: demo.Bug) -> tuple[reftrace.Report, int]:
    """Install an agent with ``bugs``, serve some traffic, then watch one more stream,
    proving each finding by cutting its suspect reference in a forked copy."""
    demo.install(bugs)
    _serve(EARLIER_REQUESTS)
    with reftrace.watch(prove=True) as w:
        out = w.track(demo.AGENT.stream("why is my service using 10 GB"))
        for _chunk in w.track_stream(out):
            pass
        buffered = len(out.buffer)
    return w.report, buffered


def _one_request() -> demo.ModelOutput:
    out = demo.AGENT.stream("and now?")
    for _chunk in out:
        pass
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Find, explain and draw the buggy agent's leak, then check the fixed agent; the exit status
    (0 when both come out as described, 1 otherwise)."""
    parser = argparse.ArgumentParser(prog="python -m reftrace.demo", description=__doc__)
    parser.add_argument(
        "--svg",
        default="reftrace-demo.svg",
        metavar="PATH",
        help="where to write the retention graph (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    ok = True

    print("1. Buggy agent: stream() registers output._on_chunk on AGENT.events, never off().")
    report, buffered = _watch_one_stream(demo.Bug.LISTENER)
    print(f"   The watched ModelOutput buffered {buffered} chunks while it was in use.")
    print(f"   reftrace: {str(report).splitlines()[0]}\n")
    finding = report.leak_groups[0] if report.leak_groups else None
    if finding is not None and finding.example.type_name == "ModelOutput":
        # One more request under a tracer finds the line that stored the
        # listener (reftrace.locate); the finding carries it from here on.
        located = reftrace.locate(_one_request).finding(finding.signature)
        finding.stored_at = located.stored_at if located is not None else None
        print(finding)
        path = finding.example.path
        if path is not None and path.root.kind == "module":
            print(f"\n   In code: {path.root.name}.{path.expression}")
    else:
        print(report)
        print("error: reftrace found no leaked ModelOutput in the buggy agent", file=sys.stderr)
        ok = False
    report.render(args.svg)
    print(f"\n   Retention graph written to {args.svg}\n")

    print("2. Fixed agent: the listener is removed when the stream completes.")
    report, buffered = _watch_one_stream(demo.Bug.NONE)
    if report.leaks:
        print(report)
        print("error: reftrace reports a leak in the fixed agent", file=sys.stderr)
        ok = False
    else:
        print(
            f"   No leak: the ModelOutput buffered {buffered} chunks by design, "
            "and was freed with its buffer after the block."
        )
    demo.reset()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
