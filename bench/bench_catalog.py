"""Benchmark of `birdgrab catalog`: paging xeno-canto within the politeness limit, and how few
Wikipedia requests resolving species takes (first run and re-run), against `wikipedia-api`.

The sandbox runs in its own process and birdgrab runs as the real CLI in a child process, so
neither steals the other's interpreter. Every goal is a ratio against a baseline measured in
the same run. Run with `python -m bench.bench_catalog` from the repository root; `run()` returns
the report lines.

"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import SandboxProcess, run_birdgrab
from birdgrab.sandbox import SandboxConfig
from birdgrab.sandbox.contents import build_archive
from birdgrab.sources.xenocanto import DEFAULT_QUERY as DEFAULT_XC_QUERY
from birdgrab.store import RecordingStore

BULK_RECORDINGS = 20_000
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


def _sequential_pages(sandbox: SandboxProcess, query: str, pages: int) -> tuple[float, int]:
    """The baseline: one page after another with a plain httpx client; (seconds, records)."""
    records = 0
    key = sandbox.env["BIRDGRAB_XC_KEY"]
    start = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for page in range(1, pages + 1):
            params = {"query": query, "page": page, "per_page": PER_PAGE, "key": key}
            body = client.get(sandbox.env["BIRDGRAB_XC_API"], params=params).json()
            records += len(body["recordings"])
    return time.perf_counter() - start, records


def _species_count(root: Path) -> int:
    return len(json.loads((root / "manifests" / "species.json").read_text())["species"])


def _catalog(sandbox: SandboxProcess, work: Path) -> tuple[list[str], list[str]]:
    """Paging speed, then Wikipedia requests per species on the first run and on a re-run.
    Returns (report lines, the species names for the wikipedia-api comparison)."""
    query = bulk_query()
    default = _first_page(sandbox, DEFAULT_XC_QUERY)
    first = _first_page(sandbox, query)
    total = int(first["numRecordings"])
    real_pages = math.ceil(total / PER_PAGE)
    claimed_pages = int(first["numPages"])
    bound = real_pages / XC_RATE + LATENCY_S
    lines = [
        f"cataloguing {total} xeno-canto recordings (query {query!r}: {real_pages} pages of {PER_PAGE}),"
        f" {LATENCY_S:g} s latency per page, BIRDGRAB_XC_RATE={XC_RATE:g}",
        f"  the sandbox says numPages={claimed_pages} for {real_pages} real pages"
        f" (it overcounts {claimed_pages - real_pages} empty page(s), as xeno-canto does);"
        f" the default query {DEFAULT_XC_QUERY!r} would get {default['numRecordings']} recordings,"
        f" {math.ceil(int(default['numRecordings']) / PER_PAGE)} real pages (numPages {default['numPages']}):"
        f" the demo archive's German birds too",
    ]
    sandbox.set_latency("xc-api", LATENCY_S)
    sandbox.reset_stats()
    root = work / "catalog"
    args = ["catalog", "--source", "xeno-canto", "--xc-query", query, "--quiet"]
    birdgrab = run_birdgrab(args, sandbox.env, root, {"BIRDGRAB_XC_RATE": f"{XC_RATE:g}"})
    birdgrab.check("birdgrab catalog")
    stats = sandbox.stats()
    species = _species_count(root)
    with RecordingStore.open(root / "manifests") as store:  # type: ignore[union-attr]
        recordings = store.count()
    sequential_s, sequential_records = _sequential_pages(sandbox, query, real_pages)
    ratio_bound = birdgrab.wall_s / bound
    lines += [
        f"  catalog: {birdgrab.wall_s:.1f} s, bound {bound:.1f} s ({real_pages}/{XC_RATE:g} + {LATENCY_S:g})"
        f" -> {ratio_bound:.2f}x bound (goal <= {GOAL_BOUND_RATIO:g})"
        f" {'met' if ratio_bound <= GOAL_BOUND_RATIO else 'MISSED'};"
        f" sequential {sequential_s:.1f} s -> {birdgrab.wall_s / sequential_s:.2f}x",
        f"    birdgrab: {recordings} recordings, {stats['xc-api']} xeno-canto requests"
        f" ({stats['xc-api'] - real_pages} beyond the real pages), {birdgrab.cpu_s:.1f} s CPU,"
        f" peak RSS {birdgrab.max_rss_mb:.0f} MB, process start to exit",
        f"    sequential httpx loop: {sequential_records} recordings in {real_pages} requests",
    ]
    wiki_first = stats["wiki-api"]
    # The re-run is about Wikipedia only: no latency, no rate limit worth waiting for.
    sandbox.set_latency("xc-api", 0)
    sandbox.reset_stats()
    rerun = run_birdgrab(args, sandbox.env, root, {"BIRDGRAB_XC_RATE": "100"}).check("catalog re-run")
    wiki_again = sandbox.stats()["wiki-api"]
    lines += [
        f"  Wikipedia requests per species: first run {wiki_first / species:.3f}"
        f" ({wiki_first} for {species} species; goal <= 1) {'met' if wiki_first <= species else 'MISSED'},"
        f" re-run {wiki_again / species:.3f} ({wiki_again}; goal 0) {'met' if wiki_again == 0 else 'MISSED'}"
        f" (the re-run, without latency or rate limit, took {rerun.wall_s:.1f} s)",
    ]
    names = sorted(json.loads((root / "manifests" / "species.json").read_text())["species"])
    return lines, names


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


async def _wikipedia_api_resolve(wikipediaapi: Any, base_url: str, names: list[str]) -> int:
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


def _wikipedia_api(sandbox: SandboxProcess, names: list[str]) -> list[str]:
    try:
        import wikipediaapi
    except ImportError:
        return ["  wikipedia-api not installed (pip install -e '.[bench]'): comparison skipped"]
    sandbox.reset_stats()
    start = time.perf_counter()
    found = asyncio.run(_wikipedia_api_resolve(wikipediaapi, sandbox.base_url, names))
    elapsed = time.perf_counter() - start
    requests = sandbox.stats()["wiki-api"]
    version = ".".join(map(str, getattr(wikipediaapi, "__version__", ())))
    return [
        f"  wikipedia-api {version} (summary + fullurl per page, {WIKI_CONCURRENCY} at a time):"
        f" {requests / len(names):.2f} requests per species ({requests} for {len(names)};"
        f" {found} with a summary) in {elapsed:.1f} s"
    ]


def run() -> list[str]:
    """Run every measurement against one sandbox process and return the report lines."""
    config = SandboxConfig(xc_bulk_recordings=BULK_RECORDINGS, hour_long=False)
    with tempfile.TemporaryDirectory(prefix="birdgrab-bench-catalog-") as tmp:
        work = Path(tmp)
        with SandboxProcess(config, work) as sandbox:
            lines, names = _catalog(sandbox, work)
            return lines + _wikipedia_api(sandbox, names)


if __name__ == "__main__":
    print("\n".join(run()))
