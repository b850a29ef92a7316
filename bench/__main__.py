"""Run the benchmarks and refill BENCHMARKS.md: `python -m bench [SUITE ...] [--quick] [--sizes A,B]`.

Every `bench/bench_<name>.py` is a suite (all of them when none is named). Each run is saved under
`bench/results/<date>/` and then BENCHMARKS.md's generated blocks are refilled from the newest
saved result of every suite (`python -m bench render` does only that). A suite that fails, for
instance because a baseline tool is missing, makes the whole run exit 1: nothing is skipped.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path

import birdgrab
from bench.harness import Report
from bench.publish import BENCHMARKS, MissingResult, regenerate, save

# The order `make bench` runs them in; any other bench_<name>.py follows, alphabetically.
ORDER = [
    "catalog",
    "fetch",
    "chunk",
    "windows",
    "windows_real",
    "dedupe",
    "refresh",
    "export",
    "split",
    "scale",
    "verify",
    "cluster",
]


def suites() -> list[str]:
    found = {path.stem.removeprefix("bench_") for path in Path(__file__).parent.glob("bench_*.py")}
    return [name for name in ORDER if name in found] + sorted(found - set(ORDER))


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes are whole numbers, e.g. 10000,100000") from None
    if len(sizes) < 2 or sizes[0] < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give at least two different positive sizes (a growth ratio needs two)"
        )
    return sizes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run benchmark suites, save their results under bench/results/<date>/ and refill BENCHMARKS.md.",
        epilog="Examples: python -m bench chunk fetch; python -m bench scale --sizes 10000,100000;"
        " python -m bench --quick; python -m bench render",
    )
    parser.add_argument(
        "suites", nargs="*", metavar="SUITE", help=f"render, or any of: {', '.join(suites())} (default: all)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: proves each suite works, in minutes"
    )
    parser.add_argument(
        "--sizes", type=_sizes, help="sizes for suites that measure growth (scale), e.g. 10000,100000"
    )
    parser.add_argument(
        "--no-render", action="store_true", help="save the results but leave BENCHMARKS.md alone"
    )
    return parser


def run_suite(name: str, quick: bool, sizes: tuple[int, ...] | None) -> Report:
    """Import and run one suite: `run(quick=...)`, with `sizes=` when it takes them."""
    run = importlib.import_module(f"bench.bench_{name}").run
    kwargs: dict[str, object] = {"quick": quick}
    if sizes and "sizes" in inspect.signature(run).parameters:
        kwargs["sizes"] = sizes
    report = run(**kwargs)
    if not isinstance(report, Report):
        raise TypeError(f"bench/bench_{name}.py: run() returned {type(report).__name__}, not a Report")
    return report


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.suites == ["render"]:
        return _render()
    known = suites()
    unknown = [name for name in args.suites if name not in known]
    if unknown:
        print(
            f"unknown suite(s): {', '.join(unknown)}; choose from render, {', '.join(known)}", file=sys.stderr
        )
        return 2
    chosen = args.suites or known
    if args.sizes and not any(
        "sizes" in inspect.signature(importlib.import_module(f"bench.bench_{n}").run).parameters
        for n in chosen
    ):
        print(f"--sizes: none of {', '.join(chosen)} measures growth", file=sys.stderr)
        return 2
    # Bytecode as an install has it (pip compiles at install): with PYTHONDONTWRITEBYTECODE set and a
    # source edited since, every child process would compile the edited modules again, ~0.1 s each
    # start, which is most of what separates a no-change refresh from its goal.
    compileall.compile_dir(Path(birdgrab.__file__).parent, quiet=1)
    failed = []
    for name in chosen:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            report = run_suite(name, args.quick, args.sizes)
        except Exception as error:  # one suite's failure is reported, the others still run
            if not isinstance(error, RuntimeError):
                traceback.print_exc()
            print(f"== {name} FAILED: {error}", flush=True)
            failed.append(name)
            continue
        saved = save(report)
        print(f"== {name}: {time.monotonic() - started:.0f} s, saved as {saved}.{{json,md}}", flush=True)
    status = 0 if args.no_render else _render()
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return status


def _render() -> int:
    try:
        blocks, missing = regenerate()
    except MissingResult as error:
        print(f"BENCHMARKS.md not refilled: {error}", file=sys.stderr)
        return 1
    print(f"{BENCHMARKS.name}: {blocks} generated blocks refilled from bench/results/")
    if missing:
        print(f"  with no saved result yet: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
