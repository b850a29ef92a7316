"""Every Python snippet in the README is named and run by a test: the light ones here, the ones that
need TensorFlow, torch or `datasets` in `make test-consumers` (tests/consumers)."""

from __future__ import annotations

import json

from tests.snippets import python_blocks, run_snippet, snippets

# Each name is run by a test: label-map below, the others in tests/consumers/test_loaders.py.
TESTED = {"keras", "hf-export", "hf-audiofolder", "torch", "label-map"}


def test_every_python_snippet_is_named_and_tested():
    assert len(snippets()) == python_blocks(), "a ```python block without <!-- snippet: NAME -->"
    assert set(snippets()) == TESTED


def test_label_map_snippet_gives_the_stable_class_ids(small_dataset, monkeypatch):
    monkeypatch.chdir(small_dataset.parent)
    label_to_id = run_snippet("label-map")["label_to_id"]
    classes = json.loads((small_dataset / "classes.json").read_text())
    assert label_to_id == {c["label"]: int(i) for i, c in classes.items()}
    assert sorted(label_to_id.values()) == list(range(len(classes)))
