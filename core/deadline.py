"""A request deadline: every outbound call of a request runs inside what is left of it."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, TypeVar

T = TypeVar("T")


class DeadlineExceeded(asyncio.TimeoutError):
    pass


class Deadline:
    __slots__ = ("expires_at", "budget_s")

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.expires_at = time.monotonic() + budget_s

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def cap(self, timeout_s: float, reserve_s: float = 0.0) -> float:
        """The smaller of ``timeout_s`` and what is left of the deadline after ``reserve_s``."""
        return max(0.0, min(timeout_s, self.remaining() - reserve_s))

    async def run(self, aw: Awaitable[T], timeout_s: float | None = None, reserve_s: float = 0.0) -> T:
        """Await ``aw`` for at most ``timeout_s`` and never past the deadline (minus ``reserve_s``)."""
        limit = self.cap(timeout_s if timeout_s is not None else self.budget_s, reserve_s)
        if limit <= 0:
            if asyncio.iscoroutine(aw):
                aw.close()
            raise DeadlineExceeded("request deadline reached")
        try:
            return await asyncio.wait_for(aw, limit)
        except asyncio.TimeoutError as exc:
            raise DeadlineExceeded(f"timed out after {limit:.3f}s") from exc
