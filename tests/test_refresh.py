"""`birdgrab refresh` as cron runs it: real processes, SIGKILL, locks, incremental requests."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from birdgrab.sandbox import Sandbox, SandboxConfig
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


def start_refresh(sandbox: Sandbox, root: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, **sandbox.env(), **FAST_RETRIES}
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


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 60) -> bool:
    """Poll an observable condition; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("condition not reached in time")


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


def test_sigkill_at_any_moment_then_rerun_equals_an_uninterrupted_run(small_sandbox, tmp_path):
    reference = tmp_path / "reference"
    assert refresh(small_sandbox, reference).returncode == 0
    expected = snapshot(reference)
    assert expected["dataset"] and not expected["leftovers"] and not expected["journals"]

    def counter(name: str, at_least: int = 1) -> Callable[[], bool]:
        return lambda: small_sandbox.counts()[name] >= at_least

    moments = {
        "catalog": (counter("xc-api"), {"xc-api": 0.5}),
        "download": (counter("xc-audio", 3), {"xc-audio": 0.2}),
        "bookkeeping": (lambda: (tmp_path / "bookkeeping/manifests/downloads.journal").exists(), {}),
        "chunk": (lambda: any((tmp_path / "chunk/dataset").rglob("*.wav")), {}),
    }
    killed_in = []
    for name, (condition, latency) in moments.items():
        root = tmp_path / name
        small_sandbox.reset_counts()
        for target, seconds in latency.items():
            small_sandbox.set_latency(target, seconds)
        process = start_refresh(small_sandbox, root)
        if wait_for(condition, process):
            process.send_signal(signal.SIGKILL)
            killed_in.append(name)
        process.wait(timeout=60)
        for target in latency:
            small_sandbox.set_latency(target, 0)
        rerun = refresh(small_sandbox, root)
        assert rerun.returncode == 0, rerun.stderr  # no stale lock, nothing half-written in the way
        assert snapshot(root) == expected, name
    assert len(killed_in) >= 3, killed_in  # the kills really happened mid-run


def test_second_concurrent_refresh_exits_3_and_the_first_completes(small_sandbox, tmp_path):
    small_sandbox.set_latency("xc-api", 1.0)
    first = start_refresh(small_sandbox, tmp_path)
    lock = tmp_path / "manifests" / ".birdgrab.lock"
    assert wait_for(lambda: lock.exists() and str(first.pid) in lock.read_text(), first)
    started = time.monotonic()
    second = refresh(small_sandbox, tmp_path)
    assert second.returncode == 3
    assert time.monotonic() - started < 15  # at once, not after waiting for the lock
    assert f"another birdgrab run (pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    small_sandbox.set_latency("xc-api", 0)
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
    log_file = tmp_path / "refresh.log"
    result = refresh(small_sandbox, tmp_path, "--log-format", "json", "--log-file", str(log_file))
    assert result.returncode == 0
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
