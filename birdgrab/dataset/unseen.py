"""What pretrained models were trained on, as their makers said it: `--unseen-by MODEL`.

People test BirdNET or Perch on a dataset's test split; a model scores well on the recordings it
was trained on, so those scores say nothing. Each entry below gives, per archive, which recordings
a model may have seen (an id or upload-date cut-off, or all of an archive), with the public
statement it comes from. An archive a model's makers do not name is taken as unseen. A recording
whose upload date a date rule needs but the archive did not give counts as seen (the safe side).

Add a model only with a source: an issue, paper or model card where its makers say what it was
trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from birdgrab.errors import UsageError
from birdgrab.models import Recording


@dataclass(frozen=True)
class SeenRule:
    """Which recordings of one archive a model may have been trained on."""

    archive: str  # the registry's name: xeno-canto, europeana, inaturalist
    id_at_most: int | None = None  # numeric archive ids up to this one
    uploaded_before: date | None = None  # recordings the archive received before this day
    all_of_it: bool = False  # every recording of the archive (no cut-off given)
    data_provider: str | None = None  # only recordings this institution provided (Europeana aggregates many)

    def covers(self, recording: Recording) -> bool:
        if recording.source != self.archive:
            return False
        if self.data_provider is not None and (recording.data_provider or "") != self.data_provider:
            return False
        if self.all_of_it:
            return True
        if self.id_at_most is not None:
            return recording.source_id.isdigit() and int(recording.source_id) <= self.id_at_most
        if self.uploaded_before is not None:
            return recording.uploaded is None or recording.uploaded < self.uploaded_before
        return False

    def describe(self) -> str:
        who = f"{self.archive} ({self.data_provider})" if self.data_provider else self.archive
        if self.all_of_it:
            return f"all of {who}"
        if self.id_at_most is not None:
            return f"{who} ids up to {self.id_at_most}"
        return f"{who} uploaded before {self.uploaded_before}"


@dataclass(frozen=True)
class TrainingData:
    """A model's training recordings, as far as its makers said."""

    model: str  # the --unseen-by name
    title: str
    rules: tuple[SeenRule, ...]
    source: str  # where the makers say it (URLs)

    def seen(self) -> Callable[[Recording], bool]:
        return lambda recording: any(rule.covers(recording) for rule in self.rules)

    def account(self) -> dict[str, object]:
        """What dataset.json says about the cut-off used."""
        return {
            "model": self.model,
            "title": self.title,
            "rules": [rule.describe() for rule in self.rules],
            "source": self.source,
        }


MODELS: tuple[TrainingData, ...] = (
    TrainingData(
        "birdnet-2.4",
        "BirdNET V2.4 (BirdNET-Analyzer)",
        # Stefan Kahl (BirdNET), 2023-07-31: "the highest XC number we used for training in V2.4 is
        # 694204" (and 399952111 for the Macaulay Library, which birdgrab does not catalogue); in #860
        # (2026-01) he confirms that a recording below it (XC46088) was probably in the training data.
        # BirdNET's other named sources (Macaulay, BirdCLEF soundscapes, its app) are not archives here.
        (SeenRule("xeno-canto", id_at_most=694204),),
        "https://github.com/birdnet-team/BirdNET-Analyzer/issues/152 "
        "https://github.com/birdnet-team/BirdNET-Analyzer/issues/860",
    ),
    TrainingData(
        "perch-2.0",
        "Perch 2.0 (Google DeepMind)",
        # Tom Denton (Perch), 2026-03-16: "We trained on everything available in Xeno-Canto and
        # iNaturalist in April 2025, as well as the Animal Sound Archive and FSD50k" (the Animal Sound
        # Archive is the Tierstimmenarchiv of the Museum für Naturkunde Berlin, which Europeana serves).
        # No day in April is given: everything uploaded before May 2025 counts as seen.
        (
            SeenRule("xeno-canto", uploaded_before=date(2025, 5, 1)),
            SeenRule("inaturalist", uploaded_before=date(2025, 5, 1)),
            SeenRule("europeana", all_of_it=True, data_provider="Museum für Naturkunde Berlin"),
        ),
        "https://github.com/google-research/perch/issues/756",
    ),
)


def training_data_of(model: str) -> TrainingData:
    """The table's entry for `model`, or a UsageError naming the models it knows."""
    for entry in MODELS:
        if entry.model == model:
            return entry
    known = ", ".join(entry.model for entry in MODELS)
    raise UsageError(f"--unseen-by: no training data known for {model!r}; known: {known}")
