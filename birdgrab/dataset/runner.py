"""The runner: cuts the planned recordings in a process pool, guards the disk, keeps the chunk ledger.

Each finished recording is settled at once: its chunks and rows go into the ledger (one fsynced
journal line), and a recording cut before with other options loses the chunk files it no longer
has. A cached file that does not decode is handed back to the download side.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from birdgrab import manifests
from birdgrab.audio import AudioError
from birdgrab.dataset.cutting import ChunkResult, cut_recording
from birdgrab.dataset.options import NOISE_LABEL, ChunkOptions
from birdgrab.dataset.plan import Usable, file_stem
from birdgrab.dataset.report import ChunkReport
from birdgrab.dataset.windows import windowing_for
from birdgrab.download import Cache, DownloadLedger
from birdgrab.files import safe_child
from birdgrab.models import ChunkedRecording, ChunkRow, ChunksManifest

if TYPE_CHECKING:  # --verify only: nothing of BirdNET is imported without it
    from birdgrab.verify.run import Verification
    from birdgrab.verify.windows import VerifyJob

Progress = Callable[[str, int], None]


def _exit_with_parent(parent_pid: int) -> None:
    """Pool worker initializer: leave when the birdgrab process that started the pool is gone.

    A SIGKILLed parent cannot stop its pool, and a worker waiting for work never sees the queue
    close (it holds both ends itself): without this, every killed run would leave workers behind.
    """

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@dataclass(frozen=True)
class ChunkFailure:
    reason: str
    bad_source: bool  # the cached file itself does not decode (as opposed to, say, a full disk)


def _chunk_job(
    src: str, out_dir: str, noise_dir: str, stem: str, options: ChunkOptions, verify: VerifyJob | None = None
) -> ChunkResult | ChunkFailure:
    """Runs in a worker process; returns the result, or why it failed."""
    verifier = None
    if verify is not None:
        from birdgrab.verify.windows import BirdNetVerifier

        verifier = BirdNetVerifier(verify, options.sample_rate, options.chunk_frames)
        if verify.cap is not None:  # the verifier ranks the windows by confidence and caps them
            options = replace(options, max_chunks_per_recording=None)
    try:
        return cut_recording(
            src,
            out_dir,
            stem,
            windowing_for(options),
            sample_rate=options.sample_rate,
            chunk_frames=options.chunk_frames,
            noise_dir=noise_dir,
            verifier=verifier,
        )
    except AudioError as exc:
        return ChunkFailure(exc.reason, bad_source=True)
    except OSError as exc:
        return ChunkFailure(f"cannot write chunks: {exc.strerror or exc}", bad_source=False)


class ChunksLedger(manifests.Ledger[ChunksManifest, ChunkedRecording]):
    """manifests/chunks.json and its journal: per recording, what was cut, from which file, how."""

    def __init__(self, folder: Path):
        super().__init__(folder, manifests.CHUNKS, ChunksManifest, ChunkedRecording)


def remove_chunks(out: Path, entry: ChunkedRecording | None, keep: Iterable[str] = ()) -> None:
    """Delete the chunk files of `entry` except those named in `keep`."""
    if entry is None:
        return
    keep = set(keep)
    for chunk in entry.chunks:
        if chunk.file_name not in keep:
            with contextlib.suppress(FileNotFoundError):
                (out / chunk.file_name).unlink()


class ChunkRunner:
    """Cuts recordings with `options.jobs` worker processes, settling each into the ledger."""

    def __init__(
        self,
        out: Path,
        cache: Path,
        options: ChunkOptions,
        ledger: ChunksLedger,
        downloads: DownloadLedger,
        report: ChunkReport,
        verification: Verification | None = None,
    ):
        self.out, self.cache, self.options = out, Cache(cache), options
        self.ledger, self.downloads, self.report = ledger, downloads, report
        self.verification = verification
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
        # forkserver: forking a process that runs threads (httpx, a sandbox in tests) can deadlock.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["birdgrab.dataset.cutting"])  # workers start with numpy & co.
        with ProcessPoolExecutor(
            max_workers=min(self.options.jobs, len(todo)),
            mp_context=context,
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            pending: dict[Future, Usable] = {}
            queue = list(reversed(todo))
            while queue or pending:
                while queue and len(pending) < self.options.jobs * 2 and self.report.stopped is None:
                    if self._disk_low():
                        break
                    item = queue.pop()
                    out_dir, noise_dir = safe_child(self.out, item.label), safe_child(self.out, NOISE_LABEL)
                    stem = file_stem(item.recording)
                    verify = self.verification and self.verification.job(item.recording.key, item.label)
                    future = pool.submit(
                        _chunk_job, str(item.source), str(out_dir), str(noise_dir), stem, self.options, verify
                    )
                    pending[future] = item
                if self.report.stopped is not None:
                    queue.clear()
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item = pending.pop(future)
                    self._settle(item, future.result(), now)
                    if on_progress:
                        on_progress("file", 1)
        if self._evicted:
            self.downloads.save()

    def _disk_low(self) -> bool:
        """Stop (cleanly, exit 1) before the disk fills: the report says why."""
        if shutil.disk_usage(self.out).free / 2**20 >= self.options.min_free_mb:
            return False
        self.report.stopped = (
            f"less than {self.options.min_free_mb:g} MB free under {self.out}: stopped chunking"
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
        self.report.built += 1
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
