"""The benchmark harness: contenders take turns, a measured child's CPU includes what it left
behind, results are saved and BENCHMARKS.md's generated blocks are refilled from them (issue 20)."""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

from bench import bench_scale, publish
from bench.__main__ import main
from bench.harness import Report, Run, alternate, require_tool, run_process

# A child that leaves CPU work behind the way `birdgrab chunk` does: a process pool under
# multiprocessing's forkserver, which the child never waits for. Each worker reports its own CPU.
_POOL = textwrap.dedent(
    """
    import multiprocessing, time
    from concurrent.futures import ProcessPoolExecutor

    def burn(n):
        total = 0
        for i in range(n):
            total += i
        return time.process_time()

    if __name__ == "__main__":
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(2, mp_context=context, max_tasks_per_child=1) as pool:
            print(sum(pool.map(burn, [3_000_000] * 4)))
    """
)


@pytest.fixture(autouse=True)
def _steady_host(monkeypatch):
    """The yardstick takes seconds to measure; these tests are about where its figure goes."""
    monkeypatch.setattr("bench.harness.host_speed_s", lambda: 0.5)


def test_contenders_take_turns_round_by_round():
    order: list[str] = []

    def contender(name: str):
        def run(round_number: int) -> Run:
            order.append(f"{name}{round_number}")
            return Run(1.0, 1.0, 1.0, 0)

        return run

    runs = alternate({"a": contender("a"), "b": contender("b"), "c": contender("c")}, rounds=2)
    assert order == ["a0", "b0", "c0", "a1", "b1", "c1"]
    assert [len(r) for r in runs.values()] == [2, 2, 2]


def test_a_childs_cpu_includes_the_pool_it_never_waited_for(tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(_POOL)
    run = run_process([sys.executable, str(script)], os.environ, tmp_path).check("the pool script")
    workers_cpu = float(run.output.split()[-1])  # what the four workers measured themselves
    assert workers_cpu > 0
    assert run.cpu_s >= workers_cpu


def test_a_missing_baseline_fails_instead_of_skipping():
    with pytest.raises(RuntimeError, match="apt-get install no-such-package"):
        require_tool("no-such-tool-for-birdgrab", "no-such-package")


def _report(suite: str, quick: bool, value: str) -> Report:
    report = Report(suite, quick=quick)
    report.line(f"{suite} measured {value}")
    report.table("speed", ["run", "wall"], [["birdgrab", value]])
    return report.finish()


BENCHMARKS = """\
# Benchmarks

Prose written by hand.

<!-- bench:chunk.speed -->
stale table
<!-- /bench:chunk.speed -->

More prose.

<!-- bench:chunk -->
<!-- /bench:chunk -->

<!-- bench:scale-1m.goals -->
<!-- /bench:scale-1m.goals -->
"""


def test_benchmarks_md_is_refilled_from_the_saved_results(tmp_path):
    results, page = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    page.write_text(BENCHMARKS)
    publish.save(_report("chunk", False, "5.9 s"), results)

    blocks, missing = publish.regenerate(page, results)

    text = page.read_text()
    assert blocks == 3 and missing == ["scale-1m.goals"]
    assert "stale table" not in text
    assert "| birdgrab | 5.9 s |" in text
    assert "chunk measured 5.9 s" in text  # the printed lines, for a block naming no table
    assert "No saved result of `scale-1m` yet" in text
    assert text.startswith("# Benchmarks\n\nProse written by hand.") and "More prose." in text
    assert "host yardstick" in text  # every generated block says how fast the host was
    saved = json.loads(next(results.glob("*/chunk.json")).read_text())
    assert saved["tables"]["speed"]["rows"] == [["birdgrab", "5.9 s"]]

    publish.save(_report("chunk", False, "4.2 s"), results)  # the same day again: the newer run wins
    publish.regenerate(page, results)
    assert "| birdgrab | 4.2 s |" in page.read_text() and "5.9 s" not in page.read_text()


def test_refilling_twice_changes_nothing_and_leaves_the_prose_alone(tmp_path):
    results, page = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    page.write_text(BENCHMARKS)
    publish.save(_report("chunk", False, "5.9 s"), results)
    publish.regenerate(page, results)
    once = page.read_text()

    publish.regenerate(page, results)

    assert page.read_text() == once
    outside = publish._BLOCK.sub("", once)
    assert outside == publish._BLOCK.sub("", BENCHMARKS)  # only what is between markers was touched
    assert once.count("<!-- bench:chunk.speed -->") == 1 and once.count("<!-- /bench:chunk.speed -->") == 1


def test_a_quick_run_never_replaces_a_full_one_of_the_same_day(tmp_path):
    results = tmp_path / "results"
    publish.save(_report("chunk", False, "5.9 s"), results)
    saved = publish.save(_report("chunk", True, "9.9 s"), results)
    assert saved.name == "chunk.quick"
    assert publish.latest("chunk", results).tables["speed"].rows == [["birdgrab", "5.9 s"]]


def test_a_block_naming_a_table_the_suite_does_not_have_is_an_error(tmp_path):
    results, page = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    page.write_text("<!-- bench:chunk.nope -->\n<!-- /bench:chunk.nope -->\n")
    publish.save(_report("chunk", False, "5.9 s"), results)
    with pytest.raises(publish.MissingResult, match="no table 'nope'"):
        publish.regenerate(page, results)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scale", "--sizes", "10000"], "at least two different positive sizes"),
        (["scale", "--sizes", "ten,twenty"], "sizes are whole numbers"),
        (["nonesuch"], "unknown suite(s): nonesuch"),
        (["chunk", "--sizes", "10,20"], "none of chunk measures growth"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = main(argv)
        raise SystemExit(code)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_every_block_in_benchmarks_md_has_a_suite():
    """A block naming a suite that does not exist would never be refilled."""
    suites = {path.stem.removeprefix("bench_") for path in Path(publish.__file__).parent.glob("bench_*.py")}
    keys = publish._BLOCK.findall(publish.BENCHMARKS.read_text())
    assert keys, "BENCHMARKS.md has no generated blocks"
    for key in keys:
        suite = key.partition(".")[0]
        assert suite.removesuffix("-1m") in suites, key


def test_a_suite_whose_baseline_is_missing_fails_the_run_and_the_others_still_run(
    tmp_path, monkeypatch, capsys
):
    """`make bench` must go red, not skip, when a baseline tool cannot run."""
    ran: list[str] = []

    def fake_suite(name: str, quick: bool, sizes: tuple[int, ...] | None) -> Report:
        ran.append(name)
        if name == "chunk":
            require_tool("no-such-ffmpeg-for-birdgrab", "ffmpeg")
        return _report(name, quick, "1.0 s")

    monkeypatch.setattr("bench.__main__.run_suite", fake_suite)
    monkeypatch.setattr("bench.__main__.save", lambda report: publish.save(report, tmp_path / "results"))

    code = main(["chunk", "fetch", "--no-render"])

    assert code == 1
    assert ran == ["chunk", "fetch"]
    captured = capsys.readouterr()
    assert "== chunk FAILED: the baseline needs 'no-such-ffmpeg-for-birdgrab'" in captured.out
    assert "failed: chunk" in captured.err
    saved = sorted(path.name for path in (tmp_path / "results").glob("*/*.json"))
    assert saved == ["fetch.json"]  # nothing saved for the suite that could not compare


def test_the_prose_of_benchmarks_md_quotes_no_measured_figure():
    """Measured figures live between the markers, refilled from saved runs. Outside them the page
    may state a suite's inputs and goals (100 ms latency, 10 s chunks), never a ratio or a measured
    time or size with decimals, the kind of figure issue 20 found typed by hand."""
    prose = publish._BLOCK.sub("", publish.BENCHMARKS.read_text())
    typed = re.findall(r"\b\d+(?:\.\d+)?x\b|\b\d+\.\d+\s?(?:s|ms|MB|GB|%)(?!\w)", prose)
    assert typed == []


def test_every_suite_takes_quick_and_returns_a_report():
    """`python -m bench --quick` calls every suite's `run(quick=...)` and saves the Report it returns
    (read from the source: the suites' baselines are the [bench] extra, not installed for `make test`)."""
    for path in sorted(Path(publish.__file__).parent.glob("bench_*.py")):
        tree = ast.parse(path.read_text())
        run = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "run")
        assert "quick" in [arg.arg for arg in run.args.args], path.name
        assert ast.unparse(run.returns) == "Report", path.name


def _scale_results(catalog_cpu, refresh_wall, startup_cpu=1.0):
    """What `bench_scale.measure` returns at 10,000 and 100,000 recordings, with the catalog's CPU
    and the no-change refresh's wall given as functions of N and every other step cheap."""
    results = {}
    for size in (10_000, 100_000):
        runs = {bench_scale.STARTUP: Run(1.5, startup_cpu, 40.0, 0)}
        for label, _ in bench_scale.STEPS:
            runs[label] = Run(2.0, startup_cpu + 0.5, 60.0, 0)
        runs["catalog"] = Run(catalog_cpu(size) + 1, catalog_cpu(size), 70.0, 0)
        runs["no-change refresh"] = Run(refresh_wall(size), startup_cpu + 0.5, 90.0, 0)
        results[size] = (runs, size / 1e4, 0.1, 0.5)
    return results


def _growth_verdicts(results):
    report = Report("scale", options={"sizes": "10000,100000"})
    bench_scale.compare(report, results)
    rows = report.tables["goals"].rows
    return {
        "linear": next(row[3] for row in rows if row[0].startswith("catalog CPU per recording")),
        "flat": next(row[3] for row in rows if row[0].startswith("no-change refresh wall")),
    }


@pytest.mark.parametrize(
    ("catalog_cpu", "refresh_wall", "expected"),
    [
        (lambda n: 1.0 + n / 10_000, lambda n: 3.0, {"linear": "met", "flat": "met"}),
        (lambda n: 1.0 + (n / 10_000) ** 2, lambda n: 3.0, {"linear": "MISSED", "flat": "met"}),
        (lambda n: 1.0 + n / 10_000, lambda n: 3.0 * n / 10_000, {"linear": "met", "flat": "MISSED"}),
        # At the small size the catalog costs no more than the start-up: nothing proves it linear.
        (lambda n: 1.0 if n == 10_000 else 5.0, lambda n: 3.0, {"linear": "MISSED", "flat": "met"}),
    ],
    ids=["linear-and-flat", "quadratic-catalog", "refresh-grows", "start-up-only"],
)
def test_scale_growth_goals_can_fail(catalog_cpu, refresh_wall, expected):
    """Two sizes of one run: linear and flat are ratios that a superlinear catalogue or a refresh
    that grows with the catalogue misses (issue 20: one size compared with itself always passed)."""
    assert _growth_verdicts(_scale_results(catalog_cpu, refresh_wall)) == expected
