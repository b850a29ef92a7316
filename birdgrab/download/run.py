"""`birdgrab fetch`, the orchestration: which recordings to get, the workers, filing, the report.

Each recording goes transfer (`transfer.Transfer`: bytes -> sha256) -> probe (is it audio?) ->
cache (`cache.Cache`: filed by content address) -> ledger (`ledger.DownloadLedger`: ok, duplicate
or failed, with the reason). The same bytes under two keys are stored once; the second key is
recorded as a duplicate of the owner (`ledger.owner_rank`: the registry's preferred archive).

Progress is kept in downloads.json plus its journal: a crash loses only the files in flight, and
bookkeeping stays O(1) per file however large the catalogue.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from birdgrab import manifests
from birdgrab.download.cache import Cache
from birdgrab.download.ledger import DownloadLedger, owner_rank
from birdgrab.download.transfer import Transfer, TransferError, Transferred, discard, finish
from birdgrab.errors import ServiceError, ServiceUnreachable, UsageError
from birdgrab.http_client import ServiceClient
from birdgrab.models import DownloadEntry, Recording, SelectionManifest
from birdgrab.probe import AudioError, probe
from birdgrab.settings import Settings, redact
from birdgrab.sources.archive import RequestTally
from birdgrab.sources.registry import registry
from birdgrab.store import RecordingStore

DEFAULT_JOBS = 4
DEFAULT_MAX_FILE_MB = 2048


@dataclass(frozen=True)
class FetchOptions:
    jobs: int = DEFAULT_JOBS
    # At most this many transfers to one host; None: the download policy's concurrency (settings,
    # BIRDGRAB_DOWNLOAD_CONCURRENCY). More --jobs spread over more hosts, never onto one server.
    per_host: int | None = None
    max_file_mb: float = DEFAULT_MAX_FILE_MB
    min_free_mb: float = 200

    def validated(self) -> FetchOptions:
        if self.jobs < 1 or self.jobs > 64:
            raise UsageError(f"--jobs must be between 1 and 64, got {self.jobs}")
        if self.per_host is not None and not 1 <= self.per_host <= 64:
            raise UsageError(f"--per-host must be between 1 and 64, got {self.per_host}")
        if self.max_file_mb <= 0:
            raise UsageError(f"--max-file-mb must be greater than 0, got {self.max_file_mb:g}")
        return self


@dataclass
class FetchReport:
    selected: int = 0
    downloaded: int = 0
    skipped: int = 0
    duplicates: int = 0
    vanished: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason
    bytes: int = 0
    requests: int = 0
    stopped: str | None = None  # why the run stopped early (low disk space)
    unreachable_hosts: list[str] = field(default_factory=list)

    @property
    def nothing_reachable(self) -> bool:
        """Every download failed because its host could not be reached (exit 4)."""
        return bool(self.unreachable_hosts) and not (self.downloaded or self.duplicates or self.skipped)

    def add(self, entry: DownloadEntry) -> None:
        if entry.status == "failed":
            self.failed[entry.key] = entry.reason or "failed"
        else:
            self.bytes += entry.bytes or 0

    def count_outcomes(self, ledger: DownloadLedger, keys: list[str]) -> None:
        """Downloaded vs duplicate from the ledger's final word: a later download can make an
        earlier one of this run the duplicate (the preferred archive's key owns shared bytes)."""
        statuses = Counter(ledger.entries[k].status for k in keys if k in ledger.entries)
        self.downloaded, self.duplicates = statuses["ok"], statuses["duplicate"]


ProgressHook = Callable[[str, int], None]  # (event, amount): "bytes", n / "file", 1


# Answers that say a media link rotted: the file may live on under another address of its record.
ROTTEN_LINK = frozenset({"HTTP 403", "HTTP 404", "HTTP 410"})
# Other addresses of a recording's audio, asked of its archive when the link rots.
OtherMedia = Callable[[Recording], Awaitable[list[str]]]


class Downloader:
    """Gets one recording into the cache and the ledger: transfer, probe, file, dedupe."""

    def __init__(
        self, transfer: Transfer, cache: Cache, ledger: DownloadLedger, other_media: OtherMedia | None = None
    ):
        self.transfer = transfer
        self.cache = cache
        self.ledger = ledger
        self.other_media = other_media

    async def _from_other_media(
        self, recording: Recording, rotten: TransferError, partial: Path
    ) -> tuple[str, Transferred, int] | TransferError:
        """The first of the archive's other addresses of a rotten link that delivers: (url, the
        transfer, attempts); else a TransferError that says what each address answered."""
        assert self.other_media is not None
        attempts = rotten.attempts
        try:
            urls = await self.other_media(recording)
        except (ServiceError, ServiceUnreachable) as exc:
            return TransferError(f"{rotten.reason}; other addresses could not be asked for ({exc})", attempts)
        tried = []
        for url in urls:
            try:
                done, tries = await self.transfer.fetch(url, partial)
            except TransferError as exc:
                discard(partial)  # never resume one address's bytes from another
                attempts += exc.attempts
                tried.append(f"{url}: {exc.reason}")
                continue
            return url, done, attempts + tries
        found = (
            f"other addresses failed too: {'; '.join(tried)}"
            if tried
            else "the archive knows no other address"
        )
        return TransferError(f"{rotten.reason}; {found}", attempts)

    async def download(self, recording: Recording) -> DownloadEntry:
        """Download, verify and file one recording; never raises for a per-item failure."""
        key, url = recording.key, recording.audio_url
        previous = self.ledger.entries.get(key)
        attempts = previous.attempts if previous and previous.status == "failed" else 0
        if not url:
            return self._failed(key, None, "no audio URL", attempts)
        partial = self.cache.partial(key)
        note = None
        try:
            done, tries = await self.transfer.fetch(url, partial)
        except TransferError as exc:
            if exc.reason not in ROTTEN_LINK or self.other_media is None:
                return self._failed(key, url, exc.reason, attempts + exc.attempts)
            moved = await self._from_other_media(recording, exc, partial)
            if isinstance(moved, TransferError):
                return self._failed(key, url, moved.reason, attempts + moved.attempts)
            note = f"{redact(url)} answered {exc.reason}: fetched from another address its archive lists"
            url, done, tries = moved
        attempts += tries
        try:
            info = probe(partial)
        except AudioError as exc:
            discard(partial)
            return self._failed(key, url, exc.reason, attempts)
        entry = DownloadEntry(
            key=key,
            status="ok",
            url=redact(url),
            path=self.cache.place(partial, done.sha256, info.format),
            bytes=done.size,
            sha256=done.sha256,
            format=info.format,
            duration_s=round(info.duration_s, 3),
            duration_estimated=info.duration_estimated,
            sample_rate=info.sample_rate,
            channels=info.channels,
            note=note,
            attempts=attempts,
            updated_at=manifests.utc_now(),
        )
        finish(partial)
        self.ledger.record(self._settle_ownership(entry))
        return entry

    def _settle_ownership(self, entry: DownloadEntry) -> DownloadEntry:
        """Of two keys with the same bytes one owns the file and the other is its duplicate."""
        owner = self.ledger.owner_of(entry.sha256 or "")
        if owner is None or owner == entry.key:
            return entry
        if owner_rank(entry.key) < owner_rank(owner):
            demoted = {"status": "duplicate", "duplicate_of": entry.key, "updated_at": entry.updated_at}
            self.ledger.record(self.ledger.entries[owner].model_copy(update=demoted))
            return entry
        return entry.model_copy(update={"status": "duplicate", "duplicate_of": owner})

    def _failed(self, key: str, url: str | None, reason: str, attempts: int) -> DownloadEntry:
        entry = DownloadEntry(
            key=key,
            status="failed",
            url=redact(url) if url else None,
            reason=redact(reason),
            attempts=attempts,
            updated_at=manifests.utc_now(),
        )
        self.ledger.record(entry)
        return entry


async def run_downloads(
    settings: Settings,
    folder: Path,
    cache_root: Path,
    options: FetchOptions,
    on_progress: ProgressHook | None = None,
    on_start: Callable[[int], None] | None = None,
) -> FetchReport:
    """Download everything selected that is not yet verified in the cache."""
    options = options.validated()
    folder, cache = Path(folder), Cache(cache_root)
    selection = manifests.load(folder / manifests.SELECTION, SelectionManifest)
    store = RecordingStore.open(folder)
    if selection is None or store is None:
        raise UsageError(f"no selection in {folder}: run `birdgrab catalog` and `birdgrab filter` first")
    ledger = DownloadLedger(folder)
    report = FetchReport()
    keys = selection.selected_keys()
    report.selected = len(keys)
    missing = [key for key in keys if not cache.holds(ledger, key)]
    report.skipped = len(keys) - len(missing)
    with store:
        recordings = store.get_many(missing)  # only what is still to fetch is read from the catalogue
    queue: asyncio.Queue[Recording] = asyncio.Queue()
    for key in missing:
        if key not in recordings:
            report.failed[key] = "not in the catalogue (run catalog again)"
        elif recordings[key].vanished:
            report.vanished += 1  # gone upstream before we got it: nothing to retry
        else:
            queue.put_nowait(recordings[key])
    if on_start:
        on_start(queue.qsize())
    progress = on_progress or (lambda event, amount: None)
    client = ServiceClient(replace(settings.audio, max_concurrency=options.jobs), settings)
    per_host = options.per_host or settings.audio.max_concurrency
    transfer = Transfer(
        client,
        per_host=per_host,
        max_bytes=int(options.max_file_mb * 2**20),
        on_bytes=lambda amount: progress("bytes", amount),
    )
    tally = RequestTally()  # asking archives for other addresses of rotten links

    async def other_media(recording: Recording) -> list[str]:
        return await registry.get(recording.source).other_media(settings, recording, tally)

    downloader = Downloader(transfer, cache, ledger, other_media)
    processed: list[str] = []

    async def worker() -> None:
        while report.stopped is None and not queue.empty():
            recording = queue.get_nowait()
            if cache.free_mb() < options.min_free_mb:
                report.stopped = (
                    f"less than {options.min_free_mb:g} MB free under {cache.root}: stopped downloading"
                )
                return
            report.add(await downloader.download(recording))
            processed.append(recording.key)
            progress("file", 1)

    try:
        await asyncio.gather(*(worker() for _ in range(options.jobs)))
    finally:
        await client.aclose()
        report.requests = client.requests_made + tally.requests
        report.unreachable_hosts = sorted(transfer.unreachable_hosts)
        ledger.compact({"cache": str(cache.root), "jobs": options.jobs, "per_host": per_host})
    report.count_outcomes(ledger, processed)
    return report
