"""Recordings BirdNET does not confirm as their species: likely filed under the wrong one upstream.

Read from the chunk ledger (`ChunkedRecording.verify`), so `stats` and `report` list them without
loading anything of BirdNET; a recording whose windows `--min-confidence` all left out is listed too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from birdgrab.models import ChunkedRecording, Recording


@dataclass(frozen=True)
class Mislabel:
    """A recording none of whose windows BirdNET confirms as its class."""

    key: str
    label: str
    best: float  # its best window's confidence for its class
    heard: str  # what BirdNET hears best in it, 'Scientific name:0.91'
    page_url: str | None  # where to tell the archive

    def line(self) -> str:
        """'xc:1 filed as Parus_major: BirdNET hears Hydrobates pelagicus:1.00, Parus_major at most 0.00 (url)'."""
        return (
            f"{self.key} filed as {self.label}: BirdNET hears {self.heard}, {self.label} at most {self.best:.2f}"
            f" ({self.page_url or 'no page'})"
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def likely_mislabels(
    entries: Mapping[str, ChunkedRecording], recordings: Mapping[str, Recording]
) -> list[Mislabel]:
    """The recordings of `entries` verification did not confirm, by key."""
    found = []
    for key, entry in sorted(entries.items()):
        if entry.status == "ok" and entry.verify is not None and entry.verify.confirmed is False:
            recording = recordings.get(key)
            page = recording.page_url if recording else None
            found.append(Mislabel(key, entry.label or "", entry.verify.best or 0.0, entry.verify.top, page))
    return found
