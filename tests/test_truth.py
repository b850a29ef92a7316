"""A dataset that tells the truth about itself (issue 19), proven on the sandbox's three archives.

The world is the demo's (`scripts/demo.sh`: xeno-canto, Europeana and iNaturalist, `--min-files 3`,
events windows) with every choice the account must carry switched on: a cap per recording and per
class, the noise class, and splits by recordist. The sandbox plants one person spelled four ways
across the three archives (`ONE_PERSON`), two namesakes and an initial that fits both, and
xeno-canto ids on both sides of the last one BirdNET V2.4 trained on.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from birdgrab.dataset.unseen import training_data_of
from birdgrab.sandbox import Sandbox, SandboxConfig
from birdgrab.sandbox.contents import AMBIGUOUS_INITIALS, NAMESAKES, ONE_PERSON
from tests.conftest import FAST_RETRIES, Birdgrab

pytestmark = pytest.mark.slow

CHOICES = [
    "--windows", "events", "--max-chunks-per-recording", "3", "--max-chunks-per-class", "20",
    "--noise-class", "--split-by", "recordist",
]  # fmt: skip
BIRDNET_24_LAST_XC_ID = 694204  # BirdNET-Analyzer issue 152 (Stefan Kahl, 2023-07-31)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("truth")
    with Sandbox(SandboxConfig(hour_long=False)) as running:
        run = Birdgrab(running, root, {**running.env(), **FAST_RETRIES})
        sources = ["--source", "xeno-canto", "--source", "europeana", "--source", "inaturalist"]
        assert run("catalog", *sources).exit_code == 0
        assert run("filter", "--min-files", "3").exit_code == 0
        fetched = run("fetch", *CHOICES)
        assert fetched.exit_code == 0, fetched.output
        yield run


def _metadata(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "metadata.csv", keep_default_na=False, dtype=str)


def _dataset_json(folder: Path) -> dict:
    return json.loads((folder / "dataset.json").read_text(encoding="utf-8"))


def _choices(made: dict) -> dict:
    return {k: v for k, v in made.items() if k not in ("made_at", "birdgrab_version", "made_from")}


def test_one_person_spelled_four_ways_across_three_archives_stays_in_one_split(world):
    rows = _metadata(world.out)
    person = rows[rows["recordist"].isin(ONE_PERSON)]
    assert set(person["source"]) == {"xeno-canto", "europeana", "inaturalist"}  # the planted spread
    assert len(set(person["recordist"])) >= 3
    assert person["recordist_id"].nunique() == 1
    assert person["split"].nunique() == 1
    assert set(rows["split"]) == {"train", "val", "test"}  # people were dealt, not all put in one split
    # attribution is the archive's words: each row keeps its own spelling
    assert set(person["recordist"]) <= set(ONE_PERSON)


def test_namesakes_are_two_people_and_an_initial_that_fits_both_is_neither(world):
    rows = _metadata(world.out)
    ids = {
        name: set(rows.loc[rows["recordist"] == name, "recordist_id"])
        for name in (*NAMESAKES, AMBIGUOUS_INITIALS)
    }
    assert all(len(found) == 1 for found in ids.values()), ids  # each spelling present, one identity
    assert len(set.union(*ids.values())) == 3


def test_dataset_json_stats_and_card_say_what_was_chosen(world, tmp_path):
    made = _dataset_json(world.out)
    assert made["windows"] == "events" and made["max_chunks_per_recording"] == 3
    assert made["max_chunks_per_class"] == 20 and made["noise_class"] is True
    assert made["split"] == {"train": 80, "val": 10, "test": 10, "by": "recordist", "site_km": 1.0,
                             "unseen_by": None, "unseen_by_drop": False}  # fmt: skip
    assert made["sample_rate"] == 32000 and made["chunk_seconds"] == 10.0
    catalogue = made["made_from"]["catalogue"]
    assert set(catalogue["archives"]) == {"xeno-canto", "europeana", "inaturalist"}
    assert made["made_from"]["filter"]["min_files"] == 3
    # the dataset does what its account says
    rows = _metadata(world.out)
    assert rows.groupby("recording_key").size().max() <= 3 + 1  # a noise window beside 3 calls at most
    assert rows[rows["label"] != "noise"].groupby("label").size().max() <= 20
    assert "noise" in set(rows["label"])

    stats = world("stats", "--json")
    assert stats.exit_code == 0
    assert json.loads(stats.output)["dataset"]["made_with"] == made
    text = world("stats").output
    for words in ("--windows events", "At most 3 windows per recording", "At most 20 clips per class",
                  "class `noise`", "per recordist", "chunk --like"):  # fmt: skip
        assert words in text, words

    out = tmp_path / "export"
    exported = world(
        "export", "--manifests", str(world.manifests), "--dataset", str(world.out), "--out", str(out)
    )
    assert exported.exit_code == 0, exported.output
    card = (out / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(re.match(r"---\n(.*?)\n---\n", card, re.S).group(1))
    assert header["birdgrab"]["dataset"] == made
    assert _dataset_json(out) == made  # `chunk --like export/dataset.json` works from an export too
    prose = card.split("## How it was made", 1)[1]
    for words in ("placed on the calls", "At most 3 windows per recording", "At most 20 clips per class",
                  "class `noise`", "per recordist"):  # fmt: skip
        assert words in prose, words
    assert "fixed-length" not in card and "cut on the clock" not in card


def test_the_report_counts_people_not_spellings(world, tmp_path):
    rows = _metadata(world.out)
    frommolt = rows.loc[rows["recordist"].isin(ONE_PERSON), "recordist"].nunique()
    result = world("report", "--manifests", str(world.manifests), "--dataset", str(world.out),
                   "--out", str(tmp_path / "report.html"))  # fmt: skip
    assert result.exit_code == 0, result.output
    people = int(re.search(r"(\d+) recordists", result.output).group(1))
    spellings = rows.loc[rows["recordist"] != "", "recordist"].nunique()
    assert people <= spellings - (frommolt - 1)  # four spellings of one person count once
    assert people == rows.loc[rows["recordist_id"] != "unknown", "recordist_id"].nunique()
    assert f"{people} recordists" in (tmp_path / "report.html").read_text(encoding="utf-8")


def _copy(world: Birdgrab, root: Path) -> Birdgrab:
    """A birdgrab on a copy of the world's manifests and dataset, sharing its cache: for a test that
    rechunks (the others read the world as fetched)."""
    shutil.copytree(world.manifests, root / "manifests")
    shutil.copytree(world.out, root / "dataset")
    (root / "cache").symlink_to(world.cache, target_is_directory=True)
    return Birdgrab(world.sandbox, root, world.env)


def test_like_rebuilds_with_the_same_choices_and_unseen_by_keeps_birdnet_out_of_val_and_test(world, tmp_path):
    copy = _copy(world, tmp_path)
    made = _dataset_json(copy.out)
    like = str(copy.out / "dataset.json")

    again = copy("chunk", "--like", like)
    assert again.exit_code == 0, again.output
    assert "0 rebuilt" in again.output  # every byte-changing choice the same: nothing cut again
    assert _choices(_dataset_json(copy.out)) == _choices(made)

    unseen = copy("chunk", "--like", like, "--unseen-by", "birdnet-2.4")
    assert unseen.exit_code == 0, unseen.output
    assert "0 rebuilt" in unseen.output  # a split rule changes rows, not chunk files
    rows = _metadata(copy.out)
    xc = rows[rows["source"] == "xeno-canto"].assign(number=lambda r: r["source_id"].astype(int))
    seen = xc["number"] <= BIRDNET_24_LAST_XC_ID
    assert seen.any() and (~seen).any()  # the sandbox has both sides of the cut-off
    assert set(xc.loc[seen, "split"]) == {"train"}
    # every xeno-canto recordist here has a recording the model may have heard: all of theirs is in
    # train (a person stays in one split); validation and test are the other archives' people
    assert set(rows["split"]) == {"train", "val", "test"}
    account = _dataset_json(copy.out)
    assert account["split"]["unseen_by"] == "birdnet-2.4" and account["split"]["by"] == "recordist"
    assert any(str(BIRDNET_24_LAST_XC_ID) in rule for rule in account["unseen_by"]["rules"])
    assert "BirdNET-Analyzer/issues/152" in account["unseen_by"]["source"]
    assert account["windows"] == "events"  # --like kept the rest
    assert training_data_of("birdnet-2.4").title in copy("stats").output

    by_recording = copy("chunk", "--like", like, "--split-by", "recording")  # the file says birdnet-2.4
    assert by_recording.exit_code == 0, by_recording.output
    rows = _metadata(copy.out)
    xc = rows[rows["source"] == "xeno-canto"].assign(number=lambda r: r["source_id"].astype(int))
    seen = xc["number"] <= BIRDNET_24_LAST_XC_ID
    assert set(xc.loc[seen, "split"]) == {"train"}
    assert set(xc.loc[~seen, "split"]) == {"train", "val", "test"}  # the unseen are dealt as usual

    dropped = copy("chunk", "--like", like, "--unseen-by-drop")
    assert dropped.exit_code == 0, dropped.output
    rows = _metadata(copy.out)
    numbers = rows.loc[rows["source"] == "xeno-canto", "source_id"].astype(int)
    assert len(numbers) and (numbers > BIRDNET_24_LAST_XC_ID).all()


def test_the_defaults_are_described_as_defaults(world, tmp_path):
    copy = _copy(world, tmp_path)
    shutil.rmtree(copy.out)
    built = copy("chunk")
    assert built.exit_code == 0, built.output
    made = _dataset_json(copy.out)
    assert _choices(made) == {
        "sample_rate": 32000, "chunk_seconds": 10.0, "min_chunk_seconds": 3.0, "gate_db": 25.0,
        "split": {"train": 80, "val": 10, "test": 10, "by": "recording", "site_km": 1.0, "unseen_by": None,
                  "unseen_by_drop": False},
        "windows": "fixed", "hop_seconds": None, "max_chunks_per_recording": None,
        "max_chunks_per_class": None, "noise_class": False, "verify": None, "min_confidence": None,
        "labels_from": "also",
    }  # fmt: skip
    text = copy("stats").output
    assert "cut on the clock every 10 s" in text and "25 dB quieter" in text and "per recording" in text
    assert "placed on the calls" not in text and "class `noise`" not in text and "BirdNET" not in text
