"""Where a suite's results go, and how BENCHMARKS.md is filled from them.

Every run of a suite is saved as `bench/results/<YYYY-MM-DD>/<suite>.json` (the raw runs, the
host, the tables) and `<suite>.md` (the report as printed), both tracked by git: a figure in
BENCHMARKS.md can always be traced to the run that printed it. A later run on the same day
replaces that day's files (except that a `--quick` run never replaces a full one); earlier days
stay.

BENCHMARKS.md is prose written by hand around generated blocks:

    <!-- bench:chunk.speed -->
    (filled from the newest saved chunk results: their table "speed", with a caption line)
    <!-- /bench:chunk.speed -->

`<!-- bench:SUITE -->` with no table name shows the suite's printed lines as they are. `python -m bench render` refills every block. A
block whose suite has never been saved says so in the page (`make bench-scale-1m` is run apart
from `make bench`); a block naming a table the saved run does not have is an error, never left
stale.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import REPO, Report

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = REPO / "BENCHMARKS.md"

_BLOCK = re.compile(r"<!-- bench:(?P<key>[\w-]+(?:\.[\w-]+)?) -->\n.*?<!-- /bench:(?P=key) -->", re.DOTALL)


def save(report: Report, results: Path = RESULTS) -> Path:
    """Write the report's JSON and Markdown under `results/<day it started, UTC>/`; returns the path
    without its suffix. A quick run never replaces a full run of the same day: it is kept beside it
    as `<suite>.quick.*`, which BENCHMARKS.md does not read."""
    folder = results / time.strftime("%Y-%m-%d", time.gmtime(report.started))
    folder.mkdir(parents=True, exist_ok=True)
    stem = report.suite
    full = folder / f"{stem}.json"
    if report.quick and full.exists() and not json.loads(full.read_text())["quick"]:
        stem += ".quick"
    for suffix, text in (
        (".json", json.dumps(report.to_json(), indent=1) + "\n"),
        (".md", report.markdown()),
    ):
        part = folder / f".{stem}{suffix}.part"
        part.write_text(text)
        part.replace(folder / f"{stem}{suffix}")  # never a half-written result
    return folder / stem


def latest(suite: str, results: Path = RESULTS) -> Report | None:
    """The newest saved run of `suite` (folders are dates, so their names sort by time)."""
    for folder in sorted((p for p in results.glob("????-??-??") if p.is_dir()), reverse=True):
        path = folder / f"{suite}.json"
        if path.exists():
            return Report.from_json(json.loads(path.read_text()))
    return None


class MissingResult(LookupError):
    """A block of BENCHMARKS.md names a suite or table with no saved result."""


def render(text: str, load: Callable[[str], Report | None], missing: list[str] | None = None) -> str:
    """`text` with every generated block refilled from `load(suite)`; blocks with no saved result
    are named in `missing`."""
    missing = [] if missing is None else missing

    def fill(match: re.Match[str]) -> str:
        key = match["key"]
        suite, _, table = key.partition(".")
        report = load(suite)
        if report is None:
            missing.append(key)
            body = f"_No saved result of `{suite}` yet (bench/results/*/{suite}.json): run its suite._"
            return f"<!-- bench:{key} -->\n{body}\n<!-- /bench:{key} -->"
        if table:
            if table not in report.tables:
                raise MissingResult(f"BENCHMARKS.md shows {key!r}, but the saved {suite} run has no table {table!r}"
                                    f" (it has: {', '.join(report.tables) or 'none'})")  # fmt: skip
            body = report.tables[table].markdown()
        else:
            body = "```\n" + "\n".join(report.lines) + "\n```"
        return f"<!-- bench:{key} -->\n{report.caption()}\n\n{body}\n<!-- /bench:{key} -->"

    return _BLOCK.sub(fill, text)


def regenerate(path: Path = BENCHMARKS, results: Path = RESULTS) -> tuple[int, list[str]]:
    """Refill BENCHMARKS.md's generated blocks from the saved results; returns how many blocks
    there are and which of them have no saved result."""
    text = path.read_text()
    cache: dict[str, Report | None] = {}

    def load(suite: str) -> Report | None:
        if suite not in cache:
            cache[suite] = latest(suite, results)
        return cache[suite]

    missing: list[str] = []
    rendered = render(text, load, missing)
    if rendered != text:
        part = path.with_name(f".{path.name}.part")
        part.write_text(rendered)
        part.replace(path)
    return len(_BLOCK.findall(text)), missing
