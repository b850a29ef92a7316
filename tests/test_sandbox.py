"""The sandbox archive itself, over real sockets: the three services' contracts (against the samples
in tests/fixtures/api), the planted traps, faults, counters, determinism and the control endpoints.

The demo sandbox renders into the default per-user audio cache, which `make demo`, the benchmarks and
the end-to-end tests share: rendering the demo's audio (about 15 s of CPU) happens once per machine.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import quote

import av
import httpx
import pytest
import soundfile as sf

from birdgrab.sandbox import FaultRule, RealRecording, Sandbox, SandboxConfig
from birdgrab.sandbox.europeana_api import decode_cursor, encode_cursor, media_url
from birdgrab.sandbox.holdings import XcRecording

FIXTURES = Path(__file__).parent / "fixtures" / "api"
XC = "/xeno-canto/api/3/recordings"
SEARCH = "/europeana/record/v2/search.json"
WIKI_DE = "/wikipedia/de/w/api.php"
XC_KEY, EU_KEY = "sandbox-xc-key", "sandbox-europeana-key"
CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac"}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig()) as running:
        yield running


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url, follow_redirects=True, timeout=60) as http:
        yield http
    sandbox.clear_faults()


def xc_page(client: httpx.Client, query: str, **params: object) -> httpx.Response:
    return client.get(XC, params={"query": query, "key": XC_KEY, **params})


def xc_all(client: httpx.Client, query: str) -> list[dict]:
    """Every record of a query, paging until the empty page."""
    records, page = [], 1
    while True:
        body = xc_page(client, query, page=page, per_page=500).json()
        if not body["recordings"]:
            return records
        records += body["recordings"]
        page += 1


def wiki(client: httpx.Client, titles: list[str], lang: str = "de", **params: str) -> dict:
    query = {
        "action": "query",
        "format": "json",
        "titles": "|".join(titles),
        "redirects": "1",
        "prop": "extracts|info|pageprops",
        "exintro": "1",
        "explaintext": "1",
        "inprop": "url",
        **params,
    }
    response = client.get(f"/wikipedia/{lang}/w/api.php", params=query)
    assert response.status_code == 200
    return response.json()


def v1_pages_by_title(body: dict) -> dict[str, dict]:
    return {page["title"]: page for page in body["query"]["pages"].values()}


def smallest(sandbox: Sandbox, audio_format: str) -> XcRecording:
    return min(
        (r for r in sandbox.archive.xc_sorted() if r.audio and r.audio.format == audio_format),
        key=lambda r: r.audio.duration_s * r.audio.sample_rate * r.audio.channels,
    )


# -- start-up ----------------------------------------------------------------------------------------
def test_starting_renders_no_audio(tmp_path: Path):
    with Sandbox(SandboxConfig(data_dir=tmp_path / "audio")) as running:
        assert httpx.get(running.base_url + "/").status_code == 200
        assert set(running.env()) == {
            "BIRDGRAB_XC_API", "BIRDGRAB_EUROPEANA_API", "BIRDGRAB_INATURALIST_API", "BIRDGRAB_WIKIPEDIA_API",
            "BIRDGRAB_WIKIDATA_API",
            "BIRDGRAB_XC_KEY", "BIRDGRAB_EUROPEANA_KEY", "BIRDGRAB_CONTACT",
        }  # fmt: skip
        assert "{lang}" in running.env()["BIRDGRAB_WIKIPEDIA_API"]
    assert not (tmp_path / "audio").exists()


# -- xeno-canto --------------------------------------------------------------------------------------
def test_xc_page_has_the_keys_and_types_of_the_real_one(client: httpx.Client):
    sample = fixture("xeno-canto-v3-page.json")
    allowed: dict[str, set[type]] = {}
    for record in sample["recordings"]:
        for name, value in record.items():
            allowed.setdefault(name, set()).add(type(value))
    allowed["annotation-set"].add(dict)  # documented: an array or an object
    allowed["lat"].add(type(None))  # documented: lat and lon are "" or null when unknown
    page = xc_page(client, "grp:birds cnt:germany").json()
    assert list(page) == list(sample)
    assert all(type(page[name]) is type(sample[name]) for name in sample)
    records = xc_all(client, "grp:birds") + xc_all(client, "grp:frogs")
    for record in records:
        assert list(record) == list(sample["recordings"][0])
        for name, value in record.items():
            assert type(value) in allowed[name], (name, value)
    # The quirks clients must survive are all there.
    seen = {name: {json.dumps(r[name]) for r in records} for name in sample["recordings"][0]}
    assert {'""', "null"} <= seen["lat"] and '"?"' in seen["alt"] and '"no score"' in seen["q"]
    assert {"[]", "{}"} <= seen["annotation-set"] and "null" in seen["sono"]
    assert any(re.fullmatch(r'"\d+:\d\d:\d\d"', v) for v in seen["length"])
    assert (
        any("-00" in v for v in seen["date"])
        and '"?"' in seen["time"]
        and any("." in v for v in seen["time"])
    )
    assert any(", " in v for v in seen["type"]) and any(v.startswith('"//') for v in seen["url"])
    assert any(v.startswith('"//') for v in seen["file"]) and any(v.startswith('"//') for v in seen["lic"])
    assert any(" " in r["file-name"] for r in records) and any(r["file"] == "" for r in records)
    assert {r["file-name"].rsplit(".", 1)[-1] for r in records if r["file-name"]} == {"mp3", "wav", "flac"}
    assert {r["smp"] for r in records} == {"16000", "22050", "32000", "44100", "48000"}


def test_xc_pages_by_id_and_ends_with_an_empty_page(sandbox: Sandbox, client: httpx.Client):
    expected = [r.id for r in sandbox.archive.xc_sorted() if r.group == "birds" and r.country == "Germany"]
    first = xc_page(client, "grp:birds cnt:germany", per_page=50).json()
    assert first["numRecordings"] == str(len(expected)) and first["page"] == 1
    assert first["numPages"] == math.ceil(len(expected) / 50) + 1
    ids = []
    for page in range(1, first["numPages"] + 1):
        records = xc_page(client, "grp:birds cnt:germany", per_page=50, page=page).json()["recordings"]
        assert bool(records) == (page < first["numPages"])
        ids += [int(r["id"]) for r in records]
    assert ids == expected


def test_bulk_records_are_made_on_request_and_page_like_stored_ones():
    """The scale mode serves a million records without storing one: the same record every time,
    in id order after the stored ones, and the tags narrow the block as they narrow stored records."""
    with (
        Sandbox(SandboxConfig(xc_bulk_recordings=1_000_000, hour_long=False)) as running,
        httpx.Client(base_url=running.base_url, timeout=60) as http,
    ):
        assert len(running.archive.xc) < 1000  # the demo's records; the million are not stored
        stored = [r.id for r in running.archive.xc_sorted() if r.group == "birds" and r.country == "Germany"]
        body = xc_page(http, "grp:birds cnt:germany", per_page=500).json()
        assert body["numRecordings"] == str(len(stored) + 1_000_000)
        assert body["numPages"] == math.ceil((len(stored) + 1_000_000) / 500) + 1
        last = xc_page(http, "grp:birds cnt:germany", per_page=500, page=body["numPages"] - 1).json()
        first_bulk = xc_page(http, "nr:>999999", per_page=500, page=1).json()
        assert [int(r["id"]) for r in first_bulk["recordings"]][:2] == [50_000_000, 50_000_001]
        assert int(last["recordings"][-1]["id"]) == 50_000_000 + 999_999
        again = xc_page(http, "nr:>999999", per_page=500, page=1).json()
        assert again["recordings"] == first_bulk["recordings"]  # made the same way every time
        name = f"{first_bulk['recordings'][0]['gen']} {first_bulk['recordings'][0]['sp']}".lower()
        one_species = xc_all(http, f'sp:"{name}" nr:>999999')
        assert len(one_species) == 100 and {f"{r['gen']} {r['sp']}".lower() for r in one_species} == {name}
        assert xc_page(http, "nr:>999999 since:2025-01-01").json()["numRecordings"] == "0"
        rated = xc_page(http, "nr:50000000-50000999 q:A", per_page=500).json()
        assert 0 < int(rated["numRecordings"]) < 1000 and {r["q"] for r in rated["recordings"]} == {"A"}


def test_xc_tag_filters(sandbox: Sandbox, client: httpx.Client):
    archive = sandbox.archive

    def count(query: str) -> int:
        return int(xc_page(client, query).json()["numRecordings"])

    condor = archive.truths.europeana_only_species[0]
    assert count(f'sp:"{condor.lower()}" grp:birds') == 3
    assert count(f'sp:"{condor.upper()}" grp:birds cnt:germany') == 0
    assert count("sp:gryphus") == 3
    assert len(archive.keys_of(condor)) == 3 + 2  # and two Tierstimmenarchiv items
    non_birds = archive.truths.non_birds
    assert not any(f"{r['gen']} {r['sp']}" in non_birds for r in xc_all(client, "grp:birds"))
    assert {f"{r['gen']} {r['sp']}" for r in xc_all(client, "grp:frogs")} == {"Rana temporaria"}
    assert (
        count('cnt:"FRANCE"')
        == count("cnt:france")
        == sum(r.country == "France" for r in archive.xc_sorted())
    )
    since = date(2020, 1, 1)
    assert count("since:2020-01-01") == sum(r.uploaded >= since for r in archive.xc_sorted())
    assert count("since:3") == 0  # the demo's uploads are all older
    assert {r["q"] for r in xc_all(client, 'q:">C"')} == {"A", "B"}
    assert {r["q"] for r in xc_all(client, 'q:"<C"')} == {"D", "E"}
    assert {f"xc:{r['id']}" for r in xc_all(client, 'len:"<3"')} == set(archive.truths.short)
    assert all(int(r["length"].split(":")[0]) < 2 for r in xc_all(client, "len:10-60"))
    assert all("song" in r["type"].split(", ") for r in xc_all(client, "type:song grp:birds"))
    assert {r["gen"] for r in xc_all(client, "gen:TURDUS")} == {"Turdus"}
    assert {(r["sp"], r["ssp"]) for r in xc_all(client, "ssp:major")} == {("major", "major")}
    some = archive.xc_sorted()[5]
    assert [r["id"] for r in xc_all(client, f"nr:{some.id}")] == [str(some.id)]
    assert all("/by-nc-sa/" in r["lic"] for r in xc_all(client, "lic:BY-NC-SA"))
    assert count("grp:birds area:america") == 3


def test_xc_errors_have_the_real_shapes(client: httpx.Client):
    missing_key = client.get(XC, params={"query": "grp:birds"})
    wrong_key = client.get(XC, params={"query": "grp:birds", "key": "nope"})
    assert missing_key.status_code == wrong_key.status_code == 401
    assert missing_key.json() == wrong_key.json() == fixture("xeno-canto-v3-error-401.json")
    assert xc_page(client, "").status_code == 400
    assert xc_page(client, "").json() == fixture("xeno-canto-v3-error-400.json")
    for bad in ("turdus philomelos", "grp:birds extra words", "nosuchtag:1", "q:Z"):
        answer = xc_page(client, bad)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_query"
    for per_page in (49, 501, "x"):
        answer = xc_page(client, "grp:birds", per_page=per_page)
        assert answer.status_code == 400 and set(answer.json()["error"]) == {"code", "message"}


def test_xc_download_redirects_to_the_upload_and_restricted_has_no_file(
    sandbox: Sandbox, client: httpx.Client
):
    record = smallest(sandbox, "flac")
    answer = client.get(f"/xeno-canto/{record.id}/download", follow_redirects=False)
    assert answer.status_code == 302
    assert f"/xeno-canto/sounds/uploaded/{record.recordist_code}/" in answer.headers["Location"]
    restricted = xc_all(client, f'sp:"{sandbox.archive.truths.restricted_species[0]}"')
    assert restricted and all(r["file"] == "" and r["file-name"] == "" for r in restricted)
    assert client.get(f"/xeno-canto/{restricted[0]['id']}/download").status_code == 404
    assert client.get(f"/xeno-canto/{record.id}").headers["Content-Type"].startswith("text/html")


def test_real_recordings_are_listed_with_their_own_metadata_and_served_as_they_are(tmp_path: Path):
    audio = Path(__file__).parent / "fixtures" / "audio"
    wav, mp3 = audio / "wav_pcm16.wav", audio / "mp3_mpeg1_cbr.mp3"
    by_nc_nd = "https://creativecommons.org/licenses/by-nc-nd/2.5/"
    real = (
        RealRecording(wav, "Hydrobates pelagicus", "A. Recordist", by_nc_nd, "XC663885, from pykanto"),
        RealRecording(mp3, "Hydrobates pelagicus", "B. Recordist", "", "no licence stated"),
    )
    config = SandboxConfig(profile="scale", data_dir=tmp_path / "audio", real_recordings=real)
    with Sandbox(config) as running, httpx.Client(base_url=running.base_url) as client:
        listed = sorted(xc_all(client, 'sp:"Hydrobates pelagicus"'), key=lambda r: r["rec"])
        assert [(r["rec"], r["lic"].split(":", 1)[-1], r["rmk"]) for r in listed] == [
            ("A. Recordist", "//creativecommons.org/licenses/by-nc-nd/2.5/", "XC663885, from pykanto"),
            ("B. Recordist", "", "no licence stated"),
        ]
        for record, path in zip(listed, (wav, mp3), strict=True):
            info = sf.info(path)
            assert record["file-name"].endswith(path.suffix) and record["smp"] == str(info.samplerate)
            minutes, seconds = record["length"].split(":")
            assert abs(int(minutes) * 60 + int(seconds) - info.duration) <= 1
            url = "http:" + record["file"] if record["file"].startswith("//") else record["file"]
            assert client.get(url, follow_redirects=True).content == path.read_bytes()
    with pytest.raises(ValueError, match="not a file"):
        RealRecording(tmp_path / "missing.wav", "Hydrobates pelagicus", "A. Recordist", by_nc_nd)
    with pytest.raises(ValueError, match="scientific name"):
        RealRecording(wav, "storm-petrel", "A. Recordist", by_nc_nd)


# -- Europeana ---------------------------------------------------------------------------------------
def search(client: httpx.Client, **params: object) -> httpx.Response:
    return client.get(SEARCH, params={"wskey": EU_KEY, "query": "tierstimmenarchiv", **params})


def test_europeana_cursor_paging(sandbox: Sandbox, client: httpx.Client):
    cursor, ids, pages = "*", [], []
    while cursor:
        body = search(client, rows=7, cursor=cursor, qf="TYPE:SOUND").json()
        assert body["success"] is True and body["itemsCount"] == len(body["items"])
        pages.append(body)
        ids += [item["id"] for item in body["items"]]
        cursor = body.get("nextCursor")
        assert cursor is None or set(cursor) & set("+/=")
    assert "nextCursor" not in pages[-1] and all("nextCursor" in p for p in pages[:-1])
    assert sorted(ids) == sorted(sandbox.archive.europeana) and len(set(ids)) == len(ids)
    assert pages[0]["totalResults"] == len(ids)


def test_europeana_cursor_sent_without_url_encoding_is_rejected(client: httpx.Client):
    cursor = search(client, rows=5, cursor="*").json()["nextCursor"]
    assert "+" in cursor
    raw = client.get(f"{SEARCH}?wskey={EU_KEY}&query=tierstimmenarchiv&rows=5&cursor={cursor}")
    assert (
        raw.status_code == 400 and raw.json()["error"] == "Invalid cursor" and raw.json()["success"] is False
    )
    assert search(client, rows=5, cursor=cursor).status_code == 200


def test_europeana_errors_and_refinements(sandbox: Sandbox, client: httpx.Client):
    unauthorised = client.get(SEARCH, params={"wskey": "bad", "query": "x"})
    assert unauthorised.status_code == 401 and unauthorised.json() == fixture("europeana-error-401.json")
    no_query = client.get(SEARCH, params={"wskey": EU_KEY})
    assert no_query.status_code == 400 and no_query.json()["error"] == "Required parameter 'query' missing"
    assert search(client, cursor="*", start=2).status_code == 400
    assert search(client, start=995, rows=12).status_code == 400
    assert search(client, rows=500).json()["itemsCount"] == len(sandbox.archive.europeana)  # over 100: capped
    assert search(client).json()["itemsCount"] == 12  # default rows
    open_items = search(client, rows=100, reusability="open").json()["items"]
    assert all("-nc" not in i["rights"][0] and "-nd" not in i["rights"][0] for i in open_items)
    assert 0 < len(open_items) < len(sandbox.archive.europeana)
    both = client.get(SEARCH, params=[("wskey", EU_KEY), ("query", "*"), ("rows", 100),
                                      ("reusability", "open"), ("reusability", "restricted")])  # fmt: skip
    assert both.json()["totalResults"] == len(sandbox.archive.europeana)
    assert search(client, qf="TYPE:IMAGE").json()["totalResults"] == 0
    by_title = search(client, query='"Turdus philomelos"', rows=100).json()["items"]
    assert by_title and all(i["title"][0].startswith("Turdus philomelos") for i in by_title)


def test_europeana_items_have_the_real_fields_and_no_nulls(client: httpx.Client):
    sample_keys = {key for item in fixture("europeana-search-page.json")["items"] for key in item}
    body = search(client, rows=100).json()
    assert list(body) == ["apikey", "success", "requestNumber", "itemsCount", "totalResults", "items"]
    titles = [item["title"][0] for item in body["items"]]
    for item in body["items"]:
        assert set(item) <= sample_keys and "null" not in json.dumps(item)
        assert f"wskey={EU_KEY}" in item["link"] and item["type"] == "SOUND"
        assert all(not url.endswith((".mp3", ".wav")) for url in item["edmPreview"])
    assert "Sylvia sp." in titles and "Vogelstimmen" in titles
    assert (
        any(t.startswith("Parus major major ") for t in titles)
        and "Erithacus rubecula (Linnaeus, 1758)" in titles
    )
    assert any(t.startswith(("Rana temporaria", "Gryllus campestris")) for t in titles)
    for optional in ("dcCreator", "year", "edmIsShownBy"):
        assert any(optional not in item for item in body["items"])


def test_record_api_gives_the_media_search_left_out(sandbox: Sandbox, client: httpx.Client):
    items = search(client, rows=100).json()["items"]
    lacking = [item for item in items if "edmIsShownBy" not in item]
    assert lacking
    for item in lacking:
        record = client.get(f"/europeana/record/v2{item['id']}.json", params={"wskey": EU_KEY}).json()
        assert record["success"] is True and record["object"]["about"] == item["id"]
        media = record["object"]["aggregations"][0]["edmIsShownBy"]
        assert media.startswith(f"{sandbox.base_url}/tierstimmenarchiv/recordings/")
        assert client.head(media).status_code == 200
    assert (
        client.get(f"/europeana/record/v2{lacking[0]['id']}.json", params={"wskey": "x"}).status_code == 401
    )
    assert client.get("/europeana/record/v2/1/nothing.json", params={"wskey": EU_KEY}).status_code == 404


# -- MediaWiki ---------------------------------------------------------------------------------------
TRAP_TITLES = ["Turdus_philomelos", "Cyanistes caeruleus", "Parus caeruleus", "Nonexistus avis",
               "Regulus regulus", "Acanthis cabaret", "Grus grus"]  # fmt: skip


def test_wiki_formatversion_1(client: httpx.Client):
    sample = fixture("mediawiki-query-v1.json")
    body = wiki(client, TRAP_TITLES, maxlag="5")
    assert set(body) == set(sample) and set(sample["query"]) <= set(body["query"])
    query = body["query"]
    assert query["normalized"] == sample["query"]["normalized"]
    assert all(hop in query["redirects"] for hop in sample["query"]["redirects"])
    assert {"from": "Parus caeruleus", "to": "Blaumeise"} in query["redirects"]
    assert {"from": "Acanthis cabaret", "to": "Birkenzeisig", "tofragment": "Alpenbirkenzeisig"} in query[
        "redirects"
    ]
    assert query["pages"]["-1"] == {**sample["query"]["pages"]["-1"], **query["pages"]["-1"]}
    assert query["pages"]["-1"]["missing"] == ""
    pages = v1_pages_by_title(body)
    assert all(key == str(page.get("pageid", key)) for key, page in query["pages"].items())
    singdrossel = pages["Singdrossel"]
    assert singdrossel["extract"] == sample["query"]["pages"]["208571"]["extract"]
    assert singdrossel["fullurl"].endswith("/wikipedia/de/wiki/Singdrossel") and singdrossel["canonicalurl"]
    assert singdrossel["pageprops"]["wikibase_item"].startswith("Q")
    assert pages["Blaumeise"]["extract"] == sample["query"]["pages"]["41530"]["extract"]
    assert pages["Kranich"]["pageprops"]["disambiguation"] == ""
    assert (
        "Regulus regulus" not in pages["Goldhähnchen"]["extract"]
        and "Gattung" in pages["Goldhähnchen"]["extract"]
    )
    assert "Alpenbirkenzeisig" not in pages and "disambiguation" not in pages["Birkenzeisig"].get(
        "pageprops", {}
    )
    assert len(query["pages"]) == 6  # Blaumeise once for both of its names


def test_wiki_formatversion_2_and_plain_lookups(sandbox: Sandbox, client: httpx.Client):
    body = wiki(client, TRAP_TITLES, formatversion="2")
    assert body["batchcomplete"] is True and isinstance(body["query"]["pages"], list)
    pages = {page["title"]: page for page in body["query"]["pages"]}
    assert pages["Nonexistus avis"]["missing"] is True and "pageid" not in pages["Nonexistus avis"]
    assert pages["Singdrossel"]["extract"].startswith("Die Singdrossel (Turdus philomelos) ist eine Vogelart")
    # What the wikipedia-api package sends: one title, no redirects, the whole article.
    plain = client.get(WIKI_DE, params={"action": "query", "format": "json", "titles": "Singdrossel",
                                        "prop": "extracts", "explaintext": "1"}).json()  # fmt: skip
    (page,) = plain["query"]["pages"].values()
    assert "== Verbreitung ==" in page["extract"]
    redirect = client.get(
        WIKI_DE, params={"action": "query", "titles": "Turdus philomelos", "prop": "info"}
    ).json()
    (page,) = redirect["query"]["pages"].values()
    assert page["title"] == "Turdus philomelos" and page["redirect"] == ""
    html = client.get(
        WIKI_DE, params={"action": "query", "titles": "Amsel", "prop": "extracts", "exintro": "1"}
    )
    assert next(iter(html.json()["query"]["pages"].values()))["extract"].startswith("<p>Die Amsel")
    english = v1_pages_by_title(wiki(client, ["Turdus philomelos", "Regulus regulus"], lang="en"))
    assert english["Song thrush"]["extract"].startswith("The song thrush (Turdus philomelos)")
    assert "missing" in english["Regulus regulus"]
    french = wiki(client, ["Turdus philomelos"], lang="fr")
    assert all("missing" in page for page in french["query"]["pages"].values())


def test_wiki_limits(client: httpx.Client):
    too_many = wiki(client, [f"T{n}" for n in range(51)])
    assert too_many["error"]["code"] == "toomanyvalues"
    assert wiki(client, ["a"], action="parse")["error"]["code"] == "badvalue"
    invalid = wiki(client, ["Turdus\x00philomelos", "../../etc passwd"])
    assert all("invalid" in page for page in invalid["query"]["pages"].values())


def test_wiki_extracts_continue_after_20(tmp_path: Path):
    config = SandboxConfig(data_dir=tmp_path, profile="scale", extra_species=25, recordings_per_species=1)
    with Sandbox(config) as scale, httpx.Client(base_url=scale.base_url) as http:
        names = sorted(scale.archive.species)
        first = wiki(http, names, formatversion="2")
        assert first["continue"] == {"excontinue": "20", "continue": "||info|pageprops"}
        assert "batchcomplete" not in first
        pages = first["query"]["pages"]
        with_extract = sorted(p["title"] for p in pages if "extract" in p)
        assert len(pages) == 25 and with_extract == sorted(p["title"] for p in pages)[:20]
        second = wiki(http, names, formatversion="2", **first["continue"])
        assert second["batchcomplete"] is True
        rest = [p for p in second["query"]["pages"] if "extract" in p]
        assert len(rest) == 5 and not {p["title"] for p in rest} & set(with_extract)
        assert all("fullurl" not in p for p in second["query"]["pages"])  # info was complete
        assert scale.counts()["wiki-titles"] == 50 and scale.counts()["wiki-api"] == 2


# -- faults ------------------------------------------------------------------------------------------
def test_refusing_faults_pass_after_times(sandbox: Sandbox, client: httpx.Client):
    sandbox.set_faults([
        FaultRule("429", target="xc-api", times=1, retry_after=0.25),
        FaultRule("503", target="europeana-api", times=2, retry_after=2),
        FaultRule("500", target="wiki", times=1),
    ])  # fmt: skip
    throttled = xc_page(client, "grp:birds", key="other-key")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "0.25"
    assert xc_page(client, "grp:birds").status_code == 200  # the same URL whatever the key
    assert [search(client).status_code for _ in range(3)] == [503, 503, 200]
    assert client.get(WIKI_DE, params={"action": "query", "titles": "Amsel"}).status_code == 500
    assert client.get(WIKI_DE, params={"action": "query", "titles": "Amsel"}).status_code == 200


def test_maxlag_is_an_http_200_error(sandbox: Sandbox, client: httpx.Client):
    sandbox.set_faults([FaultRule("maxlag", target="*", times=1, retry_after=3)])
    lagged = client.get(WIKI_DE, params={"action": "query", "titles": "Amsel", "maxlag": "5"})
    assert lagged.status_code == 200 and lagged.headers["Retry-After"] == "3"
    assert lagged.json() == fixture("mediawiki-error-maxlag.json")
    assert xc_page(client, "grp:birds").status_code == 200  # maxlag is MediaWiki's alone


def test_broken_connections(sandbox: Sandbox, client: httpx.Client):
    sandbox.set_faults([FaultRule("reset", target="xc-api", times=1)])
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        xc_page(client, "grp:birds")
    assert xc_page(client, "grp:birds").status_code == 200
    sandbox.set_faults([FaultRule("truncate", target="europeana-api", times=1)])
    with pytest.raises(httpx.RemoteProtocolError):
        search(client)
    sandbox.set_faults([FaultRule("timeout", target="wiki", times=1, delay=1.0)])
    with pytest.raises(httpx.ReadTimeout):
        client.get(WIKI_DE, params={"action": "query", "titles": "Amsel"}, timeout=0.3)
    sandbox.set_faults([FaultRule("bad_json", target="xc-api", times=1)])
    cut = xc_page(client, "grp:birds")
    assert cut.status_code == 200 and int(cut.headers["Content-Length"]) == len(cut.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    assert xc_page(client, "grp:birds").json()["recordings"]


def test_audio_faults(sandbox: Sandbox, client: httpx.Client, tmp_path: Path):
    record = smallest(sandbox, "wav")
    url = f"/xeno-canto/{record.id}/download"
    good = client.get(url).content
    sandbox.set_faults([FaultRule("html", target="audio")])
    for _ in range(2):  # a permanent fault: the same URL stays bad
        page = client.get(url)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    sandbox.set_faults([FaultRule("corrupt", target="xc-audio")])
    junk = client.get(url)
    assert junk.headers["Content-Type"] == "audio/wav" and len(junk.content) == len(good) != 0
    (tmp_path / "junk.wav").write_bytes(junk.content)
    with pytest.raises(sf.LibsndfileError):
        sf.info(tmp_path / "junk.wav")
    sandbox.set_faults([FaultRule("reset", target="audio", times=1)])
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.get(url)
    sandbox.set_faults([FaultRule("no_range", target="audio")])
    ignored = client.get(url, headers={"Range": "bytes=0-99"})
    assert ignored.status_code == 200 and ignored.content == good
    sandbox.clear_faults()
    assert client.get(url).content == good


def test_repeat_page_serves_records_of_the_previous_page_again(sandbox: Sandbox, client: httpx.Client):
    page1 = [r["id"] for r in xc_page(client, "grp:birds", per_page=50).json()["recordings"]]
    sandbox.set_faults(
        [FaultRule("repeat_page", target="xc-api"), FaultRule("repeat_page", target="europeana-api")]
    )
    page2 = [r["id"] for r in xc_page(client, "grp:birds", per_page=50, page=2).json()["recordings"]]
    assert page2[:3] == page1[-3:] and len(page2) == 53
    first = search(client, rows=10, cursor="*").json()
    second = search(client, rows=10, cursor=first["nextCursor"]).json()
    assert [i["id"] for i in second["items"][:3]] == [i["id"] for i in first["items"][-3:]]


def test_rate_faults_are_deterministic_and_retries_get_through(sandbox: Sandbox, client: httpx.Client):
    def outcomes() -> list[int]:
        sandbox.set_faults([FaultRule("500", target="xc-api", rate=0.5, match="/xeno-canto/")])
        return [xc_page(client, f"nr:{400000 + n}").status_code for n in range(20)]

    first = outcomes()
    assert first == outcomes() and {200, 500} == set(first)
    for n in range(20):  # each URL fails on a stable subset of its attempts: retrying gets through
        assert any(xc_page(client, f"nr:{400000 + n}").status_code == 200 for _ in range(12))
    sandbox.set_faults([FaultRule("500", target="wiki", match="/wikipedia/en/")])
    assert client.get(WIKI_DE, params={"action": "query"}).status_code == 200
    assert client.get("/wikipedia/en/w/api.php", params={"action": "query"}).status_code == 500


def test_latency_is_added_per_target(sandbox: Sandbox, client: httpx.Client):
    # A latency far beyond the client's timeout: the wiki answer cannot arrive in time however idle
    # the machine, and the other target, which has none, answers within the usual timeout.
    sandbox.set_latency("wiki", 600)
    try:
        with pytest.raises(httpx.ReadTimeout):
            client.get(WIKI_DE, params={"action": "query"}, timeout=0.5)
        assert xc_page(client, "nr:1").status_code == 200
    finally:
        sandbox.set_latency("wiki", 0)


def test_first_fails_the_first_requests_of_every_target_whatever_the_rate(
    sandbox: Sandbox, client: httpx.Client
):
    sandbox.reset_counts()
    sandbox.set_faults([FaultRule("500", target="*", rate=0.0, first=1)])
    assert [xc_page(client, "nr:1").status_code for _ in range(3)] == [500, 200, 200]
    assert [search(client).status_code for _ in range(2)] == [500, 200]  # every target meets it once
    assert sandbox.fault_counts()["500"] == {"xc-api": 1, "europeana-api": 1}
    # a permanent kind keeps the URL it failed first bad, and only that one
    first, other = [f"/xeno-canto/{r.id}/download" for r in sandbox.archive.xc_sorted() if r.audio][:2]
    sandbox.set_faults([FaultRule("html", target="audio", rate=0.0, first=1)])
    kinds = [client.get(url).headers["Content-Type"].split("/")[0] for url in (first, other, first)]
    assert kinds == ["text", "audio", "text"]


def test_match_sees_the_query_too(sandbox: Sandbox, client: httpx.Client):
    sandbox.set_faults([FaultRule("500", target="xc-api", match="page=2")])
    assert xc_page(client, "grp:birds", per_page=50).status_code == 200
    assert xc_page(client, "grp:birds", per_page=50, page=2).status_code == 500


def test_modes_count_only_where_they_change_the_answer(sandbox: Sandbox, client: httpx.Client):
    sandbox.reset_counts()
    sandbox.set_faults([FaultRule("repeat_page", target="xc-api"), FaultRule("no_range", target="audio")])
    xc_page(client, "grp:birds", per_page=50)  # a first page has nothing before it to repeat
    url = f"/xeno-canto/{smallest(sandbox, 'mp3').id}/download"
    client.get(url)  # no Range asked: nothing to ignore
    assert sandbox.fault_counts() == {}
    xc_page(client, "grp:birds", per_page=50, page=2)
    assert client.get(url, headers={"Range": "bytes=10-"}).status_code == 200
    assert sandbox.fault_counts() == {"no_range": {"xc-audio": 1}, "repeat_page": {"xc-api": 1}}
    assert sandbox.counts()["faults"] == 2
    sandbox.reset_counts()
    assert sandbox.fault_counts() == {} and sandbox.counts()["faults"] == 0


def test_retry_waits_pair_each_refusal_with_the_next_request_for_its_url(
    sandbox: Sandbox, client: httpx.Client
):
    sandbox.reset_counts()
    sandbox.set_faults([FaultRule("429", target="xc-api", times=1, retry_after=600)])
    assert xc_page(client, "nr:7").status_code == 429
    assert sandbox.retry_waits() == []  # not asked again yet
    assert xc_page(client, "nr:8").status_code == 429  # another URL: its own refusal
    assert xc_page(client, "nr:7").status_code == 200  # asked again at once, Retry-After ignored
    [wait] = sandbox.retry_waits()
    assert (wait.kind, wait.target, wait.retry_after) == ("429", "xc-api", 600)
    assert wait.url == f"{XC}?query=nr:7" and wait.waited < wait.retry_after  # what a test catches
    stats = client.get("/_sandbox/stats").json()
    assert stats["faults_by_kind"] == {"429": {"xc-api": 2}} and len(stats["retry_waits"]) == 1


def test_a_hold_keeps_one_request_waiting_until_released(sandbox: Sandbox, client: httpx.Client):
    hold = sandbox.hold("xc-api", match="page=2")
    answers: list[int] = []
    asking = threading.Thread(target=lambda: answers.append(xc_page(client, "grp:birds", page=2).status_code))
    assert xc_page(client, "grp:birds").status_code == 200  # page 1 is not held
    asking.start()
    assert hold.reached.wait(timeout=60)
    assert answers == [] and asking.is_alive()  # held: not answered
    hold.release()
    asking.join(timeout=60)
    assert answers == [200]
    assert xc_page(client, "grp:birds", page=2).status_code == 200  # a hold takes one request


# -- audio -------------------------------------------------------------------------------------------
def test_range_requests(sandbox: Sandbox, client: httpx.Client):
    record = smallest(sandbox, "mp3")
    url = f"/xeno-canto/{record.id}/download"
    whole = client.get(url)
    size = len(whole.content)
    assert whole.headers["Accept-Ranges"] == "bytes" and int(whole.headers["Content-Length"]) == size
    sandbox.reset_counts()
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    tail = client.get(url, headers={"Range": f"bytes={size - 10}-"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    assert client.get(url, headers={"Range": "bytes=-5"}).content == whole.content[-5:]
    assert client.get(url, headers={"Range": f"bytes={size}-"}).status_code == 416
    counts = sandbox.counts()
    assert counts["audio-range-requests"] == 4 and counts["xc-download"] == counts["xc-audio"] == 4
    assert counts["audio-bytes"] == counts["xc-audio-bytes"] == 100 + 10 + 5
    head = client.head(url)
    assert head.content == b"" and int(head.headers["Content-Length"]) == size


def test_every_demo_audio_file_decodes(sandbox: Sandbox, client: httpx.Client, tmp_path: Path):
    truths = sandbox.archive.truths
    sources = [
        (r.key, f"/xeno-canto/{r.id}/download", r.audio) for r in sandbox.archive.xc_sorted() if r.audio
    ]
    sources += [(i.key, media_url(i, ""), i.audio) for i in sandbox.archive.europeana.values()]
    formats = set()
    for key, url, spec in sources:
        if key == truths.hour_long:
            info = sf.info(sandbox.audio_path(key))
            assert (info.samplerate, info.channels, info.duration) == (16000, 1, 3600)
            assert int(client.head(url).headers["Content-Length"]) > 100_000_000
            continue
        answer = client.get(url)
        assert answer.headers["Content-Type"] == CONTENT_TYPES[spec.format]
        path = tmp_path / f"file.{spec.format}"
        path.write_bytes(answer.content)
        data, rate = sf.read(path)
        info = sf.info(path)
        assert (rate, info.channels) == (spec.sample_rate, spec.channels), key
        formats.add((spec.format, rate, spec.channels))
        seconds = len(data) / rate
        if key == truths.vbr_no_xing:
            assert seconds < 0.6 * spec.duration_s  # the trap: soundfile stops early, silently
        else:
            assert abs(seconds - spec.duration_s) < 0.1, key
        if key == truths.id3_cover:
            assert info.duration > seconds + 5  # libsndfile's frame count counts the tag as audio
    assert {f for f, _, _ in formats} == {"mp3", "wav", "flac"} and {r for _, r, _ in formats} >= {
        16000,
        48000,
    }
    assert {c for _, _, c in formats} == {1, 2}


def test_vbr_mp3_without_xing_decodes_fully_elsewhere(sandbox: Sandbox, client: httpx.Client):
    key = sandbox.archive.truths.vbr_no_xing
    record = sandbox.archive.recording(key)
    data = client.get(f"/xeno-canto/{record.id}/download").content
    assert b"Xing" not in data[:4096] and b"Info" not in data[:4096]
    with av.open(io.BytesIO(data)) as container:
        frames = sum(frame.samples for frame in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    assert abs(frames / rate - record.length_s) < 0.5
    listed = xc_all(client, f"nr:{record.id}")[0]
    assert listed["length"] == "1:00" and listed["file-name"].endswith(".mp3")


def test_duplicates(sandbox: Sandbox, client: httpx.Client):
    [(xc_key, eu_key)] = sandbox.archive.truths.exact_duplicates
    assert sandbox.audio_path(xc_key).read_bytes() == sandbox.audio_path(eu_key).read_bytes()
    [(xc_key, eu_key)] = sandbox.archive.truths.near_duplicates
    xc_audio, eu_audio = (sandbox.archive.recording(k).audio for k in (xc_key, eu_key))
    assert xc_audio.format != eu_audio.format and xc_audio.sample_rate != eu_audio.sample_rate
    assert (xc_audio.voice, xc_audio.variation, xc_audio.duration_s) == (
        eu_audio.voice, eu_audio.variation, eu_audio.duration_s,
    )  # fmt: skip


def test_same_seed_same_archive_other_seed_other_archive(tmp_path: Path):
    def snapshot(seed: int, folder: str) -> tuple[str, list[bytes]]:
        config = SandboxConfig(data_dir=tmp_path / folder, seed=seed, hour_long=False)
        with (
            Sandbox(config) as running,
            httpx.Client(base_url=running.base_url, follow_redirects=True) as http,
        ):
            answers = [
                xc_page(http, "grp:birds", per_page=500).text,
                search(http, rows=100, cursor="*").text,
                http.get(WIKI_DE, params={"action": "query", "titles": "Turdus philomelos|Amsel",
                                          "prop": "extracts|info|pageprops", "redirects": "1"}).text,
            ]  # fmt: skip
            text = "\n".join(answers)
            for base in (
                quote(running.base_url, safe=""),
                running.base_url,
                running.base_url.removeprefix("http:"),
            ):
                text = text.replace(base, "BASE")
            audio = [
                http.get(f"/xeno-canto/{smallest(running, f).id}/download").content
                for f in ("wav", "flac", "mp3")
            ]
        return text, audio

    first, again, other = snapshot(0, "a"), snapshot(0, "b"), snapshot(1, "c")
    assert first == again
    assert first[0] != other[0]


# -- counters, control endpoints, growth -------------------------------------------------------------
def test_counters_and_control_endpoints(sandbox: Sandbox, client: httpx.Client):
    assert client.post("/_sandbox/reset-stats").json() == {"ok": True}
    xc_page(client, "grp:birds")
    search(client)
    wiki(client, ["Amsel", "Kolkrabe", "Zilpzalp"])
    stats = client.get("/_sandbox/stats").json()
    assert (stats["xc-api"], stats["europeana-search"], stats["wiki-api"], stats["wiki-titles"]) == (
        1,
        1,
        1,
        3,
    )
    assert stats["by_path"] == {XC: 1, SEARCH: 1, WIKI_DE: 1}  # control requests are not counted
    rule = {"kind": "503", "target": "xc-api", "times": 1, "retry_after": 0.5}
    assert client.put("/_sandbox/faults", json=[rule]).status_code == 200
    assert client.get("/_sandbox/faults").json()[0]["kind"] == "503"
    assert xc_page(client, "grp:frogs").status_code == 503
    assert client.put("/_sandbox/faults", json=[]).status_code == 200
    assert client.put("/_sandbox/faults", json=[{"kind": "boom"}]).status_code == 400
    assert client.put("/_sandbox/latency", json={"target": "europeana-api", "seconds": 0}).status_code == 200
    described = client.get("/_sandbox/archive").json()
    assert described["truths"]["vbr_no_xing"] == sandbox.archive.truths.vbr_no_xing
    assert client.post("/_sandbox/nothing").status_code == 404


def test_grow_and_remove(tmp_path: Path):
    with Sandbox(SandboxConfig(data_dir=tmp_path, hour_long=False)) as running:
        http = httpx.Client(base_url=running.base_url, follow_redirects=True)
        before = int(xc_page(http, "grp:birds cnt:germany").json()["numRecordings"])
        known = set(running.archive.species)
        added = running.grow(recordings=3, species=1)
        more = http.post("/_sandbox/grow", json={"recordings": 1}).json()["added"]
        assert len(added) == 3 + 5 and len(more) == 1
        fresh = xc_all(http, "since:1")
        assert sorted(f"xc:{r['id']}" for r in fresh) == sorted(added + more)
        assert all(r["uploaded"] == date.today().isoformat() for r in fresh)
        assert int(xc_page(http, "grp:birds cnt:germany").json()["numRecordings"]) == before + 9
        (new_species,) = (s for s in running.archive.species.values() if s.name not in known)
        pages = v1_pages_by_title(wiki(http, [new_species.name]))
        assert f"({new_species.name}) ist eine Vogelart" in pages[new_species.german]["extract"]
        gone_xc, gone_eu = added[0], running.archive.truths.exact_duplicates[0][1]
        assert running.remove([gone_xc, gone_eu, "xc:1"]) == [gone_xc, gone_eu]
        assert not xc_all(http, f"nr:{gone_xc[3:]}")
        assert http.get(f"/xeno-canto/{gone_xc[3:]}/download").status_code == 404
        assert gone_eu[10:] not in {i["id"] for i in search(http, rows=100).json()["items"]}
        assert http.post("/_sandbox/remove", json={"keys": [added[1]]}).json() == {"removed": [added[1]]}
        http.close()


def test_hostile_names_survive_the_wire(tmp_path: Path):
    with Sandbox(SandboxConfig(data_dir=tmp_path, profile="scale", hostile=True)) as running:
        http = httpx.Client(base_url=running.base_url, follow_redirects=True)
        records = xc_all(http, "grp:birds")
        names = {f"{r['gen']} {r['sp']}" for r in records}
        assert "Turdus nul\x00byte" in names and "\u0422urdus philomelos" in names
        assert {"Hostilus casus", "Hostilus Casus"} <= names and any(len(r["gen"]) == 300 for r in records)
        nasty = next(r for r in records if r["file-name"] == "../../etc/passwd.mp3")
        answer = http.get(nasty["file"])
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "audio/mpeg"
        titles = [i["title"][0] for i in search(http, rows=100).json()["items"]]
        assert "../../etc/passwd Linnaeus, 1758" in titles and "x" * 300 in titles
        http.close()


def test_bulk_metadata_pages_in_500s_without_rendering_audio(tmp_path: Path):
    config = SandboxConfig(data_dir=tmp_path, profile="scale", xc_bulk_recordings=20_000)
    with Sandbox(config) as running, httpx.Client(base_url=running.base_url) as http:
        first = xc_page(http, "grp:birds cnt:germany", per_page=500).json()
        assert first["numRecordings"] == "20000" and first["numPages"] == 41
        assert xc_page(http, "grp:birds cnt:germany", per_page=500, page=41).json()["recordings"] == []
        assert http.get(f"/xeno-canto/{first['recordings'][0]['id']}/download").status_code == 404
    assert not any(tmp_path.iterdir())


def test_serve_runs_until_sigterm_and_writes_an_env_file(tmp_path: Path):
    env_file = tmp_path / "sandbox.env"
    program = (
        "import sys; from pathlib import Path; from birdgrab.sandbox import SandboxConfig, serve; "
        "serve(SandboxConfig(data_dir=Path(sys.argv[1]), hour_long=False), env_file=Path(sys.argv[2]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", program, str(tmp_path / "audio"), str(env_file)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        serving = process.stdout.readline()  # printed once listening, after the env file is written
        exported = dict(re.findall(r"^export (\w+)='([^']*)'$", env_file.read_text(), re.M))
        assert exported["BIRDGRAB_XC_KEY"] == XC_KEY and "{lang}" in exported["BIRDGRAB_WIKIPEDIA_API"]
        base = exported["BIRDGRAB_XC_API"].removesuffix(XC)
        assert (
            httpx.get(exported["BIRDGRAB_XC_API"], params={"query": "grp:birds", "key": XC_KEY}).status_code
            == 200
        )
        assert httpx.get(f"{base}/_sandbox/stats").json()["xc-api"] == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert base in serving
    finally:
        process.kill()


def test_cursor_is_opaque_base64():
    for offset in (0, 7, 100, 123_456):
        cursor = encode_cursor(offset)
        assert decode_cursor(cursor) == offset and {"+", "/", "="} <= set(cursor)
        base64.b64decode(cursor, validate=True)
        with pytest.raises(ValueError):
            decode_cursor(cursor.replace("+", " "))
