"""The options of the chunk step (`fetch`, `chunk` and `refresh` share them), validated once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from birdgrab.errors import UsageError


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
        return self

    @property
    def chunk_frames(self) -> int:
        """Samples in every chunk."""
        return round(self.chunk_s * self.sample_rate)

    def signature(self) -> str:
        """What the chunk files depend on (not the split: that only changes metadata)."""
        gate = "off" if self.gate_db is None else f"{self.gate_db:g}"
        return f"sr={self.sample_rate};chunk={self.chunk_s:g};min={self.min_chunk_s:g};gate={gate}"


def parse_split(text: str) -> tuple[int, int, int]:
    """'80/10/10' -> (80, 10, 10); anything else is a UsageError."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--split must look like 80/10/10 (train/val/test percentages), got {text!r}")
    train, val, test = (int(g) for g in match.groups())
    return ChunkOptions(split=(train, val, test)).validated().split
