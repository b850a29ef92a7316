"""The audio core: fingerprint decoded recordings (cutting them into chunks: `birdgrab.dataset.cutting`).

What a file is comes from `birdgrab.probe` (its bytes, never its name); decoding, sample-exact as
FFmpeg, from `birdgrab.decoders`.

Everything streams in blocks, so memory stays bounded whatever the length of a recording.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from birdgrab.decoders import decode_blocks, mono_blocks, open_decoder
from birdgrab.probe import AudioError, probe

# The decoding names are re-exported: callers read a recording through this module.
__all__ = [
    "AudioError",
    "Fingerprint",
    "decode_blocks",
    "pcm_fingerprint",
    "probe",
    "similarity",
]

_FINGERPRINT_RATE = 16000  # birdsong sits at 1-8 kHz, above chromaprint's 11 kHz analysis rate
_FINGERPRINT_WINDOW = 2048  # 128 ms
_FINGERPRINT_HOP = 512  # 32 ms: windows overlap by 3/4, so a sub-hop misalignment changes little
_FINGERPRINT_BANDS_HZ = np.geomspace(500.0, 7500.0, 34)  # 33 log-spaced bands
_FINGERPRINT_MAX_S = 120.0  # two copies of one recording agree from the start; bounds memory and time


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
