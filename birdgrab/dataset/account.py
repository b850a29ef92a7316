"""The account of how a dataset was made (`birdgrab.dataset.provenance`), in words: a sentence per
choice, what it was made from, and the command line that makes the same choices. Read by
`birdgrab stats`, the report and the export's dataset card.

    >>> from birdgrab.dataset import ChunkOptions
    >>> from birdgrab.dataset.provenance import account
    >>> command_line(account(ChunkOptions(chunk_s=5.0)))[:4]
    ['--sample-rate', '32000', '--chunk-seconds', '5']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.provenance import choices, lookup, recorded


def command_line(made: Mapping[str, Any], options_type: type = ChunkOptions) -> list[str]:
    """The command-line words that make the recorded choices (defaults included: nothing is implied)."""
    words: list[str] = []
    for _, declared in choices(options_type):
        found, value = lookup(made, declared.key)
        if found:
            words += declared.tokens(declared.flag, declared.from_json(value))
    return words


def describe(made: Mapping[str, Any], options_type: type = ChunkOptions) -> list[str]:
    """The account as sentences, one per choice that has something to say: what the files hold first,
    then which rows the dataset keeps and how they are split (each in field order)."""
    sentences = []
    declared_choices = choices(options_type)
    for _, declared in sorted(declared_choices, key=lambda item: item[1].effect != "bytes"):
        found, value = lookup(made, declared.key)
        if found and declared.says is not None:
            sentence = declared.says(declared.from_json(value), made)
            if sentence:
                sentences.append(sentence)
    return sentences


def made_from_sentence(made: Mapping[str, Any]) -> str | None:
    """'Made from the catalogue of 2026-12-05 (xeno-canto: grp:birds cnt:germany; ...), filtered with ...'."""
    origin = made.get("made_from")
    if not isinstance(origin, Mapping):
        return None
    catalogue = origin.get("catalogue") or {}
    archives = "; ".join(
        f"{archive}: {_queries(queries)}" for archive, queries in (catalogue.get("archives") or {}).items()
    )
    when = str(catalogue.get("generated_at") or "?")[:10]
    species_file = catalogue.get("species_file")
    listed = f", the species of {species_file.get('name')}" if isinstance(species_file, Mapping) else ""
    chosen = ", ".join(
        f"{name} {', '.join(map(str, value)) if isinstance(value, list) else value}"
        for name, value in (origin.get("filter") or {}).items()
        if value not in (None, False, [], "")
    )
    return (
        f"Made from the catalogue listed on {when} ({archives or 'no archive named'}{listed}), "
        f"filtered with {chosen or 'the defaults'}."
    )


def _queries(queries: Any) -> str:
    if not isinstance(queries, list):
        return str(queries)
    return ", ".join(queries) if len(queries) <= 3 else f"{len(queries)} queries, one per species"


def account_lines(made: Mapping[str, Any], file_name: str = "dataset.json") -> list[str]:
    """The whole account for people (the card's "How it was made", `birdgrab stats`): a sentence per
    choice, what it was made from, and how to make the same choices."""
    lines = describe(made)
    if (origin := made_from_sentence(made)) is not None:
        lines.append(origin)
    if not recorded(made):
        lines.append(
            f"This {file_name} was written by birdgrab {made.get('birdgrab_version', '?')}, which recorded "
            "only the sample rate, chunk length, gate and split (and 'fixed' windows whatever was used)."
        )
    lines.append(
        f"The same choices: `birdgrab chunk --like {file_name}`, i.e. `birdgrab chunk {' '.join(command_line(made))}`."
    )
    return lines
