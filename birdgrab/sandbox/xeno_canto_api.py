"""xeno-canto API v3 as the sandbox serves it: tag queries, paging, and the two error shapes.

See docs/archives.md. Every field is a string except where the real service differs
(`page`, `numPages`, `also`, `sono`, `osci`, `annotation-set`), and `numPages` always counts one
page too many, so clients must stop on an empty page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

from birdgrab.sandbox.config import PageSize
from birdgrab.sandbox.holdings import Archive, GeneratedXc, XcRecording

Predicate = Callable[[XcRecording], bool]
Answer = tuple[int, dict[str, Any]]

PER_PAGE_DEFAULT, PER_PAGE_MIN, PER_PAGE_MAX = 100, 50, 500
REPEATED_RECORDS = 3  # how many records of the previous page a `repeat_page` fault serves again
KEY_ERROR = {
    "error": "client_error",
    "message": "Missing or invalid 'key' parameter. Visit https://xeno-canto.org/account to retrieve your API key.",
}
_QUALITIES = "ABCDE"
_AREAS = {
    "europe": {"germany", "france", "poland", "netherlands", "spain", "austria"},
    "america": {"argentina", "peru", "chile", "united states"},
}
_TAG = re.compile(r'([a-z]+):(?:"([^"]*)"|(\S+))')


class QueryError(ValueError):
    """A query the service rejects with 400 and the nested error shape."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _error(code: str, message: str) -> Answer:
    return 400, {"error": {"code": code, "message": message}}


def _number_range(value: str, tag: str) -> tuple[float, float]:
    """'10-60' -> (10, 60); '<30' -> (-inf, 30); '>30' -> (30, inf); '30' -> (30, 30)."""
    try:
        if value.startswith("<"):
            return -math.inf, float(value[1:])
        if value.startswith(">"):
            return float(value[1:]), math.inf
        low, sep, high = value.partition("-")
        return (float(low), float(high)) if sep else (float(low), float(low))
    except ValueError:
        raise QueryError("invalid_query", f"Invalid value for {tag}: {value}") from None


def _quality(value: str) -> Predicate:
    wanted = value.upper()
    if wanted in tuple(_QUALITIES):
        return lambda r: r.quality == wanted
    if len(wanted) == 2 and wanted[0] in "<>" and wanted[1] in _QUALITIES:
        # Better than C means A or B: "better" is earlier in the alphabet.
        rank = _QUALITIES.index(wanted[1])
        allowed = _QUALITIES[:rank] if wanted[0] == ">" else _QUALITIES[rank + 1 :]
        return lambda r: r.quality in tuple(allowed)
    raise QueryError("invalid_query", f"Invalid value for q: {value}")


def _length(value: str) -> Predicate:
    low, high = _number_range(value, "len")
    if low == high:  # an exact length matches within 1 %, as on the site
        low, high = low * 0.99, high * 1.01
    return lambda r: low <= r.length_s <= high


def _since(value: str, today: date) -> Predicate:
    if value.isdigit():
        start = today - timedelta(days=int(value))
    else:
        try:
            start = date.fromisoformat(value)
        except ValueError:
            raise QueryError("invalid_query", f"Invalid value for since: {value}") from None
    return lambda r: r.uploaded >= start


def _species(value: str) -> Predicate:
    """`sp:"turdus philomelos"` names genus and species; `sp:philomelos` the epithet alone."""
    wanted = " ".join(value.lower().split())
    if " " in wanted:
        return lambda r: r.name.lower() == wanted
    return lambda r: r.epithet.lower() == wanted


def _box(value: str) -> Predicate:
    try:
        lat1, lon1, lat2, lon2 = (float(part) for part in value.split(","))
    except ValueError:
        raise QueryError("invalid_query", f"Invalid value for box: {value}") from None

    def inside(r: XcRecording) -> bool:
        try:
            lat, lon = float(r.details["lat"]), float(r.details["lon"])
        except (TypeError, ValueError):
            return False
        return lat1 <= lat <= lat2 and lon1 <= lon <= lon2

    return inside


def _predicate(tag: str, value: str, today: date) -> Predicate:
    lowered = value.lower()
    simple: dict[str, Callable[[XcRecording], str]] = {
        "grp": lambda r: r.group,
        "gen": lambda r: r.genus,
        "ssp": lambda r: r.subspecies,
        "en": lambda r: r.english,
        "cnt": lambda r: r.country,
    }
    if tag in simple:
        field = simple[tag]
        return lambda r: field(r).lower() == lowered
    if tag == "sp":
        return _species(value)
    if tag == "rec":
        return lambda r: lowered in r.recordist.lower()
    if tag == "area":
        countries = _AREAS.get(lowered, set())
        return lambda r: r.country.lower() in countries
    if tag == "q":
        return _quality(value)
    if tag == "len":
        return _length(value)
    if tag == "type":
        return lambda r: lowered in (t.strip().lower() for t in r.types.split(","))
    if tag == "since":
        return _since(value, today)
    if tag == "nr":
        low, high = _number_range(value, "nr")
        return lambda r: low <= r.id <= high
    if tag == "lic":
        return lambda r: r.licence.lower() == lowered
    if tag == "box":
        return _box(value)
    raise QueryError("invalid_query", f"Unknown search tag: {tag}")


def parse_tags(text: str) -> list[tuple[str, str]]:
    """The (tag, value) pairs of a query; untagged words raise QueryError (the service answers 400)."""
    if not text.strip():
        raise QueryError("missing_parameter", "No query specified")
    tags: list[tuple[str, str]] = []
    position = 0
    for match in _TAG.finditer(text):
        _reject_untagged(text[position : match.start()])
        tag, quoted, bare = match.groups()
        tags.append((tag, quoted if quoted is not None else bare))
        position = match.end()
    _reject_untagged(text[position:])
    return tags


def parse_query(text: str, today: date) -> list[Predicate]:
    """The predicates of a tag query."""
    return [_predicate(tag, value, today) for tag, value in parse_tags(text)]


# Tags on which every generated record agrees: one record answers for the whole block.
_BLOCK_TAGS = {"grp", "cnt", "area", "since"}


def _intersect(a: range, b: range) -> range:
    start = max(a.start, b.start)
    return range(start, max(start, min(a.stop, b.stop)))


def generated_matches(block: GeneratedXc | None, text: str, today: date) -> Sequence[int]:
    """The ids of generated records a query matches, ascending, without making a record for
    `nr:`, `sp:`, `grp:`, `cnt:`, `area:` and `since:` (other tags are checked record by record)."""
    if block is None:
        return range(0)
    ids = block.ids
    per_record: list[Predicate] = []
    for tag, value in parse_tags(text):
        if tag == "nr":
            low, high = _number_range(value, "nr")
            start = ids.start if low == -math.inf else math.ceil(low)
            stop = ids.stop if high == math.inf else math.floor(high) + 1
            ids = _intersect(ids, range(start, stop))
        elif tag == "sp" and " " in value.strip():
            ids = _intersect(ids, block.of_species(" ".join(value.split())))
        elif tag in _BLOCK_TAGS:
            if ids and not _predicate(tag, value, today)(block.record(block.first_id)):
                ids = range(0)
        else:
            per_record.append(_predicate(tag, value, today))
    if per_record:
        return [i for i in ids if all(p(block.record(i)) for p in per_record)]
    return ids


def _reject_untagged(between_tags: str) -> None:
    if between_tags.strip():
        raise QueryError("invalid_query", f"Untagged search terms are not supported: {between_tags.strip()}")


def recording_json(r: XcRecording, base: str) -> dict[str, Any]:
    """One record, keys in the order and types of tests/fixtures/api/xeno-canto-v3-page.json."""
    if r.protocol_relative:  # older payloads: `//host/...`
        base = base.split(":", 1)[1]
    lic = r.licence_url.split(":", 1)[-1] if r.protocol_relative else r.licence_url
    d = r.details
    return {
        "id": str(r.id),
        "gen": r.genus,
        "sp": r.epithet,
        "ssp": r.subspecies,
        "grp": r.group or None,
        "en": r.english,
        "rec": r.recordist,
        "cnt": r.country,
        "loc": d["loc"],
        "lat": d["lat"],
        "lon": d["lon"],
        "alt": d["alt"],
        "type": r.types,
        "sex": d["sex"],
        "stage": d["stage"],
        "method": d["method"],
        "url": f"{base}/xeno-canto/{r.id}",
        "file": f"{base}/xeno-canto/{r.id}/download" if r.file_name else "",
        "file-name": r.file_name,
        "sono": _images(r, base, "", ("small", "med", "large", "full")),
        "osci": _images(r, base, "osci-", ("small", "med", "large")),
        "lic": lic,
        "q": r.quality,
        "length": _length_text(r.length_s),
        "time": d["time"],
        "date": d["date"],
        "uploaded": r.uploaded.isoformat(),
        "also": d["also"],
        "rmk": d["rmk"],
        "animal-seen": d["animal-seen"],
        "playback-used": d["playback-used"],
        "temp": d["temp"],
        "regnr": d["regnr"],
        "auto": d["auto"],
        "dvc": d["dvc"],
        "mic": d["mic"],
        "smp": str(r.audio.sample_rate if r.audio else 44100),
        "annotation-set": d["annotation-set"],
    }


def _images(r: XcRecording, base: str, prefix: str, sizes: tuple[str, ...]) -> dict[str, str | None] | None:
    """Spectrogram or oscillogram URLs by size: null where xeno-canto has none."""
    if r.sono is None:
        return None
    folder = f"{base}/xeno-canto/sounds/spectrograms/{r.recordist_code}/{r.id}"
    return {size: f"{folder}/{prefix}{size}.png" if size in r.sono else None for size in sizes}


def _length_text(seconds: float) -> str:
    """'m:ss', or 'h:mm:ss' from an hour on."""
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def download_path(r: XcRecording) -> str:
    """Where `/xeno-canto/{id}/download` redirects: the upload under the recordist's folder."""
    return f"/xeno-canto/sounds/uploaded/{r.recordist_code}/{quote(r.file_name, safe='')}"


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise QueryError("invalid_parameter", f"Invalid value for {name}: {raw}") from None


def recordings(
    archive: Archive,
    params: Mapping[str, str],
    *,
    key: str,
    base: str,
    today: date,
    repeat_previous: bool = False,
    page_size: PageSize | None = None,
) -> Answer:
    """GET /api/3/recordings. `repeat_previous` (a fault) serves a few records of the previous page
    again; `page_size` makes the server decide how many records a page holds."""
    if params.get("key") != key:
        return 401, KEY_ERROR
    try:
        predicates = parse_query(params.get("query", ""), today)
        per_page = _int_param(params, "per_page", PER_PAGE_DEFAULT)
        page = _int_param(params, "page", 1)
        if not PER_PAGE_MIN <= per_page <= PER_PAGE_MAX:
            raise QueryError(
                "invalid_parameter", f"per_page must be between {PER_PAGE_MIN} and {PER_PAGE_MAX}"
            )
        if page < 1:
            raise QueryError("invalid_parameter", "page must be 1 or more")
    except QueryError as exc:
        return _error(exc.code, exc.message)
    found = [r for r in archive.xc_sorted() if all(p(r) for p in predicates)]
    generated = generated_matches(archive.generated, params.get("query", ""), today)
    total = len(found) + len(generated)

    def window(low: int, high: int) -> list[XcRecording]:
        """Matches low..high-1: stored records first, then generated ones (their ids are higher)."""
        rest = generated[max(0, low - len(found)) : max(0, high - len(found))]
        return found[low:high] + [archive.generated.record(i) for i in rest] if rest else found[low:high]

    served = min(per_page, page_size.records) if page_size else per_page
    counted_in = per_page if page_size and page_size.counted_as_asked else served
    start = (page - 1) * served
    shown = window(start, start + served)
    if repeat_previous and shown and start:
        shown = window(max(0, start - REPEATED_RECORDS), start) + shown
    species = len({r.name.lower() for r in found})
    if archive.generated is not None:
        species += archive.generated.species_count(generated)
    return 200, {
        "numRecordings": str(total),
        "numSpecies": str(species),
        "page": page,
        "numPages": math.ceil(total / counted_in) + 1,
        "recordings": [recording_json(r, base) for r in shown],
    }
