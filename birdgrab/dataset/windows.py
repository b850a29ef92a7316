"""The windowing seam: which windows of a decoded recording become chunks.

A `Windowing` sees the recording's mono samples at the dataset rate as they are decoded (`feed`),
then chooses the windows to write (`choose`) with random access to the whole recording
(`DecodedAudio`). The cutter (`birdgrab.dataset.cutting`) decodes, spools and writes; it does not
know how windows are chosen, so new ways of choosing plug in here.

Two ways ship: `FixedWindows` (on the clock, with the silence gate) and `EventWindows` (placed on
the calls `birdgrab.dataset.events` detects). Both can cap a recording's windows (its most active
first) and give call-free windows to the noise class.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from birdgrab.dataset.events import Event, EventDetector
from birdgrab.dataset.options import ChunkOptions

SILENCE_DBFS = -120.0  # the level reported for digital silence, whose true level is -inf
NOISE_PER_RECORDING = 1  # call-free windows a recording gives the noise class: many recordings, not one


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dB full scale; digital silence (and no samples) reads -120."""
    if not len(samples):
        return SILENCE_DBFS
    mean_square = float(np.dot(samples, samples)) / len(samples)
    return max(10.0 * math.log10(mean_square), SILENCE_DBFS) if mean_square > 0 else SILENCE_DBFS


class DecodedAudio(Protocol):
    """A whole recording, decoded to mono float samples at `sample_rate`, readable anywhere."""

    sample_rate: int
    frames: int

    def read(self, start: int, count: int) -> np.ndarray:
        """`count` samples from `start` (fewer at the end), float32 in -1..1."""
        ...


@dataclass(frozen=True)
class Window:
    """One chunk to write: `frames` recorded samples from `start`, zero-padded to the chunk length."""

    index: int  # names the file, `<stem>_<index:04d>.wav`
    start: int
    frames: int
    activity_s: float | None = None  # seconds of detected calls inside (None: not detected)
    noise: bool = False  # a call-free window for the noise class


@dataclass
class Choice:
    """The windows to write and, per reason, how many candidate windows were left out."""

    windows: list[Window]
    dropped: Counter[str] = field(default_factory=Counter)


class Windowing(Protocol):
    """Chooses a recording's windows. One instance per recording: it may keep state across `feed`."""

    def feed(self, samples: np.ndarray) -> None:
        """The next mono float32 samples at the dataset rate, in order, as they are decoded."""
        ...

    def choose(self, audio: DecodedAudio) -> Choice:
        """The windows to write, once the whole recording is decoded."""
        ...


def clock_windows(total: int, chunk: int, hop: int, min_frames: int) -> tuple[list[Window], int]:
    """Windows starting every `hop` samples: every full one, then the rest if at least `min_frames`
    long (zero-padded). Returns the windows and whether a too-short rest was dropped (0 or 1)."""
    windows = [Window(k, start, chunk) for k, start in enumerate(range(0, total - chunk + 1, hop))]
    rest_start = len(windows) * hop
    rest = total - rest_start
    if rest <= 0 or (windows and windows[-1].start + chunk >= total):  # nothing the last window lacks
        return windows, 0
    if rest < max(min_frames, 1):
        return windows, 1
    return [*windows, Window(len(windows), rest_start, rest)], 0


def keep_best(choice: Choice, cap: int, rank: Callable[[Window], tuple]) -> None:
    """Cap `choice`'s windows to the `cap` that `rank` puts first (kept in index order); the rest are
    counted as "capped". Noise windows are not counted: the noise class has its own limit."""
    calls = [w for w in choice.windows if not w.noise]
    if len(calls) <= cap:
        return
    kept = set(sorted(calls, key=rank)[:cap])
    choice.dropped["capped"] += len(calls) - len(kept)
    choice.windows = [w for w in choice.windows if w.noise or w in kept]


def call_seconds(events: list[Event], start_s: float, end_s: float) -> float:
    """Seconds of `events` inside [start_s, end_s)."""
    return sum(max(0.0, min(e.end_s, end_s) - max(e.start_s, start_s)) for e in events)


def place_on_events(events: list[Event], total: int, chunk: int, rate: int) -> list[Window]:
    """Windows of `chunk` samples covering every event, never overlapping (no second is written
    twice): events that fit in one window together share it, centred on them; a stretch of calling
    longer than a window is tiled by back-to-back windows centred on it. A window is clamped to the
    recording, and to the end of the one before; the last may be cut short by the recording's end
    (the cutter pads it)."""
    clusters: list[list[float]] = []
    for event in events:
        if clusters and event.end_s - clusters[-1][0] <= chunk / rate:
            clusters[-1][1] = max(clusters[-1][1], event.end_s)
        else:
            clusters.append([event.start_s, event.end_s])
    starts: list[int] = []
    free = 0  # the first sample no window holds yet
    for begin_s, end_s in clusters:
        begin, end = max(round(begin_s * rate), free), min(round(end_s * rate), total)
        if end <= begin:
            continue  # the window before already holds it
        count = math.ceil((end - begin) / chunk)
        first = round((begin + end) / 2 - count * chunk / 2)
        first = max(min(first, total - count * chunk), free)
        starts += [s for s in range(first, first + count * chunk, chunk) if s < total]
        free = starts[-1] + chunk
    return [
        Window(
            k,
            start,
            min(chunk, total - start),
            round(call_seconds(events, start / rate, (start + chunk) / rate), 3),
        )
        for k, start in enumerate(starts)
    ]


@dataclass
class _Selecting:
    """What both ways share: the detector (when needed), the per-recording cap and the noise class."""

    chunk: int
    min_frames: int
    rate: int
    cap: int | None
    noise_class: bool
    detector: EventDetector | None

    def feed(self, samples: np.ndarray) -> None:
        if self.detector is not None:
            self.detector.feed(samples)

    def finish(self, choice: Choice, events: list[Event], total: int) -> Choice:
        """Cap the chosen windows (the most active kept) and add the noise windows."""
        if self.cap is not None:
            keep_best(choice, self.cap, lambda w: (-(w.activity_s or 0.0), w.index))
        if self.noise_class:
            choice.windows += self.noise_windows(events, total, {w.start for w in choice.windows})
        return choice

    def noise_windows(self, events: list[Event], total: int, taken: set[int]) -> list[Window]:
        """Call-free clock windows, the middle ones of the recording first, not already written as calls."""
        grid, _ = clock_windows(total, self.chunk, self.chunk, self.chunk)
        free = [
            w for w in grid
            if w.start not in taken and call_seconds(events, w.start / self.rate, (w.start + w.frames) / self.rate) == 0
        ]  # fmt: skip
        middle = len(grid) / 2
        chosen = sorted(free, key=lambda w: (abs(w.index + 0.5 - middle), w.index))[:NOISE_PER_RECORDING]
        return [replace(w, activity_s=0.0, noise=True) for w in chosen]


class FixedWindows(_Selecting):
    """Windows on the clock: window k covers [k * hop, k * hop + chunk), so names stay stable.

    A last piece of at least `min_frames` is zero-padded, a shorter one dropped ("short"). The
    silence gate drops windows more than `gate_db` below the recording's loudest window or below
    `floor_dbfs` ("silent"); `gate_db=None` keeps every window.
    """

    def __init__(
        self,
        chunk: int,
        min_frames: int,
        gate_db: float | None = 25.0,
        floor_dbfs: float = -60.0,
        *,
        hop: int | None = None,
        rate: int = 32000,
        cap: int | None = None,
        noise_class: bool = False,
    ):
        detector = EventDetector(rate) if cap is not None or noise_class else None
        super().__init__(chunk, min_frames, rate, cap, noise_class, detector)
        self.hop, self.gate_db, self.floor_dbfs = hop or chunk, gate_db, floor_dbfs

    def choose(self, audio: DecodedAudio) -> Choice:
        windows, short = clock_windows(audio.frames, self.chunk, self.hop, self.min_frames)
        choice = Choice(windows, Counter({"short": short} if short else {}))
        events = self.detector.events() if self.detector is not None else []
        if self.noise_class:  # a call-free clock window is noise, never the species
            noise = {w.start for w in self.noise_windows(events, audio.frames, set())}
            choice.windows = [w for w in choice.windows if w.start not in noise]
        if self.detector is not None:
            choice.windows = [
                replace(w, activity_s=round(call_seconds(events, w.start / self.rate, (w.start + self.chunk) / self.rate), 3))
                for w in choice.windows
            ]  # fmt: skip
        if self.gate_db is not None and choice.windows:
            levels = [rms_dbfs(audio.read(w.start, w.frames)) for w in choice.windows]
            threshold = max(max(levels) - self.gate_db, self.floor_dbfs)
            kept = [w for w, level in zip(choice.windows, levels, strict=True) if level >= threshold]
            choice.dropped["silent"] += len(choice.windows) - len(kept)
            choice.windows = kept
        return self.finish(choice, events, audio.frames)


class EventWindows(_Selecting):
    """Windows placed on the detected calls (`place_on_events`); clock windows without a call are
    not written (counted as "no_event"). The silence gate does not apply: the detector decides."""

    def __init__(
        self, chunk: int, min_frames: int, *, rate: int, cap: int | None = None, noise_class: bool = False
    ):
        self.calls = EventDetector(rate)
        super().__init__(chunk, min_frames, rate, cap, noise_class, self.calls)

    def choose(self, audio: DecodedAudio) -> Choice:
        events = self.calls.events()
        grid, _ = clock_windows(audio.frames, self.chunk, self.chunk, self.min_frames)
        choice = Choice(place_on_events(events, audio.frames, self.chunk, self.rate))
        if audio.frames < self.min_frames:  # the whole recording is one piece too short to keep
            choice.dropped["short"] += 1
            choice.windows = []
            return self.finish(choice, events, audio.frames)
        quiet = sum(
            1
            for w in grid
            if call_seconds(events, w.start / self.rate, (w.start + w.frames) / self.rate) == 0
        )
        if quiet:
            choice.dropped["no_event"] += quiet
        return self.finish(choice, events, audio.frames)


def windowing_for(options: ChunkOptions) -> Windowing:
    """A fresh windowing for one recording, as the options ask."""
    common = {
        "rate": options.sample_rate,
        "cap": options.max_chunks_per_recording,
        "noise_class": options.noise_class,
    }
    if options.windows == "events":
        return EventWindows(options.chunk_frames, options.min_frames, **common)
    return FixedWindows(
        options.chunk_frames, options.min_frames, options.gate_db, hop=options.hop_frames, **common
    )
