"""`filter`: each option proven on data where it matters; determinism; nonsense refused."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest

from birdgrab import manifests
from birdgrab.errors import UsageError
from birdgrab.models import Recording, Species, SpeciesManifest, WikiArticle
from birdgrab.selection import FilterOptions, load_selection, run_filter, select
from birdgrab.store import FilterRow, RecordingStore

NOW = datetime(2026, 11, 21, tzinfo=UTC)


def rec(sid: str, species: str, **fields) -> Recording:
    source = fields.pop("source", "xeno-canto")
    prefix = "xc" if source == "xeno-canto" else "europeana"
    base = dict(
        key=f"{prefix}:{sid}",
        source=source,
        source_id=sid,
        scientific_name=species,
        original_name=species,
        species=species,
        quality="A",
        length_s=30.0,
        licence="CC BY-SA 4.0",
        types=["song"],
        audio_url=f"http://x.test/{sid}",
        first_seen=NOW,
        last_seen=NOW,
    )
    base.update(fields)
    return Recording(**base)


def article(status="article", title="Singdrossel") -> dict:
    return {"de": WikiArticle(lang="de", status=status, title=title, checked_at=NOW)}


def catalog(recordings: list[Recording], species: list[Species]):
    """What `select` takes: the store's filter rows (by class, then key) and species.json."""
    rows = [FilterRow(**{name: getattr(r, name) for name in FilterRow._fields}) for r in recordings]
    return (
        sorted(rows, key=lambda row: (row.species, row.key)),
        manifests.new_manifest(SpeciesManifest, {}, species={s.scientific_name: s for s in species}),
    )


def save_catalog(folder, recordings: list[Recording], species: list[Species]) -> None:
    RecordingStore.create_from(folder, recordings)
    manifests.save(folder / "species.json", catalog([], species)[1])


THRUSH = Species(scientific_name="Turdus philomelos", is_bird=True, wiki=article())
ROBIN = Species(scientific_name="Erithacus rubecula", is_bird=True, wiki=article(title="Rotkehlchen"))


def kept_keys(selection) -> list[str]:
    return selection.selected_keys()


def test_min_files_counts_only_recordings_that_survive_and_can_be_downloaded():
    recs = [rec(str(i), "Turdus philomelos") for i in range(3)]
    recs.append(
        rec(
            "9", "Turdus philomelos", downloadable=False, audio_url=None, not_downloadable_reason="restricted"
        )
    )
    recs.append(rec("8", "Turdus philomelos", licence="CC BY-NC-ND 4.0"))
    sel = select(*catalog(recs, [THRUSH]), FilterOptions(min_files=4, no_nd=True))
    assert sel.species == {}
    assert "fewer than --min-files 4" in sel.dropped_species["Turdus philomelos"].reason
    assert sel.dropped_recordings["xc:9"] == "restricted"
    assert "forbids derivatives" in sel.dropped_recordings["xc:8"]
    assert select(*catalog(recs, [THRUSH]), FilterOptions(min_files=4)).species  # ND allowed: 4 usable


def test_max_files_keeps_best_quality_then_longer_then_lower_id():
    recs = [
        rec("30", "Turdus philomelos", quality="B", length_s=100),
        rec("20", "Turdus philomelos", quality="A", length_s=10),
        rec("10", "Turdus philomelos", quality="A", length_s=10),
        rec("5", "Turdus philomelos", quality="A", length_s=50),
        rec("7", "Turdus philomelos", quality=None, length_s=500),
    ]
    sel = select(*catalog(recs, [THRUSH]), FilterOptions(min_files=1, max_files=3))
    assert sel.species["Turdus philomelos"].recordings == ["xc:5", "xc:10", "xc:20"]
    assert "beyond --max-files 3" in sel.dropped_recordings["xc:30"]


def test_wiki_article_required_unless_no_wiki():
    nowiki = Species(
        scientific_name="Regulus ignicapilla", is_bird=True, wiki=article("genus", "Goldhähnchen")
    )
    recs = [rec("1", "Regulus ignicapilla")]
    sel = select(*catalog(recs, [nowiki]), FilterOptions(min_files=1))
    assert "only a genus article" in sel.dropped_species["Regulus ignicapilla"].reason
    assert select(*catalog(recs, [nowiki]), FilterOptions(min_files=1, wiki_lang=None)).species


def test_birds_only_by_default():
    frog = Species(scientific_name="Rana temporaria", is_bird=False, wiki=article(title="Grasfrosch"))
    unknown = Species(scientific_name="Tetrao urogallus", is_bird=None, wiki=article(title="Auerhuhn"))
    recs = [rec("1", "Rana temporaria"), rec("2", "Tetrao urogallus")]
    sel = select(*catalog(recs, [frog, unknown]), FilterOptions(min_files=1))
    assert "not a bird" in sel.dropped_species["Rana temporaria"].reason
    assert "not confirmed as a bird" in sel.dropped_species["Tetrao urogallus"].reason
    assert set(
        select(*catalog(recs, [frog, unknown]), FilterOptions(min_files=1, any_group=True)).species
    ) == {"Rana temporaria", "Tetrao urogallus"}


@pytest.mark.parametrize(
    ("options", "dropped"),
    [
        (FilterOptions(min_files=1, licences=("BY-SA",)), {"xc:2", "xc:3"}),
        (FilterOptions(min_files=1, no_nc=True), {"xc:2"}),
        (FilterOptions(min_files=1, min_quality="B"), {"xc:4", "europeana:/1/a"}),
        (FilterOptions(min_files=1, min_length=20), {"xc:5"}),
        (FilterOptions(min_files=1, max_length=100), {"xc:6"}),
        (
            FilterOptions(min_files=1, type="call"),
            {"xc:1", "xc:2", "xc:3", "xc:4", "xc:5", "xc:6", "europeana:/1/a"},
        ),
        (FilterOptions(min_files=1, no_background=True), {"xc:3"}),
        (
            FilterOptions(min_files=1, sources=("europeana",)),
            {"xc:1", "xc:2", "xc:3", "xc:4", "xc:5", "xc:6", "xc:7"},
        ),
    ],
)
def test_each_recording_filter_drops_exactly_what_it_should(options, dropped):
    recs = [
        rec("1", "Turdus philomelos"),
        rec("2", "Turdus philomelos", licence="CC BY-NC-SA 4.0"),
        rec("3", "Turdus philomelos", licence="CC BY 4.0", background_species=["Parus major"]),
        rec("4", "Turdus philomelos", quality="D"),
        rec("5", "Turdus philomelos", length_s=5),
        rec("6", "Turdus philomelos", length_s=500),
        rec("7", "Turdus philomelos", types=["flight call", "song"]),
        rec("/1/a", "Turdus philomelos", source="europeana", quality=None, length_s=None),
    ]
    sel = select(*catalog(recs, [THRUSH]), options)
    all_keys = {r.key for r in recs}
    assert set(sel.dropped_recordings) == dropped
    assert set(kept_keys(sel)) == all_keys - dropped


def without_timestamps(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if '"generated_at"' not in line)


def test_same_inputs_give_byte_identical_selection_apart_from_timestamp(tmp_path):
    recs = [
        rec(str(i), "Turdus philomelos" if i % 2 else "Erithacus rubecula", quality="ABCDE"[i % 5])
        for i in range(40)
    ]
    save_catalog(tmp_path, recs, [THRUSH, ROBIN])
    options = FilterOptions(min_files=3, max_files=7, min_quality="D")
    run_filter(tmp_path, options)
    first = (tmp_path / "selection.json").read_text()
    run_filter(tmp_path, options)
    second = (tmp_path / "selection.json").read_text()
    assert without_timestamps(first) == without_timestamps(second) and len(first) > 1000


def test_dry_run_writes_nothing(tmp_path):
    save_catalog(tmp_path, [rec("1", "Turdus philomelos")], [THRUSH])
    sel = run_filter(tmp_path, FilterOptions(min_files=1), dry_run=True)
    assert sel.selected_keys() == ["xc:1"] and not (tmp_path / "selection.json").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (FilterOptions(min_files=-1), "--min-files"),
        (FilterOptions(min_files=10, max_files=5), "larger than --max-files"),
        (FilterOptions(min_length=30, max_length=10), "larger than --max-length"),
        (FilterOptions(licences=("BY-XYZ",)), "not a known licence"),
        (FilterOptions(min_quality="F"), "--min-quality"),
    ],
)
def test_nonsense_options_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        options.validated()


def test_licence_codes_accept_long_forms():
    assert FilterOptions(licences=("CC BY-SA 4.0,cc0", "BY")).validated().licences == ("BY", "BY-SA", "CC0")


def test_what_filter_chose_is_read_without_parsing_selection_json(tmp_path):
    """fetch, chunk and refresh read the choice from the store while selection.json is the file filter
    wrote: its per-recording drop reasons (most of a catalogue) are not parsed again."""
    recs = [rec(str(i), "Turdus philomelos" if i % 3 else "Erithacus rubecula") for i in range(30)]
    save_catalog(tmp_path, recs, [THRUSH, ROBIN])
    chosen = run_filter(tmp_path, FilterOptions(min_files=3, max_files=4))
    path = tmp_path / "selection.json"
    status = path.stat()
    # Same size and time, unreadable content: only the store can answer.
    path.write_bytes(b"x" * status.st_size)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    loaded = load_selection(tmp_path)
    assert loaded is not None and loaded.species == chosen.species
    assert len(loaded.selected_keys()) == 8


def test_a_selection_json_changed_after_filter_is_read_from_the_file(tmp_path):
    recs = [rec(str(i), "Turdus philomelos" if i % 2 else "Erithacus rubecula") for i in range(10)]
    save_catalog(tmp_path, recs, [THRUSH, ROBIN])
    run_filter(tmp_path, FilterOptions(min_files=1))
    path = tmp_path / "selection.json"
    edited = json.loads(path.read_text())
    del edited["species"]["Erithacus rubecula"]  # a user narrowing the selection by hand
    path.write_text(json.dumps(edited))
    loaded = load_selection(tmp_path)
    assert loaded is not None and list(loaded.species) == ["Turdus philomelos"]
    assert loaded.selected_keys() == sorted(f"xc:{i}" for i in range(1, 10, 2))


def test_no_selection_before_the_first_filter(tmp_path):
    save_catalog(tmp_path, [rec("1", "Turdus philomelos")], [THRUSH])
    assert load_selection(tmp_path) is None
