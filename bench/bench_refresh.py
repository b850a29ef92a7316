"""Benchmark of `birdgrab refresh` when nothing changed upstream, against a full rebuild (catalog +
filter + fetch with chunking, from empty folders) of the same sandbox archive in the same run.

The sandbox runs in its own process and counts the requests; birdgrab runs as the real CLI in
child processes. BIRDGRAB_XC_RATE is set high for both, so that the politeness limit (1 request/s
by default) does not decide the rebuild's time. Run with `python -m bench.bench_refresh`.
"""

from __future__ import annotations

import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.harness import Run, SandboxProcess, requests_made, run_birdgrab
from birdgrab.sandbox import Sandbox, SandboxConfig

SPECIES = 20
PER_SPECIES = 30
JOBS = 8
TUNING = {"BIRDGRAB_XC_RATE": "50"}
GOAL_CHEAPER = 10.0


def _prerender(config: SandboxConfig) -> None:
    """Render the archive's audio into the sandbox's on-disk cache before anything is timed."""
    sandbox = Sandbox(config)  # never started: only its archive and audio cache are used
    keys = [r.key for r in sandbox.archive.xc.values() if r.audio]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(sandbox.audio_path, keys))


def _step(sandbox: SandboxProcess, root: Path, args: list[str]) -> tuple[Run, dict]:
    """Run one birdgrab command; returns its measurement and the sandbox's counters for it."""
    sandbox.reset_stats()
    run = run_birdgrab([*args, "--quiet"], sandbox.env, root, TUNING).check(f"birdgrab {args[0]}")
    return run, sandbox.stats()


KINDS = ("xc-api", "xc-download", "xc-audio", "wiki-api")


def _describe_requests(stats: dict) -> str:
    kinds = {name: stats[name] for name in KINDS if stats[name]}
    return ", ".join(f"{name} {count}" for name, count in kinds.items()) or "none"


def _refresh_line(label: str, run: Run, stats: dict, rebuild_s: float, rebuild_requests: int) -> str:
    requests = requests_made(stats)
    time_ratio = rebuild_s / run.wall_s
    request_ratio = rebuild_requests / requests if requests else float("inf")
    met = time_ratio >= GOAL_CHEAPER and request_ratio >= GOAL_CHEAPER
    return (
        f"  {label}: {run.wall_s:.1f} s ({run.cpu_s:.1f} s CPU), {requests} requests"
        f" ({_describe_requests(stats)}) -> {time_ratio:.1f}x cheaper in time, "
        + ("no requests at all" if not requests else f"{request_ratio:.0f}x in requests")
        + f" (goal >= {GOAL_CHEAPER:g}x) {'met' if met else 'MISSED'}"
    )


def run() -> list[str]:
    """Build the archive from nothing, then refresh it twice with nothing changed; report lines."""
    config = SandboxConfig(
        profile="scale", extra_species=SPECIES, recordings_per_species=PER_SPECIES, hour_long=False
    )
    _prerender(config)
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-refresh-") as tmp:
        work = Path(tmp)
        root = work / "archive"
        with SandboxProcess(config, work) as sandbox:
            steps = {
                "catalog": ["catalog", "--source", "xeno-canto"],
                "filter": ["filter", "--min-files", "1"],
                "fetch": ["fetch", "--jobs", str(JOBS)],
            }
            rebuild = {name: _step(sandbox, root, args) for name, args in steps.items()}
            first = _step(sandbox, root, ["refresh", "--jobs", str(JOBS)])
            second = _step(sandbox, root, ["refresh", "--jobs", str(JOBS)])
        selection = json.loads((root / "manifests" / "selection.json").read_text())
        chunks = json.loads((root / "manifests" / "chunks.json").read_text())["entries"]
        summary = json.loads((root / "manifests" / "refresh.json").read_text())["last_summary"]
    selected = sum(len(s["recordings"]) for s in selection["species"].values())
    rebuild_s = sum(run.wall_s for run, _ in rebuild.values())
    rebuild_requests = sum(requests_made(stats) for _, stats in rebuild.values())
    parts = ", ".join(f"{name} {run.wall_s:.1f} s" for name, (run, _) in rebuild.items())
    changed = {key: summary[key] for key in ("new_recordings", "files_downloaded", "chunks_written")}
    return [
        f"{SPECIES} species x {PER_SPECIES} recordings: {selected} selected, {len(chunks)} recordings chunked;"
        f" BIRDGRAB_XC_RATE={TUNING['BIRDGRAB_XC_RATE']} for every run (so the 1 request/s default"
        f" does not decide the times), --jobs {JOBS}",
        f"  full rebuild (catalog + filter + fetch with chunking, from empty folders): {rebuild_s:.1f} s"
        f" ({parts}), {rebuild_requests} requests"
        f" ({_describe_requests({k: sum(s[k] for _, s in rebuild.values()) for k in KINDS})})",
        _refresh_line(
            "first refresh (no refresh.json yet: a full listing)", *first, rebuild_s, rebuild_requests
        ),
        _refresh_line(
            "second refresh (incremental: uploads since the first)", *second, rebuild_s, rebuild_requests
        ),
        f"  the second refresh's summary: {changed}",
    ]


if __name__ == "__main__":
    print("\n".join(run()))
