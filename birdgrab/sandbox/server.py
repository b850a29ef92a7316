"""The sandbox's HTTP server and its public face, `Sandbox`.

A real loopback server (`ThreadingHTTPServer`, HTTP/1.1 keep-alive) so clients meet real sockets:
faults can reset a connection with RST, cut a body short, or stall. Control endpoints under
`/_sandbox/` let another process do everything the Python API does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

import numpy as np

from birdgrab.files import atomic_write_bytes
from birdgrab.sandbox import contents, mediawiki_api
from birdgrab.sandbox.config import PageSize, SandboxConfig
from birdgrab.sandbox.faults import Decision, FaultPlan, FaultRule, Hold, RetryWait, RetryWaits, request_id
from birdgrab.sandbox.routes import (
    Counters,
    FileSlice,
    Request,
    Response,
    Services,
    html_response,
    json_response,
    not_found,
    resolve,
)
from birdgrab.sandbox.synth import AudioCache, AudioFile, default_cache_dir

log = logging.getLogger(__name__)

BLOCK_BYTES = 256 * 1024
CONTACT = "sandbox@birdgrab.invalid"
_REFUSALS = frozenset({"429", "500", "503", "maxlag"})  # answered instead of the real answer
_SAYS_RETRY_AFTER = frozenset({"429", "503", "maxlag"})


def _refusal(rule: FaultRule) -> Response:
    """The answer a refusing fault gives: 429/500/503 pages, or MediaWiki's maxlag error (HTTP 200)."""
    retry_after = {"Retry-After": f"{rule.retry_after:g}"}
    if rule.kind == "maxlag":
        return json_response(200, mediawiki_api.MAXLAG_ERROR, retry_after)
    status = HTTPStatus(int(rule.kind))
    response = html_response(status.value, f"{status.value} {status.phrase}")
    if status.value in (429, 503):
        response.headers.update(retry_after)
    return response


def _file_blocks(body: FileSlice) -> Iterator[bytes]:
    with open(body.path, "rb") as handle:
        handle.seek(body.start)
        left = body.length
        while left > 0:
            block = handle.read(min(BLOCK_BYTES, left))
            if not block:
                return
            left -= len(block)
            yield block


def _garbage_blocks(length: int, seed: str) -> Iterator[bytes]:
    """Deterministic junk with no byte >= 0x80 (so no mp3 frame sync) and no magic number up front."""
    rng = np.random.default_rng(list(seed.encode()))
    sent = 0
    while sent < length:
        block = rng.integers(0, 0x80, min(BLOCK_BYTES, length - sent), dtype=np.uint8)
        if sent == 0:
            block[:4] = 0
        sent += len(block)
        yield block.tobytes()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], sandbox: Sandbox):
        self.sandbox = sandbox
        self.stopping = threading.Event()  # wakes handlers that sleep for latency or timeouts
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-answer (it timed out, or a fault made it give up) is routine
        here, not an error worth a traceback on stderr."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Drop kept-alive connections so their threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, the body waits for a delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _Server
    timeout = 120  # seconds an idle kept-alive connection may wait for its next request

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_POST(self) -> None:
        self._answer(head=False)

    def do_PUT(self) -> None:
        self._answer(head=False)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.server.stopping.wait(seconds)

    def _answer(self, head: bool) -> None:
        try:
            self._dispatch(head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-answer

    def _dispatch(self, head: bool) -> None:
        sandbox = self.server.sandbox
        url = urlsplit(self.path)
        # Read the body even where no endpoint wants one, so a kept-alive connection stays in step.
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path.startswith("/_sandbox/"):
            self._send(sandbox._control(self.command, url.path, body), head)
            return
        with sandbox._counters.in_flight():
            self._route(url, head)

    def _route(self, url: SplitResult, head: bool) -> None:
        sandbox = self.server.sandbox
        counters = sandbox._counters
        counters.add_path(url.path)
        found = resolve(url.path) if self.command in ("GET", "HEAD") else None
        if found is None:
            counters.add("not-found")
            self._send(not_found(), head)
            return
        route, match = found
        counters.add(route.counter)
        params = parse_qsl(url.query, keep_blank_values=True)
        decision = Decision()
        if route.target:
            url_id = request_id(url.path, params)
            sandbox._retry_waits.asked(url_id)
            hold = sandbox._faults.take_hold(route.target, url_id, ranged="Range" in self.headers)
            if hold is not None:
                hold.reached.set()
                hold.released.wait()
            decision = sandbox._faults.decide(route.target, url_id, route.faults)
            self._pause(sandbox._faults.latency(route.target))
        failure = decision.failure
        if failure:
            counters.add_fault(failure.kind, route.target or "")
            if failure.kind in _SAYS_RETRY_AFTER:
                sandbox._retry_waits.refused(failure.kind, route.target or "", url_id, failure.retry_after)
            if failure.kind in _REFUSALS:
                self._send(_refusal(failure), head)
                return
            if failure.kind == "timeout":
                self._pause(failure.delay)
        request = Request(url.path, match, params, self.headers, decision.modes, route.target)
        try:
            response = sandbox._services.answer(route, request)
        except Exception:
            log.exception("sandbox: answering %s failed", url.path)
            response = html_response(500, "500 Internal Server Error")
        damage = failure.kind if failure else None
        self._send(response, head, damage, bytes_counter=f"{route.target}-bytes")

    def _send(
        self, response: Response, head: bool, damage: str | None = None, bytes_counter: str = ""
    ) -> None:
        """Send `response`, damaged as the fault kind `damage` says; audio bytes go to `bytes_counter` too."""
        if damage == "html" and response.is_audio:
            response = html_response(
                200, "Service unavailable", "The file could not be delivered; try again later."
            )
        if damage == "bad_json" and isinstance(response.body, bytes):
            response = dataclasses.replace(response, body=response.body[: len(response.body) // 2])
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(response.length))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if head:
            return
        body = response.body
        blocks: Iterable[bytes]
        if isinstance(body, FileSlice):
            blocks = _garbage_blocks(body.length, self.path) if damage == "corrupt" else _file_blocks(body)
        else:
            blocks = [body]
        limit = response.length // 2 if damage in ("reset", "truncate") else response.length
        sent = 0
        for block in blocks:
            block = block[: limit - sent]
            if isinstance(body, FileSlice):  # counted before it leaves, so a client never outruns the count
                self.server.sandbox._counters.add("audio-bytes", len(block))
                self.server.sandbox._counters.add(bytes_counter, len(block))
            self.wfile.write(block)
            sent += len(block)
            if sent >= limit:
                break
        if damage == "reset":
            self._reset()
        elif damage == "truncate":
            self.close_connection = True  # FIN after a short body

    def _reset(self) -> None:
        """Abort the connection: with SO_LINGER 0, closing the socket sends RST instead of FIN."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.wfile.close()
        self.connection.close()  # the real close: no file objects hold the socket any more
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()  # what the server loop flushes and closes
        self.close_connection = True


class Sandbox:
    """The sandbox archive served on a loopback port. Use as a context manager.

    >>> with Sandbox(SandboxConfig(hour_long=False)) as sandbox:  # doctest: +SKIP
    ...     os.environ.update(sandbox.env())
    ...     sandbox.set_faults([FaultRule("429", target="xc-api", times=1, retry_after=0.1)])
    """

    def __init__(self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.config = config or SandboxConfig()
        self.archive = contents.build_archive(self.config)
        self._audio = AudioCache(self.config.data_dir or default_cache_dir())
        self._counters = Counters()
        self._faults = FaultPlan(self.config.seed)
        self._retry_waits = RetryWaits()
        self._services = Services(self.config, self.archive, self._audio, self._counters)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._changes = threading.Lock()

    # -- running --------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        if self._server is not None:
            return self
        self._server = _Server(self._address, self)
        host, port = self._server.server_address[:2]
        self._services.base = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="birdgrab-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        self._faults.release_holds()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread:
            self._thread.join()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` (once started)."""
        if not self._services.base:
            raise RuntimeError("the sandbox is not started: use `with Sandbox(...)` or call start()")
        return self._services.base

    def env(self) -> dict[str, str]:
        """The environment that points birdgrab at this sandbox."""
        base = self.base_url
        return {
            "BIRDGRAB_XC_API": f"{base}/xeno-canto/api/3/recordings",
            "BIRDGRAB_EUROPEANA_API": f"{base}/europeana/record/v2/search.json",
            "BIRDGRAB_INATURALIST_API": f"{base}/inaturalist/v1/observations",
            "BIRDGRAB_WIKIPEDIA_API": f"{base}/wikipedia/{{lang}}/w/api.php",
            "BIRDGRAB_WIKIDATA_API": f"{base}/wikidata/w/api.php",
            "BIRDGRAB_XC_KEY": self.config.xc_key,
            "BIRDGRAB_EUROPEANA_KEY": self.config.europeana_key,
            "BIRDGRAB_CONTACT": CONTACT,
        }

    # -- faults, latency, counters ----------------------------------------------------------------
    def set_faults(self, rules: Iterable[FaultRule]) -> None:
        """Replace the fault rules (attempt counts start again)."""
        self._faults.set_rules(rules)

    def clear_faults(self) -> None:
        self._faults.set_rules(())

    def set_latency(self, target: str, seconds: float) -> None:
        """Add `seconds` to every answer of `target` ("xc-api", "audio", "*", ...); 0 removes it."""
        self._faults.set_latency(target, seconds)

    def hold(self, target: str, *, match: str | None = None, ranged: bool = False) -> Hold:
        """Keep the next request of `target` whose URL contains `match` (with a Range header if
        `ranged`) waiting before it is answered: `hold.reached` is set when it arrives, and it is
        answered after `hold.release()` (or when the sandbox stops). A test acts at that moment."""
        return self._faults.hold(target, match=match, ranged=ranged)

    def counts(self) -> dict[str, int]:
        return self._counters.snapshot()

    def fault_counts(self) -> dict[str, dict[str, int]]:
        """Answers each fault kind changed, by target: kind -> target -> count (since the last reset)."""
        return self._counters.fault_counts()

    def retry_waits(self) -> list[RetryWait]:
        """Every refusal that said Retry-After and was asked again, with how long the client waited
        (server-side instants; since the last reset)."""
        return self._retry_waits.waits()

    def path_counts(self) -> dict[str, int]:
        """Requests per URL path."""
        return self._counters.paths()

    def reset_counts(self) -> None:
        """Start every count, fault count and retry wait again from zero."""
        self._counters.reset()
        self._retry_waits.reset()

    def set_page_size(self, service: str, records: int | None, *, counted_as_asked: bool = False) -> None:
        """Make `service` ("xeno-canto", "europeana") serve at most `records` a page whatever is asked
        (None: as asked). With `counted_as_asked` it pages as if it served what was asked: xeno-canto's
        numPages undercounts, Europeana's cursor skips items."""
        if service not in ("xeno-canto", "europeana"):
            raise ValueError(f"no paged service {service!r}: use xeno-canto or europeana")
        if records is None:
            self._services.page_sizes.pop(service, None)
        else:
            self._services.page_sizes[service] = PageSize(records, counted_as_asked)

    # -- the archive ------------------------------------------------------------------------------
    def grow(self, recordings: int = 0, species: int = 0, inat_observations: int = 0) -> list[str]:
        """Upload new recordings "today" (and new species, with Wikipedia articles; and new iNaturalist
        observations of known birds, one sound each); returns their keys."""
        with self._changes:
            return contents.grow(
                self.archive,
                self.config,
                recordings=recordings,
                species=species,
                inat_observations=inat_observations,
            )

    def remove(self, keys: list[str]) -> list[str]:
        """Make recordings vanish upstream (`xc:<id>`, `europeana:<id>`); returns the keys that existed."""
        with self._changes:
            return self.archive.remove(keys)

    def upload(self, audio: AudioFile, species: str) -> str:
        """Serve a real file as a new xeno-canto recording of `species`; returns its key (`xc:<id>`)."""
        with self._changes:
            return contents.upload(self.archive, self.config, audio, species)

    def audio_path(self, key: str) -> Path:
        """The rendered file of a recording (rendering it now if needed)."""
        spec = self.archive.recording(key).audio
        if spec is None:
            raise KeyError(f"{key} has no audio")
        return self._audio.path(spec)

    def describe(self) -> dict[str, Any]:
        """The archive's truths and species, as JSON (what `GET /_sandbox/archive` answers)."""
        return {
            "truths": dataclasses.asdict(self.archive.truths),
            "species": {name: dataclasses.asdict(s) for name, s in self.archive.species.items()},
            "xc_recordings": len(self.archive.xc),
            "europeana_items": len(self.archive.europeana),
            "inaturalist_observations": len(self.archive.inaturalist),
        }

    def _control(self, method: str, path: str, raw: bytes) -> Response:
        """`/_sandbox/...`: the Python API over HTTP, for a sandbox running in another process."""
        actions: dict[tuple[str, str], Callable[[Any], Any]] = {
            ("GET", "stats"): lambda _: {
                **self.counts(),
                "by_path": self.path_counts(),
                "faults_by_kind": self.fault_counts(),
                "retry_waits": [dataclasses.asdict(wait) for wait in self.retry_waits()],
            },
            ("POST", "reset-stats"): lambda _: self.reset_counts(),
            ("GET", "faults"): lambda _: [rule.to_json() for rule in self._faults.rules()],
            ("PUT", "faults"): lambda data: self.set_faults(FaultRule.from_json(rule) for rule in data),
            ("PUT", "latency"): lambda data: self.set_latency(str(data["target"]), float(data["seconds"])),
            ("POST", "grow"): lambda data: {
                "added": self.grow(
                    int(data.get("recordings", 0)),
                    int(data.get("species", 0)),
                    int(data.get("inat_observations", 0)),
                )
            },
            ("POST", "remove"): lambda data: {"removed": self.remove([str(key) for key in data["keys"]])},
            ("GET", "archive"): lambda _: self.describe(),
            ("PUT", "page-size"): lambda data: self.set_page_size(
                str(data["service"]),
                None if data.get("records") is None else int(data["records"]),
                counted_as_asked=bool(data.get("counted_as_asked", False)),
            ),
        }
        action = actions.get((method, path.removeprefix("/_sandbox/")))
        if action is None:
            return json_response(404, {"error": f"no control endpoint {method} {path}"})
        try:
            result = action(json.loads(raw) if raw else {})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return json_response(400, {"error": f"{type(exc).__name__}: {exc}"})
        return json_response(200, {"ok": True} if result is None else result)


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def serve(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0, env_file: Path | None = None
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM; print the base URL, and once listening write
    `export NAME='value'` lines of `Sandbox.env()` to `env_file` (atomically) if given."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Sandbox(config, host, port) as sandbox:
            if env_file is not None:
                lines = "".join(
                    f"export {name}={_shell_quote(value)}\n" for name, value in sandbox.env().items()
                )
                atomic_write_bytes(Path(env_file), lines.encode())
            print(f"birdgrab sandbox serving {sandbox.base_url} (Ctrl-C or SIGTERM to stop)", flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
