"""Class ids, kept in manifests/class_ids.json: stable forever, never read back from the dataset.

A dataset built before the manifest existed has its ids only in dataset/classes.json; they are
taken from there once (the migration) and kept in the manifest from then on.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from birdgrab import manifests
from birdgrab.models import ClassIdsManifest
from birdgrab.storage import Storage

PUBLISHED = "classes.json"  # in the dataset folder


def load_class_ids(folder: Path, out: Storage) -> dict[str, int]:
    """label -> id from the manifest; for an older dataset, from its published classes.json."""
    manifest = manifests.load(Path(folder) / manifests.CLASS_IDS, ClassIdsManifest)
    if manifest is not None:
        return dict(manifest.ids)
    return _published_ids(out)


def _published_ids(out: Storage) -> dict[str, int]:
    ids: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError, ValueError, AttributeError, TypeError, KeyError):
        for class_id, info in json.loads(out.read_bytes(PUBLISHED).decode("utf-8")).items():
            ids[str(info["label"])] = int(class_id)
    return ids


def save_class_ids(folder: Path, ids: dict[str, int]) -> None:
    """Write the manifest when the ids changed (or it does not exist yet)."""
    path = Path(folder) / manifests.CLASS_IDS
    current = manifests.load(path, ClassIdsManifest)
    ordered = dict(sorted(ids.items(), key=lambda kv: kv[1]))
    if current is None or current.ids != ordered:
        manifests.save(path, manifests.new_manifest(ClassIdsManifest, {}, ids=ordered))
