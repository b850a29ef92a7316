"""Benchmark of a catalogue's growth: catalog, a second catalog, filter, stats and a no-change
refresh at two or more sizes of a xeno-canto listing, measured in one run (issue 11).

The sandbox makes its bulk records on request (`SandboxConfig.xc_bulk_recordings`: listing only,
100 a species, 500 a page), so it serves a million cheaply; xeno-canto is unthrottled
(`BIRDGRAB_XC_RATE` far above what the sandbox can answer). birdgrab runs as the real CLI in a
child process: wall, its own CPU time and its own peak memory. Growth is a ratio between the
largest and the smallest size of the same run (CPU per recording, beyond what the interpreter's
start-up costs, stays flat when growth is linear; a no-change refresh costs the same at every
size), so at least two sizes are needed; the host's speed and the start-up (`birdgrab --version`)
are measured before each size. Absolute goals (peak memory under 1 GB, time limits) are read
at the largest size; the time limits are for a million recordings.

`python -m bench scale` (10,000 and 100,000), `python -m bench scale --sizes 10000,1000000`
(`make bench-scale-1m`, saved as `scale-1m`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import httpx

from bench.harness import REPO, Report, Run, SandboxProcess, host_speed_s, run_birdgrab, run_process, verdict
from birdgrab.sandbox import SandboxConfig
from birdgrab.sources.xenocanto import DEFAULT_QUERY as DEFAULT_XC_QUERY

SIZES = (10_000, 100_000)  # `make bench`: minutes, and a tenfold step proves the growth ratio
QUICK_SIZES = (1_000, 10_000)
MILLION = 1_000_000  # the time goals are for a catalogue of this size
UNTHROTTLED = {"BIRDGRAB_XC_RATE": "100000", "BIRDGRAB_XC_CONCURRENCY": "4"}
PEAK_GOAL_MB = 1000
CATALOG_GOAL_S = 180  # a catalogue of a million against an unthrottled local archive
READ_GOAL_S = 30  # filter and stats of a million
LINEAR_SLACK = 1.5  # CPU per recording at the largest size, at most this many times the smallest's
FLAT_SLACK = 1.5  # a no-change refresh at the largest size, at most this many times the smallest's

STARTUP = "start-up (birdgrab --version)"  # what every step pays whatever the size
# What a nightly refresh asks xeno-canto for: uploads of the last three days (none, in the sandbox).
RECENT = (date.today() - timedelta(days=3)).isoformat()
# (label, arguments): the measured steps in order. The filter before the refresh selects no species
# (each has 100 recordings; synonyms merge a few into 200), so the refresh measures the catalogue, not 404s of bulk audio.
STEPS = (
    ("catalog", ["catalog", "--source", "xeno-canto", "--xc-query", DEFAULT_XC_QUERY]),
    ("second catalog", ["catalog", "--source", "xeno-canto", "--xc-query", DEFAULT_XC_QUERY]),
    ("filter", ["filter", "--min-files", "20", "--max-files", "20"]),
    ("stats", ["stats", "--json"]),
    ("filter for refresh", ["filter", "--min-files", "100000"]),
    ("no-change refresh", ["refresh", "--no-chunk", "--since", RECENT]),
)


def _listing_s(sandbox: SandboxProcess, query: str) -> float:
    """What one page of a listing costs with a plain httpx client (the floor of any refresh)."""
    params = {"query": query, "page": 1, "per_page": 500, "key": sandbox.env["BIRDGRAB_XC_KEY"]}
    response = httpx.get(sandbox.env["BIRDGRAB_XC_API"], params=params, timeout=60)
    response.raise_for_status()
    return response.elapsed.total_seconds()


def measure(size: int, work: Path) -> tuple[dict[str, Run], float, float, float]:
    """Every step at one size: the runs, the store's size in MB, one listing page's seconds and
    the host's speed just before (`host_speed_s`). The runs include STARTUP, `birdgrab --version`:
    the interpreter and the CLI's imports, which every step pays whatever the size."""
    config = SandboxConfig(profile="scale", xc_bulk_recordings=size, hour_long=False)
    root = work / f"n{size}"
    speed = host_speed_s()
    version = [sys.executable, "-m", "birdgrab", "--version"]
    runs = {STARTUP: run_process(version, os.environ, REPO).check("birdgrab --version")}
    with SandboxProcess(config, work) as sandbox:
        for label, args in STEPS:
            runs[label] = run_birdgrab([*args, "--quiet"], sandbox.env, root, UNTHROTTLED).check(label)
        listing = _listing_s(sandbox, f"{DEFAULT_XC_QUERY} since:{RECENT}")
    store_mb = (root / "manifests" / "recordings.sqlite").stat().st_size / 1e6
    shutil.rmtree(root)  # a million recordings take 1.5 GB of disk; the next size needs it
    return runs, store_mb, listing, speed


def _net_cpu_per_recording(run: Run, startup: Run, size: int) -> float:
    """CPU seconds per recording beyond the start-up; at least a millisecond in all, so that a
    step the start-up dominates gives a large ratio (a MISSED), never a division by zero."""
    return max(run.cpu_s - startup.cpu_s, 0.001) / size


def _cell(run: Run) -> str:
    return f"{run.wall_s:.1f} s / {run.cpu_s:.1f} s CPU / {run.max_rss_mb:.0f} MB"


def run(sizes: tuple[int, ...] = SIZES, quick: bool = False) -> Report:
    """Measure every size (smallest first) in one run; the report compares the largest with the smallest."""
    sizes = tuple(sorted(set(QUICK_SIZES if quick and sizes == SIZES else sizes)))
    if len(sizes) < 2:
        raise ValueError(f"scale needs at least two sizes to measure growth, got {sizes}")
    name = "scale-1m" if sizes[-1] >= MILLION else "scale"
    report = Report(name, quick=quick, options={"sizes": ",".join(map(str, sizes))}, command="scale")
    report.line(
        "xeno-canto listing of N bulk recordings (sandbox scale mode: made on request, 100 a species,"
        f" 500 a page), BIRDGRAB_XC_RATE={UNTHROTTLED['BIRDGRAB_XC_RATE']}; wall / CPU / peak memory:"
    )
    results: dict[int, tuple[dict[str, Run], float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-scale-") as tmp:
        for size in sizes:
            results[size] = measure(size, Path(tmp))
            runs, store_mb, listing, speed = results[size]
            report.record(f"N={size}", runs)
            report.line(
                f"N = {size:,}: recordings.sqlite {store_mb:,.0f} MB; one listing page {listing:.2f} s;"
                f" host yardstick before it {speed:.2f} s"
            )
            for label in (STARTUP, *(label for label, _ in STEPS)):
                if label != "filter for refresh":
                    report.line(f"  {label:<18} {_cell(runs[label])}")
    compare(report, results)
    return report.finish()


def compare(report: Report, results: dict[int, tuple[dict[str, Run], float, float, float]]) -> None:
    """The tables: every step at every size, and the goals, growth read from the smallest size to
    the largest (`results` is what `measure` returned per size)."""
    sizes = sorted(results)
    small, large = sizes[0], sizes[-1]
    small_runs, large_runs = results[small][0], results[large][0]
    speed_ratio = results[large][3] / results[small][3]
    shown = [label for label, _ in STEPS if label != "filter for refresh"]

    def cpu_growth(label: str) -> float:
        """A step's CPU per recording beyond start-up, largest size over smallest (linear: about 1 or less)."""
        return _net_cpu_per_recording(large_runs[label], large_runs[STARTUP], large) / _net_cpu_per_recording(
            small_runs[label], small_runs[STARTUP], small
        )

    report.table(
        "steps",
        ["step", *(f"N = {n:,}" for n in sizes), f"CPU per recording beyond start-up, {large:,} / {small:,}"],
        [[STARTUP, *(_cell(results[n][0][STARTUP]) for n in sizes), ""]]
        + [
            [label, *(_cell(results[n][0][label]) for n in sizes),
             f"{cpu_growth(label):.2f}x"]
            for label in shown
        ]
        + [["recordings.sqlite", *(f"{results[n][1]:,.0f} MB" for n in sizes), ""],
           ["host yardstick before the size", *(f"{results[n][3]:.2f} s" for n in sizes), ""]],
        note="wall / CPU / peak memory of birdgrab's own child process; wall includes the sandbox on the same cores.",
    )  # fmt: skip

    peaks = {
        label: large_runs[label].max_rss_mb for label in ("catalog", "second catalog", "filter", "stats")
    }
    worst = max(peaks, key=peaks.__getitem__)
    linear = cpu_growth("catalog")
    flat = large_runs["no-change refresh"].wall_s / small_runs["no-change refresh"].wall_s
    flat_mb = large_runs["no-change refresh"].max_rss_mb / small_runs["no-change refresh"].max_rss_mb
    catalog_s = large_runs["catalog"].wall_s
    reads_s = max(large_runs["filter"].wall_s, large_runs["stats"].wall_s)
    at_million = large >= MILLION
    growth = f"from {small:,} to {large:,}"
    rows = [
        [f"highest peak at {large:,} ({worst})", f"{peaks[worst]:.0f} MB", f"< {PEAK_GOAL_MB} MB",
         verdict(peaks[worst], PEAK_GOAL_MB)],
        [f"catalog CPU per recording beyond start-up, {growth}", f"{linear:.2f}x (host yardstick {speed_ratio:.2f}x)",
         f"<= {LINEAR_SLACK:g}x (linear)", verdict(linear, LINEAR_SLACK)],
        [f"no-change refresh wall, {growth}", f"{flat:.2f}x", f"<= {FLAT_SLACK:g}x (flat)", verdict(flat, FLAT_SLACK)],
        [f"no-change refresh peak, {growth}", f"{flat_mb:.2f}x", f"<= {FLAT_SLACK:g}x (flat)",
         verdict(flat_mb, FLAT_SLACK)],
        [f"catalog wall at {large:,}", f"{catalog_s:.1f} s", f"< {CATALOG_GOAL_S} s at {MILLION:,}",
         verdict(catalog_s, CATALOG_GOAL_S) if at_million else "(not a million)"],
        [f"filter, stats wall at {large:,} (slower)", f"{reads_s:.1f} s", f"< {READ_GOAL_S} s at {MILLION:,}",
         verdict(reads_s, READ_GOAL_S) if at_million else "(not a million)"],
    ]  # fmt: skip
    report.table("goals", ["figure", "value", "goal", "verdict"], rows)
    for figure, value, goal, met in rows:
        report.line(f"{figure}: {value} (goal {goal}) {met}")
