"""Duplicate detection on the sandbox: exact (same bytes) and near (same sound re-encoded).

Runs catalog -> filter -> fetch (with chunking) on the demo archive, each as the real CLI in a
child process, and compares what birdgrab marked with the archive's planted truths (`GET
/_sandbox/archive`): precision, recall, and the margin between the lowest score of a true
near-duplicate and the highest score of two different recordings. There is no baseline to take
turns with: the truth is planted, so the figures are counts, not times. The archive is the same
size with `--quick`. `python -m bench dedupe`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.harness import Report, SandboxProcess, run_birdgrab
from birdgrab.dataset.plan import SAME_RECORDING_SIMILARITY
from birdgrab.sandbox import SandboxConfig

TUNING = {"BIRDGRAB_XC_RATE": "100"}
STEPS = (["catalog"], ["filter", "--min-files", "1"], ["fetch"])


def _rates(found: set[frozenset[str]], true: set[frozenset[str]]) -> tuple[str, str]:
    hits = len(found & true)
    return (f"{hits}/{len(found)}" if found else "n/a", f"{hits}/{len(true)}")


def run(quick: bool = False) -> Report:
    report = Report("dedupe", quick=quick)
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-dedupe-") as tmp:
        root = Path(tmp)
        with SandboxProcess(SandboxConfig(hour_long=False), root) as sandbox:
            runs = {args[0]: run_birdgrab([*args, "--quiet"], sandbox.env, root / "run", TUNING).check(args[0])
                    for args in STEPS}  # fmt: skip
            truths = sandbox.archive()["truths"]
        report.record("pipeline", runs)
        downloads = json.loads((root / "run" / "manifests" / "downloads.json").read_text())["entries"]
        chunks = json.loads((root / "run" / "manifests" / "chunks.json").read_text())
    exact_true = {frozenset(pair) for pair in truths["exact_duplicates"]}
    exact_found = {
        frozenset((key, entry["duplicate_of"]))
        for key, entry in downloads.items()
        if entry["status"] == "duplicate"
    }
    near_true = {frozenset(pair) for pair in truths["near_duplicates"]}
    scores = {
        frozenset(check.split("|")[:2]): score for check, score in chunks["near_duplicate_checks"].items()
    }
    near_found = {pair for pair, score in scores.items() if score >= SAME_RECORDING_SIMILARITY}
    true_scores = [scores[pair] for pair in near_true if pair in scores]
    other_scores = [score for pair, score in scores.items() if pair not in near_true]

    def span(values: list[float]) -> str:
        return f"{min(values):.3f}..{max(values):.3f}" if values else "none"

    rows = [
        ["exact (same sha256 across archives)", *_rates(exact_found, exact_true), "", ""],
        [f"near (fingerprint >= {SAME_RECORDING_SIMILARITY})", *_rates(near_found, near_true),
         span(true_scores), f"{max(other_scores):.3f}" if other_scores else "none"],
    ]  # fmt: skip
    report.table(
        "accuracy",
        [
            "duplicates",
            "precision",
            "recall",
            "scores of true re-encodes",
            "highest score, different recordings",
        ],
        rows,
        note=f"{len(scores)} candidate pairs compared (same class, other archive, similar length).",
    )
    for kind, precision, recall, *_ in rows:
        report.line(f"{kind}: precision {precision}, recall {recall}")
    report.line(f"scores: true re-encodes {span(true_scores)}; different recordings up to {rows[1][4]}")
    return report.finish()
