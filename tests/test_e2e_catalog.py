"""`birdgrab catalog` against the sandbox over 127.0.0.1: paging, quirks, species, faults, secrets."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from birdgrab import manifests
from birdgrab.catalog import CatalogOptions, run_catalog
from birdgrab.environment import load_settings
from birdgrab.sandbox import FaultRule
from tests.conftest import FAST_RETRIES


def expected_xc_keys(sandbox, query_country="Germany") -> set[str]:
    placeholders = set(sandbox.archive.truths.placeholders)
    return {
        r.key
        for r in sandbox.archive.xc.values()
        if r.group == "birds" and r.country == query_country and r.key not in placeholders
    }


def expected_europeana_keys(sandbox) -> set[str]:
    unnamed = set(sandbox.archive.truths.unnamed_items)
    return {i.key for i in sandbox.archive.europeana.values() if i.open and i.key not in unnamed}


def test_catalog_pages_both_archives_and_resolves_species(birdgrab, sandbox):
    result = birdgrab("catalog")
    assert result.exit_code == 0, result.output
    recordings = birdgrab.recordings()
    keys = set(recordings)
    assert {k for k in keys if k.startswith("xc:")} == expected_xc_keys(sandbox)
    assert {k for k in keys if k.startswith("europeana:")} == expected_europeana_keys(sandbox)
    # every xc page was asked once, and the overcounted empty last page ended the listing
    counts = sandbox.counts()
    pages = -(-len(expected_xc_keys(sandbox)) // 500) + 1
    assert counts["xc-api"] >= pages
    # cursor paging: one search request per page of 100 (the archive is small: one page), and the
    # Record API only for the items without edmIsShownBy and once per agent a dcCreator refers to
    missing_media = [i for i in sandbox.archive.europeana.values() if i.open and not i.media_in_search]
    agents = {
        sandbox.archive.recording(k).creator for k in sandbox.archive.truths.agent_creators if k in keys
    }
    assert counts["europeana-record"] == len([i for i in missing_media if i.key in keys]) + len(agents)
    assert all(recordings[i.key]["downloadable"] for i in missing_media if i.key in keys)

    species = birdgrab.manifest("species.json")["species"]
    truths = sandbox.archive.truths
    for europeana_name, xc_name in truths.synonyms.items():
        assert europeana_name in species[xc_name]["synonyms"] and europeana_name not in species
    for name in truths.non_birds:
        assert species[name]["is_bird"] is False
    for name in truths.europeana_only_species:
        assert species[name]["is_bird"] is True and "grp:birds" in species[name]["bird_check"]
    statuses = {name: s["wiki"]["de"]["status"] for name, s in species.items()}
    assert (
        statuses["Turdus philomelos"] == "article"
        and species["Turdus philomelos"]["wiki"]["de"]["title"] == "Singdrossel"
    )
    assert statuses["Regulus regulus"] == "genus"
    assert statuses["Grus grus"] == "disambiguation"
    assert statuses["Acanthis cabaret"] == "section"
    assert statuses["Locustella luscinioides"] == "missing"
    for name in truths.restricted_species:
        restricted = [r for r in recordings.values() if r["species"] == name]
        assert restricted and not any(r["downloadable"] for r in restricted)
        assert all("restricted" in r["not_downloadable_reason"] for r in restricted)
    skipped = {s["name"]: s["reason"] for s in birdgrab.skipped()}
    assert any("not identified to species" in reason for reason in skipped.values())
    # protocol-relative URLs were normalised
    assert all(r["page_url"].startswith("http") for r in recordings.values())


def test_rerun_asks_wikipedia_nothing_and_merges(birdgrab, sandbox):
    assert birdgrab("catalog").exit_code == 0
    first = birdgrab.recordings()
    species_count = len(birdgrab.manifest("species.json")["species"])
    wiki_requests = sandbox.counts()["wiki-api"]
    assert wiki_requests <= species_count  # batched: at most one request per species (here: far fewer)
    sandbox.reset_counts()
    assert birdgrab("catalog").exit_code == 0
    assert sandbox.counts()["wiki-api"] == 0
    second = birdgrab.recordings()
    assert set(second) == set(first)
    for key, recording in first.items():
        assert second[key]["first_seen"] == recording["first_seen"]


def test_transient_faults_are_retried(birdgrab, sandbox):
    # Each kind on its own target or page, so no rule hides another (a request suffers one failure:
    # where two rules cover the same attempt, the first listed wins); 25 records a page, so there is
    # a page 2.
    sandbox.set_page_size("xeno-canto", 25)
    sandbox.set_faults(
        [
            FaultRule("429", target="xc-api", times=1, retry_after=0.5),
            FaultRule("bad_json", target="xc-api", times=2, match="page=2"),  # its 2nd attempt, after the 429
            FaultRule("503", target="europeana-api", times=1, retry_after=0.3),
            FaultRule("truncate", target="europeana-api", times=2, match="search"),
            FaultRule("maxlag", target="wiki", times=1, retry_after=0.3),
            FaultRule("reset", target="wikidata", times=1),
        ]
    )
    result = birdgrab("catalog", "--verbose")
    assert result.exit_code == 0, result.output
    fired = {kind: set(targets) for kind, targets in sandbox.fault_counts().items()}
    assert fired == {
        "429": {"xc-api"},
        "bad_json": {"xc-api"},
        "503": {"europeana-api"},
        "truncate": {"europeana-api"},
        "maxlag": {"wiki"},
        "reset": {"wikidata"},
    }
    # Retry-After was honoured: every refused URL was asked again no earlier than it said (instants
    # read on the server, so this is an order of events, not a bound on how long the test took)
    waits = sandbox.retry_waits()
    assert {w.kind for w in waits} == {"429", "503", "maxlag"}
    assert all(w.waited >= w.retry_after for w in waits), [w for w in waits if w.waited < w.retry_after]
    assert set(birdgrab.recordings()) >= expected_xc_keys(sandbox)
    species = birdgrab.manifest("species.json")["species"]
    # maxlag arrived with HTTP 200: retried, never taken for "missing"
    assert species["Turdus philomelos"]["wiki"]["de"]["status"] == "article"


def test_wrong_key_is_a_clear_exit_2(birdgrab):
    result = birdgrab("catalog", "--source", "xeno-canto", env={"BIRDGRAB_XC_KEY": "wrong-key-123"})
    assert result.exit_code == 2
    assert "xeno-canto rejected the API key" in result.output and "BIRDGRAB_XC_KEY" in result.output
    assert "wrong-key-123" not in result.output
    result = birdgrab("catalog", "--source", "europeana", env={"BIRDGRAB_EUROPEANA_KEY": "wrong-key-456"})
    assert result.exit_code == 2 and "Europeana rejected the API key" in result.output


def test_missing_key_explains_how_to_get_one(birdgrab):
    result = birdgrab("catalog", "--source", "xeno-canto", env={"BIRDGRAB_XC_KEY": ""})
    assert result.exit_code == 2 and "xeno-canto.org/account" in result.output


def test_no_source_reachable_is_exit_4(birdgrab):
    dead = "http://127.0.0.1:9/nothing"
    result = birdgrab(
        "catalog",
        env={"BIRDGRAB_XC_API": dead, "BIRDGRAB_EUROPEANA_API": dead, "BIRDGRAB_RETRY_ATTEMPTS": "2"},
    )
    assert result.exit_code == 4 and "no source reachable" in result.output
    assert not list(birdgrab.manifests.glob("recordings.*"))  # a failed first run leaves no catalogue


def test_one_source_down_keeps_the_other_and_exits_1(birdgrab, sandbox):
    result = birdgrab(
        "catalog", env={"BIRDGRAB_EUROPEANA_API": "http://127.0.0.1:9/x", "BIRDGRAB_RETRY_ATTEMPTS": "2"}
    )
    assert result.exit_code == 1
    assert set(birdgrab.recordings()) == expected_xc_keys(sandbox)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"schema_version": 99, "kind": "recordings"}',
        b'{"schema_version": 1, "kind": "recordings", "generated_at": "x"}',
    ],
)
def test_bad_manifest_is_refused_with_exit_2_and_left_untouched(birdgrab, sandbox, content):
    birdgrab.manifests.mkdir(parents=True)
    path = birdgrab.manifests / "recordings.json"
    path.write_bytes(content)
    result = birdgrab("catalog")
    assert result.exit_code == 2 and str(path) in result.output
    assert path.read_bytes() == content
    assert sandbox.counts()["xc-api"] == 0  # refused before any request


def test_species_file_limits_the_catalog(birdgrab, sandbox, tmp_path):
    names = tmp_path / "species.txt"
    names.write_text("# two classes\nTurdus philomelos\nCyanistes caeruleus\n")
    assert birdgrab("catalog", "--species-file", str(names)).exit_code == 0
    species = birdgrab.manifest("species.json")["species"]
    assert set(species) == {"Turdus philomelos", "Cyanistes caeruleus"}
    assert "Parus caeruleus" in species["Cyanistes caeruleus"]["synonyms"]  # Europeana's name, merged
    bad = tmp_path / "bad.txt"
    bad.write_text("Turdus philomelos\nSylvia sp.\n")
    result = birdgrab("catalog", "--species-file", str(bad))
    assert result.exit_code == 2 and "bad.txt:2" in result.output


def test_keys_never_reach_output_logs_or_files(birdgrab, sandbox):
    sandbox.set_faults([FaultRule("503", target="*", rate=0.3, retry_after=0)])
    log_file = birdgrab.root / "log.jsonl"
    outputs = [birdgrab("catalog", "--verbose", "--log-format", "json", "--log-file", str(log_file)).output]
    outputs.append(
        birdgrab(
            "catalog",
            "--source",
            "xeno-canto",
            env={"BIRDGRAB_XC_KEY": "sekrit-wrong-key"},
        ).output
    )
    outputs.append(birdgrab("stats", "--json").output)
    secrets = [sandbox.config.xc_key, sandbox.config.europeana_key, "sekrit-wrong-key"]
    texts = outputs + [p.read_text(errors="replace") for p in birdgrab.root.rglob("*") if p.is_file()]
    assert log_file.exists() and len(texts) >= 5
    for secret in secrets:
        assert not any(secret in text for text in texts), secret
    # and the log really is one JSON object a line
    assert all(json.loads(line)["event"] for line in log_file.read_text().splitlines())


def test_real_process_bad_input_is_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIRDGRAB_")}
    result = subprocess.run(
        [sys.executable, "-m", "birdgrab", "filter", "--min-files", "-1", "--manifests", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "--min-files" in result.stderr


def test_a_catalog_that_lists_nothing_new_leaves_species_json_unread_until_something_is_due(
    sandbox, tmp_path, monkeypatch
):
    """A nightly refresh that finds nothing new costs the listing, not the species: species.json
    (10 MB for all of xeno-canto) stays unread while nothing about its species is due, and is read
    (and Wikipedia and Wikidata asked) once the articles come of age."""
    settings = load_settings({**sandbox.env(), **FAST_RETRIES})
    options = CatalogOptions(wiki_max_age_days=90)  # as refresh asks, after a first catalog by hand
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    monkeypatch.setattr(manifests, "utc_now", lambda: now[0])
    first = asyncio.run(run_catalog(settings, tmp_path, CatalogOptions()))
    species_file = tmp_path / "species.json"
    real, status = species_file.read_bytes(), species_file.stat()

    def put(content: bytes) -> None:  # the same size and time: only reading it tells the difference
        species_file.write_bytes(content)
        os.utime(species_file, ns=(status.st_atime_ns, status.st_mtime_ns))

    put(b"x" * len(real))
    sandbox.reset_counts()
    now[0] += timedelta(days=30)
    quiet = asyncio.run(run_catalog(settings, tmp_path, options))
    counts = sandbox.counts()
    assert quiet.species == first.species == len(json.loads(real)["species"]) and quiet.added == 0
    assert counts["xc-api"] > 0 and counts["europeana-search"] > 0  # the listing, as always
    assert counts["wiki-api"] == counts["wikidata-api"] == 0
    assert species_file.read_bytes() == b"x" * len(real)  # neither read nor rewritten

    put(real)
    sandbox.reset_counts()
    now[0] += timedelta(days=61)  # 91 days after every article and taxonomy id was looked up
    due = asyncio.run(run_catalog(settings, tmp_path, options))
    counts = sandbox.counts()
    assert due.species == first.species and due.wiki_lookups == first.wiki_lookups
    assert counts["wiki-api"] > 0 and counts["wikidata-api"] > 0
