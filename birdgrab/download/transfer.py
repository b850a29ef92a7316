"""Moving one file's bytes: a resumable, verified stream into a partial file -> sha256 and size.

The sha256 is computed as the bytes arrive. A transfer cut short keeps its partial file and a
small hint beside it (`<partial>.json`: the URL and the file's validator); the next attempt, or the
next run, resumes with an HTTP Range request, guarded by If-Range so that a changed file is never
appended to an old prefix. A server that ignores Range restarts the file. A complete transfer is
checked against Content-Length. Nothing here knows about keys, formats or the ledger.

The bytes travel over aiohttp (its HTTP parser is C: half the CPU per gigabyte of httpx's
pure-Python h11 here, see BENCHMARKS.md) under the same `http_client.Service` policy as every API
call: rate limit, retries with back-off, the meaning of each status. Its connection pool is the
per-host limit: at most `--per-host` connections to one host, `--jobs` in all. The session (and
aiohttp itself, a fifth of a second to import) comes at the first request: a refresh with nothing to
download, cron's usual run, never pays for either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from birdgrab.download.cache import remove, sha256_of
from birdgrab.errors import ServiceError
from birdgrab.http_client import RETRYABLE, Service, TransientError, describe_transport_error, tls_context
from birdgrab.settings import Settings, redact

if TYPE_CHECKING:
    import aiohttp


class TransferError(Exception):
    """A transfer that did not complete: `reason` in a few words, after `attempts` attempts."""

    def __init__(self, reason: str, attempts: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class TransferRefused(TransferError):
    """A permanent failure of one transfer (HTTP 4xx, an HTML page, too large): not retried this run."""


class TransferFailed(TransferError):
    """The transfer kept failing through every retry; the partial file stays for the next run."""


class Unreachable(TransientError):
    """The host refused or could not be reached (as opposed to failing mid-answer)."""


@dataclass(frozen=True)
class Transferred:
    """A complete file in its partial path, and what the server said about it."""

    sha256: str
    size: int
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class Upstream:
    """What a server says about a file without sending it (HEAD): enough to tell that it changed."""

    size: int | None
    etag: str | None
    last_modified: str | None


class Transfer:
    """Streams URLs into partial files. Use as an async context manager (it owns the connections).

    >>> async with Transfer(settings, jobs=16, per_host=6, max_bytes=2**31) as transfer:  # doctest: +SKIP
    ...     done, attempts = await transfer.fetch(url, cache.partial(key))
    ...     done.sha256, done.size
    ('3f9a...e1', 1048576)
    """

    def __init__(
        self,
        settings: Settings,
        *,
        jobs: int,
        per_host: int,
        max_bytes: int,
        on_bytes: Callable[[int], None] | None = None,
    ):
        self.service = Service(replace(settings.audio, max_concurrency=jobs))
        self.max_bytes = max_bytes
        self._jobs, self._per_host = jobs, per_host
        self._user_agent = settings.user_agent()
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._on_bytes = on_bytes or (lambda amount: None)
        # Hosts that refused connections through a whole retry cycle: the other files on them fail
        # at once this run (and are retried next run) instead of each waiting through its retries.
        self.unreachable_hosts: set[str] = set()

    async def __aenter__(self) -> Transfer:
        return self

    def _opened(self) -> aiohttp.ClientSession:
        """The session, opened at the first request."""
        if self._session is not None:
            return self._session
        import aiohttp

        policy = self.service.policy
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self._jobs, limit_per_host=self._per_host, ssl=tls_context()
            ),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=min(policy.timeout_s, 15.0), sock_read=policy.timeout_s
            ),
            # identity: a Range is a range of the encoded bytes, and we keep (and resume) the file itself
            headers={"User-Agent": self._user_agent, "Accept-Encoding": "identity"},
            # Not trust_env: it reads ~/.netrc and the proxy variables in a thread for every request
            # (two thread hops a request); `_proxy` looks the proxy up once per host instead.
            trust_env=False,
        )
        return self._session

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, url: str, partial: Path) -> tuple[Transferred, int]:
        """Stream `url` into `partial` with retries; returns the file and how many attempts it took.

        Raises `TransferRefused` (partial file removed) or `TransferFailed` (partial file kept).
        """
        host = urlsplit(url).netloc
        if host in self.unreachable_hosts:
            raise TransferFailed(f"could not connect to {host} (gave up on it for this run)")
        attempts = 0
        try:
            async for attempt in self.service.retrying():
                with attempt:
                    attempts += 1
                    return await self._attempt(url, partial), attempts
        except TransferRefused as exc:
            discard(partial)
            raise TransferRefused(exc.reason, attempts) from None
        except RETRYABLE as exc:
            if isinstance(exc, Unreachable):
                self.unreachable_hosts.add(host)
            raise TransferFailed(describe_transport_error(exc), attempts) from None
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises

    def _proxy(self, url: str) -> str | None:
        """The proxy the environment names for `url` (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), as httpx
        honours them for the API calls; looked up once per scheme and host."""
        parts = urlsplit(url)
        where = (parts.scheme, parts.hostname or "")
        if where not in self._proxies:
            bypass = urllib.request.proxy_bypass(where[1])
            self._proxies[where] = None if bypass else urllib.request.getproxies().get(where[0])
        return self._proxies[where]

    async def upstream(self, url: str) -> Upstream | None:
        """Ask the server about `url` (one HEAD request, redirects followed); None if it would not say."""
        import aiohttp

        try:
            head = self._opened().head(url, allow_redirects=True, proxy=self._proxy(url))
            async with self.service.slot(), head as response:
                if response.status >= 400:
                    return None
                size = _expected_total(response.headers, 0)
                return Upstream(size, response.headers.get("ETag"), response.headers.get("Last-Modified"))
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _attempt(self, url: str, partial: Path) -> Transferred:
        """One attempt, its transport errors as `TransientError`s (retried) or `TransferRefused`."""
        import aiohttp

        try:
            return await self._stream(url, partial)
        except aiohttp.InvalidURL:
            raise TransferRefused("not a valid URL") from None
        except aiohttp.TooManyRedirects:
            raise TransferRefused("too many redirects") from None
        except aiohttp.ClientConnectorError:
            raise Unreachable("could not connect") from None
        except TimeoutError:
            raise TransientError("timed out") from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            raise TransientError("connection closed mid-answer (truncated body)") from None
        except aiohttp.ClientError as exc:
            raise TransientError(redact(f"connection failed ({type(exc).__name__})")) from None

    async def _stream(self, url: str, partial: Path) -> Transferred:
        """Stream into `partial`, resuming if it has bytes."""
        hint_path = _hint(partial)
        have = partial.stat().st_size if partial.exists() else 0
        headers = {}
        hint: dict = {}
        if have:
            headers["Range"] = f"bytes={have}-"
            with contextlib.suppress(OSError, ValueError):
                hint = json.loads(hint_path.read_text())
            if hint.get("validator"):
                headers["If-Range"] = hint["validator"]
        request = self._opened().get(url, headers=headers, proxy=self._proxy(url))
        async with self.service.slot(), request as response:
            status = response.status
            if status == 416 and have:
                if response.headers.get("Content-Range") == f"bytes */{have}":
                    # Complete already: the run that fetched it died before filing it.
                    etag, modified = hint.get("etag"), hint.get("last_modified")
                    return Transferred(sha256_of(partial).hexdigest(), have, etag, modified)
                discard(partial)  # our partial is no prefix of the current file: start over
                raise TransientError("server refused to resume (416)", retry_after=0)
            try:
                self.service.check_status(status, response.headers, str(response.url))
            except ServiceError as exc:
                raise TransferRefused(f"HTTP {status}") from exc
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type in ("text/html", "application/xhtml+xml"):
                raise TransferRefused("server sent an HTML page instead of audio")
            etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
            validator = etag or modified
            resumed = status == 206
            if resumed and (
                not have
                or not response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
                # Not every server honours If-Range: a piece of another version must not be appended.
                or (hint.get("validator") and validator and validator != hint["validator"])
            ):
                discard(partial)
                raise TransientError(
                    "the server answered another range or version; starting over", retry_after=0
                )
            offset = have if resumed else 0
            expected = _expected_total(response.headers, offset)
            if expected is not None and expected > self.max_bytes:
                raise TransferRefused(f"file of {expected / 2**20:.0f} MB exceeds --max-file-mb")
            # Only a hint for resuming (If-Range): no fsync; a torn file just means no validator.
            hint = {"url": redact(url), "validator": validator, "etag": etag, "last_modified": modified}
            hint_path.write_text(json.dumps(hint))
            sha256, size = await self._write(response, partial, offset)
        if expected is not None and size != expected:
            raise TransientError(f"got {size} of {expected} bytes (truncated)")
        return Transferred(sha256, size, etag, modified)

    async def _write(self, response: aiohttp.ClientResponse, partial: Path, offset: int) -> tuple[str, int]:
        """Write the body after the `offset` bytes already in `partial`, hashing as it goes;
        returns the whole file's sha256 and size."""
        hasher = sha256_of(partial) if offset else hashlib.sha256()
        size = offset
        with open(partial, "ab" if offset else "wb") as out:
            # Bytes as they arrive (a cut-off transfer keeps all it got); decoded only if the server
            # encoded them anyway, so that a gzip bomb is measured by what it inflates to.
            async for block in response.content.iter_any():
                size += len(block)
                if size > self.max_bytes:
                    raise TransferRefused(f"file larger than --max-file-mb ({self.max_bytes / 2**20:g} MB)")
                out.write(block)
                hasher.update(block)
                self._on_bytes(len(block))
        return hasher.hexdigest(), size


def discard(partial: Path) -> None:
    """Remove a partial download and its resume hint."""
    remove(partial)
    remove(_hint(partial))


def finish(partial: Path) -> None:
    """A partial file was filed: its resume hint has no use any more."""
    remove(_hint(partial))


def _hint(partial: Path) -> Path:
    return partial.with_suffix(".json")


def _expected_total(headers: Mapping[str, str], offset: int) -> int | None:
    """Bytes the file will have once this answer is complete (from Content-Length)."""
    length = headers.get("Content-Length")
    if length is None or "Content-Encoding" in headers:
        return None
    try:
        return offset + int(length)
    except ValueError:
        return None
