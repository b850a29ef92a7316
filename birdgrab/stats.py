"""`birdgrab stats`: what is in the manifests (and, once built, the dataset)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from birdgrab import manifests
from birdgrab.errors import UsageError


@dataclass
class SpeciesRow:
    species: str
    local_name: str | None
    recordings: dict[str, int]
    article: str  # "yes", "no", a non-article status, or "?" when not yet asked
    is_bird: bool | None


@dataclass
class Stats:
    wiki_lang: str
    recordings: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    downloadable: int = 0
    skipped: int = 0
    rows: list[SpeciesRow] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def collect(folder: Path, wiki_lang: str = "de") -> Stats:
    recordings = manifests.load_recordings(folder)
    species = manifests.load_species(folder)
    if recordings is None or species is None:
        raise UsageError(f"no manifests in {folder}: run `birdgrab catalog` first")
    stats = Stats(wiki_lang=wiki_lang)
    stats.recordings = len(recordings.recordings)
    stats.per_source = dict(recordings.counts)
    stats.downloadable = sum(r.downloadable for r in recordings.recordings.values())
    stats.skipped = len(recordings.skipped)
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
    return stats
