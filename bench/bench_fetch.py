"""Benchmark of `birdgrab fetch --no-chunk`: 300 recordings of about 1 MB from the sandbox with
100 ms latency per request, against one-after-another downloads and `aria2c -j N`, at the same
number of connections; and birdgrab's peak memory on a 500 MB file against a 1 MB one.

The sandbox (and the file server of the 500 MB file) run in their own processes; birdgrab,
aria2c and the sequential baseline each run as a child process measured with `os.wait4` (wall
seconds, CPU seconds, peak RSS). Run with `python -m bench.bench_fetch` from the repository root.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.harness import REPO, Run, SandboxProcess, requests_made, run_birdgrab, run_process
from birdgrab import manifests
from birdgrab.models import (
    Recording,
    SelectedSpecies,
    SelectionManifest,
    SpeciesManifest,
)
from birdgrab.sandbox import Sandbox, SandboxConfig
from birdgrab.store import RecordingStore

SPECIES = 10
PER_SPECIES = 30
AUDIO_BYTES = 1_000_000
LATENCY_S = 0.1  # per audio request: the xeno-canto `file` URL's redirect and the file itself
JOBS = 16
ROUNDS = 2  # birdgrab and aria2c take turns, best of ROUNDS each; the slow baseline runs once
BIG_BYTES = 500_000_000
SMALL_BYTES = 1_000_000
GOAL_SPEEDUP = 8.0
GOAL_WALL_VS_ARIA2 = 1.1
GOAL_CPU_VS_ARIA2 = 3.0
GOAL_RSS_MB = 200.0
GOAL_RSS_GROWTH = 1.10  # "independent of file size": the 500 MB file may cost at most 10 % more

_SEQUENTIAL = """
import sys, httpx
from pathlib import Path
urls, folder = Path(sys.argv[1]).read_text().split(), Path(sys.argv[2])
with httpx.Client(follow_redirects=True, timeout=60) as client:
    for number, url in enumerate(urls):
        with client.stream("GET", url) as response, open(folder / f"{number}.audio", "wb") as out:
            response.raise_for_status()
            for block in response.iter_bytes():
                out.write(block)
"""

_FILE_SERVER = """
import functools, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
handler = functools.partial(SimpleHTTPRequestHandler, directory=sys.argv[1])
server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def _prerender(config: SandboxConfig) -> tuple[int, int]:
    """Render the archive's audio now (into the sandbox's on-disk cache, which the sandbox process
    shares), so that no measured run pays for it; returns (files, bytes)."""
    sandbox = Sandbox(config)  # never started: only its archive and audio cache are used
    sizes = [sandbox.audio_path(r.key).stat().st_size for r in sandbox.archive.xc.values() if r.audio]
    return len(sizes), sum(sizes)


def _prepare(sandbox: SandboxProcess, root: Path) -> list[str]:
    """catalog + filter into root/manifests with every recording selected; returns the audio URLs."""
    fast = {"BIRDGRAB_XC_RATE": "100"}
    run_birdgrab(["catalog", "--source", "xeno-canto", "--quiet"], sandbox.env, root, fast).check("catalog")
    filter_args = ["filter", "--min-files", "1", "--no-wiki", "--any-group", "--quiet"]
    run_birdgrab(filter_args, sandbox.env, root, fast).check("filter")
    folder = root / "manifests"
    with RecordingStore.open(folder) as store:  # type: ignore[union-attr]
        recordings = {r.key: r for r in store}
    selection = json.loads((folder / "selection.json").read_text())
    keys = sorted(k for s in selection["species"].values() for k in s["recordings"])
    if len(keys) != len(recordings):
        raise RuntimeError(f"filter selected {len(keys)} of {len(recordings)} recordings, not all")
    return [recordings[key].audio_url or "" for key in keys]


def _fresh_root(base: Path, name: str, manifests_from: Path) -> Path:
    """A folder with a copy of the manifests and an empty cache: every run starts from nothing."""
    root = base / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "manifests").mkdir(parents=True)
    for file in ("recordings.sqlite", "species.json", "selection.json"):
        shutil.copy2(manifests_from / "manifests" / file, root / "manifests" / file)
    return root


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.suffix != ".lock")


def _birdgrab_fetch(sandbox: SandboxProcess, base: Path, prepared: Path, name: str) -> tuple[Run, int, int]:
    """One `birdgrab fetch --no-chunk` into an empty cache: (run, bytes cached, requests made)."""
    root = _fresh_root(base, name, prepared)
    args = ["fetch", "--no-chunk", "--jobs", str(JOBS), "--per-host", str(JOBS), "--quiet"]
    sandbox.reset_stats()
    run = run_birdgrab(args, sandbox.env, root).check("birdgrab fetch")
    requests = requests_made(sandbox.stats())
    fetched = _folder_bytes(root / "cache")
    shutil.rmtree(root)
    return run, fetched, requests


def _aria2c(urls: list[str], base: Path, name: str) -> tuple[Run, int]:
    folder = base / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    listing = base / f"{name}.txt"
    listing.write_text("".join(f"{url}\n  out={n}.audio\n" for n, url in enumerate(urls)))
    command = ["aria2c", "-j", str(JOBS), "-x", "1", "-s", "1", "-i", str(listing), "-d", str(folder)]
    command += ["--file-allocation=none", "--allow-overwrite=true", "--auto-file-renaming=false"]
    command += ["--console-log-level=warn", "--summary-interval=0", "--download-result=hide", "-q"]
    run = run_process(command, os.environ, base).check("aria2c")
    fetched = _folder_bytes(folder)
    shutil.rmtree(folder)
    return run, fetched


def _sequential(urls: list[str], base: Path) -> tuple[Run, int]:
    folder = base / "sequential"
    folder.mkdir(parents=True)
    listing = base / "sequential.txt"
    listing.write_text("\n".join(urls))
    argv = [sys.executable, "-c", _SEQUENTIAL, str(listing), str(folder)]
    run = run_process(argv, os.environ, REPO).check("sequential downloads")
    fetched = _folder_bytes(folder)
    shutil.rmtree(folder)
    return run, fetched


def _per_gb(run: Run, fetched: int) -> float:
    return run.cpu_s / (fetched / 1e9)


def _describe(name: str, run: Run, fetched: int) -> str:
    return (
        f"  {name:22s} {run.wall_s:6.2f} s, {_per_gb(run, fetched):5.2f} CPU s/GB"
        f" ({run.cpu_s:.2f} s for {fetched / 1e6:.0f} MB), peak RSS {run.max_rss_mb:5.0f} MB"
    )


def _verdict(value: float, goal: float, at_least: bool = False) -> str:
    met = value >= goal if at_least else value <= goal
    return "met" if met else "MISSED"


def _speed(work: Path) -> list[str]:
    config = SandboxConfig(
        profile="scale",
        extra_species=SPECIES,
        recordings_per_species=PER_SPECIES,
        audio_bytes=AUDIO_BYTES,
        hour_long=False,
    )
    files, total = _prerender(config)
    with SandboxProcess(config, work) as sandbox:
        prepared = work / "prepared"
        urls = _prepare(sandbox, prepared)
        sandbox.set_latency("audio", LATENCY_S)
        lines = [
            f"fetching {len(urls)} recordings ({files} files, {total / 1e6:.0f} MB, about"
            f" {total / files / 1e6:.1f} MB each) with {LATENCY_S * 1000:.0f} ms latency per request"
            f" (each xeno-canto file URL redirects: 2 requests a file), {JOBS} connections"
        ]
        have_aria2 = shutil.which("aria2c") is not None
        birdgrab_runs, aria2_runs = [], []
        for round_number in range(ROUNDS):
            birdgrab_runs.append(_birdgrab_fetch(sandbox, work, prepared, f"birdgrab{round_number}"))
            if have_aria2:
                aria2_runs.append(_aria2c(urls, work, f"aria2c{round_number}"))
        sequential, sequential_bytes = _sequential(urls, work)
    birdgrab, birdgrab_bytes, birdgrab_requests = min(birdgrab_runs, key=lambda triple: triple[0].wall_s)
    speedup = sequential.wall_s / birdgrab.wall_s
    lines += [
        _describe(f"birdgrab --jobs {JOBS}", birdgrab, birdgrab_bytes)
        + f" (best of {ROUNDS}; {birdgrab_requests} requests)",
        _describe("one after another", sequential, sequential_bytes),
        f"  speed-up over one after another: {speedup:.1f}x (goal >= {GOAL_SPEEDUP:g})"
        f" {_verdict(speedup, GOAL_SPEEDUP, at_least=True)}",
    ]
    if not have_aria2:
        return [*lines, "  aria2c not installed (Debian package aria2): comparison skipped"]
    aria2, aria2_bytes = min(aria2_runs, key=lambda pair: pair[0].wall_s)
    wall_ratio = birdgrab.wall_s / aria2.wall_s
    cpu_ratio = _per_gb(birdgrab, birdgrab_bytes) / _per_gb(aria2, aria2_bytes)
    return [
        *lines,
        _describe(f"aria2c -j {JOBS} -x 1", aria2, aria2_bytes) + f" (best of {ROUNDS})",
        f"  wall birdgrab/aria2c: {wall_ratio:.2f}x (goal <= {GOAL_WALL_VS_ARIA2:g})"
        f" {_verdict(wall_ratio, GOAL_WALL_VS_ARIA2)};"
        f" CPU s/GB birdgrab/aria2c: {cpu_ratio:.1f}x (goal <= {GOAL_CPU_VS_ARIA2:g})"
        f" {_verdict(cpu_ratio, GOAL_CPU_VS_ARIA2)}",
    ]


# -- memory: one 500 MB file against one 1 MB file -------------------------------------------------------
def _write_wav(path: Path, size: int) -> None:
    """A 16 kHz mono 16-bit WAV of `size` bytes: header, then noise written in 4 MB blocks."""
    data = size - 44
    header = b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", data)
    block = np.random.default_rng(0).integers(-3000, 3000, 2 * 1024 * 1024, dtype=np.int16).tobytes()
    with open(path, "wb") as out:
        out.write(header)
        left = data
        while left > 0:
            out.write(block[:left])
            left -= min(left, len(block))


def _single_file_manifests(root: Path, url: str, key: str) -> None:
    """The recordings store, species.json and selection.json for one recording at `url`."""
    folder = root / "manifests"
    folder.mkdir(parents=True)
    now = datetime.now(UTC).replace(microsecond=0)
    recording = Recording(
        key=key,
        source="xeno-canto",
        source_id=key[3:],
        scientific_name="Benchus maximus",
        original_name="Benchus maximus",
        species="Benchus maximus",
        group="birds",
        audio_url=url,
        first_seen=now,
        last_seen=now,
    )
    RecordingStore.create_from(folder, [recording])
    manifests.save(folder / manifests.SPECIES, manifests.new_manifest(SpeciesManifest, {}))
    selected = SelectedSpecies(species="Benchus maximus", recordings=[key])
    manifests.save(
        folder / manifests.SELECTION,
        manifests.new_manifest(SelectionManifest, {}, species={"Benchus maximus": selected}),
    )


def _memory(work: Path) -> list[str]:
    files = work / "files"
    files.mkdir()
    _write_wav(files / "big.wav", BIG_BYTES)
    _write_wav(files / "small.wav", SMALL_BYTES)
    server = subprocess.Popen(
        [sys.executable, "-c", _FILE_SERVER, str(files)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        results = {}
        for number, name in enumerate(("small", "big"), 1):
            root = work / f"memory-{name}"
            _single_file_manifests(root, f"http://127.0.0.1:{port}/{name}.wav", f"xc:{number}")
            run = run_birdgrab(["fetch", "--no-chunk", "--quiet"], {}, root).check(f"fetch of {name}.wav")
            results[name] = (run, _folder_bytes(root / "cache"))
            shutil.rmtree(root)
    finally:
        server.terminate()
        server.wait()
    (small, small_bytes), (big, big_bytes) = results["small"], results["big"]
    growth = big.max_rss_mb / small.max_rss_mb
    independent = growth <= GOAL_RSS_GROWTH
    return [
        f"peak RSS of birdgrab fetch: {big.max_rss_mb:.0f} MB for one {big_bytes / 1e6:.0f} MB file"
        f" ({big.wall_s:.1f} s, {_per_gb(big, big_bytes):.2f} CPU s/GB),"
        f" {small.max_rss_mb:.0f} MB for one {small_bytes / 1e6:.0f} MB file"
        f" -> {growth:.2f}x (goal: under {GOAL_RSS_MB:g} MB"
        f" {_verdict(big.max_rss_mb, GOAL_RSS_MB)}, independent of size"
        f" {'met' if independent else 'MISSED'})",
    ]


def run() -> list[str]:
    """Run every measurement in a temporary folder and return the report, one line per fact."""
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-fetch-") as tmp:
        work = Path(tmp)
        lines = _speed(work)
        started = time.perf_counter()
        lines += _memory(work)
        lines.append(f"(the memory test took {time.perf_counter() - started:.0f} s)")
        return lines


if __name__ == "__main__":
    print("\n".join(run()))
