"""The credits every reuse of the dataset must carry: CREDITS.csv (a row per recording) and ATTRIBUTION.md."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from birdgrab.models import ChunkedRecording, Recording
from birdgrab.sources.registry import registry

CREDITS = "CREDITS.csv"
ATTRIBUTION = "ATTRIBUTION.md"
CREDITS_COLUMNS = [
    "recording_key", "source", "scientific_name", "recordist", "licence", "licence_url", "page_url",
    "attribution", "chunks", "recordist_id",
]  # fmt: skip


def credit_rows(
    entries: Mapping[str, ChunkedRecording], recordings: Mapping[str, Recording], people: Mapping[str, str]
) -> list[dict]:
    """A row per recording: `recordist` as its archive spells it, `recordist_id` the person (people.py)."""
    rows = []
    for key, entry in sorted(entries.items()):
        r = recordings[key]
        rows.append(
            {
                "recording_key": key,
                "source": r.source,
                "scientific_name": r.species or r.scientific_name,
                "recordist": r.recordist or "unknown",
                "licence": r.licence or "unknown",
                "licence_url": r.licence_url or "",
                "page_url": r.page_url or "",
                "attribution": r.attribution or "",  # the credit line the archive asks for, if it gives one
                "chunks": len(entry.chunks),
                "recordist_id": people.get(key, "unknown"),
            }
        )
    return rows


def attribution_markdown(entries: Mapping[str, ChunkedRecording], recordings: Mapping[str, Recording]) -> str:
    used = {recordings[key].source for key in entries}
    credits = [a.credit() for a in registry if a.name in used] or ["the archives"]
    archives = " and ".join(filter(None, [", ".join(credits[:-1]), credits[-1]]))
    lines = [
        "# Attribution",
        "",
        f"This dataset is cut from recordings published by their recordists through {archives},",
        "under the licences named below. Chunks are derivatives of these recordings; keep this file with",
        "the dataset, credit the recordists, and respect each licence (NC: no commercial use; SA: share alike).",
        "",
    ]
    by_species: dict[str, list[str]] = defaultdict(list)
    for key in sorted(entries):
        r = recordings[key]
        title = registry.get(r.source).title
        by_species[r.species or r.scientific_name].append(
            f"- {key} — {r.recordist or 'unknown recordist'}, {title}, {r.licence or 'licence unknown'}"
            f"{f' ({r.licence_url})' if r.licence_url else ''}: {r.page_url or 'no page'}"
            f"{f' — credit: {r.attribution}' if r.attribution else ''}"
        )
    for name in sorted(by_species):
        lines += [f"## {name}", "", *by_species[name], ""]
    return "\n".join(lines)
