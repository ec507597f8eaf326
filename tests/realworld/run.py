"""Run the real-world cases against reftrace and judge the results.

For every (case, version) in ``cases.py`` this creates (once, then reuses) a
virtualenv under ``<repo>/.realworld-venvs/<python>/<package>-<version>`` with
the current interpreter, installs ``-e <repo>`` plus the pinned release, and
runs ``cases/<name>.py`` in it twice:

1. *plain*: without reftrace (``REFTRACE_REALWORLD_PLAIN=1``), giving the ground
   truth from a weak reference and ``gc.collect()`` alone;
2. *watched*: inside ``reftrace.watch()``, giving reftrace's verdict.

A result is right when the ground truth matches the release's role (the leaking
release leaks, the fixed one does not, a bounded cache really keeps its
entries) and reftrace agrees: a leak reported, from the expected root and
naming the holding reference, for the leaking release; no leak, and nothing
kept alive by reftrace itself, for fixed and bounded ones.

    python tests/realworld/run.py                 # everything
    python tests/realworld/run.py --case flake8_style_guide_cache
    python tests/realworld/run.py --rebuild       # recreate the venvs
    python tests/realworld/run.py --json out.json # full results, traces included

Exit status: 0 when every result is right, 1 when one is wrong, 2 when a venv
could not be built.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
ROOT = HERE.parents[1]
VENVS = ROOT / ".realworld-venvs"
SCRIPT_TIMEOUT = 300
MARKER = "realworld-venv.json"


def _load_cases() -> Any:
    # Loaded by path under a private name: "cases" would clash with the
    # cases/ directory and with any other module of that name on sys.path.
    name = "reftrace_realworld_cases"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


cases = _load_cases()


class SetupError(RuntimeError):
    """A venv could not be created or a release could not be installed."""


# --------------------------------------------------------------------------- venvs


def python_tag() -> str:
    return f"{sys.implementation.name}{sys.version_info.major}.{sys.version_info.minor}"


def venv_dir(case: Any, version: str) -> Path:
    return VENVS / python_tag() / f"{case.package}-{version}"


def venv_python(directory: Path) -> Path:
    if os.name == "nt":
        return directory / "Scripts" / "python.exe"
    return directory / "bin" / "python"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock, so two runs (e.g. pytest-xdist workers) never build one venv together."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, best effort
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_venv(case: Any, version: str, rebuild: bool = False) -> Path:
    """The python of a venv with reftrace (editable) and ``case.package==version``; built once."""
    directory = venv_dir(case, version)
    python = venv_python(directory)
    wanted = {
        "format": 1,
        "requirements": case.requirements(version),
        "pyproject": _file_digest(ROOT / "pyproject.toml"),
        "base_python": sys.version,
        "base_executable": sys.executable,
    }
    marker = directory / MARKER
    with _locked(directory.with_name(directory.name + ".lock")):
        if not rebuild and python.exists() and marker.exists():
            try:
                if json.loads(marker.read_text()) == wanted:
                    return python
            except ValueError:
                pass
        shutil.rmtree(directory, ignore_errors=True)
        _run_setup([sys.executable, "-m", "venv", str(directory)], f"create venv {directory}")
        _run_setup(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-e",
                str(ROOT),
                *case.requirements(version),
            ],
            f"install {' '.join(case.requirements(version))}",
        )
        marker.write_text(json.dumps(wanted, indent=1))
    return python


def _run_setup(command: list[str], what: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, env=_clean_env())
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()
        raise SetupError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(output[-25:]))


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.update(extra)
    return env


# --------------------------------------------------------------------------- running


@dataclass
class Result:
    case: Any
    version: str
    role: str
    plain: dict[str, Any] | None = None
    watched: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None
    setup_seconds: float = 0.0
    run_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.problems

    @property
    def label(self) -> str:
        return f"{self.case.name}[{self.version}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case.name,
            "package": self.case.package,
            "version": self.version,
            "role": self.role,
            "ok": self.ok,
            "skipped": self.skipped,
            "problems": self.problems,
            "error": self.error,
            "setup_seconds": round(self.setup_seconds, 2),
            "run_seconds": round(self.run_seconds, 2),
            "plain": self.plain,
            "watched": self.watched,
        }


def run_script(python: Path, name: str, plain: bool) -> dict[str, Any]:
    """Run ``cases/<name>.py`` with ``python`` and parse its one JSON line."""
    env = _clean_env(PYTHONDONTWRITEBYTECODE="1")  # no __pycache__ in cases/
    env.pop("REFTRACE_REALWORLD_PLAIN", None)
    if plain:
        env["REFTRACE_REALWORLD_PLAIN"] = "1"
    try:
        proc = subprocess.run(
            [str(python), str(CASES_DIR / f"{name}.py")],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(CASES_DIR),
            timeout=SCRIPT_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"{name} ({'plain' if plain else 'watched'}) timed out after {exc.timeout}s"
        ) from None
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-30:])
        raise RuntimeError(
            f"{name} ({'plain' if plain else 'watched'}) exited {proc.returncode}:\n{tail}"
        )
    try:
        data: dict[str, Any] = json.loads(lines[-1])
    except ValueError:
        raise RuntimeError(f"{name}: last stdout line is not JSON: {lines[-1][:300]!r}") from None
    data["stderr"] = proc.stderr[-4000:]
    return data


def judge(case: Any, role: str, plain: dict[str, Any], watched: dict[str, Any] | None) -> list[str]:
    """What is wrong with one result (empty when it is right)."""
    problems = []
    leaking = role == "leaking"
    # The ground truth first: a case whose premise fails says nothing about reftrace.
    if plain["weakref_alive"] != leaking:
        if leaking:
            problems.append(
                "ground truth: the leak did not reproduce (every tracked object was collected)"
            )
        else:
            problems.append(f"ground truth: this {role} release leaks (alive: {plain['alive']})")
    if role == "bounded" and not all(plain["kept_alive"]):
        problems.append(
            "ground truth: the cache kept nothing alive; the case does not exercise retention"
        )
    if watched is None:
        return problems
    if not watched["reftrace"]:
        problems.append(
            f"reftrace.watch unavailable in the venv: {watched.get('reftrace_unavailable')}"
        )
        return problems
    leaks = watched.get("leaks") or []
    if leaking:
        if watched["leaked"] is not True:
            problems.append("reftrace reported no leak for the leaking release")
        if not watched["weakref_alive"]:
            problems.append(
                "the tracked objects died in the watched run: the verdict has no ground truth"
            )
        text = "\n".join(
            [watched.get("trace", ""), *(str(leak.get("expression")) for leak in leaks)]
        )
        if watched["leaked"] and case.holder and case.holder not in text:
            problems.append(f"the leak trace does not name the holding reference {case.holder!r}")
        roots = sorted({str(leak.get("root")) for leak in leaks})
        if watched["leaked"] and case.root and case.root not in roots:
            problems.append(
                f"leak path root is {', '.join(roots) or 'missing'}, expected {case.root!r}"
            )
    else:
        if watched["leaked"]:
            problems.append(
                f"false alarm: reftrace reported {watched['leak_count']} leak(s), {role} release"
            )
        if watched["weakref_alive"] and not plain["weakref_alive"]:
            problems.append(
                "reftrace kept a tracked object alive (it is collected without reftrace)"
            )
    return problems


def run_pair(
    case: Any, version: str, role: str, rebuild: bool = False, plain_only: bool = False
) -> Result:
    """Build (or reuse) the venv for one release, run its case plain and watched, judge it."""
    result = Result(case, version, role)
    result.skipped = case.unsupported(version, sys.version_info[:2])
    if result.skipped:
        return result
    started = time.perf_counter()
    try:
        python = ensure_venv(case, version, rebuild=rebuild)
    except SetupError as exc:
        result.error = str(exc)
        result.setup_seconds = time.perf_counter() - started
        return result
    result.setup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    try:
        result.plain = run_script(python, case.name, plain=True)
        if not plain_only:
            result.watched = run_script(python, case.name, plain=False)
    except RuntimeError as exc:
        result.error = str(exc)
    else:
        result.problems = judge(case, role, result.plain, result.watched)
    result.run_seconds = time.perf_counter() - started
    return result


def run_all(
    selected: list[tuple[Any, str, str]],
    jobs: int = 3,
    rebuild: bool = False,
    plain_only: bool = False,
) -> list[Result]:
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_pair, c, v, r, rebuild, plain_only) for c, v, r in selected]
        return [future.result() for future in futures]


# --------------------------------------------------------------------------- output


def _truth(result: Result) -> str:
    if result.plain is None:
        return "-"
    return "alive" if result.plain["weakref_alive"] else "collected"


def _verdict(result: Result) -> str:
    watched = result.watched
    if watched is None:
        return "-"
    if not watched["reftrace"]:
        return "unavailable"
    if watched["leaked"]:
        roots = ",".join(sorted({str(leak.get("root")) for leak in watched.get("leaks") or []}))
        return f"leak x{watched['leak_count']} ({roots})"
    return "clean"


def table(results: list[Result]) -> str:
    headers = [
        "case",
        "package==version",
        "role",
        "ground truth",
        "reftrace",
        "holder",
        "result",
        "secs",
    ]
    rows = []
    for r in results:
        holder = "-"
        if r.role == "leaking" and r.watched and r.watched.get("leaked"):
            holder = "named" if not any("holding reference" in p for p in r.problems) else "MISSING"
        rows.append(
            [
                r.case.name,
                f"{r.case.package}=={r.version}",
                r.role,
                _truth(r),
                _verdict(r),
                holder,
                "skipped" if r.skipped else "ok" if r.ok else ("ERROR" if r.error else "WRONG"),
                f"{r.setup_seconds + r.run_seconds:.1f}",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def details(results: list[Result]) -> str:
    out = []
    for r in results:
        if r.skipped:
            out.append(f"\n{r.label} skipped: {r.skipped}")
            continue
        if r.ok:
            continue
        out.append(f"\n{r.label} ({r.role}):")
        if r.error:
            out.extend("    " + line for line in r.error.splitlines())
        for problem in r.problems:
            out.append(f"  - {problem}")
        if r.watched and r.watched.get("trace") and r.watched.get("leaked") is not None:
            out.append("  reftrace report:")
            out.extend("    " + line for line in r.watched["trace"].splitlines()[:60])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", help="run only this case (repeatable)")
    parser.add_argument("--rebuild", action="store_true", help="recreate the venvs")
    parser.add_argument("--plain-only", action="store_true", help="ground truth only, no reftrace")
    parser.add_argument("--jobs", "-j", type=int, default=3, help="parallel venv builds / runs")
    parser.add_argument("--json", metavar="PATH", help="write full results (traces included) here")
    parser.add_argument(
        "--traces", action="store_true", help="print the leak trace of every leaking release"
    )
    args = parser.parse_args(argv)

    selected = cases.pairs()
    if args.case:
        unknown = set(args.case) - {c.name for c in cases.CASES}
        if unknown:
            parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
        selected = [p for p in selected if p[0].name in args.case]

    started = time.perf_counter()
    results = run_all(selected, jobs=args.jobs, rebuild=args.rebuild, plain_only=args.plain_only)
    elapsed = time.perf_counter() - started

    print(f"reftrace real-world cases, Python {sys.version.split()[0]} ({sys.executable})")
    print(table(results))
    if args.traces:
        for r in results:
            if r.watched and r.watched.get("leaked"):
                print(f"\n== {r.label}: str(report)\n{r.watched['trace']}")
    print(details(results))
    skipped = sum(bool(r.skipped) for r in results)
    print(
        f"\n{sum(r.ok and not r.skipped for r in results)}/{len(results) - skipped} right"
        + (f", {skipped} skipped" if skipped else "")
        + f" in {elapsed:.1f}s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_dict() for r in results], indent=1))
    if any(r.error and r.error.startswith(("create venv", "install")) for r in results):
        return 2
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
