"""Atomic file output: a killed job never leaves a partial file under its final name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: mode of a file created by open(): mkstemp's 0600 would hide outputs from the rest of a group
_FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temp file next to ``path`` and rename it into place only on success.

    On any error (including ENOSPC) the temp file is removed and the error re-raised with the
    target path named, so the previous content of ``path`` (if any) survives untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            os.fchmod(f.fileno(), _FILE_MODE)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        raise OSError(
            e.errno, f"could not write {path}: {e.strerror or e} (check free disk space and permissions)"
        ) from e
    except BaseException:
        _remove_quietly(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole text file atomically."""
    with atomic_write(path) as f:
        f.write(text)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def check_writable(path: str | os.PathLike) -> None:
    """Raise the OSError that writing ``path`` atomically would raise, before any work is done (its
    folder is created, a temp file made there and removed)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; name a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent):
            pass
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e} (check the folder and its permissions)") from e
