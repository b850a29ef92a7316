"""Which URL is which service, and the answer each request gets (before faults touch it).

Nothing here knows about sockets: `Services.answer` turns a request into a `Response`, and the
HTTP handler in server.py sends it (or a damaged version of it).
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from html import escape
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from birdgrab.sandbox import europeana_api, inaturalist_api, mediawiki_api, wikidata_api, xeno_canto_api
from birdgrab.sandbox.config import PageSize, SandboxConfig
from birdgrab.sandbox.holdings import Archive
from birdgrab.sandbox.synth import AudioCache, AudioFile, AudioSpec

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass(frozen=True)
class FileSlice:
    """Bytes of a file on disk, streamed in blocks rather than read into memory."""

    path: Path
    start: int
    length: int


@dataclass
class Response:
    status: int
    content_type: str | None = None
    body: bytes | FileSlice = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return self.body.length if isinstance(self.body, FileSlice) else len(self.body)

    @property
    def is_audio(self) -> bool:
        return isinstance(self.body, FileSlice)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, JSON_TYPE, data, headers or {})


def html_response(status: int, title: str, text: str = "") -> Response:
    page = f"<!doctype html><html><head><title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>"
    return Response(status, HTML_TYPE, f"{page}<p>{escape(text)}</p></body></html>".encode())


def not_found() -> Response:
    return html_response(404, "404 Not Found", "The sandbox archive has nothing at this address.")


class Counters:
    """Request and byte counts, thread-safe. Names are the keys of `Sandbox.counts()`; `faults` is
    the sum of `fault_counts()`, the answers each fault kind changed, by target."""

    NAMES = (
        "xc-api", "xc-download", "xc-audio", "europeana-search", "europeana-record", "europeana-audio",
        "europeana-dead-links", "inat-api", "inat-incremental", "inat-audio", "wiki-api", "wiki-titles",
        "wikidata-api", "wikidata-entities", "audio-bytes", "xc-audio-bytes", "europeana-audio-bytes",
        "inat-audio-bytes", "audio-range-requests", "landing", "not-found", "faults", "peak-in-flight",
    )  # fmt: skip

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._paths: Counter[str] = Counter()
        self._faults: Counter[tuple[str, str]] = Counter()  # (kind, target)
        self._in_flight = 0
        self._lock = threading.Lock()

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a request as in flight while it is answered; `peak-in-flight` keeps the high-water
        mark (every service is on one host: this is what a client's per-host limit bounds)."""
        with self._lock:
            self._in_flight += 1
            self._counts["peak-in-flight"] = max(self._counts["peak-in-flight"], self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def add_fault(self, kind: str, target: str) -> None:
        """One answer changed by a fault of `kind` (a failure, or a mode that did something)."""
        with self._lock:
            self._counts["faults"] += 1
            self._faults[(kind, target)] += 1

    def fault_counts(self) -> dict[str, dict[str, int]]:
        """kind -> target -> answers changed."""
        with self._lock:
            found: dict[str, dict[str, int]] = {}
            for (kind, target), count in sorted(self._faults.items()):
                found.setdefault(kind, {})[target] = count
            return found

    def add_path(self, path: str) -> None:
        with self._lock:
            self._paths[path] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {name: self._counts[name] for name in self.NAMES}

    def paths(self) -> dict[str, int]:
        with self._lock:
            return dict(self._paths)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._paths.clear()
            self._faults.clear()


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """`bytes=N-`, `bytes=N-M` or `bytes=-S` as (first, last) byte; None for forms served in full
    (several ranges, garbage). A first byte at or past `size` means 416."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or match[1] == match[2] == "":
        return None
    if match[1] == "":
        return max(0, size - int(match[2])), size - 1
    first = int(match[1])
    if first >= size:
        return first, size - 1
    last = min(int(match[2]), size - 1) if match[2] else size - 1
    return (first, last) if last >= first else None


# Failures each kind of answer can suffer (on top of the route's own modes). A redirect has no
# body to cut, so it cannot be reset or truncated mid-body.
_FAILS = frozenset({"429", "500", "503", "reset", "timeout", "truncate"})
API_FAULTS = _FAILS | {"bad_json"}
AUDIO_FAULTS = _FAILS | {"html", "corrupt", "no_range"}
REDIRECT_FAULTS = frozenset({"429", "500", "503", "timeout"})


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    handler: str  # the `Services` method that answers
    target: str | None  # fault and latency target; None: never faulted
    counter: str
    faults: frozenset[str] = frozenset()


def _route(
    pattern: str, handler: str, target: str | None, counter: str, faults: frozenset[str] = frozenset()
) -> Route:
    return Route(re.compile(pattern), handler, target, counter, faults)


ROUTES = (
    _route(r"/xeno-canto/api/3/recordings", "xc_api", "xc-api", "xc-api", API_FAULTS | {"repeat_page"}),
    _route(r"/xeno-canto/(\d+)/download", "xc_download", "xc-audio", "xc-download", REDIRECT_FAULTS),
    _route(r"/xeno-canto/sounds/uploaded/([^/]+)/([^/]+)", "xc_file", "xc-audio", "xc-audio", AUDIO_FAULTS),
    _route(r"/europeana/record/v2/search\.json", "europeana_search", "europeana-api", "europeana-search",
           API_FAULTS | {"repeat_page"}),
    _route(r"/europeana/record/v2(/.+)\.json", "europeana_record", "europeana-api", "europeana-record", API_FAULTS),
    _route(r"/tierstimmenarchiv/recordings/([^/]+)", "europeana_media", "europeana-audio", "europeana-audio",
           AUDIO_FAULTS),
    _route(r"/tierstimmenarchiv/old/([^/]+)", "europeana_rotten", "europeana-audio", "europeana-dead-links",
           REDIRECT_FAULTS),
    _route(r"/inaturalist/v1/observations", "inat_api", "inat-api", "inat-api", API_FAULTS),
    _route(r"/inaturalist/sounds/(\d+)\.[a-z0-9]+", "inat_file", "inat-audio", "inat-audio", AUDIO_FAULTS),
    _route(r"/wikipedia/([a-z-]+)/w/api\.php", "wiki_api", "wiki", "wiki-api", API_FAULTS | {"maxlag"}),
    _route(r"/wikidata/w/api\.php", "wikidata_api", "wikidata", "wikidata-api", API_FAULTS | {"maxlag"}),
    _route(r"/(?:xeno-canto/\d+|tierstimmenarchiv/webinterface/.+|europeana/item/.+|wikipedia/[a-z-]+/wiki/.+"
           r"|inaturalist/observations/\d+)",
           "landing", None, "landing"),
    _route(r"/", "index", None, "landing"),
)  # fmt: skip


def resolve(path: str) -> tuple[Route, re.Match[str]] | None:
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match:
            return route, match
    return None


@dataclass(frozen=True)
class Request:
    path: str
    match: re.Match[str]
    params: list[tuple[str, str]]  # in order, repeats kept (Europeana's qf and reusability repeat)
    headers: Mapping[str, str]
    modes: frozenset[str]  # fault modes in force: repeat_page, no_range
    target: str | None = None  # the route's fault target, which a mode's effect is counted under

    @property
    def last(self) -> dict[str, str]:
        """Single-valued view: the last value of each parameter."""
        return dict(self.params)

    @property
    def multi(self) -> dict[str, list[str]]:
        values: dict[str, list[str]] = {}
        for name, value in self.params:
            values.setdefault(name, []).append(value)
        return values


class Services:
    """The services' answers, built from the archive and the audio cache."""

    def __init__(self, config: SandboxConfig, archive: Archive, audio: AudioCache, counters: Counters):
        self.config = config
        self.archive = archive
        self.audio = audio
        self.counters = counters
        self.base = ""  # "http://host:port", set once the server listens
        self.wikidata = wikidata_api.WikidataIndex()
        self.page_sizes: dict[str, PageSize] = {}  # "xeno-canto", "europeana": the server decides

    def answer(self, route: Route, request: Request) -> Response:
        return getattr(self, route.handler)(request)

    def _with_mode(self, mode: str, request: Request, answer: Callable[[bool], Response]) -> Response:
        """`answer(True)` if `mode` is in force, else `answer(False)`; the mode counts as a fault
        only where the two differ (a page repeats records only after the first page)."""
        plain = answer(False)
        if mode not in request.modes:
            return plain
        shaped = answer(True)
        if shaped.body != plain.body:
            self.counters.add_fault(mode, request.target or "")
        return shaped

    # -- xeno-canto ---------------------------------------------------------------------------
    def xc_api(self, request: Request) -> Response:
        today = date.today()

        def listing(repeat: bool) -> Response:
            status, body = xeno_canto_api.recordings(
                self.archive,
                request.last,
                key=self.config.xc_key,
                base=self.base,
                today=today,
                repeat_previous=repeat,
                page_size=self.page_sizes.get("xeno-canto"),
            )
            return json_response(status, body)

        return self._with_mode("repeat_page", request, listing)

    def xc_download(self, request: Request) -> Response:
        record = self.archive.xc.get(int(request.match[1]))
        if record is None or record.audio is None or not record.file_name:
            return not_found()
        return Response(302, headers={"Location": self.base + xeno_canto_api.download_path(record)})

    def xc_file(self, request: Request) -> Response:
        record = self.archive.xc_file(unquote(request.match[1]), unquote(request.match[2]))
        if record is None or record.audio is None:
            return not_found()
        return self._audio(record.audio, request)

    # -- Europeana ----------------------------------------------------------------------------
    def europeana_search(self, request: Request) -> Response:
        def listing(repeat: bool) -> Response:
            status, body = europeana_api.search(
                self.archive,
                request.multi,
                key=self.config.europeana_key,
                base=self.base,
                repeat_previous=repeat,
                page_size=self.page_sizes.get("europeana"),
            )
            return json_response(status, body)

        return self._with_mode("repeat_page", request, listing)

    def europeana_record(self, request: Request) -> Response:
        item_id = unquote(request.match[1])
        status, body = europeana_api.record(
            self.archive, item_id, request.multi, key=self.config.europeana_key, base=self.base
        )
        return json_response(status, body)

    def europeana_media(self, request: Request) -> Response:
        item = self.archive.europeana_media(unquote(request.match[1]))
        return not_found() if item is None else self._audio(item.audio, request)

    def europeana_rotten(self, request: Request) -> Response:
        """A media link that rotted: 403 or 404, as the item says."""
        item = self.archive.europeana_media(unquote(request.match[1]))
        if item is None or not item.dead_link:
            return not_found()
        status = HTTPStatus(item.dead_link)
        return html_response(status.value, f"{status.value} {status.phrase}")

    # -- iNaturalist --------------------------------------------------------------------------
    def inat_api(self, request: Request) -> Response:
        if request.last.get("updated_since"):
            self.counters.add("inat-incremental")
        status, body = inaturalist_api.observations(
            self.archive, request.last, base=self.base, per_page_max=self.config.inat_per_page_max
        )
        return json_response(status, body)

    def inat_file(self, request: Request) -> Response:
        sound = self.archive.inat_sound(int(request.match[1]))
        if sound is None or sound.audio is None:
            return not_found()
        return self._audio(sound.audio, request)

    # -- Wikipedia ----------------------------------------------------------------------------
    def wiki_api(self, request: Request) -> Response:
        params = request.last
        self.counters.add("wiki-titles", len(params["titles"].split("|")) if params.get("titles") else 0)
        lang = request.match[1]
        pages = self.archive.wiki.get(lang, {})
        return json_response(200, mediawiki_api.query(pages, lang, params, self.base))

    def wikidata_api(self, request: Request) -> Response:
        params = request.last
        asked = [v for name in ("ids", "titles") for v in params.get(name, "").split("|") if v]
        self.counters.add("wikidata-entities", len(asked))
        return json_response(200, self.wikidata.answer(self.archive, params))

    # -- pages and files ----------------------------------------------------------------------
    def index(self, request: Request) -> Response:
        return html_response(
            200,
            "birdgrab sandbox archive",
            "xeno-canto: /xeno-canto/api/3/recordings; Europeana: /europeana/record/v2/search.json; "
            "iNaturalist: /inaturalist/v1/observations; Wikipedia: /wikipedia/{lang}/w/api.php; "
            "Wikidata: /wikidata/w/api.php; control: /_sandbox/stats.",
        )

    def landing(self, request: Request) -> Response:
        return html_response(200, unquote(request.path), "A landing page of the birdgrab sandbox archive.")

    def _audio(self, spec: AudioSpec | AudioFile, request: Request) -> Response:
        path = self.audio.path(spec)  # renders on first use
        size = path.stat().st_size
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{spec.digest}"'}
        wanted = request.headers.get("Range")
        if wanted:
            self.counters.add("audio-range-requests")
        span = parse_range(wanted, size) if wanted else None
        if span is not None and "no_range" in request.modes:
            self.counters.add_fault("no_range", request.target or "")
            span = None  # a server that ignores Range: the whole file again
        if span is None:
            return Response(200, spec.content_type, FileSlice(path, 0, size), headers)
        first, last = span
        if first >= size:
            return Response(416, "text/plain", b"", {**headers, "Content-Range": f"bytes */{size}"})
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return Response(206, spec.content_type, FileSlice(path, first, last - first + 1), headers)
