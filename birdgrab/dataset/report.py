"""What a chunk run did, for the summary line and the table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ChunkReport:
    recordings: int = 0
    built: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_written: int = 0
    chunks_total: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> windows not written this run
    near_duplicates: int = 0
    not_downloaded: int = 0
    classes: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    stopped: str | None = None

    @property
    def dropped_silent(self) -> int:
        return self.dropped["silent"]

    @property
    def dropped_short(self) -> int:
        return self.dropped["short"]
