"""The HTTP contract, independent of any web framework.

``function_app.py`` (and therefore the Functions host or the local host) turns
its request into a :class:`Request`, calls :func:`handle` with one of the
endpoint coroutines below, and turns the :class:`Response` back. Here live the
body limits (413 before parsing, 415, non-UTF-8), the error contract
(``{"error": {"code", "message"}}``), the request id, ``X-Process-Time`` and the
per-request deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import orjson

from core.deadline import Deadline, DeadlineExceeded
from core.errors import ApiError, bad_request, payload_too_large
from core.search.models import from_query_params, parse_search_request

log = logging.getLogger("core.api")

JSON = "application/json"


@dataclass
class Request:
    method: str
    url: str
    headers: Mapping[str, str]  # case-insensitive lookups: keys are lower-cased
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def build(cls, method: str, url: str, headers: Mapping[str, str], params: Mapping[str, str] | None,
              body: bytes | None) -> "Request":
        return cls(method.upper(), url, {k.lower(): v for k, v in headers.items()}, dict(params or {}),
                   body or b"")


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def parse_json(req: Request, max_bytes: int) -> Any:
    """Body limits in the order a client needs them: size, type, encoding, syntax."""
    declared = req.headers.get("content-length")
    too_long = bool(declared) and declared.isascii() and declared.isdigit() and (
        len(declared) > 18 or int(declared) > max_bytes)
    if too_long or len(req.body) > max_bytes:
        raise payload_too_large(max_bytes)
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != JSON and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    if not req.body:
        raise bad_request("the request body is empty; send a JSON object", "invalid_body")
    try:
        req.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the body is not valid UTF-8 (byte {exc.start})", "invalid_encoding") from exc
    try:
        # orjson is strict RFC 8259: no NaN/Infinity, no number beyond the float range (1e400, or an integer
        # literal too long for one), no lone surrogate escape, at most 1024 levels of nesting.
        return orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the body is not valid JSON: {_json_reason(exc)}", "invalid_json") from None


def _json_reason(exc: orjson.JSONDecodeError) -> str:
    msg = exc.msg
    if "surrogate" in msg:
        msg += " (a \\uD800-\\uDFFF escape must be half of a pair: text must be Unicode characters)"
    elif "infinity" in msg:
        msg += " (NaN, Infinity and numbers beyond about 1.8e308 are not accepted)"
    return f"{msg} at line {exc.lineno}, column {exc.colno}"


Endpoint = Callable[[Request, Any, Deadline], Awaitable[Any]]


_FALLBACK = b'{"error":{"code":"internal_error","message":"unexpected error while writing the response"}}'


def _request_id(req: Request) -> str:
    """The client's X-Request-Id when it is 1-64 visible ASCII characters (safe in a header), else a new one."""
    rid = req.headers.get("x-request-id", "")
    if 0 < len(rid) <= 64 and rid.isascii() and rid.isprintable() and " " not in rid:
        return rid
    return uuid.uuid4().hex


async def handle(name: str, req: Request, runtime: Any, endpoint: Endpoint) -> Response:
    """Run one endpoint with a deadline and map every outcome to a JSON response.

    The error path cannot fail: whatever the endpoint does, and even if serialising its answer fails,
    the answer is a JSON body with ``X-Request-Id`` and ``X-Process-Time``."""
    t0 = time.perf_counter()
    rid = _request_id(req)
    status, headers, body, payload = 500, {}, _FALLBACK, None
    try:
        status, payload, headers = await _run(name, rid, req, runtime, endpoint)
        body = payload if isinstance(payload, bytes) else dumps(payload)
    except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
        raise
    except BaseException:  # noqa: BLE001 - the last line of defence: whatever failed, a JSON error goes out
        body, status, headers = _fallback(name, rid, status, payload, headers)
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    headers["Content-Type"] = JSON
    headers["X-Request-Id"] = rid
    headers["X-Process-Time"] = f"{(time.perf_counter() - t0) * 1000:.2f}ms"
    return Response(status, body, headers)


def _scrub(value: Any) -> Any:
    """``value`` with every string made encodable (a lone surrogate becomes ``\\udXXX`` text)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrub(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float)) else _scrub(repr(value))


def _fallback(name: str, rid: str, status: int, payload: Any, headers: dict) -> tuple[bytes, int, dict]:
    """The answer when writing the response failed: an error keeps its status with its text made safe;
    anything else is a 500. Never raises."""
    try:
        log.exception("%s %s: the response could not be written", name, rid)
    except Exception:  # noqa: BLE001 - a failing log handler must not turn into a bare 500
        pass
    try:
        if status >= 400 and isinstance(payload, dict) and "error" in payload:
            return dumps(_scrub(payload)), status, dict(headers)
    except Exception:  # noqa: BLE001
        pass
    try:
        return dumps({"error": {"code": "internal_error",
                                "message": f"unexpected error; quote request id {rid}"}}), 500, {}
    except Exception:  # noqa: BLE001
        return _FALLBACK, 500, {}


async def _run(name: str, rid: str, req: Request, runtime: Any, endpoint: Endpoint) -> tuple[int, Any, dict]:
    try:
        runtime.ensure_warming()
        deadline = Deadline(runtime.settings.request_deadline_s)
        payload = await endpoint(req, runtime, deadline)
        if isinstance(payload, tuple):
            return payload[0], payload[1], {}
        return 200, payload, {}
    except ApiError as exc:
        if exc.status >= 500:
            log.warning("%s %s -> %d %s: %s", name, rid, exc.status, exc.code, exc.message)
        return exc.status, exc.body(), dict(exc.headers)
    except DeadlineExceeded:
        log.warning("%s %s -> 504 deadline exceeded", name, rid)
        return 504, {"error": {"code": "deadline_exceeded",
                               "message": "the request did not finish within its deadline"}}, {}
    except Exception:  # never a bare 500
        log.exception("%s %s failed", name, rid)
        return 500, {"error": {"code": "internal_error",
                               "message": f"unexpected error; quote request id {rid}"}}, {}


# ------------------------------------------------------------------ endpoints
async def search_endpoint(req: Request, rt: Any, deadline: Deadline) -> Any:
    s = rt.settings
    if req.method == "GET":
        sreq = from_query_params(req.params, s.default_top_k)
    else:
        sreq = parse_search_request(parse_json(req, s.max_body_bytes), s.default_top_k)
    return await rt.search.search(sreq, deadline)


async def ads_endpoint(req: Request, rt: Any, deadline: Deadline) -> Any:
    from core.ads.models import parse_ads_request

    areq = parse_ads_request(parse_json(req, rt.settings.max_body_bytes))
    return await rt.recommend_ads(areq, deadline)


async def health_endpoint(req: Request, rt: Any, deadline: Deadline) -> Any:
    report = await rt.health()
    return (200 if report["status"] == "ok" else 503), report


async def openapi_endpoint(req: Request, rt: Any, deadline: Deadline) -> Any:
    from core.openapi import document

    return document()
