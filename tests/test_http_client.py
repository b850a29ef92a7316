"""The retry and error policy of the one HTTP layer (unit level, mock transport; the end-to-end
tests prove the same over real sockets against the sandbox)."""

from __future__ import annotations

import asyncio
import email.utils

import httpx
import pytest

from birdgrab.errors import ServiceError, ServiceUnreachable
from birdgrab.http_client import ServiceClient, parse_retry_after
from birdgrab.settings import ServicePolicy, Settings, redact, register_secret

FAST = ServicePolicy(
    "test-service", 2, None, timeout_s=5, attempts=4, backoff_base_s=0.01, backoff_max_s=0.05
)


def run(coro):
    return asyncio.run(coro)


def client_for(handler, **kwargs) -> ServiceClient:
    return ServiceClient(FAST, Settings(), transport=httpx.MockTransport(handler), **kwargs)


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7
    now = 1_750_000_000.0  # a fixed instant: the date form is read against `now`, not the clock
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0  # past: at once
    assert parse_retry_after(email.utils.formatdate(now + 86400, usegmt=True), now=now) == 600  # capped
    assert parse_retry_after("nonsense") is None and parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0


def test_429_then_success_honours_retry_after():
    answers = iter([httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json={"ok": 1})])

    async def go():
        async with client_for(lambda request: next(answers)) as client:
            return await client.get_json("http://svc.test/api", {}), client.requests_made

    body, requests = run(go())
    assert body == {"ok": 1} and requests == 2


def test_truncated_json_and_503_are_retried():
    answers = iter(
        [
            httpx.Response(200, content=b'{"recordings": [1, 2'),
            httpx.Response(503),
            httpx.Response(200, json={"recordings": []}),
        ]
    )

    async def go():
        async with client_for(lambda request: next(answers)) as client:
            return await client.get_json("http://svc.test/api", {})

    assert run(go()) == {"recordings": []}


def test_401_is_not_retried_and_says_what_to_do():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(401, json={"error": "client_error", "message": "bad key"})

    async def go():
        async with client_for(
            handler, describe_error=lambda status, body: f"rejected the key: {body['message']}"
        ) as client:
            await client.get_json("http://svc.test/api", {"key": "sekrit-123"})

    with pytest.raises(ServiceError) as caught:
        run(go())
    assert (
        len(calls) == 1 and "rejected the key: bad key" in str(caught.value) and caught.value.exit_code == 2
    )


def test_giving_up_is_unreachable_and_names_no_secret():
    register_secret("topsecret-key-42")

    def handler(request):
        raise httpx.ConnectError("cannot connect to http://svc.test/api?key=topsecret-key-42")

    async def go():
        async with client_for(handler) as client:
            await client.get_json("http://svc.test/api", {"key": "topsecret-key-42"})

    with pytest.raises(ServiceUnreachable) as caught:
        run(go())
    assert "topsecret-key-42" not in str(caught.value) and caught.value.exit_code == 4
    assert "4 attempts" in str(caught.value)


def test_redact_removes_registered_secrets_and_key_params():
    register_secret("abcdef-secret")
    text = redact("GET http://x/api?query=a&key=whatever&wskey=abcdef-secret and abcdef-secret")
    assert "abcdef-secret" not in text and "whatever" not in text
