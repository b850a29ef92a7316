"""Benchmark of `birdgrab catalog`: paging xeno-canto within the politeness limit, and how few
Wikipedia requests resolving species takes (first run and re-run), against `wikipedia-api`.

The sandbox runs in its own process; birdgrab runs as the real CLI in a child process, taking
turns with the baseline, a plain httpx loop asking one page after another (also a child process).
The paging goal is a ratio against a computed bound, not a measured run: with the politeness limit
of XC_RATE requests a second and LATENCY_S a page, no client can list P pages faster than
P / XC_RATE + LATENCY_S. `python -m bench catalog [--quick]`.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import wikipediaapi

from bench.harness import REPO, Report, Run, SandboxProcess, run_birdgrab, run_process, verdict
from birdgrab.sandbox import SandboxConfig
from birdgrab.sandbox.contents import build_archive
from birdgrab.sources.xenocanto import DEFAULT_QUERY as DEFAULT_XC_QUERY
from birdgrab.store import RecordingStore

BULK_RECORDINGS = 20_000
QUICK_BULK_RECORDINGS = 2_000
ROUNDS = 2
LATENCY_S = 1.0  # per xeno-canto API page
XC_RATE = 2.0  # BIRDGRAB_XC_RATE: requests per second
PER_PAGE = 500  # what birdgrab asks for (sources/xenocanto.py)
GOAL_BOUND_RATIO = 1.15
WIKI_CONCURRENCY = 3  # Wikimedia's limit, for wikipedia-api as for birdgrab


def bulk_query() -> str:
    """A tag query for exactly the bulk records: their ids follow every id of the demo archive."""
    last_demo_id = max(build_archive(SandboxConfig(hour_long=False)).xc)
    return f"nr:{last_demo_id + 1}-999999999"


def _first_page(sandbox: SandboxProcess, query: str) -> dict[str, Any]:
    params = {"query": query, "page": 1, "per_page": PER_PAGE, "key": sandbox.env["BIRDGRAB_XC_KEY"]}
    return httpx.get(sandbox.env["BIRDGRAB_XC_API"], params=params, timeout=60).json()


_SEQUENTIAL = """
import sys, httpx
api, key, query, pages = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
records = 0
with httpx.Client(timeout=60) as client:
    for page in range(1, pages + 1):
        params = {"query": query, "page": page, "per_page": int(sys.argv[5]), "key": key}
        records += len(client.get(api, params=params).raise_for_status().json()["recordings"])
print(records)
"""


def _sequential(sandbox: SandboxProcess, query: str, pages: int) -> Callable[[int], Run]:
    """The baseline: one page after another with a plain httpx client, in a child process."""

    def listing(round_number: int) -> Run:
        argv = [
            sys.executable,
            "-c",
            _SEQUENTIAL,
            sandbox.env["BIRDGRAB_XC_API"],
            sandbox.env["BIRDGRAB_XC_KEY"],
        ]
        run = run_process([*argv, query, str(pages), str(PER_PAGE)], os.environ, REPO).check(
            "sequential listing"
        )
        run.facts["recordings"] = int(run.output.split()[-1])
        return run

    return listing


def _birdgrab(sandbox: SandboxProcess, work: Path, query: str) -> Callable[[int], Run]:
    """A first `birdgrab catalog` into empty manifests; notes the recordings and requests."""

    def catalog(round_number: int) -> Run:
        root = work / f"catalog{round_number}"
        shutil.rmtree(root, ignore_errors=True)
        sandbox.reset_stats()
        args = ["catalog", "--source", "xeno-canto", "--xc-query", query, "--quiet"]
        run = run_birdgrab(args, sandbox.env, root, {"BIRDGRAB_XC_RATE": f"{XC_RATE:g}"}).check(
            "birdgrab catalog"
        )
        stats = sandbox.stats()
        run.facts.update({"xc_requests": stats["xc-api"], "wiki_requests": stats["wiki-api"]})
        with RecordingStore.open(root / "manifests") as store:  # type: ignore[union-attr]
            run.facts["recordings"] = store.count()
        run.facts["species"] = _species_count(root)
        return run

    return catalog


def _species_count(root: Path) -> int:
    return len(json.loads((root / "manifests" / "species.json").read_text())["species"])


def _catalog(sandbox: SandboxProcess, work: Path, report: Report, rounds: int) -> list[str]:
    """Paging speed, then Wikipedia requests per species on the first run and on a re-run.
    Returns the species names for the wikipedia-api comparison."""
    query = bulk_query()
    default = _first_page(sandbox, DEFAULT_XC_QUERY)
    first = _first_page(sandbox, query)
    total = int(first["numRecordings"])
    real_pages = math.ceil(total / PER_PAGE)
    claimed_pages = int(first["numPages"])
    bound = real_pages / XC_RATE + LATENCY_S
    report.line(
        f"cataloguing {total} xeno-canto recordings (query {query!r}: {real_pages} pages of {PER_PAGE}),"
        f" {LATENCY_S:g} s latency per page, BIRDGRAB_XC_RATE={XC_RATE:g}, {rounds} rounds taking turns"
    )
    report.line(
        f"  the sandbox says numPages={claimed_pages} for {real_pages} real pages"
        f" (it overcounts {claimed_pages - real_pages} empty page(s), as xeno-canto does);"
        f" the default query {DEFAULT_XC_QUERY!r} would get {default['numRecordings']} recordings:"
        f" the demo archive's German birds too"
    )
    sandbox.set_latency("xc-api", LATENCY_S)
    runs = report.contest(
        "paging",
        {"birdgrab catalog": _birdgrab(sandbox, work, query), "one page after another (httpx loop)": _sequential(sandbox, query, real_pages)},
        rounds,
    )  # fmt: skip
    birdgrab, sequential = runs.values()
    for run in sequential:
        if run.facts["recordings"] != total:
            raise RuntimeError(f"the sequential listing read {run.facts['recordings']} recordings of {total}")
    for run in birdgrab:
        if run.facts["recordings"] != total:
            raise RuntimeError(f"birdgrab catalogued {run.facts['recordings']} recordings of {total}")
    ratio_bound = birdgrab.best.wall_s / bound
    rows = [
        ["birdgrab catalog (pages concurrent within the limit)", f"{birdgrab.best.wall_s:.1f} s",
         f"{birdgrab.median_wall_s:.1f} s", f"{birdgrab.median_cpu_s:.1f} s", f"{birdgrab.peak_mb:.0f} MB",
         str(birdgrab.best.facts["xc_requests"])],
        ["one page after another (plain httpx loop)", f"{sequential.best.wall_s:.1f} s",
         f"{sequential.median_wall_s:.1f} s", f"{sequential.median_cpu_s:.1f} s", f"{sequential.peak_mb:.0f} MB",
         str(real_pages)],
    ]  # fmt: skip
    report.table(
        "paging",
        ["run", "wall, best", "wall, median", "CPU, median", "peak RSS", "xeno-canto requests"],
        rows,
    )
    goals = [
        [f"birdgrab's best wall / computed bound ({real_pages}/{XC_RATE:g} + {LATENCY_S:g} = {bound:.1f} s)",
         f"{ratio_bound:.2f}x", f"<= {GOAL_BOUND_RATIO:g}x", verdict(ratio_bound, GOAL_BOUND_RATIO)],
        ["birdgrab / one page after another (best walls)", f"{birdgrab.best.wall_s / sequential.best.wall_s:.2f}x", "", ""],
    ]  # fmt: skip
    for cells in rows:
        report.line(
            f"  {cells[0]:52s} best {cells[1]}, median {cells[2]}, CPU {cells[3]}, peak {cells[4]}, {cells[5]} requests"
        )
    wiki_first = birdgrab[0].facts["wiki_requests"]
    species = birdgrab[0].facts["species"]
    root = work / "catalog0"
    # The re-run is about Wikipedia only: no latency, no rate limit worth waiting for.
    sandbox.set_latency("xc-api", 0)
    sandbox.reset_stats()
    args = ["catalog", "--source", "xeno-canto", "--xc-query", query, "--quiet"]
    run_birdgrab(args, sandbox.env, root, {"BIRDGRAB_XC_RATE": "100"}).check("catalog re-run")
    wiki_again = sandbox.stats()["wiki-api"]
    goals += [
        [f"Wikipedia requests per species, first run ({wiki_first} for {species})", f"{wiki_first / species:.2f}",
         "<= 1", verdict(wiki_first, species)],
        ["Wikipedia requests per species, re-run", f"{wiki_again / species:.2f}", "0", verdict(wiki_again, 0)],
    ]  # fmt: skip
    report.table("goals", ["figure", "value", "goal", "verdict"], goals)
    for figure, value, goal, met in goals:
        report.line(f"  {figure}: {value}" + (f" (goal {goal}) {met}" if goal else ""))
    return sorted(json.loads((root / "manifests" / "species.json").read_text())["species"])


# -- wikipedia-api for comparison -----------------------------------------------------------------------
class _ToSandbox(httpx.AsyncBaseTransport):
    """Sends every request to the sandbox's MediaWiki endpoint instead of *.wikipedia.org."""

    def __init__(self, base_url: str, lang: str):
        base = httpx.URL(base_url)
        self._rewrite = {"scheme": base.scheme, "host": base.host, "port": base.port}
        self._path = f"/wikipedia/{lang}/w/api.php"
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(**self._rewrite, path=self._path)
        request.headers["Host"] = request.url.netloc.decode()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _wikipedia_api_resolve(base_url: str, names: list[str]) -> int:
    """Summary and full URL of every name, 3 at a time; returns how many had a summary."""
    wiki = wikipediaapi.AsyncWikipedia(
        user_agent="birdgrab-bench/1.0 (sandbox@birdgrab.invalid)",
        language="de",
        transport=_ToSandbox(base_url, "de"),
    )
    slots = asyncio.Semaphore(WIKI_CONCURRENCY)

    async def one(name: str) -> bool:
        async with slots:
            page = wiki.page(name)
            summary = await page.summary
            await page.fullurl
            return bool(summary)

    try:
        return sum(await asyncio.gather(*(one(name) for name in names)))
    finally:
        close = getattr(wiki, "aclose", None) or getattr(wiki._client, "aclose", None)
        if close is not None:
            await close()


def _wikipedia_api(sandbox: SandboxProcess, names: list[str], report: Report) -> None:
    sandbox.reset_stats()
    start = time.perf_counter()
    found = asyncio.run(_wikipedia_api_resolve(sandbox.base_url, names))
    elapsed = time.perf_counter() - start
    requests = sandbox.stats()["wiki-api"]
    version = ".".join(map(str, getattr(wikipediaapi, "__version__", ())))
    report.line(
        f"  wikipedia-api {version} (summary + fullurl per page, {WIKI_CONCURRENCY} at a time):"
        f" {requests / len(names):.2f} requests per species ({requests} for {len(names)};"
        f" {found} with a summary) in {elapsed:.1f} s"
    )
    report.table(
        "wikipedia",
        ["client", "requests per species", "species with a summary"],
        [[f"wikipedia-api {version} (summary + full URL per page)", f"{requests / len(names):.2f}", f"{found} of {len(names)}"]],
        note="birdgrab's figures are in the goals above (first run; re-run).",
    )  # fmt: skip


def run(quick: bool = False) -> Report:
    """Every measurement against one sandbox process; `quick`: 2,000 recordings instead of 20,000."""
    report = Report("catalog", quick=quick)
    config = SandboxConfig(
        xc_bulk_recordings=QUICK_BULK_RECORDINGS if quick else BULK_RECORDINGS, hour_long=False
    )
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-catalog-") as tmp:
        work = Path(tmp)
        with SandboxProcess(config, work) as sandbox:
            names = _catalog(sandbox, work, report, ROUNDS)
            _wikipedia_api(sandbox, names, report)
    return report.finish()
