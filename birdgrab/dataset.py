"""`birdgrab chunk`: build the training dataset from the verified audio cache, incrementally.

dataset/<Genus_species>/<source>-<id>_<nnnn>.wav (mono 16-bit PCM, exactly chunk_s long),
metadata.csv (a row per chunk), classes.json (stable ids), ATTRIBUTION.md and CREDITS.csv.

What was built, from which file and with which options, is kept in manifests/chunks.json (a
`manifests.Ledger`): a second run with the same options rewrites nothing; a changed option or a
re-downloaded file rebuilds just that recording; a recording that left the selection takes its
chunks and rows with it. Splits are assigned per recording (never per chunk), stratified per
class, and kept across runs. Class ids are sorted on the first build and never renumbered.
The same recording published on two archives in different encodings is found by an acoustic
fingerprint and chunked once, from the better copy.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import shutil
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from birdgrab import manifests
from birdgrab.audio import (
    SAME_RECORDING_SIMILARITY,
    AudioError,
    ChunkResult,
    chunk_recording,
    pcm_fingerprint,
    similarity,
)
from birdgrab.download import Cache, DownloadLedger
from birdgrab.errors import UsageError
from birdgrab.files import atomic_write_bytes, remove_stale_temps, safe_child
from birdgrab.licences import licence_code
from birdgrab.models import (
    QUALITIES,
    SPLITS,
    ChunkedRecording,
    ChunkRow,
    ChunksManifest,
    Recording,
    SelectionManifest,
    Species,
    Split,
)
from birdgrab.names import NameError_, class_folder
from birdgrab.sources.registry import registry

log = logging.getLogger(__name__)

METADATA = "metadata.csv"
CLASSES = "classes.json"
ATTRIBUTION = "ATTRIBUTION.md"
CREDITS = "CREDITS.csv"
METADATA_COLUMNS = [
    "file_name", "label", "class_id", "split", "recording_key", "source", "source_id", "chunk_index",
    "offset_s", "duration_s", "padded_s", "licence", "recordist", "page_url", "scientific_name",
    "german_name", "english_name", "quality", "recorded_date", "country", "sample_rate", "rms_dbfs",
]  # fmt: skip
CREDITS_COLUMNS = [
    "recording_key",
    "source",
    "scientific_name",
    "recordist",
    "licence",
    "licence_url",
    "page_url",
    "attribution",
    "chunks",
]
# Fewer restrictions first: the better of two copies carries the freer licence.
_LICENCE_ORDER = ["CC0", "PDM", "BY", "BY-SA", "BY-NC", "BY-NC-SA", "BY-ND", "BY-NC-ND"]


@dataclass(frozen=True)
class ChunkOptions:
    sample_rate: int = 32000
    chunk_s: float = 10.0
    min_chunk_s: float = 3.0
    gate_db: float | None = 25.0
    split: tuple[int, int, int] = (80, 10, 10)
    jobs: int = 2
    min_free_mb: float = 200

    def validated(self) -> ChunkOptions:
        if not 4000 <= self.sample_rate <= 192000:
            raise UsageError(f"--sample-rate must be between 4000 and 192000 Hz, got {self.sample_rate}")
        if not 0 < self.chunk_s <= 600:
            raise UsageError(f"--chunk-seconds must be more than 0 and at most 600, got {self.chunk_s:g}")
        if not 0 <= self.min_chunk_s <= self.chunk_s:
            raise UsageError(
                f"--min-chunk-seconds must be between 0 and --chunk-seconds ({self.chunk_s:g}), got {self.min_chunk_s:g}"
            )
        if self.gate_db is not None and not 0 < self.gate_db <= 120:
            raise UsageError(f"--gate-db must be more than 0 and at most 120 dB, got {self.gate_db:g}")
        if (
            len(self.split) != 3
            or any(p < 0 for p in self.split)
            or sum(self.split) != 100
            or self.split[0] == 0
        ):
            raise UsageError(
                f"--split must be three percentages like 80/10/10 that add up to 100, got {self.split}"
            )
        if not 1 <= self.jobs <= 64:
            raise UsageError(f"--jobs must be between 1 and 64, got {self.jobs}")
        return self

    def signature(self) -> str:
        """What the chunk files depend on (not the split: that only changes metadata)."""
        gate = "off" if self.gate_db is None else f"{self.gate_db:g}"
        return f"sr={self.sample_rate};chunk={self.chunk_s:g};min={self.min_chunk_s:g};gate={gate}"


def parse_split(text: str) -> tuple[int, int, int]:
    """'80/10/10' -> (80, 10, 10); anything else is a UsageError."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--split must look like 80/10/10 (train/val/test percentages), got {text!r}")
    train, val, test = (int(g) for g in match.groups())
    return ChunkOptions(split=(train, val, test)).validated().split


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


def assign_splits(
    by_label: dict[str, list[str]], existing: dict[str, Split], weights: tuple[int, int, int]
) -> dict[str, Split]:
    """Per class, give each recording without a split the split furthest below its share.

    Recordings are taken in an order fixed by a hash of their key, so the outcome depends only on
    which recordings there are; a recording that has a split keeps it.
    """
    result: dict[str, Split] = {}
    for keys in by_label.values():
        counts = Counter(existing[k] for k in keys if k in existing)
        for key in keys:
            if key in existing:
                result[key] = existing[key]
        new = sorted(
            (k for k in keys if k not in existing), key=lambda k: hashlib.sha256(k.encode()).hexdigest()
        )
        for key in new:
            total = sum(counts.values()) + 1
            split = max(
                SPLITS, key=lambda s: (weights[SPLITS.index(s)] * total / 100 - counts[s], -SPLITS.index(s))
            )
            counts[split] += 1
            result[key] = split
    return result


def _exit_with_parent(parent_pid: int) -> None:
    """Pool worker initializer: leave when the birdgrab process that started the pool is gone.

    A SIGKILLed parent cannot stop its pool, and a worker waiting for work never sees the queue
    close (it holds both ends itself): without this, every killed run would leave workers behind.
    """

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@dataclass(frozen=True)
class ChunkFailure:
    reason: str
    bad_source: bool  # the cached file itself does not decode (as opposed to, say, a full disk)


def _chunk_job(src: str, out_dir: str, stem: str, options: ChunkOptions) -> ChunkResult | ChunkFailure:
    """Runs in a worker process; returns the result, or why it failed."""
    try:
        return chunk_recording(
            src,
            out_dir,
            stem,
            sample_rate=options.sample_rate,
            chunk_s=options.chunk_s,
            min_chunk_s=options.min_chunk_s,
            gate_db=options.gate_db,
        )
    except AudioError as exc:
        return ChunkFailure(exc.reason, bad_source=True)
    except OSError as exc:
        return ChunkFailure(f"cannot write chunks: {exc.strerror or exc}", bad_source=False)


@dataclass
class ChunkReport:
    recordings: int = 0
    built: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_written: int = 0
    chunks_total: int = 0
    dropped_silent: int = 0
    dropped_short: int = 0
    near_duplicates: int = 0
    not_downloaded: int = 0
    classes: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    stopped: str | None = None

    def summary(self) -> str:
        """The one line a chunk run ends with."""
        return (
            f"chunk: {self.recordings} recordings ({self.built} rebuilt, {self.unchanged} unchanged, "
            f"{self.removed} removed), {self.chunks_written} chunks written, {self.chunks_total} in the dataset, "
            f"{self.classes} classes; {self.dropped_silent} silent and {self.dropped_short} short pieces dropped; "
            f"{self.near_duplicates} near-duplicates; {len(self.failed)} failed"
        )

    def facts(self) -> dict[str, int]:
        """The numbers for the JSON log."""
        return {
            "recordings": self.recordings,
            "built": self.built,
            "chunks_written": self.chunks_written,
            "chunks_total": self.chunks_total,
            "failed": len(self.failed),
        }


@dataclass
class _Usable:
    recording: Recording
    label: str
    source: Path
    sha256: str
    duration_s: float | None


class DatasetBuilder:
    def __init__(self, folder: Path, cache: Path, out: Path, options: ChunkOptions):
        self.folder, self.cache, self.out = Path(folder), Path(cache), Path(out)
        self.options = options.validated()
        selection = manifests.load(self.folder / manifests.SELECTION, SelectionManifest)
        recordings = manifests.load_recordings(self.folder)
        species = manifests.load_species(self.folder)
        if selection is None or recordings is None:
            raise UsageError(
                f"no selection in {self.folder}: run `birdgrab catalog`, `filter` and `fetch` first"
            )
        self.selection = selection
        self.recordings = recordings.recordings
        self.species: dict[str, Species] = species.species if species else {}
        self.downloads = DownloadLedger(self.folder)
        self.ledger = manifests.Ledger(self.folder, manifests.CHUNKS, ChunksManifest, ChunkedRecording)
        loaded = self.ledger.loaded
        self.splits: dict[str, Split] = dict(loaded.splits) if loaded else {}
        self.checks: dict[str, float] = dict(loaded.near_duplicate_checks) if loaded else {}
        if loaded and tuple(loaded.parameters.get("split") or ()) != self.options.split:
            self.splits = {}  # new proportions asked for: reassign every recording, deterministically
        self.report = ChunkReport()
        self._evicted = False

    # -- what should be in the dataset -----------------------------------------------------------
    def usable(self) -> dict[str, _Usable]:
        """Selected recordings whose verified file is in the cache (byte duplicates count once)."""
        result: dict[str, _Usable] = {}
        for species_name, chosen in sorted(self.selection.species.items()):
            try:
                label = class_folder(species_name)
            except NameError_ as exc:
                for key in chosen.recordings:
                    self.report.failed[key] = f"unusable species name: {exc.reason}"
                continue
            for key in chosen.recordings:
                entry = self.downloads.entries.get(key)
                recording = self.recordings.get(key)
                path = Cache(self.cache).file_of(entry)
                if entry is not None and entry.status == "duplicate":
                    continue  # the same bytes are chunked once, under the owning key
                if path is None or recording is None or entry is None:
                    self.report.not_downloaded += 1
                    continue
                result[key] = _Usable(recording, label, path, entry.sha256 or "", entry.duration_s)
        return result

    def find_near_duplicates(self, usable: dict[str, _Usable]) -> dict[str, tuple[str, float]]:
        """key -> (better copy, similarity) for recordings that are the same sound as one on another archive."""
        by_label: dict[str, list[_Usable]] = defaultdict(list)
        for item in usable.values():
            by_label[item.label].append(item)
        duplicates: dict[str, tuple[str, float]] = {}
        for items in by_label.values():
            fingerprints: dict[str, object] = {}  # per class: a few hundred kB each, freed class by class
            for i, a in enumerate(items):
                for b in items[i + 1 :]:
                    if a.recording.source == b.recording.source or not _similar_length(
                        a.duration_s, b.duration_s
                    ):
                        continue
                    first, second = sorted((a, b), key=lambda u: u.recording.key)
                    check = f"{first.recording.key}|{second.recording.key}|{first.sha256[:16]}|{second.sha256[:16]}"
                    if check not in self.checks:
                        try:
                            prints = [
                                fingerprints.setdefault(u.recording.key, pcm_fingerprint(u.source))
                                for u in (a, b)
                            ]
                        except AudioError:
                            continue  # chunking will report the broken file
                        self.checks[check] = round(similarity(*prints), 4)  # type: ignore[arg-type]
                    score = self.checks[check]
                    if score >= SAME_RECORDING_SIMILARITY:
                        better, worse = sorted(
                            (a, b), key=lambda u: better_copy_rank(u.recording, u.duration_s)
                        )
                        duplicates[worse.recording.key] = (better.recording.key, score)
        return duplicates

    # -- building --------------------------------------------------------------------------------
    def _up_to_date(self, item: _Usable) -> bool:
        entry = self.ledger.entries.get(item.recording.key)
        if entry is None or entry.status != "ok":
            return False
        if (entry.label, entry.source_sha256, entry.options) != (
            item.label,
            item.sha256,
            self.options.signature(),
        ):
            return False
        return all((self.out / chunk.file_name).is_file() for chunk in entry.chunks)

    def _remove_chunks(self, entry: ChunkedRecording | None, keep: Iterable[str] = ()) -> None:
        if entry is None:
            return
        keep = set(keep)
        for chunk in entry.chunks:
            if chunk.file_name not in keep:
                with contextlib.suppress(FileNotFoundError):
                    (self.out / chunk.file_name).unlink()

    def build(self, on_progress: Callable[[str, int], None] | None = None) -> ChunkReport:
        report = self.report
        self.out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.out)
        usable = self.usable()
        duplicates = self.find_near_duplicates(usable)
        now = manifests.utc_now()
        wanted = {k: u for k, u in usable.items() if k not in duplicates}
        report.near_duplicates = len(duplicates)

        # Whatever left the dataset (deselected, now a duplicate, failed download) takes its chunks along.
        for key in sorted(set(self.ledger.entries) - set(wanted)):
            entry = self.ledger.entries[key]
            self._remove_chunks(entry)
            if entry.chunks:
                report.removed += 1
            self.ledger.forget(key)
        for key, (better, score) in sorted(duplicates.items()):
            self.ledger.record(
                ChunkedRecording(
                    key=key,
                    status="duplicate",
                    duplicate_of=better,
                    similarity=score,
                    label=usable[key].label,
                    updated_at=now,
                )
            )

        # Splits are dealt over the whole selection, downloaded yet or not: which files happen to be
        # in the cache (a failed download, a duplicate found later) must not move anyone's split.
        selected = {
            class_folder(name): list(chosen.recordings)
            for name, chosen in self.selection.species.items()
            if _valid(name)
        }
        in_selection = {key for keys in selected.values() for key in keys}
        self.splits = assign_splits(
            selected, {k: v for k, v in self.splits.items() if k in in_selection}, self.options.split
        )

        todo = [item for key, item in sorted(wanted.items()) if not self._up_to_date(item)]
        report.unchanged = len(wanted) - len(todo)
        for item in todo:
            previous = self.ledger.entries.get(item.recording.key)
            if previous is not None and previous.label != item.label:
                self._remove_chunks(previous)
        if on_progress:
            on_progress("start", len(todo))
        self._run(todo, now, on_progress)
        self._write_outputs(wanted)
        if self._evicted:
            self.downloads.save()
        self.ledger.compact(
            {"split": list(self.options.split), "options": self.options.signature()},
            splits=dict(sorted(self.splits.items())),
            near_duplicate_checks=dict(sorted(self.checks.items())),
        )
        done = [e for k, e in self.ledger.entries.items() if k in wanted and e.status == "ok"]
        report.recordings = len(done)
        report.chunks_total = sum(len(e.chunks) for e in done)
        return report

    def _run(self, todo: list[_Usable], now, on_progress) -> None:
        if not todo:
            return
        signature = self.options.signature()
        # forkserver: forking a process that runs threads (httpx, a sandbox in tests) can deadlock.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["birdgrab.audio"])  # workers start with numpy & co. imported
        with ProcessPoolExecutor(
            max_workers=min(self.options.jobs, len(todo)),
            mp_context=context,
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            pending: dict[Future, _Usable] = {}
            queue = list(reversed(todo))
            while queue or pending:
                while queue and len(pending) < self.options.jobs * 2 and self.report.stopped is None:
                    if shutil.disk_usage(self.out).free / 2**20 < self.options.min_free_mb:
                        self.report.stopped = f"less than {self.options.min_free_mb:g} MB free under {self.out}: stopped chunking"
                        break
                    item = queue.pop()
                    out_dir = safe_child(self.out, item.label)
                    future = pool.submit(
                        _chunk_job, str(item.source), str(out_dir), file_stem(item.recording), self.options
                    )
                    pending[future] = item
                if self.report.stopped is not None:
                    queue.clear()
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item = pending.pop(future)
                    self._settle(item, future.result(), signature, now)
                    if on_progress:
                        on_progress("file", 1)

    def _settle(self, item: _Usable, result: ChunkResult | ChunkFailure, signature: str, now) -> None:
        key = item.recording.key
        previous = self.ledger.entries.get(key)
        if isinstance(result, ChunkFailure):
            self._remove_chunks(previous)
            reason = result.reason
            if result.bad_source:
                reason += f" ({Cache(self.cache).evict(self.downloads, key, reason)})"
                self._evicted = True
            self.report.failed[key] = reason
            self.ledger.record(
                ChunkedRecording(
                    key=key,
                    status="failed",
                    label=item.label,
                    reason=reason,
                    source_sha256=item.sha256,
                    updated_at=now,
                )
            )
            return
        rows = [
            ChunkRow(
                file_name=f"{item.label}/{chunk.file_name}",
                chunk_index=chunk.index,
                offset_s=round(chunk.offset_s, 3),
                duration_s=round(chunk.duration_s, 3),
                padded_s=round(chunk.padded_s, 3),
                rms_dbfs=round(chunk.rms_dbfs, 2),
            )
            for chunk in result.chunks
        ]
        self._remove_chunks(previous, keep=[row.file_name for row in rows])
        self.report.built += 1
        self.report.chunks_written += len(rows)
        self.report.dropped_silent += result.dropped_silent
        self.report.dropped_short += result.dropped_short
        self.ledger.record(
            ChunkedRecording(
                key=key,
                status="ok",
                label=item.label,
                source_sha256=item.sha256,
                options=signature,
                chunks=rows,
                dropped_silent=result.dropped_silent,
                dropped_short=result.dropped_short,
                decoded_s=round(result.decoded_s, 3),
                updated_at=now,
            )
        )

    # -- metadata, classes, attribution ----------------------------------------------------------
    def _class_ids(self, labels: set[str]) -> dict[str, int]:
        """Existing ids from classes.json are kept; new labels get the next ids in sorted order."""
        ids: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError, ValueError, AttributeError, TypeError, KeyError):
            for class_id, info in json.loads((self.out / CLASSES).read_text(encoding="utf-8")).items():
                ids[str(info["label"])] = int(class_id)
        next_id = max(ids.values(), default=-1) + 1
        for label in sorted(labels - set(ids)):
            ids[label] = next_id
            next_id += 1
        return ids

    def _write_outputs(self, wanted: dict[str, _Usable]) -> None:
        entries = {
            k: e for k, e in self.ledger.entries.items() if e.status == "ok" and e.chunks and k in wanted
        }
        species_by_label = {
            class_folder(s.scientific_name): s for s in self.species.values() if _valid(s.scientific_name)
        }
        ids = self._class_ids({e.label for e in entries.values() if e.label})
        for label in ids:
            safe_child(self.out, label).mkdir(exist_ok=True)  # every class keeps a folder: Keras ids == ours
        rows = []
        for key, entry in sorted(entries.items()):
            recording = self.recordings[key]
            info = species_by_label.get(entry.label or "")
            article = info.article("de") if info else None
            for chunk in entry.chunks:
                rows.append(
                    {
                        "file_name": chunk.file_name,
                        "label": entry.label,
                        "class_id": ids[entry.label or ""],
                        "split": self.splits.get(key, "train"),
                        "recording_key": key,
                        "source": recording.source,
                        "source_id": recording.source_id,
                        "chunk_index": chunk.chunk_index,
                        "offset_s": chunk.offset_s,
                        "duration_s": chunk.duration_s,
                        "padded_s": chunk.padded_s,
                        "licence": recording.licence or "",
                        "recordist": recording.recordist or "",
                        "page_url": recording.page_url or "",
                        "scientific_name": info.scientific_name if info else recording.scientific_name,
                        "german_name": article.title if article and article.is_species_article else "",
                        "english_name": (info.english_name if info else None) or recording.english_name or "",
                        "quality": recording.quality or "",
                        "recorded_date": recording.recorded_date or "",
                        "country": recording.country or "",
                        "sample_rate": self.options.sample_rate,
                        "rms_dbfs": chunk.rms_dbfs,
                    }
                )
        rows.sort(key=lambda row: row["file_name"])
        write_if_changed(self.out / METADATA, _csv_bytes(METADATA_COLUMNS, rows))
        write_if_changed(self.out / CLASSES, self._classes_json(ids, entries, species_by_label))
        write_if_changed(self.out / CREDITS, _csv_bytes(CREDITS_COLUMNS, self._credits(entries)))
        write_if_changed(self.out / ATTRIBUTION, self._attribution(entries).encode("utf-8"))
        self.report.classes = len({e.label for e in entries.values()})

    def _classes_json(
        self, ids: dict[str, int], entries: dict[str, ChunkedRecording], species_by_label
    ) -> bytes:
        counts: dict[str, Counter] = defaultdict(Counter)
        for key, entry in entries.items():
            counts[entry.label or ""]["recordings"] += 1
            counts[entry.label or ""]["chunks"] += len(entry.chunks)
            counts[entry.label or ""][self.splits.get(key, "train")] += len(entry.chunks)
        classes = {}
        for label, class_id in sorted(ids.items(), key=lambda kv: kv[1]):
            info = species_by_label.get(label)
            article = info.article("de") if info else None
            english_article = info.article("en") if info else None
            c = counts[label]
            classes[str(class_id)] = {
                "label": label,
                "scientific_name": info.scientific_name if info else label.replace("_", " "),
                "synonyms": info.synonyms if info else [],
                "german_name": article.title if article and article.is_species_article else None,
                "english_name": info.english_name if info else None,
                "wikipedia_url": article.url if article and article.is_species_article else None,
                "english_wikipedia_url": english_article.url
                if english_article and english_article.is_species_article
                else None,
                **_taxon_ids(info),
                "recordings": c["recordings"],
                "chunks": c["chunks"],
                "splits": {s: c[s] for s in SPLITS},
            }
        return (json.dumps(classes, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    def _credits(self, entries: dict[str, ChunkedRecording]) -> list[dict]:
        rows = []
        for key, entry in sorted(entries.items()):
            r = self.recordings[key]
            rows.append(
                {
                    "recording_key": key,
                    "source": r.source,
                    "scientific_name": r.species or r.scientific_name,
                    "recordist": r.recordist or "unknown",
                    "licence": r.licence or "unknown",
                    "licence_url": r.licence_url or "",
                    "page_url": r.page_url or "",
                    "attribution": r.attribution or "",
                    "chunks": len(entry.chunks),
                }
            )
        return rows

    def _attribution(self, entries: dict[str, ChunkedRecording]) -> str:
        used = {self.recordings[key].source for key in entries}
        credits = [a.credit() for a in registry if a.name in used] or ["the archives"]
        archives = " and ".join(filter(None, [", ".join(credits[:-1]), credits[-1]]))
        lines = [
            "# Attribution",
            "",
            f"This dataset is cut from recordings published by their recordists through {archives},",
            "under the licences named below. Chunks are derivatives of these recordings; keep this file with",
            "the dataset, credit the recordists, and respect each licence (NC: no commercial use; SA: share alike).",
            "",
        ]
        by_species: dict[str, list[str]] = defaultdict(list)
        for key in sorted(entries):
            r = self.recordings[key]
            title = registry.get(r.source).title
            by_species[r.species or r.scientific_name].append(
                f"- {key} — {r.recordist or 'unknown recordist'}, {title}, {r.licence or 'licence unknown'}"
                f"{f' ({r.licence_url})' if r.licence_url else ''}: {r.page_url or 'no page'}"
                f"{f' — credit: {r.attribution}' if r.attribution else ''}"
            )
        for name in sorted(by_species):
            lines += [f"## {name}", "", *by_species[name], ""]
        return "\n".join(lines)


def _valid(name: str) -> bool:
    try:
        class_folder(name)
    except NameError_:
        return False
    return True


def _similar_length(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return False
    return abs(a - b) <= max(0.5, 0.02 * max(a, b))


def _taxon_ids(species: Species | None) -> dict[str, str | None]:
    """classes.json's ids in other taxonomies (Wikidata, eBird, GBIF), None where unknown."""
    ids = species.taxon_ids if species else None
    return {
        "wikidata_id": ids.wikidata_id if ids else None,
        "ebird_taxon_id": ids.ebird if ids else None,
        "gbif_taxon_id": ids.gbif if ids else None,
    }


def _csv_bytes(columns: list[str], rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically replace `path` with `data` unless it already holds exactly that (keeps mtimes)."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    atomic_write_bytes(path, data)
    return True


def run_chunk(
    folder: Path,
    cache: Path,
    out: Path,
    options: ChunkOptions,
    on_progress: Callable[[str, int], None] | None = None,
) -> ChunkReport:
    """(Re)build the dataset from the cache; no network."""
    return DatasetBuilder(folder, cache, out, options).build(on_progress)
