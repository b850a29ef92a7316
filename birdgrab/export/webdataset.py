"""WebDataset tar shards: data/{split}-NNNNN-of-MMMMM.tar with `<key>.wav` + `<key>.json` per chunk.

The key is the chunk's path in the dataset without `.wav` (`Turdus_merula/xc-400498_0000`): class
folders and file stems hold no dots, so WebDataset's "key up to the first dot" rule keeps them
whole. The JSON holds every metadata.csv column. Members carry fixed times and owners, so the same
dataset gives byte-identical shards.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from birdgrab.executors import Workers
from birdgrab.export.dataset_files import DatasetFolder
from birdgrab.export.shards import EMBEDDING, Batches, Embed, Written, write_shards
from birdgrab.storage import Storage

if TYPE_CHECKING:  # --embeddings only
    from birdgrab.verify.embeddings import EmbeddingSource


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    return info, io.BytesIO(data)


def _sidecar(row: pd.Series) -> bytes:
    values = {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    return json.dumps(values, ensure_ascii=False, sort_keys=False).encode("utf-8")


def embeddings_path(shard: Path) -> Path:
    """`train-00000-of-00002.tar` -> `train-00000-of-00002.embedding.npy`: its chunks' embeddings, in tar order."""
    return shard.with_name(f"{shard.stem}.{EMBEDDING}.npy")


def write_tar_shard(path: Path, batches: Batches, context: None = None, embed: Embed | None = None) -> None:
    """One tar shard from its batches: `<key>.wav` and `<key>.json` per chunk (with `embed`, a .npy
    of (chunks, 1024) float32 beside it, row k the tar's k-th chunk)."""
    vectors = []
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for rows, audio in batches:
            for (_, row), wav in zip(rows.iterrows(), audio, strict=True):
                key = row["file_name"].removesuffix(".wav")
                tar.addfile(*_member(f"{key}.wav", wav))
                tar.addfile(*_member(f"{key}.json", _sidecar(row)))
            if embed is not None and audio:
                vectors.append(embed(audio))
    if embed is not None:
        np.save(
            embeddings_path(path), np.concatenate(vectors) if vectors else np.zeros((0, 1024), np.float32)
        )


def write_webdataset(
    dataset: DatasetFolder,
    target: Storage,
    folder: str,
    shard_bytes: int,
    workers: Workers,
    embeddings: EmbeddingSource | None = None,
) -> Written:
    """Write every split's tar shards under `target`/`folder` on the workers (with `embeddings`, a
    .npy beside each); returns what was written."""
    return write_shards(
        dataset, target, folder, shard_bytes, "tar", write_tar_shard, workers, embeddings=embeddings
    )
