"""Reading and writing manifests: validated on load, written atomically, never silently replaced.

A manifest that is malformed, of the wrong kind, or from a newer schema is a `ManifestError`
(exit 2) naming the file; it is left untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from birdgrab import __version__
from birdgrab.errors import ManifestError
from birdgrab.files import atomic_write_bytes
from birdgrab.models import SCHEMA_VERSION, ManifestHeader, SpeciesManifest

M = TypeVar("M", bound=ManifestHeader)
E = TypeVar("E", bound=BaseModel)

SPECIES = "species.json"
SELECTION = "selection.json"
DOWNLOADS = "downloads.json"
CHUNKS = "chunks.json"
CLASS_IDS = "class_ids.json"


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def new_manifest(model: type[M], parameters: dict[str, Any], **items: Any) -> M:
    return model(
        schema_version=SCHEMA_VERSION,
        generated_at=utc_now(),
        birdgrab_version=__version__,
        parameters=parameters,
        **items,
    )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "top level"
    return f"{where}: {err['msg']}"


class _Envelope(BaseModel):
    """Just what decides whether a file is ours to read; everything else is ignored here."""

    model_config = ConfigDict(extra="ignore", strict=True)
    schema_version: int
    kind: str | None = None


def load(path: Path, model: type[M]) -> M | None:
    """Load a manifest, or None if the file does not exist. Raises ManifestError otherwise.

    Parsing and validation happen in pydantic's Rust core (`model_validate_json`): several times
    faster than `json.loads` plus `model_validate` on catalogues of tens of thousands of recordings.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
    try:
        envelope = _Envelope.model_validate_json(raw)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise ManifestError(
                f"{path} is not valid JSON; fix or remove it (it was left untouched)"
            ) from None
        raise ManifestError(f"{path} has no valid schema_version; it is not a birdgrab manifest") from None
    if envelope.schema_version > SCHEMA_VERSION:
        raise ManifestError(
            f"{path} has schema_version {envelope.schema_version}, newer than this birdgrab ({__version__}) "
            f"understands ({SCHEMA_VERSION}); upgrade birdgrab"
        )
    expected_kind = model.model_fields["kind"].default
    if envelope.kind != expected_kind:
        raise ManifestError(f"{path} is a {envelope.kind!r} manifest, expected {expected_kind!r}")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ManifestError(f"{path} has invalid content at {_first_error(exc)}") from None


def dump_bytes(manifest: ManifestHeader) -> bytes:
    """Deterministic JSON: fields in model order, items in the (sorted) order they were built,
    two-space indent, UTF-8, trailing newline."""
    return manifest.model_dump_json(indent=2).encode("utf-8") + b"\n"


def save(path: Path, manifest: ManifestHeader) -> None:
    """Write a manifest atomically (temporary file, fsync, rename)."""
    atomic_write_bytes(Path(path), dump_bytes(manifest))


def load_species(folder: Path) -> SpeciesManifest | None:
    return load(Path(folder) / SPECIES, SpeciesManifest)


class Ledger(Generic[M, E]):
    """A manifest of per-item entries (keyed by recording key) plus an append-only journal.

    `record` appends one fsynced JSON line per finished item, so a crash loses only the items in
    flight and bookkeeping costs O(1) per item however large the manifest; `compact` folds the
    journal into the manifest atomically. On load the journal is replayed; a line torn by a crash
    is skipped (that item is simply done again).
    """

    def __init__(self, folder: Path, name: str, model: type[M], entry_model: type[E], field: str = "entries"):
        self.path = Path(folder) / name
        self.journal_path = self.path.with_suffix(".journal")
        self._model, self._entry_model, self._field = model, entry_model, field
        manifest = load(self.path, model)
        self.loaded: M | None = manifest  # for the manifest's other fields
        self.entries: dict[str, E] = dict(getattr(manifest, field)) if manifest else {}
        self._journal: IO[bytes] | None = None
        with contextlib.suppress(FileNotFoundError):
            for line in self.journal_path.read_bytes().splitlines():
                try:
                    entry = entry_model.model_validate_json(line)
                except ValueError:
                    continue
                self.entries[entry.key] = entry  # type: ignore[attr-defined]

    def record(self, entry: E) -> None:
        """Keep `entry` and append it to the journal, fsynced before returning."""
        os.fsync(self._append(entry))

    async def record_async(self, entry: E) -> None:
        """`record` for code on an event loop: the entry is kept and written at once, but the fsync
        runs in a thread, so the loop (every transfer on it) does not stall on the disk."""
        await asyncio.to_thread(os.fsync, self._append(entry))

    def _append(self, entry: E) -> int:
        """Keep `entry` and write its journal line; returns the journal's file descriptor."""
        self.entries[entry.key] = entry  # type: ignore[attr-defined]
        if self._journal is None:
            self.journal_path.parent.mkdir(parents=True, exist_ok=True)
            self._journal = open(self.journal_path, "ab")  # noqa: SIM115 - closed by compact()
        self._journal.write(entry.model_dump_json().encode() + b"\n")
        self._journal.flush()
        return self._journal.fileno()

    def forget(self, key: str) -> None:
        """Drop an entry (takes effect at the next compact)."""
        self.entries.pop(key, None)

    def compact(self, parameters: dict[str, Any], **fields: Any) -> None:
        """Write the manifest atomically, then drop the journal it now contains."""
        entries = dict(sorted(self.entries.items()))
        save(self.path, new_manifest(self._model, parameters, **{self._field: entries}, **fields))
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.unlink()
