"""The options of the chunk step (`fetch`, `chunk` and `refresh` share them), validated once.

Each field declares what it is (`birdgrab.dataset.provenance`): a `choice` that changes a byte or a
row of the dataset (its flag, where dataset.json keeps it, how to say it in a sentence), or a
`setting` that only decides how the work runs. dataset.json, `stats`, the export's card and
`chunk --like` are derived from these declarations: a new field declares itself and joins them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from birdgrab.dataset.provenance import choice, setting
from birdgrab.errors import UsageError

WindowMode = Literal["fixed", "events"]
SplitBy = Literal["recording", "recordist", "site"]
Verifier = Literal["birdnet"]
LabelsFrom = Literal["also", "birdnet"]
NOISE_LABEL = "noise"
# A window is `confirmed` when BirdNET's confidence for its class reaches --min-confidence, or this
# without it. On the labelled real clips of the tests (great tit, storm-petrel, yellowthroat) 31 of
# 32 frames reach 0.3 (the other, a faint great tit, 0.23) while the best wrong species stays under
# 0.05 in all but one (a rail at 0.40 in a storm-petrel frame): 0.3 keeps the songs and few confusions.
DEFAULT_CONFIRM_THRESHOLD = 0.3


# -- how each choice reads in a sentence (the card and `stats` print these) ------------------------------
def _says_sample_rate(rate: int, made: Mapping[str, Any]) -> str:
    return f"Audio is decoded, mixed to mono and resampled to {rate} Hz; clips are 16-bit PCM WAV."


def _says_chunk(seconds: float, made: Mapping[str, Any]) -> str:
    return f"Every clip is exactly {seconds:g} s long."


def _says_min_chunk(seconds: float, made: Mapping[str, Any]) -> str:
    return (
        f"A last piece (or a whole recording) shorter than a clip is zero-padded when at least {seconds:g} s "
        "long (`padded_s` says how much) and left out when shorter."
    )


def _says_gate(gate_db: float | None, made: Mapping[str, Any]) -> str | None:
    if made.get("windows") == "events":
        return None  # the detector decides; the gate is not used
    if gate_db is None:
        return "No silence gate (`--no-gate`): every window is kept."
    return (
        f"A window more than {gate_db:g} dB quieter than the recording's loudest window (or near digital "
        "silence) is left out."
    )


def _says_windows(mode: str, made: Mapping[str, Any]) -> str:
    if mode == "events":
        return (
            "Windows are placed on the calls an energy detector finds in the birds' band (300 Hz-10 kHz) over "
            "each recording's own noise floor (`--windows events`): calls close together share a window, "
            "a long song is tiled, and no window without a detected call is written."
        )
    hop = made.get("hop_seconds") or made.get("chunk_seconds")
    every = f" every {hop:g} s" if isinstance(hop, int | float) else ""
    return f"Windows are cut on the clock{every} (`--windows fixed`), whether or not a bird calls in them."


def _says_hop(hop: float | None, made: Mapping[str, Any]) -> str | None:
    chunk = made.get("chunk_seconds")
    if hop is None or not isinstance(chunk, int | float) or hop >= chunk:
        return None
    return f"Windows overlap: one starts every {hop:g} s (`--hop-seconds`)."


def _says_per_recording(cap: int | None, made: Mapping[str, Any]) -> str | None:
    if cap is None:
        return None
    return f"At most {cap} windows per recording: those with the most detected calls."


def _says_per_class(cap: int | None, made: Mapping[str, Any]) -> str | None:
    if cap is None:
        return None
    return (
        f"At most {cap} clips per class, spread over its recordings: each recording's best window first, "
        "then each one's second best, and so on."
    )


def _says_noise(noise: bool, made: Mapping[str, Any]) -> str | None:
    if not noise:
        return None
    return (
        f"A class `{NOISE_LABEL}` holds call-free windows, one per recording, so a model can answer "
        '"none of these".'
    )


def _says_split(split: tuple[int, int, int], made: Mapping[str, Any]) -> str:
    train, val, test = split
    return f"{train} % of the recordings go to train, {val} % to validation, {test} % to test, per class."


def _says_split_by(by: str, made: Mapping[str, Any]) -> str:
    if by == "recordist":
        return (
            "Splits are dealt per recordist (`--split-by recordist`): every recording of one person (one "
            "identity, `recordist_id`, across spellings and archives) is in one split, so a model is tested "
            "on people it never heard; stratified per class as far as people allow."
        )
    if by == "site":
        km = (made.get("split") or {}).get("site_km", 1.0)
        return (
            f"Splits are dealt per site (`--split-by site`): recordings within {km:g} km of each other, "
            "linked in chains, and recordings without coordinates that share a locality and country with "
            "them, are in one split; stratified per class as far as sites allow."
        )
    return (
        "Splits are dealt per recording (no recording has clips in two splits), stratified per class; "
        "recordings of one recordist or one site may be on both sides."
    )


def _says_unseen_by(model: str | None, made: Mapping[str, Any]) -> str | None:
    if model is None:
        return None
    seen = made.get("unseen_by") or {}
    drop = (made.get("split") or {}).get("unseen_by_drop")
    where = "are left out of the dataset" if drop else "are all in train"
    rules = "; ".join(seen.get("rules") or []) or "as its maintainers describe"
    return (
        f"Validation and test hold no recording {seen.get('title') or model} may have been trained on "
        f"({rules}; source: {seen.get('source') or 'unknown'}): those {where} (`--unseen-by {model}`)."
    )


def _confirmed_at(made: Mapping[str, Any]) -> float:
    """The confidence that confirmed a window: as the run recorded it, else as its choices imply."""
    threshold = (made.get("verification") or {}).get("confirmed_at")
    if isinstance(threshold, int | float):
        return threshold
    kept = made.get("min_confidence")
    return kept if isinstance(kept, int | float) else DEFAULT_CONFIRM_THRESHOLD


def verification_sentence(made: Mapping[str, Any]) -> str | None:
    """What --verify did, from dataset.json: the choice (`verify`) and the run's facts about the model
    (`verification`: which one, its threshold, licence, the classes it has no label for). The card,
    `stats` and the report say it in these words."""
    if made.get("verify") is None:
        return None
    facts = made.get("verification") or {}
    threshold = _confirmed_at(made)
    version = f" (`{facts['model_version']}`)" if facts.get("model_version") else ""
    unjoined = facts.get("unverifiable_classes") or []
    return (
        f"{facts.get('model') or made['verify']}{version} verified every window before it was written "
        f"(`--verify {made['verify']}`): `verify_confidence` is its confidence for the clip's class, the "
        f"maximum over the 3 s frames covering the clip; a clip is `confirmed` at {threshold:g} or more, "
        "`doubtful` below, `unverifiable` where BirdNET has no label for the class"
        + (f" ({', '.join(unjoined)})" if unjoined else "")
        + "; `verify_top` is the label it hears best, and capped windows are the most confident."
        + (
            f" The scores are the model's work, licensed {facts['model_licence']}: the `verify_*` columns "
            "are shared under those terms."
            if facts.get("model_licence")
            else ""
        )
    )


def _says_verify(verify: str | None, made: Mapping[str, Any]) -> str | None:
    return verification_sentence(made)


def _says_min_confidence(kept: float | None, made: Mapping[str, Any]) -> str | None:
    if kept is None:
        return None
    return f"A window BirdNET gives less than {kept:g} for its own class is not written (`--min-confidence`)."


def _says_labels_from(source: str, made: Mapping[str, Any]) -> str | None:
    if source != "birdnet":
        return None  # the recordist's `also` list: what background always meant
    return (
        f"`background` and `labels` list the other species BirdNET hears in each clip at {_confirmed_at(made):g} or "
        "more (`--labels-from birdnet`), not the recordist's list."
    )


def _split_json(split: tuple[int, int, int]) -> dict[str, int]:
    return dict(zip(("train", "val", "test"), split, strict=True))


def _split_value(value: Mapping[str, Any]) -> tuple[int, int, int]:
    return (int(value["train"]), int(value["val"]), int(value["test"]))


def _split_tokens(flag: str, split: tuple[int, int, int]) -> list[str]:
    return [flag, "/".join(map(str, split))]


def _gate_tokens(flag: str, gate_db: float | None) -> list[str]:
    return ["--no-gate"] if gate_db is None else [flag, f"{gate_db:g}"]


@dataclass(frozen=True)
class ChunkOptions:
    """How the dataset is cut. `signature()` names what the chunk files depend on; each field
    declares whether it is part of the dataset's account (`choice`) or not (`setting`)."""

    sample_rate: int = field(
        default=32000, metadata=choice("--sample-rate", "bytes", "sample_rate", _says_sample_rate)
    )
    chunk_s: float = field(
        default=10.0, metadata=choice("--chunk-seconds", "bytes", "chunk_seconds", _says_chunk)
    )
    min_chunk_s: float = field(
        default=3.0, metadata=choice("--min-chunk-seconds", "bytes", "min_chunk_seconds", _says_min_chunk)
    )
    gate_db: float | None = field(
        default=25.0,
        metadata=choice(
            "--gate-db", "bytes", "gate_db", _says_gate, tokens=_gate_tokens, also_flags=("--no-gate",)
        ),
    )
    split: tuple[int, int, int] = field(
        default=(80, 10, 10),
        metadata=choice(
            "--split",
            "rows",
            "split",
            _says_split,
            to_json=_split_json,
            from_json=_split_value,
            tokens=_split_tokens,
        ),
    )
    jobs: int = field(default=2, metadata=setting())
    min_free_mb: float = field(default=200, metadata=setting())
    windows: WindowMode = field(
        default="fixed", metadata=choice("--windows", "bytes", "windows", _says_windows)
    )
    # fixed windows start this far apart (None: --chunk-seconds)
    hop_s: float | None = field(
        default=None, metadata=choice("--hop-seconds", "bytes", "hop_seconds", _says_hop)
    )
    max_chunks_per_recording: int | None = field(
        default=None,
        metadata=choice(
            "--max-chunks-per-recording", "bytes", "max_chunks_per_recording", _says_per_recording
        ),
    )
    max_chunks_per_class: int | None = field(
        default=None,
        metadata=choice("--max-chunks-per-class", "rows", "max_chunks_per_class", _says_per_class),
    )
    noise_class: bool = field(
        default=False, metadata=choice("--noise-class", "bytes", "noise_class", _says_noise)
    )
    split_by: SplitBy = field(
        default="recording", metadata=choice("--split-by", "rows", "split.by", _says_split_by)
    )
    site_km: float = field(default=1.0, metadata=choice("--site-km", "rows", "split.site_km"))
    # a model (birdgrab.dataset.unseen) whose training recordings stay out of validation and test
    unseen_by: str | None = field(
        default=None, metadata=choice("--unseen-by", "rows", "split.unseen_by", _says_unseen_by)
    )
    unseen_by_drop: bool = field(
        default=False, metadata=choice("--unseen-by-drop", "rows", "split.unseen_by_drop")
    )
    # score every window with BirdNET (extra [birdnet]); the model's facts: dataset.json's `verification`
    verify: Verifier | None = field(
        default=None, metadata=choice("--verify", "bytes", "verify", _says_verify)
    )
    # windows BirdNET gives less than this for their own class are not written
    min_confidence: float | None = field(
        default=None, metadata=choice("--min-confidence", "bytes", "min_confidence", _says_min_confidence)
    )
    # background / labels: xeno-canto's `also`, or what BirdNET hears
    labels_from: LabelsFrom = field(
        default="also", metadata=choice("--labels-from", "rows", "labels_from", _says_labels_from)
    )

    def validated(self) -> ChunkOptions:
        """This, or a `UsageError` (exit 2) naming the first option out of range."""
        if not 4000 <= self.sample_rate <= 192000:
            raise UsageError(f"--sample-rate must be between 4000 and 192000 Hz, got {self.sample_rate}")
        if not 0 < self.chunk_s <= 600:
            raise UsageError(f"--chunk-seconds must be more than 0 and at most 600, got {self.chunk_s:g}")
        if not 0 <= self.min_chunk_s <= self.chunk_s:
            raise UsageError(
                f"--min-chunk-seconds must be between 0 and --chunk-seconds ({self.chunk_s:g}), got {self.min_chunk_s:g}"
            )
        if self.gate_db is not None and not 0 < self.gate_db <= 120:
            raise UsageError(f"--gate-db must be more than 0 and at most 120 dB, got {self.gate_db:g}")
        if (
            len(self.split) != 3
            or any(p < 0 for p in self.split)
            or sum(self.split) != 100
            or self.split[0] == 0
        ):
            raise UsageError(
                f"--split must be three percentages like 80/10/10 that add up to 100, got {self.split}"
            )
        if not 1 <= self.jobs <= 64:
            raise UsageError(f"--jobs must be between 1 and 64, got {self.jobs}")
        if self.windows not in ("fixed", "events"):
            raise UsageError(f"--windows must be fixed or events, got {self.windows!r}")
        if self.hop_s is not None and not 0.1 <= self.hop_s <= self.chunk_s:
            raise UsageError(
                f"--hop-seconds must be between 0.1 and --chunk-seconds ({self.chunk_s:g}), got {self.hop_s:g}"
            )
        if self.hop_s is not None and self.windows == "events":
            raise UsageError("--hop-seconds places fixed windows; --windows events places them on the calls")
        for name, cap in (
            ("--max-chunks-per-recording", self.max_chunks_per_recording),
            ("--max-chunks-per-class", self.max_chunks_per_class),
        ):
            if cap is not None and cap < 1:
                raise UsageError(f"{name} must be at least 1, got {cap}")
        if self.split_by not in ("recording", "recordist", "site"):
            raise UsageError(f"--split-by must be recording, recordist or site, got {self.split_by!r}")
        if not 0.05 <= self.site_km <= 100:
            raise UsageError(f"--site-km must be between 0.05 and 100 km, got {self.site_km:g}")
        if self.unseen_by is not None:
            from birdgrab.dataset.unseen import training_data_of

            training_data_of(self.unseen_by)  # a UsageError naming the models known
        if self.unseen_by_drop and self.unseen_by is None:
            raise UsageError("--unseen-by-drop needs --unseen-by MODEL")
        if self.verify not in (None, "birdnet"):
            raise UsageError(f"--verify must be birdnet, got {self.verify!r}")
        if self.labels_from not in ("also", "birdnet"):
            raise UsageError(f"--labels-from must be also or birdnet, got {self.labels_from!r}")
        if self.min_confidence is not None and not 0.01 <= self.min_confidence <= 0.99:
            raise UsageError(f"--min-confidence must be between 0.01 and 0.99, got {self.min_confidence:g}")
        if self.verify is None and (self.min_confidence is not None or self.labels_from == "birdnet"):
            given = "--min-confidence" if self.min_confidence is not None else "--labels-from birdnet"
            raise UsageError(f"{given} needs --verify birdnet (pip install 'birdgrab[birdnet]')")
        return self

    @property
    def confirm_threshold(self) -> float:
        """The confidence at which BirdNET confirms a window's class (and hears a background species)."""
        return self.min_confidence if self.min_confidence is not None else DEFAULT_CONFIRM_THRESHOLD

    @property
    def hop_frames(self) -> int:
        """Samples between the starts of two fixed windows."""
        return round((self.hop_s or self.chunk_s) * self.sample_rate)

    @property
    def min_frames(self) -> int:
        """The shortest last piece that is zero-padded rather than dropped."""
        return math.ceil(self.min_chunk_s * self.sample_rate)

    @property
    def chunk_frames(self) -> int:
        """Samples in every chunk."""
        return round(self.chunk_s * self.sample_rate)

    def signature(self) -> str:
        """What the chunk files depend on (not the split: that only changes metadata)."""
        gate = "off" if self.gate_db is None else f"{self.gate_db:g}"
        signature = f"sr={self.sample_rate};chunk={self.chunk_s:g};min={self.min_chunk_s:g};gate={gate}"
        # Options added later only appear when used, so datasets made before them stay current.
        if self.windows != "fixed":
            signature += f";windows={self.windows}"
        if self.hop_s is not None and self.hop_s != self.chunk_s:
            signature += f";hop={self.hop_s:g}"
        if self.max_chunks_per_recording is not None:
            signature += f";per_recording={self.max_chunks_per_recording}"
        if self.noise_class:
            signature += ";noise"
        if self.verify is not None:  # verification decides which windows are written, and their ranking
            signature += f";verify={self.verify}"
        if self.min_confidence is not None:
            signature += f";min_confidence={self.min_confidence:g}"
        return signature


def parse_split(text: str) -> tuple[int, int, int]:
    """'80/10/10' -> (80, 10, 10); anything else is a UsageError."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--split must look like 80/10/10 (train/val/test percentages), got {text!r}")
    train, val, test = (int(g) for g in match.groups())
    return ChunkOptions(split=(train, val, test)).validated().split
