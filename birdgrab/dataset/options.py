"""The options of the chunk step (`fetch`, `chunk` and `refresh` share them), validated once."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from birdgrab.errors import UsageError

WindowMode = Literal["fixed", "events"]
SplitBy = Literal["recording", "recordist", "site"]
Verifier = Literal["birdnet"]
LabelsFrom = Literal["also", "birdnet"]
NOISE_LABEL = "noise"
# A window is `confirmed` when BirdNET's confidence for its class reaches --min-confidence, or this
# without it. On the labelled real clips of the tests (great tit, storm-petrel, yellowthroat) 31 of
# 32 frames reach 0.3 (the other, a faint great tit, 0.23) while the best wrong species stays under
# 0.05 in all but one (a rail at 0.40 in a storm-petrel frame): 0.3 keeps the songs and few confusions.
DEFAULT_CONFIRM_THRESHOLD = 0.3


@dataclass(frozen=True)
class ChunkOptions:
    """How the dataset is cut. `signature()` names what the chunk files depend on."""

    sample_rate: int = 32000
    chunk_s: float = 10.0
    min_chunk_s: float = 3.0
    gate_db: float | None = 25.0
    split: tuple[int, int, int] = (80, 10, 10)
    jobs: int = 2
    min_free_mb: float = 200
    windows: WindowMode = "fixed"
    hop_s: float | None = None  # fixed windows start this far apart (None: --chunk-seconds)
    max_chunks_per_recording: int | None = None
    max_chunks_per_class: int | None = None
    noise_class: bool = False
    split_by: SplitBy = "recording"
    verify: Verifier | None = None  # score every window with BirdNET (extra [birdnet])
    min_confidence: float | None = None  # windows below it for their own class are not written
    labels_from: LabelsFrom = "also"  # background / labels: xeno-canto's `also`, or what BirdNET hears

    def validated(self) -> ChunkOptions:
        """This, or a `UsageError` (exit 2) naming the first option out of range."""
        if not 4000 <= self.sample_rate <= 192000:
            raise UsageError(f"--sample-rate must be between 4000 and 192000 Hz, got {self.sample_rate}")
        if not 0 < self.chunk_s <= 600:
            raise UsageError(f"--chunk-seconds must be more than 0 and at most 600, got {self.chunk_s:g}")
        if not 0 <= self.min_chunk_s <= self.chunk_s:
            raise UsageError(
                f"--min-chunk-seconds must be between 0 and --chunk-seconds ({self.chunk_s:g}), got {self.min_chunk_s:g}"
            )
        if self.gate_db is not None and not 0 < self.gate_db <= 120:
            raise UsageError(f"--gate-db must be more than 0 and at most 120 dB, got {self.gate_db:g}")
        if (
            len(self.split) != 3
            or any(p < 0 for p in self.split)
            or sum(self.split) != 100
            or self.split[0] == 0
        ):
            raise UsageError(
                f"--split must be three percentages like 80/10/10 that add up to 100, got {self.split}"
            )
        if not 1 <= self.jobs <= 64:
            raise UsageError(f"--jobs must be between 1 and 64, got {self.jobs}")
        if self.windows not in ("fixed", "events"):
            raise UsageError(f"--windows must be fixed or events, got {self.windows!r}")
        if self.hop_s is not None and not 0.1 <= self.hop_s <= self.chunk_s:
            raise UsageError(
                f"--hop-seconds must be between 0.1 and --chunk-seconds ({self.chunk_s:g}), got {self.hop_s:g}"
            )
        if self.hop_s is not None and self.windows == "events":
            raise UsageError("--hop-seconds places fixed windows; --windows events places them on the calls")
        for name, cap in (
            ("--max-chunks-per-recording", self.max_chunks_per_recording),
            ("--max-chunks-per-class", self.max_chunks_per_class),
        ):
            if cap is not None and cap < 1:
                raise UsageError(f"{name} must be at least 1, got {cap}")
        if self.split_by not in ("recording", "recordist", "site"):
            raise UsageError(f"--split-by must be recording, recordist or site, got {self.split_by!r}")
        if self.verify not in (None, "birdnet"):
            raise UsageError(f"--verify must be birdnet, got {self.verify!r}")
        if self.labels_from not in ("also", "birdnet"):
            raise UsageError(f"--labels-from must be also or birdnet, got {self.labels_from!r}")
        if self.min_confidence is not None and not 0.01 <= self.min_confidence <= 0.99:
            raise UsageError(f"--min-confidence must be between 0.01 and 0.99, got {self.min_confidence:g}")
        if self.verify is None and (self.min_confidence is not None or self.labels_from == "birdnet"):
            given = "--min-confidence" if self.min_confidence is not None else "--labels-from birdnet"
            raise UsageError(f"{given} needs --verify birdnet (pip install 'birdgrab[birdnet]')")
        return self

    @property
    def confirm_threshold(self) -> float:
        """The confidence at which BirdNET confirms a window's class (and hears a background species)."""
        return self.min_confidence if self.min_confidence is not None else DEFAULT_CONFIRM_THRESHOLD

    @property
    def hop_frames(self) -> int:
        """Samples between the starts of two fixed windows."""
        return round((self.hop_s or self.chunk_s) * self.sample_rate)

    @property
    def min_frames(self) -> int:
        """The shortest last piece that is zero-padded rather than dropped."""
        return math.ceil(self.min_chunk_s * self.sample_rate)

    @property
    def chunk_frames(self) -> int:
        """Samples in every chunk."""
        return round(self.chunk_s * self.sample_rate)

    def signature(self) -> str:
        """What the chunk files depend on (not the split: that only changes metadata)."""
        gate = "off" if self.gate_db is None else f"{self.gate_db:g}"
        signature = f"sr={self.sample_rate};chunk={self.chunk_s:g};min={self.min_chunk_s:g};gate={gate}"
        # Options added later only appear when used, so datasets made before them stay current.
        if self.windows != "fixed":
            signature += f";windows={self.windows}"
        if self.hop_s is not None and self.hop_s != self.chunk_s:
            signature += f";hop={self.hop_s:g}"
        if self.max_chunks_per_recording is not None:
            signature += f";per_recording={self.max_chunks_per_recording}"
        if self.noise_class:
            signature += ";noise"
        if self.verify is not None:  # verification decides which windows are written, and their ranking
            signature += f";verify={self.verify}"
        if self.min_confidence is not None:
            signature += f";min_confidence={self.min_confidence:g}"
        return signature


def parse_split(text: str) -> tuple[int, int, int]:
    """'80/10/10' -> (80, 10, 10); anything else is a UsageError."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--split must look like 80/10/10 (train/val/test percentages), got {text!r}")
    train, val, test = (int(g) for g in match.groups())
    return ChunkOptions(split=(train, val, test)).validated().split
