"""The two-level cache against a real Redis, including Redis going away and coming back."""

import asyncio
import logging
import os
import signal
import time

import pytest

from core.adapters.cache import Cache, make_redis
from core.settings import Settings
from tests.fixtures.services import RedisProcess


def _cache(url: str, **kw) -> Cache:
    return Cache(make_redis(Settings.from_env({"REDIS_URL": url})), **kw)


async def test_values_round_trip_through_redis_and_are_shared(redis_url):
    a, b = _cache(redis_url), _cache(redis_url)  # two "instances"
    await a.set("t:shared", {"x": [1, 2, "é"]}, 60)
    assert await b.get("t:shared") == {"x": [1, 2, "é"]}
    assert await b.get("t:absent") is None
    await a.close(), await b.close()


async def test_capped_counting_is_atomic_and_sets_a_ttl(redis_url):
    c = _cache(redis_url)
    key = "t:cap:atomic"
    await c.redis.delete(key)
    results = await asyncio.gather(*(c.incr_capped_first([key], cap=10, want=1, ttl_s=100) for _ in range(50)))
    counted = sorted(r[0] for r in results if r[0] is not None)
    assert counted == list(range(1, 11))  # exactly the cap, each count once, under 50 concurrent claims
    assert int(await c.redis.get(key)) == 10
    ttl = await c.redis.ttl(key)
    assert 0 < ttl <= 100
    await c.close()


async def test_without_redis_the_local_level_still_serves(caplog):
    c = Cache(None)
    await c.set("k", {"v": 1}, 10)
    assert await c.get("k") == {"v": 1}
    assert [(await c.incr_capped_first(["n"], cap=2, want=1, ttl_s=10))[0] for _ in range(3)] == [1, 2, None]
    assert c.status()["redis"] == "not configured"


async def test_redis_outage_degrades_logs_once_and_recovers(caplog):
    server = RedisProcess().start()
    c = _cache(server.url, retry_after_s=0.2)
    await c.set("k1", 1, 60)
    c._lru.clear()
    assert await c.get("k1") == 1
    server.stop()
    caplog.set_level(logging.INFO, logger="core.cache")
    for i in range(20):  # every call still answers, from the local level
        await c.set(f"down{i}", i, 60)
        assert await c.get(f"down{i}") == i
        assert await c.get("never-set") is None
    assert c.status()["redis"] == "down"
    assert sum("Redis unavailable" in r.message for r in caplog.records) == 1
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # one line for the outage
    server.start()  # same port
    await asyncio.sleep(0.3)
    for _ in range(20):
        await c.set("after", "back", 60)
        if c.redis_up:
            break
        await asyncio.sleep(0.1)
    assert c.redis_up
    assert await c.redis.get("after") is not None  # written to Redis again
    assert any("Redis is back" in r.message for r in caplog.records)
    assert c.stats["outages"] == 1
    await c.close()
    server.stop()


def _hold_the_loop(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_cpu_bound_burst_is_slow_not_down(redis_url, caplog):
    """200 requests that each hold the event loop for 30 ms: Redis calls exceed the 250 ms operation
    timeout (the loop cannot read the replies in time), yet Redis is up and must stay up."""
    c = _cache(redis_url, op_timeout_s=0.25)
    caplog.set_level(logging.INFO, logger="core.cache")

    async def request(i: int) -> None:
        await c.get(f"t:burst:miss:{i}")
        _hold_the_loop(0.03)
        await c.set(f"t:burst:{i}", i, 60)

    await asyncio.gather(*(request(i) for i in range(200)))
    assert c.stats["timeouts"] >= 3 and c.stats["probes"] >= 1  # the burst did make calls time out
    assert c.stats["probes_failed"] == 0 and c.stats["outages"] == 0
    assert c.status()["redis"] == "up"
    assert not [r for r in caplog.records if "Redis unavailable" in r.message or "is back" in r.message]
    assert await c.get("t:burst:199") == 199  # and it still serves
    await c.close()


async def test_hung_redis_is_down_after_timeouts_confirmed_by_a_probe(caplog):
    """A Redis that accepts but never answers (SIGSTOP) is a real outage: repeated timeouts, a failed probe,
    one WARNING; after SIGCONT, one INFO line and shared caching again."""
    server = RedisProcess().start()
    c = _cache(server.url, op_timeout_s=0.1, probe_timeout_s=0.5, retry_after_s=0.2)
    await c.set("k", 1, 60)
    caplog.set_level(logging.INFO, logger="core.cache")
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        for i in range(40):
            assert await c.get(f"hung{i}") is None  # each call answers within its timeout
            if not c.redis_up:
                break
            await asyncio.sleep(0.05)
        assert not c.redis_up and c.stats["probes_failed"] == 1
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    for _ in range(40):
        await c.set("after", "back", 60)
        if c.redis_up:
            break
        await asyncio.sleep(0.1)
    assert c.redis_up
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis unavailable" in warnings[0].message
    assert sum("Redis is back" in r.message for r in caplog.records) == 1
    await c.close()
    server.stop()


@pytest.mark.parametrize("ttl", [1])
async def test_entries_expire_in_redis(redis_url, ttl):
    c = _cache(redis_url)
    await c.set("t:exp", "v", ttl)
    assert await c.redis.ttl("t:exp") <= ttl
    await c.close()
