"""MediaWiki's Action API (`action=query`) as the sandbox serves it (docs/archives.md).

Both formatversions, title normalisation, redirects with `tofragment`, missing and invalid pages,
`prop=extracts|info|pageprops` with TextExtracts' limits (20 intros a request, 1 whole article)
and `continue`. Errors come with HTTP 200, as from the real API.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from birdgrab.sandbox.holdings import WikiPage

MAX_TITLES = 50
MAX_EXTRACTS = 20  # with exintro; whole-article extracts come one a request
TOUCHED = "2024-05-01T12:00:00Z"
# tests/fixtures/api/mediawiki-error-maxlag.json, served by the `maxlag` fault.
MAXLAG_ERROR: dict[str, Any] = {
    "error": {
        "code": "maxlag",
        "info": "Waiting for db1234: 7 seconds lagged.",
        "host": "db1234",
        "lag": 7,
        "type": "db",
        "*": "See https://de.wikipedia.org/w/api.php for API usage.",
    },
    "servedby": "mw1234",
}
_INVALID_CHARS = re.compile(r"[#<>\[\]|{}\x00-\x1f\x7f]")


def _error(code: str, info: str, v2: bool) -> dict[str, Any]:
    help_key = "docref" if v2 else "*"
    return {
        "error": {"code": code, "info": info, help_key: "See api.php for API usage."},
        "servedby": "mw-sandbox",
    }


def normalise_title(raw: str) -> tuple[str, str | None]:
    """MediaWiki's normalisation: ('Turdus philomelos', None) for 'turdus_philomelos', or (raw, why it is invalid)."""
    if _INVALID_CHARS.search(raw):
        return raw, "The requested page title contains invalid characters."
    title = " ".join(raw.replace("_", " ").split())
    if not title:
        return (
            raw,
            "The requested page title is empty or contains only the name of a namespace or interwiki prefix.",
        )
    if len(title.encode()) > 255:
        return (
            raw,
            "The requested page title is too long. It must be no longer than 255 bytes in UTF-8 encoding.",
        )
    if (
        title in (".", "..")
        or title.startswith(("./", "../"))
        or "/./" in title
        or "/../" in title
        or title.endswith(("/.", "/.."))
    ):
        return raw, "Title has relative path. Relative page titles (./, ../) are invalid."
    return title[0].upper() + title[1:], None


def _extract(page: WikiPage, intro_only: bool, plain: bool) -> str:
    text = page.intro if intro_only else f"{page.intro}\n\n{page.body}"
    if plain:
        return text
    parts = []
    for line in filter(None, text.split("\n")):
        heading = re.fullmatch(r"==\s*(.+?)\s*==", line)
        parts.append(f"<h2>{html.escape(heading[1])}</h2>" if heading else f"<p>{html.escape(line)}</p>")
    return "".join(parts)


def query(pages: Mapping[str, WikiPage], lang: str, params: Mapping[str, str], base: str) -> dict[str, Any]:
    """GET api.php?action=query&titles=...: the answer body (always served with HTTP 200)."""
    v2 = params.get("formatversion") in ("2", "latest")
    flag: Any = True if v2 else ""  # how booleans look in this formatversion
    if params.get("action") != "query":
        return _error("badvalue", f'Unrecognized value for parameter "action": {params.get("action")}.', v2)
    raw_titles = params["titles"].split("|") if params.get("titles") else []
    if len(raw_titles) > MAX_TITLES:
        return _error(
            "toomanyvalues",
            f'Too many values supplied for parameter "titles". The limit is {MAX_TITLES}.',
            v2,
        )
    requested = [p for p in params.get("prop", "").split("|") if p]
    done = set(params.get("continue", "").split("|")[2:])  # modules a continuation no longer needs
    props = {p for p in requested if p not in done}
    inprop = set(params.get("inprop", "").split("|"))
    ppprop = set(params["ppprop"].split("|")) if params.get("ppprop") else None

    normalized: list[dict[str, str]] = []
    redirects: list[dict[str, str]] = []
    found: dict[str, WikiPage | None] = {}
    invalid: list[dict[str, Any]] = []
    for raw in dict.fromkeys(raw_titles):
        title, reason = normalise_title(raw)
        if reason:
            invalid.append({"title": raw, "invalidreason": reason, "invalid": flag})
            continue
        if title != raw:
            normalized.append({"from": raw, "to": title})
        page = pages.get(title)
        if page and page.redirect_to and "redirects" in params:
            hop = {"from": title, "to": page.redirect_to}
            if page.fragment:
                hop["tofragment"] = page.fragment
            if hop not in redirects:
                redirects.append(hop)
            title, page = page.redirect_to, pages.get(page.redirect_to)
        found.setdefault(title, page)

    extracts: dict[str, str] = {}
    continuation: dict[str, str] | None = None
    if "extracts" in props:
        intro_only = "exintro" in params
        limit = MAX_EXTRACTS if intro_only else 1
        if (params.get("exlimit") or "max").isdigit():
            limit = max(1, min(limit, int(params["exlimit"])))
        offset = int(params["excontinue"]) if (params.get("excontinue") or "").isdigit() else 0
        articles = sorted((p for p in found.values() if p and not p.redirect_to), key=lambda p: p.title)
        for page in articles[offset : offset + limit]:
            extracts[page.title] = _extract(page, intro_only, "explaintext" in params)
        if offset + limit < len(articles):
            others = "|".join(p for p in requested if p != "extracts")
            continuation = {"excontinue": str(offset + limit), "continue": f"||{others}"}

    def page_json(title: str, page: WikiPage | None) -> dict[str, Any]:
        entry: dict[str, Any] = (
            {"ns": 0, "title": title, "missing": flag}
            if page is None
            else {"pageid": page.pageid, "ns": 0, "title": page.title}
        )
        if "info" in props:
            entry.update(
                contentmodel="wikitext", pagelanguage=lang, pagelanguagehtmlcode=lang, pagelanguagedir="ltr"
            )
            if page is not None:
                entry.update(
                    touched=TOUCHED, lastrevid=page.pageid * 7 + 1, length=len(page.intro + page.body)
                )
                if page.redirect_to:
                    entry["redirect"] = flag
            if "url" in inprop:
                path = quote(title.replace(" ", "_"))
                url = f"{base}/wikipedia/{lang}/wiki/{path}"
                entry.update(
                    fullurl=url, editurl=f"{base}/wikipedia/{lang}/w/index.php?title={path}&action=edit"
                )
                entry["canonicalurl"] = url
        if page is not None and page.title in extracts:
            entry["extract"] = extracts[page.title]
        if page is not None and "pageprops" in props:
            pageprops = {"disambiguation": ""} if page.disambiguation else {}
            if page.wikidata_id:
                pageprops["wikibase_item"] = page.wikidata_id
            pageprops = {k: v for k, v in pageprops.items() if ppprop is None or k in ppprop}
            if pageprops:
                entry["pageprops"] = pageprops
        return entry

    unknown = invalid + [page_json(title, None) for title, page in found.items() if page is None]
    known = sorted((page for page in found.values() if page is not None), key=lambda p: p.pageid)
    entries = unknown + [page_json(page.title, page) for page in known]
    body: dict[str, Any] = {"continue": continuation} if continuation else {"batchcomplete": flag}
    result: dict[str, Any] = {}
    if normalized:
        result["normalized"] = normalized
    if redirects:
        result["redirects"] = redirects
    if entries:
        keys = [str(-n) for n in range(1, len(unknown) + 1)] + [str(p.pageid) for p in known]
        result["pages"] = entries if v2 else dict(zip(keys, entries, strict=True))
    if result:
        body["query"] = result
    return body
