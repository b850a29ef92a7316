"""Run the benchmarks: `python -m bench [catalog fetch chunk ...]` (default: all).

Each module's `run()` returns report lines; every number that has a goal is a ratio against a
baseline measured in the same run, because these machines are noisy.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

SUITES = ["catalog", "fetch", "chunk", "windows", "dedupe", "refresh", "scale", "export", "verify"]
RESULTS = Path(__file__).parent / "results"


def main(argv: list[str]) -> int:
    chosen = argv or SUITES
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(SUITES)}", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    report: list[str] = []
    for name in chosen:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        lines = importlib.import_module(f"bench.bench_{name}").run()
        lines.append(f"(suite took {time.monotonic() - started:.0f} s)")
        for line in lines:
            print(f"   {line}", flush=True)
        report += [f"## {name}", "", *[f"    {line}" for line in lines], ""]
    (RESULTS / "latest.md").write_text("\n".join(report))
    print(f"report written to {RESULTS / 'latest.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
