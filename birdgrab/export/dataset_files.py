"""Reading a built dataset folder (metadata.csv, classes.json, dataset.json) for export and report.

metadata.csv is read with one dtype per column, whatever the rows hold: text stays text (an empty
field is "", never NaN), counts are integers, times are floats. Columns this birdgrab does not know
are kept as text.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from birdgrab.dataset.writers import CLASSES, METADATA
from birdgrab.dataset.writers import DATASET as DATASET_INFO
from birdgrab.errors import UsageError
from birdgrab.licences import is_no_derivatives
from birdgrab.storage import Storage, open_storage

INTEGER_COLUMNS = ("class_id", "chunk_index", "sample_rate", "recorded_year")  # an unknown year is 0
FLOAT_COLUMNS = ("offset_s", "duration_s", "padded_s", "rms_dbfs")
OPTIONAL_FLOAT_COLUMNS = ["verify_confidence"]  # --verify: empty for the noise class and unverifiable classes
REQUIRED_COLUMNS = ("file_name", "label", "class_id", "split", "recording_key", "duration_s", "licence")

# Our split names -> the Hugging Face convention.
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class DatasetFolder:
    """A dataset as birdgrab wrote it: chunk rows, class names in id order, and how it was made."""

    root: Storage  # a folder, or a prefix in a bucket
    rows: pd.DataFrame
    class_names: list[str]
    classes: dict[str, dict[str, Any]]
    made_with: dict[str, Any]  # dataset.json, or {} for a dataset chunked before it existed

    @property
    def sample_rate(self) -> int:
        rate = self.made_with.get("sample_rate")
        if rate is None and "sample_rate" in self.rows and len(self.rows):
            rate = self.rows["sample_rate"].iloc[0]
        if rate is None:
            raise UsageError(f"{self.root}: neither dataset.json nor metadata.csv gives the sample rate")
        return int(rate)

    @property
    def chunk_seconds(self) -> float:
        length = self.made_with.get("chunk_seconds")
        if length is None and len(self.rows):
            length = self.rows["duration_s"].max()
        return float(length or 0.0)

    def without_no_derivatives(self) -> tuple[DatasetFolder, pd.DataFrame]:
        """This dataset without ND-licensed recordings (chunks are adaptations), and the rows left out."""
        nd = self.rows["licence"].map(is_no_derivatives).astype(bool)
        kept = DatasetFolder(self.root, self.rows[~nd], self.class_names, self.classes, self.made_with)
        return kept, self.rows[nd]


def read_metadata(root: Storage) -> pd.DataFrame:
    """metadata.csv with stable dtypes; a UsageError (exit 2) for a file that is not one."""
    path = f"{root}/{METADATA}"
    try:
        frame = pd.read_csv(
            io.BytesIO(root.read_bytes(METADATA)), dtype=str, keep_default_na=False, na_filter=False
        )
    except FileNotFoundError:
        raise UsageError(f"no {path}: build the dataset first (birdgrab fetch, or birdgrab chunk)") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a birdgrab metadata file ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UsageError(f"{path} lacks the column(s) {', '.join(missing)}; rebuild it with birdgrab chunk")
    try:
        for column in INTEGER_COLUMNS:
            if column in frame:
                frame[column] = frame[column].astype("int64")
        for column in FLOAT_COLUMNS:
            if column in frame:
                frame[column] = frame[column].astype("float64")
        for column in OPTIONAL_FLOAT_COLUMNS:  # empty where there is no value: NaN
            if column in frame:
                frame[column] = frame[column].mask(frame[column] == "").astype("float64")
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: a number column holds text ({exc})") from None
    text = [c for c in frame.columns if frame[c].dtype == object or str(frame[c].dtype).startswith("str")]
    frame[text] = frame[text].astype("string")
    return frame


def read_classes(root: Storage) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Class labels in class-id order (position == id) and the classes.json entries."""
    path = f"{root}/{CLASSES}"
    try:
        classes = json.loads(root.read_bytes(CLASSES).decode("utf-8"))
        ids = sorted(int(k) for k in classes)
        names = [str(classes[str(i)]["label"]) for i in ids]
    except FileNotFoundError:
        raise UsageError(f"no {path}: build the dataset first (birdgrab fetch, or birdgrab chunk)") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path} is not a birdgrab classes file ({exc})") from None
    if ids != list(range(len(ids))):
        raise UsageError(f"{path}: class ids are not 0..{len(ids) - 1}; rebuild it with birdgrab chunk")
    return names, classes


def read_dataset(location: Path | str | Storage) -> DatasetFolder:
    """Read a dataset folder (or a bucket prefix), checking that metadata.csv and classes.json agree."""
    root = open_storage(location)
    local = root.local_path()
    if local is not None and not local.is_dir():
        raise UsageError(
            f"no dataset folder {root}: build it first (birdgrab fetch), or name it with --dataset"
        )
    rows = read_metadata(root)
    names, classes = read_classes(root)
    unknown = set(rows["split"].unique()) - set(HF_SPLITS)
    if unknown:
        raise UsageError(f"{root}/{METADATA}: unknown split(s) {', '.join(sorted(unknown))}")
    known = pd.Series(names, dtype="string")
    mismatch = rows["class_id"].ge(len(names)) | (
        known.reindex(rows["class_id"].clip(upper=max(len(names) - 1, 0))).to_numpy()
        != rows["label"].to_numpy()
    )
    if len(rows) and mismatch.any():
        row = rows[mismatch].iloc[0]
        raise UsageError(
            f"{root}: metadata.csv and classes.json disagree ({row['file_name']}: class_id {row['class_id']}, "
            f"label {row['label']}); rebuild them with birdgrab chunk"
        )
    try:
        made_with = json.loads(root.read_bytes(DATASET_INFO).decode("utf-8"))
    except FileNotFoundError:
        made_with = {}
    except ValueError as exc:
        raise UsageError(f"{root}/{DATASET_INFO} is not valid JSON ({exc})") from None
    if not isinstance(made_with, dict):
        raise UsageError(f"{root}/{DATASET_INFO} is not a JSON object")
    return DatasetFolder(root, rows, names, classes, made_with)
