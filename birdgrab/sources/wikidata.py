"""Wikidata: the taxonomy ids people map classes to, and whether a genus is a real taxon.

Both questions are `action=wbgetentities`, 50 entities a request (the API's limit), batches
concurrent within Wikimedia's limit of 3, `maxlag=5` as Wikimedia asks of batch jobs:

- the eBird taxon id (P3444) and the GBIF taxon id (P846) of the items (QIDs) Wikipedia already
  named for the catalog's species;
- whether a genus is a taxon, looked up by its Wikispecies page (`sites=specieswiki&titles=...`):
  Wikispecies titles are taxon names, so the item linked to the page "Strix" is the genus Strix.
  An item that is an instance of taxon (P31 = Q16521) or carries a taxon name (P225) is a taxon.

Answers are mapped by id and by sitelink title, never by position. Errors come with HTTP 200 as
from every MediaWiki API (maxlag is retried, never taken for "missing").
"""

from __future__ import annotations

import logging
import re
from typing import Any

from birdgrab.http_client import ServiceClient, gather_failfast
from birdgrab.settings import Settings
from birdgrab.sources import clean_text
from birdgrab.sources.wikipedia import mediawiki_errors

log = logging.getLogger(__name__)

IDS_PER_REQUEST = 50
EBIRD_TAXON_ID = "P3444"
GBIF_TAXON_ID = "P846"
TAXON_NAME = "P225"
INSTANCE_OF = "P31"
TAXON = "Q16521"
_QID = re.compile(r"Q[1-9]\d{0,11}")


def string_claim(entity: dict[str, Any], prop: str) -> str | None:
    """The first string value of `prop` on an entity (external ids such as P3444 are strings)."""
    claims = entity.get("claims")
    for claim in (claims.get(prop) if isinstance(claims, dict) else None) or []:
        snak = claim.get("mainsnak") if isinstance(claim, dict) else None
        value = snak.get("datavalue", {}).get("value") if isinstance(snak, dict) else None
        if isinstance(value, str) and (text := clean_text(value)):
            return text[:200]
    return None


def _item_claims(entity: dict[str, Any], prop: str) -> set[str]:
    claims = entity.get("claims")
    found = set()
    for claim in (claims.get(prop) if isinstance(claims, dict) else None) or []:
        snak = claim.get("mainsnak") if isinstance(claim, dict) else None
        value = snak.get("datavalue", {}).get("value") if isinstance(snak, dict) else None
        if isinstance(value, dict) and isinstance(value.get("id"), str):
            found.add(value["id"])
    return found


def is_taxon(entity: dict[str, Any]) -> bool:
    return TAXON in _item_claims(entity, INSTANCE_OF) or string_claim(entity, TAXON_NAME) is not None


def _entities(body: Any) -> list[dict[str, Any]]:
    entities = body.get("entities") if isinstance(body, dict) else None
    return [e for e in (entities.values() if isinstance(entities, dict) else []) if isinstance(e, dict)]


def _present(entity: dict[str, Any]) -> bool:
    return "missing" not in entity and "invalid" not in entity


class Wikidata:
    """Batch lookups on Wikidata's `wbgetentities`."""

    def __init__(self, settings: Settings):
        self._endpoint = settings.wikidata_api
        self.client = ServiceClient(settings.wikidata, settings, check_payload=mediawiki_errors("Wikidata"))

    async def __aenter__(self) -> Wikidata:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()

    async def _get(self, params: dict[str, str]) -> Any:
        base = {"action": "wbgetentities", "format": "json", "maxlag": "5"}
        return await self.client.get_json(self._endpoint, {**base, **params})

    async def _batched(self, values: list[str], ask) -> list[Any]:
        batches = [values[i : i + IDS_PER_REQUEST] for i in range(0, len(values), IDS_PER_REQUEST)]
        return await gather_failfast(ask(batch) for batch in batches)

    async def taxon_ids(self, qids: list[str]) -> dict[str, dict[str, str | None]]:
        """QID -> {"ebird": P3444 or None, "gbif": P846 or None}, for every valid QID asked about
        (an item Wikidata does not have gets Nones). Malformed ids are left out."""
        wanted = sorted({q for q in qids if _QID.fullmatch(q)})
        answers = await self._batched(
            wanted, lambda batch: self._get({"ids": "|".join(batch), "props": "claims"})
        )
        found = {
            entity["id"]: entity
            for body in answers
            for entity in _entities(body)
            if _present(entity) and isinstance(entity.get("id"), str)
        }
        result = {}
        for qid in wanted:
            entity = found.get(qid, {})
            result[qid] = {
                "ebird": string_claim(entity, EBIRD_TAXON_ID),
                "gbif": string_claim(entity, GBIF_TAXON_ID),
            }
        log.info(
            "Wikidata: taxonomy ids of %d items in %d requests",
            len(wanted),
            -(-len(wanted) // IDS_PER_REQUEST),
            extra={"event": "catalog.wikidata.ids", "items": len(wanted)},
        )
        return result

    async def genera(self, names: list[str]) -> dict[str, str | None]:
        """Genus name -> the QID of the taxon Wikispecies files under that name, or None when there
        is no such taxon."""
        wanted = sorted(set(names))
        answers = await self._batched(
            wanted,
            lambda batch: self._get(
                {
                    "sites": "specieswiki",
                    "titles": "|".join(batch),
                    "props": "claims|sitelinks",
                    "sitefilter": "specieswiki",
                }
            ),
        )
        taxa: dict[str, str] = {}
        for body in answers:
            for entity in _entities(body):
                links = entity.get("sitelinks")
                link = links.get("specieswiki") if isinstance(links, dict) else None
                title = link.get("title") if isinstance(link, dict) else None
                if _present(entity) and isinstance(title, str) and is_taxon(entity):
                    taxa[title] = str(entity.get("id"))
        log.info(
            "Wikidata: %d of %d genera are taxa",
            sum(name in taxa for name in wanted),
            len(wanted),
            extra={"event": "catalog.wikidata.genera", "genera": len(wanted)},
        )
        return {name: taxa.get(name) for name in wanted}
