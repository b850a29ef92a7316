"""`birdgrab catalog`: query the archives, resolve species on Wikipedia, merge into the manifests.

A run merges into what is already there: new recordings are added, known ones updated (their
first_seen kept), nothing is dropped. Wikipedia is asked only about names it was never asked
about (or all, with refresh_wiki); an archive that can tell (`Archive.checks_birds`) is asked
whether a species is a bird only for species that no recording's group already vouches for.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from birdgrab import manifests
from birdgrab.errors import ServiceError, ServiceUnreachable, UsageError
from birdgrab.known_species import KnownSpecies
from birdgrab.models import (
    IncompleteListing,
    SkippedItem,
    Species,
    SpeciesManifest,
    WikiArticle,
)
from birdgrab.names import NameError_, canonical_binomial
from birdgrab.settings import Settings
from birdgrab.sources import CatalogBatch
from birdgrab.sources.archive import Archive, ListingRequest, RequestTally
from birdgrab.sources.registry import registry
from birdgrab.sources.wikipedia import Wikipedia, check_lang
from birdgrab.store import CatalogRun, NameSummary, RecordingStore
from birdgrab.taxonomy import WikidataUse, fetch_taxon_ids, vouch_for_genera

log = logging.getLogger(__name__)

NOT_IN_SPECIES_FILE = "species not in the species file"


@dataclass(frozen=True)
class CatalogOptions:
    sources: list[str] | None = None  # archive names; None: every default archive that is configured
    queries: dict[str, str] = field(default_factory=dict)  # archive name -> query (absent: its default)
    species_file: Path | None = None
    wiki_lang: str = "de"
    since: date | None = None  # only what is new or changed since then (an incremental listing)
    refresh_wiki: bool = False
    wiki_max_age_days: int | None = None  # ask again about articles checked longer ago than this
    prune: bool = False  # remove recordings that vanished upstream

    def validated(self) -> CatalogOptions:
        """The options, or a UsageError (exit 2) for nonsense."""
        check_lang(self.wiki_lang)
        for name in self.sources or ():
            registry.get(name)
        return self

    def parameters(self, archives: list[Archive], queries: dict[str, list[str]], settings: Settings) -> dict:
        """What the catalog manifests record about the run: `saved_options` reads it back."""
        return {
            "sources": [a.name for a in archives],
            # Each archive's query option as given (None: its default), where refresh finds it again.
            **{a.query_option.parameter: self.queries.get(a.name) for a in registry if a.query_option},
            "queries": queries,  # what each archive listed
            "species_file": _describe_file(self.species_file),
            "wiki_lang": self.wiki_lang,
            "since": self.since.isoformat() if self.since else None,
            "endpoints": {
                **{a.name: a.access(settings).api for a in archives},
                "wikipedia": settings.wikipedia_api,
                "wikidata": settings.wikidata_api,
            },
        }


def saved_options(folder: Path) -> CatalogOptions | None:
    """The options of the last catalog run (what refresh starts from), from the parameters it kept."""
    store = RecordingStore.open(folder)
    if store is None:
        return None
    with store:
        params = store.parameters
    return CatalogOptions(
        sources=params.get("sources") or None,
        queries={
            a.name: params[a.query_option.parameter]
            for a in registry
            if a.query_option and params.get(a.query_option.parameter)
        },
        species_file=Path(params["species_file"]["path"]) if params.get("species_file") else None,
        wiki_lang=params.get("wiki_lang") or "de",
    )


@dataclass
class CatalogReport:
    added: int = 0
    updated: int = 0
    per_source: dict[str, int] = field(default_factory=dict)  # recordings listed this run (new or not)
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

    def summary(self) -> str:
        """The one line a catalog run ends with."""
        listed = sum(self.per_source.values())
        return (
            f"catalog: {listed} recordings listed "
            f"({', '.join(f'{k} {v}' for k, v in self.per_source.items()) or 'no source'}), "
            f"{self.added} of them new, {self.updated} updated; "
            f"{self.species} species; {self.describe_skipped()}; "
            f"Wikipedia: {self.wiki_lookups} names in {self.wiki_requests} requests; bird checks: {self.bird_checks}"
        )


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


def choose_archives(settings: Settings, requested: list[str] | None) -> list[Archive]:
    """The archives asked for (each must be configured), or every default one that is."""
    if requested:
        chosen = [registry.get(name) for name in dict.fromkeys(requested)]
        for archive in chosen:
            archive.api_key(settings)  # a UsageError naming the missing key
        return chosen
    defaults = [a for a in registry if a.default_on]
    chosen = [a for a in defaults if a.configured(settings)]
    if not chosen:
        raise UsageError(f"no API keys configured: {'; and/or '.join(a.key_help for a in defaults)}")
    for archive in defaults:
        if archive not in chosen:
            log.warning(
                "skipping %s: %s", archive.name, archive.key_help, extra={"event": "catalog.source.skipped"}
            )
    return chosen


def listing_request(
    archive: Archive,
    options: CatalogOptions,
    species: list[str] | None,
    seen_at: datetime,
    agent_names: dict[str, str] | None = None,
) -> ListingRequest:
    return ListingRequest(
        query=options.queries.get(archive.name),
        species=species,
        since=options.since,
        seen_at=seen_at,
        agent_names=agent_names or {},
    )


def forget_non_species(
    store: RecordingStore, run: CatalogRun, skipped: list[SkippedItem]
) -> tuple[set[str], int]:
    """Recordings an earlier version took for species ("Mystery mystery", "Vogelstimmen am") are
    skipped now: they leave the catalog, and so do the species only they named. Returns those
    species and how many recordings left."""
    rejected = store.names_of(item.key for item in skipped)
    if not rejected:
        return set(), 0
    run.remove(rejected)
    return set(rejected.values()) - store.named(set(rejected.values())), len(rejected)


def complete_listings(queries: set[str], incomplete: list[IncompleteListing]) -> set[str]:
    """The queries whose listing arrived whole: only those can tell that a recording vanished."""
    return queries - {listing.query for listing in incomplete}


def describe_incomplete(listing: IncompleteListing) -> str:
    return (
        f"{listing.source} listed {listing.arrived} of the {listing.expected} records it counts for "
        f"{listing.query!r}: incomplete, asked again next run"
    )


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
    names: dict[str, NameSummary],
    previous: dict[str, Species],
    lookups: dict[str, WikiArticle],
    lang: str,
) -> dict[str, Species]:
    """Names -> species. Names whose article (Wikidata id or title) is the same are synonyms of one
    species, named as the archives that name classes (`Archive.names_classes`: xeno-canto) name it;
    a species known only to other archives keeps its binomial. `names` summarises the recordings
    filed under each scientific name (`RecordingStore.name_summaries`)."""
    naming = {a.name for a in registry if a.names_classes}
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
    for name in sorted(set(names) | set(previous_of)):
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

    empty = NameSummary()
    result: dict[str, Species] = {}
    for group_names in members.values():
        summary = {n: names.get(n, empty) for n in group_names}
        named_by = {n: sum(c for a, c in s.per_source.items() if a in naming) for n, s in summary.items()}
        total = {n: s.per_source.total() for n, s in summary.items()}
        label = min(group_names, key=lambda n: (-named_by[n], -total[n], n))
        before = next((previous_of[n] for n in group_names if n in previous_of), None)
        wiki = dict(before.wiki) if before else {}
        found = next(
            (a for a in (article(label), *map(article, group_names)) if a and a.is_species_article), None
        )
        if found or article(label):
            wiki[lang] = found or article(label)  # type: ignore[assignment]
        english: Counter[str] = sum((s.english_names for s in summary.values()), Counter())
        per_source: Counter[str] = sum((s.per_source for s in summary.values()), Counter())
        species = Species(
            scientific_name=label,
            synonyms=sorted(n for n in group_names if n != label),
            english_name=(
                min(english, key=lambda e: (-english[e], e))
                if english
                else (before.english_name if before else None)
            ),
            wiki=dict(sorted(wiki.items())),
            recordings=dict(sorted((k, v) for k, v in per_source.items() if v)),
            taxon_ids=before.taxon_ids if before else None,
        )
        filed: dict[str, set[str]] = defaultdict(set)  # archive name -> the groups it files them under
        for s in summary.values():
            for archive_name, archive_groups in s.groups.items():
                filed[archive_name] |= archive_groups
        if filed:
            species.is_bird = any("birds" in g for g in filed.values())
            species.bird_check = "; ".join(
                f"{registry.get(name).title} files its recordings under {', '.join(sorted(g))}"
                for name, g in sorted(filed.items())
            )
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


async def _check_birds(
    settings: Settings, species: dict[str, Species], now: datetime, report: CatalogReport
) -> None:
    """Ask an archive that can tell, once per species that no recording's group vouches for."""
    open_species = [s for s in species.values() if s.is_bird is None]
    checkers = [a for a in registry if a.checks_birds]
    if not open_species or not checkers:
        return
    checker = next((a for a in checkers if a.configured(settings)), None)
    if checker is None:
        for s in open_species:
            s.bird_check = (
                f"open: needs a {checkers[0].title} key to ask whether it is a bird "
                f"(set {checkers[0].key_variable})"
            )
        return
    tally = RequestTally()
    try:
        answers = await checker.check_birds(settings, [s.scientific_name for s in open_species], tally)
    finally:
        report.requests += tally.requests
    for s in open_species:
        answer = answers[s.scientific_name]
        s.is_bird, s.bird_check = answer.is_bird, answer.how
        if answer.failure:
            report.failures.append(answer.failure)
        else:
            s.bird_checked_at = now
            report.bird_checks += 1


async def _catalog_archive(
    archive: Archive, settings: Settings, request: ListingRequest, report: CatalogReport, batch: CatalogBatch
) -> CatalogBatch:
    tally = RequestTally()
    try:
        return await archive.catalog(settings, request, tally, batch)
    finally:
        report.requests += tally.requests


async def run_catalog(settings: Settings, folder: Path, options: CatalogOptions) -> CatalogReport:
    """Catalog the archives into `folder`'s recordings store and species.json. See module doc."""
    folder = Path(folder)
    options = options.validated()
    existed = RecordingStore.open(folder)
    note = None
    if existed is not None:
        note = existed.species_note
        existed.close()
    known = KnownSpecies(folder, note)  # a bad species.json stops us before any request
    species_list = read_species_file(options.species_file) if options.species_file else None
    archives = choose_archives(settings, options.sources)
    if not settings.contact:
        log.warning(
            "BIRDGRAB_CONTACT is not set: the archives ask every client to name a contact "
            "(e-mail or URL) in its User-Agent",
            extra={"event": "config.no_contact"},
        )
    store = RecordingStore.open(folder, create=True)
    assert store is not None
    run = store.catalog_run()
    try:
        report = await _catalog(settings, folder, options, store, run, archives, species_list, known)
    except BaseException:
        run.rollback()
        if existed is None:
            store.delete()  # a first run that failed leaves no catalogue behind
        raise
    finally:
        store.close()
    return report


async def _catalog(
    settings: Settings,
    folder: Path,
    options: CatalogOptions,
    store: RecordingStore,
    run: CatalogRun,
    archives: list[Archive],
    species_list: list[str] | None,
    known: KnownSpecies,
) -> CatalogReport:
    now = manifests.utc_now()
    report = CatalogReport()
    agent_names = store.agent_names()
    requests = {a.name: listing_request(a, options, species_list, now, agent_names) for a in archives}
    queries = {a.name: a.queries(requests[a.name]) for a in archives}  # a bad query stops us here

    outcomes = await asyncio.gather(
        *(_catalog_archive(a, settings, requests[a.name], report, run.batch()) for a in archives),
        return_exceptions=True,
    )
    batches = {a.name: o for a, o in zip(archives, outcomes, strict=True) if isinstance(o, CatalogBatch)}
    wikidata = WikidataUse()
    known_genera = known.genera()
    genera = dict(known_genera)
    await vouch_for_genera(settings, batches, genera, now, wikidata)
    skipped: list[SkippedItem] = []
    incomplete: list[IncompleteListing] = []
    listed: dict[str, set[str]] = {}  # archive name -> queries listed completely this run
    unreachable = 0
    for archive, outcome in zip(archives, outcomes, strict=True):
        if isinstance(outcome, ServiceUnreachable):
            unreachable += 1
            run.discard(archive.name)
            report.failures.append(str(outcome))
            log.error("%s", outcome, extra={"event": "catalog.source.failed", "source": archive.name})
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            skipped.extend(outcome.skipped)
            report.per_source[archive.name] = outcome.count
            listed[archive.name] = complete_listings(
                set()
                if archive.name in wikidata.held_back  # items wait for their genus check
                else archive.complete_listings(requests[archive.name]),
                outcome.incomplete,
            )
            incomplete += outcome.incomplete
            report.failures += [describe_incomplete(listing) for listing in outcome.incomplete]
    if unreachable == len(archives):
        raise ServiceUnreachable(
            ", ".join(a.name for a in archives), "no source reachable; nothing was changed"
        )

    gone, forgotten = forget_non_species(store, run, skipped)
    merged = run.merge()
    report.added, report.updated = merged.added, merged.updated
    newly_vanished = sum(run.mark_vanished(source, queries) for source, queries in listed.items())
    if options.prune:
        report.pruned = run.prune()
    else:
        report.vanished = store.vanished()
    catalogue_changed = bool(merged.added or merged.changed or newly_vanished or report.pruned or forgotten)
    parameters = options.parameters(archives, queries, settings)

    def finish(changed: bool, species_note: dict[str, Any] | None = None) -> CatalogReport:
        report.skipped = len(skipped)
        report.skipped_by_kind = dict(sorted(Counter(s.kind or "other" for s in skipped).items()))
        run.commit(
            parameters,
            sorted(skipped, key=lambda s: (s.key, s.reason)),
            incomplete,
            changed=changed,
            species_note=species_note,
        )
        return report

    if (
        not catalogue_changed
        and genera == known_genera
        and species_list is None
        and not options.refresh_wiki
        and known.quiet(options.wiki_lang, options.wiki_max_age_days, now)
    ):
        # Nothing listed changed and nothing about the species is due: species.json stays unread.
        report.species = known.count
        return finish(changed=False)

    previous_species = {name: s for name, s in known.species.items() if name not in gone}
    species = await _resolve_species(
        settings, store, previous_species, options, now, report, catalogue_changed
    )
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
        unwanted = [(key, name) for key, name in run.listed_keys() if class_of.get(name) not in wanted]
        run.remove(key for key, _ in unwanted)
        for key, _ in unwanted:  # listed, but not catalogued: counted as skipped, not as recordings
            report.per_source[registry.of_key(key).name] -= 1
        skipped += [
            SkippedItem(key=key, name=name, reason=NOT_IN_SPECIES_FILE, kind="not in species file")
            for key, name in unwanted
        ]
        present = {class_of.get(name) for name in store.name_summaries()}
        species = {k: v for k, v in species.items() if k in present}
        catalogue_changed = catalogue_changed or bool(unwanted)
    previous_class = _class_of(previous_species)
    regrouped = run.assign_classes(
        {n: c for n, c in class_of.items() if c != n or previous_class.get(n, n) != n}
    )
    report.species = len(species)
    report.species_added = len(set(species) - set(known.species))

    genera = dict(sorted(genera.items()))
    # species.json is written when it changed: a no-change refresh writes nothing that grows
    species_changed = known.changed(species, genera)
    if species_changed:
        manifests.save(
            folder / manifests.SPECIES,
            manifests.new_manifest(SpeciesManifest, parameters, species=species, genera=genera),
        )
    return finish(
        changed=catalogue_changed or species_changed or bool(regrouped),
        species_note=known.note(species, genera, options.wiki_lang),
    )


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
    store: RecordingStore,
    previous: dict[str, Species],
    options: CatalogOptions,
    now: datetime,
    report: CatalogReport,
    catalogue_changed: bool,
) -> dict[str, Species]:
    """Ask Wikipedia about names not yet (or too long ago) looked up, then group names into species.
    When the catalogue did not change and nothing new was learnt, the species stay as they were,
    without reading the recordings at all (what keeps a no-change refresh cheap)."""
    lang = options.wiki_lang
    stale_before = now - timedelta(days=options.wiki_max_age_days) if options.wiki_max_age_days else None
    known_names = {
        member
        for s in previous.values()
        if lang in s.wiki and (stale_before is None or s.wiki[lang].checked_at >= stale_before)
        for member in [s.scientific_name, *s.synonyms]
    }
    summaries = store.name_summaries() if catalogue_changed or not previous else None
    names = set(summaries) if summaries is not None else set(_class_of(previous))
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
    if summaries is None and not lookups:
        return dict(previous)
    if summaries is None:
        summaries = store.name_summaries()
    return group_species(summaries, previous, lookups, lang)
