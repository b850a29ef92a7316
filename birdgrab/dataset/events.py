"""Finding bird calls in a recording: an energy detector in the birds' band over a per-recording noise floor.

How it works. While the recording is decoded, every 16 ms frame (at 32 kHz; Hann window) is turned
into the power of 24 log-spaced bands between 300 Hz and 10 kHz (or 0.45 x the sample rate): the
band of nearly all bird vocalisations, cuckoos, doves and owls included, above most wind, traffic
and handling rumble. Per band, the recording's own noise floor is the median of that band over the
whole recording and its spread the median absolute deviation, held between 1.5 dB (a band that never
varies, such as a constant insect tone) and 3 dB. A frame's score is its largest excess over the floor
in any band, in units of that band's spread; the bands under 1 kHz count 0.8 of their excess, since
wind gusts and passing cars reach them. An event starts where the score crosses `ON` and lasts while
it stays above `OFF` (hysteresis keeps one call one event); events shorter than 48 ms (clicks, twig
snaps) are dropped and events less than 300 ms apart joined.

Why the spread is capped. Where a bird sings through the whole recording (a storm-petrel's purr
filling 15 s), the median and the spread measure the bird, not the background: the spread reached
10 dB and more, the start threshold ~60 dB over the quiet stretches, and the recording got no window.
Capped at 3 dB, the start threshold is at most 18 dB over the median, which a singer's loud notes
still clear, while a stationary background keeps its own smaller spread. A lower floor (a low
percentile, the quietest stretches) was tried and rejected: wind gusts and passing cars then rise
over it and the bench's noise-only recordings got windows (window precision 0.64 against 1.0).

What it was compared with, on the bench's planted calls over field noise (bench/bench_windows.py)
and on real field recordings against BirdNET (bench/bench_windows_real.py): the silence gate's
broadband level (fixed windows kept within 25 dB of the loudest) keeps most windows of field noise,
since noise is rarely 25 dB under a call; a broadband energy detector is fooled by wind gusts below
1 kHz; a fixed threshold in dBFS fails across recordings whose noise levels differ by 20 dB; the
per-band floor with the max-over-bands score finds quiet narrow-band calls that a summed-band score
drowns in broadband noise. BirdNET's and Perch's learned detectors do better on real calls but need a
model; this needs numpy and a few MB per hour of audio (the band energies are kept as float16: 24
bands x 62.5 frames a second).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME = 512  # 16 ms at 32 kHz; frames do not overlap: detection, not analysis, and a third of the cost
HOP = 512
BANDS = 24
LOW_HZ = 300.0
LOW_VOICE_HZ = 1000.0  # bands starting below this share their frequencies with wind and traffic
LOW_VOICE_WEIGHT = 0.8  # ... so they count this much of their excess
HIGH_HZ = 10000.0
ON = 6.0  # score (band spreads above the floor) at which an event starts
OFF = 3.0  # ... and below which it ends
MIN_SPREAD_DB = 1.5
MAX_SPREAD_DB = 3.0  # a singer that fills the recording cannot raise the threshold past 18 dB
MIN_EVENT_S = 0.048
JOIN_GAP_S = 0.3


@dataclass(frozen=True)
class Event:
    """A stretch of detected activity, in seconds from the start of the recording."""

    start_s: float
    end_s: float


class EventDetector:
    """Fed mono samples in order; `events()` at the end. Memory: 48 bytes per 16 ms frame."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        high = min(HIGH_HZ, 0.45 * sample_rate)
        edges = np.geomspace(LOW_HZ, high, BANDS + 1)
        bins = np.fft.rfftfreq(FRAME, 1.0 / sample_rate)
        # Bands as runs of FFT bins, summed with reduceat: a matrix product would go through BLAS,
        # whose threads spin on a busy machine (measured: 3x the cost of the whole detector).
        first = np.searchsorted(bins, edges)
        keep = np.flatnonzero(np.diff(first) > 0)  # a band narrower than a bin has no bin of its own
        self._starts, self._stop = first[keep], int(first[-1])
        self._weights = np.where(edges[keep] < LOW_VOICE_HZ, LOW_VOICE_WEIGHT, 1.0).astype(np.float32)
        self._window = np.hanning(FRAME).astype(np.float32)
        self._carry = np.zeros(0, dtype=np.float32)
        self._levels: list[np.ndarray] = []

    def feed(self, samples: np.ndarray) -> None:
        carry = np.concatenate([self._carry, samples.astype(np.float32, copy=False)])
        count = (len(carry) - FRAME) // HOP + 1 if len(carry) >= FRAME else 0
        if count:
            frames = carry[: count * HOP].reshape(count, FRAME)  # HOP == FRAME: a view, no copy
            spectrum = np.fft.rfft(frames * self._window, axis=1)
            power = spectrum.real**2 + spectrum.imag**2
            power = np.add.reduceat(power[:, : self._stop], self._starts, axis=1)
            self._levels.append((10.0 * np.log10(power + 1e-12)).astype(np.float16))
            carry = carry[count * HOP :]
        self._carry = carry

    def scores(self) -> np.ndarray:
        """Per frame, the largest excess over the band's noise floor, in band spreads."""
        if not self._levels:
            return np.zeros(0, dtype=np.float32)
        levels = np.concatenate(self._levels).astype(np.float32)
        floor = np.median(levels, axis=0)
        spread = np.clip(1.4826 * np.median(np.abs(levels - floor), axis=0), MIN_SPREAD_DB, MAX_SPREAD_DB)
        return ((levels - floor) * (self._weights / spread)).max(axis=1)

    def events(self) -> list[Event]:
        """The detected events, in order."""
        return events_from_scores(self.scores(), HOP / self.sample_rate, FRAME / self.sample_rate)


def events_from_scores(scores: np.ndarray, hop_s: float, frame_s: float) -> list[Event]:
    """Hysteresis on the frame scores (runs above `OFF` that reach `ON`), then short runs dropped
    and near ones joined."""
    above = np.concatenate([[False], scores > OFF, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    starts, stops = edges[::2], edges[1::2]  # frame runs [start, stop)
    if not len(starts):
        return []
    peaks = np.maximum.reduceat(scores, starts)
    keep = (peaks > ON) & ((stops - starts) * hop_s >= MIN_EVENT_S)
    joined: list[list[float]] = []
    for start, stop in zip(starts[keep], stops[keep], strict=True):
        begin, end = start * hop_s, (stop - 1) * hop_s + frame_s
        if joined and begin - joined[-1][1] < JOIN_GAP_S:
            joined[-1][1] = end
        else:
            joined.append([begin, end])
    return [Event(round(b, 3), round(e, 3)) for b, e in joined]
