"""One birdgrab run at a time per folder, with an OS-level lock.

`flock` is released by the kernel when the process dies, however it dies, so a crashed run
never leaves a stale lock behind. The lock file holds the holder's pid and start time only to
say who holds it.
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


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the lock of `folder` (created if missing); raise LockHeld at once if another run has it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
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
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(info['pid'])}, started {info['started']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "pid unknown"


@contextlib.contextmanager
def folder_locks(*folders: Path) -> Iterator[None]:
    """Lock several folders (each once, in a fixed order so two runs cannot deadlock)."""
    unique = sorted({Path(f).resolve() for f in folders})
    with contextlib.ExitStack() as stack:
        for folder in unique:
            stack.enter_context(folder_lock(folder))
        yield
