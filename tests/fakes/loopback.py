"""What the fake servers share: serving an aiohttp app on a loopback port and stopping it."""

from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                backlog: int = 1024) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (0: a free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
