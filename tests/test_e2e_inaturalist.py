"""iNaturalist as a fourth archive, end to end against the sandbox on 127.0.0.1: paging by id past
the 10,000-result window, the silent per_page cap, licences per sound, SoundCloud sounds, ranks,
m4a audio, the species merge with xeno-canto, credits, the media budget and incremental refresh."""

from __future__ import annotations

import csv
import math

import httpx
import pytest

from birdgrab.sandbox import Sandbox, SandboxConfig
from birdgrab.sources.inaturalist import ALL_RIGHTS_RESERVED, SOUNDCLOUD
from tests.conftest import FAST_RETRIES, Birdgrab

THRUSHES = "Turdus philomelos\nTurdus merula\n"


def research_bird_sounds(sandbox) -> dict[str, tuple]:
    """Sound key -> (observation, sound) of every research-grade bird observation with a sound."""
    return {
        s.key: (o, s)
        for o in sandbox.archive.inat_sorted()
        if o.quality_grade == "research" and 3 in o.ancestor_ids
        for s in o.sounds
    }


def test_catalog_turns_sounds_into_recordings_with_every_quirk(birdgrab, sandbox):
    result = birdgrab("catalog", "--source", "inaturalist")
    assert result.exit_code == 0, result.output
    manifest = birdgrab.catalogue()
    recordings, skipped = manifest["recordings"], {s["key"]: s for s in manifest["skipped"]}
    truths = sandbox.archive.truths
    expected = research_bird_sounds(sandbox)
    not_recordings = set(truths.inat_soundcloud) | set(truths.inat_not_species)
    assert set(recordings) == set(expected) - not_recordings
    assert {k: skipped[k]["reason"] for k in truths.inat_soundcloud} == dict.fromkeys(
        truths.inat_soundcloud, SOUNDCLOUD
    )
    reasons = {skipped[k]["reason"].split(" taxon")[0] for k in truths.inat_not_species}
    assert reasons == {"genus-level", "hybrid"}

    for key in truths.inat_all_rights_reserved:
        assert recordings[key]["downloadable"] is False
        assert recordings[key]["not_downloadable_reason"] == ALL_RIGHTS_RESERVED
        assert recordings[key]["licence"] is None
    for key in truths.inat_subspecies:
        assert (recordings[key]["scientific_name"], recordings[key]["subspecies"]) == ("Parus major", "major")
    for key, recording in recordings.items():
        observation, sound = expected[key]
        assert recording["recordist"] == (observation.user_name or observation.login)
        assert recording["attribution"].startswith(f"(c) {observation.user_name or observation.login}, ")
        assert recording["page_url"].endswith(f"/inaturalist/observations/{observation.id}")
        assert (recording["latitude"], recording["longitude"]) == (
            observation.latitude,
            observation.longitude,
        )
        if sound.license_code:
            assert recording["licence"].startswith("CC") and recording["licence_url"].startswith("https://")
    one_observation_two_sounds = [o for o in sandbox.archive.inat_sorted() if len(o.sounds) == 2]
    assert all(s.key in recordings for o in one_observation_two_sounds for s in o.sounds if not s.soundcloud)

    species = birdgrab.manifest("species.json")["species"]
    assert species["Turdus philomelos"]["is_bird"] is True
    assert "iNaturalist files its recordings under birds" in species["Turdus philomelos"]["bird_check"]


def test_the_bird_check_comes_from_the_iconic_taxon(birdgrab):
    amphibians = "taxon_id=3,20978"
    assert birdgrab("catalog", "--source", "inaturalist", "--inat-query", amphibians).exit_code == 0
    species = birdgrab.manifest("species.json")["species"]
    assert species["Rana temporaria"]["is_bird"] is False
    assert species["Turdus merula"]["is_bird"] is True


def test_a_query_that_would_break_the_paging_is_refused_before_any_request(birdgrab, sandbox):
    result = birdgrab("catalog", "--source", "inaturalist", "--inat-query", "per_page=500")
    assert result.exit_code == 2
    assert "per_page is set by birdgrab" in result.output
    assert sandbox.counts()["inat-api"] == 0


@pytest.mark.slow
def test_paging_by_id_goes_past_the_result_window(tmp_path):
    observations = 10_050
    config = SandboxConfig(profile="scale", inat_bulk_observations=observations, hour_long=False)
    with Sandbox(config) as sandbox:
        birdgrab = Birdgrab(sandbox, tmp_path, {**sandbox.env(), **FAST_RETRIES})
        # Paging by number stops at the window: the 51st page of 200 is refused.
        refused = httpx.get(sandbox.env()["BIRDGRAB_INATURALIST_API"], params={"per_page": 200, "page": 51})
        assert refused.status_code == 403
        sandbox.reset_counts()
        assert birdgrab("catalog", "--source", "inaturalist").exit_code == 0
        assert len(birdgrab.recordings()) == observations
        assert sandbox.counts()["inat-api"] == math.ceil(observations / 200)


def test_a_server_serving_fewer_per_page_than_asked_is_paged_to_the_end(tmp_path):
    with Sandbox(SandboxConfig(hour_long=False, inat_per_page_max=5)) as sandbox:
        birdgrab = Birdgrab(sandbox, tmp_path, {**sandbox.env(), **FAST_RETRIES})
        assert birdgrab("catalog", "--source", "inaturalist").exit_code == 0
        listed = research_bird_sounds(sandbox)
        truths = sandbox.archive.truths
        expected = set(listed) - set(truths.inat_soundcloud) - set(truths.inat_not_species)
        assert set(birdgrab.recordings()) == expected
        observations = len({o.id for o, _ in listed.values()})
        assert sandbox.counts()["inat-api"] == observations // 5 + 1


def fetch_thrushes(birdgrab: Birdgrab, *fetch_args: str):
    names = birdgrab.root / "species.txt"
    names.write_text(THRUSHES)
    catalog = birdgrab(
        "catalog", "--source", "xeno-canto", "--source", "inaturalist", "--species-file", str(names)
    )
    assert catalog.exit_code == 0, catalog.output
    assert birdgrab("filter", "--min-files", "1").exit_code == 0
    return birdgrab("fetch", *fetch_args)


@pytest.mark.slow
def test_sounds_join_the_xeno_canto_classes_with_credits_and_m4a_decoded(birdgrab, sandbox):
    result = fetch_thrushes(birdgrab, "--chunk-seconds", "3", "--min-chunk-seconds", "1")
    assert result.exit_code == 0, result.output
    entries = birdgrab.manifest("downloads.json")["entries"]
    truths = sandbox.archive.truths
    m4a = [k for k in truths.inat_m4a if k in entries]
    assert m4a and all(entries[k]["status"] == "ok" and entries[k]["format"] == "m4a" for k in m4a)
    for key in truths.inat_all_rights_reserved:  # catalogued, never downloaded
        assert key not in entries
        sound = sandbox.archive.recording(key)
        assert not any(f"/sounds/{sound.id}." in path for path in sandbox.path_counts())

    with open(birdgrab.out / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_label = {}
    for row in rows:
        by_label.setdefault(row["label"], set()).add(row["source"])
    assert by_label["Turdus_philomelos"] == {"xeno-canto", "inaturalist"}  # one class, two archives
    inat_rows = [r for r in rows if r["source"] == "inaturalist"]
    assert all(r["file_name"].split("/")[1].startswith(f"inaturalist-{r['source_id']}_") for r in inat_rows)

    with open(birdgrab.out / "CREDITS.csv", newline="") as f:
        credits = {r["recording_key"]: r for r in csv.DictReader(f)}
    inat_credits = [c for k, c in credits.items() if k.startswith("inaturalist:")]
    assert inat_credits and all(c["attribution"].startswith("(c) ") for c in inat_credits)
    attribution = (birdgrab.out / "ATTRIBUTION.md").read_text()
    assert "iNaturalist (https://www.inaturalist.org)" in attribution
    assert all(c["attribution"] in attribution for c in inat_credits)


@pytest.mark.slow
def test_the_media_budget_is_enforced_visible_and_carried_over_to_the_next_run(birdgrab, sandbox):
    budget = {"BIRDGRAB_INATURALIST_MEDIA_GB_PER_HOUR": "0.00005"}  # 50 kB: one or two sounds
    result = fetch_thrushes(birdgrab, "--no-chunk", "--jobs", "1")
    # The first run had no budget set: everything came. A second catalog of new sounds meets the budget.
    assert result.exit_code == 0, result.output
    sandbox.grow(inat_observations=6)
    assert (
        birdgrab(
            "catalog", "--source", "inaturalist", "--species-file", str(birdgrab.root / "species.txt")
        ).exit_code
        == 0
    )
    assert birdgrab("filter", "--min-files", "1").exit_code == 0
    new = [k for k in birdgrab.manifest("selection.json")["species"]["Turdus merula"]["recordings"]]
    result = birdgrab("fetch", "--no-chunk", "--jobs", "1", env=budget)
    assert result.exit_code == 0, result.output
    assert "iNaturalist media budget reached" in result.output
    assert "left for a later run" in result.output
    entries = birdgrab.manifest("downloads.json")["entries"]
    waiting = [k for k in new if k.startswith("inaturalist:") and k not in entries]
    assert waiting, "the budget left nothing for later"

    again = birdgrab("fetch", "--no-chunk", "--jobs", "1", env=budget)
    assert "media budget reached" in again.output  # still within the hour: still refused
    assert all(k not in birdgrab.manifest("downloads.json")["entries"] for k in waiting)
    assert birdgrab("fetch", "--no-chunk", env={"BIRDGRAB_INATURALIST_MEDIA_GB_PER_HOUR": "5"}).exit_code == 0
    entries = birdgrab.manifest("downloads.json")["entries"]
    assert all(entries[k]["status"] in ("ok", "duplicate") for k in waiting)


@pytest.mark.slow
def test_refresh_asks_only_for_observations_updated_since_the_last_run(birdgrab, sandbox):
    assert birdgrab("catalog", "--source", "inaturalist").exit_code == 0
    assert birdgrab("filter", "--min-files", "1", "--no-wiki").exit_code == 0
    assert birdgrab("refresh", "--no-chunk").exit_code == 0
    before = set(birdgrab.recordings())
    added = sandbox.grow(inat_observations=2)
    sandbox.reset_counts()
    result = birdgrab("refresh", "--no-chunk")
    assert result.exit_code == 0, result.output
    recordings = birdgrab.recordings()
    assert set(recordings) == before | set(added)
    assert sandbox.counts()["inat-incremental"] == sandbox.counts()["inat-api"] == 1
    assert not any(
        r["vanished"] for r in recordings.values()
    )  # an incremental listing marks nothing vanished
