"""Hostile and bad input: wrong options, broken manifests, hostile names, lying servers, full disks, secrets."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from birdgrab import manifests
from birdgrab.models import (
    DownloadsManifest,
    Recording,
    RecordingsManifest,
    SelectedSpecies,
    SelectionManifest,
)
from birdgrab.sandbox import FaultRule, Sandbox, SandboxConfig
from birdgrab.store import RecordingStore
from tests.audio_fixtures import bird_song, write_audio
from tests.conftest import FAST_RETRIES, Birdgrab

# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "args",
    [
        ["filter", "--min-files", "-1"],
        ["filter", "--min-files", "10", "--max-files", "5"],
        ["filter", "--min-quality", "Z"],
        ["filter", "--licence", "BY-FOO"],
        ["filter", "--type", "bark"],
        ["filter", "--min-length", "30", "--max-length", "10"],
        ["filter", "--wiki-lang", "Deutsch"],
        ["catalog", "--since", "2024-13-01"],
        ["catalog", "--source", "wikipedia"],
        ["catalog", "--species-file", "/nonexistent/species.txt"],
        ["fetch", "--jobs", "0"],
        ["fetch", "--max-file-mb", "-5"],
        ["fetch", "--per-host", "0"],
        ["chunk", "--split", "80/20"],
        ["chunk", "--split", "50/30/30"],
        ["chunk", "--sample-rate", "10"],
        ["chunk", "--chunk-seconds", "0"],
        ["chunk", "--min-chunk-seconds", "20"],
        ["chunk", "--gate-db", "-3"],
        ["refresh", "--wiki-max-age", "-1"],
        ["stats", "--log-format", "xml"],
        ["sandbox", "--host", "0.0.0.0"],
        ["no-such-command"],
    ],
)
def test_every_bad_option_is_one_line_and_exit_2(args, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIRDGRAB_")}
    env.update(
        BIRDGRAB_XC_KEY="k-123",
        BIRDGRAB_EUROPEANA_KEY="k-456",
        BIRDGRAB_XC_API="http://127.0.0.1:9/x",
        BIRDGRAB_EUROPEANA_API="http://127.0.0.1:9/x",
        BIRDGRAB_WIKIPEDIA_API="http://127.0.0.1:9/{lang}",
    )
    common = (
        []
        if args[0] in ("sandbox", "no-such-command")
        else [
            "--manifests",
            str(tmp_path / "m"),
            "--cache",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "d"),
        ]
    )
    result = subprocess.run(
        [sys.executable, "-m", "birdgrab", *args, *common],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "error" in lines[0]


# --------------------------------------------------------------------------- manifests


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A small catalogued, fetched and chunked project to break in different ways."""
    root = tmp_path_factory.mktemp("built")
    with Sandbox(SandboxConfig(hour_long=False)) as sandbox:
        run = Birdgrab(sandbox, root, {**sandbox.env(), **FAST_RETRIES})
        (root / "species.txt").write_text("Turdus merula\n")
        assert run("catalog", "--species-file", str(root / "species.txt")).exit_code == 0
        assert run("filter", "--min-files", "1", "--max-files", "3").exit_code == 0
        assert run("fetch").exit_code == 0
        yield root, run


READERS = {
    "species.json": ["catalog", "filter", "chunk", "refresh", "stats"],
    "selection.json": ["fetch", "chunk", "refresh"],
    "downloads.json": ["fetch", "chunk", "refresh"],
    "chunks.json": ["chunk", "refresh"],
}


def _breakages(data: dict) -> dict[str, bytes]:
    wrong_type = json.loads(json.dumps(data))
    items = next(wrong_type[k] for k in ("recordings", "species", "entries") if wrong_type.get(k))
    first = next(iter(items))
    items[first] = (
        {**items[first], "key": 12, "status": ["x"], "species": 3.5, "scientific_name": None}
        if isinstance(items[first], dict)
        else ["not", "a", "string"]
    )
    return {
        "truncated": json.dumps(data).encode()[: len(json.dumps(data)) // 2],
        "wrong types": json.dumps(wrong_type).encode(),
        "newer schema": json.dumps({**data, "schema_version": 99}).encode(),
    }


@pytest.mark.parametrize("name", list(READERS))
def test_broken_manifests_stop_every_reader_with_exit_2_and_stay_untouched(built, name, tmp_path):
    root, run = built
    original = (root / "manifests" / name).read_bytes()
    for breakage, content in _breakages(json.loads(original)).items():
        copy = tmp_path / breakage.replace(" ", "-")
        shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".birdgrab.lock"))
        (copy / "manifests" / name).write_bytes(content)
        runner = Birdgrab(run.sandbox, copy, run.env)
        for command in READERS[name]:
            result = runner(command)
            assert result.exit_code == 2, (name, breakage, command, result.output)
            assert name in result.output and len(result.output.strip().splitlines()) == 1, result.output
            assert (copy / "manifests" / name).read_bytes() == content, (name, breakage, command)


def _break_store(path: Path, breakage: str) -> None:
    if breakage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        if breakage == "wrong types":  # a hand edit: text where a number and a JSON list belong
            db.execute("UPDATE recordings SET length_s = 'long', types = 'song' WHERE rowid = 1")
        else:
            db.execute("""UPDATE meta SET value = '99' WHERE name = 'schema_version'""")


@pytest.mark.parametrize("breakage", ["truncated", "wrong types", "newer schema"])
def test_a_broken_store_stops_every_reader_with_exit_2_and_stays_untouched(built, breakage, tmp_path):
    root, run = built
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".birdgrab.lock"))
    path = copy / "manifests" / "recordings.sqlite"
    _break_store(path, breakage)
    content = path.read_bytes()
    runner = Birdgrab(run.sandbox, copy, run.env)
    # A truncated file or a newer schema is found on opening; wrong types where rows are read.
    readers = (
        ["filter", "chunk"]
        if breakage == "wrong types"
        else ["catalog", "filter", "fetch", "chunk", "refresh", "stats"]
    )
    for command in readers:
        result = runner(command)
        assert result.exit_code == 2, (breakage, command, result.output)
        assert "recordings.sqlite" in result.output and len(result.output.strip().splitlines()) == 1, (
            result.output
        )
        assert path.read_bytes() == content, (breakage, command)


def test_a_recordings_json_of_an_earlier_version_migrates_on_first_use(built, tmp_path):
    """Today's manifests keep working: the JSON catalogue moves into the store, nothing is lost."""
    root, run = built
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".birdgrab.lock"))
    manifests_dir = copy / "manifests"
    with RecordingStore.open(manifests_dir) as store:
        recordings = {r.key: r for r in store}
        parameters, skipped = store.parameters, store.skipped()
    legacy = manifests.new_manifest(RecordingsManifest, parameters, recordings=recordings, skipped=skipped)
    for leftover in manifests_dir.glob("recordings.sqlite*"):
        leftover.unlink()
    manifests.save(manifests_dir / "recordings.json", legacy)  # what the JSON-manifest version wrote
    runner = Birdgrab(run.sandbox, copy, run.env)
    stats = runner("stats", "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output[stats.output.index("{") :])["recordings"] == len(recordings)
    assert not (manifests_dir / "recordings.json").exists()
    assert (manifests_dir / "recordings.json.migrated").read_bytes() == manifests.dump_bytes(legacy)
    with RecordingStore.open(manifests_dir) as store:
        assert {r.key: r for r in store} == recordings and store.skipped() == skipped
        assert store.parameters == parameters
    assert runner("filter", "--min-files", "1", "--max-files", "3").exit_code == 0
    assert runner("fetch").exit_code == 0  # everything already there: nothing is fetched again


# --------------------------------------------------------------------------- hostile names


def test_hostile_names_never_become_paths_or_colliding_classes(tmp_path):
    root = tmp_path / "project"
    before = set(tmp_path.parent.iterdir())
    with Sandbox(SandboxConfig(hostile=True, hour_long=False)) as sandbox:
        run = Birdgrab(sandbox, root, {**sandbox.env(), **FAST_RETRIES})
        assert run("catalog").exit_code in (0, 1)
        assert run("filter", "--min-files", "1", "--no-wiki", "--any-group").exit_code == 0
        assert run("fetch").exit_code in (0, 1)
        hostile = set(sandbox.archive.truths.hostile)
    assert set(tmp_path.parent.iterdir()) == before  # nothing appeared beside the test folder
    assert {p.name for p in root.iterdir()} <= {
        "manifests",
        "cache",
        "dataset",
        "project",
        ".dataset.birdgrab.lock",
    }
    folders = [p.name for p in (root / "dataset").iterdir() if p.is_dir()]
    assert folders and all(re.fullmatch(r"[A-Z][a-z]+_[a-z]+", f) for f in folders)
    assert len({f.lower() for f in folders}) == len(folders)  # no clash on a case-insensitive disk
    for path in (root / "dataset").rglob("*"):
        assert path.resolve().is_relative_to((root / "dataset").resolve())
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", path.name), path.name
    recordings = run.recordings()
    skipped = {s["key"] for s in run.skipped()}
    named_hostile = hostile - skipped
    # what was not skipped got a clean binomial (e.g. 'Hostilus Casus' is 'Hostilus casus')
    assert all(
        re.fullmatch(r"[A-Z][a-z]+ [a-z-]+", recordings[k]["scientific_name"])
        for k in named_hostile
        if k in recordings
    )
    assert len(skipped & hostile) >= 8


# --------------------------------------------------------------------------- servers that lie


class LyingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hanging up are expected here
            super().handle_error(request, client_address)


def _lying_handler(files: dict[str, bytes]):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def do_GET(self):
            if self.path == "/bomb.mp3":  # 200 MB of zeros in 200 KB of gzip
                self._send(
                    200,
                    {
                        "Content-Type": "audio/mpeg",
                        "Content-Encoding": "gzip",
                        "Content-Length": str(len(files["bomb"])),
                    },
                    files["bomb"],
                )
            elif self.path == "/huge.mp3":  # claims 3 GB
                self._send(
                    200, {"Content-Type": "audio/mpeg", "Content-Length": str(3 * 2**30)}, b"\xff\xfb" * 1000
                )
            elif self.path == "/mislabelled.bin":  # a real wav served as text/plain
                self._send(
                    200,
                    {"Content-Type": "text/plain", "Content-Length": str(len(files["wav"]))},
                    files["wav"],
                )
            elif self.path == "/short.wav":  # Content-Length says more than comes
                self._send(
                    200,
                    {"Content-Type": "audio/wav", "Content-Length": str(len(files["wav"]) + 5000)},
                    files["wav"],
                )
                self.close_connection = True
            elif self.path.startswith("/api?"):  # a JSON answer of 80 MB
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(80 * 2**20))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(b'{"recordings": [' + b" " * (80 * 2**20 - 17) + b"]}")
            else:
                self._send(404, {"Content-Length": "0"}, b"")

    return Handler


@pytest.fixture
def liar(tmp_path):
    wav = tmp_path / "real.wav"
    write_audio(wav, bird_song(4, 22050, seed=3), 22050, "WAV")
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(compressor.compress(b"\0" * 2**20) for _ in range(200)) + compressor.flush()
    server = LyingServer(("127.0.0.1", 0), _lying_handler({"bomb": bomb, "wav": wav.read_bytes()}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _hand_made_selection(root: Path, urls: dict[str, str]) -> None:
    now = manifests.utc_now()
    recordings = {
        f"xc:{n}": Recording(
            key=f"xc:{n}",
            source="xeno-canto",
            source_id=str(n),
            scientific_name="Turdus merula",
            original_name="Turdus merula",
            species="Turdus merula",
            audio_url=url,
            first_seen=now,
            last_seen=now,
        )
        for n, url in enumerate(urls.values(), 1)
    }
    manifests.save(
        root / "recordings.json", manifests.new_manifest(RecordingsManifest, {}, recordings=recordings)
    )
    manifests.save(
        root / "selection.json",
        manifests.new_manifest(
            SelectionManifest,
            {},
            species={
                "Turdus merula": SelectedSpecies(species="Turdus merula", recordings=sorted(recordings))
            },
        ),
    )


def test_responses_that_are_not_what_they_claim_are_stopped_with_reasons(liar, tmp_path, sandbox):
    urls = {name: f"{liar}/{name}" for name in ("bomb.mp3", "huge.mp3", "mislabelled.bin", "short.wav")}
    _hand_made_selection(tmp_path / "manifests", urls)
    run = Birdgrab(sandbox, tmp_path, {**sandbox.env(), **FAST_RETRIES, "BIRDGRAB_RETRY_ATTEMPTS": "2"})
    result = run("fetch", "--no-chunk", "--max-file-mb", "50")
    assert result.exit_code == 1
    entries = run.manifest("downloads.json")["entries"]
    by_url = {e["url"].rsplit("/", 1)[1]: e for e in entries.values()}
    assert "--max-file-mb" in by_url["bomb.mp3"]["reason"]  # the decompressed size counts
    assert "--max-file-mb" in by_url["huge.mp3"]["reason"]  # refused before reading it
    assert by_url["mislabelled.bin"]["status"] == "ok" and by_url["mislabelled.bin"]["format"] == "wav"
    assert by_url["short.wav"]["status"] == "failed" and "truncated" in by_url["short.wav"]["reason"]
    big = [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size > 60 * 2**20]
    assert big == []


def test_a_json_answer_of_many_megabytes_is_refused(liar, birdgrab):
    result = birdgrab("catalog", "--source", "xeno-canto", env={"BIRDGRAB_XC_API": f"{liar}/api"})
    assert result.exit_code == 2 and "larger than 64 MB" in result.output


def test_pages_that_repeat_records_are_deduplicated(tmp_path):
    with Sandbox(SandboxConfig(xc_bulk_recordings=600, hour_long=False)) as sandbox:
        clean = Birdgrab(sandbox, tmp_path / "clean", {**sandbox.env(), **FAST_RETRIES})
        assert clean("catalog", "--source", "xeno-canto").exit_code == 0
        sandbox.set_faults([FaultRule("repeat_page", target="xc-api")])
        faulty = Birdgrab(sandbox, tmp_path / "faulty", clean.env)
        assert faulty("catalog", "--source", "xeno-canto").exit_code == 0
        assert sandbox.counts()["xc-api"] >= 2
    assert set(faulty.recordings()) == set(clean.recordings())


# --------------------------------------------------------------------------- disk space


def test_low_disk_space_stops_fetch_and_chunk_cleanly(birdgrab):
    (birdgrab.root / "species.txt").write_text("Turdus merula\n")
    assert birdgrab("catalog", "--species-file", str(birdgrab.root / "species.txt")).exit_code == 0
    assert birdgrab("filter", "--min-files", "1", "--max-files", "3").exit_code == 0
    impossible = str(10**12)
    result = birdgrab("fetch", "--min-free-mb", impossible)
    assert result.exit_code == 1 and "MB free" in result.output and "stopped" in result.output
    assert manifests.load(birdgrab.manifests / "downloads.json", DownloadsManifest) is not None
    assert birdgrab("fetch", "--no-chunk").exit_code == 0
    result = birdgrab("chunk", "--min-free-mb", impossible)
    assert result.exit_code == 1 and "MB free" in result.output
    assert not list(birdgrab.out.rglob("*.wav"))
    assert birdgrab("chunk").exit_code == 0 and list(birdgrab.out.rglob("*.wav"))


# --------------------------------------------------------------------------- secrets


def test_keys_appear_nowhere_in_any_command_output_log_manifest_or_dataset(birdgrab, sandbox):
    sandbox.set_faults(
        [
            FaultRule("503", target="*", rate=0.2, retry_after=0),
            FaultRule("429", target="*", rate=0.1, retry_after=0),
        ]
    )
    log = birdgrab.root / "all.log"
    common = ["--verbose", "--log-format", "json", "--log-file", str(log)]
    (birdgrab.root / "species.txt").write_text("Turdus merula\nCyanistes caeruleus\n")
    outputs = [
        birdgrab("catalog", "--species-file", str(birdgrab.root / "species.txt"), *common).output,
        birdgrab("filter", "--min-files", "1", *common).output,
        birdgrab("fetch", *common).output,
        birdgrab("chunk", *common).output,
        birdgrab("refresh", *common).output,
        birdgrab("stats", "--json", *common).output,
        birdgrab("catalog", *common, env={"BIRDGRAB_XC_KEY": "wrong-but-secret-777"}).output,
    ]
    texts = outputs + [
        p.read_bytes().decode("utf-8", "replace")
        for p in birdgrab.root.rglob("*")
        if p.is_file() and p.suffix not in (".wav", ".mp3", ".flac")
    ]
    assert list(birdgrab.out.rglob("*.wav")) and log.stat().st_size > 1000
    for secret in (sandbox.config.xc_key, sandbox.config.europeana_key, "wrong-but-secret-777"):
        assert not any(secret in text for text in texts), secret


def test_logging_after_a_run_whose_stderr_is_gone_still_works(capfd):
    """An embedding program (or test runner) may close the stderr a run had; later log calls must not fail."""
    import io
    import logging
    import sys

    from birdgrab.log import setup_logging

    run_stderr = io.StringIO()
    real_stderr, sys.stderr = sys.stderr, run_stderr
    try:
        setup_logging()
        logging.getLogger("birdgrab").warning("during the run")
    finally:
        sys.stderr = real_stderr
        run_stderr.close()
    logging.getLogger("matplotlib").warning("after the run")
    err = capfd.readouterr().err
    assert "after the run" in err and "Logging error" not in err
