"""Single flight: identical concurrent work is done once and shared.

The work runs as its own task, so a caller that gives up (its deadline passed,
it was cancelled) does not cancel it for the others; each caller waits for it
within its own deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from core.deadline import Deadline


class SingleFlight:
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task] = {}
        self.shared = 0  # how many callers joined work already under way

    def __len__(self) -> int:
        return len(self._inflight)

    async def run(self, key: str, work: Callable[[], Awaitable[Any]], deadline: Deadline | None = None) -> Any:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._inflight[key] = task
            task.add_done_callback(lambda t, k=key: self._done(k, t))
        else:
            self.shared += 1
        waiter = asyncio.shield(task)
        return await (deadline.run(waiter) if deadline is not None else waiter)

    def _done(self, key: str, task: asyncio.Task) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody awaited any more is not reported as lost
