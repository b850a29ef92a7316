"""The planner: what the dataset should hold, as a pure function of the manifests.

No file is read or written here. The caller says which cache files are present (`cached`) and
which near-duplicate scores are known (`scores`); everything else comes from the manifests. That
makes every decision (usable files, which copy of a near-duplicate is kept, splits, class ids,
which recordings to cut again) testable with plain values.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.people import recordist_ids
from birdgrab.dataset.splits import assign_group_splits, assign_splits, split_groups
from birdgrab.dataset.unseen import training_data_of
from birdgrab.licences import licence_code
from birdgrab.models import (
    QUALITIES,
    ChunkedRecording,
    ChunkRow,
    DownloadEntry,
    Recording,
    Selection,
    Split,
)
from birdgrab.names import NameError_, class_folder
from birdgrab.sources.registry import registry

# Fingerprint `similarity` (`birdgrab.audio`) at or above which two files are one recording. Measured:
# re-encodes (mp3/wav/flac, 16-48 kHz, stereo/mono) score 0.98-1.0; different recordings of one
# species, even the sandbox's periodic synthetic songs, at most 0.75 (BENCHMARKS.md).
SAME_RECORDING_SIMILARITY = 0.9
# Fewer restrictions first: the better of two copies carries the freer licence.
_LICENCE_ORDER = ["CC0", "PDM", "BY", "BY-SA", "BY-NC", "BY-NC-SA", "BY-ND", "BY-NC-ND"]


def file_stem(recording: Recording) -> str:
    """The chunk files' stem, as the recording's archive spells it (`Archive.file_stem`): 'xc-254462'."""
    return registry.get(recording.source).file_stem(recording.source_id)


def _quality_rank(recording: Recording) -> int:
    return QUALITIES.index(recording.quality) if recording.quality in QUALITIES else len(QUALITIES)


def _licence_rank(recording: Recording) -> int:
    code = licence_code(recording.licence) if recording.licence else ""
    return _LICENCE_ORDER.index(code) if code in _LICENCE_ORDER else len(_LICENCE_ORDER)


def better_copy_rank(recording: Recording, duration_s: float | None) -> tuple:
    """Lower is better: quality, then length, then the freer licence, then the preferred archive
    (`Archive.preference`), then key."""
    return (
        _quality_rank(recording),
        -(duration_s or 0.0),
        _licence_rank(recording),
        registry.get(recording.source).preference,
        recording.key,
    )


@dataclass(frozen=True)
class Usable:
    """A selected recording whose verified file is in the cache."""

    recording: Recording
    label: str
    source: str  # the file's name in the cache
    sha256: str
    duration_s: float | None


@dataclass
class UsableFiles:
    usable: dict[str, Usable] = field(default_factory=dict)
    not_downloaded: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # key -> why it cannot be in the dataset


def valid_label(name: str) -> str | None:
    """The class folder of a species name, or None if the name cannot be one."""
    try:
        return class_folder(name)
    except NameError_:
        return None


def usable_files(
    selection: Selection,
    recordings: Mapping[str, Recording],
    downloads: Mapping[str, DownloadEntry],
    cached: Mapping[str, str],
) -> UsableFiles:
    """Selected recordings whose verified file is in the cache (byte duplicates count once)."""
    result = UsableFiles()
    for species_name, chosen in sorted(selection.species.items()):
        try:
            label = class_folder(species_name)
        except NameError_ as exc:
            for key in chosen.recordings:
                result.failed[key] = f"unusable species name: {exc.reason}"
            continue
        for key in chosen.recordings:
            entry = downloads.get(key)
            if entry is not None and entry.status == "duplicate":
                continue  # the same bytes are chunked once, under the owning key
            recording, path = recordings.get(key), cached.get(key)
            if path is None or recording is None or entry is None:
                result.not_downloaded += 1
                continue
            result.usable[key] = Usable(recording, label, path, entry.sha256 or "", entry.duration_s)
    return result


@dataclass(frozen=True)
class Pair:
    """Two recordings of one class on different archives, long alike: maybe one sound twice."""

    check: str  # 'keyA|keyB|shaA|shaB': the score is computed once per pair of files
    first: Usable
    second: Usable


def _similar_length(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return False
    return abs(a - b) <= max(0.5, 0.02 * max(a, b))


def near_duplicate_pairs(usable: Mapping[str, Usable]) -> dict[str, list[Pair]]:
    """Per class, the pairs whose fingerprints must be compared."""
    by_label: dict[str, list[Usable]] = defaultdict(list)
    for item in usable.values():
        by_label[item.label].append(item)
    pairs: dict[str, list[Pair]] = {}
    for label, items in sorted(by_label.items()):
        found = []
        for i, a in enumerate(items):
            for b in items[i + 1 :]:
                if a.recording.source == b.recording.source or not _similar_length(
                    a.duration_s, b.duration_s
                ):
                    continue
                first, second = sorted((a, b), key=lambda u: u.recording.key)
                check = (
                    f"{first.recording.key}|{second.recording.key}|{first.sha256[:16]}|{second.sha256[:16]}"
                )
                found.append(Pair(check, first, second))
        if found:
            pairs[label] = found
    return pairs


def near_duplicates(pairs: Iterable[Pair], scores: Mapping[str, float]) -> dict[str, tuple[str, float]]:
    """key -> (better copy, similarity) for each recording that is the same sound as a better one."""
    duplicates: dict[str, tuple[str, float]] = {}
    for pair in pairs:
        score = scores.get(pair.check)
        if score is not None and score >= SAME_RECORDING_SIMILARITY:
            better, worse = sorted(
                (pair.first, pair.second), key=lambda u: better_copy_rank(u.recording, u.duration_s)
            )
            duplicates[worse.recording.key] = (better.recording.key, score)
    return duplicates


def assign_class_ids(existing: Mapping[str, int], labels: Iterable[str]) -> dict[str, int]:
    """Existing ids are kept (also for classes absent now: they get theirs back); new labels take
    the next ids in sorted order."""
    ids = dict(existing)
    next_id = max(ids.values(), default=-1) + 1
    for label in sorted(set(labels) - set(ids)):
        ids[label] = next_id
        next_id += 1
    return ids


def is_current(item: Usable, entry: ChunkedRecording | None, options: ChunkOptions) -> bool:
    """Whether the ledger says this recording was cut from this file, into this class, this way."""
    return (
        entry is not None
        and entry.status == "ok"
        and (entry.label, entry.source_sha256, entry.options)
        == (item.label, item.sha256, options.signature())
    )


@dataclass
class Plan:
    """What the dataset should hold; the runner makes it so."""

    wanted: dict[str, Usable]  # recordings that belong in the dataset (near-duplicates left out)
    duplicates: dict[str, tuple[str, float]]  # key -> (better copy, similarity)
    leaving: list[str]  # ledger keys no longer wanted: their chunks go
    stale: list[str]  # wanted keys the ledger says must be cut (again)
    splits: dict[str, Split]
    people: dict[str, str] = field(default_factory=dict)  # key -> recordist identity (people.py)
    # recordings whose group was joined to another with a different split (key -> (was, now))
    moved: dict[str, tuple[Split, Split]] = field(default_factory=dict)
    seen: set[str] = field(
        default_factory=set
    )  # selected recordings the --unseen-by model may have trained on


def plan_build(
    usable: Mapping[str, Usable],
    duplicates: Mapping[str, tuple[str, float]],
    selection: Selection,
    recordings: Mapping[str, Recording],
    built: Mapping[str, ChunkedRecording],
    kept_splits: Mapping[str, Split],
    options: ChunkOptions,
) -> Plan:
    """Decide what to keep, drop and cut, and deal splits.

    Splits are dealt over the whole selection, downloaded yet or not: which files happen to be in
    the cache (a failed download, a duplicate found later) must not move anyone's split. Recordings
    the `--unseen-by` model may have trained on are pinned to train, or with `--unseen-by-drop` left
    out of the dataset.
    """
    selected: dict[str, list[str]] = {}
    for name, chosen in selection.species.items():
        label = valid_label(name)
        if label is not None:
            selected.setdefault(label, []).extend(chosen.recordings)
    in_selection = {key for keys in selected.values() for key in keys}
    known = [recordings[k] for k in sorted(in_selection) if k in recordings]
    seen: set[str] = set()
    if options.unseen_by is not None:
        trained_on = training_data_of(options.unseen_by).seen()
        seen = {r.key for r in known if trained_on(r)}
    dropped = seen if options.unseen_by_drop else set()
    if dropped:
        selected = {label: [k for k in keys if k not in dropped] for label, keys in selected.items()}
        in_selection -= dropped
        known = [r for r in known if r.key not in dropped]
    pinned: dict[str, Split] = {k: "train" for k in seen - dropped}
    kept = {k: v for k, v in kept_splits.items() if k in in_selection}
    people = recordist_ids(known)
    moved: dict[str, tuple[Split, Split]] = {}
    if options.split_by == "recording":
        splits = assign_splits(selected, {**kept, **pinned}, options.split)
    else:
        dealt = assign_group_splits(
            selected, split_groups(known, options, people), kept, options.split, pinned
        )
        splits, moved = dealt.splits, dealt.moved
    wanted = {k: u for k, u in sorted(usable.items()) if k not in duplicates and k not in dropped}
    return Plan(
        wanted=wanted,
        duplicates=dict(duplicates),
        leaving=sorted(set(built) - set(wanted)),
        stale=[k for k, item in wanted.items() if not is_current(item, built.get(k), options)],
        splits=splits,
        people=people,
        moved=moved,
        seen=seen,
    )


def _confidence(row: ChunkRow) -> float:
    """BirdNET's confidence for the chunk's class (0 where it was not verified, or cannot be)."""
    return row.verify.confidence if row.verify is not None and row.verify.confidence is not None else 0.0


def class_cap(entries: Mapping[str, ChunkedRecording], cap: int | None) -> set[str]:
    """The chunk files each class keeps under `--max-chunks-per-class`: spread over its recordings.

    Each recording's windows are ranked, the most confident first where `--verify` scored them
    for their class, then the most active; the class takes every recording's best
    window, then every second best, and so on, recordings in an order fixed by a hash of their key,
    until `cap`. A refresh that adds recordings only takes the lowest ranks away from the others, so
    the choice is stable. Noise windows are not counted: the noise class is capped per recording.
    """
    keep = {row.file_name for entry in entries.values() for row in entry.chunks if cap is None or row.noise}
    if cap is None:
        return keep
    ranked: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for key, entry in entries.items():
        rows = sorted(
            (row for row in entry.chunks if not row.noise),
            key=lambda r: (-_confidence(r), -(r.activity_s or 0.0), -r.rms_dbfs, r.chunk_index),
        )
        order = hashlib.sha256(key.encode()).hexdigest()
        ranked[entry.label or ""] += [(rank, order, row.file_name) for rank, row in enumerate(rows)]
    for rows in ranked.values():
        keep.update(name for _, _, name in sorted(rows)[:cap])
    return keep
