"""Duplicate detection on the sandbox: exact (same bytes) and near (same sound re-encoded).

Runs catalog -> filter -> fetch -> chunk on the demo archive and compares what birdgrab marked
with the archive's planted truths: precision, recall, and the margin between the lowest score of a
true near-duplicate and the highest score of two different recordings.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from typer.testing import CliRunner

from birdgrab.audio import SAME_RECORDING_SIMILARITY
from birdgrab.cli import app
from birdgrab.sandbox import Sandbox, SandboxConfig


def _run(env: dict[str, str], root: Path, *args: str) -> None:
    folders = ["--manifests", str(root / "m"), "--cache", str(root / "c"), "--out", str(root / "d")]
    result = CliRunner().invoke(app, [*args, *folders, "--quiet"], env=env)
    if result.exit_code != 0:
        raise RuntimeError(f"birdgrab {args[0]} failed: {result.output}")


def run() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp, Sandbox(SandboxConfig(hour_long=False)) as sandbox:
        root = Path(tmp)
        env = {**os.environ, **sandbox.env(), "BIRDGRAB_XC_RATE": "100"}
        _run(env, root, "catalog")
        _run(env, root, "filter", "--min-files", "1")
        _run(env, root, "fetch")
        truths = sandbox.archive.truths
        downloads = json.loads((root / "m" / "downloads.json").read_text())["entries"]
        chunks = json.loads((root / "m" / "chunks.json").read_text())
    exact_true = {frozenset(pair) for pair in truths.exact_duplicates}
    exact_found = {
        frozenset((k, e["duplicate_of"])) for k, e in downloads.items() if e["status"] == "duplicate"
    }
    near_true = {frozenset(pair) for pair in truths.near_duplicates}
    scores = {
        frozenset(check.split("|")[:2]): score for check, score in chunks["near_duplicate_checks"].items()
    }
    near_found = {pair for pair, score in scores.items() if score >= SAME_RECORDING_SIMILARITY}
    true_scores = [scores[pair] for pair in near_true if pair in scores]
    other_scores = [score for pair, score in scores.items() if pair not in near_true]

    def rate(found: set, true: set) -> str:
        hits = len(found & true)
        precision = f"{hits}/{len(found)}" if found else "n/a"
        return f"precision {precision}, recall {hits}/{len(true)}"

    return [
        f"exact duplicates (same sha256 across archives): {rate(exact_found, exact_true)}",
        f"near duplicates (fingerprint >= {SAME_RECORDING_SIMILARITY}): {rate(near_found, near_true)}; "
        f"{len(scores)} candidate pairs compared (same class, other archive, similar length)",
        f"scores: true re-encodes {min(true_scores, default=float('nan')):.3f}..{max(true_scores, default=float('nan')):.3f}; "
        f"different recordings up to {max(other_scores, default=float('nan')):.3f}",
    ]


if __name__ == "__main__":
    print("\n".join(run()))
