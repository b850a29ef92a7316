"""Shared fixtures: a sandbox archive on 127.0.0.1 and a `birdgrab` runner pointed at it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from birdgrab.cli import app
from birdgrab.sandbox import Sandbox, SandboxConfig
from birdgrab.store import RecordingStore

# Retries without the production back-off, so fault tests take milliseconds, not minutes.
FAST_RETRIES = {
    "BIRDGRAB_BACKOFF_BASE": "0.01",
    "BIRDGRAB_BACKOFF_MAX": "0.1",
    "BIRDGRAB_RETRY_ATTEMPTS": "6",
    "BIRDGRAB_XC_RATE": "500",
    "BIRDGRAB_INATURALIST_RATE": "500",
    "BIRDGRAB_INATURALIST_TIMEOUT": "3",
    "BIRDGRAB_XC_TIMEOUT": "3",
    "BIRDGRAB_EUROPEANA_TIMEOUT": "3",
    "BIRDGRAB_WIKIPEDIA_TIMEOUT": "3",
    "BIRDGRAB_DOWNLOAD_TIMEOUT": "3",
}
COMMON_COMMANDS = {"catalog", "filter", "fetch", "chunk", "refresh", "stats"}


def no_derivatives(licence: str) -> bool:
    """The tests' own reading of a licence name such as "CC BY-NC-ND 4.0", independent of birdgrab's:
    it forbids derivatives when ND is one of its elements."""
    return "ND" in re.split(r"[-\s]+", licence.upper())


@pytest.fixture
def sandbox():
    with Sandbox(SandboxConfig(hour_long=False)) as running:
        yield running


@dataclass
class Birdgrab:
    """Runs the real CLI in-process (real sockets to the sandbox) with this test's folders."""

    sandbox: Sandbox
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def out(self) -> Path:
        return self.root / "dataset"

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        argv = list(args)
        if argv and argv[0] in COMMON_COMMANDS:
            argv += ["--manifests", str(self.manifests), "--cache", str(self.cache), "--out", str(self.out)]
        result = CliRunner().invoke(app, argv, env={**self.env, **(env or {})}, catch_exceptions=False)
        assert "Traceback" not in result.output, result.output
        return result

    def manifest(self, name: str) -> dict:
        return json.loads((self.manifests / name).read_text())

    def catalogue(self) -> dict:
        """The recordings store in the shape recordings.json had: recordings by key (as JSON values),
        the skipped items and the incomplete listings of the last catalog run."""
        with RecordingStore.open(self.manifests) as store:  # type: ignore[union-attr]
            return {
                "recordings": {r.key: r.model_dump(mode="json") for r in store},
                "skipped": [item.model_dump(mode="json") for item in store.skipped()],
                "incomplete_listings": [i.model_dump(mode="json") for i in store.incomplete_listings()],
                "parameters": store.parameters,
            }

    def recordings(self) -> dict[str, dict]:
        return self.catalogue()["recordings"]

    def skipped(self) -> list[dict]:
        return self.catalogue()["skipped"]


@pytest.fixture
def birdgrab(sandbox, tmp_path) -> Birdgrab:
    return Birdgrab(sandbox, tmp_path, {**sandbox.env(), **FAST_RETRIES})


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """A small real dataset (3 classes, every split, ND-licensed recordings among them), built once
    through the sandbox at 16 kHz in 5 s chunks: neither is the default, so loaders must not assume."""
    root = tmp_path_factory.mktemp("small")
    with Sandbox(SandboxConfig(hour_long=False)) as running:
        run = Birdgrab(running, root, {**running.env(), **FAST_RETRIES})
        (root / "species.txt").write_text("Turdus merula\nFringilla coelebs\nParus major\n")
        assert run("catalog", "--species-file", str(root / "species.txt")).exit_code == 0
        assert run("filter", "--min-files", "1", "--max-files", "5").exit_code == 0
        fetched = run("fetch", "--sample-rate", "16000", "--chunk-seconds", "5", "--split", "60/20/20")
        assert fetched.exit_code == 0, fetched.output
    return run.out
