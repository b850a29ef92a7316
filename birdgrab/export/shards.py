"""Cutting a dataset's chunks into shards of about the same size, one split at a time.

Shard sizes come from the WAV files' sizes (one stat each) before anything is written, so every
shard knows its `-of-MMMMM` name up front and memory holds one batch of audio, not a shard.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from birdgrab.export.dataset_files import HF_SPLITS, DatasetFolder
from birdgrab.files import safe_child

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

    files: dict[str, list[str]] = field(default_factory=dict)  # split -> shard paths, relative
    rows: dict[str, pd.DataFrame] = field(default_factory=dict)  # split -> exported rows
    failed: dict[str, str] = field(default_factory=dict)  # file_name -> reason
    bytes: dict[str, int] = field(default_factory=dict)  # split -> bytes of its shards

    def add(self, split: str, path: str, size: int) -> None:
        self.files.setdefault(split, []).append(path)
        self.bytes[split] = self.bytes.get(split, 0) + size


def chunk_path(root: Path, file_name: str) -> Path:
    """The WAV file of a metadata row, refusing names that would leave the dataset folder."""
    return safe_child(root, *file_name.split("/"))


def _size(root: Path, file_name: str) -> int:
    try:
        return os.stat(chunk_path(root, file_name)).st_size
    except (OSError, ValueError):
        return 0  # reported when the writer reads it


def plan(dataset: DatasetFolder, shard_bytes: int) -> Iterator[Shard]:
    """Every split's rows (sorted by file name) in shards of at most `shard_bytes` of audio
    (a single larger chunk gets a shard of its own). Splits without rows get no shard."""
    for ours, hf_name in HF_SPLITS.items():
        rows = dataset.rows[dataset.rows["split"] == ours].sort_values("file_name", kind="stable")
        if rows.empty:
            continue
        starts, total = [0], 0
        for position, file_name in enumerate(rows["file_name"]):
            size = _size(dataset.root, file_name)
            if total and total + size > shard_bytes:
                starts.append(position)
                total = 0
            total += size
        bounds = [*starts, len(rows)]
        for index in range(len(starts)):
            yield Shard(hf_name, index, len(starts), rows.iloc[bounds[index] : bounds[index + 1]])


Batches = Iterator[tuple[pd.DataFrame, list[bytes]]]
Embed = Callable[[list[bytes]], np.ndarray]  # WAV files' bytes -> their (n, 1024) embeddings
EMBEDDING = "embedding"  # the export's column (Parquet) and shard file suffix (WebDataset)


def read_audio(root: Path, rows: pd.DataFrame, failed: dict[str, str]) -> Batches:
    """The rows in batches with their WAV bytes; unreadable files are left out and noted in `failed`."""
    for start in range(0, len(rows), BATCH_ROWS):
        batch = rows.iloc[start : start + BATCH_ROWS]
        keep, audio = [], []
        for position, file_name in enumerate(batch["file_name"]):
            try:
                audio.append(chunk_path(root, file_name).read_bytes())
            except (OSError, ValueError) as exc:
                failed[file_name] = getattr(exc, "strerror", None) or str(exc)
                continue
            keep.append(position)
        yield batch.iloc[keep], audio


def write_shards(
    dataset: DatasetFolder,
    target: Path,
    shard_bytes: int,
    suffix: str,
    write_shard: Callable[[Path, Batches], None],
) -> Written:
    """Plan the shards and have `write_shard` write each one (to data/<name>.<suffix>) from its batches."""
    written = Written()
    exported: dict[str, list[pd.DataFrame]] = {}  # split -> its batches, joined once at the end
    (target / "data").mkdir(parents=True, exist_ok=True)
    for shard in plan(dataset, shard_bytes):
        relative = f"data/{shard.name(suffix)}"
        parts = exported.setdefault(shard.split, [])

        def batches(shard: Shard = shard, parts: list[pd.DataFrame] = parts) -> Batches:
            for rows, audio in read_audio(dataset.root, shard.rows, written.failed):
                parts.append(rows)
                yield rows, audio

        write_shard(target / relative, batches())
        written.add(shard.split, relative, (target / relative).stat().st_size)
    written.rows = {
        split: pd.concat(parts) if parts else dataset.rows.iloc[:0] for split, parts in exported.items()
    }
    return written
