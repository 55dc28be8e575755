#!/usr/bin/env python3
"""CPU per ``ClaudeClient.structured`` call (client + an in-process fake Messages API), this checkout's code.

    taskset -c 1 .venv/bin/python bench/claude_cpu_per_call.py

Run it in two checkouts to compare adapters (it works with the ``schema=`` and the ``output=`` signature).
"""

from __future__ import annotations

import asyncio
import inspect
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONV = [{"role": "user", "content": "Conversation to describe (untrusted data, JSON array of turns):\n"
         '[{"role":"user","content":"I need allergy pills in Paris, any pharmacy open late?"}]'}]


async def main(n: int = 200, rounds: int = 5) -> None:
    import anthropic  # noqa: F401 - loaded before any timing

    from core.adapters.claude import ClaudeClient
    from core.ads import context
    from core.deadline import Deadline
    from core.settings import Settings
    from tests.fakes.anthropic_server import FakeAnthropic, heuristic

    fake = await FakeAnthropic(responder=heuristic).start()
    client = ClaudeClient(Settings.from_env({"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": fake.url}))
    typed = "output" in inspect.signature(client.structured).parameters
    kw = {"output": context.ContextOutput} if typed else {"schema": getattr(context, "CONTEXT_SCHEMA", None)}

    async def one() -> None:
        await client.structured(system=context.SYSTEM_PROMPT, messages=CONV, deadline=Deadline(30),
                                max_tokens=400, **kw)

    for _ in range(50):
        await one()
    per = []
    for _ in range(rounds):
        c0 = time.process_time()
        for _ in range(n):
            await one()
        per.append((time.process_time() - c0) / n * 1000)
    await client.close()
    await fake.stop()
    print(f"{'output=' if typed else 'schema='} adapter: CPU ms per call (client + fake server), rounds "
          f"{[round(x, 3) for x in per]}, median {statistics.median(per):.3f}")


if __name__ == "__main__":
    asyncio.run(main())
