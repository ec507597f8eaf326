"""A small web service for the ``reftrace attach`` tests.

``python tests/attach_service.py PORT_FILE [--leak]`` serves on a free port
of 127.0.0.1 (written to ``PORT_FILE``) with werkzeug's threaded server, its
main thread waiting in ``serve_forever``. ``GET /chat`` streams a reply in
chunks to a listener subscribed on the module's event bus, as an agent
framework would; with ``--leak`` the listener is never unsubscribed, so
every request leaves its listener (and the chunks it collected) on
``BUS.listeners``. ``GET /health`` tells what an attach could have left
behind: threads, gc state, tracemalloc, reftrace's modules and paths.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class EventBus:
    """Listeners called with every chunk a reply streams."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[str], None]] = []
        self.lock = threading.Lock()

    def subscribe(self, listener: Callable[[str], None]) -> None:
        with self.lock:
            self.listeners.append(listener)

    def unsubscribe(self, listener: Callable[[str], None]) -> None:
        with self.lock:
            self.listeners.remove(listener)

    def emit(self, chunk: str) -> None:
        with self.lock:
            listeners = list(self.listeners)
        for listener in listeners:
            listener(chunk)


BUS = EventBus()
LEAK = "--leak" in sys.argv


def chat(request: Request) -> Response:
    chunks: list[str] = []
    listener = chunks.append
    BUS.subscribe(listener)
    try:
        for n in range(8):
            chunks.append(f"token {n} of the reply to {request.remote_addr}")
    finally:
        if not LEAK:
            BUS.unsubscribe(listener)
    return Response(" ".join(chunks))


def health() -> dict[str, object]:
    return {
        "listeners": len(BUS.listeners),
        "objects": len(gc.get_objects()),
        "modules": len(sys.modules),
        "threads": sorted(
            t.name for t in threading.enumerate() if not t.name.startswith("Thread-")
        ),
        "gc": [gc.isenabled(), list(gc.get_threshold()), gc.get_freeze_count()],
        "tracing": tracemalloc.is_tracing(),
        "reftrace_modules": sorted(m for m in sys.modules if m.split(".")[0] == "reftrace"),
        "reftrace_paths": [p for p in sys.path if "reftrace-attach" in p]
        + [str(p) for p in sys.path_importer_cache if "reftrace-attach" in str(p)],
    }


@Request.application
def app(request: Request) -> Response:
    if request.path == "/types":
        counts: dict[str, int] = {}
        for obj in gc.get_objects():
            name = type(obj).__qualname__
            counts[name] = counts.get(name, 0) + 1
        return Response(json.dumps(counts), mimetype="application/json")
    if request.path == "/health":
        return Response(json.dumps(health()), mimetype="application/json")
    return chat(request)


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = make_server("127.0.0.1", 0, app, threaded=True)
    Path(sys.argv[1]).write_text(str(server.server_port))
    server.serve_forever()


if __name__ == "__main__":
    main()
