"""`birdgrab refresh`: catalog (incremental) -> filter (last options) -> fetch -> chunk, for cron.

Incremental: archives that can list what changed since a date (xeno-canto's uploads) are asked only
for that since the last successful refresh minus a safety margin (uploads can appear late); the
others are walked in full (Europeana's cursor) and their ids diffed;
Wikipedia is asked only about new species and articles older than `wiki_max_age_days`. Every
step is itself idempotent and crash-safe, so a refresh killed at any moment and run again ends
exactly where an uninterrupted one would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from birdgrab import manifests
from birdgrab.catalog import CatalogOptions, run_catalog
from birdgrab.catalog import saved_options as saved_catalog_options
from birdgrab.dataset import ChunkOptions, run_chunk
from birdgrab.dataset.report import log_moves
from birdgrab.download.run import FetchOptions, run_downloads
from birdgrab.executors import Workers
from birdgrab.models import (
    ChunksManifest,
    ClassIdsManifest,
    DownloadsManifest,
    RefreshManifest,
    Selection,
)
from birdgrab.overrides import Overrides
from birdgrab.selection import FilterOptions, is_current, run_filter, selection_unchanged
from birdgrab.selection import saved_options as saved_filter_options
from birdgrab.settings import Settings
from birdgrab.storage import Storage
from birdgrab.store import RecordingStore

REFRESH = "refresh.json"
# Checked before the first request: a bad one stops the run untouched. species.json is not among
# them: catalog, the first step, reads it before its own first request (it is one of the files a
# no-change refresh should not read twice).
MANIFESTS = [
    (manifests.SELECTION, Selection),
    (manifests.DOWNLOADS, DownloadsManifest),
    (manifests.CHUNKS, ChunksManifest),
    (manifests.CLASS_IDS, ClassIdsManifest),
]


@dataclass
class RefreshOptions:
    catalog: Overrides[CatalogOptions] = field(default_factory=lambda: Overrides(CatalogOptions()))
    filter: Overrides[FilterOptions] = field(default_factory=lambda: Overrides(FilterOptions()))
    fetch: FetchOptions = field(default_factory=FetchOptions)
    chunk: ChunkOptions | None = field(default_factory=ChunkOptions)  # None: --no-chunk
    full: bool = False  # ignore the last refresh date: list everything
    margin_days: int = 3
    wiki_max_age_days: int = 90
    prune: bool = False


@dataclass
class RefreshReport:
    new_recordings: int = 0
    species_added: int = 0
    vanished: int = 0
    pruned: int = 0
    downloaded: int = 0
    chunks_written: int = 0
    moved: str = ""  # recordings whose split changed with their group (ChunkReport.moved_summary)
    failures: list[str] = field(default_factory=list)
    rejected: int = 0  # files whose bytes are unusable: listed in stats, not failures
    since: date | None = None
    requests: int = 0
    duration_s: float = 0.0
    stopped: str | None = None
    likely_mislabels: int = 0  # --verify: recordings BirdNET confirms none of (listed by chunk and stats)

    def facts(self) -> dict[str, Any]:
        """The numbers of the run (kept in refresh.json, and in the JSON log)."""
        return {
            "new_recordings": self.new_recordings,
            "species_added": self.species_added,
            "files_downloaded": self.downloaded,
            "chunks_written": self.chunks_written,
            "failures": len(self.failures),
            "rejected": self.rejected,
            "vanished": self.vanished,
            "pruned": self.pruned,
            "since": self.since.isoformat() if self.since else None,
            "duration_s": round(self.duration_s, 1),
            "likely_mislabels": self.likely_mislabels,
        }

    def summary(self) -> str:
        """The one line a refresh ends with (also under --quiet: what cron mails)."""
        return (
            f"refresh: {self.new_recordings} new recordings, {self.species_added} species added, "
            f"{self.downloaded} files downloaded, {self.chunks_written} chunks written, "
            f"{len(self.failures)} failures, {self.duration_s:.1f} s"
            + (
                f"; {self.likely_mislabels} likely mislabelled (birdgrab stats)"
                if self.likely_mislabels
                else ""
            )
            + (f"; {self.moved}" if self.moved else "")
        )


def catalog_options(folder: Path, options: RefreshOptions, since: date | None) -> CatalogOptions:
    """The last catalog's options, with what was given for this run over them."""
    saved = saved_catalog_options(folder) or CatalogOptions()
    return replace(
        options.catalog.over(saved),
        since=since,
        wiki_max_age_days=options.wiki_max_age_days,
        prune=options.prune,
    ).validated()


def filter_options(folder: Path, options: RefreshOptions) -> FilterOptions:
    """The last filter's options, with what was given for this run over them."""
    return options.filter.over(saved_filter_options(folder) or FilterOptions()).validated()


async def run_refresh(
    settings: Settings,
    folder: Path,
    cache: Path | str | Storage,
    out: Path | str | Storage,
    options: RefreshOptions,
    on_fetch_progress=None,
    on_fetch_start=None,
    on_chunk_progress=None,
    workers: Workers | None = None,
) -> RefreshReport:
    """One refresh; `cache` and `out` are folders or storage URLs, the cutting runs on `workers`
    (default: this machine's process pool)."""
    started = time.monotonic()
    started_at = manifests.utc_now()
    folder = Path(folder)
    report = RefreshReport()
    existing = RecordingStore.open(folder)  # (a recordings.json of an earlier version moves in here)
    if existing is not None:
        existing.close()
    for name, model in MANIFESTS:
        if name != manifests.SELECTION or not selection_unchanged(folder):  # (filter wrote it valid)
            manifests.load(folder / name, model)
    state = manifests.load(folder / REFRESH, RefreshManifest)
    last = state.last_success_at if state else None
    if "since" in options.catalog.given:
        report.since = options.catalog.options.since
    elif last is not None and not options.full:
        report.since = last.date() - timedelta(days=options.margin_days)
    catalog = catalog_options(folder, options, report.since)  # both checked before any request
    filters = filter_options(folder, options)

    catalog_report = await run_catalog(settings, folder, catalog)
    report.new_recordings = catalog_report.added
    report.species_added = catalog_report.species_added
    report.vanished = catalog_report.vanished
    report.pruned = catalog_report.pruned
    report.failures += catalog_report.failures
    report.requests += catalog_report.requests

    if not is_current(folder, filters):  # the same catalogue and options would give the same selection
        run_filter(folder, filters)
    fetch_report = await run_downloads(
        settings, folder, cache, options.fetch, on_fetch_progress, on_fetch_start
    )
    report.downloaded = fetch_report.downloaded + fetch_report.duplicates
    report.requests += fetch_report.requests
    report.failures += [f"{key}: {reason}" for key, reason in sorted(fetch_report.failed.items())]
    report.rejected = len(fetch_report.rejected)
    report.stopped = fetch_report.stopped
    if options.chunk is not None and report.stopped is None:
        chunk_report = run_chunk(folder, cache, out, options.chunk, on_chunk_progress, workers)
        report.chunks_written = chunk_report.chunks_written
        report.moved = chunk_report.moved_summary()
        log_moves(chunk_report)
        report.failures += [f"{key}: {reason}" for key, reason in sorted(chunk_report.failed.items())]
        report.rejected += len(chunk_report.rejected)
        report.stopped = chunk_report.stopped
        report.likely_mislabels = len(chunk_report.verified.mislabels) if chunk_report.verified else 0

    report.duration_s = time.monotonic() - started
    catalog_complete = not catalog_report.failures
    manifests.save(
        folder / REFRESH,
        manifests.new_manifest(
            RefreshManifest,
            {"margin_days": options.margin_days, "wiki_max_age_days": options.wiki_max_age_days},
            last_success_at=started_at if catalog_complete else last,
            last_summary=report.facts(),
        ),
    )
    return report
