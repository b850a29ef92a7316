"""The fault matrix (`make test-faults`): catalog -> filter -> fetch -> chunk over xeno-canto, Europeana
and iNaturalist (with Wikipedia and Wikidata), on listings of many pages, one fault kind at a time.

Each case proves, with counters that start from zero for it, that its fault changed answers on every
target it can strike; that every refusal's Retry-After was waited out (the refusal and the retry
are both timestamped on the server, so this is an order of events, not a bound on the test's time);
the exit codes of the first run with the fault on; and that the runs end in the fault-free state:
the same dataset bytes, manifests and catalogue, and no partial file or journal left behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from typer.testing import Result

from birdgrab.sandbox import FaultRule, Sandbox, SandboxConfig
from tests.conftest import FAST_RETRIES, Birdgrab
from tests.test_refresh import snapshot

pytestmark = pytest.mark.faults

SPECIES = "Turdus philomelos\nTurdus merula\nCyanistes caeruleus\nFringilla coelebs\n"
SOURCES = ("--source", "xeno-canto", "--source", "europeana", "--source", "inaturalist")
# The server serves 4 records a page whatever is asked: every listing runs to several pages, so
# faults on a later page (and records repeated from the page before) meet the client.
PAGE_RECORDS = 4
RATE = 0.2
RETRY_AFTER = 0.5  # seconds, said by every 429, 503 and maxlag
TIMEOUT_DELAY = 2.0  # seconds a "timeout" fault stalls; every client timeout below is 1 s
ENV = {
    **FAST_RETRIES,
    **{
        f"BIRDGRAB_{name}_TIMEOUT": "1"
        for name in ("XC", "EUROPEANA", "INATURALIST", "WIKIPEDIA", "WIKIDATA")
    },
    "BIRDGRAB_DOWNLOAD_TIMEOUT": "1",
    # A xeno-canto download is two requests (the /download redirect, then the file), so at RATE an
    # attempt fails about 36% of the time, and `first` can force the first two of a recording. With
    # 6 attempts a recording of the archive exhausts them (which one depends on the order requests
    # arrive in: 1 run in 3 here); with 10, none of the archive's 170 can, whichever arrives first.
    "BIRDGRAB_RETRY_ATTEMPTS": "10",
}
API = frozenset({"xc-api", "europeana-api", "inat-api", "wiki", "wikidata"})
AUDIO = frozenset({"xc-audio", "europeana-audio", "inat-audio"})
SAYS_RETRY_AFTER = frozenset({"429", "503", "maxlag"})


@dataclass(frozen=True)
class Case:
    """One row of the matrix: the rules set, where each kind must strike, and what the first run says."""

    rules: tuple[FaultRule, ...]
    strikes: dict[str, frozenset[str]]  # kind -> every target it must have changed an answer on
    first_run: tuple[int, int, int] = (0, 0, 0)  # exit codes of catalog, filter, fetch
    failed: str | None = None  # permanent: every failed download's reason says this
    rejected: str | None = None  # unusable bytes: every rejected download's reason says this
    fetch_args: tuple[str, ...] = field(default=())  # for the run without the fault


def about_a_fifth(kind: str, targets: frozenset[str], **outcome) -> Case:
    """`kind` on about 20% of requests everywhere it applies, and on the first request of every
    target, so that a target asked only once (Wikipedia here) meets it too."""
    rule = FaultRule(kind, target="*", rate=RATE, first=1, retry_after=RETRY_AFTER, delay=TIMEOUT_DELAY)
    return Case((rule,), {kind: targets}, **outcome)


CASES = {
    "429": about_a_fifth("429", API | AUDIO),
    "500": about_a_fifth("500", API | AUDIO),
    "503": about_a_fifth("503", API | AUDIO),
    "reset": about_a_fifth("reset", API | AUDIO),
    "timeout": about_a_fifth("timeout", API | AUDIO),
    "truncate": about_a_fifth("truncate", API | AUDIO),
    "bad_json": about_a_fifth("bad_json", API),
    "maxlag": about_a_fifth("maxlag", frozenset({"wiki", "wikidata"})),
    # every page after the first starts with records of the page before
    "repeat_page": Case(
        (FaultRule("repeat_page", target="*"),), {"repeat_page": frozenset({"xc-api", "europeana-api"})}
    ),
    # a server that ignores Range: the transfers a truncation cut short must start over
    "no_range": Case(
        (FaultRule("no_range", target="audio"), FaultRule("truncate", target="audio", rate=RATE, first=1)),
        {"no_range": AUDIO, "truncate": AUDIO},
    ),
    # an HTML page instead of audio: failed with the reason (exit 1), retried next run
    "html": about_a_fifth("html", AUDIO, first_run=(0, 0, 1), failed="HTML"),
    # garbage bytes are the file's own problem: rejected with the reason (exit 0), not fetched again
    # while unchanged upstream; the run without the fault asks for them with --retry-rejected
    "corrupt": about_a_fifth("corrupt", AUDIO, rejected="not audio", fetch_args=("--retry-rejected",)),
}


def pipeline(run: Birdgrab, fetch_args: tuple[str, ...] = ()) -> list[Result]:
    species = run.root / "species.txt"
    species.write_text(SPECIES)
    return [
        run("catalog", "--species-file", str(species), *SOURCES),
        run("filter", "--min-files", "1"),
        run("fetch", *fetch_args),
    ]


def codes(results: list[Result]) -> tuple[int, ...]:
    return tuple(result.exit_code for result in results)


def state(run: Birdgrab) -> dict:
    """What the runs leave: dataset bytes, manifests, catalogue, cache, and any partial file or journal.
    A download's `attempts` count is left out: retrying is what the faults ask for."""
    found = snapshot(run.root)
    downloads = found["manifests"].get("downloads.json", {})
    for entry in downloads.get("entries", {}).values():
        entry.pop("attempts", None)
    catalogue = run.catalogue()
    found["catalogue"] = {
        key: {k: v for k, v in recording.items() if k not in ("first_seen", "last_seen")}
        for key, recording in catalogue["recordings"].items()
    }
    partial = run.cache / ".partial"
    found["partial"] = sorted(str(p.relative_to(partial)) for p in partial.rglob("*") if p.is_file())
    return found


def assert_nothing_half_done(found: dict) -> None:
    assert not found["partial"] and not found["leftovers"] and not found["journals"], (
        found["partial"],
        found["leftovers"],
        found["journals"],
    )


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """One sandbox for the module (its URLs, and so the metadata, are the same for every run) and the
    state a fault-free run ends in."""
    with Sandbox(SandboxConfig(hour_long=False)) as sandbox:
        sandbox.set_page_size("xeno-canto", PAGE_RECORDS)
        sandbox.set_page_size("europeana", PAGE_RECORDS)
        run = Birdgrab(sandbox, tmp_path_factory.mktemp("reference"), {**sandbox.env(), **ENV})
        results = pipeline(run)
        assert codes(results) == (0, 0, 0), [r.output for r in results]
        reference = state(run)
        assert reference["dataset"] and reference["catalogue"]
        assert_nothing_half_done(reference)
        yield sandbox, reference


def entries(run: Birdgrab, status: str) -> dict[str, str]:
    return {
        key: entry["reason"]
        for key, entry in run.manifest("downloads.json")["entries"].items()
        if entry["status"] == status
    }


@pytest.mark.parametrize("kind", CASES)
def test_the_fault_fires_everywhere_and_the_runs_end_in_the_fault_free_state(stage, kind, tmp_path):
    sandbox, expected = stage
    case = CASES[kind]
    run = Birdgrab(sandbox, tmp_path, {**sandbox.env(), **ENV})
    sandbox.reset_counts()
    sandbox.set_faults(case.rules)
    try:
        first = pipeline(run)
        fired, waits = sandbox.fault_counts(), sandbox.retry_waits()
        assert codes(first) == case.first_run, [r.output for r in first]
        if case.failed:
            failed = entries(run, "failed")
            assert failed and all(case.failed in reason for reason in failed.values()), failed
            sandbox.reset_counts()
            assert codes(pipeline(run)) == case.first_run  # still failing, and reported again
            asked_again = sum(sandbox.fault_counts().get(kind, {}).values())
            assert asked_again >= len(failed), "the failed files were asked for again"
        if case.rejected:
            rejected = entries(run, "rejected")
            assert rejected and all(case.rejected in reason for reason in rejected.values()), rejected
    finally:
        sandbox.clear_faults()

    assert {k: set(targets) for k, targets in fired.items()} == case.strikes
    if kind in SAYS_RETRY_AFTER:
        assert {w.target for w in waits} == case.strikes[kind]  # refused somewhere, asked again there
        early = [w for w in waits if w.waited < w.retry_after]
        assert not early, f"asked again before Retry-After said: {early}"
    if case.first_run == (0, 0, 0) and not case.rejected:
        after_faults = state(run)  # exit 0 despite the faults: everything is there already
        assert_nothing_half_done(after_faults)
        assert after_faults == expected

    sandbox.reset_counts()
    rerun = pipeline(run, case.fetch_args)
    assert codes(rerun) == (0, 0, 0), [r.output for r in rerun]
    final = state(run)
    assert_nothing_half_done(final)
    assert final == expected
