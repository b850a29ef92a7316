"""Real parts on 127.0.0.1 for the cluster tests: moto's S3 server behind a counting, faulting
proxy, and a Dask scheduler with worker processes started as `dask scheduler` / `dask worker`.

The proxy forwards every request to moto and counts it by method; a test can make it answer 503
SlowDown, drop the connection before answering, or call a hook (to SIGKILL a process at an exact
moment: when the first chunk arrives, say) before a request is forwarded.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Keys nobody could mistake for anything else: a test greps every output for them.
ACCESS_KEY = "AKIAEXAMPLEBIRDGRAB01"
SECRET_KEY = "s3cr3t-Birdgrab-Test-Key-6f1c2a9e"
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass
class Fault:
    """Answer requests that `matches` (method, path) with `kind` ("503" or "drop"), `times` times."""

    matches: Callable[[str, str], bool]
    kind: str
    times: int = 1_000_000
    fired: int = 0


@dataclass
class S3Proxy:
    upstream: tuple[str, int]
    requests: Counter = field(default_factory=Counter)  # method -> count
    log: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    hook: Callable[[str, str, tuple[str, int]], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.log.clear()
            self.faults.clear()
            self.hook = None

    def writes(self) -> list[tuple[str, str]]:
        """Requests that change the store: PUT, POST, DELETE."""
        with self.lock:
            return [(m, p) for m, p in self.log if m in ("PUT", "POST", "DELETE")]


def _handler(proxy: S3Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self) -> None:
            body = self._body()
            method, path = self.command, self.path
            with proxy.lock:
                proxy.requests[method] += 1
                proxy.log.append((method, path))
                hook = proxy.hook
                fault = next((f for f in proxy.faults if f.fired < f.times and f.matches(method, path)), None)
                if fault is not None:
                    fault.fired += 1
            if hook is not None:
                hook(method, path, self.client_address)
            if fault is not None and fault.kind == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            if fault is not None:
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                self.wfile.write(SLOW_DOWN)
                return
            connection = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
            headers["Content-Length"] = str(len(body))
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in (
                    "transfer-encoding",
                    "content-length",
                    "connection",
                    "date",
                    "server",
                ):
                    self.send_header(name, value)
            # A HEAD's length is the object's, not that of the (empty) body that came with it.
            length = answer.getheader("Content-Length", "0") if method == "HEAD" else str(len(data))
            self.send_header("Content-Length", length)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)
            connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


class _QuietServer(ThreadingHTTPServer):
    """The proxy's server: a connection a test kills mid-request (a SIGKILLed worker's upload) is the
    point of the test, not an error to print into the output the test reads."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@dataclass
class ObjectStore:
    """A moto S3 server and the proxy in front of it; `env` points the AWS libraries at the proxy."""

    proxy: S3Proxy
    endpoint: str
    moto_address: tuple[str, int]

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for credentials
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
            # The library's own retry settings, bounded so a failing store fails in seconds.
            "AWS_RETRY_MODE": "standard",
            "AWS_MAX_ATTEMPTS": "3",
        }

    def _moto(self, method: str, path: str, body: bytes = b"") -> int:
        connection = http.client.HTTPConnection(*self.moto_address, timeout=30)
        connection.request(method, path, body=body)
        status = connection.getresponse().status
        connection.close()
        return status

    def reset(self) -> None:
        """Empty every bucket (moto's own reset) and forget the proxy's counts and faults."""
        assert self._moto("POST", "/moto-api/reset") == 200
        self.proxy.reset()

    def make_bucket(self, name: str) -> None:
        assert self._moto("PUT", f"/{name}") == 200

    def list(self, bucket: str, prefix: str) -> dict[str, bytes]:
        """Every object under `prefix`, name (relative to it) -> bytes, read from moto directly."""
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=f"http://{self.moto_address[0]}:{self.moto_address[1]}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="eu-west-1",
        )
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for item in page.get("Contents", []):
                key = item["Key"]
                found[key[len(prefix) + 1 :]] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return found


@contextlib.contextmanager
def object_store() -> Iterator[ObjectStore]:
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request moto answers to stderr, into the output the tests read.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    proxy = S3Proxy(moto.get_host_and_port())
    server = _QuietServer(("127.0.0.1", 0), _handler(proxy))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ObjectStore(proxy, f"http://127.0.0.1:{server.server_address[1]}", moto.get_host_and_port())
    finally:
        server.shutdown()
        server.server_close()
        moto.stop()


def _announced_address(scheduler: subprocess.Popen) -> str:
    """The address the scheduler says it listens at ("Scheduler at: tcp://..."), read from its log;
    the rest of its log is drained in a thread so it never blocks on a full pipe."""
    assert scheduler.stderr is not None
    for line in scheduler.stderr:
        if "Scheduler at:" in line:
            address = line.split("Scheduler at:", 1)[1].strip()
            threading.Thread(target=lambda: [None for _ in scheduler.stderr], daemon=True).start()  # type: ignore[union-attr]
            return address
    raise AssertionError("dask scheduler exited before it listened")


@dataclass
class DaskCluster:
    """`dask scheduler` and `dask worker --nworkers N` as subprocesses (as a user starts them)."""

    address: str
    scheduler: subprocess.Popen
    workers: subprocess.Popen

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=10, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=60)

    def stop(self) -> None:
        for process in (self.workers, self.scheduler):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextlib.contextmanager
def dask_cluster(root: Path, env: dict[str, str], workers: int = 2) -> Iterator[DaskCluster]:
    """A scheduler on a free loopback port and `workers` single-threaded worker processes, whose
    environment (the storage library's credentials) is `env`, as on a real cluster's nodes."""
    bin_dir = Path(sys.executable).parent
    root.mkdir(parents=True, exist_ok=True)
    scheduler_file = root / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    full_env = {**os.environ, **env}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    address = _announced_address(scheduler)
    worker_processes = subprocess.Popen(
        [str(bin_dir / "dask"), "worker", address, "--nworkers", str(workers), "--nthreads", "1",
         "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(root / "dask-worker-space")],
        env=full_env, **quiet,
    )  # fmt: skip
    cluster = DaskCluster(address, scheduler, worker_processes)
    try:
        cluster.wait_for_workers(workers)
        yield cluster
    finally:
        cluster.stop()
