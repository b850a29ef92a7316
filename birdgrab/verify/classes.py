"""Which of BirdNET's labels is which dataset class: the join `--verify` scores against.

A class joins BirdNET's label of the same scientific name, through the same synonym merge as the
classes (species.json's name and synonyms of the species); failing that, the label of the same
English name when exactly one has it. BirdNET's labels follow the eBird/Clements taxonomy and
spell eBird's English names, but its wheel carries no eBird codes, so the English name is the
bridge to eBird (`Species.taxon_ids.ebird` has nothing on BirdNET's side to meet). A class that
joins nothing is unverifiable: its windows are kept and listed as such.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from birdgrab.models import Species
from birdgrab.names import NameError_, canonical_binomial
from birdgrab.verify.model import Label


@dataclass(frozen=True)
class ClassJoin:
    """Dataset class label -> BirdNET label index, how each was joined, and the classes left out."""

    index: Mapping[str, int]
    how: Mapping[str, str]  # class label -> "scientific name" | "synonym" | "English name"
    unjoined: tuple[str, ...]  # class labels BirdNET has no label for: unverifiable

    def class_of(self) -> dict[int, str]:
        """BirdNET label index -> the dataset class it is."""
        return {index: label for label, index in self.index.items()}


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def join_classes(
    class_labels: Iterable[str], species_by_label: Mapping[str, Species], labels: list[Label]
) -> ClassJoin:
    """Join every class in `class_labels` (the noise class is not a species) to BirdNET's `labels`."""
    by_scientific = {_key(label.scientific_name): i for i, label in enumerate(labels)}
    english = Counter(_key(label.common_name) for label in labels)
    by_english = {_key(label.common_name): i for i, label in enumerate(labels)}
    index: dict[str, int] = {}
    how: dict[str, str] = {}
    unjoined = []
    for label in sorted(set(class_labels)):
        species = species_by_label.get(label)
        own = species.scientific_name if species else label.replace("_", " ")
        found = by_scientific.get(_key(own))
        if found is not None:
            index[label], how[label] = found, "scientific name"
            continue
        for synonym in species.synonyms if species else ():
            try:
                found = by_scientific.get(_key(canonical_binomial(synonym)))
            except NameError_:
                continue
            if found is not None:
                index[label], how[label] = found, "synonym"
                break
        if found is None and species and species.english_name and english[_key(species.english_name)] == 1:
            index[label], how[label] = by_english[_key(species.english_name)], "English name"
        elif found is None:
            unjoined.append(label)
    return ClassJoin(index, how, tuple(unjoined))
