"""The local host's own answers and limits over raw sockets: JSON errors with request ids for everything the
host (or aiohttp's parser) refuses, 414 for a long request line, read timeouts for headers and body, a
connection cap, Expect: 100-continue refused before the body, garbage compressed bodies, keys kept out of logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from core.devhost import HostLimits, redact
from core.settings import Settings

KEY = "s3cr3t-zq-key"
LIMITS = HostLimits(header_timeout_s=1.0, body_timeout_s=1.0, keepalive_timeout_s=5.0, max_connections=6)


def _settings(**extra: str) -> Settings:
    return Settings.from_env({"FUNCTION_KEYS": KEY, "MAX_BODY_BYTES": "1000", "LOG_LEVEL": "WARNING", **extra})


@pytest.fixture
async def host(serve):
    base = await serve(_settings(), limits=LIMITS)
    return int(base.rsplit(":", 1)[1])


async def _exchange(port: int, raw: bytes) -> tuple[bytes, float]:
    """Send raw bytes, read until the host closes; (everything read, seconds until closed)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.perf_counter()
    w.write(raw)
    await w.drain()
    data = await asyncio.wait_for(r.read(), 5.0)
    elapsed = time.perf_counter() - t0
    w.close()
    return data, elapsed


def _parse(data: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def _get(target: str, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n".encode()


CASES = {
    "not found": (_get("/nope"), 404, "not_found"),
    "method not allowed": (f"DELETE /api/search HTTP/1.1\r\nHost: t\r\nx-functions-key: {KEY}\r\n"
                           "Connection: close\r\n\r\n".encode(), 405, "method_not_allowed"),
    "long request line": (_get(f"/api/search?code={KEY}&q=" + "%E2%82%AC" * 1000), 414, "uri_too_long"),
    "20 KB header": (_get("/api/health", "X-Big: " + "a" * 20_000), 400, "header_too_large"),
    "200 headers": (_get("/api/health", *(f"X-H{i}: 1" for i in range(200))), 400, "too_many_headers"),
    "bad content-length": (b"POST /api/search HTTP/1.1\r\nHost: t\r\nContent-Length: 12x\r\n\r\n", 400,
                           "invalid_content_length"),
    "content-length and chunked": (b"POST /api/search HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_framing"),
    "no key": (_get("/api/search?q=x"), 401, "unauthorized"),
    "declared body too large": (f"POST /api/search HTTP/1.1\r\nHost: t\r\nx-functions-key: {KEY}\r\n"
                                "Content-Type: application/json\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n"
                                .encode() + b"{" * 5000, 413, "payload_too_large"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_every_host_error_is_the_json_contract_with_ids(host, case):
    raw, status, code = CASES[case]
    data, _ = await _exchange(host, raw)
    got, headers, body = _parse(data)
    assert (got, body["error"]["code"]) == (status, code)
    assert headers["content-type"].startswith("application/json")
    assert body["error"]["message"] and KEY not in body["error"]["message"]
    assert len(headers["x-request-id"]) >= 16 and headers["x-process-time"].endswith("ms")
    if status == 405:
        assert set(headers["allow"].split(",")) == {"GET", "POST"}


async def test_request_line_limit_is_8190_bytes(host):
    fits = "/nope?q=" + "a" * (8190 - len("GET /nope?q= HTTP/1.1"))
    assert _parse((await _exchange(host, _get(fits)))[0])[0] == 404
    assert _parse((await _exchange(host, _get(fits + "a")))[0])[0] == 414


async def test_keep_alive_requests_and_large_bodies_are_not_request_lines(host):
    body = b"{" + b" " * 9000 + b"}"  # longer than a request line may be, in one chunk without a newline
    one = (f"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    data, _ = await _exchange(host, one + one + _get("/nope"))
    assert data.count(b"HTTP/1.1 404") == 3 and b"uri_too_long" not in data


async def test_stalled_body_is_closed_within_the_body_timeout(host):
    raw = (f"POST /api/search HTTP/1.1\r\nHost: t\r\nx-functions-key: {KEY}\r\nContent-Type: application/json\r\n"
           "Content-Length: 100\r\n\r\n").encode() + b'{"query":"'  # 10 of the 100 bytes, then nothing
    data, elapsed = await _exchange(host, raw)
    status, _, body = _parse(data)
    assert (status, body["error"]["code"]) == (408, "request_timeout")
    assert LIMITS.body_timeout_s * 0.9 <= elapsed < LIMITS.body_timeout_s + 1.5


async def test_unfinished_headers_are_closed_within_the_header_timeout(host):
    data, elapsed = await _exchange(host, b"GET /api/health HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    status, _, body = _parse(data)
    assert (status, body["error"]["code"]) == (408, "request_timeout")
    assert LIMITS.header_timeout_s * 0.9 <= elapsed < LIMITS.header_timeout_s + 1.5
    _, elapsed = await _exchange(host, b"")  # a connection that sends nothing at all
    assert elapsed < LIMITS.header_timeout_s + 1.5


async def test_connection_cap_holds_and_frees(serve):
    limits = HostLimits(header_timeout_s=30, max_connections=6)
    port = int((await serve(_settings(), limits=limits)).rsplit(":", 1)[1])
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(limits.max_connections)]
    await asyncio.sleep(0.1)
    refused, _ = await _exchange(port, _get("/nope"))
    status, headers, body = _parse(refused)
    assert (status, body["error"]["code"]) == (503, "too_many_connections") and headers["retry-after"]
    idle.pop()[1].close()
    await asyncio.sleep(0.1)
    assert _parse((await _exchange(port, _get("/nope")))[0])[0] == 404  # a slot is free again
    for _, w in idle:
        w.close()


async def test_expect_continue_over_the_limit_gets_413_before_any_invitation(host):
    head = (f"POST /api/search HTTP/1.1\r\nHost: t\r\nx-functions-key: {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n").encode()
    data, _ = await _exchange(host, head)  # the body is never sent: the host must answer and close
    assert not data.startswith(b"HTTP/1.1 100")
    status, headers, body = _parse(data)
    assert (status, body["error"]["code"]) == (413, "payload_too_large") and headers["x-request-id"]
    no_key = head.replace(f"x-functions-key: {KEY}\r\n".encode(), b"")
    data, _ = await _exchange(host, no_key)
    assert _parse(data)[0] == 401
    r, w = await asyncio.open_connection("127.0.0.1", host)  # within the limit: invited
    w.write(head.replace(b"10485760", b"20"))
    await w.drain()
    assert (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 100 Continue")
    w.close()


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
async def test_garbage_compressed_body_is_reported_as_such(host, encoding):
    raw = (f"POST /api/search HTTP/1.1\r\nHost: t\r\nx-functions-key: {KEY}\r\nContent-Type: application/json\r\n"
           f"Content-Encoding: {encoding}\r\nContent-Length: 16\r\nConnection: close\r\n\r\n").encode()
    raw += b"not compressed!!"
    status, _, body = _parse((await _exchange(host, raw))[0])
    assert (status, body["error"]["code"]) == (400, "invalid_content_encoding")
    assert encoding in body["error"]["message"]


async def test_key_rule_header_is_authoritative_even_empty(host):
    # An empty or wrong header is not rescued by a right ?code=: "not valid", not "required".
    for header in ("x-functions-key:", "x-functions-key: wrong"):
        status, _, body = _parse((await _exchange(host, _get(f"/api/search?code={KEY}&q=x", header)))[0])
        assert (status, body["error"]["message"]) == (401, "the function key is not valid")
    status, _, body = _parse((await _exchange(host, _get("/api/search?code=wrong&q=x")))[0])
    assert (status, body["error"]["message"]) == (401, "the function key is not valid")
    status, _, body = _parse((await _exchange(host, _get("/api/search?q=x")))[0])
    assert status == 401 and "required" in body["error"]["message"]


async def test_keys_never_reach_the_logs(host, caplog):
    caplog.set_level(logging.DEBUG)
    for raw, _, _ in CASES.values():
        await _exchange(host, raw)
    await _exchange(host, _get(f"/nope?code={KEY}"))
    await _exchange(host, _get(f"/api/search?q=x&code={KEY}x"))  # a wrong key is a secret too
    await _exchange(host, b"BAD\x00 /api/search?code=" + KEY.encode() + b" HTTP/1.1\r\n\r\n")
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any("414" in m for m in logged)  # the refusals are logged, without the key
    assert not [m for m in logged if KEY in m]


def test_redact():
    assert redact("GET /api/search?q=a&code=abc123&x=1") == "GET /api/search?q=a&code=<redacted>&x=1"
    assert redact("b'/x?CODE=k%20y'") == "b'/x?CODE=<redacted>'"
