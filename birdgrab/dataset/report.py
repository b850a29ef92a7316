"""What a chunk run did, for the summary line and the table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Why a window was not written, as summaries say it.
DROP_REASONS = {
    "no_event": "without a call",
    "silent": "silent (gate)",
    "short": "short last pieces",
    "capped": "over --max-chunks-per-recording",
    "class_cap": "over --max-chunks-per-class",
    "unconfirmed": "not confirmed by BirdNET (--min-confidence)",
}


@dataclass
class VerifyReport:
    """What --verify did in a chunk run."""

    model: str
    scored: int = 0  # windows the model scored
    known: int = 0  # windows whose stored scores were used
    unverifiable: list[str] = field(default_factory=list)  # classes BirdNET has no label for
    mislabels: list = field(default_factory=list)  # birdgrab.verify.run.Mislabel, every one in the dataset

    def summary(self) -> str:
        return (
            f"{self.model} checked {self.scored + self.known} windows ({self.known} known), "
            f"{len(self.unverifiable)} classes unverifiable, {len(self.mislabels)} recordings likely mislabelled"
        )


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
    rejected: dict[str, str] = field(default_factory=dict)  # cached files found unusable: not failures
    stopped: str | None = None
    verified: VerifyReport | None = None  # with --verify

    def dropped_summary(self) -> str:
        """'340 without a call, 3 short last pieces', or 'none'."""
        parts = [
            f"{self.dropped[reason]} {text}"
            for reason, text in DROP_REASONS.items()
            if self.dropped.get(reason)
        ]
        return ", ".join(parts) or "none"

    def summary(self) -> str:
        """The one line a chunk run ends with."""
        return (
            f"chunk: {self.recordings} recordings ({self.built} rebuilt, {self.unchanged} unchanged, "
            f"{self.removed} removed), {self.chunks_written} chunks written, {self.chunks_total} in the dataset, "
            f"{self.classes} classes; windows not written: {self.dropped_summary()}; "
            f"{self.near_duplicates} near-duplicates; {len(self.rejected)} rejected, {len(self.failed)} failed"
            + (f"; {self.verified.summary()}" if self.verified else "")
        )

    def facts(self) -> dict[str, object]:
        """The numbers for the JSON log."""
        return {
            "recordings": self.recordings,
            "built": self.built,
            "chunks_written": self.chunks_written,
            "chunks_total": self.chunks_total,
            "dropped": dict(self.dropped),
            "failed": len(self.failed),
            **(
                {
                    "verified": self.verified.scored + self.verified.known,
                    "mislabels": len(self.verified.mislabels),
                }
                if self.verified
                else {}
            ),
        }
