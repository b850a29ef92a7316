"""Cutting one recording into chunks: decode, spool, choose windows, write WAVs atomically.

One streaming pass decodes the file (mixed to mono, resampled with soxr HQ by the audio module)
into a spool of 16-bit samples in an unnamed temporary file (beside the dataset on a disk), feeding the
windowing as it goes; the windowing then chooses windows with random access to the spool, and
only those are written. Memory stays bounded whatever the recording's length: the spool is on
disk and is read window by window (with `pread`, not a memory map, whose pages would count as
resident). Chunks appear atomically and only when the whole recording decoded: on any error no
chunk of this run and no temporary file remains.

Writing a chunk is two steps: `wav_bytes` makes the whole file in memory (a pure function of the
spooled samples), and the dataset's storage writes it whole with the recording's other chunks
(`Storage.writing_together`: on a disk a temporary file each, fsynced at once and renamed
together; in a bucket one PUT each).
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from birdgrab.dataset.windows import Choice, DecodedAudio, FixedWindows, Windowing, rms_dbfs
from birdgrab.decoders import mono_blocks, open_decoder
from birdgrab.storage import LocalStorage, Storage

if TYPE_CHECKING:  # the verifier's types; BirdNET itself is loaded only by a verifier that scores
    from birdgrab.models import ChunkVerdict
    from birdgrab.verify.windows import Checked, RecordingCheck

# libsndfile reads int16 sample k as k / 32768, so this scale gives 16-bit sources back exactly.
_PCM16_SCALE = 32768.0


def _to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples as rounded, clipped int16: the one quantiser behind the spool and the chunks."""
    scaled = samples * np.float32(_PCM16_SCALE)
    np.clip(scaled, -_PCM16_SCALE, _PCM16_SCALE - 1, out=scaled)
    return np.rint(scaled, out=scaled).astype(np.int16)


def _from_pcm16(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / np.float32(_PCM16_SCALE)


def wav_bytes(pcm: np.ndarray, sample_rate: int, frames: int | None = None) -> bytes:
    """A whole mono 16-bit PCM WAV file holding `pcm` (int16) zero-padded to `frames`: the
    canonical 44-byte header, the same bytes soundfile writes for `subtype="PCM_16"`."""
    frames = len(pcm) if frames is None else frames
    data_size = 2 * frames
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_size, b"WAVE",
        b"fmt ", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16,
        b"data", data_size,
    )  # fmt: skip
    return b"".join((header, pcm.astype("<i2", copy=False).tobytes(), bytes(data_size - 2 * len(pcm))))


@dataclass(frozen=True)
class ChunkInfo:
    """One chunk written to the dataset."""

    index: int
    file_name: str
    offset_s: float
    duration_s: float
    padded_s: float  # zeros appended to a short last piece
    rms_dbfs: float  # level of the recorded part (padding excluded); digital silence reads -120
    activity_s: float | None = None  # seconds of detected calls inside (None: not detected)
    noise: bool = False  # written to the noise folder: a window without calls
    verdict: ChunkVerdict | None = None  # what the verifier said (None: not verified)


@dataclass(frozen=True)
class ChunkResult:
    """What was written, what was left out and why, and what was decoded."""

    chunks: list[ChunkInfo]
    dropped: Counter[str]  # reason ("silent", "short", ...) -> windows left out
    decoded_s: float  # length of the decoded audio, at its native sample rate
    source_sample_rate: int
    source_channels: int
    verification: RecordingCheck | None = None  # the verifier's account of the recording

    @property
    def dropped_silent(self) -> int:
        return self.dropped["silent"]

    @property
    def dropped_short(self) -> int:
        return self.dropped["short"]


class WindowVerifier(Protocol):
    """Checks the chosen windows before they are written (`--verify`: `birdgrab.verify.windows`)."""

    def check(self, audio: DecodedAudio, choice: Choice) -> Checked:
        """The windows to write (a subset of `choice`'s), a verdict for each, and the recording's account."""
        ...


class PcmSpool:
    """A recording's samples as 16-bit PCM in an unnamed temporary file: appended, then read anywhere."""

    def __init__(self, folder: Path | None, sample_rate: int):
        self.sample_rate = sample_rate
        self.frames = 0
        self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 - closed by close()
        self._unflushed = False

    def append(self, samples: np.ndarray) -> None:
        self._file.write(_to_pcm16(samples).tobytes())
        self.frames += len(samples)
        self._unflushed = True

    def read(self, start: int, count: int) -> np.ndarray:
        return _from_pcm16(self.read_pcm16(start, count))

    def read_pcm16(self, start: int, count: int) -> np.ndarray:
        """`count` samples from `start` (fewer at the end) as spooled: int16."""
        if self._unflushed:  # pread reads the file, not the writer's buffer
            self._file.flush()
            self._unflushed = False
        count = max(0, min(count, self.frames - start))
        return np.frombuffer(os.pread(self._file.fileno(), 2 * count, 2 * start), dtype=np.int16)

    def close(self) -> None:
        self._file.close()


def cut_recording(
    src: Path | str,
    dataset: Storage,
    folder: str,
    stem: str,
    windowing: Windowing,
    *,
    sample_rate: int,
    chunk_frames: int,
    noise_folder: str | None = None,
    verifier: WindowVerifier | None = None,
) -> ChunkResult:
    """Decode `src` and write the windows `windowing` chooses as `{folder}/{stem}_{index:04d}.wav`
    in `dataset` (noise windows in `noise_folder`; "" is the dataset's top folder); a `verifier`
    checks them first and may leave some out.

    Raises `AudioError` for a file that is not audio or fails to decode, `OSError` when writing fails.
    """
    decoder = open_decoder(src)
    if folder:
        dataset.make_folder(folder)
    local = dataset.local_path()
    if local is not None:
        local.mkdir(parents=True, exist_ok=True)
    spool = PcmSpool(local, sample_rate)
    try:
        for samples in mono_blocks(decoder, sample_rate):
            spool.append(samples)
            windowing.feed(samples)
        choice = windowing.choose(spool)
        checked = verifier.check(spool, choice) if verifier is not None else None
        if checked is not None:
            choice = checked.choice
        folders = {False: folder, True: folder if noise_folder is None else noise_folder}
        chunks = _write(spool, choice, dataset, folders, stem, chunk_frames)
    finally:
        spool.close()
    if checked is not None:
        chunks = [replace(c, verdict=checked.verdicts.get((c.noise, c.index))) for c in chunks]
    return ChunkResult(
        chunks=chunks,
        dropped=choice.dropped,
        decoded_s=decoder.frames_decoded / decoder.sample_rate,
        source_sample_rate=decoder.sample_rate,
        source_channels=decoder.channels,
        verification=checked.recording if checked is not None else None,
    )


def _write(
    spool: PcmSpool, choice: Choice, dataset: Storage, folders: dict[bool, str], stem: str, chunk_frames: int
) -> list[ChunkInfo]:
    """Write every chosen window; they stand together once all are written (or none does)."""
    chunks = []
    rate = spool.sample_rate
    with dataset.writing_together() as write:
        for window in choice.windows:
            pcm = spool.read_pcm16(window.start, window.frames)
            name = f"{stem}_{window.index:04d}.wav"
            folder = folders[window.noise]
            write(f"{folder}/{name}" if folder else name, wav_bytes(pcm, rate, chunk_frames))
            chunks.append(
                ChunkInfo(
                    index=window.index,
                    file_name=name,
                    offset_s=window.start / rate,
                    duration_s=chunk_frames / rate,
                    padded_s=(chunk_frames - len(pcm)) / rate,
                    rms_dbfs=rms_dbfs(_from_pcm16(pcm)),
                    activity_s=window.activity_s,
                    noise=window.noise,
                )
            )
    return chunks


def chunk_recording(
    src: Path | str,
    out_dir: Path | str,
    stem: str,
    *,
    sample_rate: int = 32000,
    chunk_s: float = 10.0,
    min_chunk_s: float = 3.0,
    gate_db: float | None = 25.0,
    floor_dbfs: float = -60.0,
) -> ChunkResult:
    """Cut a recording into mono 16-bit WAV chunks of exactly `chunk_s` seconds, on the clock.

    Chunk k covers [k * chunk_s, (k + 1) * chunk_s) (see `FixedWindows` for the last piece and
    the silence gate).

    >>> result = chunk_recording("cache/xc/123456.mp3", "dataset/Parus_major", "xc-123456")  # doctest: +SKIP
    >>> [chunk.file_name for chunk in result.chunks]  # doctest: +SKIP
    ['xc-123456_0000.wav', 'xc-123456_0001.wav', 'xc-123456_0003.wav']
    """
    if not chunk_s > 0 or not 0 <= min_chunk_s <= chunk_s:
        raise ValueError(f"need 0 < chunk_s and 0 <= min_chunk_s <= chunk_s, got {chunk_s}, {min_chunk_s}")
    chunk_frames = round(chunk_s * sample_rate)
    windowing = FixedWindows(
        chunk_frames, math.ceil(min_chunk_s * sample_rate), gate_db, floor_dbfs, rate=sample_rate
    )
    return cut_recording(
        src, LocalStorage(out_dir), "", stem, windowing, sample_rate=sample_rate, chunk_frames=chunk_frames
    )
