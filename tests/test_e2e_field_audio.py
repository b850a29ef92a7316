"""Real field recordings (tests/package_audio.py) listed by the sandbox's xeno-canto as uploads with their own
species, recordist and licence, through catalog -> filter -> fetch -> chunk.

The truth is the corpus's own: the species, recordist and licence each source gives, the files'
lengths as libsndfile reads them, and their samples (decoded by libsndfile and resampled by soxr,
not by birdgrab's decoder), which every chunk must match at its offset.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import soxr

from birdgrab.sandbox import RealRecording, Sandbox, SandboxConfig
from tests.package_audio import CORPUS, FIELD

pytestmark = pytest.mark.slow

RATE = 32000
CHUNK_S = 10.0
MIN_CHUNK_S = 3.0
# Two great tit songs beside the field recordings: one longer than --min-chunk-seconds, one shorter.
SONGS = ("2021-B32-0415_05-9.wav", "2021-B32-0415_05-3.wav")
NAMES = (*FIELD, *SONGS)


def real_recording(name: str) -> RealRecording:
    """A corpus recording as the sandbox serves it: filed under its source's species."""
    clip = CORPUS[name]
    return RealRecording(clip.path(), clip.species, clip.recordist, clip.licence, f"{name}: {clip.source}")


@pytest.fixture
def sandbox():
    config = SandboxConfig(profile="scale", real_recordings=tuple(real_recording(n) for n in NAMES))
    with Sandbox(config) as running:
        yield running


def _source_at_rate(name: str) -> np.ndarray:
    """The file's samples as libsndfile decodes them, mixed to mono and resampled to the dataset rate."""
    samples, rate = sf.read(CORPUS[name].path(), dtype="float32", always_2d=True)
    return soxr.resample(samples.mean(axis=1), rate, RATE, quality="HQ")


def test_real_field_recordings_go_through_catalog_fetch_and_chunk(birdgrab, tmp_path):
    species = sorted({CORPUS[n].species for n in NAMES})
    (tmp_path / "species.txt").write_text("\n".join(species) + "\n")
    assert birdgrab("catalog", "--species-file", str(tmp_path / "species.txt")).exit_code == 0
    listed = {r["remarks"].split(":", 1)[0]: r for r in birdgrab.recordings().values()}
    assert sorted(listed) == sorted(NAMES)
    for name, record in listed.items():
        clip = CORPUS[name]
        assert (record["scientific_name"], record["recordist"]) == (clip.species, clip.recordist), name
        served = (record["licence_url"] or "").split(":", 1)[-1]  # old payloads drop the scheme
        assert served == clip.licence.split(":", 1)[-1], name
    assert listed["XC663885.wav"]["licence"] == "CC BY-NC-ND 2.5"

    assert birdgrab("filter", "--min-files", "1", "--no-wiki").exit_code == 0
    fetched = birdgrab(
        "fetch", "--no-gate", "--sample-rate", str(RATE), "--chunk-seconds", str(CHUNK_S),
        "--min-chunk-seconds", str(MIN_CHUNK_S), "--jobs", "2",
    )  # fmt: skip
    assert fetched.exit_code == 0, fetched.output

    keys = {name: record["key"] for name, record in listed.items()}
    downloads = birdgrab.manifest("downloads.json")["entries"]
    chunked = birdgrab.manifest("chunks.json")["entries"]
    with open(birdgrab.out / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for name in NAMES:
        key, clip = keys[name], CORPUS[name]
        info = sf.info(clip.path())
        assert downloads[key]["status"] == "ok", (name, downloads[key])
        assert chunked[key]["decoded_s"] == pytest.approx(info.duration, abs=0.06), name  # mp3: encoder delay

        reference = _source_at_rate(name)
        chunk = round(CHUNK_S * RATE)
        full, rest = divmod(len(reference), chunk)
        expected = full + (rest >= MIN_CHUNK_S * RATE)
        mine = sorted((r for r in rows if r["recording_key"] == key), key=lambda r: int(r["chunk_index"]))
        assert len(mine) == expected, name
        for row in mine:
            assert row["scientific_name"] == clip.species and row["recordist"] == clip.recordist, name
            assert row["label"] == clip.species.replace(" ", "_"), name
            samples, rate = sf.read(birdgrab.out / row["file_name"], dtype="float32")
            assert (rate, len(samples)) == (RATE, chunk)
            if clip.path().suffix.lower() == ".mp3":
                continue  # libsndfile keeps the encoder delay that birdgrab removes
            offset = round(float(row["offset_s"]) * RATE)
            heard = min(chunk, len(reference) - offset)
            assert abs(chunk - float(row["padded_s"]) * RATE - heard) <= RATE // 1000, (name, row)
            score = np.corrcoef(samples[:heard], reference[offset : offset + heard])[0, 1]
            assert score > 0.999, (name, row["chunk_index"], score)
            assert not samples[heard + RATE // 1000 :].any()  # zero padding after the recording
    # The 2.2 s song is shorter than --min-chunk-seconds: no chunk.
    assert not [r for r in rows if r["recording_key"] == keys["2021-B32-0415_05-3.wav"]]
