"""Cutting a dataset's chunks into shards of about the same size, one split at a time, each
written by a worker.

Shard sizes come from the WAV files' sizes (a stat each on a disk, one listing of a bucket)
before anything is written, so every shard knows its `-of-MMMMM` name up front. Each shard is one
task (`write_shard`) on the command's `executors.Workers`: it reads its chunks from the dataset
(a batch at a time: memory holds one batch of audio, not a shard), writes the shard file, and puts
it in the export whole; only the shard's rows and size come back. With `--embeddings`, the writer
also gets an `Embed` (opened on the worker from the task's `EmbeddingSource`): BirdNET's model is
loaded once per worker process, whichever shards it writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from birdgrab.executors import Workers
from birdgrab.export.dataset_files import HF_SPLITS, DatasetFolder
from birdgrab.storage import Storage

if TYPE_CHECKING:  # --embeddings only: nothing of BirdNET is imported without it
    from birdgrab.verify.embeddings import EmbeddingSource

BATCH_ROWS = 100  # audio rows per read (and per Parquet row group: what the HF hub streams well)


@dataclass(frozen=True)
class Shard:
    split: str  # the Hugging Face split name: train, validation, test
    index: int
    count: int
    rows: pd.DataFrame

    def name(self, suffix: str) -> str:
        """`train-00000-of-00003.parquet`: the hub's shard naming."""
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}.{suffix}"


@dataclass
class Written:
    """What a writer put into the export, per split; rows that could not be read are in `failed`."""

    folder: str = "data"  # where the shards are, relative to the export
    files: dict[str, list[str]] = field(default_factory=dict)  # split -> shard paths, relative
    rows: dict[str, pd.DataFrame] = field(default_factory=dict)  # split -> exported rows
    failed: dict[str, str] = field(default_factory=dict)  # file_name -> reason
    bytes: dict[str, int] = field(default_factory=dict)  # split -> bytes of its shards
    embedded: tuple[int, int] | None = None  # --embeddings: (found stored by --verify, computed now)

    def add(self, split: str, path: str, size: int) -> None:
        self.files.setdefault(split, []).append(path)
        self.bytes[split] = self.bytes.get(split, 0) + size


def plan(dataset: DatasetFolder, shard_bytes: int) -> Iterator[Shard]:
    """Every split's rows (sorted by file name) in shards of at most `shard_bytes` of audio
    (a single larger chunk gets a shard of its own). Splits without rows get no shard."""
    sizes = dataset.root.sizes()
    for ours, hf_name in HF_SPLITS.items():
        rows = dataset.rows[dataset.rows["split"] == ours].sort_values("file_name", kind="stable")
        if rows.empty:
            continue
        starts, total = [0], 0
        for position, file_name in enumerate(rows["file_name"]):
            size = _size(sizes, file_name)
            if total and total + size > shard_bytes:
                starts.append(position)
                total = 0
            total += size
        bounds = [*starts, len(rows)]
        for index in range(len(starts)):
            yield Shard(hf_name, index, len(starts), rows.iloc[bounds[index] : bounds[index + 1]])


def _size(sizes: Mapping[str, int], file_name: str) -> int:
    try:
        return sizes.get(file_name, 0)
    except ValueError:
        return 0  # a name that would leave the dataset: reported when the writer reads it


Batches = Iterator[tuple[pd.DataFrame, list[bytes]]]
Embed = Callable[[list[bytes]], np.ndarray]  # WAV files' bytes -> their (n, 1024) embeddings
EMBEDDING = "embedding"  # the export's column (Parquet) and shard file suffix (WebDataset)
# Writes one shard file at a path from its batches; `context` is what the format needs (a schema),
# `embed` (or None) gives the chunks' embeddings.
ShardWriter = Callable[[Any, Batches, Any, Embed | None], None]


def read_audio(root: Storage, rows: pd.DataFrame, failed: dict[str, str]) -> Batches:
    """The rows in batches with their WAV bytes; unreadable files are left out and noted in `failed`."""
    for start in range(0, len(rows), BATCH_ROWS):
        batch = rows.iloc[start : start + BATCH_ROWS]
        found = root.read_many(list(batch["file_name"]))
        keep, audio = [], []
        for position, file_name in enumerate(batch["file_name"]):
            data = found[file_name]
            if isinstance(data, Exception):
                failed[file_name] = getattr(data, "strerror", None) or str(data) or type(data).__name__
                continue
            keep.append(position)
            audio.append(data)
        yield batch.iloc[keep], audio


@dataclass(frozen=True)
class ShardTask:
    """One shard for a worker: where the chunks are, where the shard goes, its rows, how to write it."""

    dataset: Storage
    target: Storage
    name: str  # relative to the export: data/train-00000-of-00003.parquet
    rows: pd.DataFrame
    writer: ShardWriter
    context: Any = None
    embeddings: EmbeddingSource | None = None  # --embeddings: where the embeddings come from


@dataclass(frozen=True)
class ShardResult:
    name: str
    size: int
    rows: pd.DataFrame  # the rows whose audio is in the shard
    failed: dict[str, str]
    embedded: tuple[int, int] | None  # --embeddings: (found stored, computed)


def write_shard(task: ShardTask) -> ShardResult:
    """Runs on a worker: read the shard's chunks, write the shard, put it in the export whole."""
    failed: dict[str, str] = {}
    parts: list[pd.DataFrame] = []

    def batches() -> Batches:
        for rows, audio in read_audio(task.dataset, task.rows, failed):
            parts.append(rows)
            yield rows, audio

    with contextlib.ExitStack() as stack:
        embed = stack.enter_context(task.embeddings.open()) if task.embeddings is not None else None
        root = stack.enter_context(task.target.staging())
        path = root.joinpath(*task.name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        task.writer(path, batches(), task.context, embed)
        size = path.stat().st_size
    rows = pd.concat(parts) if parts else task.rows.iloc[:0]
    return ShardResult(task.name, size, rows, failed, embed.counts if embed is not None else None)


def write_shards(
    dataset: DatasetFolder,
    target: Storage,
    folder: str,
    shard_bytes: int,
    suffix: str,
    writer: ShardWriter,
    workers: Workers,
    context: Any = None,
    embeddings: EmbeddingSource | None = None,
) -> Written:
    """Plan the shards and have the workers write each one (to `folder`/<name>.<suffix> in `target`)."""
    written = Written(folder=folder)
    futures: list[tuple[Shard, Future]] = []
    for shard in plan(dataset, shard_bytes):
        name = f"{folder}/{shard.name(suffix)}"
        task = ShardTask(dataset.root, target, name, shard.rows, writer, context, embeddings)
        futures.append((shard, workers.submit(write_shard, task)))
    exported: dict[str, list[pd.DataFrame]] = {}  # split -> its shards' rows, joined once at the end
    for shard, future in futures:  # in shard order, whatever order they finish in
        result: ShardResult = future.result()
        written.add(shard.split, result.name, result.size)
        written.failed.update(result.failed)
        if result.embedded is not None:
            stored, computed = written.embedded or (0, 0)
            written.embedded = (stored + result.embedded[0], computed + result.embedded[1])
        exported.setdefault(shard.split, []).append(result.rows)
    written.rows = {split: pd.concat(parts) for split, parts in exported.items()}
    return written
