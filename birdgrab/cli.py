"""The command line: parse options, call one library function, render the result.

Exit codes (CONTRACT.md) are decided here and only here: 0 done, 1 some items failed,
2 usage/configuration/input error, 3 lock held, 4 no source reachable.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer._click import exceptions as click_errors  # typer's own copy of click

from birdgrab import __version__
from birdgrab.errors import BirdgrabError, ServiceUnreachable, UsageError
from birdgrab.lock import folder_locks
from birdgrab.log import setup_logging
from birdgrab.settings import load_settings, redact
from birdgrab.sources.registry import registry

if TYPE_CHECKING:  # birdgrab.dataset imports the audio stack, which fetch-only runs need not load
    from birdgrab.dataset import ChunkOptions
    from birdgrab.download.run import FetchOptions

log = logging.getLogger("birdgrab")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Build machine-learning-ready bird-sound datasets from xeno-canto, Europeana and Wikipedia.",
)


class LogFormat(StrEnum):
    text = "text"
    json = "json"


# Options every command takes (CONTRACT.md).
ManifestsDir = Annotated[Path, typer.Option("--manifests", help="Folder of the JSON manifests.")]
CacheDir = Annotated[Path, typer.Option("--cache", help="Folder of the downloaded audio cache.")]
OutDir = Annotated[Path, typer.Option("--out", help="Dataset folder.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug detail.")]
LogFormatOpt = Annotated[LogFormat, typer.Option("--log-format", help="text, or json (one object a line).")]
LogFile = Annotated[Path | None, typer.Option("--log-file", help="Also append the log to this file.")]


@dataclass(frozen=True)
class Common:
    """The options every command takes (CONTRACT.md), handed to the command as one value."""

    manifests: Path
    cache: Path
    out: Path
    quiet: bool
    verbose: bool
    log_format: LogFormat
    log_file: Path | None

    @property
    def rich(self) -> bool:
        """Tables and bars for a person at a terminal; plain lines otherwise."""
        return not self.quiet and self.log_format == LogFormat.text


_COMMON_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, annotation, default in [
        ("manifests", ManifestsDir, Path("manifests")),
        ("cache", CacheDir, Path("cache")),
        ("out", OutDir, Path("dataset")),
        ("quiet", Quiet, False),
        ("verbose", Verbose, False),
        ("log_format", LogFormatOpt, LogFormat.text),
        ("log_file", LogFile, None),
    ]
]


def option_group(name: str, group: type, parameters: list[inspect.Parameter]) -> Callable:
    """A decorator giving a command a group of options, handed to it as one value (keyword `name`).

    typer reads a command's options from its signature, so the wrapper shows the command's own
    parameters followed by the group's: each group is declared once, not in every command.
    """

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != name]

        @functools.wraps(command)
        def wrapper(**kwargs: object) -> None:
            value = group(**{p.name: kwargs.pop(p.name) for p in parameters})
            command(**{name: value}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *parameters])  # type: ignore[attr-defined]
        return wrapper

    return decorate


common_options = option_group("common", Common, _COMMON_PARAMETERS)


def _archive_names(values: list[str] | None) -> list[str] | None:
    """--source values, checked against the archive registry."""
    for value in values or ():
        if value not in registry.names():
            raise typer.BadParameter(f"{value!r} is not an archive: use one of {', '.join(registry.names())}")
    return values or None


def source_option(help_text: str) -> typer.models.OptionInfo:
    """--source NAME (repeatable), one of the registered archives."""
    return typer.Option(
        "--source", callback=_archive_names, help=f"{help_text} One of: {', '.join(registry.names())}."
    )


def _queries(**given: str | None) -> dict[str, str]:
    """The archive query options given, by archive name."""
    return {
        a.name: given[a.query_option.parameter]
        for a in registry
        if a.query_option and given.get(a.query_option.parameter) is not None
    }


# Each archive's query option (--xc-query, --europeana-query, ...), declared by the archive.
query_options = option_group(
    "queries",
    _queries,
    [
        inspect.Parameter(
            a.query_option.parameter,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                str | None,
                typer.Option(
                    a.query_option.flag,
                    help=a.query_option.help
                    + (f" Default: {a.query_option.default!r}." if a.query_option.default else ""),
                ),
            ],
        )
        for a in registry
        if a.query_option
    ],
)


def _run(
    work: Callable[[], int | None],
    common: Common,
    *,
    locks: tuple[Path, ...] = (),
    dataset: Path | None = None,
) -> None:
    """Run one command body, holding the locks of the folders it writes (`dataset`: the published
    folder, whose lock lives beside it), and turn its outcome into the contract's exit code."""
    setup_logging(
        quiet=common.quiet,
        verbose=common.verbose,
        log_format=common.log_format.value,
        log_file=common.log_file,
    )
    try:
        with folder_locks(*locks, published=dataset):
            code = work() or 0
    except BirdgrabError as exc:
        log.error("%s", redact(str(exc)), extra={"event": "error", "exit_code": exc.exit_code})
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        log.error("interrupted", extra={"event": "interrupted"})
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug: one line, the traceback only with --verbose
        log.error(
            "internal error: %s: %s (run with --verbose for details)",
            type(exc).__name__,
            redact(str(exc)),
            exc_info=common.verbose,
            extra={"event": "internal_error"},
        )
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command(
    epilog="Example: birdgrab catalog --species-file manifests/presets/jibjib-194.txt --wiki-lang de",
)
@common_options
@query_options
def catalog(
    common: Common,
    queries: dict[str, str],
    source: Annotated[
        list[str] | None,
        source_option("Archive to query (repeatable; default: every default archive whose key is set)."),
    ] = None,
    species_file: Annotated[
        Path | None, typer.Option("--species-file", help="Only these species: one scientific name a line.")
    ] = None,
    wiki_lang: Annotated[
        str, typer.Option("--wiki-lang", help="Wikipedia language to resolve species in.")
    ] = "de",
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since", formats=["%Y-%m-%d"], help="Only recordings new (or changed) since YYYY-MM-DD."
        ),
    ] = None,
    refresh_wiki: Annotated[
        bool, typer.Option("--refresh-wiki", help="Ask Wikipedia again about species already known.")
    ] = False,
) -> None:
    """Query the archives and resolve species on Wikipedia into manifests/recordings.sqlite and species.json."""
    from birdgrab.catalog import CatalogOptions, run_catalog

    def work() -> int:
        settings = load_settings()
        options = CatalogOptions(
            sources=source,
            queries=queries,
            species_file=species_file,
            wiki_lang=wiki_lang,
            since=since.date() if since else None,
            refresh_wiki=refresh_wiki,
        )
        _validate_lang(wiki_lang)
        report = asyncio.run(run_catalog(settings, common.manifests, options))
        log.info(
            "catalog: %d new, %d updated recordings (%s); %d species; %s; "
            "Wikipedia: %d names in %d requests; bird checks: %d",
            report.added,
            report.updated,
            ", ".join(f"{k} {v}" for k, v in report.per_source.items()) or "no source",
            report.species,
            report.describe_skipped(),
            report.wiki_lookups,
            report.wiki_requests,
            report.bird_checks,
            extra={"event": "catalog.done", **report.__dict__},
        )
        for failure in report.failures:
            log.warning("failed: %s", failure, extra={"event": "catalog.failure"})
        return 1 if report.failures else 0

    _run(work, common, locks=(common.manifests,))


def _validate_lang(lang: str) -> None:
    if not re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", lang):
        raise UsageError(f"--wiki-lang {lang!r} is not a Wikipedia language code (e.g. de, en)")


# Options of the chunk step, shared by `fetch`, `chunk` and `refresh` (CONTRACT.md).
@dataclass(frozen=True)
class ChunkArgs:
    chunk_seconds: float
    min_chunk_seconds: float
    sample_rate: int
    gate_db: float
    no_gate: bool
    split: str
    min_free_mb: float

    def options(self, jobs: int) -> ChunkOptions:
        """Validated chunk options (a UsageError, exit 2, for nonsense); at most one process a core."""
        from birdgrab.dataset import ChunkOptions, parse_split

        return ChunkOptions(
            sample_rate=self.sample_rate,
            chunk_s=self.chunk_seconds,
            min_chunk_s=self.min_chunk_seconds,
            gate_db=None if self.no_gate else self.gate_db,
            split=parse_split(self.split),
            jobs=max(1, min(jobs, os.cpu_count() or 1)),
            min_free_mb=self.min_free_mb,
        ).validated()


chunk_options = option_group(
    "chunking",
    ChunkArgs,
    [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in [
            (
                "chunk_seconds",
                Annotated[float, typer.Option("--chunk-seconds", help="Length of every WAV chunk.")],
                10.0,
            ),
            (
                "min_chunk_seconds",
                Annotated[
                    float,
                    typer.Option(
                        "--min-chunk-seconds",
                        help="A last piece at least this long is zero-padded; shorter is dropped.",
                    ),
                ],
                3.0,
            ),
            (
                "sample_rate",
                Annotated[int, typer.Option("--sample-rate", help="Sample rate of the chunks, Hz.")],
                32000,
            ),
            (
                "gate_db",
                Annotated[
                    float,
                    typer.Option("--gate-db", help="Drop chunks this many dB below the recording's loudest."),
                ],
                25.0,
            ),
            ("no_gate", Annotated[bool, typer.Option("--no-gate", help="Keep silent chunks too.")], False),
            (
                "split",
                Annotated[
                    str, typer.Option("--split", help="train/val/test percentages, assigned per recording.")
                ],
                "80/10/10",
            ),
            (
                "min_free_mb",
                Annotated[
                    float,
                    typer.Option(
                        "--min-free-mb",
                        min=0,
                        help="Stop cleanly (exit 1) when free disk space falls below this.",
                    ),
                ],
                200,
            ),
        ]
    ],
)


# Options of the download step, shared by `fetch` and `refresh` (CONTRACT.md).
@dataclass(frozen=True)
class FetchArgs:
    jobs: int
    per_host: int | None
    max_file_mb: float
    retry_rejected: bool

    def options(self, min_free_mb: float) -> FetchOptions:
        """Validated download options (a UsageError, exit 2, for nonsense)."""
        from birdgrab.download.run import FetchOptions

        return FetchOptions(
            jobs=self.jobs,
            per_host=self.per_host,
            max_file_mb=self.max_file_mb,
            min_free_mb=min_free_mb,
            retry_rejected=self.retry_rejected,
        ).validated()


fetch_options = option_group(
    "fetching",
    FetchArgs,
    [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in [
            ("jobs", Annotated[int, typer.Option("--jobs", "-j", help="Concurrent downloads.")], 4),
            (
                "per_host",
                Annotated[
                    int | None,
                    typer.Option(
                        "--per-host",
                        help="At most this many concurrent downloads from one host"
                        " [default: 6, or BIRDGRAB_DOWNLOAD_CONCURRENCY].",
                    ),
                ],
                None,
            ),
            (
                "max_file_mb",
                Annotated[
                    float, typer.Option("--max-file-mb", help="Refuse any single file larger than this.")
                ],
                2048,
            ),
            (
                "retry_rejected",
                Annotated[
                    bool,
                    typer.Option(
                        "--retry-rejected",
                        help="Download files rejected as unusable again, even if unchanged upstream.",
                    ),
                ],
                False,
            ),
        ]
    ],
)


def _chunk_and_report(manifests: Path, cache: Path, out: Path, options, rich_output: bool) -> int:
    """Run the chunk step with progress and a summary; returns 1 if some recordings failed."""
    from birdgrab import render
    from birdgrab.dataset import run_chunk

    with render.TransferProgress("chunk", rich=rich_output) as progress:

        def on_progress(event: str, amount: int) -> None:
            if event == "start":
                progress.start(amount)
            else:
                progress(event, amount)

        report = run_chunk(manifests, cache, out, options, on_progress)
    if rich_output:
        render.console().print(render.chunk_table(report))
    log.info(
        "chunk: %d recordings (%d rebuilt, %d unchanged, %d removed), %d chunks written, %d in the dataset, "
        "%d classes; %d silent and %d short pieces dropped; %d near-duplicates; %d failed",
        report.recordings,
        report.built,
        report.unchanged,
        report.removed,
        report.chunks_written,
        report.chunks_total,
        report.classes,
        report.dropped_silent,
        report.dropped_short,
        report.near_duplicates,
        len(report.failed),
        extra={
            "event": "chunk.done",
            "recordings": report.recordings,
            "built": report.built,
            "chunks_written": report.chunks_written,
            "chunks_total": report.chunks_total,
            "failed": len(report.failed),
        },
    )
    for key, reason in sorted(report.rejected.items()):
        log.info(
            "rejected: %s: %s", key, reason, extra={"event": "chunk.rejected", "key": key, "reason": reason}
        )
    for key, reason in sorted(report.failed.items()):
        log.warning(
            "failed: %s: %s", key, reason, extra={"event": "chunk.failed", "key": key, "reason": reason}
        )
    if report.stopped:
        log.error("%s", report.stopped, extra={"event": "chunk.stopped"})
    return 1 if report.failed or report.stopped else 0


class TypeName(StrEnum):
    song = "song"
    call = "call"


@app.command(
    name="filter",
    epilog="Example: birdgrab filter --min-files 50 --no-nd --min-quality C --max-files 400",
)
@common_options
def filter_(
    common: Common,
    min_files: Annotated[
        int, typer.Option("--min-files", help="Drop species with fewer usable, downloadable recordings.")
    ] = 50,
    max_files: Annotated[
        int | None,
        typer.Option(
            "--max-files", help="Keep at most N per species: best quality, then longer, then lower id."
        ),
    ] = None,
    wiki_lang: Annotated[
        str, typer.Option("--wiki-lang", help="Drop species without an article in this Wikipedia.")
    ] = "de",
    no_wiki: Annotated[bool, typer.Option("--no-wiki", help="Keep species whatever Wikipedia says.")] = False,
    licence: Annotated[
        list[str] | None,
        typer.Option(
            "--licence", help="Allowed licences, e.g. BY, BY-SA, CC0 (repeatable or comma-separated)."
        ),
    ] = None,
    no_nd: Annotated[
        bool, typer.Option("--no-nd", help="Drop no-derivatives licences (chunks are derivatives).")
    ] = False,
    no_nc: Annotated[bool, typer.Option("--no-nc", help="Drop non-commercial licences.")] = False,
    min_quality: Annotated[
        str | None, typer.Option("--min-quality", help="Lowest xeno-canto quality to keep, A (best) .. E.")
    ] = None,
    min_length: Annotated[
        float | None, typer.Option("--min-length", help="Shortest recording, seconds.")
    ] = None,
    max_length: Annotated[
        float | None, typer.Option("--max-length", help="Longest recording, seconds.")
    ] = None,
    type_: Annotated[TypeName | None, typer.Option("--type", help="Only songs or only calls.")] = None,
    no_background: Annotated[
        bool, typer.Option("--no-background", help="Drop recordings with other species in the background.")
    ] = False,
    source: Annotated[list[str] | None, source_option("Only these archives (repeatable).")] = None,
    any_group: Annotated[
        bool, typer.Option("--any-group", help="Keep species not confirmed as birds (frogs, insects...).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the result, write nothing.")] = False,
) -> None:
    """Choose species and recordings from the catalog into manifests/selection.json."""
    from birdgrab import render
    from birdgrab.selection import FilterOptions, run_filter

    def work() -> int:
        options = FilterOptions(
            min_files=min_files,
            max_files=max_files,
            wiki_lang=None if no_wiki else wiki_lang,
            licences=tuple(licence or ()),
            no_nd=no_nd,
            no_nc=no_nc,
            min_quality=min_quality,
            min_length=min_length,
            max_length=max_length,
            type=type_.value if type_ else None,
            no_background=no_background,
            sources=tuple(source or ()),
            any_group=any_group,
        )
        selection = run_filter(common.manifests, options, dry_run=dry_run)
        if common.rich:
            render.console().print(render.selection_table(selection, options.wiki_lang))
        kept = sum(len(s.recordings) for s in selection.species.values())
        log.info(
            "filter: %d species with %d recordings kept, %d species dropped%s",
            len(selection.species),
            kept,
            len(selection.dropped_species),
            " (dry run: nothing written)" if dry_run else "",
            extra={
                "event": "filter.done",
                "species": len(selection.species),
                "recordings": kept,
                "dropped_species": len(selection.dropped_species),
            },
        )
        return 0

    locks = () if dry_run else (common.manifests,)
    _run(work, common, locks=locks)


@app.command(epilog="Example: birdgrab fetch --jobs 4")
@common_options
@chunk_options
@fetch_options
def fetch(
    common: Common,
    chunking: ChunkArgs,
    fetching: FetchArgs,
    no_chunk: Annotated[
        bool, typer.Option("--no-chunk", help="Only download; do not build the dataset.")
    ] = False,
) -> None:
    """Download the selection into the cache (concurrent, resumable, verified, deduplicated), then chunk it."""
    from birdgrab import render
    from birdgrab.download.run import run_downloads

    def work() -> int:
        settings = load_settings()
        options = fetching.options(chunking.min_free_mb)
        chunk_options = chunking.options(fetching.jobs)
        rich_output = common.rich
        with render.TransferProgress("fetch", rich=rich_output) as progress:
            report = asyncio.run(
                run_downloads(
                    settings,
                    common.manifests,
                    common.cache,
                    options,
                    on_progress=progress,
                    on_start=progress.start,
                )
            )
        if rich_output:
            render.console().print(render.fetch_table(report))
        log.info(
            "fetch: %d downloaded, %d already cached, %d duplicates, %d rejected, %d failed (%.1f MB, %d requests)",
            report.downloaded,
            report.skipped,
            report.duplicates,
            len(report.rejected),
            len(report.failed),
            report.bytes / 2**20,
            report.requests,
            extra={
                "event": "fetch.done",
                "downloaded": report.downloaded,
                "skipped": report.skipped,
                "duplicates": report.duplicates,
                "rejected": len(report.rejected),
                "failed": len(report.failed),
                "bytes": report.bytes,
            },
        )
        # Listed, but not a failure: the same bytes would be rejected again (exit 0).
        for key, reason in sorted(report.rejected.items()):
            log.info(
                "rejected: %s: %s",
                key,
                reason,
                extra={"event": "fetch.rejected", "key": key, "reason": reason},
            )
        for key, reason in sorted(report.failed.items()):
            log.warning(
                "failed: %s: %s", key, reason, extra={"event": "fetch.failed", "key": key, "reason": reason}
            )
        if report.stopped:
            log.error("%s", report.stopped, extra={"event": "fetch.stopped"})
            return 1
        if report.nothing_reachable:
            hosts = ", ".join(report.unreachable_hosts)
            raise ServiceUnreachable(
                "audio download", f"no download host reachable ({hosts}); nothing was fetched"
            )
        code = 1 if report.failed else 0
        if not no_chunk:
            code = max(
                code,
                _chunk_and_report(common.manifests, common.cache, common.out, chunk_options, rich_output),
            )
        return code

    _run(work, common, locks=(common.manifests, common.cache), dataset=None if no_chunk else common.out)


@app.command(epilog="Example: birdgrab chunk --sample-rate 16000 --chunk-seconds 10 --split 80/10/10")
@common_options
@chunk_options
def chunk(
    common: Common,
    chunking: ChunkArgs,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes.")] = os.cpu_count() or 1,
) -> None:
    """(Re)build dataset/ from the local audio cache: 10 s mono 16-bit WAV class folders, metadata, splits. No network."""

    def work() -> int:
        options = chunking.options(jobs)
        return _chunk_and_report(common.manifests, common.cache, common.out, options, common.rich)

    _run(work, common, locks=(common.manifests,), dataset=common.out)


@app.command(
    epilog="Example (crontab): 17 3 * * * cd /data/birds && birdgrab refresh --quiet --log-file refresh.log"
)
@common_options
@chunk_options
@fetch_options
@query_options
def refresh(
    common: Common,
    chunking: ChunkArgs,
    fetching: FetchArgs,
    queries: dict[str, str],
    source: Annotated[list[str] | None, source_option("Archives (default: as last catalog).")] = None,
    species_file: Annotated[
        Path | None, typer.Option("--species-file", help="Override the species file.")
    ] = None,
    wiki_lang: Annotated[
        str | None, typer.Option("--wiki-lang", help="Wikipedia language (catalog and filter).")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since", formats=["%Y-%m-%d"], help="Only recordings new (or changed) since this date."
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="List everything, not just what is new since the last refresh.")
    ] = False,
    wiki_max_age: Annotated[
        int, typer.Option("--wiki-max-age", min=0, help="Re-check articles older than N days.")
    ] = 90,
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove recordings that vanished upstream, and their chunks.")
    ] = False,
    min_files: Annotated[
        int | None, typer.Option("--min-files", help="Override the last filter's value.")
    ] = None,
    max_files: Annotated[
        int | None, typer.Option("--max-files", help="Override the last filter's value.")
    ] = None,
    no_wiki: Annotated[bool, typer.Option("--no-wiki", help="Keep species without an article.")] = False,
    licence: Annotated[
        list[str] | None, typer.Option("--licence", help="Override the licence allow-list.")
    ] = None,
    no_nd: Annotated[bool, typer.Option("--no-nd", help="Drop no-derivatives licences.")] = False,
    no_nc: Annotated[bool, typer.Option("--no-nc", help="Drop non-commercial licences.")] = False,
    min_quality: Annotated[
        str | None, typer.Option("--min-quality", help="Override the quality floor.")
    ] = None,
    min_length: Annotated[float | None, typer.Option("--min-length", help="Override, seconds.")] = None,
    max_length: Annotated[float | None, typer.Option("--max-length", help="Override, seconds.")] = None,
    type_: Annotated[TypeName | None, typer.Option("--type", help="Only songs or only calls.")] = None,
    no_background: Annotated[
        bool, typer.Option("--no-background", help="Drop recordings with background species.")
    ] = False,
    any_group: Annotated[
        bool, typer.Option("--any-group", help="Keep species not confirmed as birds.")
    ] = False,
    no_chunk: Annotated[bool, typer.Option("--no-chunk", help="Do not rebuild the dataset.")] = False,
) -> None:
    """Catalog (incremental) -> filter (last options) -> fetch -> chunk, touching only what changed. Safe from cron."""
    from birdgrab import render
    from birdgrab.refresh import RefreshOptions, run_refresh

    def work() -> int:
        settings = load_settings()
        if wiki_lang is not None:
            _validate_lang(wiki_lang)
        options = RefreshOptions(
            catalog={
                "sources": source,
                "queries": queries,
                "species_file": species_file,
                "wiki_lang": wiki_lang,
                "since": since.date() if since else None,
            },
            filter={
                "min_files": min_files,
                "max_files": max_files,
                "wiki_lang": wiki_lang,
                "no_wiki": no_wiki or None,
                "licences": tuple(licence) if licence else None,
                "no_nd": no_nd or None,
                "no_nc": no_nc or None,
                "min_quality": min_quality,
                "min_length": min_length,
                "max_length": max_length,
                "type": type_.value if type_ else None,
                "no_background": no_background or None,
                "any_group": any_group or None,
            },
            fetch=fetching.options(chunking.min_free_mb),
            chunk=None if no_chunk else chunking.options(fetching.jobs),
            full=full,
            wiki_max_age_days=wiki_max_age,
            prune=prune,
        )
        rich_output = common.rich
        with render.TransferProgress("fetch", rich=rich_output) as fetch_progress:
            report = asyncio.run(
                run_refresh(
                    settings,
                    common.manifests,
                    common.cache,
                    common.out,
                    options,
                    fetch_progress,
                    fetch_progress.start,
                )
            )
        for failure in report.failures:
            log.warning("failed: %s", failure, extra={"event": "refresh.failed"})
        if report.stopped:
            log.error("%s", report.stopped, extra={"event": "refresh.stopped"})
        summary = report.summary()
        # One line at the end, also under --quiet: what cron mails when something went wrong.
        log.log(
            logging.WARNING if report.failures or report.stopped else logging.INFO,
            "refresh: %d new recordings, %d species added, %d files downloaded, %d chunks written, "
            "%d failures, %.1f s",
            report.new_recordings,
            report.species_added,
            report.downloaded,
            report.chunks_written,
            len(report.failures),
            report.duration_s,
            extra={"event": "refresh.done", **summary},
        )
        return 1 if report.failures or report.stopped else 0

    _run(work, common, locks=(common.manifests, common.cache), dataset=None if no_chunk else common.out)


@app.command(epilog="Example: birdgrab stats --wiki-lang de")
@common_options
def stats(
    common: Common,
    wiki_lang: Annotated[str, typer.Option("--wiki-lang", help="Which Wikipedia's articles to show.")] = "de",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the numbers as JSON instead of tables.")
    ] = False,
) -> None:
    """Show what is in the manifests: species, recordings per archive, article yes/no, bird yes/no."""
    from birdgrab import render
    from birdgrab import stats as stats_module

    def work() -> int:
        _validate_lang(wiki_lang)
        result = stats_module.collect(common.manifests, wiki_lang, common.out)
        if as_json:
            sys.stdout.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n")
        else:
            render.print_stats(result, render.console())
        return 0

    _run(work, common)


def common_options_writing(what: str, default: Path | None) -> Callable:
    """The common options, with `--out` naming what this command writes instead of the dataset folder."""
    out = Annotated[Path | None if default is None else Path, typer.Option("--out", help=what)]
    return option_group(
        "common",
        Common,
        [p.replace(annotation=out, default=default) if p.name == "out" else p for p in _COMMON_PARAMETERS],
    )


DatasetDir = Annotated[
    Path, typer.Option("--dataset", help="The dataset folder (what fetch and chunk wrote).")
]


class ExportFormat(StrEnum):
    parquet = "parquet"
    webdataset = "webdataset"


@app.command(
    epilog="Example: birdgrab export --format parquet --out export  (then: datasets.load_dataset('export'))"
)
@common_options_writing("Export folder (replaced whole; an earlier export or a new folder).", Path("export"))
def export(
    common: Common,
    dataset: DatasetDir = Path("dataset"),
    format_: Annotated[
        ExportFormat,
        typer.Option("--format", help="parquet (Hugging Face hub layout) or webdataset (tar shards)."),
    ] = ExportFormat.parquet,
    shard_mb: Annotated[
        float, typer.Option("--shard-mb", min=1, help="About this many MB of audio a shard.")
    ] = 500,
    allow_nd: Annotated[
        bool,
        typer.Option(
            "--allow-nd", help="Include ND-licensed recordings (chunks are adaptations: left out by default)."
        ),
    ] = False,
) -> None:
    """Write the dataset as shards others load directly: Parquet in the Hugging Face hub layout, or WebDataset."""
    from birdgrab.export import ExportOptions, run_export

    def work() -> int:
        report = run_export(dataset, common.out, ExportOptions(format_.value, shard_mb, allow_nd))
        log.info(
            "export: %d chunks (%s) in %d %s shards, %.1f MB, %d classes, in %s; "
            "%d ND-licensed recordings (%d chunks) left out; %d failed",
            sum(report.rows.values()),
            ", ".join(f"{split} {n}" for split, n in report.rows.items()) or "none",
            report.shards,
            report.format,
            report.bytes / 2**20,
            report.classes,
            report.out,
            report.nd_recordings_left_out,
            report.nd_chunks_left_out,
            len(report.failed),
            extra={
                "event": "export.done",
                "rows": report.rows,
                "shards": report.shards,
                "failed": len(report.failed),
            },
        )
        for file_name, reason in sorted(report.failed.items()):
            log.warning(
                "failed: %s: %s", file_name, reason, extra={"event": "export.failed", "file": file_name}
            )
        return 1 if report.failed else 0

    # The dataset's lock lives beside it (nothing but the dataset inside); a missing one: exit 2, not created.
    _run(work, common, dataset=dataset if dataset.is_dir() else None)


@app.command(epilog="Example: birdgrab report --dataset dataset --out dataset/report.html")
@common_options_writing("HTML page to write (default: report.html in the dataset folder).", None)
def report(common: Common, dataset: DatasetDir = Path("dataset")) -> None:
    """A self-contained HTML page about the dataset: classes, hours, splits, licences, recordists, spectrograms."""
    from birdgrab.report import run_report

    def work() -> int:
        summary = run_report(dataset, common.out or dataset / "report.html", common.manifests)
        log.info(
            "report: %d classes, %d chunks, %.2f h, %d spectrograms: %s (%.1f MB)",
            summary.classes,
            summary.chunks,
            summary.hours,
            summary.thumbnails,
            summary.path,
            summary.bytes / 2**20,
            extra={"event": "report.done", "path": str(summary.path), "thumbnails": summary.thumbnails},
        )
        return 0

    _run(work, common, dataset=dataset if dataset.is_dir() else None)


@app.command(epilog="Example: birdgrab sandbox --port 8765 --env-file sandbox.env")
@common_options
def sandbox(
    common: Common,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port; 0 picks a free one.")] = 0,
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="Write `export BIRDGRAB_...` lines here once listening.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where rendered audio is cached.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic archive.")] = 0,
    hour_long: Annotated[
        bool, typer.Option("--hour-long/--no-hour-long", help="Include the hour-long recording.")
    ] = True,
) -> None:
    """Serve the bundled synthetic archive on loopback, speaking the xeno-canto, Europeana and MediaWiki APIs."""
    from birdgrab.sandbox import SandboxConfig, serve

    def work() -> int:
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise UsageError(f"--host {host}: the sandbox only listens on loopback addresses")
        serve(SandboxConfig(data_dir=data_dir, seed=seed, hour_long=hour_long), host, port, env_file)
        return 0

    _run(work, common)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"birdgrab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Build machine-learning-ready bird-sound datasets from xeno-canto, Europeana and Wikipedia."""


def main() -> None:
    """The console script. Usage errors become one line (`birdgrab: error: ...`) and exit 2."""
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        sys.stdout.write(exc.format_message() + "\n")
        raise SystemExit(2) from None
    except click_errors.UsageError as exc:
        command = f" {exc.ctx.info_name}" if exc.ctx is not None and exc.ctx.parent is not None else ""
        sys.stderr.write(f"birdgrab: error: {exc.format_message()} (see birdgrab{command} --help)\n")
        raise SystemExit(2) from None
    except click_errors.ClickException as exc:
        sys.stderr.write(f"birdgrab: error: {exc.format_message()}\n")
        raise SystemExit(exc.exit_code) from None
    except click_errors.Abort:
        sys.stderr.write("birdgrab: interrupted\n")
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)
