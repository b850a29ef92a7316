"""Filesystem helpers: nothing half-written is ever visible, and no API string becomes a path unchecked."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".part"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside `path`; on success fsync and rename it into place.

    On any exception the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path, "wb") as handle:
        handle.write(data)


def commit_temp(tmp: Path, path: Path) -> None:
    """Move a finished temporary file into place durably."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def safe_child(root: Path, *parts: str) -> Path:
    """`root/part/...`, refusing any part that is empty, absolute, '.'/'..', or contains a separator or NUL."""
    for part in parts:
        if (
            not part
            or part in (".", "..")
            or "/" in part
            or "\\" in part
            or "\x00" in part
            or len(part.encode()) > 255
        ):
            raise ValueError(f"unsafe path component {part[:60]!r}")
    path = Path(root).joinpath(*parts)
    resolved_root = Path(root).resolve()
    if resolved_root not in path.resolve().parents and path.resolve() != resolved_root:
        raise ValueError(f"path escapes {root}")
    return path


def remove_stale_temps(folder: Path) -> int:
    """Remove temporary files a killed run left behind in `folder` (recursively); returns how many."""
    removed = 0
    if not Path(folder).is_dir():
        return 0
    for tmp in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed
