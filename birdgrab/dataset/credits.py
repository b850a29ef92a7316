"""The credits every reuse of the dataset must carry: CREDITS.csv (a row per recording) and ATTRIBUTION.md."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from birdgrab.models import ChunkedRecording, Recording

CREDITS = "CREDITS.csv"
ATTRIBUTION = "ATTRIBUTION.md"
CREDITS_COLUMNS = [
    "recording_key", "source", "scientific_name", "recordist", "licence", "licence_url", "page_url", "chunks",
]  # fmt: skip
_ARCHIVE_NAMES = {"xeno-canto": "xeno-canto", "europeana": "Europeana"}


def credit_rows(entries: Mapping[str, ChunkedRecording], recordings: Mapping[str, Recording]) -> list[dict]:
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
                "chunks": len(entry.chunks),
            }
        )
    return rows


def attribution_markdown(entries: Mapping[str, ChunkedRecording], recordings: Mapping[str, Recording]) -> str:
    lines = [
        "# Attribution",
        "",
        "This dataset is cut from recordings published by their recordists through xeno-canto",
        "(https://xeno-canto.org) and Europeana (https://www.europeana.eu), under the licences named",
        "below. Chunks are derivatives of these recordings; keep this file with the dataset, credit",
        "the recordists, and respect each licence (NC: no commercial use; SA: share alike).",
        "",
    ]
    by_species: dict[str, list[str]] = defaultdict(list)
    for key in sorted(entries):
        r = recordings[key]
        archive = _ARCHIVE_NAMES.get(r.source, r.source)
        by_species[r.species or r.scientific_name].append(
            f"- {key} — {r.recordist or 'unknown recordist'}, {archive}, {r.licence or 'licence unknown'}"
            f"{f' ({r.licence_url})' if r.licence_url else ''}: {r.page_url or 'no page'}"
        )
    for name in sorted(by_species):
        lines += [f"## {name}", "", *by_species[name], ""]
    return "\n".join(lines)
