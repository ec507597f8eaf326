"""The ``reftrace`` command line (also ``python -m reftrace``).

::

    reftrace soak MODULE:FUNCTION [-n 50] [--warmup W] [--max-iterations M]
                  [--max-seconds S] [--svg out.svg] [--json out.json]
    reftrace watch MODULE:FUNCTION [--svg out.svg] [--json out.json]
    reftrace attach PID [--duration 5m] [--interval 10s] [--snapshot]
                  [--svg out.svg] [--html out.html] [--json out.json]
    reftrace demo [--svg reftrace-demo.svg]

``MODULE`` is a module importable from the current directory (which is put
first on ``sys.path``, as ``python -m`` does) or a path to a ``.py`` file;
``FUNCTION`` is a name in it (``Class.method`` works for a static method).
The function is called with no arguments; a coroutine function is run on a
fresh event loop.

``soak`` runs the function many times (:func:`reftrace.soak`) and prints
the soak report. ``watch`` calls it once inside :func:`reftrace.watch`,
tracks its return value (a generator or async generator is consumed, every
item tracked) and prints the report: survivors and allocations too.
``attach`` joins a running process (``reftrace.attach``), samples its heap
over ``--duration`` and prints the soak report of what grew; ``--snapshot``
prints one heap summary instead.

Exit status, for use in CI:

- 0: clean (``soak``, ``attach``: not leaking; ``watch``: nothing tracked is
  still alive; ``attach --snapshot``: the summary was taken);
- 1: ``soak``, ``attach``: leaking; ``watch``: the return value (or a yielded item) leaked;
- 2: the command could not judge: a bad option, a module or function that
  cannot be found, or a function (or the module's import) that raised, with
  its traceback printed;
- 2 also: ``attach`` cannot attach (no such process, not Python, another
  version, ptrace not permitted, remote debugging disabled, no gdb, the
  process exited), said in one line;
- 3: ``soak``, ``attach``: inconclusive, the budget ran out before the evidence decided
  (the report says why, and how long a run would settle it).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import traceback
import types
from collections.abc import Callable, Sequence
from typing import Any

from reftrace.calls import Lifecycle, is_coroutine_function
from reftrace.objects import untrackable_reason

#: Exit statuses.
CLEAN, LEAKING, ERROR, INCONCLUSIVE = 0, 1, 2, 3


class UsageError(Exception):
    """The command line names something that cannot be used."""


class TargetRaised(Exception):
    """The target (or the import of its module) raised; ``__cause__`` is what it raised."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


# -- finding the function -------------------------------------------------------------


def _import_module(name: str) -> types.ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise UsageError(
                f"no module named {missing!r} (looked in {cwd} and on sys.path)"
            ) from None
        raise TargetRaised(f"importing module {name!r}") from exc
    except Exception as exc:
        raise TargetRaised(f"importing module {name!r}") from exc


def _load_file(filename: str) -> types.ModuleType:
    if not os.path.isfile(filename):
        raise UsageError(f"no such file: {filename}")
    path = os.path.abspath(filename)
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem.isidentifier() else "target"
    suffix = 2
    while name in sys.modules:
        existing = getattr(sys.modules[name], "__file__", None)
        if existing and os.path.abspath(existing) == path:
            return sys.modules[name]
        name = f"{stem}_{suffix}"
        suffix += 1
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {filename}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    # As `python file.py` would: the file's directory first on sys.path.
    sys.path.insert(0, os.path.dirname(path))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise TargetRaised(f"running {filename}") from exc
    return module


def load_target(spec: str) -> Callable[[], Any]:
    """The function ``MODULE:FUNCTION`` names (``MODULE`` may be a ``.py`` path)."""
    module_part, sep, attribute = spec.rpartition(":")
    if not sep or not module_part or not attribute:
        raise UsageError(f"expected MODULE:FUNCTION, got {spec!r}")
    is_file = module_part.endswith(".py") or "/" in module_part or os.sep in module_part
    module = _load_file(module_part) if is_file else _import_module(module_part)
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = sorted(
                n
                for n, v in vars(module).items()
                if callable(v) and not n.startswith("_") and not isinstance(v, type)
            )
            hint = f"; functions in it: {', '.join(names[:12])}" if names else ""
            raise UsageError(
                f"module {module.__name__!r} has no attribute {attribute!r}{hint}"
            ) from None
    if not callable(target):
        raise UsageError(f"{spec} is a {type(target).__name__}, not a function")
    return target  # type: ignore[no-any-return]


# -- running it -------------------------------------------------------------------------


def _counting(fn: Callable[[], Any], calls: list[int]) -> Callable[[], Any]:
    """``fn``, counting its calls (so an error can say which call raised)."""
    if is_coroutine_function(fn):

        async def counted_async() -> Any:
            calls[0] += 1
            return await fn()

        return counted_async

    def counted() -> Any:
        calls[0] += 1
        return fn()

    return counted


def _run_soak(args: argparse.Namespace) -> int:
    import reftrace

    if args.warmup is not None and args.warmup >= args.iterations:
        raise UsageError(
            f"argument --warmup: must be less than -n/--iterations ({args.iterations}), "
            f"got {args.warmup}"
        )
    if args.max_iterations is not None and args.max_iterations < args.iterations:
        raise UsageError(
            f"argument --max-iterations: must be at least -n/--iterations ({args.iterations}), "
            f"got {args.max_iterations}"
        )
    fn = load_target(args.target)
    calls = [0]
    try:
        sr = reftrace.soak(
            _counting(fn, calls),
            iterations=args.iterations,
            warmup=args.warmup,
            max_iterations=args.max_iterations,
            max_seconds=args.max_seconds,
            progress=False if args.no_progress else None,
        )
    except Exception as exc:
        raise TargetRaised(f"{args.target} (call {calls[0]})") from exc
    print(sr)
    _write_outputs(args, sr.render, sr.to_dict)
    if sr.inconclusive:
        return INCONCLUSIVE
    return LEAKING if sr.leaking else CLEAN


def _watch_call(w: Any, call: Lifecycle) -> None:
    """One call inside the block; no local variable outlives it."""
    result = call()
    if isinstance(result, types.GeneratorType):
        for _item in w.track_stream(w.track(result)):
            pass
    elif isinstance(result, types.AsyncGeneratorType):
        call.run(_drain(w.track_stream(w.track(result))))
    elif result is not None and untrackable_reason(result) is None:
        w.track(result)


async def _drain(stream: Any) -> None:
    async for _item in stream:
        pass


def _run_watch(args: argparse.Namespace) -> int:
    import reftrace

    call = Lifecycle(load_target(args.target), what="reftrace watch")
    try:
        with reftrace.watch() as w:
            _watch_call(w, call)
    except UsageError:
        raise
    except Exception as exc:
        raise TargetRaised(args.target) from exc
    finally:
        call.close()
    report = w.report
    print(report)
    _write_outputs(args, report.render, report.to_dict)
    return LEAKING if report.leaks else CLEAN


def _run_attach(args: argparse.Namespace) -> int:
    from reftrace.attach import AttachError, HeapSummary, attach

    def say(line: str) -> None:
        if not args.no_progress:
            print(f"reftrace attach: {line}", file=sys.stderr, flush=True)

    if args.snapshot and (args.svg or args.html):
        raise UsageError("--svg and --html draw a growth verdict; with --snapshot, use --json")
    try:
        result = attach(
            args.pid,
            duration=args.duration,
            interval=args.interval,
            snapshot=args.snapshot,
            trace_malloc=args.tracemalloc,
            via=args.via,
            progress=say,
        )
    except AttachError as error:
        raise UsageError(str(error)) from None
    except KeyboardInterrupt:
        print("reftrace attach: interrupted; detached", file=sys.stderr)
        return 130
    print(result)
    if isinstance(result, HeapSummary):
        _write_outputs(args, str, result.to_dict)  # JSON only: --svg was refused above
        return CLEAN
    _write_outputs(args, result.render, result.to_dict)
    if args.html:
        from reftrace import views
        from reftrace.files import write_atomic

        write_atomic(args.html, views.html(result).encode("utf-8"))
        print(f"HTML report written to {args.html}")
    if result.inconclusive:
        return INCONCLUSIVE
    return LEAKING if result.leaking else CLEAN


def _write_outputs(
    args: argparse.Namespace, render: Callable[[str], str], to_dict: Callable[[], Any]
) -> None:
    from reftrace.redact import mask_data

    if args.svg:
        print(f"\nretention graph written to {render(args.svg)}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(mask_data(to_dict()), handle, indent=2)
            handle.write("\n")
        print(f"report written to {args.json}")


def _run_demo(args: argparse.Namespace) -> int:
    from reftrace.demo.__main__ import main as demo_main

    return demo_main(["--svg", args.svg])


# -- the parser -------------------------------------------------------------------------


def _int_at_least(minimum: int, wanted: str) -> Callable[[str], int]:
    """An argparse type: an int of at least ``minimum``; ``wanted`` names it in errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


_DURATION = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def _duration(text: str) -> float:
    """An argparse type: seconds, written ``90``, ``90s``, ``1.5m``, ``500ms`` or ``2h``."""
    number = text.rstrip("msh")
    unit = text[len(number) :]
    if unit not in _DURATION:
        raise argparse.ArgumentTypeError(f"must be a duration such as 60s or 5m, got {text!r}")
    try:
        return _positive_float(number) * _DURATION[unit]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a positive duration such as 60s or 5m, got {text!r}"
        ) from None


def _writable(text: str) -> str:
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"directory {directory} does not exist")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The ``reftrace`` command line, with its ``soak``, ``watch`` and ``demo`` commands."""
    parser = argparse.ArgumentParser(
        prog="reftrace",
        description="Find memory leaks by following references.",
        epilog="Exit status: 0 clean, 1 leaking (or leaked), 2 error, 3 inconclusive (soak).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    soak = commands.add_parser(
        "soak",
        help="call a function many times; is memory still growing after warm-up?",
        description="Call MODULE:FUNCTION many times and report whether memory keeps "
        "growing after warm-up; when the evidence is weak, keep calling it, within "
        "--max-iterations and --max-seconds, until it decides. Exit status 1 when it "
        "grows, 3 when the budget ran out before the evidence decided.",
    )
    soak.add_argument("target", metavar="MODULE:FUNCTION")
    soak.add_argument(
        "-n",
        "--iterations",
        type=_positive_int,
        default=30,
        metavar="N",
        help="calls to make (default: %(default)s)",
    )
    soak.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=None,
        metavar="W",
        help="first calls not judged (default: max(3, N // 5), at most N // 2)",
    )
    soak.add_argument(
        "--max-iterations",
        type=_positive_int,
        default=None,
        metavar="M",
        help="most calls to make to decide (default: 10 N, at least 100)",
    )
    soak.add_argument(
        "--max-seconds",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="most seconds to spend deciding (default: %(default)s)",
    )
    soak.add_argument("--svg", type=_writable, metavar="PATH", help="write the growth plot")
    soak.add_argument("--json", type=_writable, metavar="PATH", help="write the report as JSON")
    soak.add_argument("--no-progress", action="store_true", help="no progress bar")
    soak.set_defaults(run=_run_soak)

    watch = commands.add_parser(
        "watch",
        help="call a function once; does what it returns outlive the call?",
        description="Call MODULE:FUNCTION once inside reftrace.watch(), tracking what it "
        "returns (a generator is consumed, every item tracked). Exit status 1 when a "
        "tracked object is still alive after the call.",
    )
    watch.add_argument("target", metavar="MODULE:FUNCTION")
    watch.add_argument("--svg", type=_writable, metavar="PATH", help="write the retention graph")
    watch.add_argument("--json", type=_writable, metavar="PATH", help="write the report as JSON")
    watch.set_defaults(run=_run_watch)

    attach = commands.add_parser(
        "attach",
        help="join a running Python process; what grows in it, and what holds it?",
        description="Attach to the running CPython process PID (same Python version; gdb "
        "before 3.14), sample its heap every --interval for --duration, detach, and "
        "report what grew and which reference holds it. Exit status as for soak; 2 when "
        "it cannot attach.",
    )
    attach.add_argument("pid", type=_positive_int, metavar="PID")
    attach.add_argument(
        "--duration",
        type=_duration,
        default=300.0,
        metavar="TIME",
        help="default: 5m, 30 samples at the default interval (under 23 samples, "
        "growth is at most inconclusive)",
    )
    attach.add_argument(
        "--interval", type=_duration, default=10.0, metavar="TIME", help="default: 10s"
    )
    attach.add_argument(
        "--snapshot", action="store_true", help="one heap summary instead of a growth verdict"
    )
    attach.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace allocations in the target while sampling (started, then stopped)",
    )
    attach.add_argument(
        "--via", choices=("auto", "remote_exec", "gdb"), default="auto", help="how to get in"
    )
    attach.add_argument("--svg", type=_writable, metavar="PATH", help="write the retention graph")
    attach.add_argument("--html", type=_writable, metavar="PATH", help="write an HTML report")
    attach.add_argument("--json", type=_writable, metavar="PATH", help="write the report as JSON")
    attach.add_argument("--no-progress", action="store_true", help="no progress lines")
    attach.set_defaults(run=_run_attach)

    demo = commands.add_parser(
        "demo",
        help="the streaming agent that leaks (python -m reftrace.demo)",
        description="Find the demo agent's leak, draw it, and check the fixed agent.",
    )
    demo.add_argument(
        "--svg",
        type=_writable,
        default="reftrace-demo.svg",
        metavar="PATH",
        help="where to write the retention graph (default: %(default)s)",
    )
    demo.set_defaults(run=_run_demo)
    return parser


def _user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` from the first frame outside reftrace and importlib."""
    from reftrace.objects import is_own_file

    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (is_own_file(filename) or filename.startswith("<frozen importlib")):
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 clean, 1 leaking, 2 error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else ERROR
    try:
        status: int = args.run(args)
        return status
    except UsageError as error:
        print(f"reftrace {args.command}: error: {error}", file=sys.stderr)
        return ERROR
    except TargetRaised as error:
        cause = error.__cause__
        assert cause is not None
        sys.stderr.write(_user_traceback(cause))
        print(
            f"reftrace {args.command}: error: {error.what} raised {type(cause).__name__}",
            file=sys.stderr,
        )
        return ERROR
