"""The windowing seam: which windows of a decoded recording become chunks.

A `Windowing` sees the recording's mono samples at the dataset rate as they are decoded (`feed`),
then chooses the windows to write (`choose`) with random access to the whole recording
(`DecodedAudio`). The cutter (`birdgrab.dataset.cutting`) decodes, spools and writes; it does not
know how windows are chosen, so new ways of choosing plug in here.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from birdgrab.dataset.options import ChunkOptions

SILENCE_DBFS = -120.0  # the level reported for digital silence, whose true level is -inf


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


@dataclass
class FixedWindows:
    """Windows on the clock: window k covers [k * chunk, (k + 1) * chunk), so names stay stable.

    A last piece of at least `min_frames` is zero-padded, a shorter one dropped ("short"). The
    silence gate drops windows more than `gate_db` below the recording's loudest window or below
    `floor_dbfs` ("silent"); `gate_db=None` keeps every window.
    """

    chunk_frames: int
    min_frames: int
    gate_db: float | None = 25.0
    floor_dbfs: float = -60.0

    def feed(self, samples: np.ndarray) -> None:
        """Fixed windows need nothing from the stream."""

    def choose(self, audio: DecodedAudio) -> Choice:
        choice = Choice([])
        for index, start in enumerate(range(0, audio.frames, self.chunk_frames)):
            frames = min(self.chunk_frames, audio.frames - start)
            if frames < self.min_frames or frames == 0:
                choice.dropped["short"] += 1
            else:
                choice.windows.append(Window(index, start, frames))
        if self.gate_db is None or not choice.windows:
            return choice
        levels = [rms_dbfs(audio.read(w.start, w.frames)) for w in choice.windows]
        threshold = max(max(levels) - self.gate_db, self.floor_dbfs)
        kept = [w for w, level in zip(choice.windows, levels, strict=True) if level >= threshold]
        choice.dropped["silent"] += len(choice.windows) - len(kept)
        choice.windows = kept
        return choice


def windowing_for(options: ChunkOptions) -> Windowing:
    """A fresh windowing for one recording, as the options ask."""
    return FixedWindows(
        options.chunk_frames, math.ceil(options.min_chunk_s * options.sample_rate), options.gate_db
    )
