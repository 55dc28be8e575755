"""A small local host for ``function_app``: the same handlers over real HTTP, no Core Tools.

It reads the routes, methods and auth levels the app declares
(``app.get_functions()``), applies host.json's ``routePrefix``, checks function
keys as Azure does (``x-functions-key`` header or ``?code=``; keys from the
FUNCTION_KEYS setting) and hands each request to the handler as an
``azure.functions.HttpRequest``. Used by the tests, the benchmarks and
``python -m core.devhost`` for a zero-setup local run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import web

from core.errors import ApiError, payload_too_large, unauthorized
from core.settings import PROJECT_ROOT, Settings

log = logging.getLogger("core.devhost")


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


def _error(err: ApiError) -> web.Response:
    return web.Response(status=err.status, body=json.dumps(err.body()).encode(), content_type="application/json")


def build_app(module: str = "function_app", *, settings: Settings | None = None,
              host_json: Path | None = None, warm_up: bool = True, wait_warm: bool = False) -> web.Application:
    """``warm_up``: start loading the index, catalog and city table at start-up, not on the first request.
    ``wait_warm``: start listening only once warm (a worker that joins a shared port)."""
    settings = settings or Settings.from_env()
    fapp = importlib.import_module(module).app
    prefix = route_prefix(host_json or PROJECT_ROOT / "host.json")
    keys = settings.keys
    max_body = settings.max_body_bytes
    app = web.Application(client_max_size=max(4 * max_body, 1 << 20))

    for fn in functions_of(fapp):
        trigger = fn.get_trigger()
        if type(trigger).__name__ != "HttpTrigger":
            continue
        user_fn = fn.get_user_function()
        needs_key = str(getattr(trigger.auth_level, "name", trigger.auth_level)).upper() != "ANONYMOUS"
        methods = [str(getattr(m, "value", m)).upper() for m in (trigger.methods or ["GET", "POST"])]
        path = "/" + "/".join(p for p in (prefix, (trigger.route or fn.get_function_name()).strip("/")) if p)

        async def handler(request: web.Request, user_fn=user_fn, needs_key=needs_key) -> web.StreamResponse:
            params = dict(request.query)
            if needs_key:
                given = request.headers.get("x-functions-key") or params.get("code")
                if given not in keys:
                    return _error(unauthorized())
            try:
                if (request.content_length or 0) > max_body:
                    raise web.HTTPRequestEntityTooLarge(max_size=max_body, actual_size=request.content_length)
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:  # refused before the body is read or parsed
                return _error(payload_too_large(max_body))
            params.pop("code", None)
            req = func.HttpRequest(method=request.method, url=str(request.url), headers=dict(request.headers),
                                   params=params, route_params=dict(request.match_info), body=body)
            result = user_fn(req)
            if asyncio.iscoroutine(result):
                result = await result
            headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
            return web.Response(status=result.status_code, body=result.get_body(), headers=headers)

        for method in methods:
            app.router.add_route(method, path, handler)
        log.info("route %-6s %s%s", ",".join(methods), path, "" if needs_key else " (anonymous)")

    async def on_startup(_: web.Application) -> None:
        if warm_up:
            from core.runtime import get_runtime

            rt = get_runtime()
            rt.ensure_warming()
            if wait_warm and not await rt.warmed(BIND_WARM_TIMEOUT_S):
                log.warning("not fully warm after %.0fs; serving anyway", BIND_WARM_TIMEOUT_S)

    async def on_cleanup(_: web.Application) -> None:
        import core.runtime as rt

        if rt._runtime is not None:
            await rt._runtime.close()
            rt._runtime = None

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


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
           "--module", args.module, "--reuse-port"]
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
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # one worker of --workers
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers > 1:
        return supervise(args)
    sys.path.insert(0, str(PROJECT_ROOT))
    app = build_app(args.module, wait_warm=args.reuse_port)
    log.info("serving on http://%s:%d (function key: the FUNCTION_KEYS setting)", args.host, args.port)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None,
                reuse_port=True if args.reuse_port else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
