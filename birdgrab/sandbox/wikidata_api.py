"""Wikidata's `wbgetentities` as the sandbox serves it: items of the archive's species and genera.

Every species with a Wikipedia article has an item (the id its articles name): a taxon (P31 Q16521)
with its taxon name (P225), a GBIF taxon id (P846) and, for birds, an eBird taxon id (P3444) made
the way eBird makes them ("Song Thrush" -> "sonthr1"). Every genus of a species or synonym has an
item linked to its Wikispecies page, so `sites=specieswiki&titles=Strix` finds it and
`titles=Vogelstimmen` does not. At most 50 ids or titles a request, as on the real API; errors come
with HTTP 200.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from birdgrab.sandbox.contents import stable_number, wikidata_id
from birdgrab.sandbox.holdings import Archive, Species

MAX_VALUES = 50
TAXON = "Q16521"
GENUS_RANK = "Q34740"
SPECIES_RANK = "Q7432"


def _string(prop: str, value: str) -> list[dict[str, Any]]:
    return [
        {
            "mainsnak": {
                "snaktype": "value",
                "property": prop,
                "datavalue": {"value": value, "type": "string"},
                "datatype": "external-id" if prop in ("P846", "P3444") else "string",
            },
            "type": "statement",
            "rank": "normal",
        }
    ]


def _item(prop: str, qid: str) -> list[dict[str, Any]]:
    value = {"entity-type": "item", "numeric-id": int(qid[1:]), "id": qid}
    return [
        {
            "mainsnak": {
                "snaktype": "value",
                "property": prop,
                "datavalue": {"value": value, "type": "wikibase-entityid"},
                "datatype": "wikibase-item",
            },
            "type": "statement",
            "rank": "normal",
        }
    ]


def ebird_code(english: str) -> str:
    """eBird's six-letter codes from the English name: 'Song Thrush' -> 'sonthr1'."""
    words = re.findall(r"[a-z]+", english.lower()) or ["bird"]
    return f"{words[0][:3]}{words[-1][:3]}1" if len(words) > 1 else f"{words[0][:6]}1"


def _species_entity(species: Species) -> dict[str, Any]:
    qid = wikidata_id(species.name)
    claims = {
        "P31": _item("P31", TAXON),
        "P105": _item("P105", SPECIES_RANK),
        "P225": _string("P225", species.name),
        "P846": _string("P846", str(stable_number(f"gbif:{species.name}", 2_000_000, 9_999_999))),
    }
    if species.is_bird:
        claims["P3444"] = _string("P3444", ebird_code(species.english))
    return {"type": "item", "id": qid, "labels": {}, "claims": claims}


def _genus_entity(genus: str) -> dict[str, Any]:
    return {
        "type": "item",
        "id": wikidata_id(f"genus {genus}"),
        "claims": {
            "P31": _item("P31", TAXON),
            "P105": _item("P105", GENUS_RANK),
            "P225": _string("P225", genus),
        },
        "sitelinks": {"specieswiki": {"site": "specieswiki", "title": genus, "badges": []}},
    }


class WikidataIndex:
    """The archive's items by id and genera by Wikispecies title, rebuilt when the archive grows."""

    def __init__(self) -> None:
        self._species: Mapping[str, Species] | None = None
        self._by_id: dict[str, dict[str, Any]] = {}
        self._genera: dict[str, dict[str, Any]] = {}

    def _refresh(self, archive: Archive) -> None:
        if self._species is archive.species:  # the archive swaps in a new dict on every change
            return
        species = archive.species
        with_article = {s.name for s in species.values() if s.german or s.english_article}
        self._by_id = {
            wikidata_id(s.name): _species_entity(s) for s in species.values() if s.name in with_article
        }
        names = [n for s in species.values() for n in (s.name, *s.synonyms)]
        self._genera = {genus: _genus_entity(genus) for genus in {n.split(" ", 1)[0] for n in names}}
        self._by_id.update({entity["id"]: entity for entity in self._genera.values()})
        self._species = species

    def answer(self, archive: Archive, params: Mapping[str, str]) -> dict[str, Any]:
        """The body of one `action=wbgetentities` request (always HTTP 200, as the real API)."""
        if params.get("action") != "wbgetentities":
            return _error("badvalue", f'Unrecognized value for parameter "action": {params.get("action")}.')
        self._refresh(archive)
        ids = [v for v in params.get("ids", "").split("|") if v]
        titles = [v for v in params.get("titles", "").split("|") if v]
        if not ids and not titles:
            return _error("param-missing", "Either provide the item ids or a site-title pair.")
        for name, values in (("ids", ids), ("titles", titles)):
            if len(values) > MAX_VALUES:
                return _error(
                    "toomanyvalues",
                    f'Too many values supplied for parameter "{name}". The limit is {MAX_VALUES}.',
                )
        entities: dict[str, Any] = {}
        for qid in ids:
            if not re.fullmatch(r"Q[1-9]\d*", qid):
                return _error("no-such-entity", f"Invalid id: {qid}")
            entities[qid] = self._by_id.get(qid) or {"id": qid, "missing": ""}
        if titles:
            if params.get("sites") != "specieswiki":
                return _error(
                    "param-missing", "The sandbox knows Wikispecies titles only (sites=specieswiki)."
                )
            for number, title in enumerate(titles, 1):
                entity = self._genera.get(title)
                if entity is None:
                    entities[f"-{number}"] = {"site": "specieswiki", "title": title, "missing": ""}
                else:
                    entities[entity["id"]] = entity
        return {"entities": entities, "success": 1}


def _error(code: str, info: str) -> dict[str, Any]:
    return {
        "error": {"code": code, "info": info, "*": "See api.php for API usage."},
        "servedby": "mw-sandbox",
    }
