"""`birdgrab export`: the dataset as shards others load directly, with a dataset card.

Parquet in the Hugging Face hub layout (`load_dataset(folder)` gives train, validation and test
with the class names), or WebDataset tar shards for streaming. ND-licensed recordings are left
out unless asked for: a chunk is an adaptation of its recording.

The shards are written by the workers (`executors.Workers`: this machine's processes, or a Dask
cluster), each put in the export whole. An export is never half visible: on a disk it is built in a
temporary folder and swapped into place whole; in a bucket, which has no rename, the new shards go
to a folder of their own (`data/<generation>/`), the card that names them (README.md) is written
last, and only then are the previous generation's shards removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from birdgrab.dataset.credits import CREDITS
from birdgrab.errors import UsageError
from birdgrab.executors import Workers
from birdgrab.export.card import dataset_card
from birdgrab.export.dataset_files import CLASSES, DATASET_INFO, DatasetFolder, read_dataset
from birdgrab.export.parquet import write_parquet
from birdgrab.export.webdataset import write_webdataset
from birdgrab.files import atomic_folder
from birdgrab.storage import LocalStorage, Storage, open_storage

if TYPE_CHECKING:  # --embeddings only: nothing of BirdNET is imported without it
    from birdgrab.verify.embeddings import EmbeddingSource

WRITERS = {"parquet": write_parquet, "webdataset": write_webdataset}
# What an export folder holds; a folder with anything else is not replaced.
EXPORT_ENTRIES = {"README.md", "data", CREDITS, CLASSES, DATASET_INFO}


@dataclass(frozen=True)
class ExportOptions:
    format: str = "parquet"
    shard_mb: float = 500.0
    allow_nd: bool = False
    embeddings: str | None = None  # "birdnet": BirdNET's embedding of every chunk (extra [birdnet])

    def validated(self) -> ExportOptions:
        if self.format not in WRITERS:
            raise UsageError(f"--format {self.format!r}: choose one of {', '.join(WRITERS)}")
        if not self.shard_mb > 0:
            raise UsageError(f"--shard-mb must be above 0, got {self.shard_mb}")
        if self.embeddings not in (None, "birdnet"):
            raise UsageError(f"--embeddings must be birdnet, got {self.embeddings!r}")
        return self


@dataclass
class ExportReport:
    out: str
    format: str
    rows: dict[str, int] = field(default_factory=dict)  # split -> exported chunks
    shards: int = 0
    bytes: int = 0
    classes: int = 0  # in classes.json (ids are stable: a class may have no clip here)
    classes_with_clips: int = 0
    nd_recordings_left_out: int = 0
    nd_chunks_left_out: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # chunk file -> reason
    embeddings: tuple[int, int] | None = None  # --embeddings: (found stored, computed now)

    def summary(self) -> str:
        """The one line an export ends with."""
        splits = ", ".join(f"{split} {n}" for split, n in self.rows.items()) or "none"
        return (
            f"export: {sum(self.rows.values())} chunks ({splits}) in {self.shards} {self.format} shards, "
            f"{self.bytes / 2**20:.1f} MB, {self.describe_classes()}, in {self.out}; "
            f"{self.nd_recordings_left_out} ND-licensed recordings ({self.nd_chunks_left_out} chunks) left out; "
            f"{len(self.failed)} failed"
            + (
                f"; BirdNET embeddings: {self.embeddings[0]} stored by --verify, {self.embeddings[1]} computed"
                if self.embeddings
                else ""
            )
        )

    def describe_classes(self) -> str:
        """'16 classes', or '15 of 16 classes with clips' when some class has none in the export."""
        if self.classes_with_clips == self.classes:
            return f"{self.classes} classes"
        return f"{self.classes_with_clips} of {self.classes} classes with clips"

    def facts(self) -> dict[str, object]:
        """The numbers for the JSON log."""
        return {"rows": self.rows, "shards": self.shards, "failed": len(self.failed)}


def _inside(out: Storage, dataset: Storage) -> bool:
    here, there = out.local_path(), dataset.local_path()
    if here is not None and there is not None:
        return here.resolve() == there.resolve() or there.resolve() in here.resolve().parents
    return out.url == dataset.url or out.url.startswith(dataset.url + "/")


def _check_replaceable(out: Storage, dataset_root: Storage) -> None:
    """Refuse to replace anything that is not an earlier export (the dataset itself, say)."""
    if _inside(out, dataset_root):
        raise UsageError(
            f"--out {out} is inside the dataset folder {dataset_root}; choose a folder outside it"
        )
    local = out.local_path()
    if local is not None:
        if local.exists() and not local.is_dir():
            raise UsageError(f"--out {out} is a file; choose a folder")
        names = [p.name for p in local.iterdir()] if local.is_dir() else []
    else:
        names = list({name.split("/", 1)[0] for name in out.sizes()})
    foreign = sorted(name for name in names if name not in EXPORT_ENTRIES)
    if foreign:
        raise UsageError(
            f"--out {out} holds files an export does not write ({', '.join(foreign[:3])}); "
            "choose a new or empty folder"
        )


def _credits(dataset_root: Storage, exported: pd.DataFrame) -> bytes:
    """The dataset's CREDITS.csv, cut to the recordings the export holds."""
    try:
        credits = pd.read_csv(io.BytesIO(dataset_root.read_bytes(CREDITS)), dtype=str, keep_default_na=False)
        kept = credits[credits["recording_key"].isin(set(exported["recording_key"]))]
    except FileNotFoundError:
        raise UsageError(f"no {dataset_root}/{CREDITS}: rebuild the dataset with birdgrab chunk") from None
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise UsageError(f"{dataset_root}/{CREDITS} is not a birdgrab credits file ({exc})") from None
    return kept.to_csv(index=False, lineterminator="\n").encode("utf-8")


def run_export(
    dataset_root: Path | str | Storage,
    out: Path | str | Storage,
    options: ExportOptions,
    workers: Workers | None = None,
    manifests: Path | None = None,
) -> ExportReport:
    """Write the export of `dataset_root` to `out` (folders or storage URLs), replacing an earlier
    export there in one step; the shards are written on `workers` (default: this machine's processes).
    `manifests` holds the embeddings `--verify` made, if any (`--embeddings` computes the others).

    >>> run_export("s3://birds/dataset", "s3://birds/export", ExportOptions("parquet"))  # doctest: +SKIP
    """
    options = options.validated()
    embeddings = None
    if options.embeddings is not None:  # a missing extra: exit 2 before anything is written
        from birdgrab.verify.embeddings import EmbeddingSource

        embeddings = EmbeddingSource.of(manifests)
    target = open_storage(out)
    dataset = read_dataset(dataset_root)
    _check_replaceable(target, dataset.root)
    left_out = dataset.rows.iloc[:0]
    if not options.allow_nd:
        dataset, left_out = dataset.without_no_derivatives()
    report = ExportReport(out=target.url, format=options.format, classes=len(dataset.class_names))
    report.nd_recordings_left_out = int(left_out["recording_key"].nunique())
    report.nd_chunks_left_out = len(left_out)
    with contextlib.ExitStack() as stack:
        if workers is None:
            workers = stack.enter_context(
                Workers(jobs=os.cpu_count() or 1, preload=["birdgrab.export.parquet"])
            )
        local = target.local_path()
        if local is not None:
            staged = LocalStorage(stack.enter_context(atomic_folder(local)))
            _write_export(dataset, staged, "data", options, left_out, workers, report, embeddings)
        else:
            generation = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
            earlier = [name for name in target.sizes("data")]
            _write_export(
                dataset, target, f"data/{generation}", options, left_out, workers, report, embeddings
            )
            target.remove_many(f"data/{name}" for name in earlier)  # the card names the new ones now
    return report


def _write_export(
    dataset: DatasetFolder,
    target: Storage,
    folder: str,
    options: ExportOptions,
    left_out: pd.DataFrame,
    workers: Workers,
    report: ExportReport,
    embeddings: EmbeddingSource | None = None,
) -> None:
    """The shards (on the workers), then the credits and classes, and the card last: it names the shards."""
    shard_bytes = int(options.shard_mb * 2**20)
    written = WRITERS[options.format](dataset, target, folder, shard_bytes, workers, embeddings)
    exported = pd.concat(list(written.rows.values())) if written.rows else dataset.rows.iloc[:0]
    card = dataset_card(dataset, written, options.format, asdict(options), left_out).encode("utf-8")
    credits = _credits(dataset.root, exported)
    classes = (json.dumps(dataset.classes, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    # how it was made, for `birdgrab chunk --like export/dataset.json` (a dataset older than it has none)
    made_with = (json.dumps(dataset.made_with, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    files = [(CREDITS, credits), (CLASSES, classes)] + (
        [(DATASET_INFO, made_with)] if dataset.made_with else []
    )
    for name, data in (*files, ("README.md", card)):
        target.write_bytes(name, data)
    report.classes_with_clips = int(exported["label"].nunique())
    report.rows = {split: len(rows) for split, rows in written.rows.items()}
    report.shards = sum(len(files) for files in written.files.values())
    report.bytes = sum(written.bytes.values()) + len(card) + sum(len(data) for _, data in files)
    report.failed = dict(written.failed)
    if embeddings is not None:
        report.embeddings = written.embedded or (0, 0)
