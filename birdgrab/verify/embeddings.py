"""BirdNET embeddings of chunk files, for `export --embeddings birdnet`.

A chunk's embedding is the mean of BirdNET's 1024-value embeddings over the 3 s frames that cover
it (the frames `--verify` scores), kept at float16 precision. Chunks that `--verify` scored have
theirs in manifests/verify.sqlite already (found by the chunk file's content key); the model runs
only for the others, a few chunks an invoke.

The export's shards are written on its workers: each shard task carries an `EmbeddingSource` (a
path, nothing large) and opens an `Embedder` from it. The model is loaded once per worker process
(`birdgrab.verify.model.load`); a worker that cannot see the store (a Dask worker on another
machine) computes every embedding itself, with the same result.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from birdgrab.errors import UsageError
from birdgrab.verify import model as birdnet
from birdgrab.verify.scores import STORE, ScoreStore, content_key

_CHUNKS_PER_RUN = 4  # chunks resampled and framed at a time: a few MB of frames, whatever the batch


@dataclass(frozen=True)
class EmbeddingSource:
    """Where a shard task's embeddings come from: the model's version and the store `--verify` kept."""

    version: str
    store: str | None  # manifests/verify.sqlite, if there is one

    @classmethod
    def of(cls, manifests: Path | None) -> EmbeddingSource:
        """The installed model and the store in `manifests`; a missing extra is a `UsageError` (exit 2)."""
        files = birdnet.locate()
        path = Path(manifests) / STORE if manifests is not None else None
        found = path is not None and path.is_file()
        return cls(birdnet.version_of(files), str(path.resolve()) if found else None)

    @contextlib.contextmanager
    def open(self) -> Iterator[Embedder]:
        """An `Embedder` for one shard, on the worker that writes it."""
        store = self.store if self.store is not None and Path(self.store).is_file() else None
        embedder = Embedder(self.version, ScoreStore(Path(store)) if store else None)
        try:
            yield embedder
        finally:
            embedder.close()


class Embedder:
    """Embeddings of chunk files' bytes: stored ones where `--verify` made them, the model's for the rest."""

    def __init__(self, version: str, store: ScoreStore | None):
        self.version, self.store = version, store
        self.stored = 0  # embeddings found in the store
        self.computed = 0  # embeddings the model made

    @property
    def counts(self) -> tuple[int, int]:
        return self.stored, self.computed

    def __call__(self, chunks: list[bytes]) -> np.ndarray:
        """The (chunks, 1024) float32 embeddings of WAV files' bytes, in order."""
        samples, keys = [], []
        for data in chunks:
            try:
                audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise UsageError(
                    f"a chunk file is not a WAV file ({exc}): rebuild the dataset with birdgrab chunk"
                ) from None
            mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
            samples.append((mono, rate))
            keys.append(content_key(mono, rate))
        known = dict(self.store.embeddings(self.version, keys)) if self.store is not None else {}
        result = np.empty((len(chunks), birdnet.EMBEDDING_SIZE), dtype=np.float32)
        missing = []
        for position, key in enumerate(keys):
            if key in known:
                result[position] = known[key]
            else:
                missing.append(position)
        self.stored += len(chunks) - len(missing)
        self.computed += len(missing)
        for start in range(0, len(missing), _CHUNKS_PER_RUN):
            group = missing[start : start + _CHUNKS_PER_RUN]
            frames = [birdnet.frames_of(birdnet.to_model_rate(*samples[p])) for p in group]
            output = birdnet.load().run(np.concatenate(frames))
            first = 0
            for position, part in zip(group, frames, strict=True):
                mean = output.embeddings[first : first + len(part)].mean(axis=0)
                result[position] = mean.astype(np.float16).astype(np.float32)  # as the store keeps them
                first += len(part)
        return result

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
