"""What runs inside a process ``reftrace attach`` joined.

The attaching side (``reftrace.attach``) makes the target run a few lines
of bootstrap code (``BOOTSTRAP``), which start one daemon thread named
``reftrace-attach`` and return. That thread imports this module and calls
:func:`run`, which measures the heap over time with the soak's machinery
(``reftrace.soak.soak_over_time``: a full collection and the counters at
every sample, the containers compared at checkpoints), or takes one heap
summary, and writes the result as JSON into the attach's private directory.
Then the bootstrap removes what it added: the ``sys.path`` entry and the
import system's finders for it, the ``reftrace`` modules (when the target
had none), tracemalloc (when it was started for the attach). Nothing of
reftrace stays referenced; the standard library modules it imported stay
loaded, as they would after any import.

Every file the agent writes is made in the directory the attaching side
created (mode 0700, owned by the target's user), written to a temporary
name and renamed, so the attaching side never reads half a file.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
import tracemalloc
from array import array
from collections.abc import Callable
from typing import Any

from reftrace.census import container_length, length_function
from reftrace.files import write_atomic
from reftrace.memory import gc_settings_kept
from reftrace.model import Path
from reftrace.redact import clean
from reftrace.snapshot import snapshot
from reftrace.soak import container_paths, soak_over_time, timed_waits
from reftrace.units import human_size
from reftrace.views import text

#: The bootstrap the target runs (``DIRECTORY`` and ``ENTRY`` are filled in).
#: It claims the attach once (a second request, or a cancelled one that runs
#: late, finds the claim taken and does nothing), then starts the thread.
BOOTSTRAP = """\
def _reftrace_attach(directory, entry):
    import os, sys, threading

    def make(name):
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
        os.close(os.open(os.path.join(directory, name), flags, 0o600))

    try:
        make("claimed")
    except OSError:
        return

    def ours(name):
        return name == "reftrace" or name.startswith("reftrace.")

    def run():
        had = "reftrace" in sys.modules
        added = bool(entry) and not had and entry not in sys.path
        if added:
            sys.path.insert(0, entry)
        try:
            from reftrace.attach_agent import run as agent_run
            agent_run(directory)
        except BaseException as exc:
            try:
                tmp = os.path.join(directory, "error.tmp")
                with open(tmp, "w") as out:
                    out.write(type(exc).__name__ + ": " + str(exc))
                os.replace(tmp, os.path.join(directory, "error"))
            except BaseException:
                pass
        finally:
            agent_run = None
            if added:
                try:
                    sys.path.remove(entry)
                except ValueError:
                    pass
            if not had:
                for name in [n for n in sys.modules if ours(n)]:
                    sys.modules.pop(name, None)
            for key in [k for k in sys.path_importer_cache if str(k).startswith(directory)]:
                sys.path_importer_cache.pop(key, None)
            try:
                make("finished")
            except OSError:
                pass

    threading.Thread(target=run, name="reftrace-attach", daemon=True).start()


_reftrace_attach(DIRECTORY, ENTRY)
"""

#: The biggest containers a heap summary lists, with their paths.
SUMMARY_CONTAINERS = 10

#: How often the wait between samples looks for a request to stop.
_POLL = 0.1


class Stopped(Exception):
    """The attaching side asked the agent to stop (Ctrl-C), or went away."""


def _write_json(directory: str, name: str, data: object) -> None:
    """``data`` as ``directory/name``, written whole (``files.write_atomic``)."""
    write_atomic(os.path.join(directory, name), json.dumps(data).encode("utf-8"))


def _read_options(directory: str) -> dict[str, Any]:
    with open(os.path.join(directory, "options.json"), encoding="utf-8") as src:
        options = json.load(src)
    if not isinstance(options, dict):
        raise ValueError("options.json holds no object")
    return options


def _waiter(directory: str, interval: float) -> Callable[[], None]:
    """One wait between two samples; stops early when asked to."""
    stop = os.path.join(directory, "stop")
    heartbeat = os.path.join(directory, "started.json")

    def wait() -> None:
        try:
            os.utime(heartbeat)  # a sign of life for the attaching side
        except OSError:
            raise Stopped("the attach's directory is gone") from None
        deadline = time.monotonic() + interval
        while True:
            if os.path.exists(stop) or not os.path.isdir(directory):
                raise Stopped("asked to stop")
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(_POLL, left))

    return wait


def run(directory: str) -> None:
    """Measure as ``directory/options.json`` asks; write ``result.json``.

    Options: ``samples`` and ``interval`` (seconds) for a growth verdict, or
    ``snapshot`` for one heap summary; ``tracemalloc`` to trace allocations
    meanwhile (started here and stopped after, unless the program traces
    already). gc's enabled state and thresholds are put back if they
    changed. The freeze count does not change (reftrace freezes objects only
    when the program froze none, and unfreezes them at once), except on
    CPython 3.12.0-3.12.1, which freezes the tuples of static types itself:
    the sample taken under ``watch()`` unfreezes those, as any ``watch()``
    does there (they are immortal and hold only types).
    """
    options = _read_options(directory)
    _write_json(
        directory,
        "started.json",
        {
            "pid": os.getpid(),
            "python": list(sys.version_info[:3]),
            "started": time.time(),
            "thread": threading.get_native_id(),
        },
    )
    started_tracing = False
    if options.get("tracemalloc") and not tracemalloc.is_tracing():
        tracemalloc.start(1)
        started_tracing = True
    try:
        with gc_settings_kept():
            if options.get("snapshot"):
                result = _summary()
            else:
                result = _growth(directory, int(options["samples"]), float(options["interval"]))
                if started_tracing:
                    result["notes"].append(
                        "tracemalloc traced the process during the attach "
                        "(started and stopped by it)"
                    )
    except Stopped:
        return
    finally:
        if started_tracing:
            tracemalloc.stop()
    _write_json(directory, "result.json", result)


def _growth(directory: str, samples: int, interval: float) -> dict[str, Any]:
    pauses = array("d", [0.0, 0.0])
    started = time.perf_counter()
    sr = soak_over_time(timed_waits(_waiter(directory, interval), pauses), samples)
    data = sr.to_dict()
    data["kind"] = "growth"
    data["pid"] = os.getpid()
    data["interval"] = interval
    data["seconds"] = time.perf_counter() - started
    data["timings"]["longest_pause"] = pauses[0]
    data["objects_now"] = len(gc.get_objects())
    return data


def _summary() -> dict[str, Any]:
    """One heap summary: the types by size, and the biggest containers with their paths."""
    started = time.perf_counter()
    snap = snapshot()
    biggest = _biggest_containers(SUMMARY_CONTAINERS)
    paths = container_paths(biggest, None)
    containers = []
    for obj, (path, reason) in zip(biggest, paths):
        containers.append(
            {
                "type": type(obj).__name__,
                "length": container_length(obj),
                "path": path.to_dict() if path is not None else None,
                "expression": path.expression if path is not None else "",
                "root": path.root.name if path is not None else "",
                "where": _where(path, reason),
            }
        )
    biggest.clear()
    lines = [text(snap), f"biggest {len(containers)} containers:"]
    for entry in containers:
        lines.append(
            f"  {clean(str(entry['type']), 12):<12} {entry['length']:>12,} items  "
            f"{clean(str(entry['where']), 120)}"
        )
    return {
        "kind": "snapshot",
        "pid": os.getpid(),
        "count": snap.count,
        "size": snap.size,
        "size_text": human_size(snap.size),
        "types": [{"type": row.name, "count": row.count, "size": row.size} for row in snap.top(20)],
        "containers": containers,
        "seconds": time.perf_counter() - started,
        "text": "\n".join(lines),
    }


def _where(path: Path | None, reason: str) -> str:
    """Where a container is, as one line: ``module.global...``, or why no path was found."""
    if path is None:
        return f"no path from a root: {reason}" if reason else "no path from a root"
    if path.root.kind == "module":
        if not path.steps:
            return f"{path.root.name} (the module's globals)"
        return f"{path.root.name}.{path.expression}"
    if path.root.kind == "hidden":
        return "held from C (no path from a root Python can see)"
    return f"{path.root.name}: {path.expression}" if path.expression else path.root.name


def _biggest_containers(n: int) -> list[object]:
    """The ``n`` longest dicts, lists, sets and deques the gc tracks (module dicts too)."""
    best: list[tuple[int, int]] = []
    objects = gc.get_objects()
    try:
        for index, obj in enumerate(objects):
            if obj is objects or obj is best:
                continue
            measure = length_function(type(obj))
            if measure is None:
                continue
            try:
                length = measure(obj)
            except Exception:
                continue
            best.append((length, index))
        best.sort(reverse=True)
        return [objects[index] for _, index in best[:n]]
    finally:
        objects.clear()
