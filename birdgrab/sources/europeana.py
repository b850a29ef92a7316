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
from birdgrab.http_client import gather_failfast
from birdgrab.licences import licence_name
from birdgrab.models import Recording, SkippedItem
from birdgrab.names import NameError_, parse_title
from birdgrab.settings import ServicePolicy, Settings
from birdgrab.sources import CatalogBatch, absolute_url, clean_text, count_field, counted, recording_key
from birdgrab.sources.archive import Archive, ArchiveClient, ListingRequest, QueryOption, RequestTally

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
    name = parse_title(title)
    types, sex, stage = parse_description(_first(item.get("dcDescription")))
    licence_url = absolute_url(_first(item.get("rights")), "http")
    audio_url = absolute_url(_first(item.get("edmIsShownBy")), "http")
    year = _first(item.get("year"))
    creator = _first(item.get("dcCreator"))
    return Recording(
        key=recording_key(SOURCE, item_id),
        source=SOURCE,
        source_id=item_id,
        scientific_name=name.binomial,
        original_name=title[:300],
        subspecies=name.subspecies,
        recordist=None if is_agent_reference(creator) else creator,
        recordist_id=creator if is_agent_reference(creator) else None,
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


def is_agent_reference(creator: str | None) -> bool:
    """Whether dcCreator names an agent only by reference: a URI (Europeana's or the GND's) or a #tag."""
    return creator is not None and (
        creator.startswith("#") or re.match(r"(?i)https?://", creator) is not None
    )


def _record_object(body: Any) -> dict[str, Any]:
    return body["object"] if isinstance(body, dict) and isinstance(body.get("object"), dict) else {}


def _label(pref_label: object) -> str | None:
    """A name from a language map ({"en": ["..."], "def": [...]}): English first, then any."""
    if not isinstance(pref_label, dict):
        return _first(pref_label)
    for lang in ("en", "def", *sorted(k for k in pref_label if isinstance(k, str))):
        if (name := _first(pref_label.get(lang))) and not is_agent_reference(name):
            return name[:200]
    return None


def agents_from_record(body: Any) -> dict[str, str]:
    """Agent reference -> name, from a Record API answer's object.agents[] (about, prefLabel)."""
    names = {}
    for agent in _record_object(body).get("agents") or []:
        about = clean_text(agent.get("about")) if isinstance(agent, dict) else None
        if about and (name := _label(agent.get("prefLabel"))):
            names[about] = name
    return names


def web_resources_from_record(body: Any) -> list[str]:
    """Every media URL a Record API answer offers, in its order: each aggregation's edmIsShownBy,
    its webResources[].about and hasView[]; never the generated thumbnails."""
    urls: list[str] = []
    for aggregation in _record_object(body).get("aggregations") or []:
        if not isinstance(aggregation, dict):
            continue
        resources = (
            aggregation.get("webResources") if isinstance(aggregation.get("webResources"), list) else []
        )
        candidates = [
            aggregation.get("edmIsShownBy"),
            *(r.get("about") for r in resources if isinstance(r, dict)),
        ]
        views = aggregation.get("hasView")
        candidates += views if isinstance(views, list) else [views]
        for candidate in candidates:
            url = absolute_url(_first(candidate), "http")
            if url and "/thumbnail/" not in url and url not in urls:
                urls.append(url)
    return urls


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


class Europeana(ArchiveClient):
    """Client for the Europeana Search and Record APIs."""

    def __init__(self, settings: Settings):
        super().__init__(
            EuropeanaArchive(), settings, describe_error=describe_error, check_payload=check_payload
        )

    def _record_url(self, item_id: str) -> str:
        """`.../record/v2/search.json` -> `.../record/v2/{dataset}/{localid}.json`."""
        base = self._api.rsplit("/", 1)[0]
        return f"{base}{quote(item_id, safe='/')}.json"

    async def search(
        self, query: str, *, seen_at: datetime, reusability: str = "open", batch: CatalogBatch | None = None
    ) -> CatalogBatch:
        """Every Sound item matching `query`, by cursor paging (`*`, then each `nextCursor`)."""
        batch = batch if batch is not None else CatalogBatch()
        batch.free_text_names = True  # titles are free text: "Vogelstimmen am Müggelsee" parses too
        cursor: str | None = "*"
        pages = 0
        expected: int | None = None
        arrived_before, before = batch.arrived, batch.tally()
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
            if expected is None:
                expected = count_field(body.get("totalResults"))
            items = body.get("items") or []
            if not items:
                break
            parsed = [
                r.model_copy(update={"found_by": query})
                for item in items
                if (r := self._parse(batch, item, seen_at)) is not None
            ]
            for recording in await self._complete(parsed, batch.agent_names):
                batch.add(recording)
            cursor = clean_text(body.get("nextCursor"))
        batch.check_complete(SOURCE, query, expected, batch.arrived - arrived_before)
        # Items whose title reads as a binomial are counted as recordings here; those whose genus is no
        # taxon leave when the genera are checked (the catalog's summary counts them as "not a taxon").
        log.info(
            "Europeana: %s for %r (%s, %s): %s",
            counted(batch.arrived - arrived_before, "item"),
            query,
            counted(pages, "page"),
            f"{expected} counted by Europeana" if expected is not None else "no count given",
            batch.listed_since(before, "recording"),
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
                    kind=exc.kind,
                )
            )
            return None
        except ValueError as exc:
            batch.skip(SkippedItem(key=recording_key(SOURCE, "?"), name=title, reason=str(exc), kind="no id"))
            return None
        return None if recording.key in batch else recording

    async def _record(self, item_id: str) -> Any:
        return await self.client.get_json(self._record_url(item_id), {"wskey": self._key})

    async def other_media(self, recording: Recording) -> list[str]:
        """The record's web resources other than the recording's media link (for when it rots)."""
        body = await self._record(recording.source_id)
        return [url for url in web_resources_from_record(body) if url != recording.audio_url]

    async def _complete(self, parsed: list[Recording], agent_names: dict[str, str]) -> list[Recording]:
        """Ask the Record API, concurrently within the service limits, about items without
        edmIsShownBy and about one item of each agent not yet named: `agent_names` (agent reference
        -> name) is the cache, so an agent costs one request, the first time it is met. A recordist
        the record does not name is credited as the data provider: a bare URI is never a name."""
        asked: dict[str, str] = {}  # item id -> why: media, or an agent to name
        for recording in parsed:
            agent = recording.recordist_id
            if recording.audio_url is None:
                asked[recording.source_id] = "media"
            elif agent and agent not in agent_names and agent not in asked.values():
                asked.setdefault(recording.source_id, agent)
        ids = sorted(asked)
        bodies = dict(zip(ids, await gather_failfast(self._record(i) for i in ids), strict=True))
        for body in bodies.values():
            agent_names.update(agents_from_record(body))
        for recording in parsed:  # agents no record names: the provider is credited, once per agent
            if recording.recordist_id and recording.recordist_id not in agent_names:
                agent_names[recording.recordist_id] = recording.data_provider or ""
        return [self._completed(r, bodies.get(r.source_id), agent_names) for r in parsed]

    @staticmethod
    def _completed(recording: Recording, record: Any, agent_names: dict[str, str]) -> Recording:
        update: dict[str, Any] = {}
        if recording.recordist_id:
            update["recordist"] = agent_names[recording.recordist_id] or None
        media = web_resources_from_record(record) if recording.audio_url is None and record else []
        if media:
            update.update(audio_url=media[0], downloadable=True, not_downloadable_reason=None)
        return recording.model_copy(update=update) if update else recording


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

    async def other_media(self, settings: Settings, recording: Recording, tally: RequestTally) -> list[str]:
        """The Record API's other web resources of the item (webResources, hasView): a rotten
        edmIsShownBy is often served on under another address."""
        async with Europeana(settings) as europeana:
            try:
                return await europeana.other_media(recording)
            finally:
                tally.add(europeana.client.requests_made)

    async def catalog(
        self, settings: Settings, request: ListingRequest, tally: RequestTally, batch: CatalogBatch
    ) -> CatalogBatch:
        batch.agent_names.update(request.agent_names)
        europeana = Europeana(settings)
        return await europeana.list_each(
            self.queries(request),
            batch,
            tally,
            lambda query, batch: europeana.search(query, seen_at=request.seen_at, batch=batch),
        )
