"""`chunk`: the dataset folder a user trains on, built from a real audio cache."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from birdgrab import manifests
from birdgrab.audio import probe
from birdgrab.dataset import ChunkOptions, file_stem, run_chunk
from birdgrab.download import DownloadLedger
from birdgrab.models import (
    ChunksManifest,
    DownloadEntry,
    Recording,
    SelectedSpecies,
    SelectionManifest,
    Species,
    SpeciesManifest,
    WikiArticle,
)
from birdgrab.store import RecordingStore
from tests.audio_fixtures import bird_song, mp3_bytes, write_audio

NOW = datetime(2026, 11, 21, tzinfo=UTC)
GERMAN = {
    "Turdus philomelos": "Singdrossel",
    "Erithacus rubecula": "Rotkehlchen",
    "Accipiter gentilis": "Habicht",
}


class World:
    """manifests/, cache/ and dataset/ in a temporary folder, with real audio in the cache."""

    def __init__(self, root: Path):
        self.root = root
        self.manifests, self.cache, self.out = root / "manifests", root / "cache", root / "dataset"
        self.recordings: dict[str, Recording] = {}
        self.selected: dict[str, list[str]] = {}
        self.downloads = DownloadLedger(self.manifests)

    def add(
        self,
        species: str,
        sid: str,
        samples: np.ndarray,
        rate: int,
        fmt: str = "WAV",
        *,
        source: str = "xeno-canto",
        quality: str | None = "A",
        data: bytes | None = None,
    ) -> str:
        prefix = "xc" if source == "xeno-canto" else "europeana"
        key = f"{prefix}:{sid}"
        raw = self.root / "incoming" / f"{hashlib.sha1(key.encode()).hexdigest()}.{fmt.lower()}"
        raw.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            raw.write_bytes(data)
        elif fmt == "MP3":
            raw.write_bytes(mp3_bytes(samples, rate))
        else:
            write_audio(raw, samples, rate, fmt)
        body = raw.read_bytes()
        sha = hashlib.sha256(body).hexdigest()
        ext = {"WAV": "wav", "FLAC": "flac", "MP3": "mp3"}[fmt]
        target = self.cache / sha[:2] / f"{sha}.{ext}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        try:
            info = probe(target)
            duration, sample_rate, channels = info.duration_s, info.sample_rate, info.channels
        except Exception:  # a corrupt file, deliberately
            duration, sample_rate, channels = 20.0, rate, 1
        self.recordings[key] = Recording(
            key=key,
            source=source,
            source_id=sid,
            scientific_name=species,
            original_name=species,
            species=species,
            quality=quality,
            licence="CC BY-SA 4.0",
            recordist=f"Recordist {sid}",
            audio_url=f"http://x.test/{sid}",
            page_url=f"http://x.test/page/{sid}",
            first_seen=NOW,
            last_seen=NOW,
        )
        self.downloads.record(
            DownloadEntry(
                key=key,
                status="ok",
                path=f"{sha[:2]}/{sha}.{ext}",
                bytes=len(body),
                sha256=sha,
                format=ext,
                duration_s=duration,
                sample_rate=sample_rate,
                channels=channels,
                updated_at=NOW,
            )
        )
        self.selected.setdefault(species, []).append(key)
        return key

    def save(self) -> None:
        species = {
            name: Species(
                scientific_name=name,
                is_bird=True,
                english_name=f"{name} (en)",
                wiki={
                    "de": WikiArticle(
                        lang="de",
                        status="article",
                        title=GERMAN.get(name, name),
                        url=f"https://de.wikipedia.org/wiki/{GERMAN.get(name, name)}",
                        checked_at=NOW,
                    )
                },
            )
            for name in {r.species for r in self.recordings.values()}
        }
        RecordingStore.create_from(self.manifests, self.recordings.values())
        manifests.save(
            self.manifests / "species.json", manifests.new_manifest(SpeciesManifest, {}, species=species)
        )
        manifests.save(
            self.manifests / "selection.json",
            manifests.new_manifest(
                SelectionManifest,
                {},
                species={
                    name: SelectedSpecies(species=name, recordings=keys)
                    for name, keys in self.selected.items()
                },
            ),
        )
        self.downloads.compact({})

    def chunk(self, **options):
        self.save()
        return run_chunk(self.manifests, self.cache, self.out, ChunkOptions(**{"jobs": 2, **options}))

    def metadata_path(self) -> Path:
        return self.out / "metadata.csv"

    def metadata(self) -> list[dict]:
        with open(self.out / "metadata.csv", newline="") as handle:
            return list(csv.DictReader(handle))

    def classes(self) -> dict:
        return json.loads((self.out / "classes.json").read_text())

    def wavs(self) -> dict[str, int]:
        return {str(p.relative_to(self.out)): p.stat().st_mtime_ns for p in sorted(self.out.rglob("*.wav"))}


@pytest.fixture
def world(tmp_path) -> World:
    w = World(tmp_path)
    for i in range(3):
        w.add("Turdus philomelos", str(100 + i), bird_song(25, 44100, seed=i), 44100)
    w.add("Erithacus rubecula", "200", bird_song(21, 48000, seed=10), 48000, "FLAC")
    w.add(
        "Erithacus rubecula",
        "201",
        np.stack([bird_song(12, 22050, seed=11)] * 2, axis=1),
        22050,
        "MP3",
    )
    return w


def test_chunks_are_exact_mono_16_bit_wavs_with_matching_metadata(world):
    report = world.chunk()
    assert not report.failed and report.recordings == 5
    rows = world.metadata()
    files = world.wavs()
    assert sorted(r["file_name"] for r in rows) == sorted(files)
    for name in files:
        info = sf.info(world.out / name)
        assert (info.channels, info.samplerate, info.frames, info.subtype, info.format) == (
            1,
            32000,
            320000,
            "PCM_16",
            "WAV",
        )
    # 25 s -> 0,1 full + 5 s padded; 21 s -> 2 chunks + 1 s dropped; 12 s -> 1 chunk (+2 s dropped)
    by_key = {}
    for row in rows:
        by_key.setdefault(row["recording_key"], []).append(row)
    assert [r["padded_s"] for r in by_key["xc:100"]] == ["0.0", "0.0", "5.0"]
    assert len(by_key["xc:200"]) == 2 and len(by_key["xc:201"]) == 1
    assert all(name.startswith(("Turdus_philomelos/xc-", "Erithacus_rubecula/xc-")) for name in files)
    first = rows[0]
    assert first["licence"] == "CC BY-SA 4.0" and first["recordist"].startswith("Recordist")
    assert first["page_url"].startswith("http://x.test/page/")
    classes = world.classes()
    assert [c["label"] for c in classes.values()] == ["Erithacus_rubecula", "Turdus_philomelos"]
    assert classes["1"]["german_name"] == "Singdrossel" and classes["1"]["chunks"] == 9
    assert "Recordist 200" in (world.out / "ATTRIBUTION.md").read_text()
    assert len((world.out / "CREDITS.csv").read_text().splitlines()) == 6


def test_second_run_rewrites_nothing(world):
    world.chunk()
    before = world.wavs()
    side_files = {
        n: (world.out / n).stat().st_mtime_ns for n in ("metadata.csv", "classes.json", "CREDITS.csv")
    }
    report = world.chunk()
    assert report.built == 0 and report.unchanged == 5 and report.chunks_written == 0
    assert world.wavs() == before
    assert side_files == {n: (world.out / n).stat().st_mtime_ns for n in side_files}


def test_changed_option_rebuilds_and_leaves_no_stale_files(world):
    world.chunk()
    report = world.chunk(sample_rate=16000, chunk_s=5.0)
    assert report.built == 5
    for name in world.wavs():
        info = sf.info(world.out / name)
        assert (info.samplerate, info.frames) == (16000, 80000)
    assert sorted(r["file_name"] for r in world.metadata()) == sorted(world.wavs())


def test_deselected_recording_takes_its_chunks_and_rows_along(world):
    world.chunk()
    world.selected["Turdus philomelos"].remove("xc:101")
    report = world.chunk()
    assert report.removed == 1
    assert not any("xc-101_" in name for name in world.wavs())
    assert all(r["recording_key"] != "xc:101" for r in world.metadata())


def test_class_ids_are_stable_when_a_species_is_added(world):
    world.chunk()
    before = {c["label"]: cid for cid, c in world.classes().items()}
    world.add("Accipiter gentilis", "300", bird_song(11, 32000, seed=30), 32000)
    world.chunk()
    after = {c["label"]: cid for cid, c in world.classes().items()}
    assert {k: after[k] for k in before} == before  # nothing renumbered
    assert after["Accipiter_gentilis"] == "2"  # sorts first, still gets the next id
    assert {r["class_id"] for r in world.metadata() if r["label"] == "Accipiter_gentilis"} == {"2"}


def test_splits_are_per_recording_stratified_and_stable(tmp_path):
    w = World(tmp_path)
    for i in range(10):
        w.add("Turdus philomelos", str(i), bird_song(14, 16000, seed=i), 16000)
    w.chunk()
    splits = {}
    for row in w.metadata():
        splits.setdefault(row["recording_key"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits.values())  # no recording in two splits
    first = {k: next(iter(v)) for k, v in splits.items()}
    assert sorted(first.values()).count("train") == 8 and sorted(first.values()).count("val") == 1
    for i in range(10, 15):
        w.add("Turdus philomelos", str(i), bird_song(14, 16000, seed=i), 16000)
    w.chunk()
    again = {r["recording_key"]: r["split"] for r in w.metadata()}
    assert {k: again[k] for k in first} == first


def test_near_duplicate_on_the_other_archive_is_chunked_once(tmp_path):
    w = World(tmp_path)
    song = bird_song(24, 44100, seed=7)
    original = w.add("Turdus philomelos", "500", song, 44100, "WAV", quality="A")
    import soxr

    reencoded = soxr.resample(song, 44100, 22050).astype(np.float32)
    copy = w.add(
        "Turdus philomelos", "/11622/TSA_copy", reencoded, 22050, "MP3", source="europeana", quality=None
    )
    other = w.add(
        "Turdus philomelos",
        "/11622/TSA_other",
        bird_song(24, 44100, seed=8),
        44100,
        "MP3",
        source="europeana",
        quality=None,
    )
    report = w.chunk()
    assert report.near_duplicates == 1
    keys = {r["recording_key"] for r in w.metadata()}
    assert keys == {original, other} and copy not in keys
    state = manifests.load(w.manifests / "chunks.json", ChunksManifest)
    assert state.entries[copy].status == "duplicate" and state.entries[copy].duplicate_of == original


def test_undecodable_file_is_rejected_with_a_reason_and_the_rest_goes_on(world):
    html = b"<html><body>Error 500</body></html>" * 50
    bad = world.add("Turdus philomelos", "666", None, 44100, "MP3", data=html)
    report = world.chunk()
    assert bad in report.rejected and "HTML" in report.rejected[bad] and not report.failed  # exit 0
    assert report.recordings == 5 and len(world.metadata()) == 12
    assert not any("xc-666" in name for name in world.wavs())
    # the undecodable file left the cache, rejected: the same bytes are not downloaded again
    entry = DownloadLedger(world.manifests).entries[bad]
    assert entry.status == "rejected" and "does not decode" in entry.reason
    assert not list(world.cache.glob(f"*/{hashlib.sha256(html).hexdigest()}*"))


def test_cached_file_damaged_on_disk_is_a_failed_download_fetched_again(world):
    key = next(iter(world.recordings))
    entry = DownloadLedger(world.manifests).entries[key]
    cached = world.cache / entry.path
    cached.write_bytes(b"\0" * cached.stat().st_size)  # same size, other bytes: not what was downloaded
    report = world.chunk()
    assert key in report.failed and "next fetch downloads it again" in report.failed[key]
    entry = DownloadLedger(world.manifests).entries[key]
    assert entry.status == "failed" and "damaged" in entry.reason and not cached.exists()


def test_europeana_ids_become_safe_unique_file_names():
    rec = Recording(
        key="europeana:/11622/_TSA_a",
        source="europeana",
        source_id="/11622/_TSA_a",
        scientific_name="Turdus philomelos",
        original_name="x",
        first_seen=NOW,
        last_seen=NOW,
    )
    assert file_stem(rec) == "europeana-11622__TSA_a"
    evil = rec.model_copy(update={"source_id": "/../../etc/passwd"})
    stem = file_stem(evil)
    assert "/" not in stem and ".." not in stem


def test_unusable_species_name_never_becomes_a_path(world, tmp_path):
    world.selected["../../etc"] = world.selected.pop("Erithacus rubecula")
    report = world.chunk()
    assert (
        all("unusable species name" in reason for reason in report.failed.values())
        and len(report.failed) == 2
    )
    assert not (tmp_path / "etc").exists() and not (world.root.parent / "etc").exists()
    assert {p.name for p in world.out.iterdir() if p.is_dir()} == {"Turdus_philomelos"}


def test_stats_summarise_the_dataset_per_class_and_split(world):
    from birdgrab.stats import dataset_stats

    assert dataset_stats(world.out) is None  # before the first build
    world.chunk()
    summary = dataset_stats(world.out)
    rows = world.metadata()
    assert summary.chunks == len(rows) and summary.classes == 2 and summary.recordings == 5
    for label, splits in summary.chunks_by_class.items():
        for split, count in splits.items():
            assert count == sum(1 for r in rows if r["label"] == label and r["split"] == split)
    assert summary.hours == round(len(rows) * 10 / 3600, 2)


def test_metadata_reads_with_pandas_as_text_without_nan(world):
    import pandas as pd

    world.recordings["xc:100"] = world.recordings["xc:100"].model_copy(
        update={"recordist": None, "country": None, "quality": None, "recorded_date": "1998-05"}
    )
    world.chunk()
    metadata = pd.read_csv(world.out / "metadata.csv", dtype={"source_id": str})
    text = ["label", "split", "recording_key", "source", "source_id", "licence", "recordist", "page_url",
            "background", "labels", "german_name", "english_name", "quality", "recorded_date", "country"]  # fmt: skip
    for column in text:
        assert metadata[column].map(type).eq(str).all(), column  # no float NaN among the strings
    assert metadata["recorded_year"].dtype == "int64" and metadata["class_id"].dtype == "int64"
    first = metadata[metadata.recording_key == "xc:100"].iloc[0]
    assert (first.recordist, first.country, first.recorded_date, first.recorded_year) == (
        "unknown", "unknown", "1998-05", 1998
    )  # fmt: skip
    assert set(metadata.recorded_year[metadata.recording_key != "xc:100"]) == {0}  # not known


def test_dataset_folder_holds_only_the_dataset_and_its_account_is_rewritten_only_on_change(world):
    # What dataset.json says is checked against the options in tests/test_provenance.py.
    world.chunk(gate_db=30.0)
    hidden = [p.name for p in world.out.rglob(".*")]
    assert hidden == []  # no lock, journal or temporary file to publish
    assert json.loads((world.out / "dataset.json").read_text())["gate_db"] == 30.0
    before = (world.out / "dataset.json").stat().st_mtime_ns
    # the same catalogue (not saved again: a new catalogue is a new date in the account), the same options
    run_chunk(world.manifests, world.cache, world.out, ChunkOptions(jobs=2, gate_db=30.0))
    assert (world.out / "dataset.json").stat().st_mtime_ns == before  # nothing changed, nothing rewritten


def test_class_ids_live_in_a_manifest_and_old_datasets_keep_theirs(world):
    world.chunk()
    ids = json.loads((world.manifests / "class_ids.json").read_text())["ids"]
    assert ids == {"Erithacus_rubecula": 0, "Turdus_philomelos": 1}
    # A dataset made before the manifest existed: its published ids (here swapped) are adopted once.
    (world.manifests / "class_ids.json").unlink()
    classes = world.classes()
    classes["0"]["label"], classes["1"]["label"] = "Turdus_philomelos", "Erithacus_rubecula"
    (world.out / "classes.json").write_text(json.dumps(classes))
    world.chunk()
    assert {c["label"]: cid for cid, c in world.classes().items()} == {
        "Turdus_philomelos": "0",
        "Erithacus_rubecula": "1",
    }
    # From now on the manifest decides, whatever happens to the published file.
    (world.out / "classes.json").unlink()
    world.chunk()
    assert {r["label"]: r["class_id"] for r in world.metadata()} == {
        "Turdus_philomelos": "0",
        "Erithacus_rubecula": "1",
    }


def test_a_run_holding_the_dataset_lock_keeps_others_out_without_a_file_inside(world):
    from typer.testing import CliRunner

    from birdgrab.cli import app
    from birdgrab.lock import folder_lock

    world.save()
    (world.out / ".birdgrab.lock").parent.mkdir(parents=True)
    (world.out / ".birdgrab.lock").write_text("{}")  # left by an older birdgrab
    argv = [
        "chunk",
        "--manifests",
        str(world.manifests),
        "--cache",
        str(world.cache),
        "--out",
        str(world.out),
    ]
    with folder_lock(world.out, published=True):
        held = CliRunner().invoke(app, argv)
    assert held.exit_code == 3 and not world.metadata_path().exists()
    assert CliRunner().invoke(app, [*argv, "--jobs", "1"]).exit_code == 0
    assert (world.root / ".dataset.birdgrab.lock").exists()
    assert [p.name for p in world.out.iterdir() if p.name.startswith(".")] == []  # the old one is gone


def test_background_and_labels_go_through_the_synonym_merge(world):
    world.recordings["xc:100"] = world.recordings["xc:100"].model_copy(
        update={"background_species": ["Erithacus rubecula", "Parus major", "Turdus philomelos", "sp."]}
    )
    world.recordings["xc:200"] = world.recordings["xc:200"].model_copy(
        update={"background_species": ["Turdus ericetorum"]}  # an old synonym of the song thrush
    )
    world.save()
    species = manifests.load_species(world.manifests)
    species.species["Turdus philomelos"].synonyms.append("Turdus ericetorum")
    manifests.save(world.manifests / "species.json", species)
    run_chunk(world.manifests, world.cache, world.out, ChunkOptions(jobs=2))
    rows = {r["recording_key"]: r for r in world.metadata()}
    assert rows["xc:100"]["background"] == "Erithacus_rubecula;Parus major"  # own class left out
    assert rows["xc:100"]["labels"] == "Turdus_philomelos;Erithacus_rubecula"  # only classes present
    assert rows["xc:200"]["background"] == "Turdus_philomelos"
    assert rows["xc:200"]["labels"] == "Erithacus_rubecula;Turdus_philomelos"
    assert rows["xc:101"]["background"] == "none" and rows["xc:101"]["labels"] == "Turdus_philomelos"


def test_noise_class_has_its_own_stable_id_and_is_marked(world):
    field = bird_song(35, 32000, seed=40)
    field[12 * 32000 :] = 0.003 * np.random.default_rng(1).standard_normal(23 * 32000)  # song, then none
    world.add("Turdus philomelos", "150", field, 32000)
    world.chunk(noise_class=True)
    classes = world.classes()
    noise = {cid: c for cid, c in classes.items() if c["noise"]}
    assert [c["label"] for c in noise.values()] == ["noise"] and list(noise) == ["2"]
    rows = [r for r in world.metadata() if r["label"] == "noise"]
    assert rows and all(r["file_name"].startswith("noise/") and r["class_id"] == "2" for r in rows)
    assert len({r["recording_key"] for r in rows}) == len(rows)  # one a recording at most
    world.add("Accipiter gentilis", "300", bird_song(11, 32000, seed=30), 32000)
    world.chunk(noise_class=True)
    assert {c["label"]: cid for cid, c in world.classes().items()}["noise"] == "2"


def test_class_cap_spreads_over_recordings_and_is_stable_when_recordings_come(tmp_path):
    w = World(tmp_path)
    for i in range(3):
        w.add("Turdus philomelos", str(i), bird_song(45, 16000, seed=i), 16000)
    w.chunk(max_chunks_per_class=4, gate_db=None)
    first = {r["file_name"] for r in w.metadata()}
    per_recording = [sum(r["recording_key"] == f"xc:{i}" for r in w.metadata()) for i in range(3)]
    assert len(first) == 4 and sorted(per_recording) == [1, 1, 2]
    assert sorted(w.wavs()) == sorted(first)  # the files left out are gone
    assert w.chunk(max_chunks_per_class=4, gate_db=None).built == 0  # nothing to do again
    w.add("Turdus philomelos", "3", bird_song(45, 16000, seed=3), 16000)
    w.chunk(max_chunks_per_class=4, gate_db=None)
    after = {r["file_name"] for r in w.metadata()}
    assert len(after) == 4 and len(first & after) == 3  # the newcomer takes one place, the rest stay
    w.selected["Turdus philomelos"] = ["xc:0"]
    report = w.chunk(max_chunks_per_class=4, gate_db=None)
    assert len(w.metadata()) == 4 and report.built == 1  # its windows left out before come back


def test_split_by_recordist_keeps_every_recordist_in_one_split_also_after_a_refresh(tmp_path):
    w = World(tmp_path)
    for i in range(24):
        species = ("Turdus philomelos", "Erithacus rubecula")[i % 2]
        w.add(species, str(i), bird_song(4, 8000, seed=i), 8000)
        w.recordings[f"xc:{i}"] = w.recordings[f"xc:{i}"].model_copy(update={"recordist": f"Person {i % 7}"})
    w.chunk(split_by="recordist", split=(60, 20, 20))

    def splits_by_recordist() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for row in w.metadata():
            found.setdefault(row["recordist"], set()).add(row["split"])
        return found

    first = splits_by_recordist()
    assert all(len(s) == 1 for s in first.values()) and {"train", "val", "test"} <= set().union(
        *first.values()
    )
    for i in range(24, 30):
        w.add("Turdus philomelos", str(i), bird_song(4, 8000, seed=i), 8000)
        w.recordings[f"xc:{i}"] = w.recordings[f"xc:{i}"].model_copy(update={"recordist": f"Person {i % 9}"})
    w.chunk(split_by="recordist", split=(60, 20, 20))
    again = splits_by_recordist()
    assert all(len(s) == 1 for s in again.values())
    assert {k: again[k] for k in first} == first  # nobody moved


def test_batches_shrink_so_the_workers_finish_together():
    """100 one-minute recordings on 2 workers: every recording in exactly one batch, in order; the
    batches shrink, and the last ones hold a single recording (no worker cuts a big batch alone at the end)."""
    from types import SimpleNamespace

    from birdgrab.dataset.runner import MAX_BATCH_AUDIO_S, batches

    todo = [SimpleNamespace(key=f"xc:{n}", duration_s=60.0) for n in range(100)]

    made = batches(todo, slots=2)

    assert [item.key for batch in made for item in batch] == [item.key for item in todo]
    sizes = [len(batch) for batch in made]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] * 60.0 <= MAX_BATCH_AUDIO_S
    assert sizes[-2:] == [1, 1]
