"""`birdgrab report`: one self-contained HTML page, rendered by a real browser (headless Chromium)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from birdgrab.cli import app


def report(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["report", *args], catch_exceptions=False)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def page(small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    code, output = report(
        "--dataset",
        str(small_dataset),
        "--manifests",
        str(small_dataset.parent / "manifests"),
        "--out",
        str(out),
    )
    assert code == 0, output
    return out


def test_report_is_self_contained_and_covers_every_class(small_dataset, page):
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|iframe)\b", text, re.I), "nothing is loaded from anywhere"
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "url(" not in text
    metadata = pd.read_csv(small_dataset / "metadata.csv", keep_default_na=False)
    for label in metadata["label"].unique():
        assert label in text
    thumbnails = text.count('class="thumb"')
    assert thumbnails == sum(min(3, n) for n in metadata.groupby("label")["recording_key"].nunique())
    for heading in (
        "Classes and splits",
        "Licences",
        "Archives",
        "Recordists",
        "Recording lengths",
        "Spectrograms",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert "from the archives" in text, "recording lengths come from the catalogue when it is there"


def test_report_defaults_to_the_dataset_folder(small_dataset, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(small_dataset, dataset)
    code, output = report("--dataset", str(dataset), "--manifests", str(tmp_path / "none"))
    assert code == 0, output
    assert (dataset / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "covered by chunks" in (dataset / "report.html").read_text()


def test_report_of_no_dataset_is_one_line_and_exit_2(tmp_path):
    code, output = report("--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "r.html"))
    assert code == 2 and "no dataset folder" in output
    assert not (tmp_path / "missing").exists() and not (tmp_path / "r.html").exists()


def test_chromium_renders_the_report_as_a_page_with_charts(page, tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        # CI (`.ci/run` sets CI and installs chromium) must render the page: missing there is a failure.
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2400)
    pixels = np.asarray(image.resize((300, 600))).reshape(-1, 3)
    ink = float((pixels.min(axis=1) < 200).mean())
    colours = {tuple(p) for p in (pixels // 32).tolist()}
    assert ink > 0.03, f"the page looks blank ({ink:.1%} non-white)"
    assert len(colours) > 10, "charts in several colours, not just text"
