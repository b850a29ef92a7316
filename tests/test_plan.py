"""The dataset planner: every decision from plain manifest values, no files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from birdgrab.dataset import ChunkOptions
from birdgrab.dataset.plan import (
    Pair,
    assign_class_ids,
    near_duplicates,
    plan_build,
    usable_files,
)
from birdgrab.models import ChunkedRecording, DownloadEntry, Recording, SelectedSpecies, SelectionManifest

NOW = datetime(2026, 11, 21, tzinfo=UTC)


def _recording(key: str, source: str = "xeno-canto", quality: str | None = "A") -> Recording:
    return Recording(
        key=key, source=source, source_id=key.split(":", 1)[1], scientific_name="Turdus philomelos",
        original_name="Turdus philomelos", quality=quality, first_seen=NOW, last_seen=NOW,
    )  # fmt: skip


def _selection(**species: list[str]) -> SelectionManifest:
    return SelectionManifest(
        schema_version=1,
        generated_at=NOW,
        birdgrab_version="t",
        species={
            name.replace("_", " "): SelectedSpecies(species=name, recordings=keys)
            for name, keys in species.items()
        },
    )


def _download(key: str, status: str = "ok") -> DownloadEntry:
    return DownloadEntry(key=key, status=status, sha256=key * 4, duration_s=20.0, updated_at=NOW)


def test_usable_files_need_a_cached_file_and_skip_byte_duplicates():
    keys = ["xc:1", "xc:2", "xc:3"]
    selection = _selection(Turdus_philomelos=keys)
    recordings = {k: _recording(k) for k in keys}
    downloads = {"xc:1": _download("xc:1"), "xc:2": _download("xc:2", "duplicate"), "xc:3": _download("xc:3")}
    found = usable_files(selection, recordings, downloads, cached={"xc:1": Path("a.mp3")})
    assert list(found.usable) == ["xc:1"] and found.not_downloaded == 1  # xc:3 not in the cache
    assert found.usable["xc:1"].label == "Turdus_philomelos"


def test_the_better_copy_of_a_near_duplicate_stays():
    found = usable_files(
        _selection(Turdus_philomelos=["xc:1", "europeana:/9/a"]),
        {
            "xc:1": _recording("xc:1", quality="C"),
            "europeana:/9/a": _recording("europeana:/9/a", "europeana", None),
        },
        {"xc:1": _download("xc:1"), "europeana:/9/a": _download("europeana:/9/a")},
        cached={"xc:1": Path("a"), "europeana:/9/a": Path("b")},
    )
    pair = Pair("c", found.usable["europeana:/9/a"], found.usable["xc:1"])
    assert near_duplicates([pair], {"c": 0.97}) == {"europeana:/9/a": ("xc:1", 0.97)}  # rated beats unrated
    assert near_duplicates([pair], {"c": 0.5}) == {}
    assert near_duplicates([pair], {}) == {}  # no score (undecodable): not a duplicate


def test_class_ids_never_move_and_new_ones_follow():
    assert assign_class_ids({}, ["b", "a"]) == {"a": 0, "b": 1}
    assert assign_class_ids({"b": 0, "z": 5}, ["a", "b"]) == {"b": 0, "z": 5, "a": 6}


def test_plan_cuts_only_what_changed_and_lets_go_of_what_left():
    options = ChunkOptions()
    selection = _selection(Turdus_philomelos=["xc:1", "xc:2"])
    found = usable_files(
        selection,
        {k: _recording(k) for k in ("xc:1", "xc:2")},
        {k: _download(k) for k in ("xc:1", "xc:2")},
        cached={"xc:1": Path("a"), "xc:2": Path("b")},
    )
    built = {
        "xc:1": ChunkedRecording(key="xc:1", status="ok", label="Turdus_philomelos", source_sha256="xc:1" * 4,
                                 options=options.signature(), updated_at=NOW),
        "xc:9": ChunkedRecording(key="xc:9", status="ok", label="Turdus_philomelos", updated_at=NOW),
    }  # fmt: skip
    recordings = {k: _recording(k) for k in ("xc:1", "xc:2")}
    plan = plan_build(found.usable, {}, selection, recordings, built, {"xc:1": "test"}, options)
    assert plan.stale == ["xc:2"] and plan.leaving == ["xc:9"]
    assert plan.splits["xc:1"] == "test"  # kept
    changed = plan_build(found.usable, {}, selection, recordings, built, {}, ChunkOptions(chunk_s=5.0))
    assert changed.stale == ["xc:1", "xc:2"]
