"""`birdgrab export`: the dataset as shards others load directly, with a dataset card.

Parquet in the Hugging Face hub layout (`load_dataset(folder)` gives train, validation and test
with the class names), or WebDataset tar shards for streaming. ND-licensed recordings are left
out unless asked for: a chunk is an adaptation of its recording. The export is built in a
temporary folder and swapped into place whole.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from birdgrab.dataset.credits import CREDITS
from birdgrab.errors import UsageError
from birdgrab.export.card import dataset_card
from birdgrab.export.dataset_files import CLASSES, read_dataset
from birdgrab.export.parquet import write_parquet
from birdgrab.export.webdataset import write_webdataset
from birdgrab.files import atomic_folder

WRITERS = {"parquet": write_parquet, "webdataset": write_webdataset}
# What an export folder holds; a folder with anything else is not replaced.
EXPORT_ENTRIES = {"README.md", "data", CREDITS, CLASSES}


@dataclass(frozen=True)
class ExportOptions:
    format: str = "parquet"
    shard_mb: float = 500.0
    allow_nd: bool = False
    embeddings: str | None = None  # "birdnet": BirdNET's embedding of every chunk (extra [birdnet])

    def validated(self) -> ExportOptions:
        if self.format not in WRITERS:
            raise UsageError(f"--format {self.format!r}: choose one of {', '.join(WRITERS)}")
        if not self.shard_mb > 0:
            raise UsageError(f"--shard-mb must be above 0, got {self.shard_mb}")
        if self.embeddings not in (None, "birdnet"):
            raise UsageError(f"--embeddings must be birdnet, got {self.embeddings!r}")
        return self


@dataclass
class ExportReport:
    out: Path
    format: str
    rows: dict[str, int] = field(default_factory=dict)  # split -> exported chunks
    shards: int = 0
    bytes: int = 0
    classes: int = 0
    nd_recordings_left_out: int = 0
    nd_chunks_left_out: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # chunk file -> reason
    embeddings: tuple[int, int] | None = None  # --embeddings: (found stored, computed now)

    def summary(self) -> str:
        """The one line an export ends with."""
        splits = ", ".join(f"{split} {n}" for split, n in self.rows.items()) or "none"
        return (
            f"export: {sum(self.rows.values())} chunks ({splits}) in {self.shards} {self.format} shards, "
            f"{self.bytes / 2**20:.1f} MB, {self.classes} classes, in {self.out}; "
            f"{self.nd_recordings_left_out} ND-licensed recordings ({self.nd_chunks_left_out} chunks) left out; "
            f"{len(self.failed)} failed"
            + (
                f"; BirdNET embeddings: {self.embeddings[0]} stored by --verify, {self.embeddings[1]} computed"
                if self.embeddings
                else ""
            )
        )

    def facts(self) -> dict[str, object]:
        """The numbers for the JSON log."""
        return {"rows": self.rows, "shards": self.shards, "failed": len(self.failed)}


def _check_replaceable(out: Path, dataset_root: Path) -> None:
    """Refuse to replace anything that is not an earlier export (the dataset itself, say)."""
    if out.resolve() == dataset_root.resolve() or dataset_root.resolve() in out.resolve().parents:
        raise UsageError(
            f"--out {out} is inside the dataset folder {dataset_root}; choose a folder outside it"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; choose a folder")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in EXPORT_ENTRIES) if out.is_dir() else []
    if foreign:
        raise UsageError(
            f"--out {out} holds files an export does not write ({', '.join(foreign[:3])}); "
            "choose a new or empty folder"
        )


def _credits(dataset_root: Path, exported: pd.DataFrame) -> bytes:
    """The dataset's CREDITS.csv, cut to the recordings the export holds."""
    try:
        credits = pd.read_csv(dataset_root / CREDITS, dtype=str, keep_default_na=False)
        kept = credits[credits["recording_key"].isin(set(exported["recording_key"]))]
    except FileNotFoundError:
        raise UsageError(f"no {dataset_root / CREDITS}: rebuild the dataset with birdgrab chunk") from None
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise UsageError(f"{dataset_root / CREDITS} is not a birdgrab credits file ({exc})") from None
    return kept.to_csv(index=False, lineterminator="\n").encode("utf-8")


def run_export(
    dataset_root: Path, out: Path, options: ExportOptions, manifests: Path | None = None
) -> ExportReport:
    """Write the export of `dataset_root` to `out` (replacing an earlier export there, in one step).
    `manifests` holds the embeddings `--verify` made, if any (`--embeddings` computes the others)."""
    options = options.validated()
    embed = None
    if options.embeddings is not None:
        from birdgrab.verify.embeddings import Embedder

        embed = Embedder(manifests)
    out = Path(out)
    dataset = read_dataset(dataset_root)
    _check_replaceable(out, Path(dataset_root))
    left_out = dataset.rows.iloc[:0]
    if not options.allow_nd:
        dataset, left_out = dataset.without_no_derivatives()
    report = ExportReport(out=out, format=options.format, classes=len(dataset.class_names))
    report.nd_recordings_left_out = int(left_out["recording_key"].nunique())
    report.nd_chunks_left_out = len(left_out)
    with atomic_folder(out) as staged:
        written = WRITERS[options.format](dataset, staged, int(options.shard_mb * 2**20), embed)
        exported = pd.concat(list(written.rows.values())) if written.rows else dataset.rows.iloc[:0]
        card = dataset_card(dataset, written, options.format, asdict(options), left_out)
        (staged / "README.md").write_text(card, encoding="utf-8")
        (staged / CREDITS).write_bytes(_credits(Path(dataset_root), exported))
        (staged / CLASSES).write_text(
            json.dumps(dataset.classes, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        report.rows = {split: len(rows) for split, rows in written.rows.items()}
        report.shards = sum(len(files) for files in written.files.values())
        report.bytes = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
        report.failed = dict(written.failed)
    if embed is not None:
        report.embeddings = (embed.stored, embed.computed)
        embed.close()
    return report
