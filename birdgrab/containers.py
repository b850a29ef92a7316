"""FFmpeg's demuxers (through PyAV) over a byte range of a file: what `probe` and `decoders` both open.

`probe` needs a container only for the few formats whose length or rate is not in plain headers
(MP4, FLAC without a total, HE-AAC), and imports this module only then, so that verifying an mp3
or a WAV download never loads PyAV. `decoders` opens every file this way. Neither imports the
other for it.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import av
import av.container


class _ByteRange(io.RawIOBase):
    """A read-only view of bytes [start, end) of a file, as a file of its own (what FFmpeg is given)."""

    def __init__(self, path: Path, start: int, end: int):
        super().__init__()
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed with the view)
        self._start, self._size, self._position = start, end - start, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        self._file.seek(self._start + self._position)
        got = self._file.readinto(memoryview(buffer)[:wanted])
        self._position += got or 0
        return got or 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        self._position = max(0, min(base + offset, self._size))
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._file.close()
        super().close()


@contextlib.contextmanager
def open_container(
    path: Path | str, start: int = 0, end: int | None = None, demuxer: str | None = None
) -> Iterator[av.container.InputContainer]:
    """Bytes [start, end) of `path` opened with FFmpeg's demuxer named `demuxer` (None: FFmpeg sniffs)."""
    path = Path(path)
    if start == 0 and end is None:
        with av.open(str(path), format=demuxer) as container:
            yield container
        return
    size = path.stat().st_size if end is None else end
    with _ByteRange(path, start, size) as view, av.open(view, format=demuxer) as container:
        yield container
