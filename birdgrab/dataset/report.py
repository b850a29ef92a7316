"""What a chunk run did, for the summary line and the table."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ChunkReport:
    recordings: int = 0
    built: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_written: int = 0
    chunks_total: int = 0
    dropped_silent: int = 0
    dropped_short: int = 0
    near_duplicates: int = 0
    not_downloaded: int = 0
    classes: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # cached files found unusable: not failures
    stopped: str | None = None
