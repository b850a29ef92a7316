"""Call-aware windows against the clock: how many windows hold a call, how many calls a window holds.

Sandbox recordings with calls planted at known times (near and far, 26 dB apart) over field noise
(wind in gusts, a stream, a road, insects, handling clicks), and a few of field noise alone, rendered
to stereo FLAC at 44.1 kHz, are cut into 10 s windows at 32 kHz by `--windows events` and by the
default `--windows fixed` with the 25 dB silence gate, on the same files.

- window precision: windows holding at least 1 s of calls (or a whole shorter call), over all windows;
- call recall: calls held by some window (1 s of them, or all of a shorter one), over all calls;
- time: cutting every file, the two modes taking turns for ROUNDS rounds, events / fixed, as wall
  time and as the CPU time of this process (the fairer one on a shared machine: other load does not
  count). The cutting is measured as a library call here (`run_here`): both modes read the same
  files, and the windows they chose are what the precision and recall are computed from.

`python -m bench windows [--quick]` (quick: 8 recordings with calls and 2 of noise alone).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.harness import Report, Run, run_here, verdict
from birdgrab.dataset.cutting import ChunkInfo, cut_recording
from birdgrab.dataset.options import ChunkOptions, WindowMode
from birdgrab.dataset.windows import windowing_for
from birdgrab.sandbox.synth import AudioSpec, planted_calls, render, voice_for
from birdgrab.storage import LocalStorage

SPECIES = [
    "Turdus philomelos",
    "Parus major",
    "Erithacus rubecula",
    "Fringilla coelebs",
    "Sylvia atricapilla",
]
CALLING = 16
NOISE_ONLY = 4
SECONDS = 60.0
ROUNDS = 2
GOAL_TIME_RATIO = 1.2  # events / fixed
GOAL_EVENTS = 0.95  # window precision and call recall of `events`


def _specs(calling: int, noise_only: int) -> list[AudioSpec]:
    specs = [
        AudioSpec("flac", 44100, 2, SECONDS, voice_for(SPECIES[i % len(SPECIES)]), 100 + i,
                  activity=(0.15, 0.3, 0.6, 0.9)[i % 4], background="field")
        for i in range(calling)
    ]  # fmt: skip
    specs += [
        AudioSpec("flac", 44100, 2, SECONDS, voice_for("none"), 200 + i, activity=0.0, background="field")
        for i in range(noise_only)
    ]
    return specs


def _held(call: tuple[float, float], chunk: ChunkInfo) -> bool:
    start, end = chunk.offset_s, chunk.offset_s + chunk.duration_s - chunk.padded_s
    return min(end, call[1]) - max(call[0], start) >= min(1.0, call[1] - call[0]) - 1e-3


def _cut_all(files: list[tuple[Path, AudioSpec]], mode: WindowMode, out: Path) -> list[list[ChunkInfo]]:
    options = ChunkOptions(windows=mode)
    return [
        cut_recording(src, LocalStorage(out), src.stem, src.stem, windowing_for(options), sample_rate=options.sample_rate,
                      chunk_frames=options.chunk_frames).chunks
        for src, _ in files
    ]  # fmt: skip


def _contender(
    files: list[tuple[Path, AudioSpec]], mode: WindowMode, work: Path, chosen: dict
) -> Callable[[int], Run]:
    def cut(round_number: int) -> Run:
        run, chosen[mode] = run_here(lambda: _cut_all(files, mode, work / f"{mode}{round_number}"))
        return run

    return cut


def run(quick: bool = False) -> Report:
    calling, noise_only = (CALLING // 2, NOISE_ONLY // 2) if quick else (CALLING, NOISE_ONLY)
    report = Report("windows", quick=quick)
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-windows-") as tmp:
        work = Path(tmp)
        files = []
        for spec in _specs(calling, noise_only):
            path = work / f"rec{spec.variation}.flac"
            render(spec, path)
            files.append((path, spec))
        calls = [planted_calls(spec) for _, spec in files]
        chosen: dict[str, list[list[ChunkInfo]]] = {}
        runs = report.contest(
            "cutting", {mode: _contender(files, mode, work, chosen) for mode in ("fixed", "events")}, ROUNDS
        )
        report.line(
            f"{calling} recordings with {sum(map(len, calls))} planted calls over field noise + {noise_only} of "
            f"field noise alone, {SECONDS:.0f} s each, stereo FLAC 44.1 kHz -> 10 s windows at 32 kHz, {ROUNDS} rounds"
        )
        rows, scores = [], {}
        for mode, label in (("fixed", "`fixed` + 25 dB gate (the default)"), ("events", "`events`")):
            chunks = chosen[mode]
            windows = [c for per_file in chunks for c in per_file]
            on_call = sum(
                any(_held(call, c) for call in file_calls)
                for per_file, file_calls in zip(chunks, calls, strict=True)
                for c in per_file
            )
            held = sum(
                any(_held(call, c) for c in per_file)
                for per_file, file_calls in zip(chunks, calls, strict=True)
                for call in file_calls
            )
            noise_windows = sum(len(per_file) for per_file in chunks[calling:])
            precision, recall = on_call / max(len(windows), 1), held / sum(map(len, calls))
            scores[mode] = (precision, recall)
            rows.append([label, str(len(windows)), str(noise_windows), f"{precision:.3f}", f"{recall:.3f}",
                         f"{runs[mode].best.wall_s:.2f} s", f"{runs[mode].median_cpu_s:.2f} s"])  # fmt: skip
            report.line(
                f"  {label:36s} {len(windows):4d} windows ({noise_windows} from noise-only files): window precision"
                f" {precision:.3f}, call recall {recall:.3f}, best {rows[-1][5]} wall, median {rows[-1][6]} CPU"
            )
        report.table(
            "windows",
            ["windows", "written", "from noise-only files", "window precision", "call recall", "wall, best", "CPU, median"],
            rows,
            note="Window precision: windows holding at least 1 s of calls (or a whole shorter call); call recall:"
            " calls held by a window.",
        )  # fmt: skip
        wall = runs["events"].best.wall_s / runs["fixed"].best.wall_s
        cpu = runs["events"].median_cpu_s / runs["fixed"].median_cpu_s
        precision, recall = scores["events"]
        goals = [
            ["events: window precision", f"{precision:.3f}", f">= {GOAL_EVENTS:g}", verdict(precision, GOAL_EVENTS, at_least=True)],
            ["events: call recall", f"{recall:.3f}", f">= {GOAL_EVENTS:g}", verdict(recall, GOAL_EVENTS, at_least=True)],
            ["chunking time events / fixed, wall (best)", f"{wall:.2f}", f"<= {GOAL_TIME_RATIO:g}", verdict(wall, GOAL_TIME_RATIO)],
            ["chunking time events / fixed, CPU (median)", f"{cpu:.2f}", f"<= {GOAL_TIME_RATIO:g}", verdict(cpu, GOAL_TIME_RATIO)],
        ]  # fmt: skip
        report.table("goals", ["figure", "value", "goal", "verdict"], goals)
        for figure, value, goal, met in goals:
            report.line(f"  {figure}: {value} (goal {goal}) {met}")
    return report.finish()
