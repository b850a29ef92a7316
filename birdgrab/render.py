"""Rich rendering of command results (tables, summaries) and of transfer progress.

Bars and colour only on a terminal; with --quiet, --log-format json or without a TTY, progress
becomes a plain log line every few seconds, which is what cron mail and log files want.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:  # stats needs pandas, which fetch and filter should not pay to import
    from birdgrab.stats import Stats

from birdgrab.models import SelectionManifest
from birdgrab.sources.registry import registry

log = logging.getLogger("birdgrab")
PLAIN_PROGRESS_EVERY_S = 5.0


def console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def selection_table(selection: SelectionManifest, wiki_lang: str | None) -> Table:
    """Species, recordings left after each filter, article, kept/dropped."""
    rows = [(name, s.funnel, s.wiki_title, "kept", "") for name, s in selection.species.items()]
    rows += [(name, d.funnel, None, "dropped", d.reason) for name, d in selection.dropped_species.items()]
    rows.sort(key=lambda row: (row[3] != "kept", row[0]))
    steps = list(dict.fromkeys(step for row in rows for step in row[1]))
    kept = sum(len(s.recordings) for s in selection.species.values())
    table = Table(
        title=f"{len(selection.species)} species kept with {kept} recordings, "
        f"{len(selection.dropped_species)} species dropped",
        title_justify="left",
    )
    table.add_column("species", style="italic")
    for step in steps:
        table.add_column(step, justify="right")
    if wiki_lang:
        table.add_column(f"{wiki_lang} article")
    table.add_column("kept/dropped")
    for name, funnel, title, verdict, reason in rows:
        cells = [name, *(str(funnel.get(step, "")) for step in steps)]
        if wiki_lang:
            cells.append(title or "")
        cells.append(verdict if not reason else f"dropped: {reason}")
        table.add_row(*cells, style=None if verdict == "kept" else "dim")
    return table


def _counts_table(
    title: str, rows: list[tuple[str, object]], failed: dict[str, str], rejected: dict[str, str] | None = None
) -> Table:
    """A two-column summary (what, count), then one row per rejection reason (yellow: listed, not a
    failure) and per failure reason (red), commonest first."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for what, count in rows:
        table.add_row(what, str(count))
    for verdict, reasons, style in (("rejected", rejected or {}, "yellow"), ("failed", failed, "red")):
        for reason, count in sorted(Counter(reasons.values()).items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(f"{verdict}: {reason}", str(count), style=style)
    return table


def fetch_table(report) -> Table:
    rows: list[tuple[str, object]] = [
        ("selected", report.selected),
        ("downloaded", f"{report.downloaded} ({report.bytes / 2**20:.1f} MB)"),
        ("already in the cache", report.skipped),
        ("duplicates (same bytes as another key)", report.duplicates),
    ]
    if report.vanished:
        rows.append(("vanished upstream before download", report.vanished))
    for archive, count in sorted(report.deferred.items()):
        rows.append((f"left for a later run: {archive} media budget reached", count))
    return _counts_table("fetch", rows, report.failed, report.rejected)


def chunk_table(report) -> Table:
    rows = [
        ("recordings in the dataset", report.recordings),
        ("rebuilt / unchanged / removed", f"{report.built} / {report.unchanged} / {report.removed}"),
        ("chunks written / in the dataset", f"{report.chunks_written} / {report.chunks_total}"),
        ("classes", report.classes),
        ("windows not written", report.dropped_summary()),
        ("near-duplicates chunked once", report.near_duplicates),
        ("not downloaded (yet)", report.not_downloaded),
    ]
    if report.moved:
        rows.append(("changed split with their group", f"{len(report.moved)} ({report.moved_ways()})"))
    if report.unseen:
        rows.append(("--unseen-by", report.unseen))
    return _counts_table("chunk", rows, report.failed, report.rejected)


def print_stats(stats: Stats, out: Console) -> None:
    table = Table(title=f"{len(stats.rows)} species, {stats.recordings} recordings", title_justify="left")
    table.add_column("species", style="italic")
    table.add_column(f"{stats.wiki_lang} article")
    archives = [a for a in registry if a.default_on or a.name in stats.per_source]
    for archive in archives:
        table.add_column(archive.title, justify="right")
    table.add_column(f"{stats.wiki_lang} Wikipedia", justify="center")
    table.add_column("bird", justify="center")
    for row in stats.rows:
        table.add_row(
            row.species,
            row.local_name or "",
            *(str(row.recordings.get(archive.name, 0)) for archive in archives),
            row.article,
            {True: "yes", False: "no", None: "?"}[row.is_bird],
        )
    out.print(table)
    sources = ", ".join(f"{k}: {v}" for k, v in sorted(stats.per_source.items()))
    kinds = ", ".join(f"{kind} {count}" for kind, count in stats.skipped_by_kind.items())
    out.print(
        f"recordings: {stats.recordings} ({sources}); downloadable: {stats.downloadable}; "
        f"archive items skipped: {stats.skipped}" + (f" ({kinds})" if kinds else "")
    )
    for listing in stats.incomplete_listings:
        out.print(f"incomplete listing (asked again next run): {listing}")
    if stats.rejected:
        out.print(f"rejected as unusable ({len(stats.rejected)}; fetched again only once changed upstream):")
        for key, reason in sorted(stats.rejected.items()):
            out.print(f"  {key}: {reason}", markup=False, highlight=False)
    if stats.likely_mislabels:
        out.print(
            f"likely mislabelled upstream ({len(stats.likely_mislabels)}; BirdNET confirms none of their windows):"
        )
        for item in stats.likely_mislabels:
            out.print(
                f"  {item['key']} filed as {item['label']}: BirdNET hears {item['heard']}, "
                f"{item['label']} at most {item['best']:.2f}  {item['page_url'] or ''}"
            )
    if stats.dataset is None:
        out.print("dataset: not built yet (birdgrab fetch, or birdgrab chunk)")
        return
    data = stats.dataset
    people = f" by {data.people} recordists" if data.people is not None else ""
    table = Table(
        title=f"dataset: {data.classes} classes, {data.recordings} recordings{people}, {data.chunks} chunks ({data.hours} h)",
        title_justify="left",
    )
    table.add_column("class", style="italic")
    for split in ("train", "val", "test"):
        table.add_column(split, justify="right")
    for label, splits in data.chunks_by_class.items():
        table.add_row(label, *(str(splits.get(split, 0)) for split in ("train", "val", "test")))
    out.print(table)
    if data.made_with is None:
        out.print("how it was made: no dataset.json")
        return
    from birdgrab.dataset.account import account_lines

    out.print("how it was made (dataset.json):")
    for line in account_lines(data.made_with):
        out.print(f"  {line}", markup=False, highlight=False)


class TransferProgress:
    """Files and bytes done, speed and ETA: rich bars on a terminal, plain periodic lines elsewhere."""

    def __init__(self, label: str, *, rich: bool, counts_bytes: bool = True):
        self.label = label
        self.counts_bytes = counts_bytes  # chunking counts files only: no MB to show
        self.rich = rich and sys.stderr.isatty()
        self.total = 0
        self.files = 0
        self.bytes = 0
        self.deferred = 0  # files a media budget leaves for a later run
        self._started = time.monotonic()
        self._last_line = self._started
        self._progress: Progress | None = None

    def __enter__(self) -> TransferProgress:
        if self.rich:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
        return self

    def start(self, total: int) -> None:
        self.total = total
        if self._progress is not None:
            self._task = self._progress.add_task(self.label, total=total)

    def __call__(self, event: str, amount: int) -> None:
        if event == "bytes":
            self.bytes += amount
        elif event == "deferred":
            self.deferred += amount
        else:
            self.files += amount
        waiting = f", {self.deferred} left by a media budget" if self.deferred else ""
        now = time.monotonic()
        speed = self.bytes / 2**20 / (now - self._started or 1e-9)
        if self._progress is not None:
            # The bar counts files; bytes and speed go in the description.
            size = f" {self.bytes / 2**20:,.1f} MB {speed:,.1f} MB/s" if self.counts_bytes else ""
            description = f"{self.label}{size}{waiting}"
            self._progress.update(
                self._task, advance=amount if event in ("file", "deferred") else 0, description=description
            )
            return
        if now - self._last_line >= PLAIN_PROGRESS_EVERY_S:
            self._last_line = now
            size = f", {self.bytes / 2**20:.1f} MB, {speed:.1f} MB/s" if self.counts_bytes else ""
            log.info(
                "%s: %d/%d files%s%s",
                self.label,
                self.files,
                self.total,
                size,
                waiting,
                extra={
                    "event": f"{self.label}.progress",
                    "files": self.files,
                    "total": self.total,
                    "bytes": self.bytes,
                    "deferred": self.deferred,
                },
            )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
