"""The command line's options, each declared once, in groups that commands share.

A group (`option_group`) is a list of options and a function that builds them into one typed value
for the command: the common options (`Common`), the catalog's (`CatalogOptions`), the filter's
(`FilterOptions`), the download's and the chunk step's. `refresh` takes the catalog and filter groups
as typed overrides (`birdgrab.overrides.Overrides`) of the last run's options: only what is given on its command
line replaces them. Each archive declares its own query option (`--xc-query`, ...) through the
archive registry, and `--source` accepts the registered archives.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer

from birdgrab.sources.registry import registry

if TYPE_CHECKING:  # birdgrab.dataset imports the audio stack, which fetch-only runs need not load
    from birdgrab.catalog import CatalogOptions
    from birdgrab.dataset import ChunkOptions
    from birdgrab.download.run import FetchOptions
    from birdgrab.selection import FilterOptions


def option(
    name: str, annotation: Any, default: Any, *flags: str, help: str, **settings: Any
) -> inspect.Parameter:
    """One command-line option of a group: parameter `name` of type `annotation`, given as `flags`."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, typer.Option(*flags, help=help, **settings)],
    )


def option_flags(parameter: inspect.Parameter) -> tuple[str, ...]:
    """The flags an `option` is given as ('--chunk-seconds'; typer keeps the first as the default)."""
    info = get_args(parameter.annotation)[1]
    return tuple(d for d in (info.default, *info.param_decls) if isinstance(d, str) and d.startswith("-"))


_CONTEXT = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)


def option_group(
    name: str,
    build: Callable[..., Any],
    parameters: list[inspect.Parameter],
    *,
    fields: dict[str, str] | None = None,
    overrides: bool = False,
    tells_given: bool = False,
) -> Callable:
    """A decorator giving a command a group of options, built into one value (keyword `name`).

    typer reads a command's options from its signature, so the wrapper shows the command's own
    parameters followed by the group's: each group is declared once, not in every command. A
    parameter another group of the command already has is shared (refresh's --wiki-lang sets the
    catalog's and the filter's). With `overrides`, the value is a `birdgrab.overrides.Overrides` of what
    `build` made, naming the fields (`fields` maps a parameter to its field, default its own name)
    whose options were given on the command line rather than left at their defaults. With
    `tells_given`, `build` itself is told those parameters (keyword `given`).
    """
    field_of = fields or {}
    shown = [_as_override(p) for p in parameters] if overrides else parameters

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != name]
        # Parameters the wrapped command (or a group nearer it) takes as well stay in its keywords.
        keep = {p.name for p in own}
        added = [p for p in shown if p.name not in keep]
        if (overrides or tells_given) and "ctx" not in keep:
            added.append(_CONTEXT)

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            values = {p.name: kwargs[p.name] if p.name in keep else kwargs.pop(p.name) for p in parameters}
            ctx = (
                (kwargs["ctx"] if "ctx" in keep else kwargs.pop("ctx")) if overrides or tells_given else None
            )
            given_here = frozenset(p for p in values if ctx is not None and _given(ctx, p))
            value = build(**values, given=given_here) if tells_given else build(**values)
            if overrides:
                from birdgrab.overrides import Overrides

                value = Overrides(value, frozenset(field_of.get(p, p) for p in given_here))
            command(**{name: value}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _as_override(parameter: inspect.Parameter) -> inspect.Parameter:
    """The option as refresh shows it: its default is the last run's value, not the declared one."""
    kind, info = get_args(parameter.annotation)
    info = copy.copy(info)
    info.show_default = False
    info.help = f"{info.help} Default: as the last run."
    return parameter.replace(annotation=Annotated[kind, info])


def _given(ctx: typer.Context, parameter: str) -> bool:
    """Whether the command line (or the environment) set `parameter`, rather than its default."""
    source = ctx.get_parameter_source(parameter)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@dataclass(frozen=True)
class Common:
    """The options every command takes (CONTRACT.md), handed to the command as one value."""

    manifests: Path
    cache: str  # a folder or a storage URL (s3://bucket/prefix, gs://..., file://...)
    out: str | None  # likewise; None: the command's own default (report)
    quiet: bool
    verbose: bool
    log_format: LogFormat
    log_file: Path | None

    @property
    def rich(self) -> bool:
        """Tables and bars for a person at a terminal; plain lines otherwise."""
        return not self.quiet and self.log_format == LogFormat.text


_COMMON = [
    option("manifests", Path, Path("manifests"), "--manifests", help="Folder of the JSON manifests."),
    option(
        "cache",
        str,
        "cache",
        "--cache",
        help="Folder or storage URL (s3://bucket/prefix, gs://...) of the downloaded audio cache.",
    ),
    option(
        "out", str, "dataset", "--out", help="Dataset folder or storage URL (s3://bucket/prefix, gs://...)."
    ),
    option("quiet", bool, False, "--quiet", "-q", help="Only warnings and errors."),
    option("verbose", bool, False, "--verbose", "-v", help="Debug detail."),
    option(
        "log_format", LogFormat, LogFormat.text, "--log-format", help="text, or json (one object a line)."
    ),
    option("log_file", Path | None, None, "--log-file", help="Also append the log to this file."),
]
common_options = option_group("common", Common, _COMMON)


def common_options_writing(what: str, default: str | None) -> Callable:
    """The common options, with `--out` naming what this command writes instead of the dataset folder."""
    out = option("out", str | None if default is None else str, default, "--out", help=what)
    return option_group("common", Common, [out if p.name == "out" else p for p in _COMMON])


def _archive_names(values: list[str] | None) -> list[str] | None:
    """--source values, checked against the archive registry."""
    for value in values or ():
        if value not in registry.names():
            raise typer.BadParameter(f"{value!r} is not an archive: use one of {', '.join(registry.names())}")
    return values or None


def _source(help_text: str) -> inspect.Parameter:
    return option(
        "source",
        list[str] | None,
        None,
        "--source",
        help=f"{help_text} One of: {', '.join(registry.names())}.",
        callback=_archive_names,
    )


def _build_catalog(
    *,
    source: list[str] | None,
    species_file: Path | None,
    wiki_lang: str,
    since: datetime | None,
    **rest: Any,
) -> CatalogOptions:
    from birdgrab.catalog import CatalogOptions

    queries = {
        a.name: rest[a.query_option.parameter]
        for a in registry
        if a.query_option and rest.get(a.query_option.parameter) is not None
    }
    return CatalogOptions(
        sources=source,
        queries=queries,
        species_file=species_file,
        wiki_lang=wiki_lang,
        since=since.date() if since else None,
        refresh_wiki=rest.get("refresh_wiki", False),
    )


_CATALOG = [
    _source("Archive to query (repeatable; default: every default archive whose key is set)."),
    # Each archive's query option (--xc-query, --europeana-query, ...), declared by the archive.
    *(
        option(
            a.query_option.parameter,
            str | None,
            None,
            a.query_option.flag,
            help=a.query_option.help
            + (f" Default: {a.query_option.default!r}." if a.query_option.default else ""),
        )
        for a in registry
        if a.query_option
    ),
    option(
        "species_file",
        Path | None,
        None,
        "--species-file",
        help="Only these species: one scientific name a line.",
    ),
    option("wiki_lang", str, "de", "--wiki-lang", help="Wikipedia language to resolve species in."),
    option(
        "since",
        datetime | None,
        None,
        "--since",
        formats=["%Y-%m-%d"],
        help="Only recordings new (or changed) since YYYY-MM-DD.",
    ),
]
_REFRESH_WIKI = option(
    "refresh_wiki", bool, False, "--refresh-wiki", help="Ask Wikipedia again about species already known."
)
catalog_options = option_group("catalog", _build_catalog, [*_CATALOG, _REFRESH_WIKI])
catalog_overrides = option_group(
    "catalog",
    _build_catalog,
    _CATALOG,
    fields={"source": "sources", **{a.query_option.parameter: "queries" for a in registry if a.query_option}},
    overrides=True,
)


class TypeName(StrEnum):
    song = "song"
    call = "call"


def _build_filter(
    *,
    wiki_lang: str,
    no_wiki: bool,
    licence: list[str] | None,
    type_: TypeName | None,
    source: list[str] | None = None,
    **rest: Any,
) -> FilterOptions:
    from birdgrab.selection import FilterOptions

    return FilterOptions(
        **rest,
        wiki_lang=None if no_wiki else wiki_lang,
        licences=tuple(licence or ()),
        type=type_.value if type_ else None,
        sources=tuple(source or ()),
    )


_FILTER = [
    option(
        "min_files", int, 50, "--min-files", help="Drop species with fewer usable, downloadable recordings."
    ),
    option(
        "max_files",
        int | None,
        None,
        "--max-files",
        help="Keep at most N per species: best quality, then longer, then lower id.",
    ),
    option("wiki_lang", str, "de", "--wiki-lang", help="Drop species without an article in this Wikipedia."),
    option("no_wiki", bool, False, "--no-wiki", help="Keep species whatever Wikipedia says."),
    option(
        "licence",
        list[str] | None,
        None,
        "--licence",
        help="Allowed licences, e.g. BY, BY-SA, CC0 (repeatable or comma-separated).",
    ),
    option("no_nd", bool, False, "--no-nd", help="Drop no-derivatives licences (chunks are derivatives)."),
    option("no_nc", bool, False, "--no-nc", help="Drop non-commercial licences."),
    option(
        "min_quality",
        str | None,
        None,
        "--min-quality",
        help="Lowest xeno-canto quality to keep, A (best) .. E.",
    ),
    option("min_length", float | None, None, "--min-length", help="Shortest recording, seconds."),
    option("max_length", float | None, None, "--max-length", help="Longest recording, seconds."),
    option("type_", TypeName | None, None, "--type", help="Only songs or only calls."),
    option(
        "no_background",
        bool,
        False,
        "--no-background",
        help="Drop recordings with other species in the background.",
    ),
    option(
        "any_group",
        bool,
        False,
        "--any-group",
        help="Keep species not confirmed as birds (frogs, insects...).",
    ),
]
filter_options = option_group(
    "filtering", _build_filter, [*_FILTER, _source("Only these archives (repeatable).")]
)
# In refresh, --source names the archives to catalog (the catalog group's); the selection keeps its own.
filter_overrides = option_group(
    "filtering",
    _build_filter,
    _FILTER,
    fields={"no_wiki": "wiki_lang", "licence": "licences", "type_": "type"},
    overrides=True,
)


def dataset_option(default: str | None, what: str = "") -> Callable:
    """`--dataset`: the dataset a command reads, a folder or a storage URL (export, report, stats)."""
    return option_group(
        "dataset",
        lambda dataset: dataset,
        [
            option(
                "dataset",
                str | None if default is None else str,
                default,
                "--dataset",
                help=f"The dataset folder or storage URL (what fetch and chunk wrote){what}.",
            )
        ],
    )


SCHEDULER = option(
    "scheduler",
    str | None,
    None,
    "--scheduler",
    envvar="BIRDGRAB_SCHEDULER",
    show_envvar=False,
    help="Run the heavy work (cutting, export's shards) on a Dask cluster: tcp://host:8786 (a running "
    "scheduler) or 'local' (a LocalCluster of --jobs workers); extra [cluster]. Example: --scheduler "
    "tcp://10.0.0.5:8786 --out s3://my-birds/dataset. [default: this machine's processes, or BIRDGRAB_SCHEDULER]",
)
scheduler_option = option_group("scheduler", lambda scheduler: scheduler, [SCHEDULER])


class WindowsName(StrEnum):
    fixed = "fixed"
    events = "events"


class SplitByName(StrEnum):
    recording = "recording"
    recordist = "recordist"
    site = "site"


class VerifierName(StrEnum):
    birdnet = "birdnet"


class LabelsFromName(StrEnum):
    also = "also"
    birdnet = "birdnet"


@dataclass(frozen=True)
class ChunkArgs:
    """Options of the chunk step, shared by `fetch`, `chunk` and `refresh` (CONTRACT.md)."""

    chunk_seconds: float
    min_chunk_seconds: float
    sample_rate: int
    gate_db: float
    no_gate: bool
    split: str
    min_free_mb: float
    windows: WindowsName
    hop_seconds: float | None
    max_chunks_per_recording: int | None
    max_chunks_per_class: int | None
    noise_class: bool
    split_by: SplitByName
    site_km: float
    unseen_by: str | None
    unseen_by_drop: bool
    verify: VerifierName | None
    min_confidence: float | None
    labels_from: LabelsFromName
    like: Path | None
    scheduler: str | None  # where the cutting runs (executors.Workers); not how it is cut
    given: frozenset[str] = frozenset()  # the parameters the command line set

    def workers(self, jobs: int) -> tuple[str | None, int]:
        """Where the cutting runs, for `cli.run`: (--scheduler, processes: at most one a core)."""
        return self.scheduler, max(1, min(jobs, os.cpu_count() or 1))

    def options(self, jobs: int) -> ChunkOptions:
        """Validated chunk options (a UsageError, exit 2, for nonsense); at most one process a core.
        With --like, the choices a dataset.json records, under the options given beside it."""
        from birdgrab.dataset import ChunkOptions, parse_split

        options = ChunkOptions(
            sample_rate=self.sample_rate,
            chunk_s=self.chunk_seconds,
            min_chunk_s=self.min_chunk_seconds,
            gate_db=None if self.no_gate else self.gate_db,
            split=parse_split(self.split),
            jobs=self.workers(jobs)[1],
            min_free_mb=self.min_free_mb,
            windows=self.windows.value,
            hop_s=self.hop_seconds,
            max_chunks_per_recording=self.max_chunks_per_recording,
            max_chunks_per_class=self.max_chunks_per_class,
            noise_class=self.noise_class,
            split_by=self.split_by.value,
            site_km=self.site_km,
            unseen_by=self.unseen_by,
            unseen_by_drop=self.unseen_by_drop,
            verify=self.verify.value if self.verify else None,
            min_confidence=self.min_confidence,
            labels_from=self.labels_from.value,
        )
        if self.like is not None:
            from birdgrab.dataset.like import options_like

            given_flags = {flag for name in self.given for flag in _CHUNK_FLAGS.get(name, ())}
            options = options_like(self.like, options, given_flags)
        return options.validated()


_CHUNK = [
    option("chunk_seconds", float, 10.0, "--chunk-seconds", help="Length of every WAV chunk."),
    option(
        "min_chunk_seconds",
        float,
        3.0,
        "--min-chunk-seconds",
        help="A last piece at least this long is zero-padded; shorter is dropped.",
    ),
    option("sample_rate", int, 32000, "--sample-rate", help="Sample rate of the chunks, Hz."),
    option(
        "gate_db",
        float,
        25.0,
        "--gate-db",
        help="Drop chunks this many dB below the recording's loudest.",
    ),
    option("no_gate", bool, False, "--no-gate", help="Keep silent chunks too."),
    option(
        "split",
        str,
        "80/10/10",
        "--split",
        help="train/val/test percentages, per class (of recordings, people or sites: --split-by).",
    ),
    option(
        "min_free_mb",
        float,
        200,
        "--min-free-mb",
        min=0,
        help="Stop cleanly (exit 1) when free disk space falls below this.",
    ),
    option(
        "windows",
        WindowsName,
        WindowsName.fixed,
        "--windows",
        help="fixed: on the clock, kept by the silence gate; events: placed on detected calls.",
    ),
    option(
        "hop_seconds",
        float | None,
        None,
        "--hop-seconds",
        help="Fixed windows start this far apart (overlap when shorter).",
    ),
    option(
        "max_chunks_per_recording",
        int | None,
        None,
        "--max-chunks-per-recording",
        help="Keep a recording's N most active windows.",
    ),
    option(
        "max_chunks_per_class",
        int | None,
        None,
        "--max-chunks-per-class",
        help="At most N chunks a class, spread over its recordings.",
    ),
    option("noise_class", bool, False, "--noise-class", help="Add a class 'noise' of call-free windows."),
    option(
        "split_by",
        SplitByName,
        SplitByName.recording,
        "--split-by",
        help="Keep each recording, recordist (one person across spellings and archives) or site in one split.",
    ),
    option(
        "site_km",
        float,
        1.0,
        "--site-km",
        help="With --split-by site: recordings this close (km), linked in chains, are one site.",
    ),
    option(
        "unseen_by",
        str | None,
        None,
        "--unseen-by",
        metavar="MODEL",
        help="Keep recordings MODEL may have trained on out of validation and test (in train), e.g. "
        "birdnet-2.4 or perch-2.0 (the cut-offs and their sources: birdgrab/dataset/unseen.py).",
    ),
    option(
        "unseen_by_drop",
        bool,
        False,
        "--unseen-by-drop",
        help="With --unseen-by: leave those recordings out of the dataset instead.",
    ),
    option(
        "verify",
        VerifierName | None,
        None,
        "--verify",
        help="Score every window with BirdNET V2.4 (offline; pip install 'birdgrab[birdnet]'; "
        "model licence CC BY-NC-SA 4.0): metadata gains verify_confidence, verify_top, verify_status.",
    ),
    option(
        "min_confidence",
        float | None,
        None,
        "--min-confidence",
        help="With --verify: do not write windows whose BirdNET confidence for their class is below X "
        "(e.g. 0.3; also the threshold of 'confirmed', 0.3 without it).",
    ),
    option(
        "labels_from",
        LabelsFromName,
        LabelsFromName.also,
        "--labels-from",
        help="background/labels columns: also (what the uploader listed) or birdnet (the dataset's "
        "species BirdNET hears in each window; needs --verify).",
    ),
    option(
        "like",
        Path | None,
        None,
        "--like",
        metavar="DATASET_JSON",
        help="Make the choices a dataset.json records (e.g. dataset/dataset.json, or its folder); "
        "options given beside it override them.",
    ),
    SCHEDULER,
]
# Each chunk parameter's flags: --like lets a flag given on the command line win over the file.
_CHUNK_FLAGS = {p.name: option_flags(p) for p in _CHUNK}
chunk_options = option_group("chunking", ChunkArgs, _CHUNK, tells_given=True)


@dataclass(frozen=True)
class FetchArgs:
    """Options of the download step, shared by `fetch` and `refresh` (CONTRACT.md)."""

    jobs: int
    per_host: int | None
    max_file_mb: float
    retry_rejected: bool
    no_chunk: bool

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
        option("jobs", int, 4, "--jobs", "-j", help="Concurrent downloads."),
        option(
            "per_host",
            int | None,
            None,
            "--per-host",
            help="At most this many concurrent downloads from one host [default: 6, or BIRDGRAB_DOWNLOAD_CONCURRENCY].",
        ),
        option("max_file_mb", float, 2048, "--max-file-mb", help="Refuse any single file larger than this."),
        option(
            "retry_rejected",
            bool,
            False,
            "--retry-rejected",
            help="Download files rejected as unusable again, even if unchanged upstream.",
        ),
        option("no_chunk", bool, False, "--no-chunk", help="Only download; do not build the dataset."),
    ],
)
