"""MediaWiki Action API: does a species have an article in a language, and which?

Titles are asked 50 at a time (`titles=A|B|...`, the API's limit) with extracts, URLs and page
props in one query, following `continue` for extracts (at most 20 a request). Answers are mapped
input -> normalized -> redirect -> page by title, never by position. A maxlag or other error
answered with HTTP 200 is retried, never taken as "missing". A redirect to a genus article, to a
section, or a disambiguation page is recorded as such: none of them is a species article.

Measured against the `wikipedia-api` package (one title per request, extracts and info as
separate requests): see BENCHMARKS.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from birdgrab.errors import ServiceError, UsageError
from birdgrab.http_client import ServiceClient, TransientError, gather_failfast, parse_retry_after
from birdgrab.models import WikiArticle
from birdgrab.settings import Settings
from birdgrab.sources import clean_text

log = logging.getLogger(__name__)

TITLES_PER_REQUEST = 50
MAX_CONTINUATIONS = 20
# MediaWiki error codes that mean "try again later", not "your request is wrong".
_TRANSIENT_CODES = {"maxlag", "ratelimited", "readonly", "internal_api_error_DBQueryError"}
_GENUS_WORDS = re.compile(r"\b(Gattung|genus|Gattungen)\b", re.I)


def check_lang(lang: str) -> None:
    """A UsageError (exit 2) unless `lang` looks like a Wikipedia language code (de, en, be-tarask)."""
    if not re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", lang):
        raise UsageError(f"--wiki-lang {lang!r} is not a Wikipedia language code (e.g. de, en)")


def mediawiki_errors(service: str) -> Callable[[Any, Any], None]:
    """The payload check of a MediaWiki API (Wikipedia, Wikidata): errors come with HTTP 200; maxlag
    and its kin are retried (after Retry-After or the lag), anything else is a ServiceError."""

    def check(body: Any, headers: Any) -> None:
        if not isinstance(body, dict):
            raise TransientError("answer is not a JSON object")
        error = body.get("error")
        if not isinstance(error, dict):
            return
        code = clean_text(error.get("code")) or "unknown"
        info = clean_text(error.get("info")) or ""
        if code in _TRANSIENT_CODES:
            retry_after = parse_retry_after(headers.get("Retry-After") if headers is not None else None)
            if retry_after is None and (lag := error.get("lag")) is not None:
                retry_after = min(float(lag), 60.0) if isinstance(lag, (int, float)) else None
            raise TransientError(
                f"MediaWiki {code}: {info}".strip(),
                retry_after=retry_after if retry_after is not None else 5.0,
            )
        raise ServiceError(service, f"the API refused the query ({code}: {info})")

    return check


check_payload = mediawiki_errors("Wikipedia")


def _pages_by_title(query: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """formatversion 2 gives a list, formatversion 1 an object keyed by page id: accept both."""
    pages = query.get("pages")
    values = pages.values() if isinstance(pages, dict) else pages if isinstance(pages, list) else []
    return {
        page["title"]: page
        for page in values
        if isinstance(page, dict) and isinstance(page.get("title"), str)
    }


def _mapping(query: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    entries = query.get(key)
    return {
        entry["from"]: entry
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("from"), str) and isinstance(entry.get("to"), str)
    }


def _is_missing(page: dict[str, Any] | None) -> bool:
    if page is None:
        return True
    return any(page.get(flag) not in (None, False) for flag in ("missing", "invalid"))


def classify(name: str, query: dict[str, Any], *, lang: str, checked_at: datetime) -> WikiArticle:
    """What the answer says about `name`: an article, missing, or a genus/section/disambiguation page."""
    normalized = _mapping(query, "normalized")
    redirects = _mapping(query, "redirects")
    pages = _pages_by_title(query)
    title = normalized[name]["to"] if name in normalized else name
    fragment = None
    seen = {title}
    while title in redirects:  # redirect chains are rare but legal; loops are not followed twice
        entry = redirects[title]
        fragment = clean_text(entry.get("tofragment")) or fragment
        title = entry["to"]
        if title in seen:
            break
        seen.add(title)
    page = pages.get(title)
    if _is_missing(page):
        return WikiArticle(lang=lang, status="missing", title=None, checked_at=checked_at)
    assert page is not None
    props = page["pageprops"] if isinstance(page.get("pageprops"), dict) else {}
    summary = clean_text(page.get("extract"))
    fields = {
        "lang": lang,
        "title": page["title"],
        "url": clean_text(page.get("fullurl")) or clean_text(page.get("canonicalurl")),
        "summary": summary[:2000] if summary else None,
        "wikidata_id": clean_text(props.get("wikibase_item")),
        "checked_at": checked_at,
    }
    if "disambiguation" in props:
        return WikiArticle(status="disambiguation", **fields)
    if fragment:
        return WikiArticle(status="section", **fields)
    if summary and name.lower() not in summary.lower() and _GENUS_WORDS.search(summary.split(".")[0]):
        # The article a species name redirects to speaks of a genus and never names the species.
        return WikiArticle(status="genus", **fields)
    return WikiArticle(status="article", **fields)


class Wikipedia:
    """Batch resolver of scientific names to articles in one language edition."""

    def __init__(self, settings: Settings, lang: str):
        if not re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", lang):
            raise ValueError(f"not a Wikipedia language code: {lang!r}")
        self.lang = lang
        self._endpoint = settings.wikipedia_endpoint(lang)
        self.client = ServiceClient(settings.wikipedia, settings, check_payload=check_payload)

    async def __aenter__(self) -> Wikipedia:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()

    async def _query(self, titles: list[str]) -> dict[str, Any]:
        """One batch, following `continue` until every page has its extract; merged into one query."""
        params: dict[str, Any] = {
            "action": "query",
            "format": "json",
            "formatversion": "2",
            "titles": "|".join(titles),
            "redirects": "1",
            "prop": "extracts|info|pageprops",
            "exintro": "1",
            "explaintext": "1",
            "exlimit": "max",
            "inprop": "url",
            "ppprop": "wikibase_item|disambiguation",
            "maxlag": "5",
        }
        merged: dict[str, Any] = {}
        pages: dict[str, dict[str, Any]] = {}
        for _ in range(MAX_CONTINUATIONS):
            body = await self.client.get_json(self._endpoint, params)
            query = body.get("query") if isinstance(body.get("query"), dict) else {}
            for key in ("normalized", "redirects"):
                if key not in merged and query.get(key):
                    merged[key] = query[key]
            for title, page in _pages_by_title(query).items():
                known = pages.setdefault(title, {})
                known.update({k: v for k, v in page.items() if v not in (None, "") or k == "missing"})
            cont = body.get("continue")
            if not isinstance(cont, dict):
                break
            params = {**params, **{k: str(v) for k, v in cont.items()}}
        merged["pages"] = list(pages.values())
        return merged

    async def resolve(self, names: list[str], *, checked_at: datetime) -> dict[str, WikiArticle]:
        """Look up every name; batches run concurrently within Wikimedia's limit of 3."""
        unique = sorted(set(names))
        batches = [unique[i : i + TITLES_PER_REQUEST] for i in range(0, len(unique), TITLES_PER_REQUEST)]
        answers = await gather_failfast(self._query(batch) for batch in batches)
        result: dict[str, WikiArticle] = {}
        for batch, query in zip(batches, answers, strict=True):
            for name in batch:
                result[name] = classify(name, query, lang=self.lang, checked_at=checked_at)
        log.info(
            "Wikipedia (%s): %d names looked up in %d requests",
            self.lang,
            len(unique),
            self.client.requests_made,
            extra={"event": "catalog.wiki", "names": len(unique), "requests": self.client.requests_made},
        )
        return result
