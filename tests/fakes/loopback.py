"""What the fake servers share: serving an aiohttp app on a loopback port and stopping it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                backlog: int = 1024) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (0: a free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@dataclass
class ScriptedServer:
    """A fake server on loopback whose next answers a test scripts with ``push(step, ...)``.

    Subclasses build their app in ``start`` and read steps with ``next_step()``; every request they
    receive goes to ``requests``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    requests: list = field(default_factory=list)
    _script: deque = field(default_factory=deque)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def push(self, *steps: dict[str, Any]) -> Self:
        self._script.extend(steps)
        return self

    def next_step(self) -> dict[str, Any] | None:
        return self._script.popleft() if self._script else None

    def reset(self) -> None:
        self._script.clear()
        self.requests.clear()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
