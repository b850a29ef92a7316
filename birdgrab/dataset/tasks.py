"""What a chunk worker does, on this machine's pool or a Dask worker: cut a batch of recordings.

`cut_batch(options, batch)` is the one worker-side entry point. It is a pure function of small
arguments: the storages travel by reference (their URLs), each recording by its name in the cache.
A worker reads each recording from the cache (the file itself on a disk, a temporary download from
a bucket), cuts it, writes its chunk files to the dataset (in place on a disk, one PUT each to a
bucket, and only once the whole recording decoded), and returns one small row per recording. A
recording that fails says why in its row and the batch goes on; nothing large travels back.

Whatever a worker process loads once for all its batches is kept per process: `--verify`'s
BirdNET model (`birdgrab.verify.model.load`) is loaded on the first window a worker scores and
serves every later batch, in the process pool and on Dask workers alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from birdgrab.dataset.options import NOISE_LABEL, ChunkOptions
from birdgrab.dataset.windows import windowing_for
from birdgrab.probe import AudioError
from birdgrab.storage import Storage

if TYPE_CHECKING:
    from birdgrab.dataset.cutting import ChunkResult
    from birdgrab.verify.windows import VerifyJob  # --verify only: nothing of BirdNET is imported without it


@dataclass(frozen=True)
class ChunkFailure:
    reason: str
    bad_source: bool  # the cached file itself does not decode (as opposed to, say, a full disk)


@dataclass(frozen=True)
class ChunkItem:
    """One recording to cut: where its file is in the cache, its class, its chunk files' stem."""

    key: str
    source: str  # the cache file's name, relative to the cache
    label: str
    stem: str
    verify: VerifyJob | None = None  # --verify: how to check its windows (its class's BirdNET label...)


@dataclass(frozen=True)
class ChunkBatch:
    """Recordings a worker cuts in one task, and the storages it reads from and writes to."""

    cache: Storage
    dataset: Storage
    items: tuple[ChunkItem, ...]


def cut_batch(options: ChunkOptions, batch: ChunkBatch) -> list[tuple[str, ChunkResult | ChunkFailure]]:
    """Cut every recording of `batch`; (key, result or why it failed) for each, in order."""
    return [(item.key, _cut_one(options, batch, item)) for item in batch.items]


def _cut_one(options: ChunkOptions, batch: ChunkBatch, item: ChunkItem) -> ChunkResult | ChunkFailure:
    # Here, not at the top: the decoders (PyAV) load in the workers that cut, not in the command
    # that plans (a refresh with nothing new never cuts; the pool preloads this module).
    from birdgrab.dataset.cutting import cut_recording

    verifier = None
    if item.verify is not None:
        from birdgrab.verify.windows import BirdNetVerifier

        verifier = BirdNetVerifier(item.verify, options.sample_rate, options.chunk_frames)
        if item.verify.cap is not None:  # the verifier ranks the windows by confidence and caps them
            options = replace(options, max_chunks_per_recording=None)
    try:
        with batch.cache.local_copy(item.source) as source:
            return cut_recording(
                source,
                batch.dataset,
                item.label,
                item.stem,
                windowing_for(options),
                sample_rate=options.sample_rate,
                chunk_frames=options.chunk_frames,
                noise_folder=NOISE_LABEL,
                verifier=verifier,
            )
    except AudioError as exc:
        return ChunkFailure(exc.reason, bad_source=True)
    except FileNotFoundError as exc:
        return ChunkFailure(f"cached file missing: {exc.filename or exc}", bad_source=False)
    except OSError as exc:
        return ChunkFailure(f"cannot write chunks: {exc.strerror or exc}", bad_source=False)
