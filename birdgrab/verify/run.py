"""A chunk run's verification, parent side: the class join, each recording's job, the score store.

The workers score (`birdgrab.verify.windows`); this side tells each recording's worker which
BirdNET label is its class and which scores are already known, keeps the new scores as each
recording settles, and gives the writers what BirdNET heard (`--labels-from birdnet`) and
dataset.json its account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.report import ChunkReport, VerifyReport
from birdgrab.dataset.writers import DatasetContent
from birdgrab.models import ChunkedRecording, Species
from birdgrab.names import NameError_, canonical_binomial
from birdgrab.verify import model as birdnet
from birdgrab.verify.classes import ClassJoin, join_classes
from birdgrab.verify.mislabels import likely_mislabels
from birdgrab.verify.scores import ScoreStore, unpack_scores
from birdgrab.verify.windows import RecordingCheck, VerifyJob


class Verification:
    """`--verify birdnet` for one chunk run. Locating the model first makes a missing extra exit 2
    before any work; the model itself is loaded only in the workers."""

    def __init__(
        self,
        folder: Path,
        options: ChunkOptions,
        species_by_label: Mapping[str, Species],
        class_labels: Iterable[str],
    ):
        self.files = birdnet.locate()
        self.labels = birdnet.labels(self.files)
        self.version = birdnet.version_of(self.files)
        self.options = options
        self.join: ClassJoin = join_classes(class_labels, species_by_label, self.labels)
        self.store = ScoreStore.open(folder)
        self.scored = 0  # windows the model scored this run
        self.known = 0  # windows whose scores were stored already

    def close(self) -> None:
        self.store.close()

    def job(self, key: str, label: str) -> VerifyJob:
        """What the worker cutting recording `key` of class `label` needs to verify its windows."""
        index = self.join.index.get(label)
        return VerifyJob(
            species_index=index,
            threshold=self.options.confirm_threshold,
            min_confidence=self.options.min_confidence,
            cap=self.options.max_chunks_per_recording if index is not None else None,
            known=self.store.of_recording(self.version, key),
        )

    def settle(self, key: str, check: RecordingCheck | None) -> None:
        """Keep the scores a worker computed for recording `key`."""
        if check is None:
            return
        self.store.put(self.version, key, check.scored)
        self.scored += len(check.scored)
        self.known += check.verdict.windows - len(check.scored)

    def forget(self, keys: Iterable[str]) -> None:
        """Recordings that left the dataset take their scores along."""
        self.store.forget(keys)

    def heard(
        self, entries: Mapping[str, ChunkedRecording], name_to_label: Mapping[str, str]
    ) -> dict[str, list[str]]:
        """file name -> the other species BirdNET hears in the chunk at or above the threshold: their
        class labels (through the class join and the synonym merge), or their scientific names."""
        class_of = self.join.class_of()
        threshold = self.options.confirm_threshold
        heard: dict[str, list[str]] = {}
        for key, entry in entries.items():
            stored = self.store.of_recording(self.version, key)
            for row in entry.chunks:
                if row.verify is None or row.verify.content not in stored:
                    continue
                own = None if row.noise else entry.label
                names = set()
                for index, confidence in unpack_scores(stored[row.verify.content]).items():
                    if confidence >= threshold and self.labels[index].is_species:
                        names.add(class_of.get(index) or self._name(self.labels[index], name_to_label))
                heard[row.file_name] = sorted(name for name in names - {own} if name)
        return heard

    @staticmethod
    def _name(label: birdnet.Label, name_to_label: Mapping[str, str]) -> str:
        try:
            binomial = canonical_binomial(label.scientific_name)
        except NameError_:
            return ""
        return name_to_label.get(label.scientific_name) or name_to_label.get(binomial, binomial)

    def finish(
        self,
        leaving: Iterable[str],
        entries: Mapping[str, ChunkedRecording],
        content: DatasetContent,
        report: ChunkReport,
    ) -> DatasetContent:
        """After the cutting: drop the scores of recordings that left, fill in the report, give the
        writers what BirdNET heard (`--labels-from birdnet`), and close the store."""
        self.forget(leaving)
        report.verified = VerifyReport(
            model=birdnet.MODEL_NAME,
            scored=self.scored,
            known=self.known,
            unverifiable=list(self.join.unjoined),
            mislabels=likely_mislabels(
                {k: e for k, e in entries.items() if k in content.recordings}, content.recordings
            ),
        )
        if self.options.labels_from == "birdnet":
            content = replace(content, heard=self.heard(content.entries, content.name_to_label()))
        self.close()
        return content

    def account(self) -> dict[str, Any]:
        """dataset.json's `verification`: the run's facts about the model (which one, the threshold
        that confirmed, its licence, which classes joined its labels and how). The choices themselves
        (`verify`, `min_confidence`, `labels_from`) are ChunkOptions' and sit beside it;
        `birdgrab.dataset.options.verification_sentence` says both in words for the card and stats."""
        return {
            "model": birdnet.MODEL_NAME,
            "model_version": self.version,
            "model_licence": birdnet.MODEL_LICENCE,
            "confirmed_at": self.options.confirm_threshold,
            "window_score": "maximum over the 3 s frames covering the window, 48 kHz, sensitivity 1.0",
            "unverifiable_classes": list(self.join.unjoined),
            "joined_by": dict(sorted(self.join.how.items())),
        }
