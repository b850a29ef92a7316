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
from dataclasses import dataclass, field
from pathlib import Path

from birdgrab import manifests
from birdgrab.budget import MediaBudgets
from birdgrab.download.cache import Cache
from birdgrab.download.ledger import DownloadLedger, owner_rank
from birdgrab.download.transfer import Transfer, TransferError, Transferred, discard, finish
from birdgrab.errors import ServiceError, ServiceUnreachable, UsageError
from birdgrab.hold_points import hold_point
from birdgrab.models import DownloadEntry, Recording
from birdgrab.probe import AudioError, probe
from birdgrab.selection import load_selection
from birdgrab.settings import Settings, redact
from birdgrab.sources.archive import RequestTally
from birdgrab.sources.registry import registry
from birdgrab.storage import Storage
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
    retry_rejected: bool = False  # download rejected files again even if unchanged upstream

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
    rejected: dict[str, str] = field(default_factory=dict)  # key -> reason: unusable bytes, not a failure
    bytes: int = 0
    requests: int = 0
    stopped: str | None = None  # why the run stopped early (low disk space)
    unreachable_hosts: list[str] = field(default_factory=list)
    deferred: dict[str, int] = field(default_factory=dict)  # archive -> recordings left by its media budget

    def summary(self) -> str:
        """The one line a fetch ends with."""
        budgets = "".join(
            f"; {n} left for a later run by the {a} media budget" for a, n in self.deferred.items()
        )
        return (
            f"fetch: {self.downloaded} downloaded, {self.skipped} already cached, {self.duplicates} duplicates, "
            f"{len(self.rejected)} rejected, {len(self.failed)} failed "
            f"({self.bytes / 2**20:.1f} MB, {self.requests} requests){budgets}"
        )

    def facts(self) -> dict[str, object]:
        """The numbers for the JSON log."""
        return {
            "downloaded": self.downloaded,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "failed": len(self.failed),
            "bytes": self.bytes,
            "deferred": self.deferred,
        }

    @property
    def nothing_reachable(self) -> bool:
        """Every download failed because its host could not be reached (exit 4)."""
        reached = self.downloaded or self.duplicates or self.skipped or self.rejected
        return bool(self.unreachable_hosts) and not reached

    def add(self, entry: DownloadEntry, transferred: bool = True) -> None:
        """Count one item's outcome (`transferred`: its bytes came in this run)."""
        if entry.status == "failed":
            self.failed[entry.key] = entry.reason or "failed"
            return
        if entry.status == "rejected":
            self.rejected[entry.key] = entry.reason or "rejected"
        if transferred:
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
        self,
        transfer: Transfer,
        cache: Cache,
        ledger: DownloadLedger,
        *,
        retry_rejected: bool = False,
        other_media: OtherMedia | None = None,
    ):
        self.transfer = transfer
        self.cache = cache
        self.ledger = ledger
        self.retry_rejected = retry_rejected
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

    async def download(self, recording: Recording, report: FetchReport) -> None:
        """Download, verify and file one recording, and count it; never raises for a per-item failure."""
        previous = self.ledger.entries.get(recording.key)
        if (
            previous is not None
            and previous.status == "rejected"
            and not self.retry_rejected
            and not await self._changed_upstream(recording, previous)
        ):
            report.add(previous, transferred=False)  # still the same unusable file: not fetched again
            return
        report.add(await self._download(recording, previous))

    async def _changed_upstream(self, recording: Recording, rejected: DownloadEntry) -> bool:
        """Whether a rejected file is another file now: a new URL, or a new size, ETag or Last-Modified."""
        if not recording.audio_url:
            return True
        if rejected.note is None and redact(recording.audio_url) != rejected.url:
            return True  # the catalogue points elsewhere now
        # Ask where the rejected bytes came from: the recording's URL, or the other address it fell back to.
        now = await self.transfer.upstream(
            recording.audio_url if rejected.note is None else rejected.url or ""
        )
        if now is None:
            return False  # the server would not say: keep the verdict until --retry-rejected
        pairs = [
            (rejected.bytes, now.size),
            (rejected.etag, now.etag),
            (rejected.last_modified, now.last_modified),
        ]
        return any(old is not None and new is not None and old != new for old, new in pairs)

    async def _download(self, recording: Recording, previous: DownloadEntry | None) -> DownloadEntry:
        key, url = recording.key, recording.audio_url
        attempts = previous.attempts if previous and previous.status == "failed" else 0
        if not url:
            return await self._failed(key, None, "no audio URL", attempts)
        partial = self.cache.partial(key)
        note = None
        try:
            done, tries = await self.transfer.fetch(url, partial)
        except TransferError as exc:
            if exc.reason not in ROTTEN_LINK or self.other_media is None:
                return await self._failed(key, url, exc.reason, attempts + exc.attempts)
            moved = await self._from_other_media(recording, exc, partial)
            if isinstance(moved, TransferError):
                return await self._failed(key, url, moved.reason, attempts + moved.attempts)
            note = f"{redact(url)} answered {exc.reason}: fetched from another address its archive lists"
            url, done, tries = moved
        attempts += tries
        upstream = {"url": redact(url), "bytes": done.size, "sha256": done.sha256, "etag": done.etag}
        upstream |= {"last_modified": done.last_modified, "attempts": attempts, "note": note}
        try:
            info = probe(partial)
        except AudioError as exc:
            discard(partial)  # unusable bytes: rejected, and not fetched again until they change upstream
            entry = DownloadEntry(
                key=key, status="rejected", reason=exc.reason, updated_at=manifests.utc_now(), **upstream
            )
            await self.ledger.record_async(entry)
            return entry
        entry = DownloadEntry(
            key=key,
            status="ok",
            path=await self.cache.place_async(partial, done.sha256, info.format),
            format=info.format,
            duration_s=round(info.duration_s, 3),
            duration_estimated=info.duration_estimated,
            sample_rate=info.sample_rate,
            channels=info.channels,
            updated_at=manifests.utc_now(),
            **upstream,
        )
        finish(partial)
        entry = await self._settle_ownership(entry)
        await self.ledger.record_async(entry)
        return entry

    async def _settle_ownership(self, entry: DownloadEntry) -> DownloadEntry:
        """Of two keys with the same bytes one owns the file and the other is its duplicate."""
        owner = self.ledger.owner_of(entry.sha256 or "")
        if owner is None or owner == entry.key:
            return entry
        if owner_rank(entry.key) < owner_rank(owner):
            demoted = {"status": "duplicate", "duplicate_of": entry.key, "updated_at": entry.updated_at}
            await self.ledger.record_async(self.ledger.entries[owner].model_copy(update=demoted))
            return entry
        return entry.model_copy(update={"status": "duplicate", "duplicate_of": owner})

    async def _failed(self, key: str, url: str | None, reason: str, attempts: int) -> DownloadEntry:
        entry = DownloadEntry(
            key=key,
            status="failed",
            url=redact(url) if url else None,
            reason=redact(reason),
            attempts=attempts,
            updated_at=manifests.utc_now(),
        )
        await self.ledger.record_async(entry)
        return entry


async def run_downloads(
    settings: Settings,
    folder: Path,
    cache_root: Path | str | Storage,
    options: FetchOptions,
    on_progress: ProgressHook | None = None,
    on_start: Callable[[int], None] | None = None,
) -> FetchReport:
    """Download everything selected that is not yet verified in the cache."""
    options = options.validated()
    folder, cache = Path(folder), Cache(cache_root)
    selection = load_selection(folder)
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
    per_host = options.per_host or settings.audio.max_concurrency
    processed: list[str] = []
    async with Transfer(
        settings,
        jobs=options.jobs,
        per_host=per_host,
        max_bytes=int(options.max_file_mb * 2**20),
        on_bytes=lambda amount: progress("bytes", amount),
    ) as transfer:
        tally = RequestTally()  # asking archives for other addresses of rotten links

        async def other_media(recording: Recording) -> list[str]:
            return await registry.get(recording.source).other_media(settings, recording, tally)

        downloader = Downloader(
            transfer, cache, ledger, retry_rejected=options.retry_rejected, other_media=other_media
        )
        budgets = MediaBudgets(settings, ledger.entries.values(), manifests.utc_now())
        budgets.announce((key for key in missing if key in recordings), manifests.utc_now())

        async def worker() -> None:
            while report.stopped is None and not queue.empty():
                recording = queue.get_nowait()
                if cache.free_mb() < options.min_free_mb:
                    report.stopped = (
                        f"less than {options.min_free_mb:g} MB free under {cache.url}: stopped downloading"
                    )
                    return
                if budgets.admit(recording.key, manifests.utc_now()) is not None:
                    progress("deferred", 1)
                    continue
                taken = report.bytes
                await downloader.download(recording, report)
                budgets.spend(recording.key, report.bytes - taken, manifests.utc_now())
                processed.append(recording.key)
                progress("file", 1)

        try:
            await asyncio.gather(*(worker() for _ in range(options.jobs)))
            hold_point("downloads-journaled")
        finally:
            report.requests = transfer.service.requests_made + tally.requests
            report.unreachable_hosts = sorted(transfer.unreachable_hosts)
            report.deferred = budgets.deferred()
            ledger.compact({"cache": cache.url, "jobs": options.jobs, "per_host": per_host})
    report.count_outcomes(ledger, processed)
    return report
