"""Europeana Search API: cursor paging over Sound items (e.g. the Tierstimmenarchiv).

Titles become canonical binomials (author and year stripped, trinomials reduced to species);
items that name no species are skipped with the reason. Media comes from `edmIsShownBy`, with
the Record API as a fallback, never from `edmPreview`. The `link` and `guid` fields carry the
API key and are never stored.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from birdgrab.errors import ServiceError
from birdgrab.http_client import ServiceClient, gather_failfast
from birdgrab.licences import licence_name
from birdgrab.models import Recording, SkippedItem
from birdgrab.names import NameError_, parse_scientific_name
from birdgrab.settings import ServicePolicy, Settings
from birdgrab.sources import CatalogBatch, absolute_url, clean_text, recording_key
from birdgrab.sources.archive import Archive, ListingRequest, QueryOption, RequestTally

log = logging.getLogger(__name__)

SOURCE = "europeana"
KEY_HELP = (
    "set BIRDGRAB_EUROPEANA_KEY to your Europeana API key (free, from https://pro.europeana.eu/pages/get-api)"
)
ROWS = 100
# Europeana's public page of an item, for attribution when the item names no landing page.
ITEM_PAGE = "https://www.europeana.eu/item"
NO_MEDIA_REASON = "Europeana lists no media file for this item"
_STAGES = {"adult", "juvenile", "immature", "nestling", "subadult", "pullus"}
_SEXES = {"male", "female"}
_ID = re.compile(r"^/[A-Za-z0-9_.-]+/[A-Za-z0-9_.%-]+$")


def _first(value: object) -> str | None:
    """Europeana fields are mostly arrays of strings; take the first usable one."""
    if isinstance(value, list):
        for item in value:
            if text := clean_text(item):
                return text
        return None
    return clean_text(value)


def parse_description(text: str | None) -> tuple[list[str], str | None, str | None]:
    """'adult; song; male' -> (['song'], 'male', 'adult')."""
    types: list[str] = []
    sex = stage = None
    for part in re.split(r"[;,]", text or ""):
        word = part.strip().lower()
        if not word:
            continue
        if word in _SEXES:
            sex = word
        elif word in _STAGES:
            stage = word
        elif word not in types:
            types.append(word)
    return types, sex, stage


def _without_query(url: str | None) -> str | None:
    """Drop query and fragment (Europeana's guid carries tracking parameters that name the key)."""
    if not url:
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def parse_item(item: dict[str, Any], *, seen_at: datetime) -> Recording:
    """Turn one search item into a `Recording`. Raises `NameError_` for titles that name no species,
    ValueError for items without a usable id."""
    item_id = clean_text(item.get("id"))
    if item_id is None or not _ID.match(item_id):
        raise ValueError(f"item without a valid id: {str(item.get('id'))[:60]!r}")
    title = _first(item.get("title")) or ""
    name = parse_scientific_name(title)
    types, sex, stage = parse_description(_first(item.get("dcDescription")))
    licence_url = absolute_url(_first(item.get("rights")), "http")
    audio_url = absolute_url(_first(item.get("edmIsShownBy")), "http")
    year = _first(item.get("year"))
    return Recording(
        key=recording_key(SOURCE, item_id),
        source=SOURCE,
        source_id=item_id,
        scientific_name=name.binomial,
        original_name=title[:300],
        subspecies=name.subspecies,
        recordist=_first(item.get("dcCreator")),
        types=types,
        sex=sex,
        stage=stage,
        recorded_date=year if year and re.fullmatch(r"\d{4}", year) else None,
        licence_url=licence_url,
        licence=licence_name(licence_url),
        page_url=absolute_url(_first(item.get("edmIsShownAt")), "http")
        or _without_query(absolute_url(clean_text(item.get("guid")), "https"))
        or f"{ITEM_PAGE}{item_id}",
        audio_url=audio_url,
        data_provider=_first(item.get("dataProvider")),
        downloadable=audio_url is not None,
        not_downloadable_reason=None if audio_url else NO_MEDIA_REASON,
        first_seen=seen_at,
        last_seen=seen_at,
    )


def media_from_record(body: Any) -> str | None:
    """The media URL of a Record API answer: object.aggregations[].edmIsShownBy."""
    if not isinstance(body, dict) or not isinstance(body.get("object"), dict):
        return None
    for aggregation in body["object"].get("aggregations") or []:
        if isinstance(aggregation, dict) and (
            url := absolute_url(_first(aggregation.get("edmIsShownBy")), "http")
        ):
            return url
    return None


def describe_error(status: int, body: Any) -> str:
    message = None
    if isinstance(body, dict):
        message = clean_text(body.get("message")) or clean_text(body.get("error"))
    message = message or f"HTTP {status}"
    if status in (401, 403):
        return f"Europeana rejected the API key ({message}); {KEY_HELP}"
    if status == 400:
        return f"Europeana rejected the query: {message}"
    if status == 404:
        return "endpoint not found: check BIRDGRAB_EUROPEANA_API"
    return message


def check_payload(body: Any, headers: object) -> None:
    if not isinstance(body, dict) or body.get("success") is False:
        message = body.get("error") if isinstance(body, dict) else "not a JSON object"
        raise ServiceError("Europeana", f"the search failed: {clean_text(message) or 'unknown error'}")


class Europeana:
    """Client for the Europeana Search and Record APIs."""

    def __init__(self, settings: Settings):
        archive = EuropeanaArchive()
        self._key = archive.api_key(settings)
        self._api = archive.access(settings).api
        self.client = ServiceClient(
            archive.policy_in(settings), settings, describe_error=describe_error, check_payload=check_payload
        )

    async def __aenter__(self) -> Europeana:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()

    def _record_url(self, item_id: str) -> str:
        """`.../record/v2/search.json` -> `.../record/v2/{dataset}/{localid}.json`."""
        base = self._api.rsplit("/", 1)[0]
        return f"{base}{quote(item_id, safe='/')}.json"

    async def search(
        self, query: str, *, seen_at: datetime, reusability: str = "open", batch: CatalogBatch | None = None
    ) -> CatalogBatch:
        """Every Sound item matching `query`, by cursor paging (`*`, then each `nextCursor`)."""
        batch = batch if batch is not None else CatalogBatch()
        cursor: str | None = "*"
        pages = 0
        while cursor:
            params: list[tuple[str, str | int]] = [
                ("wskey", self._key),
                ("query", query),
                ("qf", "TYPE:SOUND"),
                ("rows", ROWS),
                ("profile", "standard"),
                ("cursor", cursor),  # httpx percent-encodes it: the cursor is base64 with + / =
            ]
            if reusability:
                params.append(("reusability", reusability))
            body = await self.client.get_json(self._api, params)
            pages += 1
            items = body.get("items") or []
            if not items:
                break
            parsed = [
                r.model_copy(update={"found_by": query})
                for item in items
                if (r := self._parse(batch, item, seen_at)) is not None
            ]
            # Items without edmIsShownBy: ask the Record API, concurrently within the service limits.
            for recording in await gather_failfast(self._with_media(r) for r in parsed):
                batch.add(recording)
            cursor = clean_text(body.get("nextCursor"))
        log.info(
            "Europeana: %d items for %r (%d pages, %d skipped)",
            len(batch.recordings),
            query,
            pages,
            len(batch.skipped),
            extra={"event": "catalog.europeana.query", "query": query, "pages": pages},
        )
        return batch

    def _parse(self, batch: CatalogBatch, item: object, seen_at: datetime) -> Recording | None:
        """A new recording, or None for repeats and skipped items (recorded in `batch`)."""
        if not isinstance(item, dict):
            return None
        title = (_first(item.get("title")) or "")[:200]
        try:
            recording = parse_item(item, seen_at=seen_at)
        except NameError_ as exc:
            batch.skip(
                SkippedItem(
                    key=recording_key(SOURCE, clean_text(item.get("id")) or "?")[:300],
                    name=title,
                    reason=exc.reason,
                )
            )
            return None
        except ValueError as exc:
            batch.skip(SkippedItem(key=recording_key(SOURCE, "?"), name=title, reason=str(exc)))
            return None
        return None if recording.key in batch.recordings else recording

    async def _with_media(self, recording: Recording) -> Recording:
        if recording.audio_url is not None:
            return recording
        body = await self.client.get_json(self._record_url(recording.source_id), {"wskey": self._key})
        url = media_from_record(body)
        if url is None:
            return recording
        return recording.model_copy(
            update={"audio_url": url, "downloadable": True, "not_downloadable_reason": None}
        )


class EuropeanaArchive(Archive):
    """Europeana in the archive registry: one full-text query walked by cursor (never incremental:
    the walk is the listing, and refresh diffs its ids)."""

    name = SOURCE
    key_prefix = "europeana"
    title = "Europeana"
    home_url = "https://www.europeana.eu"
    api_variable = "BIRDGRAB_EUROPEANA_API"
    default_api = "https://api.europeana.eu/record/v2/search.json"
    key_variable = "BIRDGRAB_EUROPEANA_KEY"
    key_help = KEY_HELP
    tuning_prefix = "EUROPEANA"
    policy = ServicePolicy("Europeana", 4, None)
    preference = 10
    query_option = QueryOption(
        "--europeana-query", "europeana_query", "Europeana search text.", "tierstimmenarchiv"
    )

    def complete_listings(self, request: ListingRequest) -> set[str]:
        return set(self.queries(request))  # the cursor walk always lists everything

    async def catalog(self, settings: Settings, request: ListingRequest, tally: RequestTally) -> CatalogBatch:
        async with Europeana(settings) as europeana:
            try:
                batch = CatalogBatch()
                for query in self.queries(request):
                    await europeana.search(query, seen_at=request.seen_at, batch=batch)
                return batch
            finally:
                tally.add(europeana.client.requests_made)
