"""Benchmark of `birdgrab fetch --no-chunk`: 300 recordings of about 1 MB from the sandbox with
100 ms latency per request, against one-after-another downloads and `aria2c -j N` at the same
number of connections, the three taking turns round by round; and birdgrab's peak memory on a
500 MB file against a 1 MB one.

The sandbox (and the file server of the 500 MB file) run in their own processes; birdgrab,
aria2c and the sequential baseline each run as a child process measured with `os.wait4` (wall
seconds, CPU seconds) and VmHWM (peak RSS). `python -m bench fetch [--quick]`.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.harness import (
    REPO,
    FileServer,
    Report,
    Rounds,
    Run,
    SandboxProcess,
    requests_made,
    require_tool,
    run_birdgrab,
    run_process,
    verdict,
    write_selection,
)
from birdgrab.sandbox import Sandbox, SandboxConfig
from birdgrab.store import RecordingStore

SPECIES = 10
PER_SPECIES = 30
QUICK_PER_SPECIES = 6
AUDIO_BYTES = 1_000_000
LATENCY_S = 0.1  # per audio request: the xeno-canto `file` URL's redirect and the file itself
JOBS = 16
ROUNDS = 3
QUICK_ROUNDS = 2
BIG_BYTES = 500_000_000
QUICK_BIG_BYTES = 100_000_000
SMALL_BYTES = 1_000_000
GOAL_SPEEDUP = 8.0
GOAL_WALL_VS_ARIA2 = 1.1
GOAL_CPU_VS_ARIA2 = 3.0
GOAL_RSS_MB = 200.0
GOAL_RSS_GROWTH = 1.10  # "independent of file size": the big file may cost at most 10 % more

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


def _birdgrab_fetch(sandbox: SandboxProcess, base: Path, prepared: Path) -> Callable[[int], Run]:
    """One `birdgrab fetch --no-chunk` into an empty cache; notes bytes cached and requests made."""

    def fetch(round_number: int) -> Run:
        root = _fresh_root(base, "birdgrab", prepared)
        args = ["fetch", "--no-chunk", "--jobs", str(JOBS), "--per-host", str(JOBS), "--quiet"]
        sandbox.reset_stats()
        run = run_birdgrab(args, sandbox.env, root).check("birdgrab fetch")
        run.facts["requests"] = requests_made(sandbox.stats())
        run.facts["bytes"] = _folder_bytes(root / "cache")
        shutil.rmtree(root)
        return run

    return fetch


def _aria2c(urls: list[str], base: Path, aria2c: str) -> Callable[[int], Run]:
    def fetch(round_number: int) -> Run:
        folder = base / "aria2c"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        listing = base / "aria2c.txt"
        listing.write_text("".join(f"{url}\n  out={n}.audio\n" for n, url in enumerate(urls)))
        command = [aria2c, "-j", str(JOBS), "-x", "1", "-s", "1", "-i", str(listing), "-d", str(folder)]
        command += ["--file-allocation=none", "--allow-overwrite=true", "--auto-file-renaming=false"]
        command += ["--console-log-level=warn", "--summary-interval=0", "--download-result=hide", "-q"]
        run = run_process(command, os.environ, base).check("aria2c")
        run.facts["bytes"] = _folder_bytes(folder)
        shutil.rmtree(folder)
        return run

    return fetch


def _sequential(urls: list[str], base: Path) -> Callable[[int], Run]:
    def fetch(round_number: int) -> Run:
        folder = base / "sequential"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        listing = base / "sequential.txt"
        listing.write_text("\n".join(urls))
        argv = [sys.executable, "-c", _SEQUENTIAL, str(listing), str(folder)]
        run = run_process(argv, os.environ, REPO).check("sequential downloads")
        run.facts["bytes"] = _folder_bytes(folder)
        shutil.rmtree(folder)
        return run

    return fetch


def _per_gb(run: Run) -> float:
    return run.cpu_s / (run.facts["bytes"] / 1e9)


def _speed(work: Path, report: Report, per_species: int, rounds: int) -> None:
    aria2c = require_tool("aria2c", "aria2")
    config = SandboxConfig(
        profile="scale",
        extra_species=SPECIES,
        recordings_per_species=per_species,
        audio_bytes=AUDIO_BYTES,
        hour_long=False,
    )
    files, total = _prerender(config)
    with SandboxProcess(config, work) as sandbox:
        prepared = work / "prepared"
        urls = _prepare(sandbox, prepared)
        sandbox.set_latency("audio", LATENCY_S)
        report.line(
            f"fetching {len(urls)} recordings ({files} files, {total / 1e6:.0f} MB, about"
            f" {total / files / 1e6:.1f} MB each) with {LATENCY_S * 1000:.0f} ms latency per request"
            f" (each xeno-canto file URL redirects: 2 requests a file), {JOBS} connections, {rounds} rounds"
        )
        runs = report.contest(
            "speed",
            {
                f"birdgrab fetch --jobs {JOBS}": _birdgrab_fetch(sandbox, work, prepared),
                f"aria2c -j {JOBS} -x 1": _aria2c(urls, work, aria2c),
                "one after another (httpx loop)": _sequential(urls, work),
            },
            rounds,
        )
    birdgrab, aria2, sequential = runs.values()
    for name, runs_of in runs.items():
        for run in runs_of:
            if run.facts["bytes"] != total:
                raise RuntimeError(f"{name} fetched {run.facts['bytes']} bytes of {total}")

    def row(name: str, runs_of: Rounds) -> list[str]:
        median_per_gb = sorted(_per_gb(run) for run in runs_of)[len(runs_of) // 2]
        return [name, f"{runs_of.best.wall_s:.2f} s", f"{runs_of.median_wall_s:.2f} s",
                f"{median_per_gb:.1f}", f"{runs_of.peak_mb:.0f} MB"]  # fmt: skip

    rows = [row(name, runs_of) for name, runs_of in runs.items()]
    for cells in rows:
        report.line(
            f"  {cells[0]:32s} best {cells[1]}, median {cells[2]}, {cells[3]} CPU s/GB, peak {cells[4]}"
        )
    report.table(
        "speed",
        ["run", "wall, best", "wall, median", "CPU s/GB, median", "peak RSS"],
        rows,
        note=f"birdgrab made {birdgrab.best.facts['requests']} requests; every run fetched all {total / 1e6:.0f} MB.",
    )
    speedup = sequential.best.wall_s / birdgrab.best.wall_s
    wall_ratio = birdgrab.best.wall_s / aria2.best.wall_s
    median_ratio = birdgrab.median_wall_s / aria2.median_wall_s
    cpu_ratio = (birdgrab.median_cpu_s / birdgrab.best.facts["bytes"]) / (
        aria2.median_cpu_s / aria2.best.facts["bytes"]
    )
    goals = [
        ["speed-up over one after another (best wall)", f"{speedup:.1f}x", f">= {GOAL_SPEEDUP:g}x",
         verdict(speedup, GOAL_SPEEDUP, at_least=True)],
        ["wall, birdgrab / aria2c (best; median)", f"{wall_ratio:.2f}x; {median_ratio:.2f}x",
         f"<= {GOAL_WALL_VS_ARIA2:g}x", verdict(wall_ratio, GOAL_WALL_VS_ARIA2)],
        ["CPU per GB, birdgrab / aria2c (medians)", f"{cpu_ratio:.2f}x", f"<= {GOAL_CPU_VS_ARIA2:g}x",
         verdict(cpu_ratio, GOAL_CPU_VS_ARIA2)],
    ]  # fmt: skip
    report.table("goals", ["figure", "value", "goal", "verdict"], goals)
    for figure, value, goal, met in goals:
        report.line(f"  {figure}: {value} (goal {goal}) {met}")


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


def _memory(work: Path, report: Report, big_bytes: int) -> None:
    """Peak memory of fetching one big file against one small one: downloads stream to disk."""
    files = work / "files"
    files.mkdir()
    _write_wav(files / "big.wav", big_bytes)
    _write_wav(files / "small.wav", SMALL_BYTES)
    results: dict[str, Run] = {}
    with FileServer(files) as server:
        for name in ("small", "big"):
            root = work / f"memory-{name}"
            write_selection(root, {"Benchus maximus": [server.url(f"{name}.wav")]})
            run = run_birdgrab(["fetch", "--no-chunk", "--quiet"], {}, root).check(f"fetch of {name}.wav")
            run.facts["bytes"] = _folder_bytes(root / "cache")
            results[name] = run
            shutil.rmtree(root)
    report.record("memory", results)
    small, big = results["small"], results["big"]
    growth = big.max_rss_mb / small.max_rss_mb
    rows = [
        [f"one {run.facts['bytes'] / 1e6:.0f} MB file", f"{run.wall_s:.1f} s", f"{_per_gb(run):.2f}",
         f"{run.max_rss_mb:.0f} MB"]
        for run in (small, big)
    ]  # fmt: skip
    report.table(
        "memory",
        ["birdgrab fetch of", "wall", "CPU s/GB", "peak RSS"],
        rows,
        note=f"Peak {growth:.2f}x for the big file (goal: under {GOAL_RSS_MB:g} MB"
        f" {verdict(big.max_rss_mb, GOAL_RSS_MB)}; independent of size, at most {GOAL_RSS_GROWTH:g}x,"
        f" {verdict(growth, GOAL_RSS_GROWTH)}).",
    )
    report.line(
        f"peak RSS of birdgrab fetch: {big.max_rss_mb:.0f} MB for one {big.facts['bytes'] / 1e6:.0f} MB file,"
        f" {small.max_rss_mb:.0f} MB for one {small.facts['bytes'] / 1e6:.0f} MB file -> {growth:.2f}x"
        f" (goal under {GOAL_RSS_MB:g} MB {verdict(big.max_rss_mb, GOAL_RSS_MB)},"
        f" at most {GOAL_RSS_GROWTH:g}x {verdict(growth, GOAL_RSS_GROWTH)})"
    )


def run(quick: bool = False) -> Report:
    """Every measurement in a temporary folder; `quick`: 60 recordings, a 100 MB big file."""
    report = Report("fetch", quick=quick)
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-fetch-") as tmp:
        work = Path(tmp)
        _speed(work, report, QUICK_PER_SPECIES if quick else PER_SPECIES, QUICK_ROUNDS if quick else ROUNDS)
        _memory(work, report, QUICK_BIG_BYTES if quick else BIG_BYTES)
    return report.finish()
