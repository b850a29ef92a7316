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
    stopped: str | None = None

    def summary(self) -> str:
        """The one line a chunk run ends with."""
        return (
            f"chunk: {self.recordings} recordings ({self.built} rebuilt, {self.unchanged} unchanged, "
            f"{self.removed} removed), {self.chunks_written} chunks written, {self.chunks_total} in the dataset, "
            f"{self.classes} classes; {self.dropped_silent} silent and {self.dropped_short} short pieces dropped; "
            f"{self.near_duplicates} near-duplicates; {len(self.failed)} failed"
        )

    def facts(self) -> dict[str, int]:
        """The numbers for the JSON log."""
        return {
            "recordings": self.recordings,
            "built": self.built,
            "chunks_written": self.chunks_written,
            "chunks_total": self.chunks_total,
            "failed": len(self.failed),
        }
