"""iNaturalist API v1: research-grade bird observations with sounds; every sound is one recording.

The listing pages by id (`order_by=id&order=asc&id_above=<last id>`), never by page number, so it
goes past the 10,000-result window the API puts on `page`. The server caps `per_page` at 200 without
saying so except in the answer's own `per_page`, which is what a short page is measured against.
Quirks handled (docs/archives.md): a sound's licence is its own (`license_code` null means all
rights reserved: catalogued, never downloaded); SoundCloud sounds have no file (skipped with the
reason); subspecies belong to their species, genus-level and hybrid taxa are no species; the
recordist is the user's name, else the login (kept as `recordist_login` either way, which ties the two
together for recordist identity); `geojson` puts longitude first.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from birdgrab.errors import ServiceError, UsageError
from birdgrab.models import Recording, SkippedItem
from birdgrab.names import NameError_, parse_scientific_name
from birdgrab.settings import MediaBudget, ServicePolicy, Settings
from birdgrab.sources import (
    CatalogBatch,
    absolute_url,
    clean_text,
    count_field,
    counted,
    recording_key,
    to_float,
)
from birdgrab.sources.archive import Archive, ArchiveClient, ListingRequest, QueryOption, RequestTally

log = logging.getLogger(__name__)

SOURCE = "inaturalist"
# Research-grade observations of birds (taxon 3, Aves) that have at least one sound.
BASE_QUERY = "taxon_id=3&sounds=true&quality_grade=research"
PER_PAGE = 200  # the most the server serves; larger values are cut to this silently
# Paging is ours: a query that sets these would break the walk by id.
_PAGING = frozenset({"page", "per_page", "order", "order_by", "id_above", "id_below", "only_id"})
_PARAM = re.compile(r"[a-z][a-z0-9_]*")
# Codes have no version: they mean the 4.0 licences.
LICENCES: dict[str, tuple[str, str]] = {
    "cc0": ("CC0 1.0", "https://creativecommons.org/publicdomain/zero/1.0/"),
    **{
        code: (f"CC {code[3:].upper()} 4.0", f"https://creativecommons.org/licenses/{code[3:]}/4.0/")
        for code in ("cc-by", "cc-by-sa", "cc-by-nc", "cc-by-nd", "cc-by-nc-sa", "cc-by-nc-nd")
    },
}
ALL_RIGHTS_RESERVED = (
    "all rights reserved (the sound has no licence on iNaturalist): catalogued, never downloaded"
)
SOUNDCLOUD = "hosted on SoundCloud: iNaturalist has no file of it to download"
# Ranks whose observations belong to a species: the species itself and its subspecies.
_SPECIES_RANKS = frozenset({"species", "subspecies"})
# iNaturalist's iconic taxa, named as archives group recordings ("birds", as xeno-canto's grp).
_GROUPS = {"Aves": "birds", "Amphibia": "frogs", "Insecta": "insects", "Mammalia": "mammals"}


def parse_query(text: str | None) -> list[tuple[str, str]]:
    """The base query plus `--inat-query` parameters ('place_id=7207&d1=2020-01-01', or separated by
    spaces); a parameter given there replaces the base one. Bad text is a UsageError (exit 2)."""
    params = dict(parse_qsl(BASE_QUERY))
    for part in re.split(r"[&\s]+", (text or "").strip()):
        if not part:
            continue
        name, equals, value = part.partition("=")
        if not equals or not _PARAM.fullmatch(name) or not value:
            raise UsageError(
                f"--inat-query: {part!r} is not a NAME=VALUE parameter (e.g. --inat-query 'place_id=7207')"
            )
        if name in _PAGING:
            raise UsageError(f"--inat-query: {name} is set by birdgrab, which pages by id")
        params[name] = value
    return sorted(params.items())


def _taxon_name(taxon: dict[str, Any]) -> tuple[str, str | None]:
    """(species binomial, subspecies epithet) of a taxon; NameError_ when it is no species."""
    rank = clean_text(taxon.get("rank")) or "unknown"
    name = clean_text(taxon.get("name")) or ""
    if rank == "hybrid":
        raise NameError_(f"hybrid taxon, not a species: {name[:80]!r}", "hybrid")
    if rank not in _SPECIES_RANKS:
        raise NameError_(f"{rank}-level taxon, not a species: {name[:80]!r}", "unidentified")
    parsed = parse_scientific_name(name)
    return parsed.binomial, parsed.subspecies if rank == "subspecies" else None


def _coordinates(observation: dict[str, Any]) -> tuple[float | None, float | None]:
    """(latitude, longitude): geojson is [lon, lat]; `location` is 'lat,lon'."""
    geojson = observation.get("geojson")
    if (
        isinstance(geojson, dict)
        and isinstance(coords := geojson.get("coordinates"), list)
        and len(coords) == 2
    ):
        return to_float(coords[1]), to_float(coords[0])
    location = clean_text(observation.get("location"))
    if location and location.count(",") == 1:
        lat, lon = location.split(",")
        return to_float(lat), to_float(lon)
    return None, None


def _date(value: object) -> date | None:
    text = clean_text(value)
    try:
        return date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def parse_observation(
    observation: dict[str, Any], *, seen_at: datetime, found_by: str | None = None
) -> tuple[list[Recording], list[SkippedItem]]:
    """One observation -> a recording per downloadable-or-catalogued sound, and the sounds skipped.

    Raises `NameError_` when the taxon is no species, ValueError when the observation has no id.
    """
    obs_id = observation.get("id")
    if not isinstance(obs_id, int) or isinstance(obs_id, bool) or obs_id <= 0:
        raise ValueError(f"observation without a valid id: {str(obs_id)[:40]!r}")
    taxon = observation.get("taxon") if isinstance(observation.get("taxon"), dict) else {}
    binomial, subspecies = _taxon_name(taxon)
    user = observation.get("user") if isinstance(observation.get("user"), dict) else {}
    recordist = clean_text(user.get("name")) or clean_text(user.get("login"))
    latitude, longitude = _coordinates(observation)
    iconic = clean_text(taxon.get("iconic_taxon_name"))
    common = {
        "scientific_name": binomial,
        "original_name": clean_text(taxon.get("name")) or binomial,
        "subspecies": subspecies,
        "group": _GROUPS.get(iconic, iconic.lower()) if iconic else None,
        "english_name": clean_text(taxon.get("preferred_common_name")),
        "recordist": recordist,
        "recordist_login": clean_text(user.get("login")),
        "locality": clean_text(observation.get("place_guess")),
        "latitude": latitude,
        "longitude": longitude,
        "recorded_date": str(observed) if (observed := _date(observation.get("observed_on"))) else None,
        "uploaded": _date(observation.get("created_at")),
        "page_url": absolute_url(observation.get("uri"), "https")
        or f"https://www.inaturalist.org/observations/{obs_id}",
        "first_seen": seen_at,
        "last_seen": seen_at,
        "found_by": found_by,
    }
    recordings: list[Recording] = []
    skipped: list[SkippedItem] = []
    for sound in observation.get("sounds") or []:
        if not isinstance(sound, dict) or not isinstance(sound.get("id"), int):
            continue
        key = recording_key(SOURCE, str(sound["id"]))
        audio_url = absolute_url(sound.get("file_url"), "https")
        if audio_url is None:
            skipped.append(SkippedItem(key=key, name=binomial, reason=SOUNDCLOUD, kind="no file"))
            continue
        code = clean_text(sound.get("license_code"))
        licence, licence_url = LICENCES.get(code.lower(), (None, None)) if code else (None, None)
        reason = None
        if code is None:
            reason = ALL_RIGHTS_RESERVED
        elif licence is None:
            reason = f"unknown licence code {code[:40]!r}: not downloaded"
        recordings.append(
            Recording(
                key=key,
                source=SOURCE,
                source_id=str(sound["id"]),
                licence=licence,
                licence_url=licence_url,
                attribution=clean_text(sound.get("attribution")),
                audio_url=audio_url,
                downloadable=reason is None,
                not_downloadable_reason=reason,
                **common,
            )
        )
    return recordings, skipped


def describe_error(status: int, body: Any) -> str:
    message = None
    if isinstance(body, dict):
        message = clean_text(body.get("error")) or clean_text(body.get("message"))
    message = message or f"HTTP {status}"
    if status in (400, 422):
        return f"iNaturalist rejected the query: {message}. Check --inat-query (e.g. 'place_id=7207')"
    if status == 403:
        return f"iNaturalist refused the request ({message})"
    if status == 404:
        return "endpoint not found: check BIRDGRAB_INATURALIST_API (…/v1/observations)"
    return message


def check_payload(body: Any, headers: object) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise ServiceError("iNaturalist", "unexpected answer: no results list")


class INaturalist(ArchiveClient):
    """Client for the iNaturalist v1 observations endpoint (no key needed)."""

    def __init__(self, settings: Settings):
        super().__init__(
            INaturalistArchive(), settings, describe_error=describe_error, check_payload=check_payload
        )

    async def search(
        self, query: str, *, seen_at: datetime, since: date | None = None, batch: CatalogBatch | None = None
    ) -> CatalogBatch:
        """Every sound of the observations `query` lists (updated since `since`, if given), paged by id."""
        batch = batch if batch is not None else CatalogBatch()
        params = list(parse_qsl(query))
        if since is not None:
            params.append(("updated_since", since.isoformat()))
        last_id, pages, total = 0, 0, None
        observations: set[int] = set()
        before = batch.tally()
        while True:
            body = await self.client.get_json(
                self._api,
                [
                    *params,
                    ("order_by", "id"),
                    ("order", "asc"),
                    ("per_page", PER_PAGE),
                    ("id_above", last_id),
                ],
            )
            pages += 1
            total = total if total is not None else count_field(body.get("total_results"))
            results = [r for r in body["results"] if isinstance(r, dict)]
            for observation in results:
                self._parse(observation, seen_at, query, batch)
            ids = [r["id"] for r in results if isinstance(r.get("id"), int) and not isinstance(r["id"], bool)]
            observations.update(ids)
            served = body.get("per_page") if isinstance(body.get("per_page"), int) else PER_PAGE
            # A short page is the end; one whose ids do not move on would be asked again for ever.
            if not ids or max(ids) <= last_id or len(body["results"]) < served:
                break
            last_id = max(ids)
        batch.check_complete(SOURCE, query, total, len(observations))
        log.info(
            "iNaturalist: %s of %s for %s (%s)",
            batch.listed_since(before, "sound"),
            counted(len(observations), "observation"),
            query,
            counted(pages, "page"),
            extra={
                "event": "catalog.inaturalist.query",
                "query": query,
                "pages": pages,
                "observations": len(observations),
                "observations_counted": total,
            },
        )
        return batch

    @staticmethod
    def _parse(observation: dict[str, Any], seen_at: datetime, query: str, batch: CatalogBatch) -> None:
        name = clean_text(
            (observation.get("taxon") or {}).get("name")
            if isinstance(observation.get("taxon"), dict)
            else None
        )
        try:
            recordings, skipped = parse_observation(observation, seen_at=seen_at, found_by=query)
        except NameError_ as exc:
            for sound in observation.get("sounds") or []:
                if isinstance(sound, dict) and isinstance(sound.get("id"), int):
                    key = recording_key(SOURCE, str(sound["id"]))
                    batch.skip(SkippedItem(key=key, name=name or "?", reason=exc.reason, kind=exc.kind))
            return
        except ValueError as exc:
            batch.skip(
                SkippedItem(key=recording_key(SOURCE, "?"), name=name or "?", reason=str(exc), kind="no id")
            )
            return
        for recording in recordings:
            batch.add(recording)
        for item in skipped:
            batch.skip(item)


class INaturalistArchive(Archive):
    """iNaturalist in the archive registry: opt-in (`--source inaturalist`), no key, about one
    request a second, a media budget per hour and per day, incremental by `updated_since`."""

    name = SOURCE
    key_prefix = "inaturalist"
    title = "iNaturalist"
    home_url = "https://www.inaturalist.org"
    api_variable = "BIRDGRAB_INATURALIST_API"
    default_api = "https://api.inaturalist.org/v1/observations"
    tuning_prefix = "INATURALIST"
    # iNaturalist asks for about 1 request/s and under 5 GB of media an hour, 24 GB a day.
    policy = ServicePolicy("iNaturalist", 1, 1.0)
    media_budget = MediaBudget(gb_per_hour=5.0, gb_per_day=24.0)
    default_on = False
    preference = 20
    query_option = QueryOption(
        "--inat-query",
        "inat_query",
        f"Extra iNaturalist query parameters on top of '{BASE_QUERY}', e.g. 'place_id=7207'.",
    )

    def queries(self, request: ListingRequest) -> list[str]:
        params = parse_query(request.query)
        if request.species:
            return [urlencode([*params, ("taxon_name", name)]) for name in request.species]
        return [urlencode(params)]

    async def catalog(
        self, settings: Settings, request: ListingRequest, tally: RequestTally, batch: CatalogBatch
    ) -> CatalogBatch:
        inat = INaturalist(settings)
        return await inat.list_each(
            self.queries(request),
            batch,
            tally,
            lambda query, batch: inat.search(
                query, seen_at=request.seen_at, since=request.since, batch=batch
            ),
        )
