"""`birdgrab export`: Parquet in the Hugging Face hub layout and WebDataset shards, read back with
pyarrow, soundfile and tarfile only (the real consumers run in `make test-consumers`)."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml
from typer.testing import CliRunner

from birdgrab import __version__
from birdgrab.cli import app
from birdgrab.export import ExportOptions, run_export
from tests.conftest import no_derivatives

HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def export(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["export", *args], catch_exceptions=False)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def card_header(folder: Path) -> dict:
    text = (folder / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "the card starts with a YAML header"
    return yaml.safe_load(match.group(1))


def class_names(dataset: Path) -> list[str]:
    classes = json.loads((dataset / "classes.json").read_text())
    return [classes[str(i)]["label"] for i in range(len(classes))]


@pytest.fixture(scope="module")
def parquet_export(small_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "export"
    code, output = export("--dataset", str(small_dataset), "--out", str(out), "--shard-mb", "1")
    assert code == 0, output
    return out


def test_parquet_export_has_every_split_without_nd_recordings(small_dataset, parquet_export):
    metadata = pd.read_csv(small_dataset / "metadata.csv", keep_default_na=False)
    nd = metadata["licence"].map(no_derivatives)
    assert nd.any(), "the fixture must hold ND-licensed recordings"
    expected = metadata[~nd]
    for ours, hub in HF_SPLITS.items():
        files = sorted((parquet_export / "data").glob(f"{hub}-*.parquet"))
        table = pq.ParquetDataset(files).read()
        rows = expected[expected["split"] == ours]
        assert table.num_rows == len(rows) > 0
        assert sorted(table.column("file_name").to_pylist()) == sorted(rows["file_name"])
        assert not any(no_derivatives(x) for x in table.column("licence").to_pylist())


def test_parquet_shards_are_named_and_sized_for_the_hub(parquet_export):
    files = sorted(p.name for p in (parquet_export / "data").iterdir())
    assert all(re.fullmatch(r"(train|validation|test)-\d{5}-of-\d{5}\.parquet", f) for f in files), files
    train = [f for f in files if f.startswith("train-")]
    assert len(train) > 1, "--shard-mb 1 splits the train split"
    assert train == [f"train-{i:05d}-of-{len(train):05d}.parquet" for i in range(len(train))]
    for name in train[:-1]:
        assert (parquet_export / "data" / name).stat().st_size < 1.2 * 2**20


def test_parquet_label_is_a_class_label_in_class_id_order(small_dataset, parquet_export):
    names = class_names(small_dataset)
    for path in (parquet_export / "data").glob("*.parquet"):
        schema = pq.read_schema(path)
        features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
        assert features["label"] == {"names": names, "_type": "ClassLabel"}
        assert features["audio"] == {"sampling_rate": 16000, "_type": "Audio"}
        table = pq.read_table(path, columns=["label", "class_id", "scientific_name"])
        assert table.column("label").to_pylist() == table.column("class_id").to_pylist()
        for label, scientific in zip(
            table.column("label").to_pylist(), table.column("scientific_name").to_pylist(), strict=True
        ):
            assert names[label] == scientific.replace(" ", "_")


def test_parquet_audio_decodes_to_the_chunk_length(small_dataset, parquet_export):
    path = next((parquet_export / "data").glob("validation-*.parquet"))
    table = pq.read_table(path, columns=["audio", "file_name"])
    for cell, file_name in zip(
        table.column("audio").to_pylist(), table.column("file_name").to_pylist(), strict=True
    ):
        audio, rate = sf.read(io.BytesIO(cell["bytes"]), dtype="int16")
        assert rate == 16000 and audio.shape == (5 * 16000,)
        assert cell["bytes"] == (small_dataset / file_name).read_bytes()


def test_parquet_keeps_every_metadata_column_with_stable_types(small_dataset, parquet_export):
    columns = pd.read_csv(small_dataset / "metadata.csv", nrows=0).columns
    schema = pq.read_schema(next((parquet_export / "data").glob("train-*.parquet")))
    assert set(columns) <= set(schema.names)
    assert str(schema.field("recordist").type) == "string"
    assert str(schema.field("offset_s").type) == "double"
    assert str(schema.field("chunk_index").type) == "int64"


def test_the_card_tells_the_hub_and_a_person_what_is_inside(small_dataset, parquet_export):
    header = card_header(parquet_export)
    metadata = pd.read_csv(small_dataset / "metadata.csv", keep_default_na=False)
    kept = metadata[~metadata["licence"].map(no_derivatives)]
    assert header["task_categories"] == ["audio-classification"]
    assert "cc-by-nc-nd-4.0" not in header["license"] and "cc-by-4.0" in header["license"]
    data_files = header["configs"][0]["data_files"]
    assert data_files == [{"split": s, "path": f"data/{s}-*"} for s in ("train", "validation", "test")]
    features = {f["name"]: f["dtype"] for f in header["dataset_info"]["features"]}
    assert features["label"]["class_label"]["names"] == {
        str(i): name for i, name in enumerate(class_names(small_dataset))
    }
    assert features["audio"] == {"audio": {"sampling_rate": 16000}}
    splits = {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]}
    assert splits == {hub: int((kept["split"] == ours).sum()) for ours, hub in HF_SPLITS.items()}
    text = (parquet_export / "README.md").read_text(encoding="utf-8")
    nd = metadata[metadata["licence"].map(no_derivatives)]
    assert f"{nd['recording_key'].nunique()} ND-licensed recordings ({len(nd)} clips) were left out" in text
    assert "**Non-commercial:**" in text
    assert f"birdgrab {__version__}" in text and header["birdgrab"]["export"]["shard_mb"] == 1
    assert "xeno-canto" in text and "CREDITS.csv" in text
    credits = pd.read_csv(parquet_export / "CREDITS.csv", keep_default_na=False)
    assert set(credits["recording_key"]) == set(kept["recording_key"])


def test_allow_nd_exports_them_and_says_so(small_dataset, tmp_path):
    code, output = export("--dataset", str(small_dataset), "--out", str(tmp_path / "e"), "--allow-nd")
    assert code == 0, output
    table = pq.ParquetDataset(sorted((tmp_path / "e" / "data").glob("*.parquet"))).read(columns=["licence"])
    assert table.num_rows == len(pd.read_csv(small_dataset / "metadata.csv"))
    assert "cc-by-nc-nd-4.0" in card_header(tmp_path / "e")["license"]
    assert (
        "clips of ND-licensed recordings are included (`--allow-nd`)"
        in (tmp_path / "e" / "README.md").read_text()
    )


def test_webdataset_shards_pair_each_wav_with_its_metadata(small_dataset, tmp_path):
    code, output = export(
        "--dataset", str(small_dataset), "--out", str(tmp_path / "w"), "--format", "webdataset"
    )
    assert code == 0, output
    metadata = pd.read_csv(small_dataset / "metadata.csv", keep_default_na=False)
    kept = metadata[~metadata["licence"].map(no_derivatives)]
    for ours, hub in HF_SPLITS.items():
        members: dict[str, dict[str, bytes]] = {}
        for path in sorted((tmp_path / "w" / "data").glob(f"{hub}-*.tar")):
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    key, ext = member.name.split(".", 1)
                    members.setdefault(key, {})[ext] = tar.extractfile(member).read()
        assert len(members) == int((kept["split"] == ours).sum())
        for key, files in members.items():
            assert set(files) == {"wav", "json"}
            info = json.loads(files["json"])
            assert info["file_name"] == f"{key}.wav" and info["split"] == ours
            assert isinstance(info["class_id"], int) and isinstance(info["offset_s"], float)
            assert sf.info(io.BytesIO(files["wav"])).frames == 5 * 16000


def test_a_failed_export_leaves_the_previous_one_whole(small_dataset, tmp_path, monkeypatch):
    out = tmp_path / "export"
    run_export(small_dataset, out, ExportOptions(shard_mb=1))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(dataset, target, folder, shard_bytes, workers, embeddings=None):
        target.write_bytes(f"{folder}/train-00000-of-00001.parquet", b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(__import__("birdgrab.export", fromlist=["WRITERS"]).WRITERS, "parquet", broken)
    with pytest.raises(OSError):
        run_export(small_dataset, out, ExportOptions(shard_mb=1))
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"], "no temporary folder is left behind"


def test_a_new_export_replaces_the_old_one_whole(small_dataset, tmp_path):
    out = tmp_path / "export"
    run_export(small_dataset, out, ExportOptions(shard_mb=1))
    killed = tmp_path / ".export.999999999.x1y2.part"  # left by a run that was killed (no such pid)
    (killed / "data").mkdir(parents=True)
    run_export(small_dataset, out, ExportOptions(shard_mb=100))
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"], "the killed run's folder is gone"


def test_a_missing_chunk_is_reported_and_the_rest_exported(small_dataset, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(small_dataset, dataset)
    metadata = pd.read_csv(dataset / "metadata.csv", keep_default_na=False)
    gone = metadata[~metadata["licence"].map(no_derivatives)]["file_name"].iloc[0]
    (dataset / gone).unlink()
    code, output = export("--dataset", str(dataset), "--out", str(tmp_path / "e"))
    assert code == 1
    assert f"failed: {gone}" in output
    table = pq.ParquetDataset(sorted((tmp_path / "e" / "data").glob("*.parquet"))).read(columns=["file_name"])
    assert gone not in table.column("file_name").to_pylist() and table.num_rows > 0


@pytest.mark.parametrize(
    "setup, message",
    [
        (
            lambda root, ds: (root / "out").mkdir() or (root / "out" / "notes.txt").write_text("mine"),
            "holds files",
        ),
        (lambda root, ds: None, "inside the dataset"),
        (lambda root, ds: shutil.rmtree(ds), "no dataset folder"),
        (lambda root, ds: (ds / "metadata.csv").write_text("a,b\n1,2\n"), "lacks the column"),
        (lambda root, ds: (ds / "classes.json").write_text("[1, 2"), "not a birdgrab classes file"),
    ],
    ids=["foreign-out", "out-inside-dataset", "no-dataset", "bad-metadata", "bad-classes"],
)
def test_bad_input_is_one_line_and_exit_2_and_touches_nothing(small_dataset, tmp_path, setup, message):
    dataset = tmp_path / "dataset"
    shutil.copytree(small_dataset, dataset)
    setup(tmp_path, dataset)
    out = dataset / "export" if message == "inside the dataset" else tmp_path / "out"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, output = export("--dataset", str(dataset), "--out", str(out))
    assert code == 2 and message in output, output
    lock = tmp_path / ".dataset.birdgrab.lock"  # the dataset's lock, beside it while a command reads it
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p != lock) == before
