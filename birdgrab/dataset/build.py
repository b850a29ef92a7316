"""`run_chunk`: load the manifests, plan, score near-duplicates, run, write. The one entry point."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from birdgrab import manifests
from birdgrab.dataset import credits, writers
from birdgrab.dataset.class_ids import load_class_ids, save_class_ids
from birdgrab.dataset.fingerprints import score_pairs
from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.plan import (
    Plan,
    Usable,
    assign_class_ids,
    class_cap,
    near_duplicate_pairs,
    near_duplicates,
    plan_build,
    usable_files,
)
from birdgrab.dataset.report import ChunkReport
from birdgrab.dataset.runner import ChunkRunner, ChunksLedger, remove_chunks
from birdgrab.download import Cache, DownloadLedger
from birdgrab.errors import UsageError
from birdgrab.executors import Workers
from birdgrab.models import ChunkedRecording, Species
from birdgrab.selection import load_selection
from birdgrab.storage import Storage, open_storage
from birdgrab.store import RecordingStore

if TYPE_CHECKING:  # --verify only
    from birdgrab.verify.run import Verification


def run_chunk(
    folder: Path,
    cache: Path | str | Storage,
    out: Path | str | Storage,
    options: ChunkOptions,
    on_progress: Callable[[str, int], None] | None = None,
    workers: Workers | None = None,
) -> ChunkReport:
    """(Re)build the dataset in `out` from the cache, as the manifests in `folder` say; no network
    but the storage's. `cache` and `out` are folders or storage URLs; the cutting runs on `workers`
    (default: a pool of `options.jobs` processes on this machine).

    >>> report = run_chunk(Path("manifests"), "cache", "s3://birds/dataset", ChunkOptions())  # doctest: +SKIP
    >>> report.chunks_total  # doctest: +SKIP
    366
    """
    folder, out = Path(folder), open_storage(out)
    options = options.validated()
    selection = load_selection(folder)
    store = RecordingStore.open(folder)
    species = manifests.load_species(folder)
    if selection is None or store is None:
        raise UsageError(f"no selection in {folder}: run `birdgrab catalog`, `filter` and `fetch` first")
    downloads = DownloadLedger(folder)
    ledger = ChunksLedger(folder)
    with store:  # what the dataset is made of (the selection and what is in it), not the catalogue
        recordings = store.get_many([*selection.selected_keys(), *ledger.entries])
    loaded = ledger.loaded
    kept_splits = dict(loaded.splits) if loaded else {}
    if loaded and (
        tuple(loaded.parameters.get("split") or ()) != options.split
        or loaded.parameters.get("split_by", "recording") != options.split_by
    ):
        kept_splits = {}  # a new split rule asked for: reassign every recording, deterministically
    scores = dict(loaded.near_duplicate_checks) if loaded else {}
    report = ChunkReport()

    out.make_folder("")
    out.clear_stale_temps()
    cache = Cache(cache)
    cached = {}
    for key in selection.selected_keys():
        name = cache.file_of(downloads.entries.get(key))
        if name is not None:
            cached[key] = name
    found = usable_files(selection, recordings, downloads.entries, cached)
    report.not_downloaded, report.failed = found.not_downloaded, dict(found.failed)
    pairs = near_duplicate_pairs(found.usable)
    score_pairs(pairs, scores, cache.storage)
    duplicates = near_duplicates([p for ps in pairs.values() for p in ps], scores)
    plan = plan_build(found.usable, duplicates, selection, recordings, ledger.entries, kept_splits, options)
    report.near_duplicates = len(plan.duplicates)

    verification = _verification(folder, options, species.species if species else {}, plan)
    _apply_departures(plan, found.usable, ledger, out, report)
    # A recording the ledger calls current is cut again if one of its files went missing, or if the
    # class cap now wants a window it had left out.
    present = out.sizes()  # a bucket's: one listing a class folder, not a request a chunk
    todo = [key for key in plan.wanted if key in plan.stale or _incomplete(ledger.entries[key], present)]
    todo += _capped_but_wanted(ledger, plan, options, exclude=set(todo))
    report.unchanged = len(plan.wanted) - len(todo)
    with contextlib.ExitStack() as stack:
        if workers is None:
            workers = stack.enter_context(Workers(jobs=options.jobs, preload=["birdgrab.dataset.cutting"]))
        runner = ChunkRunner(out, cache, options, ledger, downloads, report, workers, verification)
        runner.run([plan.wanted[k] for k in sorted(todo)], on_progress)
        for _ in range(2):  # cutting changes what the cap wants, at most once more
            again = _capped_but_wanted(ledger, plan, options)
            if not again or report.stopped is not None:
                break
            runner.run([plan.wanted[k] for k in again])
    entries = _apply_class_cap(ledger, plan, options, out, report)
    labels = {writers.row_label(e, row) for e in entries.values() for row in e.chunks}
    class_ids = assign_class_ids(load_class_ids(folder, out), labels)
    save_class_ids(folder, class_ids)
    content = writers.DatasetContent(
        entries, recordings, species.species if species else {}, plan.splits, class_ids
    )
    if verification is not None:
        content = verification.finish(plan.leaving, ledger.entries, content, report)
    _write_outputs(out, options, content, report, verification)
    ledger.compact(
        {"split": list(options.split), "split_by": options.split_by, "options": options.signature()},
        splits=dict(sorted(plan.splits.items())),
        near_duplicate_checks=dict(sorted(scores.items())),
    )
    report.recordings = len(entries)
    report.chunks_total = sum(len(e.chunks) for e in entries.values())
    return report


def _verification(
    folder: Path, options: ChunkOptions, species: Mapping[str, Species], plan: Plan
) -> Verification | None:
    """--verify's parent side, or None. A missing extra is a UsageError (exit 2) here, before any work."""
    if options.verify is None:
        return None
    from birdgrab.verify.run import Verification

    labels = {item.label for item in plan.wanted.values()}
    return Verification(folder, options, writers.species_by_label(species), labels)


def _incomplete(entry: ChunkedRecording, present: Mapping[str, int]) -> bool:
    return not all(c.file_name in present for c in entry.chunks if not c.capped)


def _built(ledger: ChunksLedger, plan: Plan) -> dict[str, ChunkedRecording]:
    return {k: e for k, e in ledger.entries.items() if e.status == "ok" and e.chunks and k in plan.wanted}


def _capped_but_wanted(
    ledger: ChunksLedger, plan: Plan, options: ChunkOptions, exclude: set[str] = frozenset()
) -> list[str]:
    """Recordings with a window the class cap now keeps but an earlier run left out (no file)."""
    if options.max_chunks_per_class is None:
        return []
    built = {k: e for k, e in _built(ledger, plan).items() if k not in exclude}
    keep = class_cap(built, options.max_chunks_per_class)
    return sorted(k for k, e in built.items() if any(r.capped and r.file_name in keep for r in e.chunks))


def _apply_class_cap(
    ledger: ChunksLedger, plan: Plan, options: ChunkOptions, out: Storage, report: ChunkReport
) -> dict[str, ChunkedRecording]:
    """Remove the files the class cap leaves out (marked `capped` in the ledger); the entries with
    only the rows the dataset holds."""
    built = _built(ledger, plan)
    keep = class_cap(built, options.max_chunks_per_class)
    result = {}
    for key, entry in built.items():
        rows = [r.model_copy(update={"capped": r.file_name not in keep}) for r in entry.chunks]
        if rows != entry.chunks:
            for row in rows:
                if row.capped and not any(r.capped for r in entry.chunks if r.file_name == row.file_name):
                    out.remove(row.file_name)
                    report.dropped["class_cap"] += 1
            entry = entry.model_copy(update={"chunks": rows})
            ledger.record(entry)
        kept = [r for r in rows if not r.capped]
        if kept:
            result[key] = entry.model_copy(update={"chunks": kept})
    return result


def _apply_departures(
    plan: Plan, usable: dict[str, Usable], ledger: ChunksLedger, out: Storage, report: ChunkReport
) -> None:
    """Whatever left the dataset (deselected, now a duplicate, failed download) takes its chunks along;
    duplicates are recorded as such."""
    now = manifests.utc_now()
    for key in plan.leaving:
        entry = ledger.entries[key]
        remove_chunks(out, entry)
        if entry.chunks:
            report.removed += 1
        ledger.forget(key)
    for key, (better, score) in sorted(plan.duplicates.items()):
        ledger.record(
            ChunkedRecording(
                key=key,
                status="duplicate",
                duplicate_of=better,
                similarity=score,
                label=usable[key].label,
                updated_at=now,
            )
        )


def _how(options: ChunkOptions, verification: Verification | None = None) -> dict[str, Any]:
    """dataset.json's account of how the chunks were made."""
    how = {
        "sample_rate": options.sample_rate,
        "chunk_seconds": options.chunk_s,
        "min_chunk_seconds": options.min_chunk_s,
        "windows": "fixed",
        "gate_db": options.gate_db,
        "split": {
            "by": "recording",
            "train": options.split[0],
            "val": options.split[1],
            "test": options.split[2],
        },
    }
    if verification is not None:
        how["verification"] = verification.account()
    return how


def _write_outputs(
    out: Storage,
    options: ChunkOptions,
    content: writers.DatasetContent,
    report: ChunkReport,
    verification: Verification | None = None,
) -> None:
    for label in content.class_ids.keys() & content.labels():
        out.make_folder(label)  # every class keeps a folder: Keras ids == ours
    entries, recordings = content.entries, content.recordings
    changed = any(
        [
            writers.write_if_changed(
                out,
                writers.METADATA,
                writers.csv_bytes(
                    writers.METADATA_COLUMNS + (writers.VERIFY_COLUMNS if verification else []),
                    writers.metadata_rows(content, options.sample_rate),
                ),
            ),
            writers.write_if_changed(out, writers.CLASSES, writers.classes_json(content)),
            writers.write_if_changed(
                out,
                credits.CREDITS,
                writers.csv_bytes(credits.CREDITS_COLUMNS, credits.credit_rows(entries, recordings)),
            ),
            writers.write_if_changed(
                out, credits.ATTRIBUTION, credits.attribution_markdown(entries, recordings).encode("utf-8")
            ),
        ]
    )
    how = _how(options, verification)
    try:
        previous = json.loads(out.read_bytes(writers.DATASET).decode("utf-8"))
    except (OSError, ValueError):
        previous = None
    if (
        changed
        or report.built
        or not isinstance(previous, dict)
        or {k: v for k, v in previous.items() if k not in ("made_at", "birdgrab_version")} != how
    ):
        writers.write_if_changed(
            out, writers.DATASET, writers.dataset_json(how, manifests.utc_now().isoformat())
        )
    report.classes = len(content.labels())
