"""Draw the pictures of docs/graphs.md: the demo agent's leak, by reftrace (with
the system's Graphviz `dot` and with graphviz-pure) and by objgraph.

    python docs/make_pictures.py        # writes docs/images/*.svg

Needs objgraph (``pip install 'reftrace[tools]'``); the `dot` drawing needs
the system's Graphviz.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import objgraph

import reftrace
from reftrace.demo import agent as demo
from reftrace.renderers import graph

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")


def main() -> int:
    os.makedirs(HERE, exist_ok=True)
    demo.install(demo.Bug.LISTENER)
    for i in range(3):  # earlier requests, as a service would have served
        for _chunk in demo.AGENT.stream(f"earlier {i}", chunks=5):
            pass
    with reftrace.watch() as w:
        out = w.track(demo.AGENT.stream("why is my service using 10 GB"))
        for _chunk in out:
            pass
    report = w.report
    programs = {
        "dot": shutil.which("dot"),
        "graphviz-pure": os.path.join(os.path.dirname(sys.executable), "graphviz-pure"),
    }
    for name, program in programs.items():
        if program is None or not os.path.exists(program):
            print(f"{name}: not installed, skipped")
            continue
        os.environ[graph.DOT_ENV] = program
        t0 = time.perf_counter()
        path = report.render(os.path.join(HERE, f"demo-{name}.svg"))
        took = time.perf_counter() - t0
        print(f"{name}: {path} ({os.path.getsize(path):,} bytes, {took * 1000:.0f} ms)")
    os.environ.pop(graph.DOT_ENV, None)
    leaked = report.leak_groups[0].example.object
    dot_file = os.path.join(HERE, "demo-objgraph.dot")
    objgraph.show_backrefs(
        [leaked], max_depth=6, filename=dot_file, too_many=10, refcounts=False
    )
    svg = graph.layout(open(dot_file, encoding="utf-8").read(), "svg")
    with open(os.path.join(HERE, "demo-objgraph.svg"), "wb") as handle:
        handle.write(svg)
    os.remove(dot_file)
    print(f"objgraph: {os.path.join(HERE, 'demo-objgraph.svg')} ({len(svg):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
