"""Parsers of the APIs against the real response shapes (tests/fixtures/api, described in
docs/archives.md), plus property tests: any input gives a model or a clear error, never a crash."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from birdgrab.licences import is_no_derivatives, is_non_commercial, licence_code, licence_name
from birdgrab.names import NameError_, class_folder, parse_scientific_name, parse_title
from birdgrab.sources import clean_text, europeana, wikipedia, xenocanto

FIXTURES = Path(__file__).parent / "fixtures" / "api"
NOW = datetime(2026, 11, 21, tzinfo=UTC)


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def test_xeno_canto_page_parses_every_quirk():
    page = fixture("xeno-canto-v3-page.json")
    recs = [xenocanto.parse_recording(r, seen_at=NOW) for r in page["recordings"]]
    lazuli, wren, eagle = recs
    assert lazuli.key == "xc:254462" and lazuli.scientific_name == "Passerina amoena"
    assert lazuli.length_s == 253 and lazuli.latitude == pytest.approx(43.6571)
    assert lazuli.licence == "CC BY-SA 4.0" and lazuli.quality == "A"
    assert lazuli.background_species == ["Pipilo maculatus"]
    assert lazuli.declared_sample_rate == 48000 and lazuli.uploaded.isoformat() == "2015-06-29"
    # h:mm:ss length, a date with a 00 day, an odd time
    assert wren.length_s == 3728 and wren.recorded_date == "2021-12" and wren.recorded_time == "9.30"
    assert wren.file_name.endswith(".wav") and wren.sex == "male"
    # restricted species: no file, recorded as not downloadable with the reason; "?" and null fields
    assert not eagle.downloadable and "restricted" in eagle.not_downloadable_reason
    assert eagle.audio_url is None and eagle.altitude_m is None and eagle.latitude is None
    assert eagle.longitude is None and eagle.quality is None and eagle.recorded_date is None
    assert eagle.licence == "CC BY-NC-ND 4.0"


def test_xeno_canto_protocol_relative_urls_are_normalised():
    raw = dict(fixture("xeno-canto-v3-page.json")["recordings"][0])
    raw.update(
        url="//xeno-canto.org/254462",
        file="//xeno-canto.org/254462/download",
        lic="//creativecommons.org/licenses/by-nc-sa/4.0/",
    )
    rec = xenocanto.parse_recording(raw, seen_at=NOW, scheme="https")
    assert rec.audio_url == "https://xeno-canto.org/254462/download"
    assert rec.page_url == "https://xeno-canto.org/254462" and rec.licence == "CC BY-NC-SA 4.0"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0:12", 12), ("4:13", 253), ("1:02:08", 3728), ("", None), ("?", None), ("abc", None)],
)
def test_length_strings(text, seconds):
    assert xenocanto.parse_length(text) == seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-06-23", "2015-06-23"),
        ("2021-12-00", "2021-12"),
        ("2015-00-00", "2015"),
        ("0000-00-00", None),
        ("2021-02-30", "2021-02"),
        ("?", None),
        ("", None),
    ],
)
def test_partial_dates(text, expected):
    assert xenocanto.parse_partial_date(text) == expected


def test_types_are_split_and_normalised():
    assert xenocanto.parse_types("call, song, Call") == ["call", "song"]
    assert xenocanto.parse_types("") == []


def test_both_xeno_canto_error_shapes_are_read():
    flat = fixture("xeno-canto-v3-error-401.json")
    nested = fixture("xeno-canto-v3-error-400.json")
    assert "BIRDGRAB_XC_KEY" in xenocanto.describe_error(401, flat)
    assert "No query specified" in xenocanto.describe_error(400, nested)


def test_europeana_items_parse_titles_media_and_description():
    page = fixture("europeana-search-page.json")
    thrush, condor, tit = (europeana.parse_item(i, seen_at=NOW) for i in page["items"])
    assert thrush.key == "europeana:/11622/_TIERSTIMMENARCHIV_MFN_GERMANY_TSA_Turdus_philomelos_V_1817_22_1"
    assert thrush.scientific_name == "Turdus philomelos" and thrush.recordist == "Wallschläger, D."
    assert thrush.types == ["song"] and thrush.sex == "male" and thrush.stage == "adult"
    assert thrush.audio_url.endswith("Turdus_philomelos_V1817_22_short.mp3")
    assert thrush.licence == "CC BY-SA 3.0" and thrush.recorded_date == "1983"
    assert condor.page_url and "wskey" not in condor.model_dump_json()
    assert tit.scientific_name == "Parus major" and tit.subspecies == "major" and tit.stage == "juvenile"
    # no edmIsShownBy: not downloadable until the Record API fallback says otherwise
    assert not tit.downloadable and tit.licence == "CC0 1.0"


def test_europeana_guid_never_keeps_the_key():
    item = dict(fixture("europeana-search-page.json")["items"][0])
    del item["edmIsShownAt"]
    rec = europeana.parse_item(item, seen_at=NOW)
    assert (
        rec.page_url.startswith("https://www.europeana.eu/item/") and "api2demo" not in rec.model_dump_json()
    )


def test_europeana_record_api_media_agents_and_web_resources():
    body = {"success": True, "object": {"aggregations": [{"edmIsShownBy": "http://x.test/a.mp3"}]}}
    assert europeana.web_resources_from_record(body) == ["http://x.test/a.mp3"]
    assert europeana.web_resources_from_record({"object": {}}) == []
    record = {
        "object": {
            "agents": [
                {"about": "http://data.europeana.eu/agent/85541", "prefLabel": {"de": ["Tembrock, G."]}},
                {"about": "#Pieter_Maes_Stecher_in", "prefLabel": {"en": ["Pieter Maes"], "de": ["P. Maes"]}},
                {"about": "https://d-nb.info/gnd/11913506X", "prefLabel": {"def": ["https://d-nb.info/x"]}},
            ],
            "aggregations": [
                {
                    "edmIsShownBy": "http://x.test/dead.mp3",
                    "webResources": [
                        {"about": "http://x.test/dead.mp3"},
                        {"about": "https://api.europeana.eu/thumbnail/v2/url.json?uri=x"},
                        {"about": "http://x.test/alive.mp3"},
                    ],
                    "hasView": ["http://x.test/view.wav"],
                }
            ],
        }
    }
    assert europeana.agents_from_record(record) == {
        "http://data.europeana.eu/agent/85541": "Tembrock, G.",
        "#Pieter_Maes_Stecher_in": "Pieter Maes",
    }  # a label that is itself a URI names no one
    assert europeana.web_resources_from_record(record) == [
        "http://x.test/dead.mp3",
        "http://x.test/alive.mp3",
        "http://x.test/view.wav",
    ]


@pytest.mark.parametrize(
    "creator", ["http://data.europeana.eu/agent/85541", "https://d-nb.info/gnd/11913506X", "#Pieter_Maes"]
)
def test_europeana_creator_references_are_no_names(creator):
    item = {**fixture("europeana-search-page.json")["items"][0], "dcCreator": [creator]}
    rec = europeana.parse_item(item, seen_at=NOW)
    assert rec.recordist is None and rec.recordist_id == creator


def test_mediawiki_v1_answer_maps_by_title():
    query = fixture("mediawiki-query-v1.json")["query"]
    thrush = wikipedia.classify("Turdus_philomelos", query, lang="de", checked_at=NOW)
    assert thrush.status == "article" and thrush.title == "Singdrossel" and thrush.wikidata_id == "Q25338"
    assert thrush.url == "https://de.wikipedia.org/wiki/Singdrossel"
    tit = wikipedia.classify("Cyanistes caeruleus", query, lang="de", checked_at=NOW)
    assert tit.title == "Blaumeise"
    assert wikipedia.classify("Nonexistus avis", query, lang="de", checked_at=NOW).status == "missing"


def test_mediawiki_genus_section_and_disambiguation_are_not_species_articles():
    query = {
        "redirects": [
            {"from": "Regulus ignicapilla", "to": "Goldhähnchen"},
            {"from": "Corvus cornix", "to": "Aaskrähe", "tofragment": "Nebelkrähe"},
        ],
        "pages": [
            {
                "title": "Goldhähnchen",
                "pageid": 1,
                "extract": "Die Goldhähnchen (Regulus) sind eine Gattung der Sperlingsvögel.",
            },
            {"title": "Aaskrähe", "pageid": 2, "extract": "Die Aaskrähe (Corvus corone) ist eine Vogelart."},
            {
                "title": "Zeisig",
                "pageid": 3,
                "extract": "Zeisig steht für:",
                "pageprops": {"disambiguation": ""},
            },
        ],
    }
    assert wikipedia.classify("Regulus ignicapilla", query, lang="de", checked_at=NOW).status == "genus"
    assert wikipedia.classify("Corvus cornix", query, lang="de", checked_at=NOW).status == "section"
    assert wikipedia.classify("Zeisig", query, lang="de", checked_at=NOW).status == "disambiguation"


def test_maxlag_with_http_200_is_transient_not_missing():
    from birdgrab.http_client import TransientError

    with pytest.raises(TransientError) as caught:
        wikipedia.check_payload(fixture("mediawiki-error-maxlag.json"), {"Retry-After": "3"})
    assert caught.value.retry_after == 3


@pytest.mark.parametrize(
    ("title", "binomial", "ssp"),
    [
        ("Turdus philomelos C. L. Brehm, 1831", "Turdus philomelos", None),
        ("Parus major major Linnaeus, 1758", "Parus major", "major"),
        ("Erithacus rubecula (Linnaeus, 1758)", "Erithacus rubecula", None),
        ("Vultur gryphus Linnaeus, 1758", "Vultur gryphus", None),
        ("turdus_PHILOMELOS", "Turdus philomelos", None),
        ("Dendrocopos major von Linné", "Dendrocopos major", None),
    ],
)
def test_titles_canonicalise(title, binomial, ssp):
    name = parse_scientific_name(title)
    assert (name.binomial, name.subspecies) == (binomial, ssp)


@pytest.mark.parametrize(
    "title", ["Sylvia sp.", "Aves", "", "Anas x Aythya", "../../etc passwd", "Turdus phil0melos"]
)
def test_non_species_titles_are_refused_with_a_reason(title):
    with pytest.raises(NameError_) as caught:
        parse_scientific_name(title)
    assert caught.value.reason


@pytest.mark.parametrize(
    ("gen", "sp", "grp", "kind"),
    [
        ("Mystery", "mystery", "birds", "placeholder"),
        ("Sonus", "naturalis", None, "placeholder"),
        ("Sylvia", "sp.", "birds", "unidentified"),
        ("Phylloscopus", "spp.", "birds", "unidentified"),
        ("Turdus", "cf. merula", "birds", "unidentified"),
        ("Acrocephalus", "aff. scirpaceus", "birds", "unidentified"),
        ("Anas", "platyrhynchos x acuta", "birds", "hybrid"),
    ],
)
def test_xeno_canto_placeholders_and_open_names_are_no_species(gen, sp, grp, kind):
    raw = {**fixture("xeno-canto-v3-page.json")["recordings"][0], "gen": gen, "sp": sp, "grp": grp}
    with pytest.raises(NameError_) as caught:
        xenocanto.parse_recording(raw, seen_at=NOW)
    assert caught.value.kind == kind and caught.value.reason


@pytest.mark.parametrize(
    ("title", "binomial"),
    [
        ("Waldkauz | Strix aluco - Lautfolge, Ruf", "Strix aluco"),
        ("Kleiner Buntspecht | Dryobates minor - Trommeln", "Dryobates minor"),
        ("Turdus philomelos C. L. Brehm, 1831", "Turdus philomelos"),
    ],
)
def test_portal_titles_name_their_species(title, binomial):
    assert parse_title(title).binomial == binomial


def test_portal_title_keeps_the_telling_reason():
    with pytest.raises(NameError_) as caught:
        parse_title("Unbestimmt | Sylvia sp. - Gesang")
    assert caught.value.kind == "unidentified"


def test_class_folders_are_plain_ascii():
    assert class_folder("Turdus philomelos") == "Turdus_philomelos"
    assert class_folder("Threskiornis novae-hollandiae") == "Threskiornis_novaehollandiae"
    with pytest.raises(NameError_):
        class_folder("Turdus philomеlos")  # Cyrillic e


def test_licences():
    assert licence_name("http://creativecommons.org/publicdomain/zero/1.0/") == "CC0 1.0"
    assert licence_code("CC BY-NC-SA 4.0") == "BY-NC-SA"


# What each Creative Commons licence forbids, written out by hand (not derived from birdgrab's parsing):
# export leaves out every "ND" row and the report colours every "NC" one, so each code is checked.
LICENCE_TERMS = {
    "cc0": (False, False),
    "mark": (False, False),
    "by": (False, False),
    "by-sa": (False, False),
    "by-nc": (False, True),
    "by-nc-sa": (False, True),
    "by-nd": (True, False),
    "by-nc-nd": (True, True),
}


@pytest.mark.parametrize("code", sorted(LICENCE_TERMS))
@pytest.mark.parametrize("version", ["3.0", "4.0"])
def test_no_derivatives_and_non_commercial_for_every_licence(code, version):
    kind = {"cc0": "publicdomain/zero", "mark": "publicdomain/mark"}.get(code, f"licenses/{code}")
    name = licence_name(f"https://creativecommons.org/{kind}/{version}/")
    no_derivatives, non_commercial = LICENCE_TERMS[code]
    assert (is_no_derivatives(name), is_non_commercial(name)) == (no_derivatives, non_commercial), name


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
XC_FIELDS = list(fixture("xeno-canto-v3-page.json")["recordings"][0])
EU_FIELDS = [
    "id",
    "title",
    "dcDescription",
    "dcCreator",
    "edmIsShownBy",
    "edmIsShownAt",
    "rights",
    "year",
    "guid",
]


# Ids the archives really use, planted among the random values: a record with one of these is
# never refused for its id (a ValueError is only "no valid id", never a model that failed to build).
XC_ID, EU_ID = r"[1-9][0-9]{0,8}", r"/[0-9]{1,8}/[A-Za-z0-9_]{1,30}"
XC_IDS, EU_IDS = st.from_regex(XC_ID, fullmatch=True), st.from_regex(EU_ID, fullmatch=True)


def planted(value: object, pattern: str) -> str | None:
    """`value` if it is an id of the archive's own form (planted, or drawn at random that way)."""
    return value if isinstance(value, str) and re.fullmatch(pattern, value) else None


XC_PLANTED = {"id": XC_IDS, "gen": st.just("Turdus"), "sp": st.just("merula")}  # always there, often good
XC_VALUES = json_values | st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {k: XC_VALUES | good for k, good in XC_PLANTED.items()},
        optional={k: XC_VALUES for k in XC_FIELDS if k not in XC_PLANTED},
    )
)
def test_any_xeno_canto_record_gives_a_model_or_a_clear_error(raw):
    planted_id = planted(raw.get("id"), XC_ID)
    try:
        rec = xenocanto.parse_recording(raw, seen_at=NOW)
    except NameError_ as exc:
        assert exc.reason
    except ValueError as exc:
        assert planted_id is None, f"refused a record with the id {planted_id!r}: {exc}"
        assert str(exc).startswith("recording without a valid id"), exc
    else:
        assert planted_id is None or rec.key == f"xc:{planted_id}"


EU_PLANTED = {"id": EU_IDS, "title": st.just(["Turdus philomelos C. L. Brehm, 1831"])}
EU_VALUES = json_values | st.lists(st.text(max_size=40))


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {k: EU_VALUES | good for k, good in EU_PLANTED.items()},
        optional={k: EU_VALUES for k in EU_FIELDS if k not in EU_PLANTED},
    )
)
def test_any_europeana_item_gives_a_model_or_a_clear_error(item):
    planted_id = planted(item.get("id"), EU_ID)
    try:
        rec = europeana.parse_item(item, seen_at=NOW)
    except NameError_ as exc:
        assert exc.reason
    except ValueError as exc:
        assert planted_id is None, f"refused an item with the id {planted_id!r}: {exc}"
        assert str(exc).startswith("item without a valid id"), exc
    else:
        assert planted_id is None or rec.key == f"europeana:{planted_id}"


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["normalized", "redirects", "pages", "x"]), json_values),
    st.text(max_size=30),
)
def test_any_mediawiki_answer_classifies(query, name):
    article = wikipedia.classify(name, query, lang="de", checked_at=NOW)
    assert article.status in ("article", "missing", "genus", "section", "disambiguation")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_a_name_or_a_reason(text):
    try:
        name = parse_scientific_name(text)
    except NameError_ as exc:
        assert exc.reason
    else:
        assert class_folder(name.binomial).replace("_", "").isalpha()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_length_and_date_strings_never_crash(text):
    xenocanto.parse_length(text)
    xenocanto.parse_partial_date(text)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab ?\t\n\x00\x1f\x7f\xa0\u2028\u200bé"), max_size=12))
def test_archive_text_loses_control_characters_and_edge_spaces_only(text):
    """Every archive text field goes through clean_text: control characters become spaces, edges are
    trimmed, and empty or '?' means unknown; other characters (accents, no-break spaces) stay."""
    cleaned = clean_text(text)
    expected = "".join(" " if ord(c) < 32 or c == "\x7f" else c for c in text).strip()
    assert cleaned == (None if expected in ("", "?") else expected)


@pytest.mark.parametrize(
    ("genus", "epithet", "kind"),
    [
        ("Mystery", "mystery", "placeholder"),
        ("Sylvia", "sp.", "unidentified"),
        ("Turdus", "a", "not a binomial"),
    ],
)
def test_xeno_canto_names_that_are_no_species_say_why(genus, epithet, kind):
    raw = {"id": "1", "gen": genus, "sp": epithet, "file": "https://x.test/1"}
    with pytest.raises(NameError_) as caught:
        xenocanto.parse_recording(raw, seen_at=NOW)
    assert caught.value.kind == kind
