"""A fake Anthropic Messages API (``POST /v1/messages``) on 127.0.0.1, for the real SDK.

Point ``anthropic.AsyncAnthropic(base_url=fake.url)`` at it. Each request is
answered by the next scripted step (``fake.push(...)``), else by ``fake.responder``
(a function of the request body), else by a minimal instance of the request's
JSON schema. Every request is recorded (``fake.requests``).

A step is a dict; keys combine:
  {"json": {...}}                      200, one text block holding that JSON
  {"text": "..."}                      200, one text block with that exact text
  {"stop_reason": "refusal"}            (or "max_tokens") with json/text as the partial output
  {"status": 429, "retry_after": 1.5}   an API error; also "error_type", "error_code", "message"
  {"raw": b"...", "status": 200}        a raw (malformed) body
  {"delay": 0.5}                        sleep first (applies to any step)
  {"hang": True}                        never answer (until the client gives up)
Structured output as the API takes it, from ``messages.create(output_config=...)`` or the SDK's
``messages.parse(output_format=Model)`` alike (both send ``output_config.format``): a format other than
``json_schema``, or an object schema that allows additional properties, gets the API's 400.
Run standalone for benchmarks: ``python -m tests.fakes.anthropic_server --port 8123 --delay 1``
(answers there come from ``heuristic``: plausible outputs for our own schemas).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

from tests.fakes.loopback import ScriptedServer, serve

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                500: "api_error", 529: "overloaded_error"}


@dataclass
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]
    at: float

    @property
    def system_text(self) -> str:
        system = self.body.get("system")
        if isinstance(system, str):
            return system
        return "".join(b.get("text", "") for b in system or [])

    @property
    def user_text(self) -> str:
        out = []
        for m in self.body.get("messages", []):
            c = m.get("content")
            out.append(c if isinstance(c, str) else "".join(b.get("text", "") for b in c))
        return "\n".join(out)

    @property
    def schema(self) -> dict[str, Any] | None:
        return ((self.body.get("output_config") or {}).get("format") or {}).get("schema")


def minimal_instance(schema: dict[str, Any] | None) -> Any:
    """The simplest value that satisfies a JSON schema (empty strings, lists, False, first enum)."""
    if not schema:
        return {}
    if "anyOf" in schema:
        return minimal_instance(schema["anyOf"][0])
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else kind[0]
    if kind == "object":
        return {k: minimal_instance(v) for k, v in schema.get("properties", {}).items()}
    return {"array": [], "string": "", "integer": 0, "number": 0, "boolean": False, "null": None}.get(kind)


@dataclass
class FakeAnthropic(ScriptedServer):
    default_delay_s: float = 0.0
    responder: Callable[[dict[str, Any]], Any] | None = None
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # -- scripting ----------------------------------------------------------------
    def reset(self) -> None:
        super().reset()
        self.responder = None
        self.default_delay_s = 0.0

    @property
    def count(self) -> int:
        return len(self.requests)

    # -- server -------------------------------------------------------------------
    async def start(self) -> "FakeAnthropic":
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        self._runner, self.port = await serve(app, self.host, self.port)
        return self

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "invalid_request_error", "body is not JSON")
        rec = Recorded(body=body, headers={k.lower(): v for k, v in request.headers.items()}, at=time.monotonic())
        self.requests.append(rec)
        if "model" not in body or "messages" not in body or "max_tokens" not in body:
            return _error(400, "invalid_request_error", "model, messages and max_tokens are required")

        problem = _output_config_problem(body.get("output_config"))
        if problem:
            return _error(400, "invalid_request_error", problem)

        step = self.next_step()
        if step is None and self.responder is not None:
            step = self.responder(body)
            if inspect.isawaitable(step):
                step = await step
        if step is None:
            step = {"json": minimal_instance(rec.schema)}
        step = dict(step or {})

        delay = step.get("delay", self.default_delay_s)
        if step.get("hang"):
            await asyncio.sleep(3600)
        if delay:
            await asyncio.sleep(delay)

        status = step.get("status", 200)
        if "raw" in step:
            raw = step["raw"]
            return web.Response(status=status, body=raw if isinstance(raw, bytes) else str(raw).encode(),
                                content_type=step.get("content_type", "application/json"))
        if status != 200:
            headers = {}
            if "retry_after" in step:
                headers["retry-after"] = str(step["retry_after"])
            return _error(status, step.get("error_type", _ERROR_TYPES.get(status, "api_error")),
                          step.get("message", f"fake error {status}"), headers=headers,
                          error_code=step.get("error_code"))

        if "json" in step:
            text = json.dumps(step["json"])
        else:
            text = step.get("text", "")
        n = next(self._ids)
        message = {
            "id": f"msg_fake{n:06d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": step.get("stop_reason", "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": max(1, len(text) // 4),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }
        return web.json_response(message, headers={"request-id": f"req_fake{n:06d}"})


def _output_config_problem(config: Any) -> str:
    """What the Messages API would refuse in ``output_config`` (the subset our requests could get wrong)."""
    if config is None:
        return ""
    fmt = config.get("format") if isinstance(config, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        return "output_config.format: expected {type: json_schema, schema: {...}}"

    def objects(schema: Any) -> Any:
        if isinstance(schema, dict):
            if schema.get("type") == "object":
                yield schema
            for value in schema.values():
                yield from objects(value)
        elif isinstance(schema, list):
            for value in schema:
                yield from objects(value)

    for obj in objects(fmt["schema"]):
        if obj.get("additionalProperties") is not False:
            return "output_config.format.schema: objects must set additionalProperties to false"
    return ""


def _error(status: int, kind: str, message: str, *, headers: dict[str, str] | None = None,
           error_code: str | None = None) -> web.Response:
    error: dict[str, Any] = {"type": kind, "message": message}
    if error_code:
        error["details"] = {"error_code": error_code}
    return web.json_response({"type": "error", "error": error, "request_id": "req_fake_error"},
                             status=status, headers=headers or {})


_CITIES = ("New York", "Paris", "London", "Berlin", "Madrid", "Toronto", "Sydney", "Tokyo", "Barcelona", "Lyon")
_STOP = frozenset("the and for with that this have from near there what where when your about need some".split())


def heuristic(body: dict[str, Any]) -> dict[str, Any]:
    """A plausible answer to our own schemas, from the request alone (for benchmarks):
    ads context -> words of the conversation as topics and a known city as the place;
    re-rank -> the candidates in order; answer -> cites the first result."""
    rec = Recorded(body=body, headers={}, at=0.0)
    schema = rec.schema or {}
    props = schema.get("properties", {})
    text = rec.user_text
    if "topics" in props:
        words = [w.strip(".,?!'\"():").lower() for w in text.split()]
        words = [w for w in words if len(w) > 3 and w.isalpha() and w not in _STOP]
        topics = list(dict.fromkeys(words))[-6:]
        place = next((c for c in _CITIES if c in text), "")
        return {"json": {"topics": topics[:4], "intent_keywords": topics, "place": place, "place_country": "",
                         "language": "en", "sensitive": False, "sensitive_category": "none"}}
    if "ranked_ids" in props:
        try:
            ids = [c["id"] for c in json.loads(text)["candidates"]]
        except (ValueError, KeyError, TypeError):
            ids = []
        return {"json": {"ranked_ids": ids}}
    if "cited_ids" in props:
        try:
            first = json.loads(text)["results"][0]["id"]
        except (ValueError, KeyError, IndexError, TypeError):
            return {"json": {"answer": "The results do not say.", "cited_ids": []}}
        return {"json": {"answer": f"According to the first result [{first}], yes.", "cited_ids": [first]}}
    return {"json": minimal_instance(schema)}


async def _serve(port: int, delay: float, responder: str) -> None:
    fake = FakeAnthropic(port=port, default_delay_s=delay, responder=heuristic if responder == "heuristic" else None)
    await fake.start()
    print(f"fake Anthropic API on {fake.url} (delay {delay}s)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds before every answer")
    parser.add_argument("--responder", choices=("heuristic", "minimal"), default="heuristic",
                        help="answers built from the request (default) or minimal schema instances")
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port, args.delay, args.responder))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
