"""BirdNET's scores and embeddings per chunk, kept so that no chunk is scored twice.

A chunk is known by its content key: a hash of its samples (what the chunk file holds, padding
included) and its sample rate. A refresh or a re-cut that makes a chunk again finds its
scores under that key and runs the model only for new chunks. Scores are kept sparsely: the
labels at or above `FLOOR` with their confidences as 16-bit fractions (about 20 labels, 80
bytes a chunk), and the 1024-value embedding as float16 (2 KB a chunk), so a million chunks
take about 2 GB. They live in `manifests/verify.sqlite`, one row per (model version, chunk),
written by the parent as each recording settles: a run that is killed loses at most the rows
of recordings it had not settled, which the next run scores again.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from birdgrab.verify.model import EMBEDDING_SIZE

STORE = "verify.sqlite"
FLOOR = 0.01  # confidences below are not kept (and read as 0)
_SCALE = 65535.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk_scores (
    model TEXT NOT NULL,
    content TEXT NOT NULL,
    recording_key TEXT NOT NULL,
    scores BLOB NOT NULL,
    embedding BLOB NOT NULL,
    PRIMARY KEY (model, content)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunk_scores_by_recording ON chunk_scores (model, recording_key);
"""


def content_key(samples: np.ndarray, sample_rate: int) -> str:
    """The key of a chunk's content: its samples as its file holds them (16-bit PCM read as float32,
    padding included) at `sample_rate`. The cutter's spool and a read of the chunk file agree."""
    digest = hashlib.sha256(f"{sample_rate}:".encode())
    digest.update(np.ascontiguousarray(samples, dtype="<f4").tobytes())
    return digest.hexdigest()[:32]


def pack_scores(confidences: np.ndarray) -> bytes:
    """The labels at or above `FLOOR` and their confidences: `<u2` indices then `<u2` fractions."""
    indices = np.flatnonzero(confidences >= FLOOR)
    values = np.rint(confidences[indices].astype(np.float64) * _SCALE)
    return indices.astype("<u2").tobytes() + values.astype("<u2").tobytes()


def unpack_scores(blob: bytes) -> dict[int, float]:
    """Label index -> confidence (4 decimals) of packed scores."""
    half = len(blob) // 2
    indices = np.frombuffer(blob[:half], dtype="<u2")
    values = np.frombuffer(blob[half:], dtype="<u2") / _SCALE
    return {int(i): round(float(v), 4) for i, v in zip(indices, values, strict=True)}


def pack_embedding(embedding: np.ndarray) -> bytes:
    return np.asarray(embedding, dtype="<f2").tobytes()


def unpack_embedding(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)


@dataclass(frozen=True)
class Scored:
    """One chunk's scores and embedding, packed, under its content key."""

    content: str
    scores: bytes
    embedding: bytes


class ScoreStore:
    """`manifests/verify.sqlite`: packed scores and embeddings by (model version, content key)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: a lost last commit is scored again
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, folder: Path) -> ScoreStore:
        return cls(Path(folder) / STORE)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ScoreStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def of_recording(self, model: str, recording_key: str) -> dict[str, bytes]:
        """Content key -> packed scores of the chunks stored for a recording."""
        rows = self._db.execute(
            "SELECT content, scores FROM chunk_scores WHERE model = ? AND recording_key = ?",
            (model, recording_key),
        )
        return dict(rows)

    def put(self, model: str, recording_key: str, scored: Iterable[Scored]) -> None:
        """Keep a recording's new scores (one transaction)."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO chunk_scores VALUES (?, ?, ?, ?, ?)",
                [(model, s.content, recording_key, s.scores, s.embedding) for s in scored],
            )

    def embeddings(self, model: str, contents: Iterable[str]) -> Iterator[tuple[str, np.ndarray]]:
        """(content key, embedding) of those of `contents` that are stored."""
        wanted = list(dict.fromkeys(contents))
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT content, embedding FROM chunk_scores WHERE model = ? AND content IN ({marks})",
                (model, *part),
            )
            for content, blob in rows:
                if len(blob) == 2 * EMBEDDING_SIZE:
                    yield content, unpack_embedding(blob)

    def forget(self, recording_keys: Iterable[str]) -> None:
        """Drop the scores of recordings that left the dataset (every model version)."""
        with self._db:
            self._db.executemany(
                "DELETE FROM chunk_scores WHERE recording_key = ?", [(k,) for k in recording_keys]
            )
