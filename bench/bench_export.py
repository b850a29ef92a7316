"""Export: `birdgrab export` against a plain copy of the same dataset, and its memory as the dataset grows.

A synthetic dataset of N chunks (5 s, 16 kHz: 160 kB each) is written straight to disk, then, taking
turns round by round, each as a child process:
- baseline: every chunk's bytes copied into 100 MB shard files, each fsynced, by a bare Python loop
  (the least any export must do: read every byte and write it durably, as birdgrab's shards are);
- `birdgrab export --format parquet` and `--format webdataset`: wall time as a ratio of the copy,
  and peak memory (VmHWM);
every round's output read back (the copy's bytes, the Parquet rows, the tars' WAV members) to hold
every chunk, or the suite fails; and then the Parquet export of N and of 2N chunks: peak memory should not grow with the dataset (one
batch of audio is held, not a shard or a split). `python -m bench export [--quick]`.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from bench.harness import REPO, Report, Run, run_process, verdict

RATE, SECONDS, CLASSES = 16000, 5, 20
CHUNKS = 2000
QUICK_CHUNKS = 400
ROUNDS = 2
GOAL_MEMORY_GROWTH = 1.25  # twice the chunks, at most this much more memory


def _dataset(root: Path, chunks: int) -> Path:
    """A dataset folder as birdgrab writes it: class folders of WAV chunks, metadata, classes, credits."""
    folder = root / f"dataset-{chunks}"
    rng = np.random.default_rng(0)
    rows = []
    for i in range(chunks):
        label = f"Genus_species{chr(97 + i % CLASSES)}"
        (folder / label).mkdir(parents=True, exist_ok=True)
        name = f"{label}/xc-{i // 4}_{i % 4:04d}.wav"
        sf.write(folder / name, rng.integers(-3000, 3000, RATE * SECONDS).astype(np.int16), RATE, "PCM_16")
        rows.append(
            {
                "file_name": name, "label": label, "class_id": i % CLASSES,
                "split": ("train", "train", "train", "val", "test")[(i // 4) % 5], "recording_key": f"xc:{i // 4}",
                "source": "xeno-canto", "source_id": str(i // 4), "chunk_index": i % 4, "offset_s": 5.0 * (i % 4),
                "duration_s": 5.0, "padded_s": 0.0, "licence": "CC BY 4.0", "recordist": "A. Recordist",
                "page_url": f"https://example.org/{i // 4}", "sample_rate": RATE, "rms_dbfs": -20.0,
            }
        )  # fmt: skip
    with open(folder / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    classes = {str(c): {"label": f"Genus_species{chr(97 + c)}"} for c in range(CLASSES)}
    (folder / "classes.json").write_text(json.dumps(classes))
    with open(folder / "CREDITS.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["recording_key", "recordist", "licence"])
        writer.writerows([f"xc:{r}", "A. Recordist", "CC BY 4.0"] for r in range(chunks // 4 + 1))
    return folder


# The least an export can do: read every chunk and write it into shards of SHARD_MB, each made
# durable with fsync as birdgrab's are, in a child process whose start costs a bare interpreter.
_SHARDS = """
import os, sys
from pathlib import Path
source, target, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) * 2**20
target.mkdir()
shard, written, count = None, 0, 0
for path in sorted(source.rglob("*.wav")):
    if shard is None or written >= limit:
        if shard is not None:
            shard.flush(); os.fsync(shard.fileno()); shard.close()
        shard, written, count = open(target / f"shard-{count:05d}.bin", "wb"), 0, count + 1
    written += shard.write(path.read_bytes())
shard.flush(); os.fsync(shard.fileno()); shard.close()
"""
SHARD_MB = 100


def _wav_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*.wav"))


def _copy(folder: Path, work: Path) -> Callable[[int], Run]:
    def copy(round_number: int) -> Run:
        target = work / "copy"
        shutil.rmtree(target, ignore_errors=True)
        argv = [sys.executable, "-c", _SHARDS, str(folder), str(target), str(SHARD_MB)]
        run = run_process(argv, {}, work).check("the shard copy")
        run.facts["bytes"] = sum(p.stat().st_size for p in target.iterdir())
        run.facts["chunks"] = (
            len(list(folder.rglob("*.wav"))) if run.facts["bytes"] == _wav_bytes(folder) else 0
        )
        return run

    return copy


def _export_once(folder: Path, out: Path, fmt: str) -> Run:
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "birdgrab", "export", "--dataset", str(folder), "--out", str(out)]
    run = run_process([*argv, "--format", fmt, "--shard-mb", str(SHARD_MB), "--quiet"], {}, REPO).check(
        f"export {fmt}"
    )
    run.facts["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    run.facts["chunks"] = _chunks_exported(out, fmt)
    shutil.rmtree(out)
    return run


def _chunks_exported(out: Path, fmt: str) -> int:
    """The chunks an export holds, read back from its shards (Parquet rows, WAV members of the tars)."""
    if fmt == "parquet":
        return sum(pq.ParquetFile(path).metadata.num_rows for path in out.rglob("*.parquet"))
    total = 0
    for path in out.rglob("*.tar"):
        with tarfile.open(path) as tar:
            total += sum(1 for member in tar if member.name.endswith(".wav"))
    return total


def _export(folder: Path, work: Path, fmt: str) -> Callable[[int], Run]:
    def export(round_number: int) -> Run:
        return _export_once(folder, work / f"export-{fmt}", fmt)

    return export


def run(quick: bool = False) -> Report:
    chunks = QUICK_CHUNKS if quick else CHUNKS
    report = Report("export", quick=quick)
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-export-") as tmp:
        root = Path(tmp)
        small, large = _dataset(root, chunks), _dataset(root, 2 * chunks)
        megabytes = sum(p.stat().st_size for p in small.rglob("*.wav")) / 2**20
        report.line(
            f"dataset: {chunks} chunks of {SECONDS} s at {RATE} Hz, {megabytes:.0f} MB of WAV, {ROUNDS} rounds"
        )
        runs = report.contest(
            "speed",
            {
                "baseline: every chunk copied into fsynced shards": _copy(small, root),
                "export --format parquet": _export(small, root, "parquet"),
                "export --format webdataset": _export(small, root, "webdataset"),
            },
            ROUNDS,
        )
        for name, runs_of in runs.items():  # the same work: every chunk in every contender's output
            if any(run.facts["chunks"] != chunks for run in runs_of):
                found = [run.facts["chunks"] for run in runs_of]
                raise RuntimeError(f"{name} holds {found} chunks per round, not the dataset's {chunks}")
        copy = runs["baseline: every chunk copied into fsynced shards"]
        rows = []
        for name, runs_of in runs.items():
            rows.append([name, f"{runs_of.best.wall_s:.2f} s", f"{runs_of.best.wall_s / copy.best.wall_s:.1f}x",
                         f"{runs_of.median_cpu_s:.2f} s", f"{runs_of.peak_mb:.0f} MB"])  # fmt: skip
            report.line(
                f"  {name:32s} best {rows[-1][1]} = {rows[-1][2]} the copy, CPU {rows[-1][3]}, peak {rows[-1][4]}"
            )
        report.table(
            "speed",
            ["run", "wall, best", "vs the copy", "CPU, median", "peak RSS"],
            rows,
            note="Process start and the fsync of every shard are included in the exports' times.",
        )
        memory = {f"{n} chunks": _export_once(folder, root / "export-memory", "parquet")
                  for n, folder in ((chunks, small), (2 * chunks, large))}  # fmt: skip
        report.record("memory", memory)
        first, doubled = memory.values()
        growth = doubled.max_rss_mb / first.max_rss_mb
        report.table(
            "memory",
            ["export --format parquet of", "peak RSS"],
            [[name, f"{run.max_rss_mb:.0f} MB"] for name, run in memory.items()],
            note=f"Twice the data: {growth:.2f}x the memory (goal <= {GOAL_MEMORY_GROWTH:g}x)"
            f" {verdict(growth, GOAL_MEMORY_GROWTH)}.",
        )
        report.line(
            f"memory as the dataset doubles ({chunks} -> {2 * chunks} chunks): peak {first.max_rss_mb:.0f} ->"
            f" {doubled.max_rss_mb:.0f} MB = {growth:.2f}x (goal <= {GOAL_MEMORY_GROWTH:g}x) {verdict(growth, GOAL_MEMORY_GROWTH)}"
        )
    return report.finish()
