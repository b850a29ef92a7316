"""Parquet shards in the Hugging Face hub layout: data/{split}-NNNNN-of-MMMMM.parquet.

Each row is one chunk: `audio` (the WAV bytes and its path: the `Audio` feature), `label` (a
`ClassLabel` whose names are the classes in class-id order, so label == class_id), every
metadata.csv column and, with `--embeddings birdnet`, `embedding`: 1024 float32 values. The features are also stored in each file's schema metadata under
`huggingface`, as `datasets` itself writes them, so a shard read on its own still knows them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from birdgrab.executors import Workers
from birdgrab.export.dataset_files import DatasetFolder
from birdgrab.export.shards import EMBEDDING, Batches, Embed, Written, write_shards
from birdgrab.storage import Storage

if TYPE_CHECKING:  # --embeddings only
    from birdgrab.verify.embeddings import EmbeddingSource

AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
EMBEDDING_TYPE = pa.list_(pa.float32(), 1024)  # export --embeddings birdnet


def _value_type(dtype: Any) -> tuple[pa.DataType, str]:
    """The Arrow type and the `datasets` Value dtype of a metadata column."""
    if pd.api.types.is_integer_dtype(dtype):
        return pa.int64(), "int64"
    if pd.api.types.is_float_dtype(dtype):
        return pa.float64(), "float64"
    return pa.string(), "string"


def hf_features(dataset: DatasetFolder, embeddings: bool = False) -> dict[str, dict[str, Any]]:
    """The `datasets` features, in the JSON form of `Features.to_dict()`."""
    features: dict[str, dict[str, Any]] = {
        "audio": {"sampling_rate": dataset.sample_rate, "_type": "Audio"},
        "label": {"names": list(dataset.class_names), "_type": "ClassLabel"},
    }
    for column in dataset.rows.columns:
        if column != "label":
            features[column] = {"dtype": _value_type(dataset.rows[column].dtype)[1], "_type": "Value"}
    if embeddings:
        features[EMBEDDING] = {
            "feature": {"dtype": "float32", "_type": "Value"},
            "length": EMBEDDING_TYPE.list_size,
            "_type": "Sequence",
        }
    return features


def arrow_schema(dataset: DatasetFolder, embeddings: bool = False) -> pa.Schema:
    fields = [pa.field("audio", AUDIO_TYPE), pa.field("label", pa.int64())]
    fields += [
        pa.field(column, _value_type(dataset.rows[column].dtype)[0])
        for column in dataset.rows.columns
        if column != "label"
    ]
    if embeddings:
        fields.append(pa.field(EMBEDDING, EMBEDDING_TYPE))
    metadata = {"huggingface": json.dumps({"info": {"features": hf_features(dataset, embeddings)}})}
    return pa.schema(fields, metadata=metadata)


def _batch(schema: pa.Schema, rows: pd.DataFrame, audio: list[bytes], embed: Embed | None) -> pa.RecordBatch:
    arrays = [
        pa.StructArray.from_arrays(
            [pa.array(audio, pa.binary()), pa.array(rows["file_name"].tolist(), pa.string())],
            fields=list(AUDIO_TYPE),
        ),
        pa.array(rows["class_id"].to_numpy(), pa.int64()),
    ]
    for schema_field in list(schema)[2:]:
        if schema_field.name == EMBEDDING and embed is not None:
            vectors = embed(audio) if audio else np.zeros((0, EMBEDDING_TYPE.list_size), dtype=np.float32)
            arrays.append(
                pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), EMBEDDING_TYPE.list_size)
            )
            continue
        arrays.append(pa.array(rows[schema_field.name].tolist(), schema_field.type, from_pandas=True))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def write_parquet_shard(path: Path, batches: Batches, schema: pa.Schema, embed: Embed | None = None) -> None:
    """One Parquet shard from its batches (a row group each; with `embed`, an `embedding` column)."""
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for rows, audio in batches:
            writer.write_batch(_batch(schema, rows, audio, embed), row_group_size=len(rows) or None)


def write_parquet(
    dataset: DatasetFolder,
    target: Storage,
    folder: str,
    shard_bytes: int,
    workers: Workers,
    embeddings: EmbeddingSource | None = None,
) -> Written:
    """Write every split's shards under `target`/`folder` on the workers (with `embeddings`, an
    `embedding` column); returns what was written."""
    schema = arrow_schema(dataset, embeddings=embeddings is not None)
    return write_shards(
        dataset, target, folder, shard_bytes, "parquet", write_parquet_shard, workers, schema, embeddings
    )
