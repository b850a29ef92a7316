"""`birdgrab stats`: what is in the manifests (and, once built, the dataset)."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from birdgrab import manifests
from birdgrab.dataset.people import UNKNOWN
from birdgrab.dataset.writers import DATASET
from birdgrab.download import DownloadLedger
from birdgrab.errors import UsageError
from birdgrab.models import SPLITS, ChunkedRecording, ChunksManifest
from birdgrab.storage import Storage, open_storage
from birdgrab.store import RecordingStore


@dataclass
class SpeciesRow:
    species: str
    local_name: str | None
    recordings: dict[str, int]
    article: str  # "yes", "no", a non-article status, or "?" when not yet asked
    is_bird: bool | None


@dataclass
class DatasetStats:
    classes: int
    recordings: int
    chunks: int
    hours: float
    chunks_by_class: dict[str, dict[str, int]]  # label -> split -> chunks
    people: int | None  # recordists (identities across spellings); None: a dataset without recordist_id
    made_with: dict | None  # dataset.json: how it was made (None: none)


@dataclass
class Stats:
    wiki_lang: str
    recordings: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    downloadable: int = 0
    skipped: int = 0
    skipped_by_kind: dict[str, int] = field(default_factory=dict)  # placeholder, unidentified, ...
    incomplete_listings: list[str] = field(default_factory=list)  # "<archive>: <query>" of the last catalog
    rejected: dict[str, str] = field(default_factory=dict)  # key -> why its downloaded bytes are unusable
    rows: list[SpeciesRow] = field(default_factory=list)
    dataset: DatasetStats | None = None
    # --verify: recordings BirdNET does not confirm as their species (birdgrab.verify.mislabels.Mislabel)
    # (the classes it has no label for are in dataset.json's account: dataset.made_with)
    likely_mislabels: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def dataset_stats(out: Path | str | Storage) -> DatasetStats | None:
    """Chunks per class and split, from the dataset's metadata.csv (None before the first chunk run),
    and its dataset.json; `out` is a folder or a storage URL."""
    wanted = {"label", "split", "recording_key", "duration_s", "recordist_id"}
    storage = open_storage(out)
    try:
        metadata = pd.read_csv(
            io.BytesIO(storage.read_bytes("metadata.csv")),
            usecols=lambda column: column in wanted,
            keep_default_na=False,
        )
    except FileNotFoundError:
        return None
    except (ValueError, pd.errors.ParserError) as exc:
        raise UsageError(f"{out}/metadata.csv is not a birdgrab metadata file ({exc})") from None
    table = metadata.pivot_table(
        index="label", columns="split", values="duration_s", aggfunc="count", fill_value=0
    )
    table = table.reindex(columns=list(SPLITS), fill_value=0)
    return DatasetStats(
        classes=int(metadata["label"].nunique()),
        recordings=int(metadata["recording_key"].nunique()),
        chunks=len(metadata),
        hours=round(float(metadata["duration_s"].sum()) / 3600, 2),
        chunks_by_class={label: {k: int(v) for k, v in row.items()} for label, row in table.iterrows()},
        people=(
            int(metadata.loc[metadata["recordist_id"] != UNKNOWN, "recordist_id"].nunique())
            if "recordist_id" in metadata
            else None
        ),
        made_with=_dataset_json(storage),
    )


def likely_mislabels(folder: Path, store: RecordingStore) -> list[dict[str, object]]:
    """The chunk ledger's recordings verification did not confirm, with their page URLs."""
    entries = manifests.Ledger(folder, manifests.CHUNKS, ChunksManifest, ChunkedRecording).entries
    flagged = {k: e for k, e in entries.items() if e.verify is not None and e.verify.confirmed is False}
    if not flagged:
        return []
    from birdgrab.verify.mislabels import likely_mislabels

    recordings = store.get_many(list(flagged))
    return [m.as_dict() for m in likely_mislabels(flagged, recordings)]


def _dataset_json(out: Storage) -> dict | None:
    try:
        made = json.loads(out.read_bytes(DATASET).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return made if isinstance(made, dict) else None


def collect(folder: Path, wiki_lang: str = "de", out: Path | str | None = None) -> Stats:
    """Counts from the recordings store (in SQL, never a recording at a time) and species.json."""
    species = manifests.load_species(folder)
    store = RecordingStore.open(folder)
    if store is None or species is None:
        raise UsageError(f"no manifests in {folder}: run `birdgrab catalog` first")
    stats = Stats(wiki_lang=wiki_lang)
    with store:
        stats.per_source = store.counts()
        stats.recordings = sum(stats.per_source.values())
        stats.downloadable = store.downloadable()
        stats.skipped = store.skipped_count()
        stats.skipped_by_kind = store.skipped_by_kind()
        stats.incomplete_listings = [f"{i.source}: {i.query}" for i in store.incomplete_listings()]
        stats.likely_mislabels = likely_mislabels(folder, store)
    downloads = DownloadLedger(folder).entries
    stats.rejected = {key: e.reason or "" for key, e in downloads.items() if e.status == "rejected"}
    for s in species.species.values():
        article = s.article(wiki_lang)
        status = (
            "?"
            if article is None
            else "yes"
            if article.is_species_article
            else "no"
            if article.status == "missing"
            else article.status
        )
        stats.rows.append(
            SpeciesRow(
                species=s.scientific_name,
                local_name=article.title if article and article.is_species_article else None,
                recordings=dict(s.recordings),
                article=status,
                is_bird=s.is_bird,
            )
        )
    stats.dataset = dataset_stats(out) if out is not None else None
    return stats
