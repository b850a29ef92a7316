"""The recordings store: `manifests/recordings.sqlite`, every recording the archives listed.

Why SQLite (standard library) and not a JSON document: a catalogue of a million recordings is about
1.4 GB as JSON and 16 GB as Python objects. In SQLite it stays on disk; readers take rows by key or
by species, and counts and groupings run in C. A catalog run is one transaction, so a run killed at
any moment leaves the previous catalogue exactly as it was (what the JSON manifest's atomic rename
did) while its listing is written page by page.

Every `Recording` field is a column of the `recordings` table (lists as JSON text, dates as ISO
text), so the table is a document pandas reads as it is:

    >>> import sqlite3, pandas as pd  # doctest: +SKIP
    >>> pd.read_sql("SELECT * FROM recordings", sqlite3.connect("manifests/recordings.sqlite"))  # doctest: +SKIP

A `recordings.json` written by earlier versions is moved into the store the first time a command
opens the folder, and kept as `recordings.json.migrated`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import operator
import os
import sqlite3
import types
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from birdgrab import __version__, manifests
from birdgrab.errors import ManifestError
from birdgrab.hold_points import hold_point
from birdgrab.models import IncompleteListing, Recording, RecordingsManifest, SkippedItem
from birdgrab.sources import CatalogBatch

log = logging.getLogger(__name__)

STORE = "recordings.sqlite"
LEGACY = "recordings.json"  # the manifest of earlier versions, migrated on first open
MIGRATED = "recordings.json.migrated"
STORE_SCHEMA_VERSION = 1
KIND = "recordings"
_ROWS_PER_STATEMENT = 500  # keys per `IN (...)` lookup, rows per executemany while listing

FIELDS: tuple[str, ...] = tuple(Recording.model_fields)
# What a listing says about a recording: a difference in any of these is a change of the catalogue.
# first_seen/last_seen move on every listing; species is the catalog's own grouping, set afterwards.
CONTENT: tuple[str, ...] = tuple(f for f in FIELDS if f not in ("first_seen", "last_seen", "species"))


def _base_type(annotation: Any) -> Any:
    """`float | None` -> float, `list[str]` -> list."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) or annotation


_TYPES = {name: _base_type(f.annotation) for name, f in Recording.model_fields.items()}
_LISTS = tuple(i for i, name in enumerate(FIELDS) if _TYPES[name] is list)
_SQL_TYPES = {float: "REAL", int: "INTEGER", bool: "INTEGER"}


def _q(name: str) -> str:
    """A quoted column name (`group` is an SQL keyword)."""
    return f'"{name}"'


_COLUMNS = ", ".join(map(_q, FIELDS))
_COLUMN_DEF = {
    name: f"{_q(name)} {_SQL_TYPES.get(_TYPES[name], 'TEXT')}{' PRIMARY KEY' if name == 'key' else ''}"
    for name in FIELDS
}
_COLUMN_DEFS = ", ".join(_COLUMN_DEF.values())
# A listed recording as a new row: filed under its own name until the catalog assigns classes.
_LISTED_AS_NEW = _COLUMNS.replace('"species"', 'coalesce("species", "scientific_name")')
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recordings ({_COLUMN_DEFS});
CREATE INDEX IF NOT EXISTS recordings_by_species ON recordings (species, key);
CREATE INDEX IF NOT EXISTS recordings_by_name ON recordings (scientific_name, source, "group", english_name);
CREATE INDEX IF NOT EXISTS recordings_vanished ON recordings (key) WHERE vanished;
CREATE TABLE IF NOT EXISTS skipped (key TEXT NOT NULL, name TEXT NOT NULL, reason TEXT NOT NULL, kind TEXT);
"""
# Created once every column exists (a store of an earlier version gains new columns first).
_INDEXES = """
CREATE INDEX IF NOT EXISTS recordings_by_agent ON recordings (recordist_id) WHERE recordist_id IS NOT NULL;
"""


def _guarded(method: Callable) -> Callable:
    """Damage SQLite finds while working (a truncated or overwritten file) is a ManifestError naming
    the file, never a traceback; the transaction in flight is rolled back, the file left as it was."""

    def damaged(self: RecordingStore | CatalogRun, exc: sqlite3.Error) -> ManifestError:
        return ManifestError(f"{self.path} cannot be read ({exc}); the catalogue store is damaged")

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self: Any, *args: Any, **kwargs: Any) -> Iterator:
            try:
                yield from method(self, *args, **kwargs)
            except sqlite3.DatabaseError as exc:
                raise damaged(self, exc) from None

        return generator

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise damaged(self, exc) from None

    return wrapper


_DATES = tuple(i for i, name in enumerate(FIELDS) if _TYPES[name] in (date, datetime))
_BOOLS = tuple(i for i, name in enumerate(FIELDS) if _TYPES[name] is bool)
_FIELD_VALUES = operator.itemgetter(*FIELDS)


@functools.lru_cache(maxsize=4096)
def _iso(value: date | datetime) -> str:
    return value.isoformat()


@functools.lru_cache(maxsize=4096)
def _json_list(items: tuple[str, ...]) -> str:
    return json.dumps(items, ensure_ascii=False)


@functools.lru_cache(maxsize=4096)
def _text_list(text: str | None) -> tuple[str, ...]:
    """A list column (`_json_list`) read back, immutable: a few values repeat a million times."""
    items = json.loads(text) if text else []
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"not a list of texts: {text[:80]!r}")
    return tuple(items)


def _to_row(recording: Recording) -> list:
    """A recording as column values: lists as JSON, dates as ISO text, booleans as 0/1.
    (A listing repeats a few dates and lists, such as `["song"]`, a million times: they are
    converted once each.)"""
    row = list(_FIELD_VALUES(recording.__dict__))
    for index in _LISTS:
        row[index] = _json_list(tuple(row[index]))
    for index in _DATES:
        if row[index] is not None:
            row[index] = _iso(row[index])
    for index in _BOOLS:
        row[index] = int(row[index])
    return row


def _from_row(row: Sequence[Any]) -> Recording:
    values = dict(zip(FIELDS, row, strict=True))
    for index in _LISTS:
        name = FIELDS[index]
        values[name] = json.loads(values[name]) if values[name] else []
    return Recording.model_validate(values)


class FilterRow(NamedTuple):
    """What `filter` looks at of a recording: a few columns instead of a whole `Recording`."""

    key: str
    source: str
    source_id: str
    species: str
    licence: str | None
    quality: str | None
    length_s: float | None
    types: tuple[str, ...]
    background_species: tuple[str, ...]
    downloadable: bool
    not_downloadable_reason: str | None


_FILTER_ROW_TYPES: tuple[type | tuple[type, ...], ...] = (
    *(str,) * 4,
    (str, type(None)),
    (str, type(None)),
    (float, int, type(None)),
    tuple,
    tuple,
    int,
    (str, type(None)),
)


@dataclass
class NameSummary:
    """What the recordings filed under one scientific name say about its species."""

    per_source: Counter[str] = field(default_factory=Counter)
    groups: dict[str, set[str]] = field(
        default_factory=dict
    )  # archive name -> the groups it files them under
    english_names: Counter[str] = field(default_factory=Counter)


@dataclass
class MergeResult:
    added: int = 0
    updated: int = 0
    changed: int = 0  # known recordings whose listed content differs from what the store had


class RecordingStore:
    """The catalogue of recordings: one SQLite file per manifests folder. Use as a context manager.

    >>> with RecordingStore.open(Path("manifests"), create=True) as store:  # doctest: +SKIP
    ...     store.count(), store.get("xc:254462")
    """

    def __init__(self, path: Path, db: sqlite3.Connection):
        self.path = path
        self._db = db

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: Path, *, create: bool = False) -> RecordingStore | None:
        """The folder's store (a `recordings.json` of earlier versions is migrated first), or None
        when there is no catalogue yet and `create` is false. A damaged store or one from a newer
        birdgrab is a ManifestError naming the file, which is left untouched."""
        folder = Path(folder)
        path = folder / STORE
        legacy = folder / LEGACY
        if not path.exists():
            if legacy.exists():
                _migrate(legacy, path)
            elif not create:
                return None
            else:
                folder.mkdir(parents=True, exist_ok=True)
        if legacy.exists():  # a migration that stopped between its two renames
            legacy.replace(folder / MIGRATED)
        return cls(path, _connect(path))

    def close(self) -> None:
        self._db.close()

    def delete(self) -> None:
        """Close and remove the store's files (what a failed first catalog run leaves behind)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def __enter__(self) -> RecordingStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the header ---------------------------------------------------------------------------------
    @_guarded
    def _meta(self, name: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters of the last catalog run ({} before the first)."""
        return self._meta("parameters") or {}

    @property
    def generated_at(self) -> str | None:
        return self._meta("generated_at")

    @property
    def selection_stamp(self) -> dict[str, Any] | None:
        """What the last `filter` noted about the selection.json it wrote (`note_selection`)."""
        return self._meta("selection")

    @property
    def species_note(self) -> dict[str, Any] | None:
        """What the last catalog noted about the species.json it left (`known_species`)."""
        return self._meta("species_note")

    @_guarded
    def selected(self) -> str | None:
        """The chosen species and recordings as the last `filter` noted them (`note_selection`): the
        JSON of selection.json without its per-recording drop reasons."""
        row = self._db.execute("SELECT value FROM meta WHERE name = 'selected'").fetchone()
        return row[0] if row else None

    @_guarded
    def note_selection(self, stamp: dict[str, Any], selected: str) -> None:
        """Note, in one transaction, the stamp of the selection.json `filter` wrote and what it chose."""
        with self._db:
            self._db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [("selection", json.dumps(stamp, ensure_ascii=False)), ("selected", selected)],
            )

    @property
    def revision(self) -> int:
        """Bumped by every catalog run that changed recordings or species: equal revisions, same catalogue."""
        return int(self._meta("revision") or 0)

    # -- reading -----------------------------------------------------------------------------------
    @_guarded
    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM recordings").fetchone()[0]

    @_guarded
    def counts(self) -> dict[str, int]:
        """Recordings per source."""
        rows = self._db.execute("SELECT source, count(*) FROM recordings GROUP BY source ORDER BY source")
        return dict(rows.fetchall())

    @_guarded
    def downloadable(self) -> int:
        return self._db.execute("SELECT count(*) FROM recordings WHERE downloadable").fetchone()[0]

    @_guarded
    def vanished(self) -> int:
        return self._db.execute("SELECT count(*) FROM recordings WHERE vanished").fetchone()[0]

    @_guarded
    def skipped(self) -> list[SkippedItem]:
        """What the last catalog run listed but could not turn into recordings, and why."""
        rows = self._db.execute("SELECT key, name, reason, kind FROM skipped ORDER BY key, reason, name")
        return [SkippedItem(key=k, name=n, reason=r, kind=kind) for k, n, r, kind in rows]

    @_guarded
    def incomplete_listings(self) -> list[IncompleteListing]:
        """The listings of the last catalog run that came up short (nothing vanished from them)."""
        return [IncompleteListing.model_validate(item) for item in self._meta("incomplete_listings") or []]

    @_guarded
    def agent_names(self) -> dict[str, str]:
        """Recordists earlier runs resolved from references (agent URI -> name, or the credited
        provider): not asked about again."""
        query = "SELECT recordist_id, recordist FROM recordings WHERE recordist_id IS NOT NULL"
        return {agent: name or "" for agent, name in self._db.execute(query)}

    @_guarded
    def names_of(self, keys: Iterable[str]) -> dict[str, str]:
        """key -> scientific name, for the keys that are in the store."""
        found: dict[str, str] = {}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), _ROWS_PER_STATEMENT):
            part = wanted[start : start + _ROWS_PER_STATEMENT]
            marks = ", ".join("?" * len(part))
            query = f"SELECT key, scientific_name FROM recordings WHERE key IN ({marks})"
            found.update(self._db.execute(query, part).fetchall())
        return found

    @_guarded
    def named(self, names: set[str]) -> set[str]:
        """Which of `names` still have recordings."""
        query = "SELECT 1 FROM recordings WHERE scientific_name = ? LIMIT 1"
        return {name for name in names if self._db.execute(query, (name,)).fetchone()}

    @_guarded
    def skipped_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM skipped").fetchone()[0]

    @_guarded
    def skipped_by_kind(self) -> dict[str, int]:
        """How many archive items were skipped, by the kind of their reason (placeholder, ...)."""
        rows = self._db.execute("SELECT coalesce(kind, 'other'), count(*) FROM skipped GROUP BY 1 ORDER BY 1")
        return {kind: count for kind, count in rows}

    def get(self, key: str) -> Recording | None:
        return self.get_many([key]).get(key)

    @_guarded
    def get_many(self, keys: Iterable[str]) -> dict[str, Recording]:
        """The recordings of `keys` that exist, by key (looked up a few hundred at a time)."""
        found: dict[str, Recording] = {}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), _ROWS_PER_STATEMENT):
            part = wanted[start : start + _ROWS_PER_STATEMENT]
            marks = ", ".join("?" * len(part))
            for row in self._db.execute(f"SELECT {_COLUMNS} FROM recordings WHERE key IN ({marks})", part):
                found[row[0]] = self._checked(row)
        return found

    @_guarded
    def __iter__(self) -> Iterator[Recording]:
        """Every recording, by key; one at a time, never all at once."""
        for row in self._db.execute(f"SELECT {_COLUMNS} FROM recordings ORDER BY key"):
            yield self._checked(row)

    def _checked(self, row: Sequence[Any]) -> Recording:
        try:
            return _from_row(row)
        except (ValidationError, ValueError) as exc:
            raise ManifestError(f"{self.path} has an invalid recording {row[0]!r}: {exc}") from None

    @_guarded
    def filter_rows(self) -> Iterator[FilterRow]:
        """What `filter` needs of every recording, ordered by species (its class), then key."""
        columns = ", ".join(map(_q, FilterRow._fields))
        query = f"SELECT {columns} FROM recordings ORDER BY species, key"
        lists = [FilterRow._fields.index("types"), FilterRow._fields.index("background_species")]
        for row in self._db.execute(query):
            values = list(row)
            try:
                for index in lists:
                    values[index] = _text_list(values[index])
                valid = all(map(isinstance, values, _FILTER_ROW_TYPES))
            except (ValueError, TypeError):
                valid = False
            if not valid:
                raise ManifestError(f"{self.path} has an invalid recording {row[0]!r}")
            yield FilterRow(*values)

    @_guarded
    def name_summaries(self) -> dict[str, NameSummary]:
        """Per scientific name: recordings per source, xeno-canto groups, English names (one index scan)."""
        summaries: dict[str, NameSummary] = {}
        query = (
            'SELECT scientific_name, source, "group", english_name, count(*) FROM recordings'
            ' GROUP BY scientific_name, source, "group", english_name'
        )
        for name, source, group, english, count in self._db.execute(query):
            summary = summaries.setdefault(name, NameSummary())
            summary.per_source[source] += count
            if group:
                summary.groups.setdefault(source, set()).add(group)
            if english:
                summary.english_names[english] += count
        return summaries

    # -- writing -----------------------------------------------------------------------------------
    @_guarded
    def catalog_run(self) -> CatalogRun:
        """Start a catalog run: one transaction until `CatalogRun.commit` (or rollback on error)."""
        return CatalogRun(self)

    @classmethod
    def create_from(
        cls, folder: Path, recordings: Iterable[Recording], parameters: dict | None = None
    ) -> None:
        """Write a store holding exactly `recordings` (tests and tools; the catalog merges instead)."""
        with cls.open(folder, create=True) as store:  # type: ignore[union-attr]
            run = store.catalog_run()
            run.replace_all(recordings)
            run.commit(parameters or {}, [], changed=True)


def _connect(path: Path) -> sqlite3.Connection:
    """Open (and create the tables of) a store; damage or a newer schema is a ManifestError."""
    size = path.stat().st_size if path.exists() else 0
    wal = Path(f"{path}-wal")
    settled = not wal.exists() or wal.stat().st_size == 0  # every page is in the file itself
    try:
        db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
        page_size, pages = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count"))
        if settled and size < page_size * pages:
            raise sqlite3.DatabaseError(f"the file is {size} bytes, shorter than its {pages} pages")
        db.execute("PRAGMA journal_mode = WAL")  # readers never wait for a catalog run
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA cache_size = -65536")  # 64 MB of pages
        db.executescript(_SCHEMA)
        found = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        kind = db.execute("SELECT value FROM meta WHERE name = 'kind'").fetchone()
        columns = {row[1] for row in db.execute("PRAGMA table_info(recordings)")}
    except sqlite3.DatabaseError as exc:
        raise ManifestError(
            f"{path} is not a birdgrab recordings store ({exc}); it was left untouched"
        ) from None
    if found is None:
        with db:
            db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?)",
                [("schema_version", json.dumps(STORE_SCHEMA_VERSION)), ("kind", json.dumps(KIND))],
            )
    else:
        try:
            version = int(json.loads(found[0]))
        except (TypeError, ValueError):
            raise ManifestError(f"{path} has no valid schema_version; it is not a birdgrab store") from None
        if version > STORE_SCHEMA_VERSION:
            raise ManifestError(
                f"{path} has schema_version {version}, newer than this birdgrab ({__version__}) "
                f"understands ({STORE_SCHEMA_VERSION}); upgrade birdgrab"
            )
        if kind is None or json.loads(kind[0]) != KIND or "key" not in columns:
            raise ManifestError(f"{path} is not a birdgrab recordings store; it was left untouched")
    _add_new_columns(db, columns)
    return db


def _add_new_columns(db: sqlite3.Connection, columns: set[str]) -> None:
    """A store written before a field was added to `Recording` or `SkippedItem` gains its column
    (empty: what the field's default says) and the indexes over it."""
    skipped = {row[1] for row in db.execute("PRAGMA table_info(skipped)")}
    missing = [f"recordings ADD COLUMN {_COLUMN_DEF[n]}" for n in FIELDS if n not in columns]
    missing += [f"skipped ADD COLUMN {n} TEXT" for n in SkippedItem.model_fields if n not in skipped]
    if missing:
        with db:
            for change in missing:
                db.execute(f"ALTER TABLE {change}")
    db.executescript(_INDEXES)


def _migrate(legacy: Path, path: Path) -> None:
    """Move a `recordings.json` of an earlier version into a new store (built aside, then renamed)."""
    manifest = manifests.load(legacy, RecordingsManifest)  # a bad one stops here, untouched
    assert manifest is not None
    building = path.with_name(path.name + ".migrating")
    for leftover in (building, *(building.with_name(building.name + s) for s in ("-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    store = RecordingStore(building, _connect(building))
    try:
        run = store.catalog_run()
        run.replace_all(manifest.recordings.values())
        run.commit(
            manifest.parameters,
            manifest.skipped,
            manifest.incomplete_listings,
            changed=True,
            generated_at=manifest.generated_at,
        )
    finally:
        store.close()
    os.replace(building, path)
    legacy.replace(legacy.with_name(MIGRATED))
    log.warning(
        "moved %d recordings from %s into %s (the old file is kept as %s)",
        len(manifest.recordings),
        legacy,
        path,
        MIGRATED,
        extra={"event": "store.migrated"},
    )


class StagedBatch(CatalogBatch):
    """A catalog batch that writes what archives list into the run's staging table, page by page,
    so a million listed recordings never sit in memory."""

    def __init__(self, db: sqlite3.Connection):
        super().__init__()
        self._db = db
        self._pending: dict[str, list] = {}
        self._sources: set[str] = set()

    def add(self, recording: Recording) -> None:
        # Results shift between pages: the first copy of a record wins (here and INSERT OR IGNORE).
        if recording.key not in self._pending:
            self._pending[recording.key] = _to_row(recording)
            self._sources.add(recording.source)
            if len(self._pending) >= _ROWS_PER_STATEMENT:
                self.flush()

    def __contains__(self, key: object) -> bool:
        if key in self._pending:
            return True
        return self._db.execute("SELECT 1 FROM temp.listed WHERE key = ?", (key,)).fetchone() is not None

    @property
    def count(self) -> int:
        return self._listed("count(*)")[0][0]

    def _listed(self, columns: str, distinct: bool = False) -> list[tuple]:
        self.flush()
        marks = ", ".join("?" * len(self._sources))
        query = (
            f"SELECT {'DISTINCT ' if distinct else ''}{columns} FROM temp.listed WHERE source IN ({marks})"
        )
        return self._db.execute(query, sorted(self._sources)).fetchall()

    def names(self) -> set[str]:
        return {name for (name,) in self._listed("scientific_name", distinct=True)}

    def entries(self) -> list[tuple[str, str, str]]:
        return self._listed("key, scientific_name, original_name")  # type: ignore[return-value]

    def drop(self, key: str) -> None:
        self.flush()
        self._db.execute("DELETE FROM temp.listed WHERE key = ?", (key,))

    def flush(self) -> None:
        marks = ", ".join("?" * len(FIELDS))
        self._db.executemany(
            f"INSERT OR IGNORE INTO temp.listed ({_COLUMNS}) VALUES ({marks})", self._pending.values()
        )
        self._pending.clear()


class CatalogRun:
    """One catalog run against the store, in one transaction: the archives' listings are staged,
    then merged (first_seen kept), vanished recordings marked, classes assigned, and committed."""

    def __init__(self, store: RecordingStore):
        self._store = store
        self.path = store.path
        self._db = store._db
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute(f"CREATE TEMP TABLE listed ({_COLUMN_DEFS})")
        self._batches: list[StagedBatch] = []

    def batch(self) -> StagedBatch:
        """Where one archive query puts what it lists."""
        batch = StagedBatch(self._db)
        self._batches.append(batch)
        return batch

    def _flush(self) -> None:
        for batch in self._batches:
            batch.flush()

    @_guarded
    def discard(self, source: str) -> None:
        """Forget what a source listed before it failed: a failed listing changes nothing."""
        self._flush()
        self._db.execute("DELETE FROM temp.listed WHERE source = ?", (source,))

    @_guarded
    def listed_keys(self, where: str = "1", parameters: Sequence[Any] = ()) -> Iterator[tuple[str, str]]:
        """(key, scientific name) of the recordings listed in this run (and still in the store)."""
        self._flush()
        query = (
            f"SELECT r.key, r.scientific_name FROM recordings r JOIN temp.listed l USING (key) WHERE {where}"
        )
        yield from self._db.execute(query, parameters)

    @_guarded
    def merge(self) -> MergeResult:
        """Add new recordings, update known ones (first_seen kept; a renamed one loses its class)."""
        self._flush()
        db = self._db
        result = MergeResult()
        differs = " OR ".join(f"r.{_q(n)} IS NOT l.{_q(n)}" for n in CONTENT)
        result.added, result.updated, result.changed = db.execute(
            "SELECT count(*) - count(r.key), count(r.key), "
            f"coalesce(sum(r.key IS NOT NULL AND ({differs})), 0)"
            " FROM temp.listed l LEFT JOIN recordings r USING (key)"
        ).fetchone()
        updates = ", ".join(
            f"{_q(n)} = excluded.{_q(n)}" for n in FIELDS if n not in ("key", "first_seen", "species")
        )
        db.execute(
            f"INSERT INTO recordings ({_COLUMNS}) SELECT {_LISTED_AS_NEW} FROM temp.listed WHERE true"
            f" ON CONFLICT (key) DO UPDATE SET {updates}, species = CASE"
            " WHEN recordings.scientific_name = excluded.scientific_name THEN recordings.species"
            " ELSE excluded.scientific_name END"
        )
        return result

    @_guarded
    def replace_all(self, recordings: Iterable[Recording]) -> None:
        """Make the store hold exactly these recordings (migration, tests)."""
        batch = self.batch()
        for recording in recordings:
            batch.add(recording)
        self._flush()
        self._db.execute("DELETE FROM recordings")
        self._db.execute(f"INSERT INTO recordings ({_COLUMNS}) SELECT {_LISTED_AS_NEW} FROM temp.listed")

    @_guarded
    def mark_vanished(self, source: str, queries: Iterable[str]) -> int:
        """Known recordings of `source` that a complete listing by the query that found them no
        longer has are marked vanished (kept, with their last_seen). Returns how many newly vanished."""
        queries = sorted(queries)
        if not queries:
            return 0
        marks = ", ".join("?" * len(queries))
        cursor = self._db.execute(
            f"UPDATE recordings SET vanished = 1 WHERE NOT vanished AND source = ? AND found_by IN ({marks})"
            " AND key NOT IN (SELECT key FROM temp.listed)",
            [source, *queries],
        )
        return cursor.rowcount

    @_guarded
    def prune(self) -> int:
        """Remove every vanished recording; returns how many."""
        return self._db.execute("DELETE FROM recordings WHERE vanished").rowcount

    @_guarded
    def remove(self, keys: Iterable[str]) -> int:
        removed = 0
        keys = list(keys)
        for start in range(0, len(keys), _ROWS_PER_STATEMENT):
            part = keys[start : start + _ROWS_PER_STATEMENT]
            marks = ", ".join("?" * len(part))
            removed += self._db.execute(f"DELETE FROM recordings WHERE key IN ({marks})", part).rowcount
        return removed

    @_guarded
    def assign_classes(self, class_of: dict[str, str]) -> int:
        """File the recordings of each scientific name under its class; returns rows changed."""
        changed = 0
        for name, label in class_of.items():
            changed += self._db.execute(
                "UPDATE recordings SET species = ? WHERE scientific_name = ? AND species IS NOT ?",
                (label, name, label),
            ).rowcount
        return changed

    @_guarded
    def commit(
        self,
        parameters: dict[str, Any],
        skipped: Iterable[SkippedItem],
        incomplete: Iterable[IncompleteListing] = (),
        *,
        changed: bool,
        generated_at: datetime | None = None,
        species_note: dict[str, Any] | None = None,
    ) -> None:
        """Write the header, this run's skipped items and incomplete listings, bump the revision if
        anything changed, note species.json (when given: the run wrote or read it), and commit."""
        db = self._db
        db.execute("DELETE FROM skipped")
        db.executemany(
            "INSERT INTO skipped (key, name, reason, kind) VALUES (?, ?, ?, ?)",
            sorted({(s.key, s.name, s.reason, s.kind) for s in skipped}, key=lambda row: row[:3]),
        )
        revision = self._store.revision + (1 if changed else 0)
        header = {
            "generated_at": (generated_at or manifests.utc_now()).isoformat(),
            "birdgrab_version": __version__,
            "parameters": parameters,
            "incomplete_listings": [listing.model_dump() for listing in incomplete],
            "revision": revision,
        }
        if species_note is not None:
            header["species_note"] = species_note
        db.executemany(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [(name, json.dumps(value, ensure_ascii=False)) for name, value in header.items()],
        )
        db.execute("DROP TABLE temp.listed")
        hold_point("catalog-merged")
        db.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("DROP TABLE IF EXISTS temp.listed")
