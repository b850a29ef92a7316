"""iNaturalist API v1 observations as the sandbox serves them (docs/archives.md).

Filters on taxon (with descendants), sounds, quality grade, place, taxon name and `updated_since`;
orders by id when asked (else newest first); pages by `page` or `id_above`. The quirks: `per_page`
is capped at 200 without a word (the answer's `per_page` says what was served), and `page` may not
reach past the 10,000th result (a 403 with an error body, as the real service answers).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from birdgrab.sandbox.holdings import Archive, InatObservation, InatSound

Answer = tuple[int, dict[str, Any]]
Predicate = Callable[[InatObservation], bool]

PER_PAGE_DEFAULT = 30
RESULT_WINDOW = 10_000
_ATTRIBUTION = {
    None: "all rights reserved",
    "cc0": "no rights reserved",
}


def _error(status: int, message: str) -> Answer:
    return status, {"error": message, "status": status}


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.lstrip("-").isdigit():
        raise ValueError(f"{name} must be an integer")
    return int(raw)


def _since(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filters(params: Mapping[str, str]) -> list[Predicate]:
    """The observations' filters; unknown parameters are ignored, as the real service does."""
    found: list[Predicate] = []
    if taxa := params.get("taxon_id"):
        wanted = {int(t) for t in taxa.split(",") if t.strip().isdigit()}
        found.append(lambda o: o.taxon_id in wanted or bool(wanted & set(o.ancestor_ids)))
    if params.get("sounds") == "true":
        found.append(lambda o: bool(o.sounds))
    if grades := params.get("quality_grade"):
        grade_set = set(grades.split(","))
        found.append(lambda o: o.quality_grade in grade_set)
    if places := params.get("place_id"):
        place_set = {int(p) for p in places.split(",") if p.strip().isdigit()}
        found.append(lambda o: bool(place_set & set(o.place_ids)))
    if name := params.get("taxon_name"):
        wanted_name = name.lower()
        found.append(lambda o: wanted_name in (o.taxon_name.lower(), (o.species or "").lower()))
    if since := params.get("updated_since"):
        moment = _since(since)
        found.append(lambda o: o.updated_at >= moment)
    if (above := _int(params, "id_above", 0)) > 0:
        found.append(lambda o: o.id > above)
    return found


def observations(
    archive: Archive, params: Mapping[str, str], *, base: str, per_page_max: int = 200
) -> Answer:
    try:
        per_page = min(max(_int(params, "per_page", PER_PAGE_DEFAULT), 0), per_page_max)
        page = max(_int(params, "page", 1), 1)
        filters = _filters(params)
    except ValueError as exc:
        return _error(422, str(exc))
    if page * per_page > RESULT_WINDOW:
        return _error(
            403,
            f"You have exceeded the maximum number of results ({RESULT_WINDOW}); "
            "to see more, narrow the search or page with id_above",
        )
    matching = [o for o in archive.inat_sorted() if all(f(o) for f in filters)]
    if params.get("order_by") != "id" or params.get("order", "desc") == "desc":
        matching.reverse()  # newest first (by id, which grows with creation)
    served = matching[(page - 1) * per_page : page * per_page]
    return 200, {
        "total_results": len(matching),
        "page": page,
        "per_page": per_page,
        "results": [_observation_json(o, base) for o in served],
    }


def _credit(observation: InatObservation, sound: InatSound) -> str:
    who = observation.user_name or observation.login
    code = sound.license_code
    rights = _ATTRIBUTION.get(code, f"some rights reserved ({(code or '').upper().replace('CC-', 'CC ')})")
    return f"(c) {who}, {rights}"


def sound_path(sound: InatSound) -> str:
    """Where a sound's file is served (with the timestamp suffix iNaturalist's URLs carry)."""
    extension = sound.audio.format if sound.audio else "m4a"
    return f"/inaturalist/sounds/{sound.id}.{extension}?{1_700_000_000 + sound.id}"


def _sound_json(observation: InatObservation, sound: InatSound, base: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": sound.id,
        "license_code": sound.license_code,
        "attribution": _credit(observation, sound),
        "file_url": None if sound.soundcloud else base + sound_path(sound),
        "file_content_type": None
        if sound.soundcloud
        else sound.content_type or (sound.audio.content_type if sound.audio else "audio/mp4"),
        "flags": [],
    }
    if sound.soundcloud:
        body |= {"native_sound_id": str(900_000_000 + sound.id), "subtype": "SoundcloudSound"}
    return body


def _observation_json(o: InatObservation, base: str) -> dict[str, Any]:
    return {
        "id": o.id,
        "uuid": str(uuid.UUID(int=o.id)),
        "uri": f"{base}/inaturalist/observations/{o.id}",
        "quality_grade": o.quality_grade,
        "observed_on": o.observed_on.isoformat() if o.observed_on else None,
        "time_observed_at": None,
        "created_at": o.created_at.isoformat(),
        "updated_at": o.updated_at.isoformat(),
        "license_code": "cc-by-nc",
        "place_guess": o.place_guess,
        "location": f"{o.latitude},{o.longitude}",
        "geojson": {"type": "Point", "coordinates": [o.longitude, o.latitude]},
        "taxon": {
            "id": o.taxon_id,
            "name": o.taxon_name,
            "rank": o.rank,
            "preferred_common_name": o.common_name,
            "iconic_taxon_name": o.iconic,
            "ancestor_ids": list(o.ancestor_ids),
        },
        "user": {"id": o.user_id, "login": o.login, "name": o.user_name},
        "sounds": [_sound_json(o, s, base) for s in o.sounds],
    }
