"""Export: `birdgrab export` against a plain copy of the same WAV files, and its memory as the dataset grows.

A synthetic dataset of N chunks (5 s, 16 kHz: 160 kB each) is written straight to disk, then
- baseline: copying every chunk file into one folder (the least any export must do: read and write
  every byte), timed in the same run;
- `birdgrab export --format parquet` and `--format webdataset` of it, as child processes: wall time as a
  ratio of the copy, and peak memory (VmHWM);
- the Parquet export of 2N chunks: peak memory should not grow with the dataset (one batch of audio
  is held, not a shard or a split).
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.harness import REPO, run_process

RATE, SECONDS, CLASSES = 16000, 5, 20


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


def _copy(folder: Path, target: Path) -> float:
    started = time.perf_counter()
    target.mkdir()
    for path in folder.rglob("*.wav"):
        shutil.copyfile(path, target / f"{path.parent.name}-{path.name}")
    return time.perf_counter() - started


def _export(folder: Path, out: Path, fmt: str):
    argv = [sys.executable, "-m", "birdgrab", "export", "--dataset", str(folder), "--out", str(out)]
    return run_process([*argv, "--format", fmt, "--shard-mb", "100", "--quiet"], {}, REPO).check(
        f"export {fmt}"
    )


def run(chunks: int = 2000) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small, large = _dataset(root, chunks), _dataset(root, 2 * chunks)
        megabytes = sum(p.stat().st_size for p in small.rglob("*.wav")) / 2**20
        copy_s = _copy(small, root / "copy")
        lines.append(f"dataset: {chunks} chunks, {megabytes:.0f} MB of WAV; baseline copy {copy_s:.2f} s")
        for fmt in ("parquet", "webdataset"):
            run_ = _export(small, root / f"export-{fmt}", fmt)
            lines.append(
                f"export {fmt}: {run_.wall_s:.2f} s wall = {run_.wall_s / copy_s:.1f}x the copy "
                f"(process start included), {run_.cpu_s:.2f} s CPU, peak {run_.max_rss_mb:.0f} MB"
            )
            shutil.rmtree(root / f"export-{fmt}")
        doubled = _export(large, root / "export-large", "parquet")
        first = _export(small, root / "export-again", "parquet")
        lines.append(
            f"memory as the dataset doubles ({chunks} -> {2 * chunks} chunks): peak {first.max_rss_mb:.0f} -> "
            f"{doubled.max_rss_mb:.0f} MB = {doubled.max_rss_mb / first.max_rss_mb:.2f}x (goal: well under 2x)"
        )
    return lines
