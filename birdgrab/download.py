"""`birdgrab fetch`, the download half: concurrent, polite, resumable, verified, deduplicated.

Each recording streams into `cache/.partial/<hash of key>.part`, its sha256 computed as the
bytes arrive. A transfer cut short keeps its partial file and resumes with an HTTP Range request
(If-Range guards against a changed file); a server that ignores Range restarts it. A complete
file is checked against Content-Length, verified as audio (`audio.probe`: an HTML page or a
corrupt file is a failed item, not a cache entry), then renamed to its content address
`cache/<sha[:2]>/<sha256>.<format>`. The same bytes under two keys are stored once: the second
key is recorded as a duplicate of the first (the registry's preferred archive owns the file).

Progress is kept in `downloads.json` plus its journal (`manifests.Ledger`): a crash loses only
the files in flight, and bookkeeping stays O(1) per file however large the catalogue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from birdgrab import manifests
from birdgrab.budget import MediaBudgets
from birdgrab.errors import ServiceError, UsageError
from birdgrab.files import TEMP_SUFFIX
from birdgrab.http_client import RETRYABLE, ServiceClient, TransientError, describe_transport_error
from birdgrab.models import DownloadEntry, DownloadsManifest, Recording, SelectionManifest
from birdgrab.probe import AudioError, probe
from birdgrab.settings import Settings, redact
from birdgrab.sources.registry import registry

log = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"
DEFAULT_JOBS = 4
DEFAULT_MAX_FILE_MB = 2048


class DownloadRejected(Exception):
    """A permanent failure of one item (wrong content, too large, refused): not retried this run."""


@dataclass(frozen=True)
class FetchOptions:
    jobs: int = DEFAULT_JOBS
    per_host: int = DEFAULT_JOBS
    max_file_mb: float = DEFAULT_MAX_FILE_MB
    min_free_mb: float = 200

    def validated(self) -> FetchOptions:
        if self.jobs < 1 or self.jobs > 64:
            raise UsageError(f"--jobs must be between 1 and 64, got {self.jobs}")
        if self.max_file_mb <= 0:
            raise UsageError(f"--max-file-mb must be greater than 0, got {self.max_file_mb:g}")
        return self


def owner_rank(key: str) -> tuple[int, str]:
    """Which of two keys with the same bytes owns the file: the archive with the lower
    `Archive.preference` (xeno-canto), then the lower key."""
    return (registry.of_key(key).preference, key)


class DownloadLedger(manifests.Ledger[DownloadsManifest, DownloadEntry]):
    """downloads.json and its journal (see `manifests.Ledger`), with an index of verified files by sha256."""

    def __init__(self, folder: Path):
        super().__init__(folder, manifests.DOWNLOADS, DownloadsManifest, DownloadEntry)
        self._ok_by_sha: dict[str, set[str]] = {}
        for entry in self.entries.values():
            if entry.status == "ok" and entry.sha256:
                self._ok_by_sha.setdefault(entry.sha256, set()).add(entry.key)

    def record(self, entry: DownloadEntry) -> None:
        previous = self.entries.get(entry.key)
        if previous is not None and previous.sha256:
            self._ok_by_sha.get(previous.sha256, set()).discard(entry.key)
        if entry.status == "ok" and entry.sha256:
            self._ok_by_sha.setdefault(entry.sha256, set()).add(entry.key)
        super().record(entry)

    def owner_of(self, sha256: str) -> str | None:
        owners = self._ok_by_sha.get(sha256)
        return min(owners, key=owner_rank) if owners else None


def cached_file(cache: Path, entry: DownloadEntry | None) -> Path | None:
    """The verified cache file of an ok entry, if it is still there with its size."""
    if entry is None or entry.status != "ok" or not entry.path:
        return None
    path = cache / entry.path
    try:
        return path if path.stat().st_size == entry.bytes else None
    except OSError:
        return None


def is_done(cache: Path, ledger: DownloadLedger, key: str) -> bool:
    entry = ledger.entries.get(key)
    if entry is not None and entry.status == "duplicate" and entry.duplicate_of:
        entry = ledger.entries.get(entry.duplicate_of)
    return cached_file(cache, entry) is not None


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
    deferred: dict[str, int] = field(default_factory=dict)  # archive -> recordings left by its media budget
    unreachable_hosts: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The one line a fetch ends with."""
        budgets = "".join(
            f"; {n} left for a later run by the {a} media budget" for a, n in self.deferred.items()
        )
        return (
            f"fetch: {self.downloaded} downloaded, {self.skipped} already cached, {self.duplicates} duplicates, "
            f"{len(self.failed)} failed ({self.bytes / 2**20:.1f} MB, {self.requests} requests){budgets}"
        )

    def facts(self) -> dict[str, object]:
        """The numbers for the JSON log."""
        return {
            "downloaded": self.downloaded,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "failed": len(self.failed),
            "bytes": self.bytes,
            "deferred": self.deferred,
        }

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


class Downloader:
    def __init__(
        self,
        settings: Settings,
        cache: Path,
        ledger: DownloadLedger,
        options: FetchOptions,
        on_progress: ProgressHook | None = None,
    ):
        self.cache = Path(cache)
        self.partial_dir = self.cache / PARTIAL_DIR
        self.ledger = ledger
        self.options = options
        self.max_bytes = int(options.max_file_mb * 1024 * 1024)
        self.client = ServiceClient(replace(settings.audio, max_concurrency=options.jobs), settings)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        # Hosts that refused connections through a whole retry cycle: the other files on them fail
        # at once this run (and are retried next run) instead of each waiting through its retries.
        self.unreachable_hosts: set[str] = set()
        self._progress = on_progress or (lambda event, amount: None)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _partial(self, key: str) -> Path:
        return self.partial_dir / f"{hashlib.sha1(key.encode()).hexdigest()}{TEMP_SUFFIX}"

    def _host_slot(self, url: str) -> asyncio.Semaphore:
        host = urlsplit(url).netloc
        return self._hosts.setdefault(host, asyncio.Semaphore(self.options.per_host))

    async def _transfer(self, url: str, partial: Path) -> tuple[str, int]:
        """One attempt: stream into `partial` (resuming if it has bytes); return (sha256, size)."""
        meta_path = partial.with_suffix(".json")
        have = partial.stat().st_size if partial.exists() else 0
        headers = {}
        known_validator = None
        if have:
            headers["Range"] = f"bytes={have}-"
            with contextlib.suppress(OSError, ValueError):
                known_validator = json.loads(meta_path.read_text()).get("validator")
                if known_validator:
                    headers["If-Range"] = known_validator
        async with (
            self._host_slot(url),
            self.client.slot(),
            self.client.stream(url, headers=headers) as response,
        ):
            if response.status_code == 416 and have:
                if response.headers.get("Content-Range") == f"bytes */{have}":
                    # Complete already: the run that fetched it died before filing it.
                    return _sha256_of(partial).hexdigest(), have
                _discard(partial)  # our partial is no prefix of the current file: start over
                raise TransientError("server refused to resume (416)", retry_after=0)
            try:
                self.client.raise_for_status(response)
            except ServiceError as exc:
                raise DownloadRejected(f"HTTP {response.status_code}") from exc
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type in ("text/html", "application/xhtml+xml"):
                raise DownloadRejected("server sent an HTML page instead of audio")
            validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
            resumed = response.status_code == 206
            if resumed and (
                not have
                or not response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
                # Not every server honours If-Range: a piece of another version must not be appended.
                or (known_validator and validator and validator != known_validator)
            ):
                _discard(partial)
                raise TransientError(
                    "the server answered another range or version; starting over", retry_after=0
                )
            expected = _expected_total(response, have if resumed else 0)
            if expected is not None and expected > self.max_bytes:
                raise DownloadRejected(f"file of {expected / 2**20:.0f} MB exceeds --max-file-mb")
            # Only a hint for resuming (If-Range): no fsync; a torn file just means no validator.
            meta_path.write_text(json.dumps({"url": redact(url), "validator": validator}))
            hasher = _sha256_of(partial) if resumed else hashlib.sha256()
            mode = "ab" if resumed else "wb"
            if not resumed:
                have = 0
            size = have
            with open(partial, mode) as out:
                # Raw bytes as they arrive (no chunk_size: httpx would hold back up to that much, which a
                # cut-off transfer then loses); decoded only if the server encoded them, so that a gzip
                # bomb is measured by what it inflates to.
                blocks = (
                    response.aiter_bytes() if "Content-Encoding" in response.headers else response.aiter_raw()
                )
                async for block in blocks:
                    size += len(block)
                    if size > self.max_bytes:
                        raise DownloadRejected(
                            f"file larger than --max-file-mb ({self.options.max_file_mb:g} MB)"
                        )
                    out.write(block)
                    hasher.update(block)
                    self._progress("bytes", len(block))
        if expected is not None and size != expected:
            raise TransientError(f"got {size} of {expected} bytes (truncated)")
        return hasher.hexdigest(), size

    async def download(self, recording: Recording) -> DownloadEntry:
        """Download, verify and file one recording; never raises for a per-item failure."""
        key, url = recording.key, recording.audio_url
        previous = self.ledger.entries.get(key)
        attempts = previous.attempts if previous and previous.status == "failed" else 0
        now = manifests.utc_now()
        if not url:
            return self._failed(key, None, "no audio URL", attempts)
        host = urlsplit(url).netloc
        if host in self.unreachable_hosts:
            return self._failed(
                key, url, f"could not connect to {host} (gave up on it for this run)", attempts
            )
        partial = self._partial(key)
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            async for attempt in self.client.retrying():
                with attempt:
                    attempts += 1
                    sha, size = await self._transfer(url, partial)
        except DownloadRejected as exc:
            _discard(partial)
            return self._failed(key, url, str(exc), attempts)
        except RETRYABLE as exc:
            if isinstance(exc, httpx.ConnectError):
                self.unreachable_hosts.add(host)
            # The partial file stays: the next run resumes it.
            return self._failed(key, url, describe_transport_error(exc), attempts)
        try:
            info = probe(partial)
        except AudioError as exc:
            _discard(partial)
            return self._failed(key, url, exc.reason, attempts)
        final_rel = f"{sha[:2]}/{sha}.{info.format}"
        owner = self.ledger.owner_of(sha)
        entry = DownloadEntry(
            key=key,
            status="ok",
            url=redact(url),
            path=final_rel,
            bytes=size,
            sha256=sha,
            format=info.format,
            duration_s=round(info.duration_s, 3),
            sample_rate=info.sample_rate,
            channels=info.channels,
            attempts=attempts,
            updated_at=now,
        )
        final = self.cache / final_rel
        if final.exists() and final.stat().st_size == size:
            _remove(partial)  # the same bytes are already cached (another key, or a crash before recording)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, final)
        _remove(partial.with_suffix(".json"))
        if owner is not None and owner != key:
            if owner_rank(key) < owner_rank(owner):
                self.ledger.record(
                    self.ledger.entries[owner].model_copy(
                        update={"status": "duplicate", "duplicate_of": key, "updated_at": now}
                    )
                )
            else:
                entry = entry.model_copy(update={"status": "duplicate", "duplicate_of": owner})
        self.ledger.record(entry)
        return entry

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


def _sha256_of(path: Path):
    """A sha256 object fed with the file's bytes (call .hexdigest(), or keep updating it)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
    return hasher


def _expected_total(response: httpx.Response, offset: int) -> int | None:
    """Bytes the file will have once this answer is complete (from Content-Length)."""
    length = response.headers.get("Content-Length")
    if length is None or "Content-Encoding" in response.headers:
        return None
    try:
        return offset + int(length)
    except ValueError:
        return None


def _discard(partial: Path) -> None:
    """Remove a partial download and its resume hint."""
    _remove(partial)
    _remove(partial.with_suffix(".json"))


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def free_mb(folder: Path) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free / 2**20


async def run_downloads(
    settings: Settings,
    folder: Path,
    cache: Path,
    options: FetchOptions,
    on_progress: ProgressHook | None = None,
    on_start: Callable[[int], None] | None = None,
) -> FetchReport:
    """Download everything selected that is not yet verified in the cache."""
    options = options.validated()
    folder, cache = Path(folder), Path(cache)
    selection = manifests.load(folder / manifests.SELECTION, SelectionManifest)
    recordings = manifests.load_recordings(folder)
    if selection is None or recordings is None:
        raise UsageError(f"no selection in {folder}: run `birdgrab catalog` and `birdgrab filter` first")
    ledger = DownloadLedger(folder)
    report = FetchReport()
    keys = selection.selected_keys()
    report.selected = len(keys)
    todo: list[Recording] = []
    for key in keys:
        if is_done(cache, ledger, key):
            report.skipped += 1
        elif key not in recordings.recordings:
            report.failed[key] = "not in recordings.json (run catalog again)"
        elif recordings.recordings[key].vanished:
            report.vanished += 1  # gone upstream before we got it: nothing to retry
        else:
            todo.append(recordings.recordings[key])
    if on_start:
        on_start(len(todo))
    budgets = MediaBudgets(settings, ledger.entries.values(), manifests.utc_now())
    budgets.announce((r.key for r in todo), manifests.utc_now())
    downloader = Downloader(settings, cache, ledger, options, on_progress)
    queue: asyncio.Queue[Recording] = asyncio.Queue()
    for recording in todo:
        queue.put_nowait(recording)

    async def worker() -> None:
        while report.stopped is None:
            try:
                recording = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if free_mb(cache) < options.min_free_mb:
                report.stopped = (
                    f"less than {options.min_free_mb:g} MB free under {cache}: stopped downloading"
                )
                return
            if budgets.admit(recording.key, manifests.utc_now()) is not None:
                if on_progress:
                    on_progress("deferred", 1)
                continue
            entry = await downloader.download(recording)
            if entry.status != "failed":
                budgets.spend(entry.key, entry.bytes or 0, entry.updated_at)
            report.add(entry)
            processed.append(recording.key)
            if on_progress:
                on_progress("file", 1)

    processed: list[str] = []
    try:
        await asyncio.gather(*(worker() for _ in range(options.jobs)))
    finally:
        await downloader.aclose()
        report.requests = downloader.client.requests_made
        report.unreachable_hosts = sorted(downloader.unreachable_hosts)
        report.deferred = budgets.deferred()
        ledger.compact({"cache": str(cache), "jobs": options.jobs})
    report.count_outcomes(ledger, processed)
    return report
