"""Every Python snippet in the README is named and run by a test: the light ones here, the ones that
need TensorFlow, torch or `datasets` in `make test-consumers` (tests/consumers)."""

from __future__ import annotations

import json

import pandas as pd

from tests.snippets import python_blocks, run_snippet, snippets

# Each name is run by a test: the ones that need only pandas below, the others in
# tests/consumers/test_loaders.py, and the linear probe on BirdNET embeddings in tests/test_verify_export.py.
TESTED = {
    "keras", "hf-export", "hf-audiofolder", "torch", "label-map", "ebird-map", "metadata-pandas", "recordings-sqlite",
    "metadata-labels", "linear-probe",
}  # fmt: skip


def test_every_python_snippet_is_named_and_tested():
    assert len(snippets()) == python_blocks(), "a ```python block without <!-- snippet: NAME -->"
    assert set(snippets()) == TESTED


def test_label_map_snippet_gives_the_stable_class_ids(small_dataset, monkeypatch):
    monkeypatch.chdir(small_dataset.parent)
    label_to_id = run_snippet("label-map")["label_to_id"]
    classes = json.loads((small_dataset / "classes.json").read_text())
    assert label_to_id == {c["label"]: int(i) for i, c in classes.items()}
    assert sorted(label_to_id.values()) == list(range(len(classes)))


def test_ebird_map_snippet_maps_taxon_ids_to_class_ids(small_dataset, monkeypatch):
    monkeypatch.chdir(small_dataset.parent)
    ebird_to_id = run_snippet("ebird-map")["ebird_to_id"]
    classes = json.loads((small_dataset / "classes.json").read_text())
    assert ebird_to_id == {c["ebird_taxon_id"]: int(i) for i, c in classes.items() if c["ebird_taxon_id"]}


def test_metadata_pandas_snippet_reads_text_as_text(small_dataset, monkeypatch):
    monkeypatch.chdir(small_dataset.parent)
    metadata = run_snippet("metadata-pandas")["metadata"]
    assert metadata["recorded_year"].dtype.kind == "i"
    for column in ("recordist", "country", "quality", "source_id", "recorded_date"):
        assert metadata[column].map(type).eq(str).all(), column


def test_recordings_sqlite_snippet_reads_the_catalogue(small_dataset, monkeypatch):
    monkeypatch.chdir(small_dataset.parent)
    recordings = run_snippet("recordings-sqlite")["recordings"]
    metadata = pd.read_csv(small_dataset / "metadata.csv", keep_default_na=False)
    assert set(metadata["recording_key"]) <= set(recordings["key"])


def test_metadata_labels_snippet_gives_one_column_per_class(small_dataset, monkeypatch):
    monkeypatch.chdir(small_dataset.parent)
    found = run_snippet("metadata-labels")
    metadata, multi_hot = found["metadata"], found["multi_hot"]
    classes = {c["label"] for c in json.loads((small_dataset / "classes.json").read_text()).values()}
    assert set(multi_hot.columns) <= classes and len(multi_hot) == len(metadata)
    assert all(multi_hot.loc[i, label] == 1 for i, label in metadata["label"].items())
