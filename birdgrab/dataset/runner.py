"""The runner: cuts the planned recordings in batches on the workers, guards the disk, keeps the chunk ledger.

The work goes to an `executors.Workers` (this machine's process pool, or a Dask cluster) as
batches of recordings (`tasks.cut_batch`): a task costs a few milliseconds on Dask, so each
carries about a minute or more of audio, and a long recording goes alone. Each finished recording is
settled here, on the command's machine, as its batch returns: its chunks and rows go into the
ledger (one fsynced journal line), and a recording cut before with other options loses the chunk
files it no longer has. A cached file that does not decode is handed back to the download side.

A worker that dies (SIGKILLed, or killed for exhausting its memory) loses its batch: the batch is
cut again one recording a task, so one recording too big for a worker fails alone, with a reason,
and the rest goes on. A cluster that goes away stops the run cleanly (exit 1): the ledger holds
what was done, and the next run does the rest.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from birdgrab import manifests
from birdgrab.dataset.options import NOISE_LABEL, ChunkOptions
from birdgrab.dataset.plan import Usable, file_stem
from birdgrab.dataset.report import ChunkReport
from birdgrab.dataset.tasks import ChunkBatch, ChunkFailure, ChunkItem, cut_batch
from birdgrab.download import Cache, DownloadLedger
from birdgrab.executors import Workers
from birdgrab.hold_points import hold_point
from birdgrab.models import ChunkedRecording, ChunkRow, ChunksManifest
from birdgrab.storage import Storage

if TYPE_CHECKING:
    from birdgrab.dataset.cutting import ChunkResult
    from birdgrab.verify.run import Verification  # --verify only: nothing of BirdNET is imported without it
    from birdgrab.verify.windows import VerifyJob

Progress = Callable[[str, int], None]

# A batch holds this much audio (seconds) or between: at least enough that Dask's few milliseconds a
# task do not count, at most what keeps a lost worker's redo and the wait for progress small.
MIN_BATCH_AUDIO_S = 60.0
MAX_BATCH_AUDIO_S = 900.0
MAX_BATCH_ITEMS = 64
UNKNOWN_DURATION_S = 60.0
# How often one recording may take its worker down with it before it is recorded as failed.
MAX_LOSSES = 3


class ChunksLedger(manifests.Ledger[ChunksManifest, ChunkedRecording]):
    """manifests/chunks.json and its journal: per recording, what was cut, from which file, how."""

    def __init__(self, folder: Path):
        super().__init__(folder, manifests.CHUNKS, ChunksManifest, ChunkedRecording)


def remove_chunks(out: Storage, entry: ChunkedRecording | None, keep: Iterable[str] = ()) -> None:
    """Delete the chunk files of `entry` except those named in `keep`."""
    if entry is None:
        return
    keep = set(keep)
    out.remove_many(chunk.file_name for chunk in entry.chunks if chunk.file_name not in keep)


def batches(todo: list[Usable], slots: int) -> list[list[Usable]]:
    """`todo` in batches that shrink as the work runs out (guided self-scheduling).

    Each batch holds about the audio still to cut over twice the `slots`, kept between the bounds:
    the first ones big enough that a task's own cost does not count, the last ones a recording or
    two, so the workers finish together instead of one cutting a whole batch while the others wait.
    """
    durations = [u.duration_s or UNKNOWN_DURATION_S for u in todo]
    remaining = sum(durations)
    result: list[list[Usable]] = []
    current: list[Usable] = []
    audio = target = 0.0
    for item, duration in zip(todo, durations, strict=True):
        if not current:
            target = min(max(remaining / (2 * max(1, slots)), MIN_BATCH_AUDIO_S), MAX_BATCH_AUDIO_S)
        current.append(item)
        audio += duration
        remaining -= duration
        if audio >= target or len(current) >= MAX_BATCH_ITEMS:
            result.append(current)
            current, audio = [], 0.0
    if current:
        result.append(current)
    return result


class ChunkRunner:
    """Cuts recordings on `workers`, settling each into the ledger as its batch returns."""

    def __init__(
        self,
        out: Storage,
        cache: Cache,
        options: ChunkOptions,
        ledger: ChunksLedger,
        downloads: DownloadLedger,
        report: ChunkReport,
        workers: Workers,
        verification: Verification | None = None,
    ):
        self.out, self.cache, self.options = out, cache, options
        self.ledger, self.downloads, self.report = ledger, downloads, report
        self.workers, self.verification = workers, verification
        self._evicted = False

    def run(self, todo: list[Usable], on_progress: Progress | None = None) -> None:
        now = manifests.utc_now()
        for item in todo:
            previous = self.ledger.entries.get(item.recording.key)
            if previous is not None and previous.label != item.label:
                remove_chunks(self.out, previous)
        if on_progress:
            on_progress("start", len(todo))
        if not todo:
            return
        queue = deque(batches(todo, self.workers.slots))
        losses: Counter[str] = Counter()
        pending: dict[Future, list[Usable]] = {}
        while queue or pending:
            while queue and len(pending) < self.workers.slots * 2 and self.report.stopped is None:
                if self._disk_low():
                    break
                batch = queue.popleft()
                pending[self.workers.submit(cut_batch, self.options, self._batch(batch))] = batch
            if self.report.stopped is not None:
                queue.clear()
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                batch = pending.pop(future)
                try:
                    outcomes = future.result()
                except Exception as exc:
                    self._unfinished(batch, exc, queue, losses, now)
                    continue
                by_key = {item.recording.key: item for item in batch}
                for key, outcome in outcomes:
                    self._settle(by_key[key], outcome, now)
                    hold_point("chunk-recorded")
                if on_progress:
                    on_progress("file", len(batch))
        if self._evicted:
            self.downloads.save()

    def _batch(self, items: list[Usable]) -> ChunkBatch:
        return ChunkBatch(
            self.cache.storage,
            self.out,
            tuple(
                ChunkItem(u.recording.key, u.source, u.label, file_stem(u.recording), self._verify_job(u))
                for u in items
            ),
        )

    def _verify_job(self, item: Usable) -> VerifyJob | None:
        return self.verification.job(item.recording.key, item.label) if self.verification else None

    def _unfinished(
        self, batch: list[Usable], exc: Exception, queue: deque, losses: Counter[str], now: datetime
    ) -> None:
        """A batch that came back without results: its worker died, or the cluster went away."""
        if self.workers.gone(exc):
            self.report.stopped = (
                f"{self.workers.describe()} went away: stopped chunking (run again to finish)"
            )
            return
        if not self.workers.lost(exc):
            raise exc
        if len(batch) > 1:  # again, one a task: whatever took the worker down fails alone
            queue.extendleft([item] for item in reversed(batch))
            return
        item = batch[0]
        losses[item.recording.key] += 1
        if losses[item.recording.key] < MAX_LOSSES and not self.workers.conclusive(exc):
            queue.appendleft(batch)
            return
        reason = "its worker died cutting it (out of memory, or killed) each time it was tried"
        self._remove_leftovers(item)
        self._settle(item, ChunkFailure(reason, bad_source=False), now)

    def _remove_leftovers(self, item: Usable) -> None:
        """A worker that died cutting `item` may have written some of its chunk files first (an upload
        whose body had arrived completes without its sender): none of them may stay as half a recording."""
        stem = f"{file_stem(item.recording)}_"
        for folder in (item.label, NOISE_LABEL):
            found = [name for name in self.out.sizes(folder) if name.startswith(stem)]
            self.out.remove_many(f"{folder}/{name}" for name in found)

    def _disk_low(self) -> bool:
        """Stop (cleanly, exit 1) before the disk fills: the report says why."""
        if self.out.free_mb() >= self.options.min_free_mb:
            return False
        self.report.stopped = (
            f"less than {self.options.min_free_mb:g} MB free under {self.out.url}: stopped chunking"
        )
        return True

    def _settle(self, item: Usable, result: ChunkResult | ChunkFailure, now: datetime) -> None:
        key = item.recording.key
        previous = self.ledger.entries.get(key)
        if isinstance(result, ChunkFailure):
            remove_chunks(self.out, previous)
            reason = result.reason
            listing = self.report.failed
            if result.bad_source:
                eviction = self.cache.evict(self.downloads, key, reason)
                reason += f" ({eviction.note})"
                self._evicted = True
                if eviction.rejected:  # the file's own bytes: listed, not a failure (exit 0)
                    listing = self.report.rejected
            listing[key] = reason
            self.ledger.record(
                ChunkedRecording(
                    key=key,
                    status="failed",
                    label=item.label,
                    reason=reason,
                    source_sha256=item.sha256,
                    updated_at=now,
                )
            )
            return
        rows = [
            ChunkRow(
                file_name=f"{NOISE_LABEL if chunk.noise else item.label}/{chunk.file_name}",
                chunk_index=chunk.index,
                offset_s=round(chunk.offset_s, 3),
                duration_s=round(chunk.duration_s, 3),
                padded_s=round(chunk.padded_s, 3),
                rms_dbfs=round(chunk.rms_dbfs, 2),
                activity_s=chunk.activity_s,
                noise=chunk.noise,
                verify=chunk.verdict,
            )
            for chunk in result.chunks
        ]
        if self.verification is not None:
            self.verification.settle(key, result.verification)
        remove_chunks(self.out, previous, keep=[row.file_name for row in rows])
        self.report.cut(key)
        self.report.chunks_written += len(rows)
        self.report.dropped.update(result.dropped)
        self.ledger.record(
            ChunkedRecording(
                key=key,
                status="ok",
                label=item.label,
                source_sha256=item.sha256,
                options=self.options.signature(),
                chunks=rows,
                dropped_silent=result.dropped_silent,
                dropped_short=result.dropped_short,
                decoded_s=round(result.decoded_s, 3),
                verify=result.verification.verdict if result.verification is not None else None,
                updated_at=now,
            )
        )
