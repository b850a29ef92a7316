"""Scientific names: canonical binomials from whatever an archive says, and class folder names.

Names from the APIs are data, never paths: `class_folder` only ever returns `Genus_species` made
of ASCII letters and one underscore.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

_GENUS = re.compile(r"^[A-Z][a-z]+$")
_SPACES = re.compile(r"\s+")
_EPITHET = re.compile(r"^[a-z][a-z-]*[a-z]$")
# Lower-case words that start an author citation rather than a subspecies epithet.
_AUTHOR_PARTICLES = frozenset(
    {"von", "van", "de", "del", "della", "der", "den", "du", "la", "le", "d", "da", "dos"}
)
_UNIDENTIFIED = frozenset(
    {"sp", "sp.", "spp", "spp.", "spec", "spec.", "cf", "cf.", "aff", "aff.", "indet", "indet."}
)
_HYBRID = frozenset({"x", "×"})
# Names archives file recordings under that are no species (docs/archives.md):
# xeno-canto's unidentified recordings (English name "Identity unknown") and its soundscapes.
PLACEHOLDERS = {
    "mystery mystery": "xeno-canto's placeholder for unidentified recordings",
    "sonus naturalis": "xeno-canto's placeholder for soundscapes",
}

# Why a text is not a species, as counted in catalog summaries.
NameKind = Literal["placeholder", "unidentified", "hybrid", "not a binomial", "not a taxon"]


class NameError_(ValueError):
    """The text is not a usable species name; `reason` says why (it is recorded, not raised to users)
    and `kind` sorts the reasons into a few counted groups."""

    def __init__(self, reason: str, kind: NameKind = "not a binomial"):
        super().__init__(reason)
        self.reason = reason
        self.kind: NameKind = kind


@dataclass(frozen=True)
class ScientificName:
    genus: str
    species: str
    subspecies: str | None = None

    @property
    def binomial(self) -> str:
        return f"{self.genus} {self.species}"


def parse_scientific_name(text: str) -> ScientificName:
    """Canonicalise a title such as 'Parus major major Linnaeus, 1758' to genus, species, subspecies.

    >>> parse_scientific_name("Turdus philomelos C. L. Brehm, 1831").binomial
    'Turdus philomelos'
    >>> parse_scientific_name("Parus major major Linnaeus, 1758").subspecies
    'major'

    Raises `NameError_` with a reason for 'Sylvia sp.', 'cf.', 'aff.', hybrids, xeno-canto's
    placeholders ('Mystery mystery', 'Sonus naturalis'), single words and non-Latin text.
    """
    if not isinstance(text, str):
        raise NameError_("no name given")
    cleaned = text if text.isascii() else unicodedata.normalize("NFKC", text)  # (ASCII is NFKC)
    cleaned = _SPACES.sub(" ", cleaned.replace("_", " ")).strip()
    if not cleaned:
        raise NameError_("no name given")
    words = cleaned.split(" ")
    if len(words) < 2:
        raise NameError_(f"not a binomial: {cleaned[:80]!r}")
    genus_word, species_word = words[0], words[1]
    rest = words[2:]
    if (placeholder := PLACEHOLDERS.get(f"{genus_word} {species_word}".lower())) is not None:
        raise NameError_(f"{placeholder}, not a species: {cleaned[:80]!r}", "placeholder")
    if species_word.lower() in _UNIDENTIFIED or genus_word.lower() in _UNIDENTIFIED:
        raise NameError_(f"not identified to species: {cleaned[:80]!r}", "unidentified")
    if species_word.lower() in _HYBRID or any(w.lower() in _HYBRID for w in rest[:1]):
        raise NameError_(f"hybrid, not a species: {cleaned[:80]!r}", "hybrid")
    genus = genus_word.capitalize() if genus_word.isascii() else genus_word
    species = species_word.lower() if species_word.isascii() else species_word
    if not _GENUS.match(genus) or not _EPITHET.match(species):
        raise NameError_(f"not a Latin binomial: {cleaned[:80]!r}")
    subspecies = None
    if rest and _EPITHET.match(rest[0]) and rest[0] not in _AUTHOR_PARTICLES:
        subspecies = rest[0]
    return ScientificName(genus, species, subspecies)


def parse_title(text: str) -> ScientificName:
    """The species a catalogue title names: the scientific name alone, or one of the `|`-separated
    parts, without a ` - remark` tail, as some German portals show Tierstimmenarchiv items.

    >>> parse_title("Waldkauz | Strix aluco - Lautfolge, Ruf").binomial
    'Strix aluco'

    Of several parts that parse, one written as a binomial (lower-case epithet) wins over a common
    name such as "Kleiner Buntspecht". Raises the most telling `NameError_` when no part parses.
    """
    if not isinstance(text, str):
        raise NameError_("no name given")
    parts = [part.split(" - ", 1)[0].strip() for part in text.split("|")]
    found: list[tuple[bool, ScientificName]] = []
    error: NameError_ | None = None
    for part in parts:
        try:
            name = parse_scientific_name(part)
        except NameError_ as exc:
            # A placeholder or a hybrid is the title's own verdict; a common name beside it is not.
            if error is None or (error.kind == "not a binomial" and exc.kind != "not a binomial"):
                error = exc
            continue
        words = part.split()
        found.append((len(parts) == 1 or words[1][:1].islower(), name))
    if found:
        return max(found, key=lambda pair: pair[0])[1]
    assert error is not None
    raise error


def canonical_binomial(text: str) -> str:
    """'turdus  PHILOMELOS' -> 'Turdus philomelos'. Raises `NameError_`."""
    return parse_scientific_name(text).binomial


def class_folder(scientific_name: str) -> str:
    """The dataset folder of a species: 'Turdus philomelos' -> 'Turdus_philomelos'.

    Only ASCII letters and one underscore ever come out; anything else raises `NameError_`.
    """
    name = parse_scientific_name(scientific_name)
    folder = f"{name.genus}_{name.species.replace('-', '')}"
    if not re.fullmatch(r"[A-Z][a-z]+_[a-z]+", folder):
        raise NameError_(f"cannot make a folder name from {scientific_name[:80]!r}")
    return folder
