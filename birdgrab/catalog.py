"""`birdgrab catalog`: query the archives, resolve species on Wikipedia, merge into the manifests.

A run merges into what is already there: new recordings are added, known ones updated (their
first_seen kept), nothing is dropped. Wikipedia is asked only about names it was never asked
about (or all, with refresh_wiki); xeno-canto is asked whether a species is a bird only for
species that no xeno-canto recording already vouches for.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from birdgrab import manifests
from birdgrab.errors import ServiceError, ServiceUnreachable, UsageError
from birdgrab.models import (
    SOURCES,
    IncompleteListing,
    Recording,
    RecordingsManifest,
    SkippedItem,
    Source,
    Species,
    SpeciesManifest,
    WikiArticle,
)
from birdgrab.names import NameError_, canonical_binomial
from birdgrab.settings import EUROPEANA_KEY_HELP, XC_KEY_HELP, Settings
from birdgrab.sources import CatalogBatch
from birdgrab.sources.europeana import Europeana
from birdgrab.sources.wikipedia import Wikipedia
from birdgrab.sources.xenocanto import XenoCanto, species_query
from birdgrab.taxonomy import WikidataUse, fetch_taxon_ids, vouch_for_genera

log = logging.getLogger(__name__)

DEFAULT_XC_QUERY = "grp:birds cnt:germany"
DEFAULT_EUROPEANA_QUERY = "tierstimmenarchiv"
NOT_IN_SPECIES_FILE = "species not in the species file"


@dataclass
class CatalogOptions:
    sources: list[Source] | None = None  # None: every source that has a key
    xc_query: str | None = None  # None: DEFAULT_XC_QUERY, or nothing extra with a species file
    europeana_query: str = DEFAULT_EUROPEANA_QUERY
    reusability: str = "open"
    species_file: Path | None = None
    wiki_lang: str = "de"
    since: date | None = None  # xeno-canto uploads since then only (an incremental listing)
    refresh_wiki: bool = False
    wiki_max_age_days: int | None = None  # ask again about articles checked longer ago than this
    prune: bool = False  # remove recordings that vanished upstream


@dataclass
class CatalogReport:
    added: int = 0
    updated: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    skipped_by_kind: dict[str, int] = field(default_factory=dict)  # placeholder, unidentified, ...
    species: int = 0
    wiki_requests: int = 0
    wiki_lookups: int = 0
    wikidata_requests: int = 0
    bird_checks: int = 0
    species_added: int = 0
    requests: int = 0  # to every service, retries included
    vanished: int = 0
    pruned: int = 0
    failures: list[str] = field(default_factory=list)

    def describe_skipped(self) -> str:
        """'5 items skipped (placeholder 3, unidentified 2)'."""
        kinds = ", ".join(f"{kind} {count}" for kind, count in self.skipped_by_kind.items())
        return f"{self.skipped} items skipped" + (f" ({kinds})" if kinds else "")


def read_species_file(path: Path) -> list[str]:
    """One scientific name a line; blank lines and '#' comments ignored. Bad lines are a UsageError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read species file {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    names: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            name = canonical_binomial(line)
        except NameError_ as exc:
            raise UsageError(f"{path}:{number}: {exc.reason}") from None
        if name not in names:
            names.append(name)
    if not names:
        raise UsageError(f"species file {path} names no species")
    return names


def _choose_sources(settings: Settings, requested: list[Source] | None) -> list[Source]:
    keys = {"xeno-canto": settings.xc_key, "europeana": settings.europeana_key}
    helps = {"xeno-canto": XC_KEY_HELP, "europeana": EUROPEANA_KEY_HELP}
    if requested:
        for source in requested:
            if keys[source] is None:
                raise UsageError(f"{source} needs an API key: {helps[source]}")
        return list(dict.fromkeys(requested))
    chosen = [s for s in SOURCES if keys[s] is not None]
    if not chosen:
        raise UsageError(f"no API keys configured: {XC_KEY_HELP}; and/or {EUROPEANA_KEY_HELP}")
    for source in SOURCES:
        if source not in chosen:
            log.warning("skipping %s: %s", source, helps[source], extra={"event": "catalog.source.skipped"})
    return chosen


def xc_queries(options: CatalogOptions, species: list[str] | None) -> list[str]:
    if species:
        extra = f" {options.xc_query}" if options.xc_query else ""
        return [f"{species_query(name)}{extra}" for name in species]
    return [options.xc_query or DEFAULT_XC_QUERY]


def mark_vanished(
    recordings: dict[str, Recording], fresh: dict[str, Recording], listed: dict[str, set[str]]
) -> dict[str, Recording]:
    """Known recordings that a complete listing by the query that found them no longer has are
    marked vanished (kept, with their last_seen); `listed` maps a source to its complete queries."""
    result = {}
    for key, recording in recordings.items():
        gone = key not in fresh and recording.found_by in listed.get(recording.source, set())
        result[key] = recording.model_copy(update={"vanished": True}) if gone else recording
    return result


def forget_non_species(
    known: dict[str, Recording], previous: dict[str, Species], skipped: list[SkippedItem]
) -> tuple[dict[str, Recording], dict[str, Species]]:
    """Recordings an earlier version took for species ("Mystery mystery", "Vogelstimmen am") are
    skipped now: they leave the catalog, and so do the species only they named."""
    rejected = {item.key for item in skipped if item.key in known}
    if not rejected:
        return known, previous
    names = {known[key].scientific_name for key in rejected}
    kept = {key: r for key, r in known.items() if key not in rejected}
    still_named = {r.scientific_name for r in kept.values()}
    gone = names - still_named
    return kept, {name: s for name, s in previous.items() if name not in gone}


def known_agent_names(recordings: dict[str, Recording]) -> dict[str, str]:
    """Recordists earlier runs resolved from references (agent URI -> name or credited provider):
    not asked about again."""
    return {r.recordist_id: r.recordist or "" for r in recordings.values() if r.recordist_id}


def complete_listings(queries: set[str], incomplete: list[IncompleteListing]) -> set[str]:
    """The queries whose listing arrived whole: only those can tell that a recording vanished."""
    return queries - {listing.query for listing in incomplete}


def describe_incomplete(listing: IncompleteListing) -> str:
    return (
        f"{listing.source} listed {listing.arrived} of the {listing.expected} records it counts for "
        f"{listing.query!r}: incomplete, asked again next run"
    )


def merge_recordings(
    known: dict[str, Recording], fresh: dict[str, Recording]
) -> tuple[dict[str, Recording], int, int]:
    """Known recordings updated from fresh ones (first_seen kept); nothing is dropped."""
    merged = dict(known)
    added = updated = 0
    for key, recording in fresh.items():
        if key in known:
            recording = recording.model_copy(update={"first_seen": known[key].first_seen})
            updated += 1
        else:
            added += 1
        merged[key] = recording
    return merged, added, updated


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _article_identity(article: WikiArticle | None) -> str | None:
    if article is None or not article.is_species_article:
        return None
    return article.wikidata_id or f"{article.lang}:{article.title}"


def group_species(
    recordings: dict[str, Recording],
    previous: dict[str, Species],
    lookups: dict[str, WikiArticle],
    lang: str,
) -> dict[str, Species]:
    """Names -> species. Names whose article (Wikidata id or title) is the same are synonyms of one
    species, named as xeno-canto names it; a species known only to Europeana keeps its binomial."""
    by_name: dict[str, list[Recording]] = defaultdict(list)
    for recording in recordings.values():
        by_name[recording.scientific_name].append(recording)
    previous_of: dict[str, Species] = {}
    for species in previous.values():
        for member in [species.scientific_name, *species.synonyms]:
            previous_of[member] = species

    def article(name: str) -> WikiArticle | None:
        if name in lookups:
            return lookups[name]
        known = previous_of.get(name)
        return known.wiki.get(lang) if known else None

    groups = _UnionFind()
    identities: dict[str, str] = {}
    for name in sorted(set(by_name) | set(previous_of)):
        groups.find(name)
        if (known := previous_of.get(name)) is not None and name not in lookups:
            groups.union(name, known.scientific_name)  # keep earlier merges stable
        if (identity := _article_identity(article(name))) is not None:
            if identity in identities:
                groups.union(name, identities[identity])
            else:
                identities[identity] = name
    members: dict[str, list[str]] = defaultdict(list)
    for name in sorted(groups.parent):
        members[groups.find(name)].append(name)

    result: dict[str, Species] = {}
    for names in members.values():
        xc_count = {n: sum(r.source == "xeno-canto" for r in by_name[n]) for n in names}
        total = {n: len(by_name[n]) for n in names}
        label = min(names, key=lambda n: (-xc_count[n], -total[n], n))
        group_recordings = [r for n in names for r in by_name[n]]
        before = next((previous_of[n] for n in names if n in previous_of), None)
        wiki = dict(before.wiki) if before else {}
        found = next((a for a in (article(label), *map(article, names)) if a and a.is_species_article), None)
        if found or article(label):
            wiki[lang] = found or article(label)  # type: ignore[assignment]
        english = Counter(r.english_name for r in group_recordings if r.english_name).most_common(1)
        species = Species(
            scientific_name=label,
            synonyms=sorted(n for n in names if n != label),
            english_name=english[0][0] if english else (before.english_name if before else None),
            wiki=dict(sorted(wiki.items())),
            recordings=dict(sorted(Counter(r.source for r in group_recordings).items())),
            taxon_ids=before.taxon_ids if before else None,
        )
        xc_groups = {r.group for r in group_recordings if r.source == "xeno-canto" and r.group}
        if xc_groups:
            species.is_bird = "birds" in xc_groups
            species.bird_check = f"xeno-canto files its recordings under {', '.join(sorted(xc_groups))}"
        elif before is not None and before.is_bird is not None:
            species.is_bird, species.bird_check = before.is_bird, before.bird_check
            species.bird_checked_at = before.bird_checked_at
        elif before is not None:
            species.bird_check = before.bird_check
        result[label] = species
    return dict(sorted(result.items()))


def _class_of(species: dict[str, Species]) -> dict[str, str]:
    return {
        member: s.scientific_name for s in species.values() for member in [s.scientific_name, *s.synonyms]
    }


async def _search_source(
    source: Source,
    settings: Settings,
    options: CatalogOptions,
    species_list: list[str] | None,
    seen_at: datetime,
    report: CatalogReport,
    agent_names: dict[str, str],
) -> CatalogBatch:
    archive = XenoCanto(settings) if source == "xeno-canto" else Europeana(settings)
    async with archive:
        try:
            if isinstance(archive, XenoCanto):
                batch = CatalogBatch()
                for query in xc_queries(options, species_list):
                    await archive.search(query, seen_at=seen_at, since=options.since, batch=batch)
                return batch
            return await archive.search(
                options.europeana_query,
                seen_at=seen_at,
                reusability=options.reusability,
                batch=CatalogBatch(agent_names=dict(agent_names)),
            )
        finally:
            report.requests += archive.client.requests_made


async def _check_birds(
    settings: Settings, species: dict[str, Species], now: datetime, report: CatalogReport
) -> None:
    """Ask xeno-canto once per species that no xeno-canto recording vouches for."""
    open_species = [s for s in species.values() if s.is_bird is None]
    if not open_species:
        return
    if settings.xc_key is None:
        for s in open_species:
            s.bird_check = "open: needs a xeno-canto key to ask whether it is a bird (set BIRDGRAB_XC_KEY)"
        return
    async with XenoCanto(settings) as xc:

        async def check(s: Species) -> None:
            try:
                s.is_bird = await xc.has_birds(s.scientific_name)
            except (ServiceUnreachable, ServiceError) as exc:
                s.bird_check = f"open: xeno-canto could not be asked ({exc})"
                report.failures.append(f"bird check for {s.scientific_name}: {exc}")
                return
            s.bird_check = f'xeno-canto query sp:"{s.scientific_name.lower()}" grp:birds'
            s.bird_checked_at = now
            report.bird_checks += 1

        try:
            await asyncio.gather(*(check(s) for s in open_species))
        finally:
            report.requests += xc.client.requests_made


async def run_catalog(settings: Settings, folder: Path, options: CatalogOptions) -> CatalogReport:
    """Catalog the archives into `folder`/recordings.json and species.json. See module doc."""
    folder = Path(folder)
    known_recordings = manifests.load_recordings(folder)  # bad manifests stop us before any request
    known_species = manifests.load_species(folder)
    species_list = read_species_file(options.species_file) if options.species_file else None
    sources = _choose_sources(settings, options.sources)
    if not settings.contact:
        log.warning(
            "BIRDGRAB_CONTACT is not set: the archives ask every client to name a contact "
            "(e-mail or URL) in its User-Agent",
            extra={"event": "config.no_contact"},
        )
    now = manifests.utc_now()
    report = CatalogReport()

    agent_names = known_agent_names(known_recordings.recordings if known_recordings else {})
    outcomes = await asyncio.gather(
        *(_search_source(s, settings, options, species_list, now, report, agent_names) for s in sources),
        return_exceptions=True,
    )
    batches = {s: o for s, o in zip(sources, outcomes, strict=True) if isinstance(o, CatalogBatch)}
    wikidata = WikidataUse()
    genera = dict(known_species.genera) if known_species else {}
    await vouch_for_genera(settings, batches, genera, now, wikidata)
    fresh: dict[str, Recording] = {}
    skipped: list[SkippedItem] = []
    incomplete: list[IncompleteListing] = []
    listed: dict[str, set[str]] = {}  # source -> queries listed completely this run
    unreachable = 0
    for source, outcome in zip(sources, outcomes, strict=True):
        if isinstance(outcome, ServiceUnreachable):
            unreachable += 1
            report.failures.append(str(outcome))
            log.error("%s", outcome, extra={"event": "catalog.source.failed", "source": source})
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            fresh.update(outcome.recordings)
            skipped.extend(outcome.skipped)
            report.per_source[source] = len(outcome.recordings)
            if source == "europeana":
                listed[source] = {options.europeana_query}
            elif options.since is None:  # an incremental listing says nothing about what vanished
                listed[source] = set(xc_queries(options, species_list))
            if source in wikidata.held_back:  # items wait for their genus check: nothing vanished
                listed[source] = set()
            listed[source] = complete_listings(listed.get(source, set()), outcome.incomplete)
            incomplete += outcome.incomplete
            report.failures += [describe_incomplete(listing) for listing in outcome.incomplete]
    if unreachable == len(sources):
        raise ServiceUnreachable(", ".join(sources), "no source reachable; nothing was changed")

    known = known_recordings.recordings if known_recordings else {}
    known, previous_species = forget_non_species(
        known, known_species.species if known_species else {}, skipped
    )
    recordings, report.added, report.updated = merge_recordings(known, fresh)
    recordings = mark_vanished(recordings, fresh, listed)
    report.vanished = sum(r.vanished for r in recordings.values())
    if options.prune:
        recordings = {k: r for k, r in recordings.items() if not r.vanished}
        report.pruned = report.vanished
        report.vanished = 0
    species = await _resolve_species(settings, recordings, previous_species, options, now, report)
    await _check_birds(settings, species, now, report)
    await fetch_taxon_ids(
        settings, species, options.wiki_lang, now, wikidata, stale_before=_stale_before(options, now)
    )
    report.wikidata_requests = wikidata.requests
    report.requests += wikidata.requests
    report.failures += wikidata.failures

    class_of = _class_of(species)
    if species_list is not None:
        wanted = {class_of.get(n, n) for n in species_list}
        for key, recording in list(recordings.items()):
            if key in fresh and class_of.get(recording.scientific_name) not in wanted:
                del recordings[key]
                skipped.append(
                    SkippedItem(
                        key=key,
                        name=recording.scientific_name,
                        reason=NOT_IN_SPECIES_FILE,
                        kind="not in species file",
                    )
                )
        present = {class_of.get(r.scientific_name) for r in recordings.values()}
        species = {k: v for k, v in species.items() if k in present}
    recordings = {
        key: r.model_copy(update={"species": class_of.get(r.scientific_name, r.scientific_name)})
        for key, r in sorted(recordings.items())
    }
    report.skipped = len(skipped)
    report.skipped_by_kind = dict(sorted(Counter(s.kind or "other" for s in skipped).items()))
    report.species = len(species)
    report.species_added = len(set(species) - set(known_species.species if known_species else {}))

    parameters = {
        "sources": sources,
        "xc_query": options.xc_query,
        "xc_queries": xc_queries(options, species_list) if "xeno-canto" in sources else [],
        "europeana_query": options.europeana_query if "europeana" in sources else None,
        "reusability": options.reusability,
        "species_file": _describe_file(options.species_file),
        "wiki_lang": options.wiki_lang,
        "since": options.since.isoformat() if options.since else None,
        "endpoints": {
            "xeno-canto": settings.xc_api,
            "europeana": settings.europeana_api,
            "wikipedia": settings.wikipedia_api,
            "wikidata": settings.wikidata_api,
        },
    }
    manifests.save(
        folder / manifests.RECORDINGS,
        manifests.new_manifest(
            RecordingsManifest,
            parameters,
            counts=dict(sorted(Counter(r.source for r in recordings.values()).items())),
            recordings=recordings,
            skipped=sorted(skipped, key=lambda s: (s.key, s.reason)),
            incomplete_listings=incomplete,
        ),
    )
    manifests.save(
        folder / manifests.SPECIES,
        manifests.new_manifest(
            SpeciesManifest, parameters, species=species, genera=dict(sorted(genera.items()))
        ),
    )
    return report


def _stale_before(options: CatalogOptions, now: datetime) -> datetime | None:
    """Facts looked up before this are asked again (all of them with refresh_wiki)."""
    if options.refresh_wiki:
        return now
    return now - timedelta(days=options.wiki_max_age_days) if options.wiki_max_age_days else None


def _describe_file(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    return {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


async def _resolve_species(
    settings: Settings,
    recordings: dict[str, Recording],
    previous: dict[str, Species],
    options: CatalogOptions,
    now: datetime,
    report: CatalogReport,
) -> dict[str, Species]:
    lang = options.wiki_lang
    stale_before = now - timedelta(days=options.wiki_max_age_days) if options.wiki_max_age_days else None
    known_names = {
        member
        for s in previous.values()
        if lang in s.wiki and (stale_before is None or s.wiki[lang].checked_at >= stale_before)
        for member in [s.scientific_name, *s.synonyms]
    }
    names = {r.scientific_name for r in recordings.values()}
    to_ask = sorted(names if options.refresh_wiki else names - known_names)
    lookups: dict[str, WikiArticle] = {}
    if to_ask:
        try:
            async with Wikipedia(settings, lang) as wiki:
                try:
                    lookups = await wiki.resolve(to_ask, checked_at=now)
                finally:
                    report.wiki_requests = wiki.client.requests_made
                    report.requests += wiki.client.requests_made
        except (ServiceUnreachable, ServiceError) as exc:
            report.failures.append(f"{exc} (species stay unresolved and are asked again next run)")
            log.error("%s", exc, extra={"event": "catalog.wiki.failed"})
    report.wiki_lookups = len(lookups)
    return group_species(recordings, previous, lookups, lang)
