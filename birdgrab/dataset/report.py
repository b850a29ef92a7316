"""What a chunk run did, for the summary line and the table."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("birdgrab")

# Why a window was not written, as summaries say it.
DROP_REASONS = {
    "no_event": "without a call",
    "silent": "silent (gate)",
    "short": "shorter than --min-chunk-seconds",  # a last piece, or a whole short recording
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
    built: int = 0  # recordings cut this run (once each, though the class cap may cut one again)
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
    # recordings whose split changed because a newcomer joined their group to a larger one
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (was, now)
    unseen: str = ""  # '31 recordings BirdNET V2.4 ... may have trained on: in train only' (--unseen-by)

    _cut: set[str] = field(default_factory=set, repr=False)

    def cut(self, key: str) -> None:
        """A recording was cut: counted once however often the run cuts it."""
        if key not in self._cut:
            self._cut.add(key)
            self.built += 1

    def without_chunks(self) -> int:
        """Recordings cut or kept whose every window was left out (no call, caps): not in the dataset."""
        return max(0, self.built + self.unchanged - self.recordings)

    def dropped_summary(self) -> str:
        """'340 without a call, 3 shorter than --min-chunk-seconds', or 'none'."""
        parts = [
            f"{self.dropped[reason]} {text}"
            for reason, text in DROP_REASONS.items()
            if self.dropped.get(reason)
        ]
        return ", ".join(parts) or "none"

    def moved_ways(self) -> str:
        """'val -> train 2, test -> train 1': how the recordings that changed split moved."""
        ways = Counter(f"{was} -> {now}" for was, now in self.moved.values())
        return ", ".join(f"{way} {count}" for way, count in sorted(ways.items()))

    def moved_summary(self) -> str:
        """'3 recordings changed split with their group (val -> train 2, test -> train 1)', or ''."""
        if not self.moved:
            return ""
        return f"{len(self.moved)} recordings changed split with their group ({self.moved_ways()})"

    def summary(self) -> str:
        """The one line a chunk run ends with."""
        moved = self.moved_summary()
        return (
            f"chunk: {self.recordings} recordings ({self.built} rebuilt, {self.unchanged} unchanged, "
            f"{self.removed} removed{self._none_kept()}), {self.chunks_written} chunks written, {self.chunks_total} in the dataset, "
            f"{self.classes} classes; windows not written: {self.dropped_summary()}; "
            f"{self.near_duplicates} near-duplicates; {len(self.rejected)} rejected, {len(self.failed)} failed"
            + (f"; {moved}" if moved else "")
            + (f"; {self.unseen}" if self.unseen else "")
            + (f"; {self.verified.summary()}" if self.verified else "")
        )

    def _none_kept(self) -> str:
        none = self.without_chunks()
        return f"; {none} of them without a chunk, so not in the dataset" if none else ""

    def facts(self) -> dict[str, object]:
        """The numbers for the JSON log."""
        return {
            "recordings": self.recordings,
            "built": self.built,
            "chunks_written": self.chunks_written,
            "chunks_total": self.chunks_total,
            "dropped": dict(self.dropped),
            "failed": len(self.failed),
            "moved": len(self.moved),
            **(
                {
                    "verified": self.verified.scored + self.verified.known,
                    "mislabels": len(self.verified.mislabels),
                }
                if self.verified
                else {}
            ),
        }


def log_moves(report: ChunkReport) -> None:
    """One line per recording whose split changed because its group (person or site) was joined to
    a larger one with another split: what a user must know before comparing scores across runs."""
    for key, (was, now) in sorted(report.moved.items()):
        log.info(
            "split changed: %s: %s -> %s (a new recording joined its group to a larger one)",
            key,
            was,
            now,
            extra={"event": "chunk.moved", "key": key, "was": was, "now": now},
        )
