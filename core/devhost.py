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
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import web

from core.settings import PROJECT_ROOT, Settings

log = logging.getLogger("core.devhost")
_UNAUTHORIZED = {"error": {"code": "unauthorized",
                           "message": "a function key is required: x-functions-key header or ?code="}}


def route_prefix(host_json: Path) -> str:
    try:
        cfg = json.loads(host_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "api"
    prefix = cfg.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return prefix.strip("/")


_FUNCTIONS: dict[int, list] = {}


def functions_of(fapp: Any) -> list:
    """``fapp.get_functions()``, cached: the SDK refuses a second call on the same app."""
    if id(fapp) not in _FUNCTIONS:
        _FUNCTIONS[id(fapp)] = fapp.get_functions()
    return _FUNCTIONS[id(fapp)]


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload).encode(), content_type="application/json")


def build_app(module: str = "function_app", *, settings: Settings | None = None,
              host_json: Path | None = None, warm_up: bool = True) -> web.Application:
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
                    return _json(401, _UNAUTHORIZED)
            declared = request.content_length
            if declared is not None and declared > max_body:
                return _json(413, {"error": {"code": "payload_too_large",
                                             "message": f"request body is larger than {max_body} bytes"}})
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _json(413, {"error": {"code": "payload_too_large",
                                             "message": f"request body is larger than {max_body} bytes"}})
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

            await get_runtime().warm_up()

    async def on_cleanup(_: web.Application) -> None:
        import core.runtime as rt

        if rt._runtime is not None:
            await rt._runtime.close()
            rt._runtime = None

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve function_app over HTTP on this machine.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--module", default="function_app")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(PROJECT_ROOT))
    app = build_app(args.module)
    log.info("serving on http://%s:%d (function key: the FUNCTION_KEYS setting)", args.host, args.port)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
