"""Cold start as the Functions host runs it: a fresh ``core.devhost --like-functions-host`` process (nothing
starts before the first request), concurrent first requests of every kind, and the host's loop-lag probe.

Fails if the process held its event loop for more than 50 ms at any point of the cold start (counted as
the CPU time the process used during the stall, so that a machine busy with other work does not count),
if any first search or ads request fails, or if Redis is reported down while it is up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time

import aiohttp
import pytest

from bench.harness import fake_claude
from core.settings import PROJECT_ROOT
from tests.fixtures.services import free_port, wait_for_port

KEY = "cold-key"
STALL_LIMIT_MS = 50.0


async def _first_requests(base: str) -> list[tuple[str, int, dict]]:
    async def call(http, kind, method, path, body=None):
        async with http.request(method, base + path, json=body, headers={"x-functions-key": KEY}) as r:
            return kind, r.status, await r.json()

    searches = ["passport renewal", "trouble sleeping", "tax return deadline"]
    ads = ["planning a trip to Lisbon, where to stay?", "my running shoes are worn out"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        return await asyncio.gather(
            *(call(http, "search", "POST", "/api/search", {"query": q}) for q in searches),
            *(call(http, "ads", "POST", "/api/ads", {"thread_name": f"cold-{i}",
                                                     "conversation": [{"role": "user", "content": t}]})
              for i, t in enumerate(ads)),
            call(http, "health", "GET", "/api/health"))


async def _until_warm(base: str) -> dict:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            async with http.get(base + "/api/health") as r:
                health = await r.json()
            if health.get("warm"):
                return health
            await asyncio.sleep(0.1)
    raise AssertionError(f"never warm: {health}")


@pytest.fixture(params=["no-claude", "claude"])
def cold_host(request, mini_bundle, redis_url, tmp_path):
    """A fresh host process that has served nothing yet: (base URL, its log file). With "claude", the
    fake Anthropic server (its own process) is configured, so the SDK's import is part of the cold start."""
    with contextlib.ExitStack() as stack:
        claude = {"ANTHROPIC_API_KEY": ""}
        if request.param == "claude":
            claude = {"ANTHROPIC_API_KEY": "test-key",
                      "ANTHROPIC_BASE_URL": stack.enter_context(fake_claude(0.05))}
        yield from _host(mini_bundle, redis_url, tmp_path, claude)


def _host(mini_bundle, redis_url, tmp_path, extra):
    port = free_port()
    env = {**os.environ, "INDEX_LOCAL_PATH": str(mini_bundle), "REDIS_URL": redis_url, "FUNCTION_KEYS": KEY,
           "REFRESH_INTERVAL_S": "0", "LOCAL_CACHE_DIR": str(tmp_path / "cache"), **extra,
           "HF_HUB_OFFLINE": "1",
           # The first ads wait for the index and then the catalog (embedded at load); on this shared 2-core
           # machine (load average ~20 while measured) that took up to 9 s, more than the default 8 s deadline.
           "REQUEST_DEADLINE_S": "30"}
    env.pop("AZURE_MAPS_KEY", None)
    log = tmp_path / "host.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "core.devhost", "--like-functions-host", "--port", str(port),
                                 "--loop-monitor-ms", str(STALL_LIMIT_MS)], cwd=PROJECT_ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, 120)
            yield f"http://127.0.0.1:{port}", log
        finally:
            proc.terminate()
            proc.wait(20)


async def test_cold_start_holds_the_loop_under_50ms_and_answers_everything(cold_host):
    base, log = cold_host
    t0 = time.perf_counter()
    results = await _first_requests(base)
    first_s = time.perf_counter() - t0
    health = await _until_warm(base)
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/_host/loop") as r:
            loop = await r.json()
    text = log.read_text(errors="replace")
    failed = [(kind, status, body) for kind, status, body in results if kind != "health" and status != 200]
    assert not failed, f"first requests failed after {first_s:.1f}s: {failed}"
    assert all(body.get("ads") is not None for kind, _, body in results if kind == "ads")
    assert loop["max_loop_cpu_stall_ms"] < STALL_LIMIT_MS, f"a callback computed too long: {loop}"
    assert loop["max_busy_stall_ms"] < STALL_LIMIT_MS, f"event loop held: {loop}\n{text[-3000:]}"
    assert health["cache"]["redis"] == "up" and health["cache"].get("redis_ping") is True
    assert "Redis unavailable" not in text and "Redis is back" not in text
