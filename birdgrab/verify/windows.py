"""Scoring a recording's candidate windows with BirdNET, in the chunk worker.

The cutter (`birdgrab.dataset.cutting.cut_recording`) hands its verifier the windows the windowing
chose, before any is written; `BirdNetVerifier.check` scores each, decides which are written
(`--min-confidence`, then the per-recording cap ranked by confidence) and gives each a verdict.

A window's score for a label is the maximum over the 3 s frames that cover it (`frames_of`), on
the chunk's own samples (what its file holds) resampled once to 48 kHz. Windows whose content
key the parent already has scores for (`VerifyJob.known`) are not scored again; the model is
loaded (once per process) only when some window is new, and windows go to it a few at a time so
memory stays bounded whatever the recording's length.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from birdgrab.dataset.windows import Choice, DecodedAudio, Window, keep_best
from birdgrab.models import ChunkVerdict, RecordingVerdict
from birdgrab.verify import model as birdnet
from birdgrab.verify.scores import Scored, content_key, pack_embedding, pack_scores, unpack_scores

UNCONFIRMED = "unconfirmed"  # the drop reason of windows --min-confidence leaves out


@dataclass(frozen=True)
class VerifyJob:
    """What the parent tells a worker about one recording (small: it travels with the task)."""

    species_index: int | None  # BirdNET's label for the recording's class; None: unverifiable
    threshold: float  # confirmed at or above
    min_confidence: float | None  # windows below are not written
    cap: int | None  # the per-recording cap, ranked by confidence here (the windowing does not cap)
    known: Mapping[str, bytes] = field(default_factory=dict)  # content key -> stored packed scores


@dataclass(frozen=True)
class RecordingCheck:
    """What the worker hands back about a recording: its verdict and the scores to store."""

    verdict: RecordingVerdict
    scored: tuple[Scored, ...]  # windows scored now (not known before)


@dataclass(frozen=True)
class Checked:
    """The verifier's answer to the cutter: the windows to write and a verdict for each."""

    choice: Choice
    verdicts: Mapping[tuple[bool, int], ChunkVerdict]  # (noise, window index) -> verdict
    recording: RecordingCheck


def _top(scores: Mapping[int, float], labels: list[birdnet.Label]) -> tuple[str, float]:
    """'Scientific name:0.91' of the best label (or 'none') and its confidence."""
    if not scores:
        return "none", 0.0
    index = max(scores, key=lambda i: (scores[i], -i))
    return f"{labels[index].scientific_name}:{scores[index]:.2f}", scores[index]


def species_heard(scores: Mapping[int, float], labels: list[birdnet.Label], threshold: float) -> bool:
    """Whether BirdNET hears a species (not a sound such as `Engine`) at or above `threshold`."""
    return any(value >= threshold and labels[i].is_species for i, value in scores.items())


class BirdNetVerifier:
    """Scores a recording's windows with BirdNET and decides which are written (one per recording)."""

    def __init__(self, job: VerifyJob, sample_rate: int, chunk_frames: int):
        self.job, self.sample_rate, self.chunk_frames = job, sample_rate, chunk_frames
        self.labels = birdnet.labels()

    def check(self, audio: DecodedAudio, choice: Choice) -> Checked:
        job = self.job
        scores: dict[Window, dict[int, float]] = {}
        verdicts: dict[tuple[bool, int], ChunkVerdict] = {}
        scored: list[Scored] = []
        for window, content, packed, new in self._score(audio, choice.windows):
            scores[window] = unpack_scores(packed)
            verdicts[(window.noise, window.index)] = self._verdict(scores[window], content, window.noise)
            if new is not None:
                scored.append(new)
        own = {}
        if job.species_index is not None:
            own = {w: scores[w].get(job.species_index, 0.0) for w in choice.windows if not w.noise}
        tops = [_top(s, self.labels) for s in scores.values()]
        best = max(own.values()) if own else None
        recording = RecordingVerdict(
            windows=len(choice.windows),
            best=best,
            confirmed=None if best is None else best >= job.threshold,
            top=max(tops, key=lambda top: top[1], default=("none", 0.0))[0],
        )
        if job.min_confidence is not None:
            kept = [w for w in choice.windows if verdicts[(w.noise, w.index)].status != "doubtful"]
            if len(kept) < len(choice.windows):
                choice.dropped[UNCONFIRMED] += len(choice.windows) - len(kept)
                choice.windows = kept
        if job.cap is not None and job.species_index is not None:
            keep_best(choice, job.cap, lambda w: (-own[w], -(w.activity_s or 0.0), w.index))
        return Checked(choice, verdicts, RecordingCheck(recording, tuple(scored)))

    def _verdict(self, scores: Mapping[int, float], content: str, noise: bool) -> ChunkVerdict:
        top, _ = _top(scores, self.labels)
        job = self.job
        if noise:  # confirmed when BirdNET hears no species in it
            heard = species_heard(scores, self.labels, job.threshold)
            return ChunkVerdict(
                confidence=None, top=top, status="doubtful" if heard else "confirmed", content=content
            )
        if job.species_index is None:
            return ChunkVerdict(confidence=None, top=top, status="unverifiable", content=content)
        own = scores.get(job.species_index, 0.0)
        status = "confirmed" if own >= job.threshold else "doubtful"
        return ChunkVerdict(confidence=own, top=top, status=status, content=content)

    def _score(
        self, audio: DecodedAudio, windows: list[Window]
    ) -> Iterator[tuple[Window, str, bytes, Scored | None]]:
        """(window, content key, packed scores, what to store or None) for every window: the stored
        scores where known, the model's for the rest, a few windows an invoke."""
        waiting: list[tuple[Window, str, np.ndarray]] = []
        frames_waiting = 0
        for window in windows:
            samples = np.zeros(self.chunk_frames, dtype=np.float32)
            recorded = audio.read(window.start, window.frames)
            samples[: len(recorded)] = recorded
            content = content_key(samples, self.sample_rate)
            if content in self.job.known:
                yield window, content, self.job.known[content], None
                continue
            frames = birdnet.frames_of(birdnet.to_model_rate(samples, self.sample_rate))
            waiting.append((window, content, frames))
            frames_waiting += len(frames)
            if frames_waiting >= birdnet.MAX_BATCH:
                yield from self._run(waiting)
                waiting, frames_waiting = [], 0
        if waiting:
            yield from self._run(waiting)

    def _run(
        self, waiting: list[tuple[Window, str, np.ndarray]]
    ) -> Iterator[tuple[Window, str, bytes, Scored | None]]:
        output = birdnet.load().run(np.concatenate([frames for _, _, frames in waiting]))
        start = 0
        for window, content, frames in waiting:
            part = slice(start, start + len(frames))
            start += len(frames)
            packed = pack_scores(output.confidences[part].max(axis=0))
            embedding = pack_embedding(output.embeddings[part].mean(axis=0))
            yield window, content, packed, Scored(content, packed, embedding)
