"""Call-aware windows against the clock: how many windows hold a call, how many calls a window holds.

Sandbox recordings with calls planted at known times (near and far, 26 dB apart) over field noise
(wind in gusts, a stream, a road, insects, handling clicks), and a few of field noise alone, rendered
to stereo FLAC at 44.1 kHz, are cut into 10 s windows at 32 kHz by `--windows events` and by the
default `--windows fixed` with the 25 dB silence gate, on the same files.

- window precision: windows holding at least 1 s of calls (or a whole shorter call), over all windows;
- call recall: calls held by some window (1 s of them, or all of a shorter one), over all calls;
- time: cutting every file, best of two rounds, events / fixed, as wall time and as the CPU time of
  this process (the fairer one on a shared machine: other load does not count).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from birdgrab.dataset.cutting import ChunkInfo, cut_recording
from birdgrab.dataset.options import ChunkOptions, WindowMode
from birdgrab.dataset.windows import windowing_for
from birdgrab.sandbox.synth import AudioSpec, planted_calls, render, voice_for

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


def _specs() -> list[AudioSpec]:
    specs = [
        AudioSpec("flac", 44100, 2, SECONDS, voice_for(SPECIES[i % len(SPECIES)]), 100 + i,
                  activity=(0.15, 0.3, 0.6, 0.9)[i % 4], background="field")
        for i in range(CALLING)
    ]  # fmt: skip
    specs += [
        AudioSpec("flac", 44100, 2, SECONDS, voice_for("none"), 200 + i, activity=0.0, background="field")
        for i in range(NOISE_ONLY)
    ]
    return specs


def _held(call: tuple[float, float], chunk: ChunkInfo) -> bool:
    start, end = chunk.offset_s, chunk.offset_s + chunk.duration_s - chunk.padded_s
    return min(end, call[1]) - max(call[0], start) >= min(1.0, call[1] - call[0]) - 1e-3


def _cut_all(
    files: list[tuple[Path, AudioSpec]], mode: WindowMode, out: Path
) -> tuple[float, float, list[list[ChunkInfo]]]:
    options = ChunkOptions(windows=mode)
    started, cpu = time.perf_counter(), time.process_time()
    chunks = [
        cut_recording(src, out / src.stem, src.stem, windowing_for(options), sample_rate=options.sample_rate,
                      chunk_frames=options.chunk_frames).chunks
        for src, _ in files
    ]  # fmt: skip
    return time.perf_counter() - started, time.process_time() - cpu, chunks


def run() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-windows-") as tmp:
        work = Path(tmp)
        files = []
        for spec in _specs():
            path = work / f"rec{spec.variation}.flac"
            render(spec, path)
            files.append((path, spec))
        calls = [planted_calls(spec) for _, spec in files]
        results: dict[str, tuple[float, float, list[list[ChunkInfo]]]] = {}
        for round_number in range(ROUNDS):
            for mode in ("fixed", "events"):  # taking turns, so that other load hits both alike
                seconds, cpu, chunks = _cut_all(files, mode, work / f"{mode}{round_number}")
                best = results.get(mode)
                results[mode] = (
                    min(seconds, best[0]) if best else seconds,
                    min(cpu, best[1]) if best else cpu,
                    chunks,
                )
        lines = [
            f"{CALLING} recordings with {sum(map(len, calls))} planted calls over field noise + {NOISE_ONLY} of "
            f"field noise alone, {SECONDS:.0f} s each, stereo FLAC 44.1 kHz -> 10 s windows at 32 kHz"
        ]
        for mode, label in (("fixed", "fixed + 25 dB gate"), ("events", "events")):
            seconds, cpu, chunks = results[mode]
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
            noise_only = sum(len(per_file) for per_file in chunks[CALLING:])
            lines.append(
                f"  {label:20s} {len(windows):4d} windows ({noise_only} from noise-only files): "
                f"window precision {on_call / max(len(windows), 1):.3f}, call recall {held / sum(map(len, calls)):.3f}, "
                f"{seconds:.2f} s wall, {cpu:.2f} s CPU"
            )
        wall = results["events"][0] / results["fixed"][0]
        cpu_ratio = results["events"][1] / results["fixed"][1]
        lines.append(
            f"  chunking time events / fixed: {wall:.2f} wall, {cpu_ratio:.2f} CPU (goal <= 1.2); "
            "goal for events: precision and recall >= 0.95"
        )
        return lines


if __name__ == "__main__":
    print("\n".join(run()))
