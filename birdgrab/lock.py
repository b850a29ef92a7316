"""One birdgrab run at a time per folder, with an OS-level lock.

`flock` is released by the kernel when the process dies, however it dies, so a crashed run
never leaves a stale lock behind. The lock file holds the holder's pid and start time only to
say who holds it. A published folder (the dataset) must hold nothing but the dataset, so its lock
file lives beside it (`.dataset.birdgrab.lock` next to `dataset/`); other folders keep theirs inside.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from birdgrab.errors import LockHeld

LOCK_NAME = ".birdgrab.lock"


def lock_file(folder: Path, *, published: bool = False) -> Path:
    """Where the lock of `folder` lives: inside it, or beside it for a published folder."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}{LOCK_NAME}" if published else folder / LOCK_NAME


@contextlib.contextmanager
def folder_lock(folder: Path, *, published: bool = False) -> Iterator[None]:
    """Hold the lock of `folder` (created if missing); raise LockHeld at once if another run has it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = lock_file(folder, published=published)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(
                f"another birdgrab run ({_holder(fd)}) holds the lock on {folder}; try again later"
            ) from None
        info = {"pid": os.getpid(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        if published:
            _remove_inner_lock(folder)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(info['pid'])}, started {info['started']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "pid unknown"


def _remove_inner_lock(folder: Path) -> None:
    """Remove the lock file an older birdgrab left inside a published folder, unless a run holds it."""
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()
    except OSError:
        pass  # held by an older birdgrab still running: its folder, its file
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_locks(*folders: Path, published: Path | None = None) -> Iterator[None]:
    """Lock several folders and the published one (each once, in a fixed order so two runs cannot deadlock)."""
    unique = {Path(f).resolve(): False for f in folders}
    if published is not None:
        unique[Path(published).resolve()] = True
    with contextlib.ExitStack() as stack:
        for folder in sorted(unique):
            stack.enter_context(folder_lock(folder, published=unique[folder]))
        yield
