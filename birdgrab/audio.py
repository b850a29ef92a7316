"""The audio core: cut decoded recordings into dataset chunks, fingerprint them.

What a file is comes from `birdgrab.probe` (its bytes, never its name); decoding, sample-exact as
FFmpeg, from `birdgrab.decoders`. Chunks are written with soundfile (plain 16-bit PCM WAV).

Everything streams in blocks, so memory stays bounded whatever the length of a recording.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from birdgrab.decoders import decode_blocks, mono_blocks, open_decoder
from birdgrab.files import TEMP_SUFFIX, commit_temp, safe_child
from birdgrab.probe import AudioError, probe

# The decoding names are re-exported: callers read a recording through this module.
__all__ = [
    "SAME_RECORDING_SIMILARITY",
    "AudioError",
    "ChunkInfo",
    "ChunkResult",
    "Fingerprint",
    "chunk_recording",
    "decode_blocks",
    "pcm_fingerprint",
    "pcm_sha256",
    "probe",
    "similarity",
]

# libsndfile reads int16 sample k as k / 32768, so this scale gives 16-bit sources back exactly.
_PCM16_SCALE = 32768.0
_SILENCE_DBFS = -120.0  # the level reported for digital silence, whose true level is -inf


def _to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples as rounded, clipped int16: the one quantiser behind both chunks and `pcm_sha256`."""
    scaled = samples * np.float32(_PCM16_SCALE)
    np.clip(scaled, -_PCM16_SCALE, _PCM16_SCALE - 1, out=scaled)
    return np.rint(scaled, out=scaled).astype(np.int16)


# --------------------------------------------------------------------------- chunking


@dataclass(frozen=True)
class ChunkInfo:
    """One chunk written to the dataset; chunk `index` covers [index * chunk_s, (index + 1) * chunk_s)."""

    index: int
    file_name: str
    offset_s: float
    duration_s: float
    padded_s: float  # zeros appended to a short last piece
    rms_dbfs: float  # level of the recorded part (padding excluded); digital silence reads -120


@dataclass(frozen=True)
class ChunkResult:
    """What `chunk_recording` wrote, what it left out and why, and what it decoded."""

    chunks: list[ChunkInfo]
    dropped_silent: int  # chunks the silence gate removed
    dropped_short: int  # a last piece shorter than min_chunk_s (0 or 1)
    decoded_s: float  # length of the decoded audio, at its native sample rate
    source_sample_rate: int
    source_channels: int


@dataclass(frozen=True)
class _WrittenChunk:
    info: ChunkInfo
    temp: Path


def _rms_dbfs(samples: np.ndarray) -> float:
    mean_square = float(np.dot(samples, samples)) / len(samples)
    return max(10.0 * math.log10(mean_square), _SILENCE_DBFS) if mean_square > 0 else _SILENCE_DBFS


class _ChunkWriter:
    """Cuts a stream of mono samples into fixed-length chunks, each written to a temporary WAV at once.

    Only temporary files exist until `commit`: the silence gate needs the loudest chunk, which is
    known only at the end. `discard` removes every temporary file.
    """

    def __init__(self, out_dir: Path, stem: str, sample_rate: int, chunk_s: float):
        self.out_dir, self.stem, self.sample_rate, self.chunk_s = out_dir, stem, sample_rate, chunk_s
        self.buffer = np.zeros(round(chunk_s * sample_rate), dtype=np.float32)
        self.filled = 0
        self.written: list[_WrittenChunk] = []
        self.temps: list[Path] = []

    def add(self, samples: np.ndarray) -> None:
        """Append samples, writing a chunk each time the buffer fills."""
        while len(samples):
            take = min(len(self.buffer) - self.filled, len(samples))
            self.buffer[self.filled : self.filled + take] = samples[:take]
            self.filled += take
            samples = samples[take:]
            if self.filled == len(self.buffer):
                self.write_chunk()

    def write_chunk(self) -> None:
        """Write the buffer (zero-padded after `filled`) as the next chunk's temporary file."""
        index = len(self.written)
        self.buffer[self.filled :] = 0.0
        name = f"{self.stem}_{index:04d}.wav"
        fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=self.out_dir)
        os.close(fd)
        temp = Path(temp_name)
        self.temps.append(temp)
        sf.write(temp, _to_pcm16(self.buffer), self.sample_rate, format="WAV", subtype="PCM_16")
        info = ChunkInfo(
            index=index,
            file_name=name,
            offset_s=index * self.chunk_s,
            duration_s=self.chunk_s,
            padded_s=(len(self.buffer) - self.filled) / self.sample_rate,
            rms_dbfs=_rms_dbfs(self.buffer[: self.filled]),
        )
        self.written.append(_WrittenChunk(info, temp))
        self.filled = 0

    def finish(self, min_samples: int) -> int:
        """Write the last piece padded if it has at least `min_samples`; returns how many pieces were dropped."""
        if self.filled == 0:
            return 0
        if self.filled < min_samples:
            return 1
        self.write_chunk()
        return 0

    def commit(self, kept: list[_WrittenChunk]) -> None:
        """Rename the kept chunks into place and delete the other temporary files."""
        for chunk in kept:
            commit_temp(chunk.temp, safe_child(self.out_dir, chunk.info.file_name))
        self.discard()

    def discard(self) -> None:
        for temp in self.temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _loud_enough(
    chunks: list[_WrittenChunk], gate_db: float | None, floor_dbfs: float
) -> list[_WrittenChunk]:
    """The chunks the silence gate keeps: at most `gate_db` below the loudest and not below `floor_dbfs`."""
    if gate_db is None or not chunks:
        return chunks
    loudest = max(chunk.info.rms_dbfs for chunk in chunks)
    threshold = max(loudest - gate_db, floor_dbfs)
    return [chunk for chunk in chunks if chunk.info.rms_dbfs >= threshold]


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
    """Cut a recording into mono 16-bit WAV chunks of exactly `chunk_s` seconds named `{stem}_{nnnn}.wav`.

    One streaming pass: decode, mix to mono, resample (soxr HQ), cut. Chunk k covers
    [k * chunk_s, (k + 1) * chunk_s), so names stay stable when the gate changes. A last piece of at
    least `min_chunk_s` is zero-padded to full length; a shorter one is dropped. The silence gate
    drops chunks more than `gate_db` below the recording's loudest chunk or below `floor_dbfs`;
    `gate_db=None` keeps everything. Files appear atomically and only when the whole recording
    decoded: on any error no chunk of this run and no temporary file remains. Raises `AudioError`
    for a file that is not audio or fails to decode.

    >>> result = chunk_recording("cache/xc/123456.mp3", "dataset/Parus_major", "xc-123456")  # doctest: +SKIP
    >>> [chunk.file_name for chunk in result.chunks]  # doctest: +SKIP
    ['xc-123456_0000.wav', 'xc-123456_0001.wav', 'xc-123456_0003.wav']
    """
    if not chunk_s > 0 or not 0 <= min_chunk_s <= chunk_s:
        raise ValueError(f"need 0 < chunk_s and 0 <= min_chunk_s <= chunk_s, got {chunk_s}, {min_chunk_s}")
    decoder = open_decoder(src)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _ChunkWriter(out_dir, stem, sample_rate, chunk_s)
    try:
        for samples in mono_blocks(decoder, sample_rate):
            writer.add(samples)
        dropped_short = writer.finish(min_samples=math.ceil(min_chunk_s * sample_rate))
        kept = _loud_enough(writer.written, gate_db, floor_dbfs)
        writer.commit(kept)
    except BaseException:
        writer.discard()
        raise
    return ChunkResult(
        chunks=[chunk.info for chunk in kept],
        dropped_silent=len(writer.written) - len(kept),
        dropped_short=dropped_short,
        decoded_s=decoder.frames_decoded / decoder.sample_rate,
        source_sample_rate=decoder.sample_rate,
        source_channels=decoder.channels,
    )


# --------------------------------------------------------------------------- duplicates


def pcm_sha256(path: Path | str) -> str:
    """SHA-256 of the decoded audio as mono 16-bit PCM at the native rate: equal for the same sound in any container.

    A wav and a flac of the same samples hash alike; a lossy re-encode does not (use `pcm_fingerprint`).
    """
    digest = hashlib.sha256()
    decoder = open_decoder(path)
    for samples in mono_blocks(decoder, decoder.sample_rate):
        digest.update(_to_pcm16(samples).tobytes())
    return digest.hexdigest()


_FINGERPRINT_RATE = 16000  # birdsong sits at 1-8 kHz, above chromaprint's 11 kHz analysis rate
_FINGERPRINT_WINDOW = 2048  # 128 ms
_FINGERPRINT_HOP = 512  # 32 ms: windows overlap by 3/4, so a sub-hop misalignment changes little
_FINGERPRINT_BANDS_HZ = np.geomspace(500.0, 7500.0, 34)  # 33 log-spaced bands
_FINGERPRINT_MAX_S = 120.0  # two copies of one recording agree from the start; bounds memory and time
# `similarity` at or above which two files are one recording. Measured: re-encodes (mp3/wav/flac,
# 16-48 kHz, stereo/mono) score 0.98-1.0; different recordings of one species, even the sandbox's
# periodic synthetic songs, at most 0.75 (BENCHMARKS.md).
SAME_RECORDING_SIMILARITY = 0.9


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """The band-amplitude envelope of (the first two minutes of) a recording: when each part of the
    spectrum sounds. Codecs, sample rates and channel counts barely change it; a different
    recording, even of the same species singing the same way, has its notes at other times."""

    envelope: np.ndarray  # float32, (frames, bands)
    frame_s: float
    duration_s: float


def _windows(samples: Iterable[np.ndarray], size: int, hop: int) -> Iterator[np.ndarray]:
    """Overlapping windows (rows of `size` samples, `hop` apart) over a stream of 1-D blocks."""
    carry = np.zeros(0, dtype=np.float32)
    for block in samples:
        carry = np.concatenate([carry, block])
        count = (len(carry) - size) // hop + 1 if len(carry) >= size else 0
        if count:
            yield np.lib.stride_tricks.sliding_window_view(carry, size)[: count * hop : hop]
            carry = carry[count * hop :]


def _band_matrix() -> np.ndarray:
    """Sums FFT power bins into the fingerprint's log-spaced bands: shape (bins, bands)."""
    bin_hz = np.fft.rfftfreq(_FINGERPRINT_WINDOW, 1.0 / _FINGERPRINT_RATE)
    band = np.searchsorted(_FINGERPRINT_BANDS_HZ, bin_hz, side="right") - 1
    bands = len(_FINGERPRINT_BANDS_HZ) - 1
    in_range = (band >= 0) & (band < bands)
    matrix = np.zeros((len(bin_hz), bands), dtype=np.float32)
    matrix[np.flatnonzero(in_range), band[in_range]] = 1.0
    return matrix


def pcm_fingerprint(path: Path | str) -> Fingerprint:
    """Fingerprint the recording at `path`: robust to re-encoding, resampling and stereo/mono.

    Compare two with `similarity`.
    """
    decoder = open_decoder(path)
    window = np.hanning(_FINGERPRINT_WINDOW).astype(np.float32)
    bands = _band_matrix()
    max_frames = int(_FINGERPRINT_MAX_S * _FINGERPRINT_RATE / _FINGERPRINT_HOP)
    envelopes: list[np.ndarray] = []
    frames_seen = 0
    for frames in _windows(mono_blocks(decoder, _FINGERPRINT_RATE), _FINGERPRINT_WINDOW, _FINGERPRINT_HOP):
        if frames_seen < max_frames:
            power = (np.abs(np.fft.rfft(frames[: max_frames - frames_seen] * window, axis=1)) ** 2) @ bands
            envelopes.append(np.sqrt(power, dtype=np.float32))
            frames_seen += len(power)
    envelope = np.concatenate(envelopes) if envelopes else np.zeros((0, bands.shape[1]), dtype=np.float32)
    return Fingerprint(
        envelope=envelope,
        frame_s=_FINGERPRINT_HOP / _FINGERPRINT_RATE,
        duration_s=decoder.frames_decoded / decoder.sample_rate,
    )


def similarity(a: Fingerprint, b: Fingerprint, max_shift_s: float = 0.25) -> float:
    """How alike two fingerprints are: the correlation of their envelopes at the best alignment
    (shifts up to `max_shift_s` absorb codec delays), clipped to 0..1. The same sound re-encoded
    scores about 0.95 or more; different recordings of one species well below 0.9."""
    max_shift = round(max_shift_s / a.frame_s)
    best = 0.0
    for shift in range(-max_shift, max_shift + 1):
        x = a.envelope[shift:] if shift >= 0 else a.envelope
        y = b.envelope if shift >= 0 else b.envelope[-shift:]
        overlap = min(len(x), len(y))
        if overlap < 2:
            continue
        x, y = x[:overlap].ravel(), y[:overlap].ravel()
        if x.std() == 0 or y.std() == 0:
            continue
        best = max(best, float(np.corrcoef(x, y)[0, 1]))
    return best
