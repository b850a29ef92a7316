"""The writers: metadata.csv, classes.json and dataset.json, from the ledger and the manifests.

Every file is written atomically and only when its bytes change, so a run that changes nothing
keeps every mtime. metadata.csv has no empty text cell, so pandas reads every text column as
text (an empty cell would be NaN, a float, among the strings): an unknown value is `unknown`,
an empty background list `none`, an unknown year 0.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from birdgrab import __version__
from birdgrab.dataset.options import NOISE_LABEL
from birdgrab.dataset.plan import valid_label
from birdgrab.models import SPLITS, ChunkedRecording, ChunkRow, Recording, Species, Split
from birdgrab.names import NameError_, canonical_binomial
from birdgrab.storage import Storage

METADATA = "metadata.csv"
CLASSES = "classes.json"
DATASET = "dataset.json"
UNKNOWN = "unknown"
NO_BACKGROUND = "none"
METADATA_COLUMNS = [
    "file_name", "label", "class_id", "split", "recording_key", "source", "source_id", "chunk_index",
    "offset_s", "duration_s", "padded_s", "licence", "recordist", "page_url", "background", "labels",
    "scientific_name", "german_name", "english_name", "quality", "recorded_date", "recorded_year",
    "country", "sample_rate", "rms_dbfs", "recordist_id",
]  # fmt: skip
VERIFY_COLUMNS = ["verify_confidence", "verify_top", "verify_status"]  # with --verify
NOT_VERIFIED = "not verified"


def csv_bytes(columns: list[str], rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_if_changed(storage: Storage, name: str, data: bytes) -> bool:
    """Replace `name` with `data`, whole, unless it already holds exactly that (keeps mtimes, and a
    bucket gets no PUT from a run that changed nothing)."""
    with contextlib.suppress(FileNotFoundError):
        if storage.size(name) == len(data) and storage.read_bytes(name) == data:
            return False
    storage.write_bytes(name, data)
    return True


@dataclass(frozen=True)
class DatasetContent:
    """What the writers describe: the recordings in the dataset and what is known about them."""

    entries: Mapping[str, ChunkedRecording]  # recordings with chunks, by key
    recordings: Mapping[str, Recording]
    species: Mapping[str, Species]
    splits: Mapping[str, Split]
    class_ids: Mapping[str, int]
    people: Mapping[str, str] = field(default_factory=dict)  # key -> recordist identity (people.py)
    # --labels-from birdnet: file name -> the other species BirdNET hears in the chunk (class labels
    # or scientific names); None: the background is xeno-canto's `also`, per recording
    heard: Mapping[str, list[str]] | None = None

    def labels(self) -> set[str]:
        """The classes that have chunks (the noise class among them, when it has some)."""
        return {row_label(e, r) for e in self.entries.values() for r in e.chunks}

    def species_by_label(self) -> dict[str, Species]:
        return species_by_label(self.species)

    def name_to_label(self) -> dict[str, str]:
        """Every scientific name and synonym of a species -> its class label (the synonym merge)."""
        names = {}
        for label, s in self.species_by_label().items():
            for name in [s.scientific_name, *s.synonyms]:
                names[name] = label
        return names


def species_by_label(species: Mapping[str, Species]) -> dict[str, Species]:
    """Class label -> its species (species.json's entries whose name can be a class)."""
    result = {}
    for s in species.values():
        label = valid_label(s.scientific_name)
        if label is not None:
            result[label] = s
    return result


def row_label(entry: ChunkedRecording, row: ChunkRow) -> str:
    """A chunk's class: its recording's species, or the noise class for a call-free window."""
    return NOISE_LABEL if row.noise else entry.label or ""


def _text(value: str | None) -> str:
    return value if value and value.strip() else UNKNOWN


def _year(recorded_date: str | None) -> int:
    match = re.match(r"(\d{4})", recorded_date or "")
    return int(match.group(1)) if match and match.group(1) != "0000" else 0


def background_names(recording: Recording, name_to_label: Mapping[str, str], own: str) -> list[str]:
    """Other species heard: their class labels through the synonym merge, or their canonical
    binomial for species without a class; the recording's own class and unparseable names left out."""
    found: list[str] = []
    for raw in recording.background_species:
        label = name_to_label.get(raw)
        if label is None:
            try:
                binomial = canonical_binomial(raw)
            except NameError_:
                continue
            label = name_to_label.get(binomial, binomial)
        if label != own and label not in found:
            found.append(label)
    return sorted(found)


def metadata_rows(content: DatasetContent, sample_rate: int) -> list[dict[str, Any]]:
    """One row per chunk, sorted by file name."""
    species_by_label = content.species_by_label()
    name_to_label = content.name_to_label()
    rows = []
    for key, entry in sorted(content.entries.items()):
        recording = content.recordings[key]
        label = entry.label or ""
        info = species_by_label.get(label)
        article = info.article("de") if info else None
        also = background_names(recording, name_to_label, label)
        for chunk in entry.chunks:
            own = row_label(entry, chunk)
            background = also if content.heard is None else content.heard.get(chunk.file_name, [])
            in_dataset = [name for name in background if name in content.class_ids and name != own]
            rows.append(
                {
                    "file_name": chunk.file_name,
                    "label": own,
                    "class_id": content.class_ids[own],
                    "split": content.splits.get(key, "train"),
                    "recording_key": key,
                    "source": recording.source,
                    "source_id": recording.source_id,
                    "chunk_index": chunk.chunk_index,
                    "offset_s": chunk.offset_s,
                    "duration_s": chunk.duration_s,
                    "padded_s": chunk.padded_s,
                    "licence": _text(recording.licence),
                    "recordist": _text(recording.recordist),
                    "page_url": _text(recording.page_url),
                    "background": ";".join(background) or NO_BACKGROUND,
                    "labels": own if chunk.noise else ";".join([label, *in_dataset]),
                    "scientific_name": info.scientific_name if info else recording.scientific_name,
                    "german_name": _text(article.title if article and article.is_species_article else None),
                    "english_name": _text((info.english_name if info else None) or recording.english_name),
                    "quality": _text(recording.quality),
                    "recorded_date": _text(recording.recorded_date),
                    "recorded_year": _year(recording.recorded_date),
                    "country": _text(recording.country),
                    "sample_rate": sample_rate,
                    "rms_dbfs": chunk.rms_dbfs,
                    "recordist_id": content.people.get(key, UNKNOWN),
                    **_verify_cells(chunk),
                }
            )
    rows.sort(key=lambda row: row["file_name"])
    return rows


def _verify_cells(chunk: ChunkRow) -> dict[str, Any]:
    """metadata.csv's verify_* cells: the confidence is empty for the noise class and unverifiable classes."""
    verdict = chunk.verify
    if verdict is None:
        return {"verify_confidence": "", "verify_top": NO_BACKGROUND, "verify_status": NOT_VERIFIED}
    confidence = "" if verdict.confidence is None else round(verdict.confidence, 4)
    return {"verify_confidence": confidence, "verify_top": verdict.top, "verify_status": verdict.status}


def classes_json(content: DatasetContent) -> bytes:
    """class id -> label, names, Wikipedia URLs and counts, for the classes with chunks, in id order."""
    species_by_label = content.species_by_label()
    counts: dict[str, Counter] = defaultdict(Counter)
    for key, entry in content.entries.items():
        for label in {row_label(entry, row) for row in entry.chunks}:
            counts[label]["recordings"] += 1
        for row in entry.chunks:
            c = counts[row_label(entry, row)]
            c["chunks"] += 1
            c[content.splits.get(key, "train")] += 1
    classes = {}
    for label, class_id in sorted(content.class_ids.items(), key=lambda kv: kv[1]):
        if label not in counts:
            continue
        info = species_by_label.get(label)
        article = info.article("de") if info else None
        english_article = info.article("en") if info else None
        c = counts[label]
        classes[str(class_id)] = {
            "label": label,
            "noise": label == NOISE_LABEL,
            "scientific_name": info.scientific_name if info else label.replace("_", " "),
            "synonyms": info.synonyms if info else [],
            "german_name": article.title if article and article.is_species_article else None,
            "english_name": info.english_name if info else None,
            "wikipedia_url": article.url if article and article.is_species_article else None,
            "english_wikipedia_url": english_article.url
            if english_article and english_article.is_species_article
            else None,
            **_taxon_ids(info),
            "recordings": c["recordings"],
            "chunks": c["chunks"],
            "splits": {s: c[s] for s in SPLITS},
        }
    return (json.dumps(classes, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _taxon_ids(species: Species | None) -> dict[str, str | None]:
    """classes.json's ids in other taxonomies (Wikidata, eBird, GBIF), None where unknown."""
    ids = species.taxon_ids if species else None
    return {
        "wikidata_id": ids.wikidata_id if ids else None,
        "ebird_taxon_id": ids.ebird if ids else None,
        "gbif_taxon_id": ids.gbif if ids else None,
    }


def dataset_json(how: Mapping[str, Any], made_at: str) -> bytes:
    """How the dataset was made (CONTRACT.md): its account (`build._account`), the version, the time."""
    return (
        json.dumps({**how, "birdgrab_version": __version__, "made_at": made_at}, indent=2, ensure_ascii=False)
        + "\n"
    ).encode("utf-8")
