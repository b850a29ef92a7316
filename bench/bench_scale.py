"""Benchmark of a catalogue's growth: catalog, a second catalog, filter, stats and a no-change
refresh at 10,000 / 100,000 / 1,000,000 xeno-canto recordings (issue 11).

The sandbox makes its bulk records on request (`SandboxConfig.xc_bulk_recordings`: listing only,
100 a species, 500 a page), so it serves a million cheaply; xeno-canto is unthrottled
(`BIRDGRAB_XC_RATE` far above what the sandbox can answer). birdgrab runs as the real CLI in a
child process: wall, its own CPU time and its own peak memory. Goals are absolute (peak memory
under 1 GB, time limits at a million) and ratios against the smallest size measured in the same
run (CPU per recording stays flat when growth is linear; a no-change refresh costs the same at
every size). Run with `python -m bench.bench_scale [SIZES...]`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import httpx

from bench.harness import Run, SandboxProcess, host_speed_s, run_birdgrab
from birdgrab.sandbox import SandboxConfig
from birdgrab.sources.xenocanto import DEFAULT_QUERY as DEFAULT_XC_QUERY

SIZES = (10_000, 100_000, 1_000_000)
UNTHROTTLED = {"BIRDGRAB_XC_RATE": "100000", "BIRDGRAB_XC_CONCURRENCY": "4"}
PEAK_GOAL_MB = 1000
CATALOG_GOAL_S = 180  # a catalogue of a million against an unthrottled local archive
READ_GOAL_S = 30  # filter and stats of a million
LINEAR_SLACK = 1.5  # CPU per recording at the largest size, at most this many times the smallest's
FLAT_SLACK = 1.5  # a no-change refresh at the largest size, at most this many times the smallest's

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
    the host's speed just before (`host_speed_s`)."""
    config = SandboxConfig(profile="scale", xc_bulk_recordings=size, hour_long=False)
    root = work / f"n{size}"
    runs: dict[str, Run] = {}
    speed = host_speed_s()
    with SandboxProcess(config, work) as sandbox:
        for label, args in STEPS:
            runs[label] = run_birdgrab([*args, "--quiet"], sandbox.env, root, UNTHROTTLED).check(label)
        listing = _listing_s(sandbox, f"{DEFAULT_XC_QUERY} since:{RECENT}")
    store_mb = (root / "manifests" / "recordings.sqlite").stat().st_size / 1e6
    shutil.rmtree(root)  # a million recordings take 1.5 GB of disk; the next size needs it
    return runs, store_mb, listing, speed


def _cell(run: Run) -> str:
    return f"{run.wall_s:6.1f} s {run.cpu_s:6.1f} s CPU {run.max_rss_mb:5.0f} MB"


def run(sizes: tuple[int, ...] = SIZES) -> list[str]:
    """Measure every size (smallest first) and return the report lines."""
    sizes = tuple(sorted(sizes))
    results: dict[int, tuple[dict[str, Run], float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-scale-") as tmp:
        for size in sizes:
            results[size] = measure(size, Path(tmp))
            runs = results[size][0]  # a million takes a while: each size is shown as soon as it is measured
            print(
                f"  N = {size:,}: " + "; ".join(f"{label} {_cell(run)}" for label, run in runs.items()),
                flush=True,
            )
    shown = [label for label, _ in STEPS if label != "filter for refresh"]
    lines = [
        f"xeno-canto listing of N bulk recordings (sandbox scale mode: made on request, 100 a species,"
        f" 500 a page), BIRDGRAB_XC_RATE={UNTHROTTLED['BIRDGRAB_XC_RATE']}; wall, CPU, peak memory:",
    ]
    for size in sizes:
        runs, store_mb, listing, speed = results[size]
        lines.append(
            f"  N = {size:,}: recordings.sqlite {store_mb:,.0f} MB; one listing page {listing:.2f} s;"
            f" host: 10M Python additions in {speed:.2f} s"
        )
        lines += [f"    {label:<18} {_cell(runs[label])}" for label in shown]
    small, large = sizes[0], sizes[-1]
    small_runs, large_runs = results[small][0], results[large][0]
    peaks = {
        label: large_runs[label].max_rss_mb for label in ("catalog", "second catalog", "filter", "stats")
    }
    worst = max(peaks, key=peaks.__getitem__)
    per_recording = {n: results[n][0]["catalog"].cpu_s / n for n in sizes}
    linear = per_recording[large] / per_recording[small]
    flat = large_runs["no-change refresh"].wall_s / small_runs["no-change refresh"].wall_s
    flat_mb = large_runs["no-change refresh"].max_rss_mb / small_runs["no-change refresh"].max_rss_mb
    catalog_s = large_runs["catalog"].wall_s
    reads_s = max(large_runs["filter"].wall_s, large_runs["stats"].wall_s)

    def verdict(met: bool) -> str:
        return "met" if met else "MISSED"

    lines += [
        f"  at N = {large:,}: highest peak {peaks[worst]:.0f} MB ({worst}; goal < {PEAK_GOAL_MB} MB for catalog,"
        f" second catalog, filter, stats) {verdict(max(peaks.values()) < PEAK_GOAL_MB)}",
        f"  catalog at N = {large:,}: {catalog_s:.0f} s (goal < {CATALOG_GOAL_S} s) {verdict(catalog_s < CATALOG_GOAL_S)};"
        f" filter/stats {reads_s:.1f} s (goal < {READ_GOAL_S} s) {verdict(reads_s < READ_GOAL_S)}",
        "  catalog CPU per recording: "
        + ", ".join(f"{n:,}: {per_recording[n] * 1e6:.0f} us" for n in sizes)
        + f" -> {linear:.2f}x from {small:,} to {large:,} (goal <= {LINEAR_SLACK:g}: linear) {verdict(linear <= LINEAR_SLACK)}",
        "  no-change refresh: "
        + ", ".join(f"{n:,}: {results[n][0]['no-change refresh'].wall_s:.1f} s" for n in sizes)
        + f" -> {flat:.2f}x from {small:,} to {large:,} (goal <= {FLAT_SLACK:g}: does not grow with the catalogue)"
        f" {verdict(flat <= FLAT_SLACK)}",
        "  no-change refresh peak: "
        + ", ".join(f"{n:,}: {results[n][0]['no-change refresh'].max_rss_mb:.0f} MB" for n in sizes)
        + f" -> {flat_mb:.2f}x (goal <= {FLAT_SLACK:g}) {verdict(flat_mb <= FLAT_SLACK)}",
    ]
    return lines


if __name__ == "__main__":
    chosen = tuple(int(arg.replace("_", "")) for arg in sys.argv[1:]) or SIZES
    print("\n".join(run(chosen)))
