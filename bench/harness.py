"""What the benchmarks share: a sandbox in its own process, and birdgrab run as the real CLI in
a child process whose own CPU time and peak memory come from `os.wait4`."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from birdgrab.sandbox import SandboxConfig

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


@dataclass(frozen=True)
class Run:
    """One child process: wall seconds, its own CPU seconds (user + system) and peak RSS."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float
    exit_code: int
    output: str  # the tail of stdout + stderr, for error messages

    def check(self, what: str, allowed: Sequence[int] = (0,)) -> Run:
        if self.exit_code not in allowed:
            raise RuntimeError(f"{what} exited {self.exit_code}:\n{self.output}")
        return self


def _peak_rss_mb(pid: int, done: threading.Event, peak: list[float]) -> None:
    """Sample the child's VmHWM (its own high-water mark) until it exits.

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
        done.wait(0.01)


def run_process(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> Run:
    """Run `argv`: its own CPU time from `os.wait4`, its own peak memory from /proc."""
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        process = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdout=output, stderr=subprocess.STDOUT
        )
        done, peak = threading.Event(), [0.0]
        sampler = threading.Thread(target=_peak_rss_mb, args=(process.pid, done, peak), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        output.seek(0)
        text = output.read()[-4000:].decode(errors="replace")
    return Run(wall, usage.ru_utime + usage.ru_stime, peak[0], process.returncode, text)


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


# -- the xeno-canto paging benchmark -------------------------------------------------------------------
