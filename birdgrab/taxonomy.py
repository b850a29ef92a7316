"""What Wikidata adds to a catalog: genera vouched for, and the taxonomy ids people map classes to.

- A free-text title (Europeana) names a species only when its genus is a real taxon: one that a
  xeno-canto recording of the same run files a species under, or that Wikidata knows (asked once per
  genus, the verdict kept in species.json under `genera`). "Vogelstimmen am Müggelsee, Tonband 3"
  parses as a binomial, but "Vogelstimmen" is no genus: the item is skipped with that reason.
- The eBird (P3444) and GBIF (P846) taxon ids of every species whose Wikidata item Wikipedia named,
  50 items a request; a species keeps its ids until its item changes (none asked on a re-run).

A Wikidata failure is a failed item (exit 1): free-text titles it could not vouch for are held back
this run (their listing marks nothing vanished), ids stay unasked, and both are asked next run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from birdgrab.errors import ServiceError, ServiceUnreachable
from birdgrab.models import GenusCheck, SkippedItem, Species, TaxonIds
from birdgrab.settings import Settings
from birdgrab.sources import CatalogBatch
from birdgrab.sources.wikidata import Wikidata

log = logging.getLogger(__name__)

NOT_A_TAXON = "not a taxon"


@dataclass
class WikidataUse:
    """What asking Wikidata cost and what failed (merged into the catalog's report)."""

    requests: int = 0
    genera_checked: int = 0
    taxon_ids_fetched: int = 0
    failures: list[str] = field(default_factory=list)
    held_back: set[str] = field(default_factory=set)  # sources with titles left unchecked this run


def genus_of(binomial: str) -> str:
    return binomial.split(" ", 1)[0]


async def vouch_for_genera(
    settings: Settings,
    batches: Mapping[str, CatalogBatch],
    cache: dict[str, GenusCheck],
    now: datetime,
    use: WikidataUse,
) -> None:
    """Skip (or hold back) the free-text recordings of `batches` whose genus is no known taxon;
    `cache` gains Wikidata's verdicts on the genera it was asked about."""
    free = {source: batch for source, batch in batches.items() if batch.free_text_names}
    if not free:
        return  # (the names of the other batches, a listing's worth, are not even read)
    vouched = {
        genus_of(name) for batch in batches.values() if not batch.free_text_names for name in batch.names()
    } | {genus for genus, check in cache.items() if check.taxon}
    unknown = sorted(
        {genus_of(name) for batch in free.values() for name in batch.names()} - vouched - set(cache)
    )
    if unknown:
        try:
            async with Wikidata(settings) as wikidata:
                try:
                    verdicts = await wikidata.genera(unknown)
                finally:
                    use.requests += wikidata.client.requests_made
            for genus, qid in verdicts.items():
                cache[genus] = GenusCheck(taxon=qid is not None, wikidata_id=qid, checked_at=now)
            use.genera_checked += len(verdicts)
        except (ServiceUnreachable, ServiceError) as exc:
            use.failures.append(f"{exc} (titles whose genus is unchecked are held back until next run)")
            log.error("%s", exc, extra={"event": "catalog.wikidata.failed"})
    for source, batch in free.items():
        for key, name, original_name in batch.entries():
            genus = genus_of(name)
            check = cache.get(genus)
            if genus in vouched or (check is not None and check.taxon):
                continue
            batch.drop(key)
            if check is None:
                use.held_back.add(source)
                continue
            batch.skip(
                SkippedItem(
                    key=key,
                    name=original_name,
                    reason=f"not a species: {genus!r} is no genus that xeno-canto or Wikidata knows",
                    kind=NOT_A_TAXON,
                )
            )


def wikidata_item(species: Species, lang: str) -> str | None:
    """The Wikidata item of a species: its species article's in `lang`, else in any language."""
    articles = sorted(species.wiki.values(), key=lambda a: (a.lang != lang, a.lang))
    return next((a.wikidata_id for a in articles if a.is_species_article and a.wikidata_id), None)


async def fetch_taxon_ids(
    settings: Settings,
    species: Mapping[str, Species],
    lang: str,
    now: datetime,
    use: WikidataUse,
    *,
    stale_before: datetime | None = None,
) -> None:
    """Fill `taxon_ids` of the species whose item is new, changed, or was read before `stale_before`."""
    todo: dict[str, list[Species]] = {}
    for s in species.values():
        qid = wikidata_item(s, lang)
        known = s.taxon_ids
        if qid is None:
            continue
        if known is None or known.wikidata_id != qid or (stale_before and known.checked_at < stale_before):
            todo.setdefault(qid, []).append(s)
    if not todo:
        return
    try:
        async with Wikidata(settings) as wikidata:
            try:
                found = await wikidata.taxon_ids(sorted(todo))
            finally:
                use.requests += wikidata.client.requests_made
    except (ServiceUnreachable, ServiceError) as exc:
        use.failures.append(f"{exc} (taxonomy ids are asked again next run)")
        log.error("%s", exc, extra={"event": "catalog.wikidata.failed"})
        return
    for qid, ids in found.items():
        for s in todo[qid]:
            s.taxon_ids = TaxonIds(wikidata_id=qid, ebird=ids["ebird"], gbif=ids["gbif"], checked_at=now)
    use.taxon_ids_fetched += len(found)
