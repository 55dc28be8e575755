"""A small local host for ``function_app``: the same handlers over real HTTP, no Core Tools.

It reads the routes, methods and auth levels the app declares
(``app.get_functions()``), applies host.json's ``routePrefix``, checks function
keys (``x-functions-key`` header or ``?code=``; keys from the FUNCTION_KEYS
setting) and hands each request to the handler as an
``azure.functions.HttpRequest``. Used by the tests, the benchmarks and
``python -m core.devhost`` for a zero-setup local run.

Every answer the host makes itself (404, 405, 401, 408, 413, 414, the HTTP
parser's 400s, 503 over the connection cap) is the JSON error contract with
``X-Request-Id`` and ``X-Process-Time``, like the app's own answers. The host
bounds what a client can hold: the time to send the headers and the body, the
idle time between requests, and the number of open connections.

The key rule: a present ``x-functions-key`` header is authoritative, even when
empty; ``?code=`` is read only when there is no such header.

``--like-functions-host``: start nothing until the first request (no warm-up at
start), as the Functions host does; cold-start tests and benches use it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import re
import signal
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import ContentEncodingError, LineTooLong
from aiohttp.web_protocol import RequestPayloadError

from core.errors import ApiError, payload_too_large, unauthorized
from core.settings import PROJECT_ROOT, Settings

log = logging.getLogger("core.devhost")

KEY_HEADER = "x-functions-key"


@dataclass(frozen=True)
class HostLimits:
    """What one client may hold. ``max_line_bytes`` is the request line (longer: 414 ``uri_too_long``)."""

    header_timeout_s: float = 10.0   # from connect (or the end of the last response) to the end of the headers
    body_timeout_s: float = 15.0     # from the end of the headers to the end of the body
    keepalive_timeout_s: float = 15.0  # idle between requests on one connection
    max_connections: int = 256       # open connections; more are answered 503 and closed
    max_line_bytes: int = 8190
    max_field_bytes: int = 8190
    max_headers: int = 100


LIMITS = web.AppKey("host_limits", HostLimits)
LIMITS_BODY = web.AppKey("max_body", int)
T0 = web.RequestKey("t0", float)
_CODE_IN_URL = re.compile(r"(?i)([?&;]code=)[^&#\s'\"\\]*")


def redact(text: str) -> str:
    """Function keys out of anything that may be logged: ``code=<key>`` in URLs becomes ``code=<redacted>``."""
    return _CODE_IN_URL.sub(r"\1<redacted>", text)


class _RedactFilter(logging.Filter):
    """Defence in depth on aiohttp's own loggers: message, arguments and traceback redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = redact(record.getMessage())
            if record.exc_info:
                msg += "\n" + redact("".join(traceback.format_exception(*record.exc_info)))
                record.exc_info, record.exc_text = None, None
            record.msg, record.args = msg, ()
        except Exception:  # a filter must never drop or break a log record
            pass
        return True


def _install_redaction() -> None:
    for name in ("aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.internal"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _RedactFilter) for f in lg.filters):
            lg.addFilter(_RedactFilter())


def route_prefix(host_json: Path) -> str:
    try:
        cfg = json.loads(host_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "api"
    prefix = cfg.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return prefix.strip("/")


_FUNCTIONS: dict[int, list] = {}
BIND_WARM_TIMEOUT_S = 900.0  # a first run builds the sample index


def functions_of(fapp: Any) -> list:
    """``fapp.get_functions()``, cached: the SDK refuses a second call on the same app."""
    if id(fapp) not in _FUNCTIONS:
        _FUNCTIONS[id(fapp)] = fapp.get_functions()
    return _FUNCTIONS[id(fapp)]


# ------------------------------------------------------------------ errors
def _request_id(headers: Any) -> str:
    try:
        return (headers.get("x-request-id", "") or "")[:64] or uuid.uuid4().hex
    except Exception:
        return uuid.uuid4().hex


def _error_headers(err: ApiError, rid: str, t0: float) -> dict[str, str]:
    headers = {k: v for k, v in err.headers.items() if k.lower() != "content-type"}
    headers["X-Request-Id"] = rid
    headers["X-Process-Time"] = f"{(time.perf_counter() - t0) * 1000:.2f}ms"
    return headers


def error_response(err: ApiError, request: web.BaseRequest | None = None, *, t0: float | None = None,
                   close: bool = False) -> web.Response:
    """The JSON error contract for an answer the host makes itself."""
    headers = request.headers if request is not None else {}
    t0 = t0 if t0 is not None else (request.get(T0) if request is not None else None) or time.perf_counter()
    resp = web.Response(status=err.status, body=json.dumps(err.body()).encode(), content_type="application/json",
                        headers=_error_headers(err, _request_id(headers), t0))
    if close:
        resp.force_close()
    return resp


def _raw_error(err: ApiError) -> bytes:
    """A whole HTTP/1.1 response for the moments when there is no request object (cap, header timeout)."""
    body = json.dumps(err.body()).encode()
    lines = [f"HTTP/1.1 {err.status} {HTTPStatus(err.status).phrase}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in _error_headers(err, uuid.uuid4().hex, time.perf_counter()).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _http_exception_error(exc: web.HTTPException, request: web.Request) -> ApiError:
    if exc.status == 404:
        return ApiError(404, "not_found", f"no function at {request.path}")
    if exc.status == 405:
        allow = exc.headers.get("Allow", "")
        return ApiError(405, "method_not_allowed", f"{request.method} is not allowed here; allowed: {allow}",
                        headers={"Allow": allow})
    if exc.status == 413:
        return payload_too_large(request.app[LIMITS_BODY])
    code = HTTPStatus(exc.status).phrase.lower().replace(" ", "_").replace("-", "_")
    return ApiError(exc.status, code, exc.reason or code)


def _parser_error(exc: BaseException | None) -> ApiError:
    if isinstance(exc, LineTooLong):  # the request line has its own check (414) before the parser
        return ApiError(400, "header_too_large", "a request header is longer than the host accepts")
    text = str(getattr(exc, "message", "") or exc or "")
    if "Too many headers" in text:
        return ApiError(400, "too_many_headers", "the request has more headers than the host accepts")
    if "Content-Length" in text and "Transfer-Encoding" in text:
        return ApiError(400, "invalid_framing", "send either Content-Length or Transfer-Encoding, not both")
    if "Content-Length" in text:
        return ApiError(400, "invalid_content_length", "the Content-Length header is not a valid length")
    return ApiError(400, "invalid_http", "the request is not valid HTTP/1.1")


# ------------------------------------------------------------- the protocol
class _HostProtocol(web.RequestHandler):
    """aiohttp's connection handler with the host's limits and JSON errors.

    aiohttp answers parser errors itself, before any middleware (aio-libs/aiohttp#3287, #6463): its
    ``handle_error`` is the one place to turn them into the error contract. The connection cap and
    the header timeout live here because no request object exists yet when they apply."""

    def __init__(self, manager: Any, *, limits: HostLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._host = manager
        self._limits = limits
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._line_len = 0
        self._line_done = False
        self._seen = 0
        self._payload: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self._host.connections) >= self._limits.max_connections:
            self._refused = True
            try:
                transport.write(_raw_error(ApiError(503, "too_many_connections",
                                                    "the host is at its connection limit; retry shortly",
                                                    headers={"Retry-After": "1"})))
            finally:
                transport.close()
            return
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self._loop.call_later(self._limits.header_timeout_s, self._headers_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self._request_count == self._seen and self.transport is not None:  # headers still incomplete
            log.info("closing a connection that sent no complete headers within %.0fs", self._limits.header_timeout_s)
            try:
                self.transport.write(_raw_error(ApiError(
                    408, "request_timeout", f"the request headers did not arrive within "
                                            f"{self._limits.header_timeout_s:g}s")))
            finally:
                self.force_close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._line_done and self._payload is not None and self._payload.is_eof():
            self._line_len, self._line_done, self._payload = 0, False, None  # the next request line starts
        if not self._line_done:  # the request line's length (CRLF excluded): over the limit is a 414
            end = data.find(b"\n")
            self._line_len += len(data) if end < 0 else end - (end > 0 and data[end - 1:end] == b"\r")
            self._line_done = end >= 0
            if self._line_len > self._limits.max_line_bytes and self.transport is not None:
                log.info("refused a request line longer than %d bytes (414)", self._limits.max_line_bytes)
                self.transport.write(_raw_error(ApiError(
                    414, "uri_too_long", f"the request line is longer than {self._limits.max_line_bytes} bytes")))
                self.force_close()
                return
        super().data_received(data)
        if self._request_count != self._seen:  # a message's headers are complete
            self._seen = self._request_count
            self._cancel_header_timer()
            self._line_done = True  # the body follows: not a request line
            self._payload = self._messages[-1][1] if self._messages else None

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        t0 = time.perf_counter()
        if request.writer.output_size > 0:  # a response already started: only closing is left
            raise ConnectionError("response already started; closing the connection")
        if status == 400:
            err = _parser_error(exc)
            log.info("HTTP parser refused a request: %d %s (%s)", err.status, err.code,
                     redact(type(exc).__name__ if exc else "no detail"))
        elif status == 504:
            err = ApiError(504, "deadline_exceeded", "the request did not finish within its deadline")
        else:
            detail = "".join(traceback.format_exception(exc)) if exc is not None else "no exception"
            log.error("host error %d: %s", status, redact(detail))
            err = ApiError(500, "internal_error", "unexpected error in the local host")
        return error_response(err, t0=t0, close=True)


class _HostServer(web.Server):
    def __init__(self, *args: Any, limits: HostLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def __call__(self) -> web.RequestHandler:
        return _HostProtocol(self, loop=self._loop, limits=self.limits, **self._kwargs)


class HostRunner(web.AppRunner):
    """An ``AppRunner`` whose connections follow the host's limits and error contract."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _HostServer(server.request_handler, request_factory=server.request_factory,
                           handler_cancellation=server.handler_cancellation, loop=server._loop,
                           limits=self.app[LIMITS], **server._kwargs)



# ------------------------------------------------------------------ the app
def _key_error(request: web.BaseRequest, keys: frozenset[str]) -> ApiError | None:
    """A present header is authoritative, even empty; ``?code=`` counts only without the header."""
    if KEY_HEADER in request.headers:
        given = request.headers[KEY_HEADER]
    elif "code" in request.query:
        given = request.query["code"]
    else:
        return unauthorized()
    if not given or given not in keys:
        return ApiError(401, "unauthorized", "the function key is not valid")
    return None


class LoopMonitor:
    """A loop-lag probe: a task that sleeps ``interval_s`` and records how late it wakes. A wake-up later
    than ``threshold_s`` means something held the event loop that long: a callback, another thread
    holding the GIL, or the machine not running the process at all (other load). The CPU time the
    process used meanwhile tells the last apart: ``max_busy_stall`` counts a stall only as far as the
    process was busy during it (min of the stall and the process's CPU time), what this process did."""

    def __init__(self, interval_s: float = 0.005, threshold_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.threshold_s = threshold_s
        self.max_stall_s = 0.0
        self.max_busy_stall_s = 0.0
        self.max_loop_cpu_s = 0.0  # the loop thread's own CPU during a stall: callbacks computing
        self.stalls: list[float] = []
        self.busy_stalls: list[float] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            if loop.get_debug():  # PYTHONASYNCIODEBUG=1: asyncio also names each slow callback
                loop.slow_callback_duration = self.threshold_s
            self._task = loop.create_task(self._run(), name="loop-monitor")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t, cpu, own = loop.time(), time.process_time(), time.thread_time()
            await asyncio.sleep(self.interval_s)
            stall = loop.time() - t - self.interval_s
            busy = min(stall, time.process_time() - cpu)
            self.max_loop_cpu_s = max(self.max_loop_cpu_s, min(stall, time.thread_time() - own))
            self.max_stall_s = max(self.max_stall_s, stall)
            self.max_busy_stall_s = max(self.max_busy_stall_s, busy)
            if stall > self.threshold_s:
                self.stalls.append(stall)
                if busy > self.threshold_s:
                    self.busy_stalls.append(busy)
                log.warning("event loop held for %.0f ms (process busy %.0f ms of it)", stall * 1000, busy * 1000)

    def report(self, reset: bool = False) -> dict[str, Any]:
        out = {"max_stall_ms": round(self.max_stall_s * 1000, 1), "stalls_over_threshold": len(self.stalls),
               "max_busy_stall_ms": round(self.max_busy_stall_s * 1000, 1),
               "max_loop_cpu_stall_ms": round(self.max_loop_cpu_s * 1000, 1),
               "busy_stalls_over_threshold": len(self.busy_stalls), "threshold_ms": self.threshold_s * 1000}
        if reset:
            self.max_stall_s = self.max_busy_stall_s = self.max_loop_cpu_s = 0.0
            self.stalls, self.busy_stalls = [], []
        return out

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


def build_app(module: str = "function_app", *, settings: Settings | None = None,
              host_json: Path | None = None, warm_up: bool = True, wait_warm: bool = False,
              limits: HostLimits | None = None, loop_monitor: LoopMonitor | None = None) -> web.Application:
    """``warm_up``: start loading the index, catalog and city table at start-up, not on the first request
    (False is the Functions host's behaviour). ``wait_warm``: start listening only once warm (a worker
    that joins a shared port). ``loop_monitor``: run it, and answer ``GET /_host/loop`` (anonymous; the
    worst stall so far, reset by ``?reset=1``) for cold-start tests and benches.
    Serve it with :class:`HostRunner` (or :func:`serve`)."""
    settings = settings or Settings.from_env()
    limits = limits or HostLimits()
    _install_redaction()
    fapp = importlib.import_module(module).app
    prefix = route_prefix(host_json or PROJECT_ROOT / "host.json")
    keys = settings.keys
    max_body = settings.max_body_bytes

    @web.middleware
    async def contract(request: web.Request, handler: Any) -> web.StreamResponse:
        request[T0] = time.perf_counter()
        try:
            return await handler(request)
        except web.HTTPException as exc:  # the router's 404/405 and aiohttp's own refusals
            return error_response(_http_exception_error(exc, request), request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the handlers answer their own errors; this is the last line
            log.error("local host failed on %s %s: %s", request.method, request.path,
                      redact("".join(traceback.format_exception(exc))))
            return error_response(ApiError(500, "internal_error", "unexpected error in the local host"), request)

    app = web.Application(client_max_size=max(4 * max_body, 1 << 20), middlewares=[contract], handler_args={
        "keepalive_timeout": limits.keepalive_timeout_s, "max_line_size": limits.max_line_bytes,
        "max_field_size": limits.max_field_bytes, "max_headers": limits.max_headers})
    app[LIMITS] = limits
    app[LIMITS_BODY] = max_body

    def precheck(request: web.BaseRequest, needs_key: bool) -> ApiError | None:
        if needs_key and (err := _key_error(request, keys)) is not None:
            return err
        if (request.content_length or 0) > max_body:
            return payload_too_large(max_body)
        return None

    async def read_body(request: web.Request) -> bytes:
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                return await request.read()
        except TimeoutError:
            raise ApiError(408, "request_timeout",
                           f"the request body did not arrive within {limits.body_timeout_s:g}s") from None
        except web.HTTPRequestEntityTooLarge:
            raise payload_too_large(max_body) from None
        except RequestPayloadError as exc:
            encoding = request.headers.get("Content-Encoding", "")
            if encoding and isinstance(exc.__cause__, ContentEncodingError):
                raise ApiError(400, "invalid_content_encoding",
                               f"the body is not valid {encoding[:40]} (Content-Encoding)") from None
            raise ApiError(400, "invalid_body", "the request body could not be read") from None

    async def send_and_close(request: web.Request, resp: web.Response) -> web.Response:
        """Answer now and close: the client's unread body (or its promise of one) is not waited for."""
        resp.force_close()
        await resp.prepare(request)
        await resp.write_eof()
        request.protocol.force_close()
        return resp

    for fn in functions_of(fapp):
        trigger = fn.get_trigger()
        if type(trigger).__name__ != "HttpTrigger":
            continue
        user_fn = fn.get_user_function()
        needs_key = str(getattr(trigger.auth_level, "name", trigger.auth_level)).upper() != "ANONYMOUS"
        methods = [str(getattr(m, "value", m)).upper() for m in (trigger.methods or ["GET", "POST"])]
        path = "/" + "/".join(p for p in (prefix, (trigger.route or fn.get_function_name()).strip("/")) if p)

        async def handler(request: web.Request, user_fn=user_fn, needs_key=needs_key) -> web.StreamResponse:
            if (err := precheck(request, needs_key)) is not None:
                return error_response(err, request)
            try:
                body = await read_body(request)
            except ApiError as err:
                resp = error_response(err, request)
                return await send_and_close(request, resp) if err.status == 408 else resp
            params = dict(request.query)
            params.pop("code", None)
            req = func.HttpRequest(method=request.method, url=redact(str(request.url)),
                                   headers={k: v for k, v in request.headers.items() if k.lower() != KEY_HEADER},
                                   params=params, route_params=dict(request.match_info), body=body)
            result = user_fn(req)
            if asyncio.iscoroutine(result):
                result = await result
            headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
            return web.Response(status=result.status_code, body=result.get_body(), headers=headers)

        async def expect(request: web.Request, needs_key=needs_key) -> web.StreamResponse | None:
            """``Expect: 100-continue``: refuse (401, 413) before inviting the body."""
            request[T0] = time.perf_counter()
            if request.version != HttpVersion11:
                return None
            if request.headers.get("Expect", "").lower() != "100-continue":
                return await send_and_close(request, error_response(
                    ApiError(417, "expectation_failed", "only Expect: 100-continue is supported"), request))
            if (err := precheck(request, needs_key)) is not None:
                return await send_and_close(request, error_response(err, request))
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
            return None

        for method in methods:
            app.router.add_route(method, path, handler, expect_handler=expect)
        log.info("route %-6s %s%s", ",".join(methods), path, "" if needs_key else " (anonymous)")

    if loop_monitor is not None:
        async def loop_report(request: web.Request) -> web.Response:
            return web.json_response(loop_monitor.report(reset=request.query.get("reset") == "1"))

        app.router.add_get("/_host/loop", loop_report)

    async def on_startup(_: web.Application) -> None:
        if loop_monitor is not None:
            loop_monitor.start()
        if warm_up:
            from core.runtime import get_runtime

            rt = get_runtime()
            rt.ensure_warming()
            if wait_warm and not await rt.warmed(BIND_WARM_TIMEOUT_S):
                log.warning("not fully warm after %.0fs; serving anyway", BIND_WARM_TIMEOUT_S)

    async def on_cleanup(_: web.Application) -> None:
        import core.runtime as rt

        if loop_monitor is not None:
            await loop_monitor.stop()
        if rt._runtime is not None:
            await rt._runtime.close()
            rt._runtime = None

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve(app: web.Application, host: str, port: int, *, reuse_port: bool = False,
                stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT)."""
    runner = HostRunner(app)
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    try:
        await web.TCPSite(runner, host, port, reuse_port=True if reuse_port else None).start()
        log.info("serving on http://%s:%d (function key: the FUNCTION_KEYS setting)", host, port)
        await stop.wait()
    finally:
        await runner.cleanup()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: a worker gets SIGTERM when its supervisor dies, whatever killed it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
def supervise(args: argparse.Namespace) -> int:
    """``--workers N``: N processes of this host on one port (SO_REUSEPORT: the kernel spreads the
    connections), each with its own runtime and event loop, as the Functions host runs
    FUNCTIONS_WORKER_PROCESS_COUNT workers. A worker listens once warm. SIGTERM/SIGINT stop them all;
    one exiting stops the others."""
    cmd = [sys.executable, "-m", "core.devhost", "--host", args.host, "--port", str(args.port),
           "--module", args.module, "--reuse-port"] + (["--like-functions-host"] if args.like_functions_host else [])
    procs = [subprocess.Popen(cmd, cwd=PROJECT_ROOT, preexec_fn=_die_with_parent) for _ in range(args.workers)]
    log.info("serving on http://%s:%d with %d worker processes: %s", args.host, args.port, args.workers,
             " ".join(str(p.pid) for p in procs))
    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while not stopping:
        done = [p for p in procs if p.poll() is not None]
        if done:
            code = done[0].returncode or 0
            log.warning("worker %d exited with %s; stopping the others", done[0].pid, done[0].returncode)
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve function_app over HTTP on this machine.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--module", default="function_app")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes sharing the port, each with its own event loop and runtime "
                             "(as FUNCTIONS_WORKER_PROCESS_COUNT in Azure); default 1")
    parser.add_argument("--like-functions-host", action="store_true",
                        help="start nothing until the first request, as the Functions host does (no warm-up "
                             "at start; the first request starts the index, catalog and city table loads)")
    parser.add_argument("--loop-monitor-ms", type=float, default=0.0,
                        help="log every event-loop stall longer than this and serve GET /_host/loop (0: off)")
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # one worker of --workers
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers > 1:
        return supervise(args)
    sys.path.insert(0, str(PROJECT_ROOT))
    monitor = LoopMonitor(threshold_s=args.loop_monitor_ms / 1000) if args.loop_monitor_ms > 0 else None
    app = build_app(args.module, warm_up=not args.like_functions_host,
                    wait_warm=args.reuse_port and not args.like_functions_host, loop_monitor=monitor)
    asyncio.run(serve(app, args.host, args.port, reuse_port=args.reuse_port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
