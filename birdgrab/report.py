"""`birdgrab report`: one self-contained HTML page about a dataset, to look at instead of tables.

Charts (chunks and hours per class and split, licences, archives, recordists, recording lengths)
and a few mel-spectrogram thumbnails per class are drawn with matplotlib (Agg, no display) and
embedded as PNG data URIs: the page loads nothing from anywhere, so it can be mailed or published
beside the dataset.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, no GUI toolkit

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import soundfile as sf

from birdgrab import __version__
from birdgrab.dataset.options import verification_sentence
from birdgrab.export.dataset_files import DatasetFolder, read_dataset
from birdgrab.licences import is_no_derivatives, is_non_commercial
from birdgrab.storage import Storage, open_storage
from birdgrab.store import RecordingStore

log = logging.getLogger(__name__)

SPLIT_COLOURS = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
THUMBNAILS_PER_CLASS = 3
TOP_RECORDISTS = 25
MEL_BANDS = 64
THUMBNAIL_COLUMNS = 320  # time columns of a thumbnail


@dataclass
class ReportSummary:
    path: str
    classes: int
    chunks: int
    hours: float
    thumbnails: int
    bytes: int
    recordists: int  # people, not spellings

    def summary(self) -> str:
        """The one line a report run ends with."""
        return (
            f"report: {self.classes} classes, {self.chunks} chunks, {self.hours:.2f} h, {self.recordists} recordists, "
            f"{self.thumbnails} spectrograms: {self.path} ({self.bytes / 2**20:.1f} MB)"
        )

    def facts(self) -> dict[str, object]:
        """The numbers for the JSON log."""
        return {"path": str(self.path), "thumbnails": self.thumbnails}


# -- drawing -------------------------------------------------------------------------------------
def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(data: str, alt: str, css: str = "chart") -> str:
    return f'<img class="{css}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _per_class_chart(rows: pd.DataFrame, names: list[str]) -> str:
    chunks = rows.pivot_table(
        index="label", columns="split", values="file_name", aggfunc="count", fill_value=0
    )
    chunks = chunks.reindex(index=names[::-1], columns=list(SPLIT_COLOURS), fill_value=0)
    hours = rows.groupby("label")["duration_s"].sum().reindex(names[::-1], fill_value=0) / 3600
    figure, (left, right) = plt.subplots(
        1, 2, sharey=True, figsize=(11, 1.2 + 0.28 * len(names)), gridspec_kw={"width_ratios": [3, 2]}
    )
    chunks.plot.barh(stacked=True, ax=left, color=list(SPLIT_COLOURS.values()), width=0.8)
    left.set_xlabel("chunks")
    left.set_ylabel("")
    left.legend(title="split", loc="lower right")
    right.barh(hours.index, hours.to_numpy(), color="#8172b3", height=0.8)
    right.set_xlabel("hours")
    figure.suptitle("Chunks per class and split, and hours per class")
    return _png(figure)


def _bar_chart(counts: pd.Series, title: str, xlabel: str, colours: list[str] | None = None) -> str:
    counts = counts.iloc[::-1]
    figure, axes = plt.subplots(figsize=(9, 0.9 + 0.3 * len(counts)))
    axes.barh(
        [str(i) for i in counts.index], counts.to_numpy(), color=colours[::-1] if colours else "#4c72b0"
    )
    axes.set_xlabel(xlabel)
    axes.set_title(title)
    for position, value in enumerate(counts.to_numpy()):
        axes.annotate(f" {value:g}", (value, position), va="center", fontsize=8)
    return _png(figure)


def _length_chart(lengths: pd.Series, source: str) -> str:
    figure, axes = plt.subplots(figsize=(9, 3.2))
    positive = lengths[lengths > 0]
    bins = (
        np.logspace(np.log10(max(positive.min(), 0.5)), np.log10(positive.max() + 1), 30)
        if len(positive)
        else 10
    )
    axes.hist(positive, bins=bins, color="#4c72b0")
    axes.set_xscale("log")
    axes.set_xlabel("seconds (log scale)")
    axes.set_ylabel("recordings")
    axes.set_title(f"Recording lengths ({source})")
    return _png(figure)


def _mel_filters(sample_rate: int, n_fft: int, bands: int) -> np.ndarray:
    """Triangular mel filters (HTK mel scale), bands x (n_fft // 2 + 1)."""
    mel = np.linspace(0, 2595 * np.log10(1 + (sample_rate / 2) / 700), bands + 2)
    edges = 700 * (10 ** (mel / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins) / np.maximum(upper - centre, 1e-9)
    return np.clip(np.minimum(rising, falling), 0, None)


def mel_spectrogram(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-mel power (dB, 0 = loudest, floor -80), bands x frames; about 32 ms windows, 75% overlap."""
    n_fft = 1 << round(np.log2(sample_rate * 0.032))
    hop = n_fft // 4
    audio = np.pad(audio, (0, max(0, n_fft - len(audio))))
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = _mel_filters(sample_rate, n_fft, MEL_BANDS) @ power.T
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db - db.max(), -80.0)


def _thumbnail(wav: bytes) -> str:
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    image = mel_spectrogram(audio.mean(axis=1), rate)
    columns = image.shape[1] // THUMBNAIL_COLUMNS
    if columns > 1:  # average neighbouring frames down to the thumbnail's width
        image = (
            image[:, : columns * THUMBNAIL_COLUMNS]
            .reshape(MEL_BANDS, THUMBNAIL_COLUMNS, columns)
            .mean(axis=2)
        )
    buffer = io.BytesIO()
    plt.imsave(buffer, image, cmap="magma", origin="lower", vmin=-80, vmax=0, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _examples(rows: pd.DataFrame) -> pd.DataFrame:
    """Per class, the loudest chunk of each of its first few recordings (by loudness): distinct sources."""
    order = (
        rows.sort_values(["rms_dbfs", "file_name"], ascending=[False, True]) if "rms_dbfs" in rows else rows
    )
    loudest = order.drop_duplicates("recording_key")
    return (
        loudest.groupby("class_id", sort=True)
        .head(THUMBNAILS_PER_CLASS)
        .sort_values(["class_id", "file_name"])
    )


# -- page ----------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .muted { color: #666; }
.numbers { display: flex; flex-wrap: wrap; gap: 1em; margin: 1.5em 0; }
.numbers div { background: #f1f4f9; border-radius: 6px; padding: 0.6em 1em; min-width: 7em; }
.numbers b { display: block; font-size: 1.6em; }
img.chart { max-width: 100%; display: block; margin: 1em 0; }
.class { margin: 1em 0; } .thumbs { display: flex; gap: 8px; flex-wrap: wrap; }
.thumbs figure { margin: 0; } .thumbs img { width: 320px; height: 96px; image-rendering: pixelated; }
figcaption { font-size: 0.75em; color: #555; max-width: 320px; overflow-wrap: anywhere; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 2px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; } tr:nth-child(even) { background: #f6f6f6; }
"""


def _recording_lengths(rows: pd.DataFrame, manifests_dir: Path | None) -> tuple[pd.Series, str]:
    """Lengths of the dataset's recordings: from the catalogue when it has them, else the chunks' span."""
    keys = rows["recording_key"].unique()
    store = RecordingStore.open(manifests_dir) if manifests_dir and Path(manifests_dir).is_dir() else None
    if store is not None:
        with store:
            known = {key: r.length_s for key, r in store.get_many(keys).items() if r.length_s}
        if len(known) >= len(keys) / 2:
            return pd.Series(known, dtype="float64"), "from the archives"
    span = (
        (rows["offset_s"] + rows["duration_s"] - rows.get("padded_s", 0)).groupby(rows["recording_key"]).max()
    )
    return span, "covered by chunks"


def _verification(rows: pd.DataFrame, made: dict[str, Any], manifests_dir: Path | None) -> list[str]:
    """With --verify: what BirdNET confirmed per class, and the recordings it confirms nowhere."""
    if "verify_status" not in rows.columns:
        return []
    statuses = ["confirmed", "doubtful", "unverifiable", "not verified"]
    table = rows.pivot_table(
        index="label", columns="verify_status", values="file_name", aggfunc="count", fill_value=0
    )
    table = table.reindex(columns=statuses, fill_value=0)
    said = verification_sentence(made)  # dataset.json's account, as the card and `stats` say it
    parts = [
        "<h2>Verification</h2>",
        *([f"<p>{html.escape(said)}</p>"] if said else []),
        "<table><tr><th>class</th>" + "".join(f"<th>{s}</th>" for s in statuses) + "</tr>",
        *(
            f"<tr><td>{html.escape(str(label))}</td>"
            + "".join(f"<td>{int(row[s])}</td>" for s in statuses)
            + "</tr>"
            for label, row in table.iterrows()
        ),
        "</table>",
    ]
    if manifests_dir is not None and Path(manifests_dir).is_dir():
        store = RecordingStore.open(manifests_dir)
        if store is not None:
            from birdgrab.stats import likely_mislabels

            with store:
                mislabels = likely_mislabels(Path(manifests_dir), store)
            parts.append(f"<h3>Likely mislabelled upstream ({len(mislabels)})</h3>")
            parts.append(
                "<p>BirdNET confirms none of these recordings' windows as the species they are filed under: "
                "worth telling the archive.</p><ul>"
                + "".join(
                    f"<li>{html.escape(m['key'])} filed as {html.escape(m['label'])}: BirdNET hears "
                    f"{html.escape(m['heard'])} · <a href='{html.escape(m['page_url'] or '')}'>"
                    f"{html.escape(m['page_url'] or 'no page')}</a></li>"
                    for m in mislabels
                )
                + "</ul>"
            )
    return parts


def people_count(rows: pd.DataFrame) -> int:
    """Recordists: people (recordist_id), or spellings for a dataset without that column."""
    column = "recordist_id" if "recordist_id" in rows else "recordist"
    return int(rows.loc[~rows[column].isin(["", "unknown"]), column].nunique())


def _recordists(recordings: pd.DataFrame) -> tuple[pd.Series, str]:
    """Recordings per person (named by their commonest spelling), and a line counting people: one
    person spelled four ways is one recordist (`recordist_id`; a dataset without it counts spellings)."""
    spellings = recordings["recordist"].replace("", "unknown")
    if "recordist_id" not in recordings:
        counts = spellings.value_counts()
        return counts, f"{len(counts)} recordists (as spelled: this dataset has no recordist_id column)"
    people = recordings["recordist_id"].replace("", "unknown")
    named = spellings.groupby(people).agg(lambda names: names.value_counts().index[0])
    counts = people.value_counts()
    counts.index = [named[person] if person != "unknown" else "unknown" for person in counts.index]
    distinct = spellings[people != "unknown"].nunique()
    return (
        counts,
        f"{people_count(recordings)} recordists ({distinct} spellings of their names across the archives)",
    )


def _licence_colours(names: pd.Index) -> list[str]:
    return [
        "#c44e52" if is_no_derivatives(n) else "#dd8452" if is_non_commercial(n) else "#55a868" for n in names
    ]


def render_report(dataset: DatasetFolder, manifests_dir: Path | None) -> tuple[str, int]:
    """The page's HTML and how many spectrogram thumbnails it holds."""
    rows = dataset.rows
    recordings = rows.drop_duplicates("recording_key")
    hours = float(rows["duration_s"].sum()) / 3600
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Dataset report: {len(dataset.class_names)} classes, {hours:.2f} h</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Dataset report</h1><p class='muted'>{html.escape(str(dataset.root))} · birdgrab {__version__} · "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>",
        '<div class="numbers">',
        *(
            f"<div><b>{value}</b>{label}</div>"
            for value, label in [
                (len(dataset.class_names), "classes"),
                (len(recordings), "recordings"),
                (people_count(recordings), "recordists"),
                (len(rows), "chunks"),
                (f"{hours:.2f}", "hours"),
                (f"{dataset.chunk_seconds:g} s", "per chunk"),
                (f"{dataset.sample_rate / 1000:g} kHz", "sample rate"),
            ]
        ),
        "</div>",
    ]
    if rows.empty:
        parts += ["<p>The dataset has no chunks yet.</p></body></html>"]
        return "\n".join(parts), 0
    per_split = rows.groupby("split").agg(
        chunks=("file_name", "size"), recordings=("recording_key", "nunique"), seconds=("duration_s", "sum")
    )
    per_split = per_split.reindex([s for s in SPLIT_COLOURS if s in per_split.index])
    parts += [
        "<h2>Classes and splits</h2>",
        _img(_per_class_chart(rows, dataset.class_names), "chunks per class and split, hours per class"),
        "<table><tr><th>split</th><th>chunks</th><th>recordings</th><th>hours</th></tr>",
        *(
            f"<tr><td>{split}</td><td>{r.chunks}</td><td>{r.recordings}</td><td>{r.seconds / 3600:.2f}</td></tr>"
            for split, r in per_split.iterrows()
        ),
        "</table>",
    ]
    licences = recordings["licence"].replace("", "unknown").value_counts().sort_index()
    parts += [
        "<h2>Licences</h2>",
        "<p>Green: reusable with attribution (share-alike where SA); orange: non-commercial (NC); "
        "red: no derivatives (ND, left out of exports unless <code>--allow-nd</code>).</p>",
        _img(
            _bar_chart(licences, "Recordings per licence", "recordings", _licence_colours(licences.index)),
            "licences",
        ),
        "<h2>Archives</h2>",
        _img(
            _bar_chart(
                recordings["source"].value_counts().sort_index(), "Recordings per archive", "recordings"
            ),
            "archives",
        ),
    ]
    recordists, people_note = _recordists(recordings)
    more = len(recordists) - TOP_RECORDISTS
    lengths, length_source = _recording_lengths(rows, manifests_dir)
    parts += [
        "<h2>Recordists</h2>",
        _img(
            _bar_chart(
                recordists.head(TOP_RECORDISTS),
                f"Recordings per recordist (top {TOP_RECORDISTS})",
                "recordings",
            ),
            "recordists",
        ),
        f"<p>{html.escape(people_note)}{f'; {more} more not shown' if more > 0 else ''}.</p>",
        "<h2>Recording lengths</h2>",
        _img(_length_chart(lengths, length_source), "recording lengths"),
        f"<p>{len(lengths)} recordings, lengths {length_source}: median {lengths.median():.0f} s, "
        f"longest {lengths.max():.0f} s.</p>",
        *_verification(rows, dataset.made_with, manifests_dir),
        "<h2>Spectrograms</h2>",
        f"<p>Mel spectrograms (0 to {dataset.sample_rate // 2000} kHz, bottom to top) of the loudest chunk of up "
        f"to {THUMBNAILS_PER_CLASS} recordings per class.</p>",
    ]
    thumbnails = 0
    examples = _examples(rows)
    for class_id, label in enumerate(dataset.class_names):
        info = dataset.classes.get(str(class_id), {})
        common = " · ".join(n for n in (info.get("english_name"), info.get("german_name")) if n)
        figures = []
        for _, row in examples[examples["class_id"] == class_id].iterrows():
            try:
                data = _thumbnail(dataset.root.read_bytes(row["file_name"]))
            except (OSError, ValueError, RuntimeError) as exc:  # a missing or broken chunk: say so, go on
                log.warning("report: no spectrogram for %s: %s", row["file_name"], exc)
                continue
            thumbnails += 1
            caption = f"{row['file_name']} · {row['recordist'] or 'unknown'} · {row['licence'] or 'licence unknown'}"
            figures.append(
                f"<figure>{_img(data, caption, 'thumb')}<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append(
            f'<div class="class"><h3>{class_id} · {html.escape(label)}'
            f"{f' <span class=muted>({html.escape(common)})</span>' if common else ''}</h3>"
            f'<div class="thumbs">{"".join(figures) or "<p class=muted>no chunks</p>"}</div></div>'
        )
    parts.append("</body></html>")
    return "\n".join(parts), thumbnails


def run_report(
    dataset_root: Path | str | Storage, out: Path | str | None = None, manifests_dir: Path | None = None
) -> ReportSummary:
    """Render the report of `dataset_root` to `out`, a path or storage URL (default: report.html in the
    dataset), written whole."""
    dataset = read_dataset(dataset_root)
    page, thumbnails = render_report(dataset, manifests_dir)
    data = page.encode("utf-8")
    if out is None:
        folder, name = dataset.root, "report.html"
    else:
        location = str(out).rstrip("/")
        parent, _, name = location.rpartition("/")
        folder = open_storage(parent or ".")
    folder.write_bytes(name, data)
    return ReportSummary(
        path=f"{folder}/{name}" if out is None else str(out),
        classes=len(dataset.class_names),
        chunks=len(dataset.rows),
        hours=float(dataset.rows["duration_s"].sum()) / 3600,
        thumbnails=thumbnails,
        recordists=people_count(dataset.rows),
        bytes=len(data),
    )
