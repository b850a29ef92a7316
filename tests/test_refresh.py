"""`birdgrab refresh` as cron runs it: real processes, SIGKILL, locks, incremental requests.

Moments are made, not waited for: the sandbox holds a request (`Sandbox.hold`) or birdgrab holds
itself at a named point (`birdgrab.hold_points`), and the test acts while the run is held there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from birdgrab.hold_points import HOLD_VARIABLE, POINTS
from birdgrab.sandbox import FaultRule, Sandbox, SandboxConfig
from birdgrab.sandbox.xeno_canto_api import download_path
from birdgrab.store import RecordingStore
from tests.conftest import FAST_RETRIES

# Fields that say *when* something happened; everything else must match between runs.
TIMESTAMPS = {
    "generated_at",
    "first_seen",
    "last_seen",
    "checked_at",
    "bird_checked_at",
    "updated_at",
    "made_at",
}


@pytest.fixture
def small_sandbox():
    config = SandboxConfig(profile="scale", extra_species=3, recordings_per_species=5, hour_long=False)
    with Sandbox(config) as running:
        yield running


def folders(root: Path) -> list[str]:
    return [
        "--manifests",
        str(root / "manifests"),
        "--cache",
        str(root / "cache"),
        "--out",
        str(root / "dataset"),
    ]


def start_refresh(
    sandbox: Sandbox, root: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    env = {**os.environ, **sandbox.env(), **FAST_RETRIES, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "birdgrab", "refresh", "--min-files", "1", "--quiet", *folders(root), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def refresh(sandbox: Sandbox, root: Path, *extra: str) -> subprocess.CompletedProcess:
    process = start_refresh(sandbox, root, *extra)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@dataclass
class Moment:
    """A moment to hold a refresh at: `wait()` returns once the run is held there, `abandon()`
    unblocks `wait()` when the run ended without getting there, `release()` lets the run go on."""

    wait: Callable[[], object]
    abandon: Callable[[], None]
    release: Callable[[], None]
    env: dict[str, str] = field(default_factory=dict)


def sandbox_hold(sandbox: Sandbox, target: str, **where) -> Moment:
    """Held by the sandbox: the run's next request of `target` that matches waits unanswered."""
    hold = sandbox.hold(target, **where)
    return Moment(hold.reached.wait, hold.reached.set, hold.release)


def hold_point(point: str, folder: Path) -> Moment:
    """Held by birdgrab itself at a hold point (birdgrab.hold_points), through a named pipe."""
    fifo = folder / f"{point}.fifo"
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)

    def wait() -> str:
        with open(fifo) as announced:  # the run opens the pipe to write once it is at the point
            return announced.read()

    def let_go() -> None:
        """Whoever waits at the other end of the pipe reads nothing more: a held run goes on, a
        test waiting for a run that ended stops waiting. Nothing to do if nobody waits (ENXIO)."""
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    return Moment(wait, let_go, let_go, {HOLD_VARIABLE: f"{point}:{fifo}"})


def held(process: subprocess.Popen, moment: Moment) -> bool:
    """Block until `process` is held at `moment` (True) or has ended without getting there (False)."""
    settled = threading.Event()
    reached: list[bool] = []

    def watch_moment() -> None:
        moment.wait()
        reached.append(process.poll() is None)
        settled.set()

    def watch_process() -> None:
        process.wait()
        settled.set()
        moment.abandon()

    threading.Thread(target=watch_moment, daemon=True).start()
    threading.Thread(target=watch_process, daemon=True).start()
    assert settled.wait(timeout=600), "neither held nor ended in 10 minutes"  # a hang guard only
    return reached == [True]


def sigkill(process: subprocess.Popen) -> None:
    """SIGKILL a held run, assert the kill is what ended it, and wait for the pool workers it
    leaves (they notice their parent is gone and leave too) so nothing writes after it."""
    workers = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    _, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, alive


def verified(manifests: Path) -> set[str]:
    """Keys whose files the run had verified: ok or duplicate in downloads.json or its journal (a
    line torn by the kill does not count, as it does not for birdgrab)."""
    entries: dict[str, dict] = {}
    if (manifests / "downloads.json").exists():
        entries = json.loads((manifests / "downloads.json").read_text())["entries"]
    journal = manifests / "downloads.journal"
    for line in journal.read_bytes().splitlines() if journal.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        entries[entry["key"]] = entry
    return {key for key, entry in entries.items() if entry["status"] in ("ok", "duplicate")}


def audio_requests(sandbox: Sandbox, keys: set[str]) -> dict[str, int]:
    """Requests for each xeno-canto recording's audio since the counters were reset."""
    paths = sandbox.path_counts()
    return {key: paths.get(f"/xeno-canto/{key.removeprefix('xc:')}/download", 0) for key in keys}


def _scrub(value, root: str):
    if isinstance(value, dict):
        return {k: _scrub(v, root) for k, v in value.items() if k not in TIMESTAMPS}
    if isinstance(value, list):
        return [_scrub(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<root>")
    return value


def snapshot(root: Path) -> dict:
    """Every dataset file with its sha256, every cache file, and the manifests without timestamps."""
    dataset = {
        str(p.relative_to(root / "dataset")): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "dataset").rglob("*"))
        if p.is_file() and p.name != "dataset.json"
    }
    # dataset.json says when the dataset was made: equal but for that time.
    dataset["dataset.json"] = _scrub(json.loads((root / "dataset" / "dataset.json").read_text()), str(root))
    cache = sorted(str(p.relative_to(root / "cache")) for p in (root / "cache").glob("??/*"))
    manifests = {
        p.name: _scrub(json.loads(p.read_text()), str(root))
        for p in sorted((root / "manifests").glob("*.json"))
        if p.name != "refresh.json"
    }
    leftovers = [p for p in root.rglob("*.part") if ".partial" not in p.parts]
    journals = list((root / "manifests").glob("*.journal"))
    return {
        "dataset": dataset,
        "cache": cache,
        "manifests": manifests,
        "leftovers": leftovers,
        "journals": journals,
    }


def test_sigkill_at_each_moment_then_rerun_equals_an_uninterrupted_run_without_fetching_again(
    small_sandbox, tmp_path
):
    small_sandbox.set_page_size("xeno-canto", 4)  # a listing of several pages, to be killed between
    reference = tmp_path / "reference"
    assert refresh(small_sandbox, reference).returncode == 0
    expected = snapshot(reference)
    assert expected["dataset"] and not expected["leftovers"] and not expected["journals"]
    keys = set(json.loads((reference / "manifests/downloads.json").read_text())["entries"])
    assert keys and all(key.startswith("xc:") for key in keys)
    # The download moment: this file's transfer is cut halfway, and held as it resumes with Range:
    # its first half is in a partial file, and the files done before it are verified.
    victim = sorted(small_sandbox.archive.xc.values(), key=lambda r: r.id)[len(keys) // 2]
    victim_file = download_path(victim)

    def download() -> Moment:
        small_sandbox.set_faults([FaultRule("truncate", target="xc-audio", times=1, match=victim_file)])
        return sandbox_hold(small_sandbox, "xc-audio", match=victim_file, ranged=True)

    moments: dict[str, Callable[[], Moment]] = {
        "catalog": lambda: sandbox_hold(small_sandbox, "xc-api", match="page=2"),
        "download": download,
        "bookkeeping": lambda: hold_point("downloads-journaled", tmp_path / "fifos"),
        "chunk": lambda: hold_point("chunk-recorded", tmp_path / "fifos"),
    }
    # (catalog-merged has its own test: the kill there must leave an earlier catalogue as it was)
    assert set(POINTS) == {"catalog-merged", "downloads-journaled", "chunk-recorded"}, "a point with no test"
    for name, arm in moments.items():
        root = tmp_path / name
        small_sandbox.reset_counts()
        moment = arm()
        process = start_refresh(small_sandbox, root, env=moment.env)
        try:
            assert held(process, moment), f"{name}: the run ended before the moment"
            sigkill(process)
            done = verified(root / "manifests")  # what the killed run had verified
            # what each moment is, as the killed run left it on disk
            if name == "catalog":
                assert not done and small_sandbox.counts()["xc-download"] == 0
            elif name == "download":
                assert victim.key not in done and any((root / "cache/.partial").glob("*.part"))
            elif name == "bookkeeping":
                assert done == keys and not (root / "manifests/downloads.json").exists()
            else:
                assert done == keys and (root / "manifests/chunks.journal").exists()
        finally:
            process.kill()  # (if an assertion above failed first)
            process.wait()
            moment.release()
            small_sandbox.clear_faults()
        small_sandbox.reset_counts()
        rerun = refresh(small_sandbox, root)
        assert rerun.returncode == 0, rerun.stderr  # no stale lock, nothing half-written in the way
        asked = audio_requests(small_sandbox, keys)
        # nothing verified before the kill is downloaded again; everything else once
        assert {key for key, n in asked.items() if n} == keys - done, (name, asked, done)
        assert all(n == 1 for key, n in asked.items() if key not in done), (name, asked)
        if name == "download":
            assert small_sandbox.counts()["audio-range-requests"] >= 1  # the partial file resumed
        assert snapshot(root) == expected, name


def catalogue_rows(root: Path) -> list[str]:
    """The catalogue as SQL statements, read with sqlite3 alone (which rolls back what a killed run
    left uncommitted, as birdgrab's next run does)."""
    with contextlib.closing(sqlite3.connect(root / "manifests" / "recordings.sqlite")) as db:
        return list(db.iterdump())


def test_a_refresh_killed_as_its_catalog_commits_leaves_the_previous_catalogue_as_it_was(
    small_sandbox, tmp_path
):
    assert refresh(small_sandbox, tmp_path).returncode == 0
    before = catalogue_rows(tmp_path)
    added = small_sandbox.grow(recordings=3, species=1)
    gone = sorted(r.key for r in small_sandbox.archive.xc.values() if r.key not in added)[0]
    small_sandbox.remove([gone])  # so the killed run also had a recording to mark vanished
    moment = hold_point("catalog-merged", tmp_path / "fifos")
    process = start_refresh(small_sandbox, tmp_path, "--full", env=moment.env)
    try:
        assert held(process, moment), "the run ended before its catalog committed"
        sigkill(process)
    finally:
        process.kill()
        process.wait()
        moment.release()
    assert catalogue_rows(tmp_path) == before
    rerun = refresh(small_sandbox, tmp_path, "--full")
    assert rerun.returncode == 0, rerun.stderr  # the killed run's transaction is in nobody's way
    with RecordingStore.open(tmp_path / "manifests") as store:
        assert all(store.get(key) for key in added) and store.get(gone).vanished


def test_second_concurrent_refresh_exits_3_and_the_first_completes(small_sandbox, tmp_path):
    listing = sandbox_hold(small_sandbox, "xc-api")  # the first run takes the lock, then waits here
    first = start_refresh(small_sandbox, tmp_path)
    try:
        assert held(first, listing)
        second = refresh(small_sandbox, tmp_path)
        # exit 3 while the first is still held: it did not wait for the lock
        assert second.returncode == 3 and first.poll() is None
        assert f"another birdgrab run (pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        listing.release()
    assert first.wait(timeout=120) == 0


def test_growth_between_refreshes_requests_only_what_is_new(small_sandbox, tmp_path):
    assert refresh(small_sandbox, tmp_path).returncode == 0
    classes_before = json.loads((tmp_path / "dataset/classes.json").read_text())
    wavs_before = {p: p.stat().st_mtime_ns for p in (tmp_path / "dataset").rglob("*.wav")}
    added = small_sandbox.grow(recordings=3, species=1)
    small_sandbox.reset_counts()

    result = refresh(small_sandbox, tmp_path)
    assert result.returncode == 0, result.stderr
    counts = small_sandbox.counts()
    assert counts["wiki-titles"] == 1  # only the new species was looked up
    assert counts["xc-audio"] == len(added)  # only the new recordings were downloaded
    assert counts["xc-api"] <= 2  # one incremental listing (plus the overcounted empty page)
    classes_after = json.loads((tmp_path / "dataset/classes.json").read_text())
    assert {k: classes_after[k]["label"] for k in classes_before} == {
        k: v["label"] for k, v in classes_before.items()
    }
    assert len(classes_after) == len(classes_before) + 1
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in wavs_before.items())  # nothing rewritten
    rows = (tmp_path / "dataset/metadata.csv").read_text()
    assert all(f"xc-{key.split(':')[1]}_" in rows for key in added)
    summary = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    assert summary == "" or summary.startswith("refresh:")


def test_no_change_refresh_asks_almost_nothing(small_sandbox, tmp_path):
    assert refresh(small_sandbox, tmp_path).returncode == 0
    small_sandbox.reset_counts()
    selection = tmp_path / "manifests" / "selection.json"
    made = selection.stat().st_mtime_ns, (tmp_path / "manifests" / "species.json").stat().st_mtime_ns
    log_file = tmp_path / "refresh.log"
    result = refresh(small_sandbox, tmp_path, "--log-format", "json", "--log-file", str(log_file))
    assert result.returncode == 0
    # the same catalogue and options: neither species.json nor selection.json is rewritten (each grows
    # with the catalogue); other filter options choose again
    assert (
        selection.stat().st_mtime_ns,
        (tmp_path / "manifests" / "species.json").stat().st_mtime_ns,
    ) == made
    assert refresh(small_sandbox, tmp_path, "--min-files", "6").returncode == 0
    assert selection.stat().st_mtime_ns != made[0] and json.loads(selection.read_text())["species"] == {}
    counts = small_sandbox.counts()
    assert counts["wiki-api"] == 0 and counts["xc-audio"] == 0 and counts["xc-download"] == 0
    assert result.stderr == "" and result.stdout == ""  # --quiet and all well: nothing for cron to mail
    # the log file: one JSON object a line, ending with the summary and its counts
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines[-1]["event"] == "refresh.done" and lines[-1]["files_downloaded"] == 0
    assert {"new_recordings", "species_added", "chunks_written", "failures", "duration_s"} <= set(lines[-1])


def test_vanished_recordings_are_kept_until_pruned(small_sandbox, tmp_path):
    assert refresh(small_sandbox, tmp_path).returncode == 0
    gone = sorted(r.key for r in small_sandbox.archive.xc.values())[0]
    stem = f"xc-{gone.split(':')[1]}_"
    small_sandbox.remove([gone])
    assert refresh(small_sandbox, tmp_path, "--full").returncode == 0
    with RecordingStore.open(tmp_path / "manifests") as store:
        recording = store.get(gone)
    assert recording.vanished and recording.last_seen
    assert any(stem in p.name for p in (tmp_path / "dataset").rglob("*.wav"))  # never deleted locally
    assert refresh(small_sandbox, tmp_path, "--full", "--prune").returncode == 0
    with RecordingStore.open(tmp_path / "manifests") as store:
        assert store.get(gone) is None
    assert not any(stem in p.name for p in (tmp_path / "dataset").rglob("*.wav"))
    assert stem not in (tmp_path / "dataset/metadata.csv").read_text()
