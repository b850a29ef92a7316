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
from birdgrab.store import CatalogRun, NameSummary, RecordingStore

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
    species: int = 0
    wiki_requests: int = 0
    wiki_lookups: int = 0
    bird_checks: int = 0
    species_added: int = 0
    requests: int = 0  # to every service, retries included
    vanished: int = 0
    pruned: int = 0
    failures: list[str] = field(default_factory=list)


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
    species, named as xeno-canto names it; a species known only to Europeana keeps its binomial.
    `names` summarises the recordings filed under each scientific name (`RecordingStore.name_summaries`)."""
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
        summaries = [names.get(n, empty) for n in group_names]
        xc_count = {n: s.per_source["xeno-canto"] for n, s in zip(group_names, summaries, strict=True)}
        total = {n: s.per_source.total() for n, s in zip(group_names, summaries, strict=True)}
        label = min(group_names, key=lambda n: (-xc_count[n], -total[n], n))
        before = next((previous_of[n] for n in group_names if n in previous_of), None)
        wiki = dict(before.wiki) if before else {}
        found = next(
            (a for a in (article(label), *map(article, group_names)) if a and a.is_species_article), None
        )
        if found or article(label):
            wiki[lang] = found or article(label)  # type: ignore[assignment]
        english: Counter[str] = sum((s.english_names for s in summaries), Counter())
        per_source: Counter[str] = sum((s.per_source for s in summaries), Counter())
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
        )
        xc_groups = set().union(*(s.xc_groups for s in summaries))
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
    batch: CatalogBatch,
) -> CatalogBatch:
    archive = XenoCanto(settings) if source == "xeno-canto" else Europeana(settings)
    async with archive:
        try:
            if isinstance(archive, XenoCanto):
                for query in xc_queries(options, species_list):
                    await archive.search(query, seen_at=seen_at, since=options.since, batch=batch)
                return batch
            return await archive.search(
                options.europeana_query, seen_at=seen_at, reusability=options.reusability, batch=batch
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
    """Catalog the archives into `folder`'s recordings store and species.json. See module doc."""
    folder = Path(folder)
    known_species = manifests.load_species(folder)  # bad manifests stop us before any request
    existed = RecordingStore.open(folder)
    if existed is not None:
        existed.close()
    species_list = read_species_file(options.species_file) if options.species_file else None
    sources = _choose_sources(settings, options.sources)
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
        report = await _catalog(settings, folder, options, store, run, sources, species_list, known_species)
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
    sources: list[Source],
    species_list: list[str] | None,
    known_species: SpeciesManifest | None,
) -> CatalogReport:
    now = manifests.utc_now()
    report = CatalogReport()
    outcomes = await asyncio.gather(
        *(_search_source(s, settings, options, species_list, now, report, run.batch()) for s in sources),
        return_exceptions=True,
    )
    skipped: list[SkippedItem] = []
    listed: dict[str, set[str]] = {}  # source -> queries listed completely this run
    unreachable = 0
    for source, outcome in zip(sources, outcomes, strict=True):
        if isinstance(outcome, ServiceUnreachable):
            unreachable += 1
            run.discard(source)
            report.failures.append(str(outcome))
            log.error("%s", outcome, extra={"event": "catalog.source.failed", "source": source})
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            skipped.extend(outcome.skipped)
            report.per_source[source] = outcome.count
            if source == "europeana":
                listed[source] = {options.europeana_query}
            elif options.since is None:  # an incremental listing says nothing about what vanished
                listed[source] = set(xc_queries(options, species_list))
    if unreachable == len(sources):
        raise ServiceUnreachable(", ".join(sources), "no source reachable; nothing was changed")

    merged = run.merge()
    report.added, report.updated = merged.added, merged.updated
    newly_vanished = sum(run.mark_vanished(source, queries) for source, queries in listed.items())
    if options.prune:
        report.pruned = run.prune()
    else:
        report.vanished = store.vanished()
    catalogue_changed = bool(merged.added or merged.changed or newly_vanished or report.pruned)

    previous_species = known_species.species if known_species else {}
    species = await _resolve_species(
        settings, store, previous_species, options, now, report, catalogue_changed
    )
    await _check_birds(settings, species, now, report)

    class_of = _class_of(species)
    if species_list is not None:
        wanted = {class_of.get(n, n) for n in species_list}
        unwanted = [(key, name) for key, name in run.listed_keys() if class_of.get(name) not in wanted]
        run.remove(key for key, _ in unwanted)
        skipped += [SkippedItem(key=key, name=name, reason=NOT_IN_SPECIES_FILE) for key, name in unwanted]
        present = {class_of.get(name) for name in store.name_summaries()}
        species = {k: v for k, v in species.items() if k in present}
        catalogue_changed = catalogue_changed or bool(unwanted)
    previous_class = _class_of(previous_species)
    regrouped = run.assign_classes(
        {n: c for n, c in class_of.items() if c != n or previous_class.get(n, n) != n}
    )
    report.skipped = len(skipped)
    report.species = len(species)
    report.species_added = len(set(species) - set(previous_species))

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
        },
    }
    species_changed = known_species is None or species != previous_species
    if species_changed:
        manifests.save(
            folder / manifests.SPECIES,
            manifests.new_manifest(SpeciesManifest, parameters, species=species),
        )
    run.commit(
        parameters,
        sorted(skipped, key=lambda s: (s.key, s.reason)),
        changed=catalogue_changed or species_changed or bool(regrouped),
    )
    return report


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
        return {name: s.model_copy(deep=True) for name, s in previous.items()}
    if summaries is None:
        summaries = store.name_summaries()
    return group_species(summaries, previous, lookups, lang)
