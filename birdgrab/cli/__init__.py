"""The command line: parse options, call one library function, log the report's own summary.

The options are declared once, in groups (`birdgrab.cli.options`). Exit codes (CONTRACT.md) are
decided here and only here: 0 done, 1 some items failed, 2 usage/configuration/input error, 3 lock
held, 4 no source reachable. Commands other packages add (entry point group `birdgrab.commands`,
e.g. the bundled sandbox) are loaded only when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from enum import StrEnum
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click import exceptions as click_errors  # typer's own copy of click

from birdgrab import __version__
from birdgrab.catalog import CatalogOptions
from birdgrab.cli.options import (
    ChunkArgs,
    Common,
    FetchArgs,
    catalog_options,
    catalog_overrides,
    chunk_options,
    common_options,
    common_options_writing,
    dataset_option,
    fetch_options,
    filter_options,
    filter_overrides,
    scheduler_option,
)
from birdgrab.environment import load_settings
from birdgrab.errors import BirdgrabError, ServiceUnreachable
from birdgrab.executors import Workers, check_scheduler
from birdgrab.lock import folder_locks
from birdgrab.log import setup_logging
from birdgrab.overrides import Overrides
from birdgrab.selection import FilterOptions
from birdgrab.settings import redact
from birdgrab.sources.registry import registry
from birdgrab.storage import check_storages

if TYPE_CHECKING:  # birdgrab.dataset imports the audio stack, which fetch-only runs need not load
    from birdgrab.dataset import ChunkOptions

log = logging.getLogger("birdgrab")
PLUGIN_COMMANDS = "birdgrab.commands"  # entry point group: name -> function(app) that adds the command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help=f"Build machine-learning-ready bird-sound datasets from {', '.join(a.title for a in registry)} "
    "and Wikipedia.",
)


# -- running a command -------------------------------------------------------------------------------
def run(
    work: Callable[..., int | None],
    common: Common,
    *,
    locks: tuple[Path | str, ...] = (),
    dataset: Path | str | None = None,
    reading_dataset: bool = False,
    workers: tuple[str | None, int] | None = None,
) -> None:
    """Run one command body, holding the locks of the folders it writes (`dataset`: the published
    folder, whose lock lives beside it; `reading_dataset`: a missing dataset folder is not made for
    its lock, the command says it is missing), and turn its outcome into the contract's exit code.

    Folders may be storage URLs: each is opened and checked first (an unknown scheme, a missing
    bucket or credentials: exit 2, nothing written), and a bucket's lock lives in its local state
    folder on this machine. With `workers` (--scheduler, --jobs), the cluster is reached before
    anything is written too, and `work` receives it (None: the library's own process pool)."""
    setup_logging(
        quiet=common.quiet,
        verbose=common.verbose,
        log_format=common.log_format.value,
        log_file=common.log_file,
    )
    try:
        with contextlib.ExitStack() as stack:
            folders, published = _lock_folders(locks, dataset, reading_dataset)
            if workers is None:
                stack.enter_context(folder_locks(*folders, published=published))
                code = work() or 0
            else:
                scheduler, jobs = workers
                pool = stack.enter_context(Workers(scheduler, jobs)) if check_scheduler(scheduler) else None
                stack.enter_context(folder_locks(*folders, published=published))
                code = work(pool) or 0
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


def _lock_folders(
    locks: tuple[Path | str, ...], dataset: Path | str | None, reading_dataset: bool
) -> tuple[list[Path], Path | None]:
    """The local folders whose locks a command holds: a folder's own; a bucket's local state folder.
    Every storage is checked here, before any lock file is made."""
    folders = []
    for storage in check_storages(*locks):
        folders.append(storage.state_folder())
    published = None
    if dataset is not None:
        (storage,) = check_storages(dataset)
        if storage.is_local:
            local = storage.local_path()
            published = local if local.is_dir() or not reading_dataset else None
        else:  # a bucket cannot hold a lock: this machine's state folder for it does
            folders.append(storage.state_folder())
    return folders, published


def finish(
    event: str,
    summary: str,
    facts: dict[str, Any],
    failures: Iterable[tuple[str, str]] = (),
    rejections: Iterable[tuple[str, str]] = (),
) -> None:
    """Log a report's summary line (`facts` go to the JSON log), one line per rejected item (listed,
    not a failure: the same bytes would be rejected again) and one warning per failed item."""
    log.info("%s", summary, extra={"event": f"{event}.done", **facts})
    for key, reason in rejections:
        log.info(
            "rejected: %s: %s",
            key,
            reason,
            extra={"event": f"{event}.rejected", "key": key, "reason": reason},
        )
    for key, reason in failures:
        log.warning(
            "failed: %s: %s", key, reason, extra={"event": f"{event}.failed", "key": key, "reason": reason}
        )


# -- commands ------------------------------------------------------------------------------------------
@app.command(
    epilog="Example: birdgrab catalog --species-file manifests/presets/jibjib-194.txt --wiki-lang de",
)
@common_options
@catalog_options
def catalog(common: Common, catalog: CatalogOptions) -> None:
    """Query the archives and resolve species on Wikipedia into manifests/recordings.sqlite and species.json."""
    from birdgrab.catalog import run_catalog

    def work() -> int:
        report = asyncio.run(run_catalog(load_settings(), common.manifests, catalog))
        log.info("%s", report.summary(), extra={"event": "catalog.done", **report.__dict__})
        for failure in report.failures:
            log.warning("failed: %s", failure, extra={"event": "catalog.failure"})
        return 1 if report.failures else 0

    run(work, common, locks=(common.manifests,))


def _chunk_and_report(
    manifests: Path, cache: str, out: str, options: ChunkOptions, rich_output: bool, workers: Workers | None
) -> int:
    """Run the chunk step with progress and a summary; returns 1 if some recordings failed."""
    from birdgrab import render
    from birdgrab.dataset import run_chunk
    from birdgrab.dataset.report import log_moves

    with render.TransferProgress("chunk", rich=rich_output, counts_bytes=False) as progress:

        def on_progress(event: str, amount: int) -> None:
            if event == "start":
                progress.start(amount)
            else:
                progress(event, amount)

        report = run_chunk(manifests, cache, out, options, on_progress, workers)
    if rich_output:
        render.console().print(render.chunk_table(report))
    log_moves(report)
    finish(
        "chunk",
        report.summary(),
        report.facts(),
        sorted(report.failed.items()),
        sorted(report.rejected.items()),
    )
    if report.verified and report.verified.unverifiable:
        log.info(
            "unverifiable (BirdNET has no label for them, windows kept): %s",
            ", ".join(report.verified.unverifiable),
            extra={"event": "chunk.unverifiable", "classes": report.verified.unverifiable},
        )
    for mislabel in report.verified.mislabels if report.verified else ():
        log.info(
            "likely mislabel: %s", mislabel.line(), extra={"event": "chunk.mislabel", "key": mislabel.key}
        )
    if report.stopped:
        log.error("%s", report.stopped, extra={"event": "chunk.stopped"})
    return 1 if report.failed or report.stopped else 0


@app.command(
    name="filter",
    epilog="Example: birdgrab filter --min-files 50 --no-nd --min-quality C --max-files 400",
)
@common_options
@filter_options
def filter_(
    common: Common,
    filtering: FilterOptions,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the result, write nothing.")] = False,
) -> None:
    """Choose species and recordings from the catalog into manifests/selection.json."""
    from birdgrab import render
    from birdgrab.selection import run_filter

    def work() -> int:
        selection = run_filter(common.manifests, filtering, dry_run=dry_run)
        if common.rich:
            render.console().print(render.selection_table(selection, filtering.wiki_lang))
        summary = selection.summary() + (" (dry run: nothing written)" if dry_run else "")
        log.info("%s", summary, extra={"event": "filter.done", "species": len(selection.species)})
        return 0

    run(work, common, locks=() if dry_run else (common.manifests,))


@app.command(epilog="Example: birdgrab fetch --jobs 4")
@common_options
@chunk_options
@fetch_options
def fetch(common: Common, chunking: ChunkArgs, fetching: FetchArgs) -> None:
    """Download the selection into the cache (concurrent, resumable, verified, deduplicated), then chunk it."""
    from birdgrab import render
    from birdgrab.download.run import run_downloads

    def work(workers: Workers | None) -> int:
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
        finish(
            "fetch",
            report.summary(),
            report.facts(),
            sorted(report.failed.items()),
            sorted(report.rejected.items()),
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
        if not fetching.no_chunk:
            code = max(
                code,
                _chunk_and_report(
                    common.manifests, common.cache, common.out, chunk_options, rich_output, workers
                ),
            )
        return code

    run(
        work,
        common,
        locks=(common.manifests, common.cache),
        dataset=None if fetching.no_chunk else common.out,
        workers=(None, 1) if fetching.no_chunk else chunking.workers(fetching.jobs),
    )


@app.command(
    epilog="Example: birdgrab chunk --sample-rate 16000 --chunk-seconds 10 --split 80/10/10. "
    "Every window checked by BirdNET: birdgrab chunk --verify birdnet --min-confidence 0.3. "
    "Rebuild as a published dataset was made: birdgrab chunk --like dataset/dataset.json "
    "(options given beside --like override what it records)."
)
@common_options
@chunk_options
def chunk(
    common: Common,
    chunking: ChunkArgs,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes.")] = os.cpu_count() or 1,
) -> None:
    """(Re)build dataset/ from the local audio cache: 10 s mono 16-bit WAV class folders, metadata, splits. No network."""

    def work(workers: Workers | None) -> int:
        options = chunking.options(jobs)
        return _chunk_and_report(common.manifests, common.cache, common.out, options, common.rich, workers)

    run(
        work,
        common,
        locks=(common.manifests,),
        dataset=common.out,
        workers=chunking.workers(jobs),
    )


@app.command(
    epilog="Example (crontab): 17 3 * * * cd /data/birds && birdgrab refresh --quiet --log-file refresh.log"
)
@common_options
@chunk_options
@fetch_options
@catalog_overrides
@filter_overrides
def refresh(
    common: Common,
    chunking: ChunkArgs,
    fetching: FetchArgs,
    catalog: Overrides[CatalogOptions],
    filtering: Overrides[FilterOptions],
    full: Annotated[
        bool, typer.Option("--full", help="List everything, not just what is new since the last refresh.")
    ] = False,
    wiki_max_age: Annotated[
        int, typer.Option("--wiki-max-age", min=0, help="Re-check articles older than N days.")
    ] = 90,
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove recordings that vanished upstream, and their chunks.")
    ] = False,
) -> None:
    """Catalog (incremental) -> filter -> fetch -> chunk, touching only what changed. Safe from cron.

    The catalog and filter options are the last runs' ones; those given here replace them."""
    from birdgrab import render
    from birdgrab.refresh import RefreshOptions, run_refresh

    def work(workers: Workers | None) -> int:
        settings = load_settings()
        options = RefreshOptions(
            catalog=catalog,
            filter=filtering,
            fetch=fetching.options(chunking.min_free_mb),
            chunk=None if fetching.no_chunk else chunking.options(fetching.jobs),
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
                    workers=workers,
                )
            )
        for failure in report.failures:
            log.warning("failed: %s", failure, extra={"event": "refresh.failed"})
        if report.stopped:
            log.error("%s", report.stopped, extra={"event": "refresh.stopped"})
        failed = bool(report.failures or report.stopped)
        # One line at the end, also under --quiet: what cron mails when something went wrong.
        log.log(
            logging.WARNING if failed else logging.INFO,
            "%s",
            report.summary(),
            extra={"event": "refresh.done", **report.facts()},
        )
        return 1 if failed else 0

    run(
        work,
        common,
        locks=(common.manifests, common.cache),
        dataset=None if fetching.no_chunk else common.out,
        workers=(None, 1) if fetching.no_chunk else chunking.workers(fetching.jobs),
    )


@app.command(epilog="Example: birdgrab stats --wiki-lang de")
@common_options
@dataset_option(None, "; default: --out")
def stats(
    common: Common,
    dataset: str | None,
    wiki_lang: Annotated[str, typer.Option("--wiki-lang", help="Which Wikipedia's articles to show.")] = "de",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the numbers as JSON instead of tables.")
    ] = False,
) -> None:
    """Show what is in the manifests: species, recordings per archive, article yes/no, bird yes/no."""
    from birdgrab import render
    from birdgrab import stats as stats_module
    from birdgrab.sources.wikipedia import check_lang

    def work() -> int:
        check_lang(wiki_lang)
        result = stats_module.collect(common.manifests, wiki_lang, dataset or common.out)
        if as_json:
            sys.stdout.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n")
        else:
            render.print_stats(result, render.console())
        return 0

    run(work, common)


class ExportFormat(StrEnum):
    parquet = "parquet"
    webdataset = "webdataset"


class EmbeddingsName(StrEnum):
    birdnet = "birdnet"


@app.command(
    epilog="Example: birdgrab export --format parquet --out export  (then: datasets.load_dataset('export')); "
    "with BirdNET's embeddings: birdgrab export --embeddings birdnet"
)
@common_options_writing(
    "Export folder or storage URL (replaced whole; an earlier export or a new folder).", "export"
)
@dataset_option("dataset")
@scheduler_option
def export(
    common: Common,
    dataset: str,
    scheduler: str | None,
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
    embeddings: Annotated[
        EmbeddingsName | None,
        typer.Option(
            "--embeddings",
            help="Add BirdNET V2.4's 1024-value embedding of every chunk (Parquet column `embedding`; a .npy "
            "per WebDataset shard). Offline, pip install 'birdgrab[birdnet]'; reuses what --verify stored.",
        ),
    ] = None,
) -> None:
    """Write the dataset as shards others load directly: Parquet in the Hugging Face hub layout, or WebDataset."""
    from birdgrab.export import ExportOptions, run_export

    def work(workers: Workers | None) -> int:
        options = ExportOptions(format_.value, shard_mb, allow_nd, embeddings.value if embeddings else None)
        report = run_export(dataset, common.out, options, workers, common.manifests)
        finish("export", report.summary(), report.facts(), sorted(report.failed.items()))
        return 1 if report.failed else 0

    # The dataset's lock lives beside it (nothing but the dataset inside); a missing one: exit 2, not created.
    run(work, common, dataset=dataset, reading_dataset=True, workers=(scheduler, os.cpu_count() or 1))


@app.command(epilog="Example: birdgrab report --dataset dataset --out dataset/report.html")
@common_options_writing(
    "HTML page to write, a path or storage URL (default: report.html in the dataset).", None
)
@dataset_option("dataset")
def report(common: Common, dataset: str) -> None:
    """A self-contained HTML page about the dataset: classes, hours, splits, licences, recordists, spectrograms."""
    from birdgrab.report import run_report

    def work() -> int:
        summary = run_report(dataset, common.out, common.manifests)
        log.info("%s", summary.summary(), extra={"event": "report.done", **summary.facts()})
        return 0

    run(work, common, dataset=dataset, reading_dataset=True)


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
    """Build machine-learning-ready bird-sound datasets from public archives and Wikipedia."""


def _command_names() -> set[str]:
    return {c.name or c.callback.__name__ for c in app.registered_commands if c.callback is not None}


def add_plugin_commands() -> None:
    """Add the commands of installed plugins (entry point group `birdgrab.commands`), once."""
    known = _command_names()
    for entry in entry_points(group=PLUGIN_COMMANDS):
        if entry.name not in known:
            entry.load()(app)


def main() -> None:
    """The console script. Usage errors become one line (`birdgrab: error: ...`) and exit 2."""
    if not (sys.argv[1:] and sys.argv[1] in _command_names()):  # help, or another command: a plugin's?
        add_plugin_commands()
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
