"""Dealing splits by site against dealing them per recording, at a million recordings.

`--split-by site` clusters recordings within `--site-km` of each other (`birdgrab.dataset.sites`),
joins recordings that only name a locality to the sites sharing it, and deals whole sites to
train, validation and test (`splits.assign_group_splits`); the default deals each recording on its
own (`splits.assign_splits`), the baseline. Both run in a child process of their own (so its peak
memory is the step's), over the same generated catalogue: recordings of 10,000 classes gathered
around 20,000 hotspots (most within a few km of one, as real field recordings are), a tenth of
them with a locality and no coordinates. Each child generates the catalogue (not timed), then
times the dealing alone and checks what it dealt: every recording has a split, and with sites no
site is in two splits.

Goals (issue 19): the site split of 1,000,000 recordings in under 30 s and 1 GB; the ratio to the
per-recording split is shown beside it (both measured in turns in the same run).

`python -m bench split [--quick]` (quick: 20,000 recordings).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict

import numpy as np

from bench.harness import REPO, Report, Run, run_process, verdict

SIZE = 1_000_000
QUICK_SIZE = 20_000
CLASSES = 10_000
HOTSPOTS = 20_000
ROUNDS = 2
GOAL_S = 30.0
GOAL_MB = 1024.0
WEIGHTS = (80, 10, 10)


def _catalogue(size: int) -> tuple[dict[str, list[str]], list]:
    """(class -> recording keys, the places of the recordings): fixed by a seed, the same in both children."""
    from birdgrab.dataset.sites import Place

    rng = np.random.default_rng(19)
    keys = [f"xc:{n}" for n in range(size)]
    label = rng.integers(0, CLASSES, size)
    centre_lat = rng.uniform(35.0, 65.0, HOTSPOTS)
    centre_lon = rng.uniform(-10.0, 35.0, HOTSPOTS)
    hotspot = rng.integers(0, HOTSPOTS, size)
    spread_km = rng.choice([0.2, 2.0, 20.0], size, p=[0.5, 0.35, 0.15])
    lat = centre_lat[hotspot] + rng.normal(0, 1, size) * spread_km / 111.0
    lon = centre_lon[hotspot] + rng.normal(0, 1, size) * spread_km / 70.0
    unplaced = rng.random(size) < 0.1
    by_label: dict[str, list[str]] = defaultdict(list)
    for key, cls in zip(keys, label.tolist(), strict=True):
        by_label[f"Class_{cls}"].append(key)
    places = [
        Place(key, None, None, f"Place {h}", "Germany")
        if off
        else Place(key, float(la), float(lo), f"Place {h}", "Germany")
        for key, la, lo, h, off in zip(keys, lat.tolist(), lon.tolist(), hotspot.tolist(), unplaced.tolist(), strict=True)
    ]  # fmt: skip
    return dict(by_label), places


def child(mode: str, size: int) -> None:
    """One contender's work (run as `python -m bench.bench_split MODE SIZE`): prints its facts as JSON."""
    from birdgrab.dataset.sites import site_groups
    from birdgrab.dataset.splits import assign_group_splits, assign_splits

    by_label, places = _catalogue(size)
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "site":
        groups = site_groups(places, 1.0)
        splits = assign_group_splits(by_label, groups, {}, WEIGHTS).splits
    else:
        groups = {}
        splits = assign_splits(by_label, {}, WEIGHTS)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if len(splits) != size:
        raise SystemExit(f"{mode}: {len(splits)} of {size} recordings have a split")
    split_of_group: dict[str, set[str]] = defaultdict(set)
    for key, group in groups.items():
        split_of_group[group].add(splits[key])
    leaking = sum(1 for found in split_of_group.values() if len(found) > 1)
    if leaking:
        raise SystemExit(f"{mode}: {leaking} sites are in two splits")
    print(
        json.dumps(
            {"split_s": seconds, "split_cpu_s": cpu, "sites": len(split_of_group), "recordings": len(splits)}
        )
    )


def run(quick: bool = False) -> Report:
    report = Report("split", quick=quick)
    size = QUICK_SIZE if quick else SIZE

    def contender(mode: str):
        def measure(round_number: int) -> Run:
            run = run_process([sys.executable, "-m", "bench.bench_split", mode, str(size)], os.environ, REPO)
            run.check(f"the {mode} split")
            run.facts.update(json.loads(run.output.strip().splitlines()[-1]))
            return run

        return measure

    runs = report.contest(
        "deal", {"by site": contender("site"), "by recording": contender("recording")}, rounds=ROUNDS
    )
    site, recording = runs["by site"], runs["by recording"]
    site_s, recording_s = (min(r.facts["split_s"] for r in runs_) for runs_ in (site, recording))
    site_cpu, recording_cpu = (min(r.facts["split_cpu_s"] for r in runs_) for runs_ in (site, recording))
    ratio = site_cpu / recording_cpu
    report.line(
        f"{size:,} recordings, {site.best.facts['sites']:,} sites: by site {site_cpu:.1f} s CPU "
        f"({site_s:.1f} s wall), {site.peak_mb:.0f} MB peak; by recording {recording_cpu:.1f} s CPU "
        f"({recording_s:.1f} s wall), {recording.peak_mb:.0f} MB peak; site / recording {ratio:.2f}"
    )
    report.table(
        "goals",
        ["figure", "value", "goal", "verdict"],
        [
            [
                f"--split-by site, {size:,} recordings: dealing CPU time",
                f"{site_cpu:.1f} s",
                f"< {GOAL_S:g} s",
                verdict(site_cpu, GOAL_S),
            ],
            ["its wall time (on this run's load)", f"{site_s:.1f} s", "shown", "-"],
            [
                "its peak memory (child process, catalogue included)",
                f"{site.peak_mb:.0f} MB",
                f"< {GOAL_MB:g} MB",
                verdict(site.peak_mb, GOAL_MB),
            ],
            ["dealing CPU, by site / by recording (same run, in turns)", f"{ratio:.2f}", "shown", "-"],
            ["peak memory, by recording (the baseline)", f"{recording.peak_mb:.0f} MB", "shown", "-"],
        ],
        note="The dealing alone is timed, by the child's own clocks; it is one thread, so its CPU time is "
        "its wall time on an idle core (the goal is judged on it: these hosts are shared). The catalogue "
        "is generated first in the same process, so the peak memory includes it.",
    )
    return report.finish()


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]))
