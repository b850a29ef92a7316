"""`--verify birdnet` end to end: real recordings served by the sandbox, through catalog -> fetch -> chunk.

Planted truth: great tit songs filed as Parus major, storm-petrel songs as Hydrobates pelagicus, a
yellowthroat under a species BirdNET does not know, and one storm-petrel recording (XC663885)
filed as Parus major: the mislabel verification must catch.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import pytest
import soundfile as sf

from birdgrab.dataset.options import verification_sentence
from birdgrab.sandbox import AudioFile
from tests.package_audio import CLIPS

# Plain imports, no importorskip: under `make test-birdnet` a broken install of the extra fails these
# tests instead of skipping them; `make test` deselects them (-m "not birdnet").
pytestmark = [pytest.mark.birdnet, pytest.mark.slow]

CHUNK = ["--chunk-seconds", "3", "--min-chunk-seconds", "1.5", "--no-gate", "--sample-rate", "32000"]
GREAT_TITS = ["2021-B32-0416_04-23.wav", "2021-SW83-0418_04-79.wav", "2021-B32-0416_04-24.wav"]
UNKNOWN_TO_BIRDNET = "Fixtura realis"


def upload(sandbox, clip: str | Path, species: str) -> str:
    """Serve a real clip (a name in CLIPS, or a file) as a xeno-canto recording filed under `species`; its key."""
    path = CLIPS[clip].path() if isinstance(clip, str) else clip
    info = sf.info(path)
    return sandbox.upload(AudioFile(path, path.suffix[1:], round(info.duration, 1), info.samplerate), species)


def keep_only(birdgrab, keys: set[str]) -> None:
    """Select only the uploaded real recordings, not the sandbox's synthetic songs of the same species."""
    path = birdgrab.manifests / "selection.json"
    selection = json.loads(path.read_text())
    for chosen in selection["species"].values():
        chosen["recordings"] = [k for k in chosen["recordings"] if k in keys]
    path.write_text(json.dumps(selection))


@pytest.fixture
def planted(birdgrab, sandbox, tmp_path):
    keys = {name: upload(sandbox, name, "Parus major") for name in GREAT_TITS}
    keys["XC46092.wav"] = upload(sandbox, "XC46092.wav", "Hydrobates pelagicus")
    keys["CommonYellowthroat.mp3"] = upload(sandbox, "CommonYellowthroat.mp3", UNKNOWN_TO_BIRDNET)
    keys["mislabel"] = upload(sandbox, "XC663885.wav", "Parus major")
    species = tmp_path / "species.txt"
    species.write_text(f"Parus major\nHydrobates pelagicus\n{UNKNOWN_TO_BIRDNET}\n")
    assert birdgrab("catalog", "--source", "xeno-canto", "--species-file", str(species)).exit_code == 0
    assert birdgrab("filter", "--min-files", "1", "--no-wiki").exit_code == 0
    keep_only(birdgrab, set(keys.values()))
    return keys


def _rows(birdgrab) -> list[dict[str, str]]:
    with open(birdgrab.out / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_recording_filed_under_the_wrong_species_is_caught(birdgrab, planted):
    fetched = birdgrab("fetch", *CHUNK, "--verify", "birdnet")
    assert fetched.exit_code == 0, fetched.output
    rows = _rows(birdgrab)
    by_key = {}
    for row in rows:
        by_key.setdefault(row["recording_key"], []).append(row)

    mislabel = by_key[planted["mislabel"]]
    assert mislabel and all(r["label"] == "Parus_major" for r in mislabel)
    assert all(r["verify_status"] == "doubtful" for r in mislabel)
    assert all(float(r["verify_confidence"]) < 0.05 for r in mislabel)
    assert all(r["verify_top"].startswith("Hydrobates pelagicus:") for r in mislabel)
    for name in GREAT_TITS:
        assert any(r["verify_status"] == "confirmed" for r in by_key[planted[name]]), name
    assert all(r["verify_status"] == "confirmed" for r in by_key[planted["XC46092.wav"]])
    yellowthroat = by_key[planted["CommonYellowthroat.mp3"]]
    assert all(r["verify_status"] == "unverifiable" and r["verify_confidence"] == "" for r in yellowthroat)
    assert all(r["verify_top"].startswith("Geothlypis trichas:") for r in yellowthroat)
    assert "1 recordings likely mislabelled" in fetched.output
    assert planted["mislabel"] in fetched.output

    assert "unverifiable (BirdNET has no label for them, windows kept): Fixtura_realis" in fetched.output
    made = json.loads((birdgrab.out / "dataset.json").read_text())
    assert (made["verify"], made["min_confidence"], made["labels_from"]) == ("birdnet", None, "also")
    facts = made["verification"]
    assert facts["model"] == "BirdNET V2.4" and facts["model_licence"] == "CC BY-NC-SA 4.0"
    assert facts["confirmed_at"] == 0.3 and facts["unverifiable_classes"] == ["Fixtura_realis"]
    stats = json.loads(birdgrab("stats", "--json").output)
    assert stats["dataset"]["made_with"] == made
    (listed,) = stats["likely_mislabels"]
    assert listed["key"] == planted["mislabel"] and listed["label"] == "Parus_major"
    assert listed["page_url"].startswith("http") and listed["heard"].startswith("Hydrobates pelagicus:")
    # stats says what --verify did in the words of dataset.json's account (the card too: test_verify_export)
    said = verification_sentence(made)
    assert "BirdNET V2.4" in said and "0.3 or more" in said and "(Fixtura_realis)" in said
    assert " ".join(said.split()) in " ".join(birdgrab("stats").output.split())

    # The threshold: the mislabelled recording's windows are not written, and it is still listed.
    again = birdgrab("chunk", *CHUNK, "--verify", "birdnet", "--min-confidence", "0.3", "--jobs", "2")
    assert again.exit_code == 0, again.output
    rows = _rows(birdgrab)
    assert not [r for r in rows if r["recording_key"] == planted["mislabel"]]
    assert {r["verify_status"] for r in rows} == {"confirmed", "unverifiable"}
    assert {r["recording_key"] for r in rows if r["verify_status"] == "unverifiable"} == {
        planted["CommonYellowthroat.mp3"]
    }
    assert "not confirmed by BirdNET" in again.output
    assert "0 rebuilt" not in again.output  # cut again: the windows are chosen anew ...
    assert re.search(r"checked (\d+) windows \(\1 known\)", again.output)  # ... but none scored again
    stats = json.loads(birdgrab("stats", "--json").output)
    assert [m["key"] for m in stats["likely_mislabels"]] == [planted["mislabel"]]
    report = birdgrab("report", "--dataset", str(birdgrab.out), "--manifests", str(birdgrab.manifests))
    assert report.exit_code == 0, report.output
    page = (birdgrab.out / "report.html").read_text()
    assert "Likely mislabelled" in page and planted["mislabel"] in page
    assert f"<a href='{listed['page_url']}'>" in page  # the archive's page, to tell it


def test_nothing_of_birdnet_is_loaded_without_verify(birdgrab, planted):
    for name in [m for m in sys.modules if m.startswith(("birdgrab.verify", "ai_edge_litert"))]:
        del sys.modules[name]
    fetched = birdgrab("fetch", *CHUNK)
    assert fetched.exit_code == 0, fetched.output
    assert not [m for m in sys.modules if m.startswith(("birdgrab.verify", "ai_edge_litert"))]
    assert "verify_status" not in _rows(birdgrab)[0]


def test_labels_from_birdnet_and_caps_ranked_by_confidence(birdgrab, planted):
    fetched = birdgrab("fetch", *CHUNK, "--verify", "birdnet", "--labels-from", "birdnet")
    assert fetched.exit_code == 0, fetched.output
    rows = {r["file_name"]: r for r in _rows(birdgrab)}
    mislabel = [r for r in rows.values() if r["recording_key"] == planted["mislabel"]]
    # the storm-petrel filed as a great tit: BirdNET hears the dataset's Hydrobates class in every window
    assert all(r["background"] == "Hydrobates_pelagicus" for r in mislabel)
    assert all(r["labels"] == "Parus_major;Hydrobates_pelagicus" for r in mislabel)
    tits = [r for r in rows.values() if r["recording_key"] == planted[GREAT_TITS[0]]]
    assert all("Hydrobates_pelagicus" not in r["labels"] for r in tits)

    capped = birdgrab(
        "chunk", *CHUNK, "--verify", "birdnet", "--max-chunks-per-recording", "1", "--jobs", "2"
    )
    assert capped.exit_code == 0, capped.output
    kept = _rows(birdgrab)
    assert len({r["recording_key"] for r in kept}) == len(planted) and len(kept) == len(planted)
    for row in kept:  # each recording's most confident window of the uncapped run
        if row["verify_status"] == "unverifiable":
            continue
        candidates = [r for r in rows.values() if r["recording_key"] == row["recording_key"]]
        assert float(row["verify_confidence"]) == max(float(r["verify_confidence"]) for r in candidates)


def test_on_a_dask_cluster_the_workers_score_as_the_pool_does(birdgrab, planted):
    pooled = birdgrab("fetch", *CHUNK, "--verify", "birdnet", "--jobs", "2")
    assert pooled.exit_code == 0, pooled.output
    columns = ("file_name", "verify_confidence", "verify_top", "verify_status")
    by_pool = sorted(tuple(r[c] for c in columns) for r in _rows(birdgrab))
    (birdgrab.manifests / "verify.sqlite").unlink()  # nothing known: the cluster's workers score every window
    clustered = birdgrab(
        "chunk",
        *CHUNK,
        "--verify",
        "birdnet",
        "--jobs",
        "2",
        "--scheduler",
        "local",
        "--min-confidence",
        "0.3",
    )
    assert clustered.exit_code == 0, clustered.output
    assert re.search(r"checked \d+ windows \(0 known\)", clustered.output), clustered.output
    by_cluster = sorted(tuple(r[c] for c in columns) for r in _rows(birdgrab))
    assert by_cluster == [row for row in by_pool if row[3] != "doubtful"]
    assert planted["mislabel"] in clustered.output  # still listed as likely mislabelled
