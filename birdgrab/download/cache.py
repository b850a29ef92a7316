"""The audio cache: verified files by content address, partial files, and eviction.

Layout: `cache/<sha[:2]>/<sha256>.<format>` for every verified file (the same bytes under two keys
are stored once) and `cache/.partial/<sha1 of key>.part` for transfers in progress. Only this
module decides where a file lives and when it leaves.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from birdgrab import manifests
from birdgrab.download.ledger import DownloadLedger
from birdgrab.files import TEMP_SUFFIX
from birdgrab.models import DownloadEntry

PARTIAL_DIR = ".partial"


@dataclass(frozen=True)
class Eviction:
    """What became of a cached file that does not decode."""

    rejected: bool  # its bytes are unusable: not a failure, and not downloaded again while unchanged
    note: str  # what happens next, for the person reading the report


class Cache:
    """One cache folder.

    >>> cache = Cache(Path("cache"))                                   # doctest: +SKIP
    >>> cache.file_of(ledger.entries["xc:254462"])                     # doctest: +SKIP
    PosixPath('cache/3f/3f9a...e1.mp3')
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.partial_dir = self.root / PARTIAL_DIR
        self._made: set[Path] = set()  # folders made by this object: one mkdir each, not one a file

    def _folder(self, folder: Path) -> Path:
        if folder not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        return folder

    def partial(self, key: str) -> Path:
        """Where the transfer of `key` streams to; stable across runs, so a cut transfer resumes."""
        return self._folder(self.partial_dir) / f"{hashlib.sha1(key.encode()).hexdigest()}{TEMP_SUFFIX}"

    def place(self, partial: Path, sha256: str, audio_format: str) -> str:
        """Move a verified partial file to its content address; returns that path relative to the cache."""
        relative = f"{sha256[:2]}/{sha256}.{audio_format}"
        final = self.root / relative
        if final.exists() and final.stat().st_size == partial.stat().st_size:
            remove(partial)  # the same bytes are already cached (another key, or a crash before recording)
        else:
            os.replace(partial, self._folder(final.parent) / final.name)
        return relative

    def file_of(self, entry: DownloadEntry | None) -> Path | None:
        """The verified cache file of an ok entry, if it is still there with its size."""
        if entry is None or entry.status != "ok" or not entry.path:
            return None
        path = self.root / entry.path
        try:
            return path if path.stat().st_size == entry.bytes else None
        except OSError:
            return None

    def holds(self, ledger: DownloadLedger, key: str) -> bool:
        """Whether `key`'s bytes are in the cache (its own file, or the owner's if it is a duplicate)."""
        entry = ledger.entries.get(key)
        if entry is not None and entry.status == "duplicate" and entry.duplicate_of:
            entry = ledger.entries.get(entry.duplicate_of)
        return self.file_of(entry) is not None

    def evict(self, ledger: DownloadLedger, key: str, reason: str) -> Eviction:
        """Take a cached file that does not decode out of the cache and record why.

        A verified download can still fail to decode (a bad file can pass the header check). If
        the cached bytes are still the ones downloaded (same sha256), the file itself is unusable:
        it is `rejected`, with every key that shares those bytes, and is not downloaded again until
        it changes upstream (or `--retry-rejected`). If the bytes changed in the cache (damaged on
        disk), it is a failed download, and the next fetch gets it again.
        """
        entry = ledger.entries[key]
        path = self.file_of(entry)
        intact = path is not None and sha256_of(path).hexdigest() == entry.sha256
        if path is not None:
            remove(path)
        now = manifests.utc_now()
        if not intact:
            damaged = {"status": "failed", "reason": f"cached file damaged: {reason}", "path": None}
            ledger.record(entry.model_copy(update={**damaged, "updated_at": now}))
            return Eviction(rejected=False, note="removed from the cache: the next fetch downloads it again")
        rejected = {
            "status": "rejected",
            "reason": f"does not decode: {reason}",
            "path": None,
            "updated_at": now,
        }
        ledger.record(entry.model_copy(update=rejected))
        sharing = [e for e in ledger.entries.values() if e.status == "duplicate" and e.duplicate_of == key]
        for duplicate in sharing:
            ledger.record(duplicate.model_copy(update={**rejected, "duplicate_of": None}))
        note = "rejected: not downloaded again unless it changes upstream, or with --retry-rejected"
        return Eviction(rejected=True, note=note)

    def free_mb(self) -> float:
        return shutil.disk_usage(self._folder(self.root)).free / 2**20


def sha256_of(path: Path) -> hashlib._Hash:
    """A sha256 object fed with the file's bytes (call .hexdigest(), or keep updating it)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
    return hasher


def remove(path: Path) -> None:
    """Remove a file that may already be gone."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
