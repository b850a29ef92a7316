"""Scientific names: canonical binomials from whatever an archive says, and class folder names.

Names from the APIs are data, never paths: `class_folder` only ever returns `Genus_species` made
of ASCII letters and one underscore.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_GENUS = re.compile(r"^[A-Z][a-z]+$")
_EPITHET = re.compile(r"^[a-z][a-z-]*[a-z]$")
# Lower-case words that start an author citation rather than a subspecies epithet.
_AUTHOR_PARTICLES = frozenset(
    {"von", "van", "de", "del", "della", "der", "den", "du", "la", "le", "d", "da", "dos"}
)
_UNIDENTIFIED = frozenset(
    {"sp", "sp.", "spp", "spp.", "spec", "spec.", "cf", "cf.", "aff", "aff.", "indet", "indet."}
)
_HYBRID = frozenset({"x", "×"})


class NameError_(ValueError):
    """The text is not a usable species name; `reason` says why (it is recorded, not raised to users)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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

    Raises `NameError_` with a reason for 'Sylvia sp.', single words, hybrids and non-Latin text.
    """
    if not isinstance(text, str):
        raise NameError_("no name given")
    cleaned = unicodedata.normalize("NFKC", text).replace("_", " ")
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if not cleaned:
        raise NameError_("no name given")
    words = cleaned.split(" ")
    if len(words) < 2:
        raise NameError_(f"not a binomial: {cleaned[:80]!r}")
    genus_word, species_word = words[0], words[1]
    rest = words[2:]
    if species_word.lower() in _UNIDENTIFIED:
        raise NameError_(f"not identified to species: {cleaned[:80]!r}")
    if species_word.lower() in _HYBRID or any(w.lower() in _HYBRID for w in rest[:1]):
        raise NameError_(f"hybrid, not a species: {cleaned[:80]!r}")
    genus = genus_word.capitalize() if genus_word.isascii() else genus_word
    species = species_word.lower() if species_word.isascii() else species_word
    if not _GENUS.match(genus) or not _EPITHET.match(species):
        raise NameError_(f"not a Latin binomial: {cleaned[:80]!r}")
    subspecies = None
    if rest and _EPITHET.match(rest[0]) and rest[0] not in _AUTHOR_PARTICLES:
        subspecies = rest[0]
    return ScientificName(genus, species, subspecies)


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
