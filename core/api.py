"""The HTTP contract, independent of any web framework.

``function_app.py`` (and therefore the Functions host or the local host) turns
its request into a :class:`Request`, calls :func:`handle` with one of the
endpoint coroutines below, and turns the :class:`Response` back. Here live the
body limits (413 before parsing, 415, non-UTF-8), the error contract
(``{"error": {"code", "message"}}``), the request id, ``X-Process-Time`` and the
per-request deadline.
"""

from __future__ import annotations

import json
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
    if declared and declared.isdigit() and int(declared) > max_bytes or len(req.body) > max_bytes:
        raise payload_too_large(max_bytes)
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != JSON and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    if not req.body:
        raise bad_request("the request body is empty; send a JSON object", "invalid_body")
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the body is not valid UTF-8 (byte {exc.start})", "invalid_encoding") from exc
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise bad_request(f"the body is not valid JSON: {msg}", "invalid_json") from exc


Endpoint = Callable[[Request, Any, Deadline], Awaitable[Any]]


async def handle(name: str, req: Request, runtime: Any, endpoint: Endpoint) -> Response:
    """Run one endpoint with a deadline and map every outcome to a JSON response."""
    t0 = time.perf_counter()
    rid = req.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
    status, headers = 200, {}
    try:
        runtime.ensure_warming()
        deadline = Deadline(runtime.settings.request_deadline_s)
        payload = await endpoint(req, runtime, deadline)
        if isinstance(payload, tuple):
            status, payload = payload
    except ApiError as exc:
        status, payload, headers = exc.status, exc.body(), dict(exc.headers)
        if status >= 500:
            log.warning("%s %s -> %d %s: %s", name, rid, status, exc.code, exc.message)
    except DeadlineExceeded:
        status, payload = 504, {"error": {"code": "deadline_exceeded",
                                          "message": "the request did not finish within its deadline"}}
        log.warning("%s %s -> 504 deadline exceeded", name, rid)
    except Exception:  # the last line of defence: never a bare 500
        log.exception("%s %s failed", name, rid)
        status, payload = 500, {"error": {"code": "internal_error",
                                          "message": f"unexpected error; quote request id {rid}"}}
    body = payload if isinstance(payload, bytes) else dumps(payload)
    headers.setdefault("Content-Type", JSON)
    headers["X-Request-Id"] = rid
    headers["X-Process-Time"] = f"{(time.perf_counter() - t0) * 1000:.2f}ms"
    return Response(status, body, headers)


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
