"""The audio cache: verified files by content address, partial files, and eviction.

Layout: `cache/<sha[:2]>/<sha256>.<format>` for every verified file (the same bytes under two keys
are stored once) and `cache/.partial/<sha1 of key>.part` for transfers in progress. Only this
module decides where a file lives and when it leaves.

The cache is a `Storage`: a folder, or a prefix in a bucket (`--cache s3://...`). Transfers always
stream to this machine's disk (into the cache folder itself, or the bucket's local state folder,
where a cut transfer resumes from) and are put in the cache, whole, only once verified. Content
addresses make a bucket safe to share: two writers of one name write the same bytes. Whether a
file is there is answered from one listing of the bucket, never a request a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from birdgrab import manifests
from birdgrab.download.ledger import DownloadLedger
from birdgrab.files import TEMP_SUFFIX
from birdgrab.models import DownloadEntry
from birdgrab.storage import Storage, open_storage

PARTIAL_DIR = ".partial"


@dataclass(frozen=True)
class Eviction:
    """What became of a cached file that does not decode."""

    rejected: bool  # its bytes are unusable: not a failure, and not downloaded again while unchanged
    note: str  # what happens next, for the person reading the report


class Cache:
    """One cache: a folder, or a prefix in a bucket.

    >>> cache = Cache("cache")                                         # doctest: +SKIP
    >>> cache.file_of(ledger.entries["xc:254462"])                     # doctest: +SKIP
    '3f/3f9a...e1.mp3'
    """

    def __init__(self, root: Path | str | Storage):
        self.storage = open_storage(root)
        self.url = self.storage.url
        self._made: set[Path] = set()  # folders made by this object: one mkdir each, not one a file
        self._sizes = self.storage.sizes()  # a bucket's listed once, on first use
        self._placed: dict[str, int | None] = {}  # put in (size) or evicted (None) since the listing

    @property
    def partial_dir(self) -> Path:
        """Where transfers stream to on this machine: inside a cache folder; a bucket's local state folder."""
        return self.storage.state_folder() / PARTIAL_DIR

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
        size = partial.stat().st_size
        if self._size(relative) == size:
            remove(partial)  # the same bytes are already cached (another key, or a crash before recording)
        else:
            self.storage.put_file(partial, relative)
            self._placed[relative] = size
        return relative

    def _size(self, relative: str) -> int | None:
        return self._placed[relative] if relative in self._placed else self._sizes.get(relative)

    async def place_async(self, partial: Path, sha256: str, audio_format: str) -> str:
        """`place` without holding up the other transfers while a file is uploaded to a bucket."""
        if self.storage.is_local:
            return self.place(partial, sha256, audio_format)  # one rename
        return await asyncio.to_thread(self.place, partial, sha256, audio_format)

    def file_of(self, entry: DownloadEntry | None) -> str | None:
        """The verified cache file of an ok entry (relative to the cache), if it is still there with its size."""
        if entry is None or entry.status != "ok" or not entry.path:
            return None
        try:
            return entry.path if self._size(entry.path) == entry.bytes else None
        except ValueError:  # a name that would leave the cache: not ours
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
        name = self.file_of(entry)
        intact = False
        if name is not None:
            with self.storage.local_copy(name) as path:
                intact = sha256_of(path).hexdigest() == entry.sha256
            self.storage.remove(name)
            self._placed[name] = None
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
        """Space left where transfers land first (the cache folder, or the staging disk of a bucket's)."""
        return self.storage.free_mb()


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
