"""``reftrace attach PID``: what grows in a running process, without a restart.

The attaching side checks the target (it exists, it is CPython of this
version, remote debugging is not disabled), makes a private directory
(mode 0700, owned by the target's user), and makes the target run a short
bootstrap (``reftrace.attach_agent.BOOTSTRAP``) that starts one thread and
returns. The thread measures and writes its result in that directory; the
attaching side reads it, removes the directory, and shows the result.

How the bootstrap gets in:

- CPython 3.14 and later: ``sys.remote_exec(pid, script)``, the target's own
  way. It runs when the target's main thread next runs Python code; a main
  thread blocked in ``sleep()``, a lock or a long C call never gets there.
  After ``start_timeout`` seconds without a start, gdb is used when there is
  one (the request left behind does nothing when it runs late: the attach
  is claimed once).
- CPython 3.10-3.13 (and 3.14+ with a blocked main thread): gdb. When the
  main thread sleeps, polls or waits on a socket (a system call other than
  a futex, on x86-64) without the GIL, gdb runs the bootstrap right there,
  between ``PyGILState_Ensure()`` and ``PyGILState_Release()``. Otherwise
  it queues it with ``Py_AddPendingCall``: it runs at the main thread's next
  safe point. A main thread waiting on a lock or an event, or in a long C
  call, never gets there: after ``start_timeout`` seconds the attach says so.

Refusals raise :class:`AttachError`, one line each (the command exits 2).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from reftrace.attach_agent import BOOTSTRAP
from reftrace.redact import clean
from reftrace.report import ReportFormatError
from reftrace.soak_report import SoakReport

#: Seconds to wait for the bootstrap to start the agent.
START_TIMEOUT = 10.0
#: Seconds gdb may take to get in and out.
GDB_TIMEOUT = 30.0
#: The fewest samples a growth verdict is judged on.
MIN_SAMPLES = 6
#: Seconds the agent may go without a sign of life beyond the interval
#: (a sample of a very large heap, the paths from the roots at the end).
ANALYSIS_SLACK = 300.0


class AttachError(Exception):
    """``reftrace attach`` cannot attach, or the target went away: one line saying why."""


@dataclass
class HeapSummary:
    """One heap summary of the target (``reftrace attach PID --snapshot``).

    ``data`` is what the target sent (types by size, the biggest containers
    with their paths); ``text`` shows it.
    """

    pid: int
    data: dict[str, Any]

    @property
    def text(self) -> str:
        """The summary as text, each line cleaned here: it comes from another
        process, and must not put control sequences on this terminal."""
        raw = self.data.get("text", "")
        lines = raw.splitlines() if isinstance(raw, str) else []
        return "\n".join(clean(line, 300) for line in lines)

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what the target sent."""
        return dict(self.data)


@dataclass(frozen=True)
class Target:
    """A process that can be attached to: its pid, Python version and user."""

    pid: int
    version: tuple[int, int]
    uid: int
    executable: str


def check_target(pid: object) -> Target:
    """The process ``pid``, checked: it exists, runs CPython of this version,
    and has not disabled remote debugging. Raises :class:`AttachError`."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise AttachError(f"a process id is a whole number, got {pid!r}")
    if pid <= 0:
        raise AttachError(f"a process id is positive, got {pid}")
    if pid == os.getpid():
        raise AttachError("reftrace attach cannot attach to itself: use reftrace.soak()")
    proc = Path(f"/proc/{pid}")
    if not sys.platform.startswith("linux"):
        raise AttachError("reftrace attach works on Linux only (it reads /proc)")
    try:
        uid = proc.stat().st_uid
    except FileNotFoundError:
        raise AttachError(f"no process with id {pid}") from None
    try:
        executable = os.readlink(proc / "exe")
        maps = (proc / "maps").read_text(errors="replace")
    except FileNotFoundError:
        raise AttachError(f"process {pid} exited") from None
    except PermissionError:
        raise AttachError(_not_permitted(pid, f"reading /proc/{pid}")) from None
    version = _python_version(executable, maps)
    if version is None:
        raise AttachError(f"process {pid} is not a Python process (it runs {executable})")
    here = sys.version_info[:2]
    if version != here:
        wanted = f"{version[0]}.{version[1]}"
        raise AttachError(
            f"process {pid} runs Python {wanted}, this is Python {here[0]}.{here[1]}: "
            f"attach with the same version (python{wanted} -m reftrace attach {pid})"
        )
    if sys.implementation.name != "cpython":
        raise AttachError("reftrace attach needs CPython")
    disabled = _remote_debug_disabled(proc)
    if disabled:
        raise AttachError(f"process {pid} disabled remote debugging ({disabled})")
    return Target(pid, version, uid, executable)


_LIBPYTHON = re.compile(r"libpython(\d+)\.(\d+)")
_PYTHON_EXE = re.compile(r"python(\d+)\.(\d+)")


def _python_version(executable: str, maps: str) -> tuple[int, int] | None:
    """The Python version a process runs, from its libpython or its program's name."""
    found = _LIBPYTHON.search(maps)
    if found is None:
        found = _PYTHON_EXE.search(os.path.basename(executable))
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2))


def _remote_debug_disabled(proc: Path) -> str:
    """How the target disabled remote debugging ("" when it did not)."""
    try:
        environ = (proc / "environ").read_bytes().split(b"\0")
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    for entry in environ:
        name, _, value = entry.partition(b"=")
        if name == b"PYTHON_DISABLE_REMOTE_DEBUG" and value:
            return "PYTHON_DISABLE_REMOTE_DEBUG is set"
    for index, arg in enumerate(argv):
        if arg == b"-Xdisable-remote-debug" or (
            arg == b"-X" and index + 1 < len(argv) and argv[index + 1] == b"disable-remote-debug"
        ):
            return "-X disable-remote-debug"
    return ""


def attach(
    pid: int,
    *,
    duration: float = 300.0,
    interval: float = 10.0,
    snapshot: bool = False,
    trace_malloc: bool = False,
    start_timeout: float = START_TIMEOUT,
    via: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> SoakReport | HeapSummary:
    """Attach to process ``pid``, measure, detach; the result.

    Samples the target's heap every ``interval`` seconds for ``duration``
    seconds and returns the growth verdict as a :class:`SoakReport` whose
    unit is a sample; with ``snapshot=True``, one :class:`HeapSummary`.
    The run is never extended: under 23 samples (the default is 30), what
    grows is at most inconclusive, never leaking.
    ``trace_malloc`` starts tracemalloc in the target for the run (stopped
    after). ``via`` is ``"auto"``, ``"remote_exec"`` (3.14+) or ``"gdb"``.
    ``progress`` receives a line now and then.

    Raises :class:`AttachError` when it cannot attach (the reason in one
    line). On ``KeyboardInterrupt``, the target is asked to stop, and the
    interrupt propagates once it has.
    """
    for name, value in (("duration", duration), ("interval", interval)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AttachError(f"{name} must be a number of seconds, got {value!r}")
        if not value > 0:
            raise AttachError(f"{name} must be positive, got {value}")
    samples = int(duration / interval)
    if not snapshot and samples < MIN_SAMPLES:
        raise AttachError(
            f"{duration:g} s at one sample every {interval:g} s is {samples} samples; "
            f"a verdict needs at least {MIN_SAMPLES} (a longer --duration or a shorter --interval)"
        )
    if via not in ("auto", "remote_exec", "gdb"):
        raise AttachError(f"via must be auto, remote_exec or gdb, got {via!r}")
    target = check_target(pid)
    say = progress or (lambda line: None)
    directory = _private_directory(target)
    try:
        options = {"samples": samples, "interval": interval, "snapshot": snapshot}
        options["tracemalloc"] = trace_malloc
        _write(directory / "options.json", json.dumps(options), target.uid)
        script = directory / "bootstrap.py"
        _write(script, _bootstrap(directory), target.uid)
        _get_in(target, script, directory, via, start_timeout, say)
        say(
            f"attached to {target.pid}; "
            + (
                "taking a heap summary"
                if snapshot
                else f"{samples} samples, one every {interval:g} s"
            )
        )
        data = _wait_for_result(target, directory, interval)
    except KeyboardInterrupt:
        _stop(directory, target.pid)
        raise
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if data.get("kind") == "snapshot":
        return HeapSummary(target.pid, data)
    try:
        sr = SoakReport.from_dict(data, source=f"process {target.pid}")
    except ReportFormatError as exc:
        raise AttachError(str(exc)) from None
    if sr.settle:
        sr.settle = f"reftrace attach {target.pid} --duration {_seconds(duration * 10)}"
    return sr


def _seconds(value: float) -> str:
    """As ``--duration`` reads it: ``50m``, ``2h``, ``80s``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def _write(path: Path, text: str, owner: int) -> None:
    """A new file only its owner reads: ``owner`` (the target's user) when root attaches."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    if os.geteuid() == 0 and owner != 0:
        os.chown(path, owner, -1)


def _private_directory(target: Target) -> Path:
    """A new directory only the attaching user (and the target's user) can read.

    It holds the bootstrap, a link to this reftrace for the target to import,
    and what the target writes back."""
    directory = Path(tempfile.mkdtemp(prefix=f"reftrace-attach-{target.pid}-"))
    package = Path(__file__).resolve().parent
    (directory / "import").mkdir(mode=0o700)
    (directory / "import" / "reftrace").symlink_to(package, target_is_directory=True)
    if os.geteuid() == 0 and target.uid != 0:
        for path in (directory, directory / "import"):
            os.chown(path, target.uid, -1)
    return directory


def _bootstrap(directory: Path) -> str:
    return (
        f"DIRECTORY = {str(directory)!r}\nENTRY = {str(directory / 'import')!r}\n"
        + BOOTSTRAP
        + "del DIRECTORY, ENTRY, _reftrace_attach\n"
    )


def _entry_code(script: Path, runner: str = "") -> str:
    """One statement the target runs: the bootstrap, in a namespace of its own, never raising.

    With ``runner`` (the file ``sys.remote_exec`` runs), that file is removed first."""
    unlink = _unlink_code(runner) if runner else ""
    return unlink + (
        "try:\n"
        f"    __import__('builtins').exec(__import__('builtins').open({str(script)!r}).read(), "
        "{'__name__': '__reftrace_attach__'})\n"
        "except BaseException:\n"
        "    pass\n"
    )


def _unlink_code(path: str) -> str:
    return f"try:\n    __import__('os').unlink({path!r})\nexcept BaseException:\n    pass\n"


def _get_in(
    target: Target,
    script: Path,
    directory: Path,
    via: str,
    timeout: float,
    say: Callable[[str], None],
) -> None:
    """Make the target run the bootstrap, and wait until the agent started."""
    remote_exec = getattr(sys, "remote_exec", None)
    if via == "remote_exec" and remote_exec is None:
        raise AttachError("sys.remote_exec is new in Python 3.14: use --via gdb")
    gdb = shutil.which("gdb")
    if via in ("auto", "remote_exec") and remote_exec is not None:
        # Outside the private directory: a request that runs late (after the
        # directory is gone) still finds its file, which only removes itself.
        fd, runner = tempfile.mkstemp(prefix=f"reftrace-attach-{target.pid}-", suffix=".py")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(_entry_code(script, runner))
        if os.geteuid() == 0 and target.uid != 0:
            os.chown(runner, target.uid, -1)
        try:
            remote_exec(target.pid, runner)
        except BaseException as exc:
            os.unlink(runner)
            if isinstance(exc, PermissionError):
                raise AttachError(_not_permitted(target.pid, str(exc))) from None
            if isinstance(exc, ProcessLookupError):
                raise AttachError(f"process {target.pid} exited") from None
            if isinstance(exc, (RuntimeError, OSError)):
                raise AttachError(
                    f"sys.remote_exec could not attach to {target.pid}: {exc}"
                ) from None
            raise
        alone = via == "remote_exec" or gdb is None
        if _started(target, directory, timeout if alone else min(timeout, 3.0)):
            return
        try:
            with open(runner, "w", encoding="utf-8") as out:
                out.write(_unlink_code(runner))
        except OSError:
            pass
        if alone:
            raise AttachError(
                f"process {target.pid} did not run the attach code within {timeout:g} s: its "
                "main thread is blocked (sleeping, waiting on a lock, or in a long C call) "
                "and never reached a safe point; with gdb installed, reftrace attach also gets "
                "in while it sleeps or polls (apt-get install gdb)"
            )
        say("the main thread is blocked: attaching with gdb")
    if gdb is None:
        raise AttachError(
            "reftrace attach needs gdb to attach to Python "
            f"{target.version[0]}.{target.version[1]} (apt-get install gdb, dnf install gdb)"
        )
    _gdb(target, gdb, _entry_code(script))
    if not _started(target, directory, timeout):
        raise AttachError(
            f"process {target.pid} did not run the attach code within {timeout:g} s: its main "
            "thread is blocked (waiting on a lock or an event, or in a long C call) and never "
            "reached a safe point; attach while it runs Python code, sleeps or polls"
        )


#: gdb's commands. Run the bootstrap right away only when that is safe: the
#: main thread does not hold the GIL and waits in a system call that is not a
#: futex (sleeping, select/poll, a socket): it holds no lock of CPython's or
#: of malloc's. A futex wait may be the GIL's own condition variable, a lock
#: or an allocator's mutex, and entering the GIL from inside its wait can
#: leave both threads stuck; so is anything else: queue the bootstrap for the
#: main thread's next safe point.
_GDB_SCRIPT = """\
set pagination off
set confirm off
set $held = (int)PyGILState_Check()
set $now = {inline}
if $now
  set $g = (int)PyGILState_Ensure()
  set $r = (int)PyRun_SimpleString({code})
  call (void)PyGILState_Release($g)
  printf "REFTRACE-ATTACH ran %d\\n", $r
else
  set $r = (int)Py_AddPendingCall((int(*)(void*))PyRun_SimpleString, (void*){code})
  printf "REFTRACE-ATTACH queued %d\\n", $r
end
detach
"""

#: x86-64: stopped right after a ``syscall`` instruction (0f 05), not futex (202).
_INLINE_X86_64 = (
    "$held == 0 && *(unsigned char*)($pc-2) == 0x0f && *(unsigned char*)($pc-1) == 0x05 "
    "&& $orig_rax != 202"
)


def _c_string(text: str) -> str:
    """``text`` as a C string literal for gdb."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _gdb(target: Target, gdb: str, code: str) -> None:
    """Run gdb on the target: the bootstrap now (main thread waiting in a
    system call without the GIL) or at the next safe point (queued)."""
    inline = _INLINE_X86_64 if platform.machine() in ("x86_64", "AMD64") else "0"
    commands = _GDB_SCRIPT.replace("{inline}", inline).replace("{code}", _c_string(code))
    with tempfile.NamedTemporaryFile("w", suffix=".gdb", delete=False) as out:
        out.write(commands)
    # gdb writes to a file, not a pipe: a gdb left to finish (below) must not
    # die of a broken pipe once this process is gone.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as said:
        try:
            output = _run_gdb(target, gdb, out.name, said)
        finally:
            os.unlink(out.name)
    if "REFTRACE-ATTACH" in output:
        return
    if "ptrace: Operation not permitted" in output:
        raise AttachError(_not_permitted(target.pid, "ptrace: Operation not permitted"))
    if "No such process" in output:
        raise AttachError(f"process {target.pid} exited")
    if "No symbol" in output:
        raise AttachError(
            f"gdb found no Python symbols in process {target.pid} (a static build without "
            "its symbol table cannot be attached to)"
        )
    last = _last_lines(output, 1) or ["no output"]
    raise AttachError(f"gdb could not attach to {target.pid}: {last[0]}")


def _run_gdb(target: Target, gdb: str, commands: str, said: IO[str]) -> str:
    """gdb's output, once it has run ``commands`` on the target and detached.

    Its own session: a Ctrl-C at the terminal must not reach gdb while the
    target runs a call gdb made; the interrupt is taken once gdb is done."""
    proc = subprocess.Popen(
        [
            gdb,
            "-p",
            str(target.pid),
            "-batch",
            "-nx",
            "-q",
            # Python's symbols only (in libpython, or in the program when it
            # has none): a third less time in gdb on a pyenv build.
            "-iex",
            "set auto-solib-add off",
            "-iex",
            "set debuginfod enabled off",
            # nor the python-gdb.py helpers, whose refusal would be its last words
            "-iex",
            "set auto-load off",
            "-ex",
            "sharedlibrary libpython",
            "-x",
            commands,
        ],  # fmt: skip
        stdin=subprocess.DEVNULL,
        stdout=said,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    interrupted = False
    deadline = time.monotonic() + GDB_TIMEOUT
    while True:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            break
        except KeyboardInterrupt:
            interrupted = True
        except subprocess.TimeoutExpired:
            # Not killed: gdb may be inside a call it made in the target, and
            # a tracer killed then leaves the thread to return into gdb's
            # breakpoint, which kills the process (SIGSEGV, seen on 3.11).
            # Left alone, gdb finishes the call and detaches; the code it runs
            # late finds its script gone and does nothing.
            said.seek(0)
            last = _last_lines(said.read(), 3)
            raise AttachError(
                f"gdb did not finish attaching to {target.pid} in {GDB_TIMEOUT:g} s (most "
                "often its main thread waits for the GIL, held by another thread in a long "
                "C call). The attach is cancelled; gdb is left to finish and detach on its "
                "own, as stopping it in the middle of a call would kill the process, and "
                "the attach code does nothing when it runs late. Threads: "
                f"{_thread_states(target.pid)}; gdb's last lines: {' | '.join(last) or 'none'}"
            ) from None
    if interrupted:
        raise KeyboardInterrupt
    said.seek(0)
    return said.read()


def _thread_states(pid: int) -> str:
    """Each thread of ``pid`` as ``tid:state`` (``R`` running, ``S`` sleeping,
    ``t`` stopped by a tracer, ``Z`` exited, not yet reaped): what a stuck
    ptrace attach was waiting on."""
    states = []
    with contextlib.suppress(OSError):
        for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name)):
            state = _state(task / "stat")
            if state is not None:  # None: the thread ended meanwhile
                states.append(f"{task.name}:{state}")
    return " ".join(states) or "unknown"


def _last_lines(text: str, count: int) -> list[str]:
    """The last ``count`` lines of ``text`` that are not blank."""
    return [line for line in text.splitlines() if line.strip()][-count:]


def _state(stat: Path) -> str | None:
    """The state letter of a ``/proc/.../stat`` file (None when it cannot be read).
    It follows the command name, which may hold spaces or ')'."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _not_permitted(pid: int, detail: str) -> str:
    """Why a ptrace-level access to ``pid`` was refused, and what would permit it."""
    scope = ""
    with contextlib.suppress(OSError):
        scope = Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip()
    hint = (
        "attach as the process's user or as root (with CAP_SYS_PTRACE, which a process "
        "that made itself non-dumpable also needs)"
    )
    if scope and scope != "0":
        hint += f"; Yama's ptrace_scope is {scope} (0 lets a user attach to its own processes)"
    # "container" is the variable systemd and podman set, in lower case
    if Path("/.dockerenv").exists() or os.environ.get("container"):  # noqa: SIM112
        hint += "; in a container, ptrace needs the SYS_PTRACE capability"
    return f"not permitted to attach to process {pid} ({detail}): {hint}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = _state(Path(f"/proc/{pid}/stat"))
    return state is not None and state != "Z"


def _started(target: Target, directory: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (directory / "started.json").exists() or (directory / "error").exists():
            return True
        if not _alive(target.pid):
            raise AttachError(f"process {target.pid} exited during the attach")
        time.sleep(0.05)
    return False


def _wait_for_result(target: Target, directory: Path, interval: float) -> dict[str, Any]:
    """The agent's result, once it is written. The agent touches ``started.json``
    at every sample: silent for longer than ``interval`` plus ``ANALYSIS_SLACK``,
    it is asked to stop."""
    heartbeat = directory / "started.json"
    while True:
        # Read "finished" before the result: the agent writes its result and then
        # "finished", so a result missing after "finished" was seen is missing.
        finished = (directory / "finished").exists()
        result = directory / "result.json"
        if result.exists():
            _await_finish(directory, target.pid)
            try:
                with open(result, encoding="utf-8") as src:
                    data = json.load(src)
            except ValueError as exc:
                raise AttachError(
                    f"process {target.pid} sent a result that is not JSON: {exc}"
                ) from None
            if not isinstance(data, dict):
                raise AttachError(f"process {target.pid} sent no result")
            return data
        error = directory / "error"
        if error.exists():
            lines = error.read_text(errors="replace").strip().splitlines() or ["no reason given"]
            what = clean(lines[0], 300)
            if what.startswith(("ModuleNotFoundError", "ImportError", "PermissionError")):
                what += (
                    f" (the target's user must be able to read reftrace at "
                    f"{Path(__file__).resolve().parent}, or have reftrace installed)"
                )
            raise AttachError(f"reftrace failed inside process {target.pid}: {what}")
        if finished:
            raise AttachError(f"reftrace stopped inside process {target.pid} with no result")
        if not _alive(target.pid):
            raise AttachError(f"process {target.pid} exited during the attach")
        try:
            silent = time.time() - heartbeat.stat().st_mtime
        except OSError:
            silent = 0.0
        if silent > interval + ANALYSIS_SLACK:
            _stop(directory, target.pid)
            raise AttachError(
                f"reftrace inside process {target.pid} gave no sign of life for "
                f"{silent:.0f} s; the attach was stopped"
            )
        time.sleep(0.1)


def _await_finish(directory: Path, pid: int, timeout: float = 10.0) -> None:
    """Wait until the agent has cleaned up after itself and its thread is gone:
    the attach returns with nothing of reftrace running in the target (and the
    next attach never meets a thread on its way out)."""
    deadline = time.monotonic() + timeout
    while not (directory / "finished").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        started = json.loads((directory / "started.json").read_text(encoding="utf-8"))
        thread = int(started["thread"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # an agent that never started, or one of an older reftrace
    if started.get("pid") != pid:
        return  # the target sees itself under another pid (a container): its ids are not ours
    task = Path(f"/proc/{pid}/task/{thread}")
    while task.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def _stop(directory: Path, pid: int) -> None:
    """Ask the agent to stop, and wait (briefly) until it has."""
    try:
        (directory / "stop").touch()
    except OSError:
        return
    if (directory / "claimed").exists():
        _await_finish(directory, pid)
