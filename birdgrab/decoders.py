"""Decoding: every file `probe` accepts, as float32 blocks at its native rate, sample for sample as FFmpeg.

The decoder stack is PyAV (FFmpeg's demuxers and decoders in a self-contained wheel), chosen on
measurements (BENCHMARKS.md): it reads every kind of file in the real-encoder corpus to FFmpeg's
exact sample count, where libsndfile and miniaudio refuse or misread a third of them (MPEG-2.5,
Layer II, AAC, Opus, RF64, WAVs with unknown sizes, FLAC without a total), and it decodes mp3 as
fast as miniaudio. The decoder reads only the bytes `probe` located as audio, so junk before the
first frame and ID3v1/APEv2/Lyrics tails are never decoded, and a LAME/Info frame is always where
FFmpeg looks for it (gapless: encoder delay and padding removed).

`decode_blocks(path)` and `AudioDecoder.blocks()` are what the chunker and the fingerprints read;
`mono_blocks` mixes to mono and resamples with soxr HQ. Memory is bounded by one block.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import av
import av.container
import numpy as np
import soxr

from birdgrab.probe import AudioError, AudioFormat, AudioInfo, probe

BLOCK_FRAMES = 1 << 16
"""Frames decoded per block: large enough that per-block Python work is noise, small enough to be cheap."""

# FFmpeg's demuxer for each sniffed format: named, so FFmpeg never second-guesses the sniffer.
_DEMUXERS: dict[AudioFormat, str] = {
    "mp3": "mp3",
    "mp2": "mp3",
    "mp1": "mp3",
    "aac": "aac",
    "m4a": "mov",
    "wav": "wav",
    "flac": "flac",
    "ogg": "ogg",
}


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
    path: Path | str, start: int = 0, end: int | None = None, audio_format: AudioFormat | None = None
) -> Iterator[av.container.InputContainer]:
    """Bytes [start, end) of `path` opened with FFmpeg's demuxer for `audio_format` (None: FFmpeg sniffs)."""
    path = Path(path)
    demuxer = _DEMUXERS[audio_format] if audio_format else None
    if start == 0 and end is None:
        with av.open(str(path), format=demuxer) as container:
            yield container
        return
    size = path.stat().st_size if end is None else end
    with _ByteRange(path, start, size) as view, av.open(view, format=demuxer) as container:
        yield container


def _frames(container: av.container.InputContainer) -> Iterator[av.AudioFrame]:
    """Decoded frames of the first audio stream (the demuxer's last, empty packet flushes the decoder).

    A damaged packet is skipped, as FFmpeg's command line does; the length check catches real loss.
    """
    for packet in container.demux(container.streams.audio[0]):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue


@dataclass
class AudioDecoder:
    """A file opened for streaming decode at its native sample rate; `frames_decoded` counts as it goes."""

    path: Path
    info: AudioInfo
    frames_decoded: int = field(default=0, init=False)

    @property
    def format(self) -> AudioFormat:
        return self.info.format

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def channels(self) -> int:
        return self.info.channels

    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Yield float32 arrays of shape (frames, channels), every frame of the file, in order.

        Raises `AudioError` when the file cannot be decoded, or decodes to less than its header
        promised (a truncated file).
        """
        self.frames_decoded = 0
        info = self.info
        layout = "mono" if info.channels == 1 else "stereo" if info.channels == 2 else None
        try:
            with open_container(self.path, info.audio_start, info.audio_end, info.format) as container:
                if not container.streams.audio:
                    raise AudioError(f"not audio: {info.format} file without an audio track", self.path)
                # Packed float at the probed rate and channel count: a mid-stream change (a concatenated
                # mp3) is converted, so every block has the shape the caller was promised.
                resampler = av.AudioResampler(
                    format="flt", layout=layout or container.streams.audio[0].layout, rate=info.sample_rate
                )
                fifo = av.AudioFifo()
                for frame in _frames(container):
                    for converted in resampler.resample(frame):
                        converted.pts = None  # FFmpeg's trimming leaves gaps in pts the FIFO would refuse
                        fifo.write(converted)
                    while (block := fifo.read(block_frames)) is not None:
                        yield self._counted(block)
                for converted in resampler.resample(None):
                    converted.pts = None
                    fifo.write(converted)
                if (rest := fifo.read()) is not None:
                    yield self._counted(rest)
        except av.error.FFmpegError as exc:
            decoded_s = self.frames_decoded / info.sample_rate
            raise AudioError(
                f"corrupt {info.format}: decoding failed after {decoded_s:.1f} s", self.path
            ) from exc
        self._check_length()

    def _counted(self, frame: av.AudioFrame) -> np.ndarray:
        block = frame.to_ndarray().reshape(-1, self.info.channels)
        self.frames_decoded += len(block)
        return block

    def _check_length(self) -> None:
        """A declared length (FLAC's total, a WAV's data size) not reached means the file was cut short."""
        info = self.info
        decoded_s = self.frames_decoded / info.sample_rate
        if self.frames_decoded == 0:
            raise AudioError(f"corrupt {info.format}: no audio decoded", self.path)
        if not info.duration_estimated and decoded_s < info.duration_s - 0.001 and info.format == "flac":
            raise AudioError(
                f"corrupt {info.format}: decoding failed after {decoded_s:.1f} s of {info.duration_s:.1f} s",
                self.path,
            )


def open_decoder(path: Path | str) -> AudioDecoder:
    """Probe `path` (raising `AudioError` if it is not audio) and get it ready to decode block by block."""
    return AudioDecoder(Path(path), probe(path))


def decode_blocks(path: Path | str, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Every frame of `path` as float32 blocks of shape (frames, channels) at its native sample rate.

    >>> next(decode_blocks("XC123456.mp3")).shape  # doctest: +SKIP
    (65536, 2)
    """
    return open_decoder(path).blocks(block_frames)


def _mono(block: np.ndarray) -> np.ndarray:
    """The mean of the channels, as a matrix-vector product: numpy's mean over a short axis is far slower."""
    channels = block.shape[1]
    if channels == 1:
        return block[:, 0]
    return block @ np.full(channels, 1.0 / channels, dtype=np.float32)


def mono_blocks(decoder: AudioDecoder, sample_rate: int) -> Iterator[np.ndarray]:
    """The decoder's audio mixed to mono (mean of the channels) and resampled to `sample_rate` with soxr HQ."""
    if sample_rate == decoder.sample_rate:
        yield from (_mono(block) for block in decoder.blocks())
        return
    resampler = soxr.ResampleStream(decoder.sample_rate, sample_rate, 1, dtype="float32", quality="HQ")
    for block in decoder.blocks():
        yield resampler.resample_chunk(_mono(block))
    yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
