"""The sandbox's archive: what xeno-canto, Europeana, iNaturalist and Wikipedia "hold", plus the truths tests check.

Records are immutable; the archive changes only through `add` and `remove`, which swap in new
dictionaries (copy on write), so request threads read a consistent state without locking.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from birdgrab.sandbox.synth import AudioFile, AudioSpec

WikiStatus = Literal["article", "genus", "section", "disambiguation", "missing"]

XC_LICENCES: dict[str, str] = {
    "BY": "https://creativecommons.org/licenses/by/4.0/",
    "BY-SA": "https://creativecommons.org/licenses/by-sa/4.0/",
    "BY-NC": "https://creativecommons.org/licenses/by-nc/4.0/",
    "BY-NC-SA": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "BY-NC-ND": "https://creativecommons.org/licenses/by-nc-nd/4.0/",
    "CC0": "https://creativecommons.org/publicdomain/zero/1.0/",
}


@dataclass(frozen=True)
class Species:
    """One species as the archive knows it (the truth behind the three services' answers)."""

    name: str  # the binomial xeno-canto uses; Europeana may use a synonym
    english: str
    group: str = "birds"  # xeno-canto's grp ("" is served as null)
    german: str | None = None  # the German Wikipedia title its name leads to (None: no article)
    wiki_de: WikiStatus = "missing"  # what that title is: the species article, or a trap
    english_article: str | None = None
    synonyms: tuple[str, ...] = ()
    restricted: bool = False  # xeno-canto hides its audio

    @property
    def is_bird(self) -> bool:
        return self.group == "birds"


@functools.cache
def recordist_code(recordist: str) -> str:
    """The folder xeno-canto files a recordist's uploads under (ten capitals, stable per name)."""
    value = int.from_bytes(hashlib.sha256(recordist.encode()).digest()[:8], "big")
    return "".join(chr(65 + (value >> (5 * i)) % 26) for i in range(10))


@dataclass(frozen=True)
class XcRecording:
    id: int
    genus: str
    epithet: str
    subspecies: str
    group: str
    english: str
    recordist: str
    country: str
    types: str  # as served: "call, song"
    quality: str  # "A".."E" or "no score"
    licence: str  # a key of XC_LICENCES, or a real recording's licence URL ("" when none is stated)
    length_s: float  # the declared length; the audio's true duration when there is audio
    uploaded: date
    file_name: str  # "" for restricted species
    audio: AudioSpec | AudioFile | None  # None: restricted species, or a metadata-only (bulk) record
    # The remaining v3 fields exactly as served (loc, lat, lon, alt, sex, stage, method, time, date,
    # also, rmk, animal-seen, playback-used, temp, regnr, auto, dvc, mic, annotation-set).
    details: dict[str, Any] = field(compare=False)
    sono: tuple[str, ...] | None = ("small", "med", "large", "full")  # sizes with a URL; None: null
    protocol_relative: bool = False  # old payloads: `//host/...` URLs

    @property
    def key(self) -> str:
        return f"xc:{self.id}"

    @property
    def name(self) -> str:
        return f"{self.genus} {self.epithet}"

    @property
    def recordist_code(self) -> str:
        return recordist_code(self.recordist)

    @property
    def licence_url(self) -> str:
        return XC_LICENCES.get(self.licence, self.licence)


@dataclass(frozen=True)
class EuropeanaItem:
    id: str  # "/11622/_TIERSTIMMENARCHIV_..."
    title: str
    species: str | None  # truth: the species the item is of (xeno-canto's name), None when none is named
    description: str
    creator: str | None
    year: str | None
    rights: str  # licence URL
    media_name: str  # file name under /tierstimmenarchiv/recordings/
    audio: AudioSpec
    landing_id: str  # unique_id of its Tierstimmenarchiv page
    media_in_search: bool = True  # False: edmIsShownBy only in the Record API
    dead_link: int | None = None  # the status its rotten edmIsShownBy answers (403, 404); None: it works
    media_moved: bool = False  # with a dead link: the record lists the file's new address

    @property
    def key(self) -> str:
        return f"europeana:{self.id}"

    @property
    def open(self) -> bool:
        """Europeana's `reusability=open`: CC0, PDM, BY, BY-SA (no NC or ND)."""
        return "-nc" not in self.rights and "-nd" not in self.rights


@dataclass(frozen=True)
class InatSound:
    id: int
    license_code: str | None  # None: all rights reserved
    audio: AudioSpec | None  # None: hosted on SoundCloud, or a metadata-only (bulk) sound
    soundcloud: bool = False  # no file_url; native_sound_id and subtype "SoundcloudSound" instead
    content_type: str | None = None  # as served; None: the audio's own

    @property
    def key(self) -> str:
        return f"inaturalist:{self.id}"


@dataclass(frozen=True)
class InatObservation:
    id: int
    taxon_id: int
    taxon_name: str  # as iNaturalist names the taxon: a binomial, a trinomial, a genus, a hybrid formula
    rank: str  # species, subspecies, genus, hybrid
    species: str | None  # truth: the species (xeno-canto's name) it belongs to; None for genus and hybrid
    ancestor_ids: tuple[int, ...]  # 3 is Aves
    iconic: str  # "Aves", "Amphibia"
    common_name: str | None
    user_id: int
    login: str
    user_name: str | None  # None or "": clients credit the login
    observed_on: date | None
    created_at: datetime
    updated_at: datetime
    quality_grade: str  # research, needs_id, casual
    place_guess: str
    latitude: float
    longitude: float
    place_ids: tuple[int, ...]  # 7207 is Germany
    sounds: tuple[InatSound, ...]


@dataclass(frozen=True)
class WikiPage:
    title: str
    pageid: int
    intro: str = ""  # the lead section, plain text
    body: str = ""  # the rest of the article, plain text
    wikidata_id: str | None = None
    disambiguation: bool = False
    redirect_to: str | None = None  # set on redirect pages
    fragment: str | None = None  # the section a redirect points at


@dataclass(frozen=True)
class GeneratedXc:
    """xeno-canto records made on request and never stored, so the sandbox serves a million of
    them cheaply: index i is id `first_id + i`, the same record every time (`make(i)`). They are
    metadata only (their audio 404s), sort after every stored record, and share group, country and
    upload date: a query is matched against the block as a whole, except for `nr:` (an id range)
    and tags that differ per record (those are checked record by record)."""

    first_id: int
    count: int
    per_species: int
    names: tuple[str, ...]  # lower-case binomial of each block of `per_species` records
    make: Callable[[int], XcRecording] = field(compare=False)

    @property
    def ids(self) -> range:
        return range(self.first_id, self.first_id + self.count)

    def record(self, xc_id: int) -> XcRecording:
        return self.make(xc_id - self.first_id)

    def of_species(self, binomial: str) -> range:
        """The ids of one species' records (empty when the block has none of it)."""
        try:
            start = self.first_id + self.names.index(binomial.lower()) * self.per_species
        except ValueError:
            return range(0)
        return range(start, min(start + self.per_species, self.first_id + self.count))

    def species_count(self, ids: Sequence[int]) -> int:
        """How many species the records of `ids` (ascending) belong to."""
        if isinstance(ids, range):
            if not ids:
                return 0
            return (
                (ids[-1] - self.first_id) // self.per_species
                - (ids[0] - self.first_id) // self.per_species
                + 1
            )
        return len({(i - self.first_id) // self.per_species for i in ids})


@dataclass
class Truths:
    """Facts about the planted traps, for tests (keys are `xc:<id>` / `europeana:<id>`)."""

    exact_duplicates: list[tuple[str, str]] = field(default_factory=list)  # identical bytes
    near_duplicates: list[tuple[str, str]] = field(default_factory=list)  # same sound, re-encoded
    vbr_no_xing: str | None = None  # soundfile reads it short; its `length` is the truth
    id3_cover: str | None = None  # ~200 KB ID3v2 tag; soundfile's frame count overestimates
    hour_long: str | None = None
    short: list[str] = field(default_factory=list)  # under 3 s
    silent_tail: list[str] = field(default_factory=list)
    restricted_species: list[str] = field(default_factory=list)
    europeana_only_species: list[str] = field(default_factory=list)  # on xeno-canto only outside Germany
    non_birds: list[str] = field(default_factory=list)
    synonyms: dict[str, str] = field(default_factory=dict)  # Europeana's name -> xeno-canto's name
    unnamed_items: list[str] = field(default_factory=list)  # Europeana items whose title names no species
    non_taxon_titles: list[str] = field(default_factory=list)  # parse as binomials, genus no taxon
    agent_creators: list[str] = field(default_factory=list)  # Europeana items whose dcCreator is a reference
    dead_links: list[str] = field(default_factory=list)  # Europeana items whose edmIsShownBy rotted
    placeholders: list[str] = field(default_factory=list)  # xeno-canto: "Mystery mystery", "Sonus naturalis"
    hostile: list[str] = field(default_factory=list)
    # iNaturalist: sound keys by the trap they hold.
    inat_all_rights_reserved: list[str] = field(default_factory=list)  # license_code null
    inat_soundcloud: list[str] = field(default_factory=list)  # no file_url
    inat_not_species: list[str] = field(default_factory=list)  # genus-level and hybrid observations
    inat_subspecies: list[str] = field(default_factory=list)  # observed as a subspecies
    inat_m4a: list[str] = field(default_factory=list)  # AAC in m4a
    inat_login_only: list[str] = field(default_factory=list)  # the user has no name: credit the login


class Archive:
    """Everything the sandbox serves. Read freely; change only through `add` and `remove`."""

    def __init__(self) -> None:
        self.species: dict[str, Species] = {}
        self.xc: dict[int, XcRecording] = {}
        self.europeana: dict[str, EuropeanaItem] = {}
        self.inaturalist: dict[int, InatObservation] = {}
        self.wiki: dict[str, dict[str, WikiPage]] = {"de": {}, "en": {}}
        self.truths = Truths()
        self.generated: GeneratedXc | None = None
        self.grown = 0  # how many `grow` calls shaped it: the seed of the next one
        self._lock = threading.Lock()
        self._reindex()

    # -- reading -------------------------------------------------------------------------------
    def xc_sorted(self) -> list[XcRecording]:
        """xeno-canto recordings ordered by id (the order the API pages them in)."""
        return self._xc_sorted

    def xc_file(self, recordist_code: str, file_name: str) -> XcRecording | None:
        return self._xc_files.get((recordist_code, file_name))

    def europeana_media(self, media_name: str) -> EuropeanaItem | None:
        return self._media.get(media_name)

    def inat_sorted(self) -> list[InatObservation]:
        """iNaturalist observations ordered by id."""
        return self._inat_sorted

    def inat_sound(self, sound_id: int) -> InatSound | None:
        return self._inat_sounds.get(sound_id)

    def recording(self, key: str) -> XcRecording | EuropeanaItem | InatSound:
        """The record behind a key; KeyError when there is none (or it was removed)."""
        source, _, ident = key.partition(":")
        if source == "xc" and ident.isdigit() and int(ident) in self.xc:
            return self.xc[int(ident)]
        if source == "europeana" and ident in self.europeana:
            return self.europeana[ident]
        if source == "inaturalist" and ident.isdigit() and int(ident) in self._inat_sounds:
            return self._inat_sounds[int(ident)]
        raise KeyError(key)

    def keys_of(self, species: str) -> list[str]:
        """Every recording key of a species (by xeno-canto's name), both sources."""
        return [r.key for r in self._xc_sorted if r.name == species] + [
            i.key for i in self.europeana.values() if i.species == species
        ]

    # -- changing ------------------------------------------------------------------------------
    def add(
        self,
        *,
        species: Iterable[Species] = (),
        xc: Iterable[XcRecording] = (),
        europeana: Iterable[EuropeanaItem] = (),
        inaturalist: Iterable[InatObservation] = (),
        wiki: dict[str, list[WikiPage]] | None = None,
    ) -> None:
        with self._lock:
            self.species = {**self.species, **{s.name: s for s in species}}
            self.xc = {**self.xc, **{r.id: r for r in xc}}
            self.europeana = {**self.europeana, **{i.id: i for i in europeana}}
            self.inaturalist = {**self.inaturalist, **{o.id: o for o in inaturalist}}
            for lang, pages in (wiki or {}).items():
                self.wiki = {**self.wiki, lang: {**self.wiki.get(lang, {}), **{p.title: p for p in pages}}}
            self._reindex()

    def remove(self, keys: list[str]) -> list[str]:
        """Make recordings vanish upstream; returns the keys that existed. An iNaturalist sound takes
        its whole observation along (as when an observation loses research grade)."""
        with self._lock:
            gone = [key for key in keys if self._exists(key)]
            self.xc = {i: r for i, r in self.xc.items() if r.key not in gone}
            self.europeana = {i: item for i, item in self.europeana.items() if item.key not in gone}
            self.inaturalist = {
                i: o for i, o in self.inaturalist.items() if not {s.key for s in o.sounds} & set(gone)
            }
            self._reindex()
        return gone

    def _exists(self, key: str) -> bool:
        try:
            self.recording(key)
        except KeyError:
            return False
        return True

    def _reindex(self) -> None:
        self._xc_sorted = sorted(self.xc.values(), key=lambda r: r.id)
        self._xc_files = {(r.recordist_code, r.file_name): r for r in self._xc_sorted if r.file_name}
        self._media = {item.media_name: item for item in self.europeana.values()}
        self._inat_sorted = sorted(self.inaturalist.values(), key=lambda o: o.id)
        self._inat_sounds = {s.id: s for o in self._inat_sorted for s in o.sounds}
