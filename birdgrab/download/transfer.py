"""Moving one file's bytes: a resumable, verified stream into a partial file -> sha256 and size.

The sha256 is computed as the bytes arrive. A transfer cut short keeps its partial file and a
small hint beside it (`<partial>.json`: the URL and the file's validator); the next attempt, or the
next run, resumes with an HTTP Range request, guarded by If-Range so that a changed file is never
appended to an old prefix. A server that ignores Range restarts the file. A complete transfer is
checked against Content-Length. Nothing here knows about keys, formats or the ledger.

Every transfer holds a slot of its host (`--per-host`) and of the whole run (`--jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from birdgrab.download.cache import remove
from birdgrab.errors import ServiceError
from birdgrab.http_client import RETRYABLE, ServiceClient, TransientError, describe_transport_error
from birdgrab.settings import redact


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


@dataclass(frozen=True)
class Transferred:
    """A complete file in its partial path, and what the server said about it."""

    sha256: str
    size: int
    etag: str | None
    last_modified: str | None


class HostSlots:
    """At most `per_host` transfers at a time to any one host, whatever the number of workers."""

    def __init__(self, per_host: int):
        self.per_host = per_host
        self._slots: dict[str, asyncio.Semaphore] = {}

    def __call__(self, url: str) -> asyncio.Semaphore:
        host = urlsplit(url).netloc
        return self._slots.setdefault(host, asyncio.Semaphore(self.per_host))


class Transfer:
    """Streams URLs into partial files over one `ServiceClient` (its retry policy and run-wide slots).

    >>> transfer = Transfer(client, per_host=6, max_bytes=2**31)       # doctest: +SKIP
    >>> done = await transfer.fetch(url, cache.partial(key))            # doctest: +SKIP
    >>> done.sha256, done.size                                          # doctest: +SKIP
    ('3f9a...e1', 1048576)
    """

    def __init__(
        self,
        client: ServiceClient,
        *,
        per_host: int,
        max_bytes: int,
        on_bytes: Callable[[int], None] | None = None,
    ):
        self.client = client
        self.max_bytes = max_bytes
        self._host_slot = HostSlots(per_host)
        self._on_bytes = on_bytes or (lambda amount: None)
        # Hosts that refused connections through a whole retry cycle: the other files on them fail
        # at once this run (and are retried next run) instead of each waiting through its retries.
        self.unreachable_hosts: set[str] = set()

    async def fetch(self, url: str, partial: Path) -> tuple[Transferred, int]:
        """Stream `url` into `partial` with retries; returns the file and how many attempts it took.

        Raises `TransferRefused` (partial file removed) or `TransferFailed` (partial file kept).
        """
        host = urlsplit(url).netloc
        if host in self.unreachable_hosts:
            raise TransferFailed(f"could not connect to {host} (gave up on it for this run)")
        attempts = 0
        try:
            async for attempt in self.client.retrying():
                with attempt:
                    attempts += 1
                    return await self._attempt(url, partial), attempts
        except TransferRefused as exc:
            discard(partial)
            raise TransferRefused(exc.reason, attempts) from None
        except RETRYABLE as exc:
            if isinstance(exc, httpx.ConnectError):
                self.unreachable_hosts.add(host)
            raise TransferFailed(describe_transport_error(exc), attempts) from None
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises

    async def _attempt(self, url: str, partial: Path) -> Transferred:
        """One attempt: stream into `partial` (resuming if it has bytes)."""
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
        async with (
            self._host_slot(url),
            self.client.slot(),
            self.client.stream(url, headers=headers) as response,
        ):
            if response.status_code == 416 and have:
                if response.headers.get("Content-Range") == f"bytes */{have}":
                    # Complete already: the run that fetched it died before filing it.
                    etag, modified = hint.get("etag"), hint.get("last_modified")
                    return Transferred(_sha256_of(partial).hexdigest(), have, etag, modified)
                discard(partial)  # our partial is no prefix of the current file: start over
                raise TransientError("server refused to resume (416)", retry_after=0)
            try:
                self.client.raise_for_status(response)
            except ServiceError as exc:
                raise TransferRefused(f"HTTP {response.status_code}") from exc
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type in ("text/html", "application/xhtml+xml"):
                raise TransferRefused("server sent an HTML page instead of audio")
            etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
            validator = etag or modified
            resumed = response.status_code == 206
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
            expected = _expected_total(response, have if resumed else 0)
            if expected is not None and expected > self.max_bytes:
                raise TransferRefused(f"file of {expected / 2**20:.0f} MB exceeds --max-file-mb")
            # Only a hint for resuming (If-Range): no fsync; a torn file just means no validator.
            hint = {"url": redact(url), "validator": validator, "etag": etag, "last_modified": modified}
            hint_path.write_text(json.dumps(hint))
            sha256, size = await self._stream(response, partial, have if resumed else 0)
        if expected is not None and size != expected:
            raise TransientError(f"got {size} of {expected} bytes (truncated)")
        return Transferred(sha256, size, etag, modified)

    async def _stream(self, response: httpx.Response, partial: Path, offset: int) -> tuple[str, int]:
        """Write the body after the `offset` bytes already in `partial`, hashing as it goes;
        returns the whole file's sha256 and size."""
        hasher = _sha256_of(partial) if offset else hashlib.sha256()
        size = offset
        with open(partial, "ab" if offset else "wb") as out:
            # Raw bytes as they arrive (no chunk_size: httpx would hold back up to that much, which a
            # cut-off transfer then loses); decoded only if the server encoded them, so that a gzip
            # bomb is measured by what it inflates to.
            encoded = "Content-Encoding" in response.headers
            blocks = response.aiter_bytes() if encoded else response.aiter_raw()
            async for block in blocks:
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


def _sha256_of(path: Path):
    """A sha256 object fed with the file's bytes (call .hexdigest(), or keep updating it)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
    return hasher


def _expected_total(response: httpx.Response, offset: int) -> int | None:
    """Bytes the file will have once this answer is complete (from Content-Length)."""
    length = response.headers.get("Content-Length")
    if length is None or "Content-Encoding" in response.headers:
        return None
    try:
        return offset + int(length)
    except ValueError:
        return None
