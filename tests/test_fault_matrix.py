"""The fault matrix (`make test-faults`): catalog -> filter -> fetch -> chunk with one fault class at
about 20%; after at most two runs with the fault on and one with it off, the dataset equals the
fault-free one, transient failures are recovered, and permanent ones are reported with a reason."""

from __future__ import annotations

import pytest

from birdgrab.sandbox import FaultRule, Sandbox, SandboxConfig
from tests.conftest import FAST_RETRIES, Birdgrab
from tests.test_refresh import snapshot

pytestmark = pytest.mark.faults

SPECIES = "Turdus philomelos\nTurdus merula\nCyanistes caeruleus\nFringilla coelebs\n"
TRANSIENT = ["429", "500", "503", "reset", "timeout", "truncate", "bad_json", "maxlag", "repeat_page"]
PERMANENT = {"html": "HTML"}
# Garbage bytes are the file's own problem: rejected with a reason (exit 0) and not downloaded again
# while unchanged upstream; the clean run asks for them again with --retry-rejected.
REJECTED = {"corrupt": "not audio"}
# Short timeouts so that "timeout" faults (the server sleeps 2 s) cost one second each.
ENV = {
    **FAST_RETRIES,
    "BIRDGRAB_XC_TIMEOUT": "1",
    "BIRDGRAB_EUROPEANA_TIMEOUT": "1",
    "BIRDGRAB_WIKIPEDIA_TIMEOUT": "1",
    "BIRDGRAB_DOWNLOAD_TIMEOUT": "1",
    "BIRDGRAB_RETRY_ATTEMPTS": "6",
}


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """One sandbox (URLs, and so metadata, are the same for every run) and the fault-free dataset."""
    with Sandbox(SandboxConfig(hour_long=False)) as sandbox:
        root = tmp_path_factory.mktemp("reference")
        pipeline(Birdgrab(sandbox, root, {**sandbox.env(), **ENV}), expect_clean=True)
        yield sandbox, snapshot(root)["dataset"]


def pipeline(run: Birdgrab, *, expect_clean: bool, fetch_args: tuple[str, ...] = ()) -> list[int]:
    species = run.root / "species.txt"
    species.write_text(SPECIES)
    codes = [
        run("catalog", "--species-file", str(species)).exit_code,
        run("filter", "--min-files", "1").exit_code,
        run("fetch", *fetch_args).exit_code,
    ]
    if expect_clean:
        assert codes == [0, 0, 0]
    return codes


@pytest.mark.parametrize("kind", TRANSIENT + list(PERMANENT) + list(REJECTED))
def test_pipeline_survives_the_fault_and_converges(stage, kind, tmp_path):
    sandbox, expected = stage
    run = Birdgrab(sandbox, tmp_path, {**sandbox.env(), **ENV})
    sandbox.set_faults([FaultRule(kind, target="*", rate=0.2, retry_after=0, delay=2)])
    try:
        first = pipeline(run, expect_clean=False)
        second = pipeline(run, expect_clean=False)
        assert sandbox.counts()["faults"] > 0, "the fault never fired"
        if kind in PERMANENT:
            failed = {
                k: e["reason"]
                for k, e in run.manifest("downloads.json")["entries"].items()
                if e["status"] == "failed"
            }
            assert failed and all(PERMANENT[kind] in reason for reason in failed.values()), failed
            assert second[2] == 1  # reported, and retried next run
        elif kind in REJECTED:
            entries = run.manifest("downloads.json")["entries"].values()
            rejected = [e["reason"] for e in entries if e["status"] == "rejected"]
            assert rejected and all(REJECTED[kind] in reason for reason in rejected), rejected
            assert second == [0, 0, 0]  # listed, not failed
        else:
            # transient faults: recovered within the runs, nothing left failed
            assert second == [0, 0, 0], (first, second)
    finally:
        sandbox.clear_faults()
    retry = ("--retry-rejected",) if kind in REJECTED else ()
    assert pipeline(run, expect_clean=True, fetch_args=retry) == [0, 0, 0]
    assert snapshot(tmp_path)["dataset"] == expected
