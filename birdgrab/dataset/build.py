"""`run_chunk`: load the manifests, plan, score near-duplicates, run, write. The one entry point."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from birdgrab import manifests
from birdgrab.dataset import credits, provenance, writers
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
from birdgrab.dataset.unseen import training_data_of
from birdgrab.download import Cache, DownloadLedger
from birdgrab.errors import UsageError
from birdgrab.executors import Workers
from birdgrab.models import ChunkedRecording, Selection, Species
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
        made_from = _made_from(store, selection)
    loaded = ledger.loaded
    kept_splits = dict(loaded.splits) if loaded else {}
    if loaded and _split_rule(loaded.parameters) != _split_rule(_ledger_parameters(options)):
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
    report.moved = {k: v for k, v in plan.moved.items() if k in plan.wanted}
    if options.unseen_by is not None:
        where = "left out" if options.unseen_by_drop else "in train only"
        title = training_data_of(options.unseen_by).title
        report.unseen = f"{len(plan.seen)} selected recordings {title} may have trained on: {where}"

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
        entries, recordings, species.species if species else {}, plan.splits, class_ids, plan.people
    )
    if verification is not None:
        content = verification.finish(plan.leaving, ledger.entries, content, report)
    _write_outputs(out, options, content, report, _account(options, plan, made_from, verification))
    ledger.compact(
        _ledger_parameters(options),
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
        if all(r.file_name in keep and not r.capped for r in entry.chunks):
            result[key] = entry  # the usual case, uncopied: copying every row was most of a no-change chunk
            continue
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


def _ledger_parameters(options: ChunkOptions) -> dict[str, Any]:
    """What the chunk ledger notes about the run: the split rule (to keep splits while it holds) and
    what the files depend on."""
    rule = provenance.account(options)["split"]
    return {
        "split": list(options.split),
        "split_by": options.split_by,
        "split_rule": rule,
        "options": options.signature(),
    }


def _split_rule(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The split rule a ledger's parameters name, comparable across versions (a ledger of an earlier
    version has only split and split_by; what it lacks had its default then)."""
    split = list(parameters.get("split") or ())
    rule = {
        **dict(zip(("train", "val", "test"), split, strict=False)),
        "by": parameters.get("split_by", "recording"),
        "unseen_by": None,
        "unseen_by_drop": False,
        **(parameters.get("split_rule") or {}),
    }
    if rule["by"] != "site":
        rule.pop("site_km", None)  # the distance matters only to sites
    else:
        rule.setdefault("site_km", 1.0)
    return rule


def _made_from(store: RecordingStore, selection: Selection) -> dict[str, Any]:
    """What the chunks were made from: the catalogue (archives, queries, when) and the filter's options."""
    catalogue = store.parameters
    species_file = catalogue.get("species_file")
    if isinstance(
        species_file, dict
    ):  # its name and digest: where it lay on this machine is no one's business
        species_file = {
            "name": Path(str(species_file.get("path"))).name,
            "sha256": species_file.get("sha256"),
        }
    return {
        "catalogue": {
            "generated_at": store.generated_at,
            "archives": catalogue.get("queries") or {},
            "species_file": species_file,
            "wiki_lang": catalogue.get("wiki_lang"),
        },
        "filter": selection.parameters,
    }


def _account(
    options: ChunkOptions, plan: Plan, made_from: dict[str, Any], verification: Verification | None
) -> dict[str, Any]:
    """dataset.json: every choice (declared by ChunkOptions' fields), the --unseen-by cut-off used,
    the model --verify ran (which, its threshold and licence: the choice's sentence reads them), and
    what the dataset was made from."""
    how = provenance.account(options)
    if options.unseen_by is not None:
        how["unseen_by"] = {
            **training_data_of(options.unseen_by).account(),
            ("recordings_left_out" if options.unseen_by_drop else "recordings_kept_in_train"): len(plan.seen),
        }
    if verification is not None:
        how["verification"] = verification.account()
    how["made_from"] = made_from
    return how


def _lasting(account: dict[str, Any]) -> dict[str, Any]:
    """An account without what a run that changed nothing still changes: the time, the version and the
    catalogue's listing date (a refresh lists again). Such a run leaves dataset.json, and a bucket, untouched."""
    lasting = {k: v for k, v in account.items() if k not in ("made_at", "birdgrab_version")}
    made_from = lasting.get("made_from")
    if isinstance(made_from, dict) and isinstance(made_from.get("catalogue"), dict):
        catalogue = {k: v for k, v in made_from["catalogue"].items() if k != "generated_at"}
        lasting["made_from"] = {**made_from, "catalogue": catalogue}
    return lasting


def _write_outputs(
    out: Storage,
    options: ChunkOptions,
    content: writers.DatasetContent,
    report: ChunkReport,
    how: dict[str, Any],
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
                    writers.METADATA_COLUMNS + (writers.VERIFY_COLUMNS if options.verify else []),
                    writers.metadata_rows(content, options.sample_rate),
                ),
            ),
            writers.write_if_changed(out, writers.CLASSES, writers.classes_json(content)),
            writers.write_if_changed(
                out,
                credits.CREDITS,
                writers.csv_bytes(
                    credits.CREDITS_COLUMNS, credits.credit_rows(entries, recordings, content.people)
                ),
            ),
            writers.write_if_changed(
                out, credits.ATTRIBUTION, credits.attribution_markdown(entries, recordings).encode("utf-8")
            ),
        ]
    )
    try:
        previous = json.loads(out.read_bytes(writers.DATASET).decode("utf-8"))
    except (OSError, ValueError):
        previous = None
    if changed or report.built or not isinstance(previous, dict) or _lasting(previous) != _lasting(how):
        writers.write_if_changed(
            out, writers.DATASET, writers.dataset_json(how, manifests.utc_now().isoformat())
        )
    report.classes = len(content.labels())
