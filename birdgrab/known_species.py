"""species.json as the last catalog left it, read only when a run has something to do with it.

A catalogue of all of xeno-canto names about ten thousand species: species.json is then about 10 MB
and 65 MB of objects, and reading it would be most of what a no-change refresh costs. So each
catalog run leaves a note in the store (`RecordingStore.species_note`): the file's size and time,
whether anything about its species is open (no article looked up, a bird status or taxonomy ids
not known), and the oldest look-up that a maximum age (`refresh --wiki-max-age`) asks again. A
later run whose listing changed nothing, while the file matches the note and nothing is due,
leaves species.json unread.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from birdgrab import manifests
from birdgrab.files import file_stamp, matches_stamp
from birdgrab.models import GenusCheck, Species, SpeciesManifest
from birdgrab.taxonomy import wikidata_item

_SPECIES_JSON = TypeAdapter(dict[str, Species])
_GENERA_JSON = TypeAdapter(dict[str, GenusCheck])


def look_ups(species: Species, lang: str) -> list[datetime] | None:
    """When what a catalog run may ask again about `species` was looked up; None when something is
    open, asked on every run whatever its age.

    The rules of `catalog._resolve_species` (its Wikipedia article), `catalog._check_birds` (an
    open bird status) and `taxonomy.fetch_taxon_ids` (eBird and GBIF ids), in one place; the
    catalog tests prove they agree (a quiet run asks nothing, one with facts of age asks again).
    """
    article = species.wiki.get(lang)
    if article is None or species.is_bird is None:
        return None
    times = [article.checked_at]
    qid = wikidata_item(species, lang)
    if qid is not None:
        ids = species.taxon_ids
        if ids is None or ids.wikidata_id != qid:
            return None
        times.append(ids.checked_at)
    return times


class KnownSpecies:
    """species.json, read the first time `manifest` is asked for (at once when the store's note
    does not vouch for the file: a bad file must stop a run before its first request)."""

    def __init__(self, folder: Path, note: dict[str, Any] | None):
        self.path = Path(folder) / manifests.SPECIES
        self._note = note if matches_stamp(self.path, note) else None
        self._manifest: SpeciesManifest | None = None
        self._read = False
        self._snapshot: bytes | None = None  # the species as read, to tell later whether they changed
        if self._note is None:
            self._load()

    def _load(self) -> None:
        self._manifest = manifests.load_species(self.path.parent)
        self._snapshot = _SPECIES_JSON.dump_json(self._manifest.species) if self._manifest else None
        self._read = True

    @property
    def manifest(self) -> SpeciesManifest | None:
        if not self._read:
            self._load()
        return self._manifest

    @property
    def species(self) -> dict[str, Species]:
        return self.manifest.species if self.manifest else {}

    def genera(self) -> dict[str, GenusCheck]:
        """A copy of the genus checks (a few hundred: the note holds them too, so reading them
        leaves species.json unread)."""
        if self._note is not None and not self._read:
            return _GENERA_JSON.validate_python(self._note["genera"])
        return dict(self.manifest.genera) if self.manifest else {}

    def changed(self, species: dict[str, Species], genera: dict[str, GenusCheck]) -> bool:
        """Whether these differ from what the file held (a run updates species in place)."""
        manifest = self.manifest
        return (
            manifest is None
            or genera != manifest.genera
            or _SPECIES_JSON.dump_json(species) != self._snapshot
        )

    def quiet(self, lang: str, max_age_days: int | None, now: datetime) -> bool:
        """Whether the note says that nothing about the species is due now (the file unread)."""
        note = self._note
        if note is None or self._read or note["lang"] != lang or note["open"]:
            return False
        oldest = note["oldest_look_up"]
        if not max_age_days or oldest is None:
            return True
        return now < datetime.fromisoformat(oldest) + timedelta(days=max_age_days)

    @property
    def count(self) -> int:
        return len(self.species) if self._read or self._note is None else int(self._note["count"])

    def note(self, species: dict[str, Species], genera: dict[str, GenusCheck], lang: str) -> dict[str, Any]:
        """The note to leave in the store once species.json holds these."""
        times = [look_ups(s, lang) for s in species.values()]
        oldest = min((t for ts in times if ts is not None for t in ts), default=None)
        return {
            **file_stamp(self.path),
            "lang": lang,
            "count": len(species),
            "open": any(ts is None for ts in times),
            "oldest_look_up": oldest.isoformat() if oldest else None,
            "genera": _GENERA_JSON.dump_python(genera, mode="json"),
        }
