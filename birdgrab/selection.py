"""`birdgrab filter`: choose species and recordings from the catalog.

Recording filters run first, in a fixed order (each drop is recorded with its reason); then
species filters: birds only, a Wikipedia article, and `min_files` counted over the recordings
that survived and can be downloaded. `max_files` caps a species deterministically: best quality
first, then longer, then lower id. The same inputs and options always give the same selection.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from birdgrab import manifests
from birdgrab.errors import UsageError
from birdgrab.files import file_stamp, matches_stamp
from birdgrab.licences import KNOWN_CODES, is_no_derivatives, is_non_commercial, licence_code
from birdgrab.models import (
    QUALITIES,
    DroppedSpecies,
    SelectedSpecies,
    Selection,
    SelectionHeader,
    SelectionManifest,
    Species,
    SpeciesManifest,
)
from birdgrab.sources.registry import registry
from birdgrab.sources.wikipedia import check_lang
from birdgrab.store import FilterRow, RecordingStore

TYPES = ("song", "call")


@dataclass(frozen=True)
class FilterOptions:
    min_files: int = 50
    max_files: int | None = None
    wiki_lang: str | None = "de"  # None: --no-wiki
    licences: tuple[str, ...] = ()  # allow-list of codes (BY, BY-SA, CC0, ...); empty: any
    no_nd: bool = False
    no_nc: bool = False
    min_quality: str | None = None
    min_length: float | None = None
    max_length: float | None = None
    type: str | None = None
    no_background: bool = False
    sources: tuple[str, ...] = ()
    any_group: bool = False

    def validated(self) -> FilterOptions:
        """The options with licence codes normalised; nonsense raises UsageError."""
        if self.min_files < 0:
            raise UsageError(f"--min-files must be 0 or more, got {self.min_files}")
        if self.max_files is not None and self.max_files < 1:
            raise UsageError(f"--max-files must be 1 or more, got {self.max_files}")
        if self.max_files is not None and self.min_files > self.max_files:
            raise UsageError(f"--min-files {self.min_files} is larger than --max-files {self.max_files}")
        for name, value in (("--min-length", self.min_length), ("--max-length", self.max_length)):
            if value is not None and value < 0:
                raise UsageError(f"{name} must be 0 or more seconds, got {value}")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise UsageError(f"--min-length {self.min_length} is larger than --max-length {self.max_length}")
        if self.min_quality is not None and self.min_quality.upper() not in QUALITIES:
            raise UsageError(
                f"--min-quality must be one of A, B, C, D, E (A is best), got {self.min_quality!r}"
            )
        if self.type is not None and self.type not in TYPES:
            raise UsageError(f"--type must be song or call, got {self.type!r}")
        archives = registry.names()
        for source in self.sources:
            if source not in archives:
                raise UsageError(f"--source must be one of {', '.join(archives)}, got {source!r}")
        if self.wiki_lang is not None:
            check_lang(self.wiki_lang)
        codes = []
        for raw in self.licences:
            for part in raw.split(","):
                if not part.strip():
                    continue
                code = licence_code(part)
                if code not in KNOWN_CODES:
                    raise UsageError(
                        f"--licence {part.strip()!r} is not a known licence; use codes such as "
                        f"{', '.join(sorted(KNOWN_CODES))}"
                    )
                codes.append(code)
        return FilterOptions(
            **{
                **asdict(self),
                "licences": tuple(sorted(set(codes))),
                "sources": tuple(sorted(set(self.sources))),
                "min_quality": self.min_quality.upper() if self.min_quality else None,
            }
        )


RecordingFilter = tuple[str, Callable[[FilterRow], str | None]]


def recording_filters(options: FilterOptions) -> list[RecordingFilter]:
    """(step name, check) pairs; a check returns the reason to drop a recording, or None to keep it."""
    steps: list[RecordingFilter] = []
    if options.sources:
        steps.append(
            ("source", lambda r: None if r.source in options.sources else f"source {r.source} not chosen")
        )
    if options.licences or options.no_nd or options.no_nc:

        def licence_check(r: FilterRow) -> str | None:
            if r.licence is None:
                return "licence unknown"
            if options.licences and licence_code(r.licence) not in options.licences:
                return f"licence {r.licence} not in the allow-list"
            if options.no_nd and is_no_derivatives(r.licence):
                return f"licence {r.licence} forbids derivatives (chunks are derivatives)"
            if options.no_nc and is_non_commercial(r.licence):
                return f"licence {r.licence} is non-commercial"
            return None

        steps.append(("licence", licence_check))
    if options.min_quality:
        worst = QUALITIES.index(options.min_quality)
        steps.append(
            (
                "quality",
                lambda r: (
                    "no quality rating"
                    if r.quality is None
                    else None
                    if QUALITIES.index(r.quality) <= worst
                    else f"quality {r.quality} below {options.min_quality}"
                ),
            )
        )
    if options.min_length is not None or options.max_length is not None:

        def length_check(r: FilterRow) -> str | None:
            # Unknown lengths (Europeana lists none) pass: chunk drops recordings that are too short.
            if r.length_s is None:
                return None
            if options.min_length is not None and r.length_s < options.min_length:
                return f"shorter than {options.min_length:g} s"
            if options.max_length is not None and r.length_s > options.max_length:
                return f"longer than {options.max_length:g} s"
            return None

        steps.append(("length", length_check))
    if options.type:
        steps.append(
            ("type", lambda r: None if any(options.type in t for t in r.types) else f"not a {options.type}")
        )
    if options.no_background:
        steps.append(
            ("background", lambda r: "other species in the background" if r.background_species else None)
        )
    steps.append(
        ("downloadable", lambda r: None if r.downloadable else (r.not_downloadable_reason or "no audio URL"))
    )
    return steps


def rank_key(recording: FilterRow) -> tuple:
    """Best quality first, then longer, then lower id (numeric ids compare as numbers)."""
    quality = QUALITIES.index(recording.quality) if recording.quality in QUALITIES else len(QUALITIES)
    length = -(recording.length_s or 0.0)
    sid = recording.source_id
    return (quality, length, (0, int(sid), "") if sid.isdigit() else (1, 0, sid), recording.key)


def _species_reason(species: Species | None, options: FilterOptions) -> str | None:
    if not options.any_group:
        if species is None or species.is_bird is None:
            return "not confirmed as a bird by the catalog (use --any-group to keep it)"
        if species.is_bird is False:
            return "not a bird (use --any-group to keep it)"
    if options.wiki_lang is not None:
        article = species.article(options.wiki_lang) if species else None
        if article is None:
            return f"not yet looked up on {options.wiki_lang} Wikipedia (run catalog again)"
        if not article.is_species_article:
            what = {
                "missing": "no article",
                "genus": "only a genus article",
                "section": "only a section of another article",
                "disambiguation": "only a disambiguation page",
            }[article.status]
            return f"{what} on {options.wiki_lang} Wikipedia"
    return None


def select(
    rows: Iterable[FilterRow],
    species: SpeciesManifest,
    options: FilterOptions,
) -> SelectionManifest:
    """Apply the filters to `rows`, ordered by class and then key (as `RecordingStore.filter_rows`
    gives them): one class at a time is in memory. Pure (no I/O), deterministic."""
    options = options.validated()
    steps = recording_filters(options)
    kept_species: dict[str, SelectedSpecies] = {}
    dropped_species: dict[str, DroppedSpecies] = {}
    dropped_recordings: dict[str, str] = {}
    reasons: dict[str, str] = {}  # one string per distinct reason, however many recordings share it

    def drop(key: str, reason: str) -> None:
        dropped_recordings[key] = reasons.setdefault(reason, reason)

    for name, group in itertools.groupby(rows, key=attrgetter("species")):
        members = list(group)
        funnel = {"catalogued": len(members)}
        for step, check in steps:
            survivors = []
            for recording in members:
                if (reason := check(recording)) is None:
                    survivors.append(recording)
                else:
                    drop(recording.key, reason)
            members = survivors
            funnel[step] = len(members)
        info = species.species.get(name)
        reason = _species_reason(info, options)
        if reason is None and len(members) < options.min_files:
            reason = f"{len(members)} usable recordings, fewer than --min-files {options.min_files}"
        if reason is not None:
            dropped_species[name] = DroppedSpecies(species=name, reason=reason, funnel=funnel)
            for recording in members:
                drop(recording.key, f"species dropped: {reason}")
            continue
        ranked = sorted(members, key=rank_key)
        if options.max_files is not None:
            for recording in ranked[options.max_files :]:
                drop(recording.key, f"beyond --max-files {options.max_files} for its species")
            ranked = ranked[: options.max_files]
            funnel["max-files"] = len(ranked)
        article = info.article(options.wiki_lang) if info and options.wiki_lang else None
        kept_species[name] = SelectedSpecies(
            species=name,
            wiki_title=article.title if article and article.is_species_article else None,
            recordings=[r.key for r in ranked],
            funnel=funnel,
        )
    parameters = asdict(options)
    parameters["licences"] = list(options.licences)
    parameters["sources"] = list(options.sources)
    return manifests.new_manifest(
        SelectionManifest,
        parameters,
        species=kept_species,
        dropped_species=dropped_species,
        dropped_recordings=dict(sorted(dropped_recordings.items())),
    )


def run_filter(folder: Path, options: FilterOptions, *, dry_run: bool = False) -> SelectionManifest:
    options = options.validated()  # option errors before file errors: both exit 2, this one is cheaper
    species = manifests.load_species(folder)
    store = RecordingStore.open(folder)
    if store is None or species is None:
        raise UsageError(f"no catalog in {folder}: run `birdgrab catalog` first")
    with store:
        revision = store.revision
        selection = select(store.filter_rows(), species, options)
        if not dry_run:
            path = Path(folder) / manifests.SELECTION
            manifests.save(path, selection)
            selected = selection.model_dump_json(exclude={"dropped_species", "dropped_recordings"})
            store.note_selection(_stamp(path, revision, selection.parameters), selected)
    return selection


# selection.json grows with the catalogue (a reason for every recording left out: 91 MB for a
# million). What the other commands need of it (which catalogue revision and options made it, and
# what it chose) is kept in the store with a stamp of the file's size and time: while they match,
# the file is the one filter wrote and need not be read. A file changed since (edited by hand, or
# written by a filter that was killed before it noted it) is read instead.
def _stamp(path: Path, revision: int, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"revision": revision, "parameters": parameters, **file_stamp(path)}


def _current_stamp(folder: Path) -> tuple[dict[str, Any], int] | None:
    """The stamp of the last filter run and the store's revision, while selection.json is unchanged."""
    store = RecordingStore.open(folder)
    if store is None:
        return None
    with store:
        stamp, revision = store.selection_stamp, store.revision
    return (stamp, revision) if matches_stamp(Path(folder) / manifests.SELECTION, stamp) else None


def load_selection(folder: Path) -> Selection | None:
    """What selection.json chose (species and their recordings, not what was left out), or None
    before the first `filter`: from the store while the file is what filter wrote, else from it."""
    path = Path(folder) / manifests.SELECTION
    store = RecordingStore.open(folder)
    if store is not None:
        with store:
            selected = store.selected() if matches_stamp(path, store.selection_stamp) else None
        if selected is not None:
            try:
                return Selection.model_validate_json(selected)
            except ValidationError:
                pass  # a note this version cannot read: the file says the same, at its own cost
    return manifests.load(path, Selection)


def selection_unchanged(folder: Path) -> bool:
    """Whether selection.json is, byte for byte as far as size and time tell, what filter wrote."""
    return _current_stamp(folder) is not None


def is_current(folder: Path, options: FilterOptions) -> bool:
    """Whether selection.json is what `filter` with these options would write now: made with the
    same options from the same catalogue revision (a refresh then reads neither it nor the catalogue)."""
    current = _current_stamp(folder)
    if current is None:
        return False
    stamp, revision = current
    return stamp["revision"] == revision and _options_of(folder, stamp["parameters"]) == options.validated()


def saved_options(folder: Path) -> FilterOptions | None:
    """The options of the last `filter` run (refresh reuses them)."""
    if (current := _current_stamp(folder)) is not None:
        return _options_of(folder, current[0]["parameters"])
    selection = manifests.load(Path(folder) / manifests.SELECTION, SelectionHeader)
    return None if selection is None else _options_of(folder, selection.parameters)


def _options_of(folder: Path, parameters: dict[str, Any]) -> FilterOptions:
    params = {k: v for k, v in parameters.items() if k in FilterOptions.__dataclass_fields__}
    for key in ("licences", "sources"):
        params[key] = tuple(params.get(key) or ())
    try:
        return FilterOptions(**params).validated()
    except TypeError as exc:
        raise UsageError(f"{folder}/{manifests.SELECTION} has unusable filter parameters: {exc}") from None
