"""The dataset card: the README.md a Hugging Face hub repository shows, with its YAML header.

The header tells `datasets` (and the hub) the licences, the task, which files make each split and
the features with the class names in class-id order; the text tells a person what is inside, under
which licences, whom to credit and how it was made.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import yaml

from birdgrab import __version__
from birdgrab.dataset.account import account_lines
from birdgrab.dataset.options import NOISE_LABEL
from birdgrab.export.dataset_files import DatasetFolder
from birdgrab.export.parquet import hf_features
from birdgrab.export.shards import Written
from birdgrab.licences import is_non_commercial

# Licence ids the hub knows (https://huggingface.co/docs/hub/repositories-licenses); others are "other".
_HUB_LICENCES = {
    "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
    "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
}  # fmt: skip
_SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]


def hub_licence(name: str) -> str:
    """'CC BY-NC-SA 4.0' -> 'cc-by-nc-sa-4.0', 'CC0 1.0' -> 'cc0-1.0'; what the hub does not list -> 'other'."""
    slug = re.sub(r"[\s_]+", "-", name.strip().lower())
    return slug if slug in _HUB_LICENCES else "other"


def _size_category(rows: int) -> str:
    return next((name for limit, name in _SIZE_CATEGORIES if rows < limit), "1M<n<10M")


def _hours(rows: pd.DataFrame) -> float:
    return float(rows["duration_s"].sum()) / 3600


def _table(header: list[str], lines: list[list[Any]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(v).replace("|", "\\|") for v in line) + " |" for line in lines),
    ]


def _header(dataset: DatasetFolder, written: Written, rows: pd.DataFrame, fmt: str) -> dict[str, Any]:
    licences = sorted({hub_licence(name) for name in rows["licence"].unique() if name})
    header: dict[str, Any] = {
        "license": licences or ["other"],
        "task_categories": ["audio-classification"],
        "tags": ["audio", "bioacoustics", "birds", "birdgrab"],
        "size_categories": [_size_category(len(rows))],
        "pretty_name": f"Bird sounds, {len(dataset.class_names)} classes",
        "configs": [
            {
                "config_name": "default",
                "data_files": [
                    {"split": split, "path": f"{written.folder}/{split}-*"} for split in written.files
                ],
            }
        ],
    }
    if fmt == "parquet":
        header["dataset_info"] = {
            "features": _yaml_features(hf_features(dataset)),
            "splits": [
                {"name": split, "num_bytes": written.bytes[split], "num_examples": len(written.rows[split])}
                for split in written.files
            ],
            "download_size": sum(written.bytes.values()),
            "dataset_size": sum(written.bytes.values()),
        }
    return header


def _yaml_features(features: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """`Features.to_dict()` in the card's YAML form (`_to_yaml_list` of `datasets`)."""
    listed = []
    for name, feature in features.items():
        if feature["_type"] == "Audio":
            listed.append({"name": name, "dtype": {"audio": {"sampling_rate": feature["sampling_rate"]}}})
        elif feature["_type"] == "ClassLabel":
            names = {str(i): label for i, label in enumerate(feature["names"])}
            listed.append({"name": name, "dtype": {"class_label": {"names": names}}})
        else:
            listed.append({"name": name, "dtype": feature["dtype"]})
    return listed


def dataset_card(
    dataset: DatasetFolder,
    written: Written,
    fmt: str,
    options: dict[str, Any],
    left_out_nd: pd.DataFrame,
) -> str:
    """The README.md of an export: YAML header, then the text."""
    rows = pd.concat(list(written.rows.values())) if written.rows else dataset.rows.iloc[:0]
    meta = _header(dataset, written, rows, fmt)
    # How it was made, as data: the same account the text below renders (dataset.json, and the export's options)
    meta["birdgrab"] = {"export": options, "dataset": dataset.made_with or None}
    recordings = rows.drop_duplicates("recording_key")
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip("\n"),
        "---",
        "",
        f"# {meta['pretty_name']}",
        "",
        f"{len(rows)} clips of {dataset.chunk_seconds:g} s (mono, 16-bit WAV, {dataset.sample_rate} Hz) from "
        f"{len(recordings)} recordings{_by_people(recordings)}, {_hours(rows):.2f} hours, in "
        f"{_classes_held(dataset, rows)} ({_what_classes(dataset)}), for audio classification: `label` is "
        "one class per clip, `labels` adds the dataset's other species its `background` column lists. "
        f"{_split_sentence(dataset.made_with)}",
        "",
        "## Splits",
        "",
        *_table(
            ["split", "clips", "recordings", "hours", "files"],
            [
                [split, len(r), r["recording_key"].nunique(), f"{_hours(r):.2f}", len(written.files[split])]
                for split, r in written.rows.items()
            ],
        ),
        "",
        "## Loading",
        "",
        *_loading(fmt, written),
        "",
        "## Classes",
        "",
        *_table(
            ["id", "label", "scientific name", "English", "German", "train", "validation", "test"],
            _class_lines(dataset, written),
        ),
        "",
        *_licence_section(rows, left_out_nd, options),
        "## Archives",
        "",
        *_table(
            ["archive", "recordings", "clips"],
            [
                [source, r["recording_key"].nunique(), len(r)]
                for source, r in rows.groupby("source", sort=True)
            ]
            if "source" in rows
            else [],
        ),
        "",
        "## Attribution",
        "",
        "Every clip is cut from a recording its recordist published under the licence named in its "
        "`licence` column; `recordist` and `page_url` name the author and the source page. "
        "`CREDITS.csv` lists every recording with its recordist, licence and page. Recordists "
        "(recordings):",
        "",
        ", ".join(
            f"{name or 'unknown'} ({count})"
            for name, count in recordings["recordist"].value_counts().sort_index().items()
        )
        + ".",
        "",
        *_embeddings(options),
        "## How it was made",
        "",
        f"Built with birdgrab {dataset.made_with.get('birdgrab_version') or __version__}: catalogued, filtered, "
        "downloaded, verified, deduplicated and cut into clips. Exported on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d')} with birdgrab {__version__} ({_export_words(options)}).",
        "",
        *(f"- {line}" for line in _account_lines(dataset)),
        "",
    ]
    return "\n".join(lines)


def _embeddings(options: dict[str, Any]) -> list[str]:
    """What `--embeddings birdnet` added to the export, and under what licence. (What `--verify` did
    to the clips is part of dataset.json's account: "How it was made" says it.)"""
    if not options.get("embeddings"):
        return []
    from birdgrab.verify.model import MODEL_LICENCE, MODEL_NAME

    return [
        "## Embeddings",
        "",
        f"`embedding` holds {MODEL_NAME}'s 1024-value embedding of each clip (the mean over its 3 s frames, "
        "float16 precision), for linear probes and similarity search. They are the model's work, licensed "
        f"{MODEL_LICENCE} (non-commercial, share-alike): they are shared under those terms.",
        "",
    ]


def _account_lines(dataset: DatasetFolder) -> list[str]:
    """dataset.json's account (the YAML header's `birdgrab.dataset`), as sentences."""
    if not dataset.made_with:  # a dataset chunked before dataset.json existed
        return [
            f"This dataset has no dataset.json: only its sample rate ({dataset.sample_rate} Hz) and clip "
            f"length ({dataset.chunk_seconds:g} s) are known."
        ]
    return account_lines(dataset.made_with)


def _by_people(recordings: pd.DataFrame) -> str:
    """' by 23 recordists' (people, not spellings), when metadata.csv has recordist_id."""
    if "recordist_id" not in recordings:
        return ""
    people = recordings.loc[recordings["recordist_id"] != "unknown", "recordist_id"].nunique()
    return f" by {people} recordists"


def _classes_held(dataset: DatasetFolder, rows: pd.DataFrame) -> str:
    """'16 classes', or '15 of its 16 classes' when some class has no clip here (its id is kept)."""
    held, known = rows["label"].nunique(), len(dataset.class_names)
    return f"{known} classes" if held == known else f"{held} of its {known} classes"


def _what_classes(dataset: DatasetFolder) -> str:
    if any(info.get("noise") for info in dataset.classes.values()):
        return f"bird species, and `{NOISE_LABEL}` for call-free windows"
    return "bird species"


def _split_sentence(made: dict[str, Any]) -> str:
    """How splits were dealt, as dataset.json says (an older one: per recording, all it knew)."""
    by = (made.get("split") or {}).get("by", "recording")
    return {
        "recording": "Splits are dealt per recording (no recording has clips in two splits), stratified per class.",
        "recordist": "Splits are dealt per recordist (no person has recordings in two splits), stratified per class.",
        "site": "Splits are dealt per site (no site has recordings in two splits), stratified per class.",
    }.get(by, f"Splits are dealt per {by}.")


def _export_words(options: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value}" for name, value in options.items() if value not in (None, False))


def _loading(fmt: str, written: Written) -> list[str]:
    if fmt == "parquet":
        return [
            "```python",
            "from datasets import load_dataset",
            'ds = load_dataset("path/to/this/folder")            # or the hub repository id',
            'names = ds["train"].features["label"].names         # class id -> label',
            "```",
            "",
            "`label` is a class label whose names are the classes in class-id order (ids are stable across "
            "refreshes of the dataset); `class_id` holds the same number. `split` is birdgrab's name "
            "(`train`, `val`, `test`); the hub's splits are train, validation and test.",
        ]
    split, files = next(iter(written.files.items()), ("train", ["data/train-00000-of-00001.tar"]))
    last = len(files) - 1
    return [
        "WebDataset shards: each clip is `<key>.wav` with every metadata column in `<key>.json`; "
        "`classes.json` maps class ids to labels.",
        "",
        "```python",
        "import webdataset as wds",
        f'clips = wds.WebDataset("{written.folder}/{split}-{{00000..{last:05d}}}-of-{len(files):05d}.tar").decode()',  # the {split} shards',
        "```",
    ]


def _class_lines(dataset: DatasetFolder, written: Written) -> list[list[Any]]:
    counts = {split: r["class_id"].value_counts() for split, r in written.rows.items()}
    lines = []
    for class_id, label in enumerate(dataset.class_names):
        info = dataset.classes.get(str(class_id), {})
        lines.append(
            [
                class_id,
                label,
                info.get("scientific_name") or "",
                info.get("english_name") or "",
                info.get("german_name") or "",
                *(
                    int(counts[s].get(class_id, 0)) if s in counts else 0
                    for s in ("train", "validation", "test")
                ),
            ]
        )
    return lines


def _licence_section(rows: pd.DataFrame, left_out_nd: pd.DataFrame, options: dict[str, Any]) -> list[str]:
    by_licence = [
        [name or "unknown", r["recording_key"].nunique(), len(r)]
        for name, r in rows.groupby("licence", sort=True)
    ]
    lines = ["## Licences", "", *_table(["licence", "recordings", "clips"], by_licence), ""]
    non_commercial = rows[rows["licence"].map(is_non_commercial).astype(bool)]
    if len(non_commercial):
        lines += [
            f"**Non-commercial:** {non_commercial['recording_key'].nunique()} recordings ({len(non_commercial)} "
            "clips) are under NC licences: they may not be used for commercial purposes. Filter on the "
            "`licence` column to keep only what your use allows.",
            "",
        ]
    if any(rows["licence"].str.contains("SA", regex=False)):
        lines += ["**Share-alike:** works adapted from SA-licensed clips must carry the same licence.", ""]
    if options.get("allow_nd"):
        lines += [
            "**No-derivatives:** clips of ND-licensed recordings are included (`--allow-nd`). A clip is an "
            "adaptation of its recording: check that your use is allowed before publishing this dataset.",
            "",
        ]
    elif len(left_out_nd):
        lines += [
            f"**No-derivatives:** {left_out_nd['recording_key'].nunique()} ND-licensed recordings "
            f"({len(left_out_nd)} clips) were left out: a clip is an adaptation, which ND does not allow.",
            "",
        ]
    return lines
