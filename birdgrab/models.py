"""The shared pydantic models. Every archive (`birdgrab.sources`) turns its API into `Recording`;
what differs between archives downstream is asked of the archive registry, by `Recording.source`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

QUALITIES = ("A", "B", "C", "D", "E")


class Model(BaseModel):
    # Unknown fields are ignored so that a manifest from a later minor version still loads;
    # wrong types are errors (the manifest loader turns them into one clear message).
    model_config = ConfigDict(extra="ignore", validate_assignment=False)


class Recording(Model):
    key: str = Field(description="'<key prefix>:<source id>', e.g. 'xc:254462' (CONTRACT.md)")
    source: str = Field(description="the archive's name in the registry, e.g. 'xeno-canto'")
    source_id: str
    scientific_name: str = Field(description="canonical binomial, e.g. 'Turdus philomelos'")
    original_name: str = Field(description="the name as the archive gave it")
    species: str | None = Field(None, description="the class (species.json key) this recording belongs to")
    subspecies: str | None = None
    group: str | None = Field(
        None, description="the group the archive files it under (e.g. 'birds'); None when unknown"
    )
    english_name: str | None = None
    recordist: str | None = Field(None, description="a name, never a bare URI")
    recordist_id: str | None = Field(
        None,
        description="the archive's reference for the recordist when it gave no name (an agent URI, a #tag); "
        "not the person's identity (metadata.csv's recordist_id, birdgrab.dataset.people)",
    )
    recordist_login: str | None = Field(
        None,
        description="the recordist's account on the archive (iNaturalist's login), shown with `recordist`",
    )
    country: str | None = None
    locality: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    altitude_m: float | None = None
    types: list[str] = Field(default_factory=list)
    sex: str | None = None
    stage: str | None = None
    method: str | None = None
    quality: str | None = Field(None, description="'A' (best) .. 'E'; None when unrated")
    length_s: float | None = None
    recorded_date: str | None = Field(None, description="YYYY-MM-DD, YYYY-MM or YYYY: as precise as known")
    recorded_time: str | None = None
    uploaded: date | None = None
    background_species: list[str] = Field(default_factory=list)
    licence_url: str | None = None
    licence: str | None = Field(None, description="short form, e.g. 'CC BY-NC-SA 4.0'")
    attribution: str | None = Field(
        None,
        description="the credit line the archive asks for, e.g. '(c) Jane Doe, some rights reserved (CC BY)'",
    )
    page_url: str | None = None
    audio_url: str | None = None
    file_name: str | None = None
    declared_sample_rate: int | None = None
    data_provider: str | None = None
    remarks: str | None = None
    downloadable: bool = True
    not_downloadable_reason: str | None = None
    first_seen: datetime
    last_seen: datetime
    found_by: str | None = Field(None, description="the archive query that lists this recording")
    vanished: bool = Field(
        False, description="a full listing by found_by no longer has it; last_seen says when it was"
    )


class SkippedItem(Model):
    """An archive item that did not become a Recording, and why."""

    key: str
    name: str
    reason: str
    kind: str | None = Field(
        None, description="the reason's group, counted in summaries: placeholder, unidentified, hybrid, ..."
    )


class IncompleteListing(Model):
    """An archive listing that delivered fewer records than the archive said it holds: nothing is
    marked vanished from it, and it is asked again next run."""

    source: str
    query: str
    expected: int
    arrived: int


WikiStatus = Literal["article", "missing", "genus", "section", "disambiguation"]


class WikiArticle(Model):
    lang: str
    status: WikiStatus
    title: str | None = None
    url: str | None = None
    summary: str | None = None
    wikidata_id: str | None = None
    checked_at: datetime

    @property
    def is_species_article(self) -> bool:
        return self.status == "article"


class TaxonIds(Model):
    """Ids other taxonomies give the species, from its Wikidata item (to map classes to BirdNET,
    Perch or eBird labels)."""

    wikidata_id: str = Field(description="the item the ids were read from")
    ebird: str | None = Field(None, description="eBird taxon id (Wikidata P3444), e.g. 'sonthr1'")
    gbif: str | None = Field(None, description="GBIF taxon id (Wikidata P846)")
    checked_at: datetime


class GenusCheck(Model):
    """Whether Wikidata knows a genus as a taxon: asked once for genera that only a free-text
    title (Europeana) names and no xeno-canto recording vouches for."""

    taxon: bool
    wikidata_id: str | None = None
    checked_at: datetime


class Species(Model):
    scientific_name: str = Field(description="the class name: xeno-canto's name when merged")
    synonyms: list[str] = Field(default_factory=list)
    english_name: str | None = None
    is_bird: bool | None = Field(None, description="None: not yet known")
    bird_check: str | None = Field(None, description="how is_bird was decided, or why it is still open")
    bird_checked_at: datetime | None = None
    wiki: dict[str, WikiArticle] = Field(default_factory=dict)
    recordings: dict[str, int] = Field(default_factory=dict, description="recordings per source")
    taxon_ids: TaxonIds | None = Field(None, description="None: not yet asked (no Wikidata item known)")

    def article(self, lang: str) -> WikiArticle | None:
        return self.wiki.get(lang)


class ManifestHeader(Model):
    schema_version: int
    generated_at: datetime
    birdgrab_version: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class RecordingsManifest(ManifestHeader):
    kind: Literal["recordings"] = "recordings"
    counts: dict[str, int] = Field(default_factory=dict)
    recordings: dict[str, Recording] = Field(default_factory=dict)
    skipped: list[SkippedItem] = Field(default_factory=list)
    incomplete_listings: list[IncompleteListing] = Field(
        default_factory=list, description="listings of the last run that came up short"
    )


class SpeciesManifest(ManifestHeader):
    kind: Literal["species"] = "species"
    species: dict[str, Species] = Field(default_factory=dict)
    genera: dict[str, GenusCheck] = Field(
        default_factory=dict, description="genera of free-text titles checked on Wikidata, kept as a cache"
    )


class SelectedSpecies(Model):
    species: str
    wiki_title: str | None = None
    recordings: list[str] = Field(default_factory=list, description="chosen keys, best first")
    funnel: dict[str, int] = Field(default_factory=dict, description="recordings left after each filter")


class DroppedSpecies(Model):
    species: str
    reason: str
    funnel: dict[str, int] = Field(default_factory=dict)


class SelectionHeader(ManifestHeader):
    """selection.json without its lists: the options it was made with."""

    kind: Literal["selection"] = "selection"


class Selection(SelectionHeader):
    """selection.json as fetch, chunk and refresh read it: the chosen species and recordings, without
    what was left out (a reason per species and per recording: most of a catalogue of a million)."""

    species: dict[str, SelectedSpecies] = Field(default_factory=dict)

    def selected_keys(self) -> list[str]:
        return sorted(key for s in self.species.values() for key in s.recordings)


class SelectionManifest(Selection):
    """selection.json as `filter` writes it."""

    dropped_species: dict[str, DroppedSpecies] = Field(default_factory=dict)
    dropped_recordings: dict[str, str] = Field(default_factory=dict, description="key -> reason")

    def summary(self) -> str:
        """The one line a filter run ends with."""
        kept = sum(len(s.recordings) for s in self.species.values())
        return (
            f"filter: {len(self.species)} species with {kept} recordings kept, "
            f"{len(self.dropped_species)} species dropped"
        )


# rejected: the bytes arrived but are unusable (not audio, or audio no decoder reads); unlike a
# failed item it is not retried until the file changes upstream or --retry-rejected is given.
DownloadStatus = Literal["ok", "failed", "duplicate", "rejected"]


class DownloadEntry(Model):
    key: str
    status: DownloadStatus
    url: str | None = None
    path: str | None = Field(None, description="cache file, relative to the cache folder")
    bytes: int | None = None
    sha256: str | None = None
    format: str | None = None
    duration_s: float | None = Field(None, description="the decoded length, unless duration_estimated")
    duration_estimated: bool = Field(
        False, description="duration_s is the container's figure (AAC's padding is decoded too)"
    )
    sample_rate: int | None = None
    channels: int | None = None
    duplicate_of: str | None = None
    reason: str | None = None
    note: str | None = Field(
        None, description="why the audio came from another address than the recording's (its link rotted)"
    )
    # What the server said about the file (ok and rejected entries): a rejected file is fetched
    # again only once one of these, or `bytes`, changes upstream.
    etag: str | None = None
    last_modified: str | None = None
    attempts: int = 0
    updated_at: datetime


class DownloadsManifest(ManifestHeader):
    kind: Literal["downloads"] = "downloads"
    entries: dict[str, DownloadEntry] = Field(default_factory=dict)


Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


class ChunkVerdict(Model):
    """A chunk as `--verify birdnet` scored it (metadata.csv's verify_* columns)."""

    confidence: float | None = Field(
        description="for the chunk's own class; None: noise or unverifiable class"
    )
    top: str = Field(description="'Scientific name:0.91', the best of BirdNET's labels, or 'none'")
    status: Literal["confirmed", "doubtful", "unverifiable"]
    content: str = Field(description="the chunk's content key: its scores are stored under it")


class ChunkRow(Model):
    file_name: str = Field(
        description="relative to the dataset folder, e.g. 'Turdus_philomelos/xc-1_0000.wav'"
    )
    chunk_index: int
    offset_s: float
    duration_s: float
    padded_s: float
    rms_dbfs: float
    activity_s: float | None = Field(None, description="seconds of detected calls inside; None: not detected")
    noise: bool = Field(False, description="a call-free window of the noise class")
    capped: bool = Field(False, description="left out (file removed) by --max-chunks-per-class")
    verify: ChunkVerdict | None = Field(None, description="what BirdNET heard (--verify); None: not verified")


class RecordingVerdict(Model):
    """A recording's windows as `--verify birdnet` scored them, all candidates counted (also those not written)."""

    windows: int = Field(description="candidate windows scored")
    best: float | None = Field(description="the best own-class confidence; None: unverifiable, or no window")
    confirmed: bool | None = Field(
        description="a window reaches the threshold; False: a likely mislabel upstream"
    )
    top: str = Field(
        description="'Scientific name:0.91': what BirdNET hears best in the recording, or 'none'"
    )


class ChunkedRecording(Model):
    key: str
    status: Literal["ok", "failed", "duplicate"]
    label: str | None = None
    source_sha256: str | None = None
    options: str | None = Field(None, description="the chunk options the files were made with")
    chunks: list[ChunkRow] = Field(default_factory=list)
    dropped_silent: int = 0
    dropped_short: int = 0
    decoded_s: float | None = None
    duplicate_of: str | None = None
    similarity: float | None = None
    reason: str | None = None
    verify: RecordingVerdict | None = None
    updated_at: datetime


class ChunksManifest(ManifestHeader):
    kind: Literal["chunks"] = "chunks"
    entries: dict[str, ChunkedRecording] = Field(default_factory=dict)
    splits: dict[str, Split] = Field(default_factory=dict, description="recording key -> split, kept stable")
    near_duplicate_checks: dict[str, float] = Field(
        default_factory=dict, description="'keyA|keyB|shaA|shaB' -> fingerprint similarity, computed once"
    )


class ClassIdsManifest(ManifestHeader):
    kind: Literal["class_ids"] = "class_ids"
    ids: dict[str, int] = Field(
        default_factory=dict, description="class label -> id; never renumbered, kept for absent classes"
    )


class RefreshManifest(ManifestHeader):
    kind: Literal["refresh"] = "refresh"
    last_success_at: datetime | None = Field(
        None, description="start of the last refresh whose catalog completed"
    )
    last_summary: dict[str, Any] = Field(default_factory=dict)
