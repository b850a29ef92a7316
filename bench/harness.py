"""What every benchmark suite shares: measuring, alternating contenders, and the report.

- `SandboxProcess`: the bundled sandbox archive in its own process, driven over `/_sandbox/`.
- `run_process` / `run_birdgrab`: one child process (birdgrab as the real CLI, or a baseline tool),
  measured as a `Run`: wall seconds, its own CPU seconds (`os.wait4`) and its own peak memory
  (`VmHWM`), plus `facts` the suite records about it (chunks written, bytes fetched).
- `alternate`: contenders take turns round by round (A B C A B C ...), so that load from other
  work on a shared machine hits each alike; every contender's runs come back as `Rounds` (best,
  median).
- `Report`: what a suite hands back: the lines it prints, the tables BENCHMARKS.md shows, and the
  raw runs, with the host's speed (`host_speed_s`) measured when the suite starts and ends.
  `bench.publish` saves it under `bench/results/<date>/` and fills BENCHMARKS.md from it.

A suite is a module `bench/bench_<name>.py` with `run(quick: bool = False) -> Report` (it may take
`sizes` too): `bench/README.md` shows one.
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from birdgrab import manifests
from birdgrab.models import Recording, SelectedSpecies, SelectionManifest, SpeciesManifest
from birdgrab.sandbox import SandboxConfig
from birdgrab.store import RecordingStore

REPO = Path(__file__).resolve().parent.parent

# Retries without the production back-off: a benchmark should fail fast, not wait minutes.
FAST_RETRIES = {"BIRDGRAB_BACKOFF_BASE": "0.05", "BIRDGRAB_BACKOFF_MAX": "0.5"}

_SERVE = """
import json, sys
from pathlib import Path
from birdgrab.sandbox import SandboxConfig, serve
fields = json.loads(sys.argv[1])
if fields.get("data_dir"):
    fields["data_dir"] = Path(fields["data_dir"])
serve(SandboxConfig(**fields), "127.0.0.1", 0, Path(sys.argv[2]))
"""


class SandboxProcess:
    """`birdgrab.sandbox.serve` in a child process, driven over its `/_sandbox/` control endpoints.

    >>> with SandboxProcess(SandboxConfig(hour_long=False), work) as sandbox:  # doctest: +SKIP
    ...     sandbox.set_latency("xc-api", 1.0)
    ...     env = {**os.environ, **sandbox.env}
    """

    def __init__(self, config: SandboxConfig, work: Path, start_timeout_s: float = 120.0):
        fields = {k: v for k, v in asdict(config).items() if k != "data_dir"}
        if config.data_dir is not None:
            fields["data_dir"] = str(config.data_dir)
        self._fields = fields
        self._env_file = Path(work) / f"sandbox-{os.getpid()}-{id(self)}.env"
        self._log_file = self._env_file.with_suffix(".log")
        self._timeout = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.base_url = ""
        self._http: httpx.Client | None = None

    def __enter__(self) -> SandboxProcess:
        with open(self._log_file, "wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _SERVE, json.dumps(self._fields), str(self._env_file)],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + self._timeout
        while not self._env_file.exists():
            if self._process.poll() is not None:
                tail = self._log_file.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the sandbox process exited with {self._process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the sandbox did not start in time")
            time.sleep(0.05)
        self.env = {
            name: value
            for line in self._env_file.read_text().splitlines()
            if line.startswith("export ")
            for name, _, value in [shlex.split(line[len("export ") :])[0].partition("=")]
        }
        self.base_url = self.env["BIRDGRAB_XC_API"].split("/xeno-canto/")[0]
        self._http = httpx.Client(base_url=self.base_url, timeout=30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._http is not None:
            self._http.close()
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._env_file.unlink(missing_ok=True)

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        assert self._http is not None, "use the sandbox as a context manager"
        response = self._http.request(method, f"/_sandbox/{path}", json=body)
        response.raise_for_status()
        return response.json()

    def set_latency(self, target: str, seconds: float) -> None:
        self._control("PUT", "latency", {"target": target, "seconds": seconds})

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "stats")

    def reset_stats(self) -> None:
        self._control("POST", "reset-stats")

    def archive(self) -> dict[str, Any]:
        """The archive's planted truths and species (`Sandbox.describe`)."""
        return self._control("GET", "archive")


# Request counters of `/_sandbox/stats` (the rest count bytes, faults or kinds of request).
REQUEST_COUNTERS = (
    "xc-api",
    "xc-download",
    "xc-audio",
    "europeana-search",
    "europeana-record",
    "europeana-audio",
    "wiki-api",
    "landing",
    "not-found",
)


def requests_made(stats: Mapping[str, Any]) -> int:
    """Every request the sandbox answered (control requests are not counted by the sandbox)."""
    return sum(int(stats.get(name, 0)) for name in REQUEST_COUNTERS)


@dataclass
class Run:
    """One measured run: wall seconds, its own CPU seconds (user + system), its own peak RSS, its
    exit code, and the facts a suite notes about it (`run.facts["chunks"] = 600`)."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float
    exit_code: int
    output: str = ""  # the tail of stdout + stderr, for error messages (not saved)
    facts: dict[str, Any] = field(default_factory=dict)

    def check(self, what: str, allowed: Sequence[int] = (0,)) -> Run:
        if self.exit_code not in allowed:
            raise RuntimeError(f"{what} exited {self.exit_code}:\n{self.output}")
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "max_rss_mb": round(self.max_rss_mb, 1),
            "exit_code": self.exit_code,
            **({"facts": self.facts} if self.facts else {}),
        }


class Rounds(list[Run]):
    """One contender's runs, in the order they were taken."""

    @property
    def best(self) -> Run:
        """The fastest run by wall time: what the machine allows when other work leaves it alone."""
        return min(self, key=lambda run: run.wall_s)

    @property
    def median_wall_s(self) -> float:
        return statistics.median(run.wall_s for run in self)

    @property
    def median_cpu_s(self) -> float:
        return statistics.median(run.cpu_s for run in self)

    @property
    def peak_mb(self) -> float:
        return max(run.max_rss_mb for run in self)


def alternate(contenders: Mapping[str, Callable[[int], Run]], rounds: int) -> dict[str, Rounds]:
    """Run every contender once a round, in the given order, for `rounds` rounds (A B A B ...).

    Each contender is called with the round's number (0, 1, ...) so that it can use a fresh folder.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    results = {name: Rounds() for name in contenders}
    for round_number in range(rounds):
        for name, contender in contenders.items():
            results[name].append(contender(round_number))
    return results


def require_tool(command: str, package: str) -> str:
    """The path of a baseline's program; a suite whose baseline cannot run fails, it is never skipped."""
    path = shutil.which(command)
    if path is None:
        raise RuntimeError(
            f"the baseline needs {command!r} (Debian package {package}): `make bench` installs it,"
            f" or apt-get install {package}"
        )
    return path


def verdict(value: float, goal: float, *, at_least: bool = False) -> str:
    """'met' or 'MISSED': `value` at most `goal` (or at least, with `at_least`)."""
    return "met" if (value >= goal if at_least else value <= goal) else "MISSED"


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` right now (children of each of its threads, recursively)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        try:  # a process that exits while its threads are listed takes its /proc folder along
            listed = list(Path(f"/proc/{todo.pop()}/task").glob("*/children"))
        except OSError:
            continue
        for children in listed:
            try:
                pids = {int(child) for child in children.read_text().split()}
            except (OSError, ValueError):
                continue
            todo += pids - found
            found |= pids
    return found


def _watch(pid: int, done: threading.Event, peak: list[float], seen: set[int]) -> None:
    """Until the child exits: sample its VmHWM (its own high-water mark) and note its descendants.

    `ru_maxrss` from wait4 cannot be used: Linux keeps the high-water mark across fork and exec, so
    a child started from a large Python process reports the parent's size.
    """
    status = Path(f"/proc/{pid}/status")
    while not done.is_set():
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except (OSError, ValueError):
            return
        seen |= _descendants(pid)
        done.wait(0.01)


def _become_subreaper() -> None:
    """Have orphans of a measured child re-parented to this process rather than to init.

    birdgrab's process pool runs under multiprocessing's forkserver, a process the CLI starts and
    never waits for: its CPU time (and that of the workers it reaped) would be missing from the
    child's `wait4`. As a subreaper this process can wait for it itself (`_reap_orphans`).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def _reap_orphans(seen: set[int], timeout_s: float = 60.0) -> float:
    """Wait for every descendant of a finished child that is now this process's own; their CPU seconds."""
    cpu = 0.0
    for pid in seen:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # already waited for by its own parent
        if int(fields[1]) != os.getpid():
            continue  # someone else's (the pid may even have been reused)
        deadline = time.monotonic() + timeout_s
        while (reaped := os.wait4(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"process {pid}, left behind by a measured child, did not exit in {timeout_s:g} s"
                )
            time.sleep(0.01)
        cpu += reaped[2].ru_utime + reaped[2].ru_stime
    return cpu


def run_process(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> Run:
    """Run `argv`: its CPU time from `os.wait4` (with any process it left behind), its own peak
    memory from /proc."""
    _become_subreaper()
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        process = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdout=output, stderr=subprocess.STDOUT
        )
        done, peak, seen = threading.Event(), [0.0], set()
        sampler = threading.Thread(target=_watch, args=(process.pid, done, peak, seen), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        left_behind_cpu = _reap_orphans(seen)
        output.seek(0)
        text = output.read()[-4000:].decode(errors="replace")
    return Run(wall, usage.ru_utime + usage.ru_stime + left_behind_cpu, peak[0], process.returncode, text)


def run_here(job: Callable[[], Any]) -> tuple[Run, Any]:
    """Time `job()` in this process: wall and this process's CPU (children it waited for included);
    no peak memory (this process's high-water mark is the whole benchmark's). For work measured as a
    library call, such as comparing two windowing modes on the same decoded files."""
    before, children = time.process_time(), os.times()
    started = time.perf_counter()
    value = job()
    wall = time.perf_counter() - started
    after = os.times()
    waited = (after.children_user - children.children_user) + (
        after.children_system - children.children_system
    )
    return Run(wall, time.process_time() - before + waited, 0.0, 0), value


def host_speed_s() -> float:
    """Seconds a fixed piece of pure-Python work (ten million additions) takes here, best of three.
    The speed of these hosts changes by up to 2x within an hour: a time with an absolute goal is
    read next to this figure, measured at the same moment."""
    best = float("inf")
    for _ in range(3):
        started, total = time.perf_counter(), 0
        for number in range(10_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return best


def run_birdgrab(
    args: Sequence[str], sandbox_env: Mapping[str, str], root: Path, tuning: Mapping[str, str] | None = None
) -> Run:
    """`python -m birdgrab ARGS` with the folders under `root` and the sandbox's environment."""
    command, *rest = args
    folders = ["--manifests", str(root / "manifests"), "--cache", str(root / "cache")]
    folders += ["--out", str(root / "dataset")]
    env = {**os.environ, **sandbox_env, **FAST_RETRIES, **(tuning or {})}
    return run_process([sys.executable, "-m", "birdgrab", command, *folders, *rest], env, REPO)


# -- recordings served from a folder ------------------------------------------------------------------------
_FILE_SERVER = """
import functools, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
handler = functools.partial(SimpleHTTPRequestHandler, directory=sys.argv[1])
server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class FileServer:
    """A plain HTTP server of `folder`'s files on a free loopback port, in its own process.

    >>> with FileServer(folder) as server:  # doctest: +SKIP
    ...     server.url("rec001.mp3")
    'http://127.0.0.1:41234/rec001.mp3'
    """

    def __init__(self, folder: Path):
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None
        self._port = 0

    def __enter__(self) -> FileServer:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _FILE_SERVER, str(self._folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self._process.stdout is not None
        self._port = int(self._process.stdout.readline())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._port}/{name}"


def write_selection(root: Path, urls_by_species: Mapping[str, Sequence[str]]) -> list[str]:
    """Manifests under `root/manifests` as `catalog` + `filter` would leave them: one xeno-canto
    recording per URL, every one selected. Returns the recording keys, in order."""
    folder = root / "manifests"
    folder.mkdir(parents=True)
    now = datetime.now(UTC).replace(microsecond=0)
    recordings, selected = [], {}
    for species, urls in urls_by_species.items():
        keys = []
        for url in urls:
            key = f"xc:{len(recordings) + 1}"
            recordings.append(
                Recording(key=key, source="xeno-canto", source_id=key[3:], scientific_name=species,
                          original_name=species, species=species, group="birds", audio_url=url,
                          first_seen=now, last_seen=now)
            )  # fmt: skip
            keys.append(key)
        selected[species] = SelectedSpecies(species=species, recordings=keys)
    RecordingStore.create_from(folder, recordings)
    manifests.save(folder / manifests.SPECIES, manifests.new_manifest(SpeciesManifest, {}))
    manifests.save(
        folder / manifests.SELECTION, manifests.new_manifest(SelectionManifest, {}, species=selected)
    )
    return [r.key for r in recordings]


def run_parallel(commands: Sequence[Sequence[str]], parallel: int, env: Mapping[str, str], cwd: Path) -> Run:
    """Run `commands` at most `parallel` at a time (a pool of threads each waiting on one child):
    wall from the first start to the last exit, CPU summed over every child, the highest child's peak."""
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        runs = list(pool.map(lambda argv: run_process(argv, env, cwd), commands))
    wall = time.perf_counter() - started
    failed = next((run for run in runs if run.exit_code != 0), None)
    return Run(
        wall,
        sum(run.cpu_s for run in runs),
        max(run.max_rss_mb for run in runs),
        failed.exit_code if failed else 0,
        failed.output if failed else "",
    )


# -- the report a suite hands back ---------------------------------------------------------------------
@dataclass
class Table:
    """A table for BENCHMARKS.md: column names, rows of formatted cells, and a line under it."""

    columns: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + (f"\n\n{self.note}" if self.note else "")


def _commit() -> str:
    """The commit measured, with `+` when its code has changes (results saved by earlier suites are not)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "birdgrab", "bench", ":(exclude)bench/results"], cwd=REPO,
                               capture_output=True, text=True)  # fmt: skip
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


class Report:
    """What one run of a suite found: printed lines, tables for BENCHMARKS.md, raw runs, the host.

    >>> report = Report("chunk", quick=True)  # doctest: +SKIP
    >>> runs = report.contest("speed", {"birdgrab": run_birdgrab_once, "ffmpeg": run_ffmpeg_once}, rounds=3)
    >>> report.line(f"birdgrab/ffmpeg {runs['birdgrab'].best.wall_s / runs['ffmpeg'].best.wall_s:.2f}")
    >>> report.table("speed", ["run", "wall"], [["birdgrab", "5.9 s"], ["ffmpeg", "7.2 s"]])
    >>> return report.finish()

    The host's speed (`host_speed_s`) is measured when the report is made and again in `finish`:
    absolute times are read next to it.
    """

    def __init__(
        self, suite: str, *, quick: bool = False, options: Mapping[str, Any] | None = None, command: str = ""
    ):
        self.suite = suite  # the name it is saved under
        self.command = command or suite  # the suite that made it, when that differs (scale saves scale-1m)
        self.quick = quick
        self.options = dict(options or {})
        self.lines: list[str] = []
        self.tables: dict[str, Table] = {}
        self.runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.started = time.time()
        self.finished: float | None = None
        self.host: dict[str, Any] = {
            "yardstick_s": [round(host_speed_s(), 3)],
            "load_average": [round(os.getloadavg()[0], 2)],
            "python": sys.version.split()[0],
            "cores": os.cpu_count(),
            "commit": _commit(),
        }

    def line(self, text: str) -> None:
        """Add a line to the report and print it at once (a long suite shows progress)."""
        self.lines.append(text)
        print(f"   {text}", flush=True)

    def contest(
        self, name: str, contenders: Mapping[str, Callable[[int], Run]], rounds: int
    ) -> dict[str, Rounds]:
        """`alternate` the contenders and keep every run under `name` in the raw results."""
        results = alternate(contenders, rounds)
        self.record(name, results)
        return results

    def record(self, name: str, runs: Mapping[str, Run | Sequence[Run]]) -> None:
        """Keep runs measured another way (one per size, a memory run) in the raw results."""
        self.runs[name] = {
            label: [r.to_json() for r in ([value] if isinstance(value, Run) else value)]
            for label, value in runs.items()
        }

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[str]], note: str = "") -> None:
        """A table BENCHMARKS.md shows where it has `<!-- bench:SUITE.NAME -->`."""
        if any(len(row) != len(columns) for row in rows):
            raise ValueError(f"table {name!r}: every row needs {len(columns)} cells")
        self.tables[name] = Table(list(columns), [list(map(str, row)) for row in rows], note)

    def finish(self) -> Report:
        self.host["yardstick_s"].append(round(host_speed_s(), 3))
        self.host["load_average"].append(round(os.getloadavg()[0], 2))
        self.finished = time.time()
        return self

    def caption(self) -> str:
        """One line saying where the numbers come from, shown above every generated table."""
        day = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.started))
        yardstick = " -> ".join(f"{s:.2f}" for s in self.host["yardstick_s"])
        load = " -> ".join(f"{x:g}" for x in self.host["load_average"])
        options = "".join(f" --{k} {v}" for k, v in self.options.items())
        kind = "; **quick run: small sizes, proves the suite, not the goals**" if self.quick else ""
        return (
            f"_`python -m bench {self.command}{' --quick' if self.quick else ''}{options}`, {day},"
            f" commit {self.host['commit']}, host yardstick {yardstick} s (10M Python additions;"
            f" lower is faster), load average {load}{kind}_"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "command": self.command,
            "quick": self.quick,
            "options": self.options,
            "started": self.started,
            "finished": self.finished,
            "host": self.host,
            "lines": self.lines,
            "tables": {name: asdict(table) for name, table in self.tables.items()},
            "runs": self.runs,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        report = cls.__new__(cls)
        report.suite, report.quick, report.options = data["suite"], data["quick"], dict(data["options"])
        report.command = data.get("command", report.suite)
        report.started, report.finished, report.host = data["started"], data["finished"], dict(data["host"])
        report.lines = list(data["lines"])
        report.tables = {name: Table(**table) for name, table in data["tables"].items()}
        report.runs = dict(data["runs"])
        return report

    def markdown(self) -> str:
        """The whole report: caption, the printed lines, every table."""
        parts = [f"# {self.suite}", "", self.caption(), "", "```", *self.lines, "```"]
        for name, table in self.tables.items():
            parts += ["", f"## {name}", "", table.markdown()]
        return "\n".join(parts) + "\n"
