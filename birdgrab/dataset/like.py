"""`--like DATASET_JSON`: the chunk options a dataset.json records, under those given beside it.

birdgrab chunk --like published/dataset.json                 # the same choices
birdgrab chunk --like published/dataset.json --split 70/15/15  # the same, but another split
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Collection
from pathlib import Path

from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.provenance import choices, options_from_account, recorded
from birdgrab.dataset.writers import DATASET
from birdgrab.errors import UsageError

log = logging.getLogger(__name__)


def read_account(path: Path) -> dict:
    """A dataset.json (or the dataset folder holding one), or a UsageError saying what is wrong."""
    path = Path(path)
    if path.is_dir():
        path = path / DATASET
    try:
        made = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--like: no {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--like: {path} is not a dataset.json ({exc})") from None
    if not isinstance(made, dict) or "sample_rate" not in made:
        raise UsageError(f"--like: {path} is not a dataset.json (no sample_rate)")
    return made


def options_like(path: Path, given: ChunkOptions, given_flags: Collection[str]) -> ChunkOptions:
    """`given`'s settings and the choices whose flags were given on the command line; every other
    choice as `path` records it."""
    made = read_account(path)
    values, missing = options_from_account(ChunkOptions, made, str(path))
    if not recorded(made):
        log.warning(
            "--like: %s was written by birdgrab %s, which recorded only some choices (and 'fixed' windows "
            "whatever was used); these keep their defaults unless given: %s",
            path,
            made.get("birdgrab_version", "?"),
            ", ".join(missing) or "none",
            extra={"event": "chunk.like.partial", "missing": missing},
        )
        values.pop("windows", None)
    chosen = {
        name: value
        for name, value in values.items()
        if not any(flag in given_flags for flag in dict(choices(ChunkOptions))[name].flags)
    }
    return dataclasses.replace(given, **chosen)
