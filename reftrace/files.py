"""Path arguments and files written whole or not at all.

Every function of reftrace that takes a file name checks it here, so that a
bad argument gets the same clear error everywhere, and every file reftrace
writes goes through :func:`write_atomic`: a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator, Sequence
from typing import IO


def path_argument(path: object, what: str) -> str:
    """``path`` as a non-empty str, or ``TypeError``/``ValueError`` naming ``what``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} needs a file path (str or os.PathLike), got {type(path).__name__}")
    name = os.fspath(path)
    if not isinstance(name, str):
        raise TypeError(f"{what} needs a str file path, got {type(name).__name__}")
    if not name:
        raise ValueError(f"{what} needs a file path, got an empty string")
    return name


def target_path(path: object, what: str) -> str:
    """``path`` as a str naming a file that can be created, or a clear error.

    ``TypeError`` when it is not a str or path-like; ``FileNotFoundError``
    when its directory does not exist, ``NotADirectoryError`` when that is a
    file, ``IsADirectoryError`` when ``path`` itself is a directory.
    """
    name = path_argument(path, what)
    if os.path.isdir(name):
        raise IsADirectoryError(errno.EISDIR, f"cannot write {name}: it is a directory, not a file")
    directory = os.path.dirname(os.path.abspath(name))
    if not os.path.exists(directory):
        raise FileNotFoundError(
            errno.ENOENT, f"cannot write {name}: directory {directory} does not exist"
        )
    if not os.path.isdir(directory):
        raise NotADirectoryError(
            errno.ENOTDIR, f"cannot write {name}: {directory} is not a directory"
        )
    return name


def output_format(name: str, format: object, formats: Sequence[str], what: str) -> str:
    """The format to write ``name`` in: ``format`` if given, else the file's
    suffix, else the first of ``formats``; ``ValueError`` when not one of them."""
    if format is not None and not isinstance(format, str):
        raise TypeError(f"{what} format must be a str or None, got {type(format).__name__}")
    suffix = os.path.splitext(name)[1].lstrip(".")
    fmt = (format or suffix or formats[0]).lower()
    if fmt not in formats:
        source = "" if format else f" (from the suffix of {name!r})" if suffix else ""
        raise ValueError(f"unknown format {fmt!r}{source}: use one of {', '.join(formats)}")
    return fmt


@contextlib.contextmanager
def atomic_file(name: str) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``name`` only when the block completes.

    Written to a temporary file in the same directory, then renamed over
    ``name``: readers never see half a file, and a failure leaves nothing.
    """
    directory = os.path.dirname(os.path.abspath(name))
    base = os.path.basename(name)[:100]
    temp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as error:
        raise OSError(error.errno, f"cannot write {name}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def write_atomic(name: str, data: bytes) -> None:
    """Write ``data`` to ``name`` whole or not at all (see :func:`atomic_file`)."""
    with atomic_file(name) as handle:
        handle.write(data)
