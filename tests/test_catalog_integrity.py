"""`birdgrab catalog` keeps its word over 127.0.0.1: listings that are complete or say they are
not, and placeholders that never become species."""

from __future__ import annotations

from tests.test_e2e_catalog import expected_xc_keys


def listed_by_default(sandbox) -> int:
    """Records the default query (grp:birds cnt:germany) lists: species and placeholders alike."""
    return sum(r.group == "birds" and r.country == "Germany" for r in sandbox.archive.xc.values())


def test_a_server_that_serves_small_pages_is_listed_whole(birdgrab, sandbox):
    sandbox.set_xc_page_size(4)  # whatever per_page asks
    result = birdgrab("catalog", "--source", "xeno-canto")
    assert result.exit_code == 0, result.output
    recordings = birdgrab.manifest("recordings.json")
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
    sandbox.set_xc_page_size(4, pages_counted_as_asked=True)
    result = birdgrab("catalog", "--source", "xeno-canto")
    assert result.exit_code == 1
    assert "incomplete" in result.output and "asked again next run" in result.output
    recordings = birdgrab.manifest("recordings.json")
    [listing] = recordings["incomplete_listings"]
    expected = listed_by_default(sandbox)
    assert listing["expected"] == expected and listing["arrived"] == 8 < expected
    assert not any(r["vanished"] for r in recordings["recordings"].values())

    sandbox.set_xc_page_size(None)
    assert birdgrab("catalog", "--source", "xeno-canto").exit_code == 0
    recordings = birdgrab.manifest("recordings.json")
    assert recordings["incomplete_listings"] == []
    assert [k for k, r in recordings["recordings"].items() if r["vanished"]] == [gone]


def test_placeholders_are_skipped_with_a_reason_and_counted(birdgrab, sandbox):
    # no grp tag: the soundscapes (grp null) are listed too
    result = birdgrab("catalog", "--source", "xeno-canto", "--xc-query", "cnt:germany")
    assert result.exit_code == 0, result.output
    placeholders = set(sandbox.archive.truths.placeholders)
    recordings = birdgrab.manifest("recordings.json")
    assert placeholders and not placeholders & set(recordings["recordings"])
    skipped = {s["key"]: s for s in recordings["skipped"]}
    assert all(skipped[key]["kind"] == "placeholder" for key in placeholders)
    assert "placeholder" in skipped[min(placeholders)]["reason"]
    assert f"placeholder {len(placeholders)}" in result.output
    species = birdgrab.manifest("species.json")["species"]
    assert "Mystery mystery" not in species and "Sonus naturalis" not in species
    # and filter --no-wiki has no such class to select
    assert birdgrab("filter", "--no-wiki", "--min-files", "1").exit_code == 0
    assert not {"Mystery mystery", "Sonus naturalis"} & set(birdgrab.manifest("selection.json")["species"])
