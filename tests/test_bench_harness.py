"""The benchmark harness: contenders take turns, a measured child's CPU includes what it left
behind, results are saved and BENCHMARKS.md's generated blocks are refilled from them (issue 20)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from bench import publish
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
