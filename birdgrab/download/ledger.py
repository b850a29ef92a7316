"""downloads.json: what was downloaded, rejected or failed, and which key owns shared bytes."""

from __future__ import annotations

from pathlib import Path

from birdgrab import manifests
from birdgrab.models import DownloadEntry, DownloadsManifest
from birdgrab.sources.registry import registry


def owner_rank(key: str) -> tuple[int, str]:
    """Which of two keys with the same bytes owns the file: the archive with the lower
    `Archive.preference` (xeno-canto), then the lower key.

    >>> min(["europeana:/1/a", "xc:7"], key=owner_rank)
    'xc:7'
    """
    return (registry.of_key(key).preference, key)


class DownloadLedger(manifests.Ledger[DownloadsManifest, DownloadEntry]):
    """downloads.json and its journal (see `manifests.Ledger`), with an index of verified files by sha256.

    The index answers "who owns these bytes" in O(1) per file, however large the catalogue.
    """

    def __init__(self, folder: Path):
        super().__init__(folder, manifests.DOWNLOADS, DownloadsManifest, DownloadEntry)
        self._ok_by_sha: dict[str, set[str]] = {}
        for entry in self.entries.values():
            if entry.status == "ok" and entry.sha256:
                self._ok_by_sha.setdefault(entry.sha256, set()).add(entry.key)

    def _append(self, entry: DownloadEntry) -> int:
        previous = self.entries.get(entry.key)
        if previous is not None and previous.sha256:
            self._ok_by_sha.get(previous.sha256, set()).discard(entry.key)
        if entry.status == "ok" and entry.sha256:
            self._ok_by_sha.setdefault(entry.sha256, set()).add(entry.key)
        return super()._append(entry)

    def owner_of(self, sha256: str) -> str | None:
        """The key that owns verified bytes with this sha256, if any key has them."""
        owners = self._ok_by_sha.get(sha256)
        return min(owners, key=owner_rank) if owners else None

    def save(self) -> None:
        """Fold the journal into downloads.json, keeping the parameters it was written with."""
        self.compact(self.loaded.parameters if self.loaded else {})
