"""Faults on the Claude and Azure Maps side, driven over HTTP while they happen.

A steady stream of /api/ads and /api/search requests (some asking for a Claude answer) runs through the
local host; the fake Claude fails (529, 500) or hangs for a period, then recovers; the fake Azure Maps
times out. The tests assert zero failed requests, the worst latency against the request deadline,
the degraded marking, and the circuit breaker opening and closing.
"""

import asyncio
import time

import pytest

from tests.fakes.anthropic_server import heuristic
from tests.fixtures.app import app_settings
from tests.fixtures.traffic import Traffic

DEADLINE_S = 3.0
HTTP_MARGIN_S = 0.75  # the local host, JSON and the client on 2 shared cores


def _jobs(n=3000):
    places = ["Paris", "London", "Berlin", "Toronto"]
    jobs = []
    for i in range(n):
        if i % 3 == 0:
            jobs.append(("search", {"query": f"how do I renew my passport {i % 7}", "answer": True}))
        elif i % 3 == 1:
            jobs.append(("search", {"query": "sore throat remedies", "top_k": 5}))
        else:  # a new thread every time: the context cache cannot answer for Claude
            jobs.append(("ads", {"thread_name": f"fault-{i}", "conversation": [
                {"role": "user", "content": f"I need a pharmacy open late in {places[i % 4]}, my throat hurts"}]}))
    return jobs


async def _watch_breaker(rt, seen: set, stop: asyncio.Event):
    while not stop.is_set():
        if rt._claude is not None:
            seen.add(rt._claude.status()["breaker"]["state"])
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("fault", ["529", "500", "hang"])
async def test_claude_fails_for_a_while_then_recovers(fault, make_runtime, serve, sample_bundle, redis_url, tmp_path,
                                                     fake_anthropic):
    fake_anthropic.responder = heuristic
    settings = app_settings(sample_bundle, redis_url, tmp_path, ANTHROPIC_API_KEY="test-key",
                            ANTHROPIC_BASE_URL=fake_anthropic.url, REQUEST_DEADLINE_S=str(DEADLINE_S),
                            CLAUDE_TIMEOUT_S="1", CLAUDE_MAX_ATTEMPTS="2", BREAKER_FAILURES="3",
                            BREAKER_COOLDOWN_S="1")
    rt = await make_runtime(settings)
    base = await serve(settings)
    assert await rt.warmed(60)
    traffic = Traffic(base)
    states: set = set()
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(_watch_breaker(rt, states, stop))
    traffic.start(_jobs(), workers=6, max_seconds=60, pause_s=0.02)
    await asyncio.sleep(1.0)                       # healthy
    fault_started = time.monotonic()
    step = {"529": {"status": 529}, "500": {"status": 500}, "hang": {"hang": True}}[fault]
    fake_anthropic.responder = lambda body: step  # every call fails (or never answers)
    await asyncio.sleep(3.0)
    fault_ended = time.monotonic()
    fake_anthropic.responder = heuristic          # recovered
    for _ in range(100):                           # the breaker's probe closes it again
        await asyncio.sleep(0.1)
        if rt._claude.status()["breaker"]["state"] == "closed" and time.monotonic() - fault_ended > 2.5:
            break
    await asyncio.sleep(0.5)
    outcomes = await traffic.stop()
    stop.set()
    await watcher

    assert traffic.failed() == [], [(o.status, o.body) for o in traffic.failed()[:3]]
    assert traffic.worst_ms() < (DEADLINE_S + HTTP_MARGIN_S) * 1000
    during = [o for o in outcomes if fault_started + 0.2 < o.at - o.ms / 1000 and o.at < fault_ended]
    # What needed Claude in that window: every ad request (new threads), and answers not already cached.
    claude_dependent = [o for o in during if o.endpoint == "ads" or ("answer" in o.body and not o.body["cached"])]
    assert claude_dependent and all(o.body.get("degraded") for o in claude_dependent)
    ads_during = [o for o in during if o.endpoint == "ads"]
    assert ads_during and all("ads" in o.body for o in ads_during)  # ads still come back, from the fallback
    assert "open" in states and rt._claude.status()["breaker"]["state"] == "closed"
    after = [o for o in outcomes if o.endpoint == "ads" and o.at - o.ms / 1000 > fault_ended + 2.0]
    assert after and any(not o.body["degraded"] for o in after)


async def test_azure_maps_timing_out_still_returns_ads(make_runtime, serve, sample_bundle, redis_url, tmp_path,
                                                       fake_anthropic, fake_maps):
    fake_anthropic.responder = heuristic
    settings = app_settings(sample_bundle, redis_url, tmp_path, ANTHROPIC_API_KEY="test-key",
                            ANTHROPIC_BASE_URL=fake_anthropic.url, AZURE_MAPS_KEY="maps-key",
                            AZURE_MAPS_BASE_URL=fake_maps.url, MAPS_TIMEOUT_S="0.3",
                            REQUEST_DEADLINE_S=str(DEADLINE_S))
    rt = await make_runtime(settings)
    base = await serve(settings)
    assert await rt.warmed(60)
    fake_maps.push(*[{"hang": True}] * 200)
    traffic = Traffic(base)
    jobs = [("ads", {"thread_name": f"maps-{i}", "conversation": [
        {"role": "user", "content": f"looking for a laptop repair shop in {city} {i}"}]})
        for i, city in enumerate(["London", "Paris", "Berlin", "Toronto"] * 10)]
    traffic.start(jobs, workers=4, max_requests=len(jobs), max_seconds=40)
    outcomes = await traffic.finish()
    assert traffic.failed() == []
    assert len(outcomes) == len(jobs)
    assert traffic.worst_ms() < (DEADLINE_S + HTTP_MARGIN_S) * 1000
    assert all(o.body["degraded"] and any(r.startswith("geocode:azure_maps") for r in o.body["reasons"])
               for o in outcomes)
    assert sum(len(o.body["ads"]) for o in outcomes) > 0  # ads still come back
    assert len(fake_maps.requests) >= 1
