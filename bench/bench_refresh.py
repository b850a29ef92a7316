"""Benchmark of `birdgrab refresh` when nothing changed upstream, against a full rebuild (catalog +
filter + fetch with chunking, from empty folders) of the same sandbox archive in the same run.

Each round builds the archive from nothing into a fresh folder and then refreshes it twice (the
first refresh has no refresh.json yet and lists everything; the second asks only for uploads since
the first), so rebuilds and refreshes alternate. The sandbox runs in its own process and counts the
requests; birdgrab runs as the real CLI in child processes. BIRDGRAB_XC_RATE is set high for every
run, so that the politeness limit (1 request/s by default) does not decide the rebuild's time.
`python -m bench refresh [--quick]`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.harness import Report, Run, SandboxProcess, requests_made, run_birdgrab, verdict
from birdgrab.sandbox import Sandbox, SandboxConfig

SPECIES = 20
PER_SPECIES = 30
QUICK_SPECIES = 5
QUICK_PER_SPECIES = 10
ROUNDS = 2
JOBS = 8
TUNING = {"BIRDGRAB_XC_RATE": "50"}
GOAL_CHEAPER = 10.0


def _prerender(config: SandboxConfig) -> None:
    """Render the archive's audio into the sandbox's on-disk cache before anything is timed."""
    sandbox = Sandbox(config)  # never started: only its archive and audio cache are used
    keys = [r.key for r in sandbox.archive.xc.values() if r.audio]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(sandbox.audio_path, keys))


KINDS = ("xc-api", "xc-download", "xc-audio", "wiki-api")
REBUILD = (
    ["catalog", "--source", "xeno-canto"],
    ["filter", "--min-files", "1"],
    ["fetch", "--jobs", str(JOBS)],
)


def _step(sandbox: SandboxProcess, root: Path, args: list[str]) -> Run:
    """One birdgrab command; notes the sandbox's request counters for it."""
    sandbox.reset_stats()
    run = run_birdgrab([*args, "--quiet"], sandbox.env, root, TUNING).check(f"birdgrab {args[0]}")
    stats = sandbox.stats()
    run.facts.update({"requests": requests_made(stats), **{kind: stats[kind] for kind in KINDS}})
    return run


def _rebuild(sandbox: SandboxProcess, work: Path) -> Callable[[int], Run]:
    """catalog + filter + fetch with chunking into an empty folder, as one run (times and requests summed)."""

    def rebuild(round_number: int) -> Run:
        root = work / f"archive{round_number}"
        steps = [_step(sandbox, root, list(args)) for args in REBUILD]
        facts = {key: sum(step.facts[key] for step in steps) for key in steps[0].facts}
        parts = {args[0]: round(step.wall_s, 2) for args, step in zip(REBUILD, steps, strict=True)}
        return Run(sum(s.wall_s for s in steps), sum(s.cpu_s for s in steps), max(s.max_rss_mb for s in steps), 0,
                   facts={**facts, "steps_wall_s": parts})  # fmt: skip

    return rebuild


def _refresh(sandbox: SandboxProcess, work: Path) -> Callable[[int], Run]:
    def refresh(round_number: int) -> Run:
        return _step(sandbox, work / f"archive{round_number}", ["refresh", "--jobs", str(JOBS)])

    return refresh


def _describe_requests(facts: dict) -> str:
    return ", ".join(f"{kind} {facts[kind]}" for kind in KINDS if facts[kind]) or "none"


def run(quick: bool = False) -> Report:
    """Build the archive from nothing, then refresh it twice with nothing changed, ROUNDS times."""
    species, per_species = (QUICK_SPECIES, QUICK_PER_SPECIES) if quick else (SPECIES, PER_SPECIES)
    config = SandboxConfig(
        profile="scale", extra_species=species, recordings_per_species=per_species, hour_long=False
    )
    _prerender(config)
    report = Report("refresh", quick=quick)
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-refresh-") as tmp:
        work = Path(tmp)
        with SandboxProcess(config, work) as sandbox:
            runs = report.contest(
                "refresh",
                {
                    "full rebuild (catalog + filter + fetch with chunking, from empty folders)": _rebuild(sandbox, work),
                    "first refresh (no refresh.json yet: a full listing)": _refresh(sandbox, work),
                    "second refresh (incremental: uploads since the first)": _refresh(sandbox, work),
                },
                ROUNDS,
            )  # fmt: skip
        root = work / "archive0"
        selection = json.loads((root / "manifests" / "selection.json").read_text())
        chunks = json.loads((root / "manifests" / "chunks.json").read_text())["entries"]
        summary = json.loads((root / "manifests" / "refresh.json").read_text())["last_summary"]
    selected = sum(len(s["recordings"]) for s in selection["species"].values())
    rebuild, first, second = runs.values()
    report.line(
        f"{species} species x {per_species} recordings: {selected} selected, {len(chunks)} recordings chunked;"
        f" BIRDGRAB_XC_RATE={TUNING['BIRDGRAB_XC_RATE']} for every run, --jobs {JOBS}, {ROUNDS} rounds"
    )
    rows, goals = [], []
    for name, runs_of in runs.items():
        best = runs_of.best
        rows.append([name, f"{best.wall_s:.1f} s", f"{runs_of.median_wall_s:.1f} s", f"{runs_of.median_cpu_s:.1f} s",
                     f"{best.facts['requests']:,} ({_describe_requests(best.facts)})"])  # fmt: skip
        report.line(
            f"  {name}: best {rows[-1][1]}, median {rows[-1][2]}, CPU {rows[-1][3]}, requests {rows[-1][4]}"
        )
    for label, runs_of in (("first refresh", first), ("second refresh", second)):
        time_ratio = rebuild.best.wall_s / runs_of.best.wall_s
        requests = runs_of.best.facts["requests"]
        request_ratio = rebuild.best.facts["requests"] / requests if requests else float("inf")
        goals += [
            [f"{label}: cheaper than a rebuild in time (best walls)", f"{time_ratio:.1f}x", f">= {GOAL_CHEAPER:g}x",
             verdict(time_ratio, GOAL_CHEAPER, at_least=True)],
            [f"{label}: fewer requests than a rebuild", "no requests" if not requests else f"{request_ratio:.0f}x",
             f">= {GOAL_CHEAPER:g}x", verdict(request_ratio, GOAL_CHEAPER, at_least=True)],
        ]  # fmt: skip
    report.table("runs", ["run", "wall, best", "wall, median", "CPU, median", "requests"], rows)
    report.table("goals", ["figure", "value", "goal", "verdict"], goals)
    for figure, value, goal, met in goals:
        report.line(f"  {figure}: {value} (goal {goal}) {met}")
    changed = {key: summary[key] for key in ("new_recordings", "files_downloaded", "chunks_written")}
    report.line(f"  the last refresh's summary: {changed}")
    return report.finish()
