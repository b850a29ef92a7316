"""Files made by real encoders, served as xeno-canto recordings, through catalog -> filter -> fetch -> chunk.

Every kind of tests/fixtures/audio (edited ones included) is uploaded to the sandbox; fetch must
accept each with FFmpeg's length, and every chunk must line up with the reference decode at its
offset (lag-0 correlation with the source, shifted by the codec delay the reference keeps).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import soxr

from birdgrab.sandbox import AudioFile
from tests.real_audio import corpus, lag0_correlation

SPECIES = "Fixtura realis"
RATE = 16000
CHUNK_S = 1.0
MIN_CHUNK_S = 0.5

pytestmark = pytest.mark.slow


def _reference(kind) -> np.ndarray:
    """The reference decode's content at the dataset rate: the source, delayed as FFmpeg's decode is."""
    source = kind.source().mean(axis=1)
    if kind.sample_rate != kind.source_rate:
        source = soxr.resample(source, kind.source_rate, kind.sample_rate, quality="HQ")
    if kind.lag >= 0:
        delayed = np.concatenate([np.zeros(kind.lag, dtype=np.float32), source])
    else:
        delayed = source[-kind.lag :]
    return soxr.resample(delayed[: kind.frames], kind.sample_rate, RATE, quality="HQ")


def test_every_kind_of_real_file_is_fetched_and_chunked_sample_exact(birdgrab, sandbox, tmp_path):
    kinds = corpus()
    keys = {}
    for name, kind in kinds.items():
        path = kind.write(tmp_path, f"{name}.{kind.base.rsplit('.', 1)[1]}")
        audio = AudioFile(
            path, kind.base.rsplit(".", 1)[1], round(kind.frames / kind.sample_rate, 1), kind.sample_rate
        )
        keys[sandbox.upload(audio, SPECIES)] = name
    (tmp_path / "species.txt").write_text(SPECIES + "\n")
    assert birdgrab("catalog", "--species-file", str(tmp_path / "species.txt")).exit_code == 0
    assert birdgrab("filter", "--min-files", "1", "--no-wiki").exit_code == 0

    fetched = birdgrab(
        "fetch", "--no-gate", "--sample-rate", str(RATE), "--chunk-seconds", str(CHUNK_S),
        "--min-chunk-seconds", str(MIN_CHUNK_S), "--jobs", "2",
    )  # fmt: skip

    assert fetched.exit_code == 0, fetched.output
    downloads = birdgrab.manifest("downloads.json")["entries"]
    chunked = birdgrab.manifest("chunks.json")["entries"]
    with open(birdgrab.out / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for key, name in keys.items():
        kind, entry = kinds[name], downloads[key]
        true_s = kind.frames / kind.sample_rate
        assert entry["status"] == "ok", (name, entry)
        assert (entry["sample_rate"], entry["channels"]) == (kind.sample_rate, kind.channels), name
        if entry["duration_estimated"]:
            assert entry["duration_s"] == pytest.approx(true_s, rel=0.02), name
        else:
            assert abs(entry["duration_s"] - true_s) <= 0.001, name
        assert abs(chunked[key]["decoded_s"] - true_s) <= 0.001, name

        reference = _reference(kind)
        chunk = round(CHUNK_S * RATE)
        expected = len(reference) // chunk + (len(reference) % chunk >= MIN_CHUNK_S * RATE)
        mine = sorted(
            (row for row in rows if row["recording_key"] == key), key=lambda r: int(r["chunk_index"])
        )
        assert [int(row["chunk_index"]) for row in mine] == list(range(expected)), name
        for row in mine:
            samples, rate = sf.read(birdgrab.out / row["file_name"], dtype="float32")
            assert (rate, len(samples)) == (RATE, chunk)
            offset = round(float(row["offset_s"]) * RATE)
            heard = chunk - round(float(row["padded_s"]) * RATE)
            assert abs(offset + heard - min(offset + chunk, len(reference))) <= RATE // 1000, name
            score = lag0_correlation(samples[:heard], reference[offset : offset + heard])
            assert score >= kind.correlation - 0.03, (name, row["chunk_index"], score)
