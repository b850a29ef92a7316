"""Europeana Search and Record APIs as the sandbox serves them (docs/archives.md).

The cursor is opaque base64 that always contains `+`, `/` and `=`: a client that forgets to
URL-encode it sends a space instead of `+`, and gets the 400 the real service would give.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from birdgrab.sandbox.config import PageSize
from birdgrab.sandbox.holdings import Archive, EuropeanaItem

Answer = tuple[int, dict[str, Any]]
Params = Mapping[str, Sequence[str]]

ROWS_DEFAULT, ROWS_MAX, OFFSET_LIMIT = 12, 100, 1000
REQUEST_NUMBER = 999
REPEATED_ITEMS = 3  # how many items of the previous page a `repeat_page` fault serves again
DATA_PROVIDER = "Museum für Naturkunde Berlin"
PROVIDER = "OpenUp!"
COLLECTION = "11622_Ag_EU_OpenUp!_TSA"
# Leading bytes 0xFB 0xFF encode as "+/" in base64, and 10 bytes end in "==".
_CURSOR_MAGIC = b"\xfb\xff"


def encode_cursor(offset: int) -> str:
    raw = offset.to_bytes(4, "big")
    return base64.b64encode(_CURSOR_MAGIC + raw + hashlib.sha256(b"cursor" + raw).digest()[:4]).decode()


def decode_cursor(cursor: str) -> int:
    """The offset a cursor stands for; ValueError for anything this sandbox did not hand out."""
    try:
        data = base64.b64decode(cursor, validate=True)
    except binascii.Error:
        raise ValueError(cursor) from None
    raw = data[2:6]
    if (
        len(data) != 10
        or data[:2] != _CURSOR_MAGIC
        or data[6:] != hashlib.sha256(b"cursor" + raw).digest()[:4]
    ):
        raise ValueError(cursor)
    return int.from_bytes(raw, "big")


# Agents that records name: dcCreator gives only these references. Other references (a GND URI)
# are named nowhere: clients credit the data provider.
AGENTS = {
    "http://data.europeana.eu/agent/85541": "Tembrock, Günter",
    "#Frommolt_Karl-Heinz": "Frommolt, Karl-Heinz",
}
UNNAMED_AGENT = "https://d-nb.info/gnd/11913506X"


def _last(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _unauthorised(given: str | None) -> Answer:
    """The body of tests/fixtures/api/europeana-error-401.json."""
    return 401, {
        "apikey": given or "",
        "success": False,
        "error": "Unauthorized",
        "message": "Invalid API key provided!",
        "code": "invalid_apikey",
    }


def _bad_request(given: str | None, message: str) -> Answer:
    return 400, {"apikey": given or "", "success": False, "error": message}


def media_url(item: EuropeanaItem, base: str) -> str:
    """Where the item's audio is served."""
    return f"{base}/tierstimmenarchiv/recordings/{quote(item.media_name)}"


def shown_by(item: EuropeanaItem, base: str) -> str:
    """The item's edmIsShownBy: its media, or for a rotten link an old address that answers 403/404."""
    if item.dead_link:
        return f"{base}/tierstimmenarchiv/old/{quote(item.media_name)}"
    return media_url(item, base)


def _web_resources(item: EuropeanaItem, base: str) -> list[dict[str, Any]]:
    """The record's web resources: the media link, the landing page and, where the archive moved a
    rotten file, its new address."""
    resources = [shown_by(item, base), _landing_url(item, base)]
    if item.dead_link and item.media_moved:
        resources.append(media_url(item, base))
    return [{"about": url} for url in resources]


def _landing_url(item: EuropeanaItem, base: str) -> str:
    return (
        f"{base}/tierstimmenarchiv/webinterface/contents/showdetails.php"
        f"?edit=-1&unique_id={quote(item.landing_id)}&autologin=true"
    )


def _matches(item: EuropeanaItem, terms: list[str]) -> bool:
    """Every term must occur in the title, the provider, the collection or the id (case-insensitive)."""
    text = " ".join((item.title, DATA_PROVIDER, COLLECTION, item.id)).lower()
    return all(term in text for term in terms)


def _terms(query: str) -> list[str]:
    """Words and "quoted phrases"; `*`, `*:*` and the operator AND match everything."""
    found = [(quoted or bare).lower() for quoted, bare in re.findall(r'"([^"]*)"|(\S+)', query)]
    return [term for term in found if term not in ("*", "*:*", "and")]


def _refinements_allow_sound(refinements: Sequence[str]) -> bool:
    """Every item is a SOUND from one provider; other refinement fields are ignored."""
    for refinement in refinements:
        field, _, value = refinement.partition(":")
        value = value.strip('"').lower()
        if (field == "TYPE" and value != "sound") or (
            field == "DATA_PROVIDER" and value != DATA_PROVIDER.lower()
        ):
            return False
    return True


def _reusable(item: EuropeanaItem, reusability: Sequence[str]) -> bool:
    """`open`: CC0/PDM/BY/BY-SA; `restricted`: NC and ND licences; no value: everything."""
    wanted = {value.lower() for value in reusability}
    return not wanted or ("open" in wanted and item.open) or ("restricted" in wanted and not item.open)


def item_json(item: EuropeanaItem, key: str, base: str) -> dict[str, Any]:
    """A search item, fields as in tests/fixtures/api/europeana-search-page.json; empty fields are omitted."""
    media = shown_by(item, base)
    fields: dict[str, Any] = {
        "completeness": 6 if item.media_in_search else 5,
        "dataProvider": [DATA_PROVIDER],
        "dcCreator": [item.creator] if item.creator else None,
        "dcDescription": [item.description],
        "edmIsShownAt": [_landing_url(item, base)],
        "edmIsShownBy": [media] if item.media_in_search else None,
        "edmPreview": [f"{base}/europeana/thumbnail/v2/url.json?uri={quote(media, safe='')}&type=SOUND"],
        "europeanaCollectionName": [COLLECTION],
        "guid": f"{base}/europeana/item{quote(item.id)}?utm_source=api&utm_medium=api&utm_campaign={key}",
        "id": item.id,
        "link": f"{base}/europeana/record/v2{quote(item.id)}.json?wskey={key}",
        "provider": [PROVIDER],
        "rights": [item.rights],
        "score": 1.0,
        "title": [item.title],
        "type": "SOUND",
        "year": [item.year] if item.year else None,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _int_param(params: Params, name: str, default: int) -> int:
    raw = _last(params, name)
    return int(raw) if raw else default


def search(
    archive: Archive,
    params: Params,
    *,
    key: str,
    base: str,
    repeat_previous: bool = False,
    page_size: PageSize | None = None,
) -> Answer:
    """GET /record/v2/search.json. `repeat_previous` (a fault) serves a few items of the previous page
    again; `page_size` makes the server decide how many items a page holds."""
    given = _last(params, "wskey")
    if given != key:
        return _unauthorised(given)
    query = _last(params, "query")
    if not query:
        return _bad_request(given, "Required parameter 'query' missing")
    try:
        rows = min(_int_param(params, "rows", ROWS_DEFAULT), ROWS_MAX)
        start = _int_param(params, "start", 1)
    except ValueError:
        return _bad_request(given, "Invalid value for parameter 'rows' or 'start'")
    if rows < 0 or start < 1:
        return _bad_request(given, "Invalid value for parameter 'rows' or 'start'")
    cursor = _last(params, "cursor")
    if cursor is not None:
        if start > 1:
            return _bad_request(given, "Parameters 'cursor' and 'start' cannot be used together")
        try:
            offset = 0 if cursor == "*" else decode_cursor(cursor)
        except ValueError:
            return _bad_request(given, "Invalid cursor")
    elif start + rows - 1 > OFFSET_LIMIT:
        message = (
            f"It is not possible to paginate beyond the first {OFFSET_LIMIT} search results; use a cursor."
        )
        return _bad_request(given, message)
    else:
        offset = start - 1
    terms = _terms(query)
    found = (
        [
            item
            for item in sorted(archive.europeana.values(), key=lambda i: i.id)
            if _matches(item, terms) and _reusable(item, params.get("reusability", ()))
        ]
        if _refinements_allow_sound(params.get("qf", ()))
        else []
    )
    served = min(rows, page_size.records) if page_size else rows
    shown = found[offset : offset + served]
    step = rows if page_size and page_size.counted_as_asked else served
    if repeat_previous and shown and offset:
        shown = found[max(0, offset - REPEATED_ITEMS) : offset] + shown
    body: dict[str, Any] = {
        "apikey": key,
        "success": True,
        "requestNumber": REQUEST_NUMBER,
        "itemsCount": len(shown),
        "totalResults": len(found),
    }
    if cursor is not None and step and offset + step < len(found):
        body["nextCursor"] = encode_cursor(offset + step)
    body["items"] = [item_json(item, key, base) for item in shown]
    return 200, body


def record(archive: Archive, item_id: str, params: Params, *, key: str, base: str) -> Answer:
    """GET /record/v2/{dataset}/{localid}.json: the full record, media in `aggregations[].edmIsShownBy`."""
    given = _last(params, "wskey")
    if given != key:
        return _unauthorised(given)
    item = archive.europeana.get(item_id)
    if item is None:
        return 404, {"apikey": key, "success": False, "error": f"Invalid record identifier: {item_id}"}
    proxy: dict[str, Any] = {
        "about": f"/proxy/provider{item.id}",
        "dcCreator": {"def": [item.creator]} if item.creator else None,
        "dcDescription": {"def": [item.description]},
        "dcTitle": {"def": [item.title]},
    }
    obj: dict[str, Any] = {
        "about": item.id,
        "type": "SOUND",
        "title": [item.title],
        "europeanaCollectionName": [COLLECTION],
        "aggregations": [
            {
                "about": f"/aggregation/provider{item.id}",
                "edmDataProvider": {"def": [DATA_PROVIDER]},
                "edmIsShownAt": _landing_url(item, base),
                "edmIsShownBy": shown_by(item, base),
                "edmRights": {"def": [item.rights]},
                "webResources": _web_resources(item, base),
            }
        ],
        "agents": [{"about": item.creator, "prefLabel": {"de": [AGENTS[item.creator]]}}]
        if item.creator in AGENTS
        else None,
        "proxies": [{name: value for name, value in proxy.items() if value is not None}],
        "year": {"def": [item.year]} if item.year else None,
    }
    return 200, {
        "apikey": key,
        "success": True,
        "requestNumber": REQUEST_NUMBER,
        "object": {name: value for name, value in obj.items() if value is not None},
    }
