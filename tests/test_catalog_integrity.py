"""`birdgrab catalog` keeps its word over 127.0.0.1: listings that are complete or say they are
not, and placeholders that never become species."""

from __future__ import annotations

import csv
import json

from tests.test_e2e_catalog import expected_xc_keys


def listed_by_default(sandbox) -> int:
    """Records the default query (grp:birds cnt:germany) lists: species and placeholders alike."""
    return sum(r.group == "birds" and r.country == "Germany" for r in sandbox.archive.xc.values())


def test_a_server_that_serves_small_pages_is_listed_whole(birdgrab, sandbox):
    sandbox.set_page_size("xeno-canto", 4)  # whatever per_page asks
    result = birdgrab("catalog", "--source", "xeno-canto")
    assert result.exit_code == 0, result.output
    recordings = birdgrab.catalogue()
    assert {k for k in recordings["recordings"]} == expected_xc_keys(sandbox)
    assert recordings["incomplete_listings"] == []
    listed = listed_by_default(sandbox)
    # pages of the served size, and not one more: numPages overcounts by one (an empty page)
    assert sandbox.counts()["xc-api"] == -(-listed // 4)


def test_a_short_listing_is_incomplete_marks_nothing_vanished_and_is_retried(birdgrab, sandbox):
    assert birdgrab("catalog", "--source", "xeno-canto").exit_code == 0
    gone = sorted(expected_xc_keys(sandbox))[-1]
    sandbox.remove([gone])
    # numPages counted in the asked page size: the pages run out before the records do
    sandbox.set_page_size("xeno-canto", 4, counted_as_asked=True)
    result = birdgrab("catalog", "--source", "xeno-canto")
    assert result.exit_code == 1
    assert "incomplete" in result.output and "asked again next run" in result.output
    recordings = birdgrab.catalogue()
    [listing] = recordings["incomplete_listings"]
    expected = listed_by_default(sandbox)
    assert listing["expected"] == expected and listing["arrived"] == 8 < expected
    assert not any(r["vanished"] for r in recordings["recordings"].values())
    assert "incomplete listing" in birdgrab("stats").output

    sandbox.set_page_size("xeno-canto", None)
    assert birdgrab("catalog", "--source", "xeno-canto").exit_code == 0
    recordings = birdgrab.catalogue()
    assert recordings["incomplete_listings"] == []
    assert [k for k, r in recordings["recordings"].items() if r["vanished"]] == [gone]


def test_europeana_items_lost_between_cursor_pages_make_an_incomplete_listing(birdgrab, sandbox):
    sandbox.set_page_size("europeana", 10)  # fewer than the 100 rows asked: cursor paging still gets all
    assert birdgrab("catalog", "--source", "europeana").exit_code == 0
    complete = set(birdgrab.catalogue()["recordings"])
    assert sandbox.counts()["europeana-search"] > 1
    # a cursor that advances by the rows asked, not by the items served: items are lost
    sandbox.set_page_size("europeana", 10, counted_as_asked=True)
    result = birdgrab("catalog", "--source", "europeana")
    assert result.exit_code == 1 and "incomplete" in result.output
    recordings = birdgrab.catalogue()
    [listing] = recordings["incomplete_listings"]
    assert listing["source"] == "europeana" and listing["arrived"] == 10 < listing["expected"]
    assert set(recordings["recordings"]) == complete and not any(
        r["vanished"] for r in recordings["recordings"].values()
    )


def test_placeholders_are_skipped_with_a_reason_and_counted(birdgrab, sandbox):
    # no grp tag: the soundscapes (grp null) are listed too
    result = birdgrab("catalog", "--source", "xeno-canto", "--xc-query", "cnt:germany")
    assert result.exit_code == 0, result.output
    placeholders = set(sandbox.archive.truths.placeholders)
    recordings = birdgrab.catalogue()
    assert placeholders and not placeholders & set(recordings["recordings"])
    skipped = {s["key"]: s for s in recordings["skipped"]}
    assert all(skipped[key]["kind"] == "placeholder" for key in placeholders)
    assert "placeholder" in skipped[min(placeholders)]["reason"]
    assert f"placeholder {len(placeholders)}" in result.output
    assert f"placeholder {len(placeholders)}" in " ".join(birdgrab("stats").output.split())
    species = birdgrab.manifest("species.json")["species"]
    assert "Mystery mystery" not in species and "Sonus naturalis" not in species
    # and filter --no-wiki has no such class to select
    assert birdgrab("filter", "--no-wiki", "--min-files", "1").exit_code == 0
    assert not {"Mystery mystery", "Sonus naturalis"} & set(birdgrab.manifest("selection.json")["species"])


def test_titles_are_species_only_when_their_genus_is_a_taxon(birdgrab, sandbox):
    result = birdgrab("catalog")
    assert result.exit_code == 0, result.output
    recordings = birdgrab.catalogue()
    skipped = {s["key"]: s for s in recordings["skipped"]}
    for key in sandbox.archive.truths.non_taxon_titles:
        assert key not in recordings["recordings"]
        assert skipped[key]["kind"] == "not a taxon" and "no genus" in skipped[key]["reason"]
    species = birdgrab.manifest("species.json")
    assert not {"Vogelstimmen am", "Portret van", "Gedenkteken voor"} & set(species["species"])
    # the German portal form parses; Strix is listed on xeno-canto only outside Germany: Wikidata vouched
    [owl] = [i.key for i in sandbox.archive.europeana.values() if i.title.startswith("Waldkauz |")]
    assert recordings["recordings"][owl]["species"] == "Strix aluco"
    assert species["genera"]["Strix"]["taxon"] is True and species["genera"]["Vogelstimmen"]["taxon"] is False
    assert "Turdus" not in species["genera"]  # xeno-canto's own names vouch for their genera: never asked
    assert "not a taxon 3" in result.output

    sandbox.reset_counts()
    assert birdgrab("catalog").exit_code == 0
    assert sandbox.counts()["wikidata-api"] == 0  # genus verdicts and taxonomy ids are kept


def test_taxonomy_ids_come_in_batches_of_50_once(birdgrab, tmp_path):
    from birdgrab.sandbox import Sandbox, SandboxConfig

    config = SandboxConfig(
        data_dir=tmp_path / "audio", profile="scale", extra_species=120, recordings_per_species=1
    )
    with Sandbox(config) as sandbox:
        env = sandbox.env()
        result = birdgrab("catalog", "--source", "xeno-canto", env=env)
        assert result.exit_code == 0, result.output
        species = birdgrab.manifest("species.json")["species"]
        assert len(species) == 120
        assert sandbox.counts()["wikidata-api"] == 3 and sandbox.counts()["wikidata-entities"] == 120
        for name, s in species.items():
            ids = s["taxon_ids"]
            assert ids["wikidata_id"] == s["wiki"]["de"]["wikidata_id"]
            assert ids["ebird"].endswith("1") and ids["gbif"].isdigit(), name
        sandbox.reset_counts()
        assert birdgrab("catalog", "--source", "xeno-canto", env=env).exit_code == 0
        assert sandbox.counts()["wikidata-api"] == 0


def test_wikidata_down_is_a_failed_item_retried_next_run(birdgrab, sandbox):
    result = birdgrab(
        "catalog",
        env={"BIRDGRAB_WIKIDATA_API": "http://127.0.0.1:9/w/api.php", "BIRDGRAB_RETRY_ATTEMPTS": "2"},
    )
    assert result.exit_code == 1 and "Wikidata" in result.output
    recordings = birdgrab.catalogue()
    [owl] = [i.key for i in sandbox.archive.europeana.values() if i.title.startswith("Waldkauz |")]
    assert owl not in recordings["recordings"]  # held back until its genus is checked
    assert all(s.get("taxon_ids") is None for s in birdgrab.manifest("species.json")["species"].values())
    assert birdgrab("catalog").exit_code == 0
    assert owl in birdgrab.catalogue()["recordings"]
    species = birdgrab.manifest("species.json")["species"].values()
    articles = [s for s in species if s["wiki"]["de"]["status"] == "article"]
    assert articles and all(s["taxon_ids"] for s in articles)


def test_creators_given_by_reference_are_named_or_credited_to_the_provider(birdgrab, sandbox):
    from birdgrab.sandbox.europeana_api import AGENTS, DATA_PROVIDER, UNNAMED_AGENT

    assert birdgrab("catalog", "--source", "europeana").exit_code == 0
    recordings = birdgrab.catalogue()["recordings"]
    planted = [
        sandbox.archive.europeana[key.split(":", 1)[1]] for key in sandbox.archive.truths.agent_creators
    ]
    for item in planted:
        recording = recordings[item.key]
        assert recording["recordist_id"] == item.creator
        expected = DATA_PROVIDER if item.creator == UNNAMED_AGENT else AGENTS[item.creator]
        assert recording["recordist"] == expected
    assert not any(
        "://" in (r["recordist"] or "") or (r["recordist"] or "").startswith("#") for r in recordings.values()
    )
    # one Record API request per agent (two items share one), plus the items without edmIsShownBy
    no_media = sum(
        1 for i in sandbox.archive.europeana.values() if i.key in recordings and not i.media_in_search
    )
    assert sandbox.counts()["europeana-record"] == no_media + len({i.creator for i in planted})
    sandbox.reset_counts()
    assert birdgrab("catalog", "--source", "europeana").exit_code == 0
    assert sandbox.counts()["europeana-record"] == no_media  # agents are known now


def test_rotten_media_links_fall_back_and_classes_carry_taxonomy_ids(birdgrab, sandbox):
    names = birdgrab.root / "species.txt"
    names.write_text("Erithacus rubecula\nRana temporaria\n")
    assert birdgrab("catalog", "--species-file", str(names)).exit_code == 0
    assert birdgrab("filter", "--min-files", "1", "--any-group", "--source", "europeana").exit_code == 0
    result = birdgrab("fetch")
    assert result.exit_code == 1  # one file is lost for good, and said so
    entries = birdgrab.manifest("downloads.json")["entries"]
    moved, lost = (sandbox.archive.recording(key) for key in sandbox.archive.truths.dead_links)
    assert (
        entries[moved.key]["status"] == "ok" and "/tierstimmenarchiv/recordings/" in entries[moved.key]["url"]
    )
    assert "answered HTTP 404" in entries[moved.key]["note"]
    reason = entries[lost.key]["reason"]
    assert entries[lost.key]["status"] == "failed" and reason.startswith(
        "HTTP 403; other addresses failed too"
    )
    assert "HTML" in reason  # the record's other web resource is a landing page, not audio
    assert sandbox.counts()["europeana-dead-links"] == 2

    classes = {c["label"]: c for c in json.loads((birdgrab.out / "classes.json").read_text()).values()}
    species = birdgrab.manifest("species.json")["species"]
    robin = classes["Erithacus_rubecula"]
    assert robin["ebird_taxon_id"] == species["Erithacus rubecula"]["taxon_ids"]["ebird"] == "eurrob1"
    assert robin["gbif_taxon_id"].isdigit() and robin["wikidata_id"].startswith("Q")
    assert classes["Rana_temporaria"]["ebird_taxon_id"] is None  # a frog: eBird has no id for it
    with open(birdgrab.out / "CREDITS.csv", newline="") as handle:
        recordists = {row["recording_key"]: row["recordist"] for row in csv.DictReader(handle)}
    assert not any("://" in name or name.startswith("#") for name in recordists.values())
    tagged = [k for k in sandbox.archive.truths.agent_creators if k in recordists]
    assert tagged and all(recordists[k] == "Frommolt, Karl-Heinz" for k in tagged)


def test_placeholders_an_earlier_version_took_for_species_leave_the_catalog(birdgrab, sandbox):
    from datetime import UTC, datetime

    from birdgrab import manifests
    from birdgrab.models import Recording, RecordingsManifest, Species, SpeciesManifest

    key = sandbox.archive.truths.placeholders[0]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    mystery = Recording(
        key=key,
        source="xeno-canto",
        source_id=key.split(":", 1)[1],
        scientific_name="Mystery mystery",
        original_name="Mystery mystery",
        species="Mystery mystery",
        group="birds",
        first_seen=now,
        last_seen=now,
        found_by="grp:birds cnt:germany",
    )
    birdgrab.manifests.mkdir()
    manifests.save(
        birdgrab.manifests / "recordings.json",
        manifests.new_manifest(RecordingsManifest, {}, recordings={key: mystery}),
    )
    old_species = Species(scientific_name="Mystery mystery", is_bird=True, recordings={"xeno-canto": 1})
    manifests.save(
        birdgrab.manifests / "species.json",
        manifests.new_manifest(SpeciesManifest, {}, species={"Mystery mystery": old_species}),
    )
    assert birdgrab("catalog", "--source", "xeno-canto").exit_code == 0
    assert key not in birdgrab.recordings()
    assert "Mystery mystery" not in birdgrab.manifest("species.json")["species"]
    assert {s["key"]: s["kind"] for s in birdgrab.skipped()}[key] == "placeholder"
