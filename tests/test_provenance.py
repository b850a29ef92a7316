"""The dataset's account (birdgrab.dataset.provenance) and `chunk --like`: every choice declared,
recorded and read back; what dataset.json, stats and the card say on real builds is in test_truth.py."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from birdgrab.cli import app
from birdgrab.dataset import ChunkOptions
from birdgrab.dataset.account import command_line, describe
from birdgrab.dataset.like import options_like
from birdgrab.dataset.provenance import account, choices, undeclared
from birdgrab.errors import UsageError

# Every choice away from its default (and valid together): events windows, or fixed ones with a hop.
CHOSEN = ChunkOptions(
    sample_rate=16000, chunk_s=5.0, min_chunk_s=2.0, gate_db=None, split=(70, 15, 15), windows="events",
    max_chunks_per_recording=7, max_chunks_per_class=300, noise_class=True, split_by="site",
    site_km=2.5, unseen_by="birdnet-2.4", unseen_by_drop=True, verify="birdnet", min_confidence=0.5,
    labels_from="birdnet",
).validated()  # fmt: skip
HOPPED = dataclasses.replace(CHOSEN, windows="fixed", hop_s=2.5).validated()


def test_every_option_is_declared_a_choice_or_a_setting_and_every_choice_is_recorded():
    assert undeclared(ChunkOptions) == []
    defaults = ChunkOptions()
    changed = {
        name
        for name, _ in choices(ChunkOptions)
        for chosen in (CHOSEN, HOPPED)
        if getattr(chosen, name) != getattr(defaults, name)
    }
    assert changed == {name for name, _ in choices(ChunkOptions)}  # the two move every one


def test_a_choice_changes_the_chunk_files_signature_exactly_when_it_says_it_changes_bytes():
    base = ChunkOptions()
    for name, declared in choices(ChunkOptions):
        other = dataclasses.replace(base, **{name: getattr(HOPPED if name == "hop_s" else CHOSEN, name)})
        assert (other.signature() != base.signature()) is (declared.effect == "bytes"), name


@pytest.mark.parametrize("chosen", [CHOSEN, HOPPED], ids=["events", "hopped"])
def test_an_account_reads_back_into_the_same_options_and_command_line(tmp_path, chosen):
    made = json.loads(json.dumps(account(chosen)))  # as dataset.json holds it
    (tmp_path / "dataset.json").write_text(json.dumps({**made, "made_from": {}, "birdgrab_version": "x"}))
    assert options_like(tmp_path / "dataset.json", ChunkOptions(), set()) == chosen
    assert options_like(tmp_path, ChunkOptions(), set()) == chosen  # the dataset folder works too
    words = command_line(made)
    assert words[words.index("--split") + 1] == "70/15/15" and "--no-gate" in words
    assert "--unseen-by-drop" in words and words[words.index("--site-km") + 1] == "2.5"
    assert (
        words[words.index("--verify") + 1] == "birdnet"
        and words[words.index("--min-confidence") + 1] == "0.5"
    )


def test_options_given_beside_like_win_and_the_rest_come_from_the_file(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({**account(CHOSEN), "made_from": {}}))
    given = ChunkOptions(split=(60, 20, 20), jobs=1)
    rebuilt = options_like(tmp_path / "dataset.json", given, {"--split"})
    assert rebuilt == dataclasses.replace(CHOSEN, split=(60, 20, 20), jobs=1)


def test_an_older_dataset_json_keeps_defaults_for_what_it_did_not_record(tmp_path, caplog):
    # birdgrab before the account: "fixed" windows whatever was used, no caps recorded
    old = {"sample_rate": 22050, "chunk_seconds": 5.0, "min_chunk_seconds": 3.0, "windows": "fixed",
           "gate_db": 25.0, "split": {"by": "recording", "train": 80, "val": 10, "test": 10},
           "birdgrab_version": "0.9.0", "made_at": "2026-11-01T00:00:00+00:00"}  # fmt: skip
    (tmp_path / "dataset.json").write_text(json.dumps(old))
    rebuilt = options_like(tmp_path / "dataset.json", ChunkOptions(windows="events"), {"--windows"})
    assert (rebuilt.sample_rate, rebuilt.chunk_s, rebuilt.windows) == (22050, 5.0, "events")
    assert "recorded only some choices" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no "),
        ("{not json", "is not a dataset.json"),
        ('{"something": 1}', "is not a dataset.json"),
        ('{"sample_rate": 32000, "made_from": {}, "loudness_norm": -23}', "'loudness_norm'"),
        ('{"sample_rate": "fast", "made_from": {}}', "--sample-rate"),
        ('{"sample_rate": 32000, "made_from": {}, "max_chunks_per_class": 2.5}', "--max-chunks-per-class"),
        ('{"sample_rate": 32000, "made_from": {}, "noise_class": "yes"}', "--noise-class"),
    ],
)
def test_a_bad_like_file_is_a_one_line_usage_error(tmp_path, content, message):
    path = tmp_path / "dataset.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message):
        options_like(path, ChunkOptions(), set()).validated()
    folders = [
        "--manifests",
        str(tmp_path),
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(app, ["chunk", "--like", str(path), *folders])
    assert result.exit_code == 2 and "Traceback" not in result.output and message.strip() in result.output


def test_the_account_in_sentences_names_each_choice():
    text = " ".join(describe(account(CHOSEN)))
    for words in ("16000 Hz", "exactly 5 s", "placed on the calls", "At most 7 windows", "At most 300 clips",
                  "class `noise`", "70 % of the recordings", "within 2.5 km", "--unseen-by birdnet-2.4",
                  "left out of the dataset", "`confirmed` at 0.5 or more", "less than 0.5 for its own class",
                  "BirdNET hears in each clip at 0.5"):  # fmt: skip
        assert words in text, words
