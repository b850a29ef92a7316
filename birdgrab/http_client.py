"""The one HTTP policy: per service, timeouts, politeness limits and a retry policy (`Service`),
and the JSON client every API goes through (`ServiceClient`, httpx). Audio downloads run through
the same `Service` policy over aiohttp (`birdgrab.download.transfer`).

Retried: 429 and 5xx (honouring Retry-After in seconds or HTTP-date form), timeouts, connection
errors, truncated or unparsable bodies, and payload-level errors a service marks as transient
(MediaWiki's maxlag arrives with HTTP 200). Not retried: 400/401/403/404 and other 4xx, which
become one `ServiceError` naming the service and saying what to do.

A 429 or 503 pauses the whole service, not just the request that saw it: the other requests in
flight would only collect the same answer.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import certifi
import httpx
import pydantic_core
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from birdgrab.errors import ServiceError, ServiceUnreachable
from birdgrab.settings import ServicePolicy, Settings, redact

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_RETRY_AFTER_S = 600.0


class TransientError(Exception):
    """A failure worth retrying: the service is busy, lagging, or the answer arrived damaged."""

    def __init__(self, reason: str, *, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


RETRYABLE = (TransientError, httpx.TransportError)

# Given a status and the parsed error body (or None), say what went wrong and what to do.
DescribeError = Callable[[int, Any], str]
# Inspect a parsed HTTP-200 payload (and its headers, e.g. Retry-After); raise TransientError or
# ServiceError if it is really an error.
CheckPayload = Callable[[Any, httpx.Headers], None]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date. None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER_S))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, min(when.timestamp() - now, MAX_RETRY_AFTER_S))


def describe_transport_error(exc: BaseException) -> str:
    """A short, secret-free reason for a transport failure (httpx messages can contain URLs)."""
    if isinstance(exc, TransientError):
        return exc.reason
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed mid-answer (truncated body)"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    if isinstance(exc, httpx.ReadError):
        return "connection reset"
    return redact(f"{type(exc).__name__}: {exc}")


async def gather_failfast(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run awaitables concurrently; on the first failure cancel the rest and raise that error
    itself (not an ExceptionGroup), so callers keep their ordinary `except` clauses."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(c)) for c in coros]
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    return [task.result() for task in tasks]


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart, and pauses everyone after a 429/503."""

    def __init__(self, requests_per_second: float | None):
        self._interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self._next_start = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        async with self._lock:
            now = loop.time()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)

    def pause(self, seconds: float) -> None:
        """No request of this service starts in the next `seconds`."""
        resume = asyncio.get_running_loop().time() + seconds
        self._next_start = max(self._next_start, resume)


@functools.cache
@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context (certifi's roots, as httpx uses) for every client of the process: each costs
    ~80 ms to build. Shared read-only: nothing changes it after this."""
    return ssl.create_default_context(cafile=certifi.where())


class Service:
    """One service's policy in force, whatever carries the bytes: its rate limiter, concurrency
    slots, retry loop and the meaning of a status. The JSON client below (httpx) and the download
    transfer (aiohttp) both run their requests through one of these.
    """

    def __init__(self, policy: ServicePolicy, *, describe_error: DescribeError | None = None):
        self.policy = policy
        self.service = policy.name
        self._describe_error = describe_error
        self._limiter = RateLimiter(policy.requests_per_second)
        self._slots = asyncio.Semaphore(policy.max_concurrency)
        self.requests_made = 0

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return exc.retry_after
        # Exponential backoff with full jitter (written out: tenacity's helper changed signature
        # between 9.1 and 9.2, and wikipedia-api pins 9.1.4).
        ceiling = min(self.policy.backoff_max_s, self.policy.backoff_base_s * 2 ** (state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info(
            "%s: %s; retrying in %.1f s (attempt %d of %d)",
            self.service,
            describe_transport_error(exc) if exc else "failed",
            state.upcoming_sleep,
            state.attempt_number + 1,
            self.policy.attempts,
            extra={"event": "http.retry", "service": self.service},
        )

    def retrying(self) -> AsyncRetrying:
        """A tenacity loop with this service's policy: `async for attempt in service.retrying(): with attempt: ...`."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.policy.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(RETRYABLE),
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def check_status(self, status: int, headers: Mapping[str, str], url: str, body: Any = None) -> None:
        """Turn a non-2xx answer into TransientError (429, 5xx) or ServiceError (other 4xx)."""
        if status < 400:
            return
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            if status in (429, 503):
                self._limiter.pause(retry_after if retry_after is not None else self.policy.backoff_base_s)
            raise TransientError(f"HTTP {status}", retry_after=retry_after)
        if self._describe_error is not None:
            message = self._describe_error(status, body)
        else:
            message = f"HTTP {status} for {redact(url)}"
        raise ServiceError(self.service, redact(message), status=status)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the service's concurrency slots after waiting for the rate limiter."""
        async with self._slots:
            await self._limiter.acquire()
            self.requests_made += 1
            yield


class ServiceClient(Service):
    """An `httpx.AsyncClient` for one JSON API, with its policy. Use as an async context manager.

    >>> async with ServiceClient(settings.wikipedia, settings) as client:       # doctest: +SKIP
    ...     page = await client.get_json(settings.wikipedia_endpoint("de"), {"action": "query"})
    """

    def __init__(
        self,
        policy: ServicePolicy,
        settings: Settings,
        *,
        describe_error: DescribeError | None = None,
        check_payload: CheckPayload | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        super().__init__(policy, describe_error=describe_error)
        self._check_payload = check_payload
        self._client = httpx.AsyncClient(
            headers={"User-Agent": settings.user_agent()},
            timeout=httpx.Timeout(policy.timeout_s, connect=min(policy.timeout_s, 15.0)),
            limits=httpx.Limits(
                max_connections=policy.max_concurrency,
                max_keepalive_connections=policy.max_concurrency,
            ),
            follow_redirects=True,
            transport=transport,
            verify=tls_context(),
        )

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- JSON APIs ------------------------------------------------------------------------------
    async def _get_json_once(self, url: str, params: Any) -> Any:
        async with self.slot(), self._client.stream("GET", url, params=params) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_JSON_BYTES:
                    raise ServiceError(
                        self.service,
                        f"answer larger than {MAX_JSON_BYTES // 2**20} MB; refusing to read it",
                        status=response.status_code,
                    )
                chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            body = pydantic_core.from_json(raw)  # about twice as fast as json.loads on listing pages
        except ValueError:
            body = None
        self.check_status(response.status_code, response.headers, str(response.request.url), body)
        if body is None:
            raise TransientError("answer is not valid JSON (truncated?)")
        if self._check_payload is not None:
            self._check_payload(body, response.headers)
        return body

    async def get_json(self, url: str, params: Any) -> Any:
        """GET a JSON document with retries. Raises ServiceError or ServiceUnreachable."""
        try:
            async for attempt in self.retrying():
                with attempt:
                    return await self._get_json_once(url, params)
        except RETRYABLE as exc:
            raise ServiceUnreachable(
                self.service,
                f"gave up after {self.policy.attempts} attempts: {describe_transport_error(exc)}",
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises
