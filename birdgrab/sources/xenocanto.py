"""xeno-canto API v3: tag queries, concurrent paging within the rate limit, every payload quirk.

Quirks handled (docs/archives.md): counts as strings, ""/null coordinates, alt "?",
length as m:ss or h:mm:ss, dates with "00" parts, comma-separated types, protocol-relative URLs,
missing `file` for restricted species, an overcounted last page, two error shapes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from birdgrab.errors import ServiceError, ServiceUnreachable
from birdgrab.http_client import gather_failfast
from birdgrab.licences import licence_name
from birdgrab.models import QUALITIES, Recording, SkippedItem
from birdgrab.names import NameError_, parse_scientific_name
from birdgrab.settings import ServicePolicy, Settings
from birdgrab.sources import (
    CatalogBatch,
    absolute_url,
    clean_text,
    count_field,
    counted,
    recording_key,
    to_float,
)
from birdgrab.sources.archive import (
    Archive,
    ArchiveClient,
    BirdAnswer,
    ListingRequest,
    QueryOption,
    RequestTally,
)

log = logging.getLogger(__name__)

SOURCE = "xeno-canto"
DEFAULT_QUERY = "grp:birds cnt:germany"
KEY_HELP = (
    "set BIRDGRAB_XC_KEY to your xeno-canto API key "
    "(log in at https://xeno-canto.org, then copy the key from https://xeno-canto.org/account)"
)
PER_PAGE = 500
_WORD = re.compile(r"[A-Za-z][A-Za-z-]*")
_ID = re.compile(r"\d{1,12}")
_LENGTH = re.compile(r"\d+(:\d{1,2}){1,2}(\.\d+)?")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_SUBSPECIES = re.compile(r"[A-Za-z-]+")
RESTRICTED_REASON = "restricted species: xeno-canto does not publish its audio"


def parse_length(value: object) -> float | None:
    """'4:13' -> 253.0, '1:02:08' -> 3728.0; anything else -> None."""
    text = clean_text(value)
    if text is None or not _LENGTH.fullmatch(text):
        return None
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def parse_partial_date(value: object) -> str | None:
    """'2021-12-00' -> '2021-12', '2015-00-00' -> '2015', '0000-00-00' and junk -> None."""
    text = clean_text(value)
    return _partial_date(text) if text else None


@functools.lru_cache(maxsize=8192)  # a listing repeats its recording and upload dates many times
def _partial_date(text: str) -> str | None:
    match = _DATE.fullmatch(text)
    if not match:
        return None
    year, month, day = match.groups()
    if year == "0000":
        return None
    if month == "00" or not 1 <= int(month) <= 12:
        return year
    if day == "00":
        return f"{year}-{month}"
    try:
        return date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return f"{year}-{month}"


def parse_date(value: object) -> date | None:
    text = parse_partial_date(value)
    return date.fromisoformat(text) if text and len(text) == 10 else None


def parse_types(value: object) -> list[str]:
    """'call, song' -> ['call', 'song'] (lower case, deduplicated, order kept)."""
    text = clean_text(value)
    if text is None:
        return []
    types: list[str] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part and part != "?" and part not in types:
            types.append(part)
    return types


def _string_list(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [text for item in value if (text := clean_text(item))]


def _is_word(value: object) -> bool:
    return isinstance(value, str) and _WORD.fullmatch(value.strip()) is not None


def parse_recording(
    raw: dict[str, Any], *, seen_at: datetime, scheme: str = "https", found_by: str | None = None
) -> Recording:
    """Turn one v3 recording object into a `Recording`.

    Raises `NameError_` when gen/sp do not form a species name, ValueError when there is no id.
    """
    source_id = clean_text(raw.get("id"))
    if source_id is None or not _ID.fullmatch(source_id):
        raise ValueError(f"recording without a valid id: {str(raw.get('id'))[:40]!r}")
    genus, epithet = raw.get("gen"), raw.get("sp")
    name, unparsed = None, None
    if isinstance(genus, str) and isinstance(epithet, str):
        # Placeholders ("Mystery mystery"), "sp.", "cf.", "aff." and hybrids, with their own reasons.
        try:
            name = parse_scientific_name(f"{genus} {epithet}")
        except NameError_ as exc:
            if exc.kind != "not a binomial":
                raise
            unparsed = exc
    # Each is one word: "nul\x00byte" must not become the species "Turdus nul".
    if not (_is_word(genus) and _is_word(epithet)):
        raise NameError_(f"not a Latin binomial: {str(genus)[:40]!r} {str(epithet)[:40]!r}")
    if name is None:
        raise unparsed  # type: ignore[misc]  # two words, yet no binomial (e.g. a one-letter epithet)
    genus, epithet = genus.strip(), epithet.strip()
    subspecies = clean_text(raw.get("ssp"))
    original = " ".join(p for p in (genus, epithet, subspecies or "") if p)
    quality = clean_text(raw.get("q"))
    licence_url = absolute_url(raw.get("lic"), scheme)
    audio_url = absolute_url(raw.get("file"), scheme)
    sample_rate = to_float(raw.get("smp"))
    return Recording(
        key=recording_key(SOURCE, source_id),
        source=SOURCE,
        source_id=source_id,
        scientific_name=name.binomial,
        original_name=original,
        subspecies=subspecies.lower() if subspecies and _SUBSPECIES.fullmatch(subspecies) else None,
        group=(clean_text(raw.get("grp")) or "").lower() or None,
        english_name=clean_text(raw.get("en")),
        recordist=clean_text(raw.get("rec")),
        country=clean_text(raw.get("cnt")),
        locality=clean_text(raw.get("loc")),
        latitude=to_float(raw.get("lat")),
        longitude=to_float(raw.get("lon")),
        altitude_m=to_float(raw.get("alt")),
        types=parse_types(raw.get("type")),
        sex=clean_text(raw.get("sex")),
        stage=clean_text(raw.get("stage")),
        method=clean_text(raw.get("method")),
        quality=quality.upper() if quality and quality.upper() in QUALITIES else None,
        length_s=parse_length(raw.get("length")),
        recorded_date=parse_partial_date(raw.get("date")),
        recorded_time=clean_text(raw.get("time")),
        uploaded=parse_date(raw.get("uploaded")),
        background_species=_string_list(raw.get("also")),
        licence_url=licence_url,
        licence=licence_name(licence_url),
        page_url=absolute_url(raw.get("url"), scheme),
        audio_url=audio_url,
        file_name=clean_text(raw.get("file-name")),
        declared_sample_rate=int(sample_rate) if sample_rate and 0 < sample_rate < 10_000_000 else None,
        remarks=clean_text(raw.get("rmk")),
        downloadable=audio_url is not None,
        not_downloadable_reason=None if audio_url else RESTRICTED_REASON,
        first_seen=seen_at,
        last_seen=seen_at,
        found_by=found_by,
    )


def page_count(first_page: dict[str, Any]) -> int:
    """Pages to ask for, counted in the page size the server serves (it need not be the one asked
    for): numPages, unless numRecordings shows it overcounts (a last page that is empty)."""
    pages = count_field(first_page.get("numPages")) or 1
    records = first_page.get("recordings")
    served = len(records) if isinstance(records, list) else 0
    total = count_field(first_page.get("numRecordings"))
    if served and total is not None:
        return max(1, min(pages, -(-total // served)))
    return pages


@dataclass
class ParsedPage:
    size: int  # records on the page, parsed or not: 0 is the end of the listing
    recordings: list[Recording] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)


def error_message(body: Any) -> str | None:
    """The message of either error shape: flat {"error": "...", "message": ...} or nested {"error": {...}}."""
    if not isinstance(body, dict) or "error" not in body:
        return None
    error = body["error"]
    if isinstance(error, dict):
        return clean_text(error.get("message")) or clean_text(error.get("code"))
    return clean_text(body.get("message")) or clean_text(error)


def describe_error(status: int, body: Any) -> str:
    message = error_message(body) or f"HTTP {status}"
    if status in (401, 403):
        return f"xeno-canto rejected the API key ({message}); {KEY_HELP}"
    if status == 400:
        return (
            f"xeno-canto rejected the query: {message}. Queries are tags only, "
            "e.g. --xc-query 'grp:birds cnt:germany' or 'sp:\"turdus philomelos\"'"
        )
    if status == 404:
        return "API endpoint not found: check BIRDGRAB_XC_API (v2 was switched off; use /api/3/recordings)"
    return message


def check_payload(body: Any, headers: object) -> None:
    if not isinstance(body, dict) or "recordings" not in body:
        raise ServiceError("xeno-canto", f"unexpected answer: {error_message(body) or 'no recordings field'}")


def species_query(binomial: str) -> str:
    """`Turdus philomelos` -> `sp:"turdus philomelos"` (the tag form xeno-canto expects)."""
    return f'sp:"{binomial.lower()}"'


class XenoCanto(ArchiveClient):
    """Client for the xeno-canto v3 recordings endpoint."""

    def __init__(self, settings: Settings):
        super().__init__(
            XenoCantoArchive(), settings, describe_error=describe_error, check_payload=check_payload
        )
        self._scheme = urlsplit(self._api).scheme or "https"

    async def _page(self, query: str, page: int, per_page: int = PER_PAGE) -> dict[str, Any]:
        params = {"query": query, "page": page, "per_page": per_page, "key": self._key}
        return await self.client.get_json(self._api, params)

    def _parse_page(self, page: dict[str, Any], seen_at: datetime, found_by: str) -> ParsedPage:
        records = page.get("recordings")
        parsed = ParsedPage(size=len(records) if isinstance(records, list) else 0)
        for raw in records if isinstance(records, list) else []:
            if not isinstance(raw, dict):
                continue
            try:
                parsed.recordings.append(
                    parse_recording(raw, seen_at=seen_at, scheme=self._scheme, found_by=found_by)
                )
            except NameError_ as exc:
                rid = clean_text(raw.get("id")) or "?"
                name = f"{raw.get('gen')} {raw.get('sp')}"[:200]
                parsed.skipped.append(
                    SkippedItem(key=recording_key(SOURCE, rid), name=name, reason=exc.reason, kind=exc.kind)
                )
            except ValueError as exc:
                parsed.skipped.append(
                    SkippedItem(
                        key=recording_key(SOURCE, "?"),
                        name=str(raw.get("gen"))[:200],
                        reason=str(exc),
                        kind="no id",
                    )
                )
        return parsed

    def _collect(self, page: ParsedPage, batch: CatalogBatch) -> None:
        for recording in page.recordings:
            batch.add(recording)
        for item in page.skipped:
            batch.skip(item)

    async def search(
        self, query: str, *, seen_at: datetime, since: date | None = None, batch: CatalogBatch | None = None
    ) -> CatalogBatch:
        """All recordings matching a tag query (uploaded since `since`, if given). Pages after the
        first are fetched concurrently (the service's rate limiter spaces them out) and each goes
        into `batch` as soon as it is parsed, so a listing of any size is never held whole."""
        batch = batch if batch is not None else CatalogBatch()
        full_query = f"{query} since:{since.isoformat()}" if since else query
        first = await self._page(full_query, 1)
        parsed = self._parse_page(first, seen_at, query)
        arrived_before, before = batch.arrived, batch.tally()
        self._collect(parsed, batch)
        pages = page_count(first) if parsed.size else 1

        async def fetch(number: int) -> None:
            # numPages may overcount: a page past the end is empty and adds nothing
            self._collect(self._parse_page(await self._page(full_query, number), seen_at, query), batch)

        await gather_failfast(fetch(n) for n in range(2, pages + 1))
        batch.check_complete(
            SOURCE, query, count_field(first.get("numRecordings")), batch.arrived - arrived_before
        )
        log.info(
            "xeno-canto: %s for %s (%s)",
            batch.listed_since(before),
            full_query,
            counted(pages, "page"),
            extra={"event": "catalog.xc.query", "query": full_query, "pages": pages},
        )
        return batch

    async def has_birds(self, binomial: str) -> bool:
        """Whether xeno-canto files `binomial` under grp:birds (one small request)."""
        page = await self._page(f"{species_query(binomial)} grp:birds", 1, per_page=50)
        total = count_field(page.get("numRecordings"))
        return total > 0 if total is not None else bool(page.get("recordings"))


class XenoCantoArchive(Archive):
    """xeno-canto in the archive registry: tag queries (one per species with a species file),
    uploads `since` a date for incremental runs, and the say on whether a species is a bird."""

    name = SOURCE
    key_prefix = "xc"
    title = "xeno-canto"
    home_url = "https://xeno-canto.org"
    api_variable = "BIRDGRAB_XC_API"
    default_api = "https://xeno-canto.org/api/3/recordings"
    key_variable = "BIRDGRAB_XC_KEY"
    key_help = KEY_HELP
    tuning_prefix = "XC"
    policy = ServicePolicy("xeno-canto", 4, 1.0)  # xeno-canto asks for about 1 API request/s
    names_classes = True  # its taxonomy is kept current (CONTRACT.md)
    preference = 0  # its copy of a recording keeps the richest metadata (quality, types, background)
    checks_birds = True
    query_option = QueryOption(
        "--xc-query",
        "xc_query",
        f"xeno-canto tag query (default '{DEFAULT_QUERY}'; with --species-file, extra tags per species).",
    )

    def queries(self, request: ListingRequest) -> list[str]:
        if request.species:
            extra = f" {request.query}" if request.query else ""
            return [f"{species_query(name)}{extra}" for name in request.species]
        return [request.query or DEFAULT_QUERY]

    async def catalog(
        self, settings: Settings, request: ListingRequest, tally: RequestTally, batch: CatalogBatch
    ) -> CatalogBatch:
        xc = XenoCanto(settings)
        return await xc.list_each(
            self.queries(request),
            batch,
            tally,
            lambda query, batch: xc.search(query, seen_at=request.seen_at, since=request.since, batch=batch),
        )

    async def check_birds(
        self, settings: Settings, names: list[str], tally: RequestTally
    ) -> dict[str, BirdAnswer]:
        """Asks once per species whether xeno-canto files it under grp:birds."""
        answers: dict[str, BirdAnswer] = {}
        async with XenoCanto(settings) as xc:

            async def check(name: str) -> None:
                try:
                    answers[name] = BirdAnswer(
                        await xc.has_birds(name), f"xeno-canto query {species_query(name)} grp:birds"
                    )
                except (ServiceUnreachable, ServiceError) as exc:
                    answers[name] = BirdAnswer(
                        None, f"open: xeno-canto could not be asked ({exc})", f"bird check for {name}: {exc}"
                    )

            try:
                await asyncio.gather(*(check(name) for name in names))
            finally:
                tally.add(xc.client.requests_made)
        return answers
