"""Cold start as the Functions host does it: first-request latency and the worst event-loop stall, cold and warm.

Each round is a fresh process of ``python -m core.devhost --like-functions-host --loop-monitor-ms 50``
(nothing starts until the first request, as in Azure) over a private Redis, with the offline geocoder and
no Claude (keyword context). Per round:

* listen: process start until the port accepts (imports and function indexing);
* cold: concurrent first requests (searches, ads, a health) fired at once; the latency of each kind, the
  worst loop stall the host's loop-lag probe saw during them, every status, and health's Redis state;
* warm: once health says warm, the same mix with new texts: latencies and the worst stall.

It prints medians over the rounds and the worst of each across rounds, and counts "Redis unavailable" lines.
``--asyncio-debug`` runs the host with PYTHONASYNCIODEBUG=1 and prints asyncio's slow-callback lines
(which callback held the loop), for diagnosis; its overhead inflates the figures.

    .venv/bin/python -m bench.bench_cold_start --index /tmp/host-idx/bundle --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import KEY, ROOT, private_redis, process
from tests.fakes.processes import free_port, wait_for_port

SEARCHES = ["trouble falling asleep", "renew a passport abroad", "python virtual environment", "tax deadline"]
ADS = ["I'm planning a trip to Lisbon next month, where should I stay?",
       "My running shoes are worn out, I run about 30 km a week"]


def _ads_body(text: str, thread: str) -> dict[str, Any]:
    return {"thread_name": thread, "conversation": [{"role": "user", "content": text}]}


async def _one(http: aiohttp.ClientSession, method: str, url: str, body: Any | None) -> tuple[int, float]:
    t0 = time.perf_counter()
    async with http.request(method, url, json=body, headers={"x-functions-key": KEY}) as r:
        await r.read()
        return r.status, (time.perf_counter() - t0) * 1000


async def _mix(base: str, salt: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        calls = [("search", "POST", f"{base}/api/search", {"query": f"{q} {salt}", "top_k": 5}) for q in SEARCHES]
        calls += [("ads", "POST", f"{base}/api/ads", _ads_body(f"{t} {salt}", f"t-{salt}-{i}"))
                  for i, t in enumerate(ADS)]
        calls += [("health", "GET", f"{base}/api/health", None)]
        results = await asyncio.gather(*(_one(http, m, u, b) for _, m, u, b in calls))
        async with http.get(f"{base}/_host/loop", params={"reset": "1"}) as r:
            loop = await r.json()
        async with http.get(f"{base}/api/health") as r:
            health = await r.json()
    out: dict[str, Any] = {"statuses": [s for (k, *_), (s, _) in zip(calls, results) if k != "health"],
                           "stall_ms": loop["max_stall_ms"], "busy_stall_ms": loop["max_busy_stall_ms"],
                           "stalls_over_50ms": loop["stalls_over_threshold"],
                           "redis": health.get("cache", {}).get("redis"), "warm": health.get("warm")}
    for kind in ("search", "ads", "health"):
        out[f"{kind}_ms"] = max(ms for (k, *_), (_, ms) in zip(calls, results) if k == kind)
    return out


async def _wait_warm(base: str, timeout_s: float) -> tuple[float, float]:
    """Until health says warm; the worst loop stall until then (the rest of the cold start)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"{base}/api/health") as r:
                warm = (await r.json()).get("warm")
            if warm:
                async with http.get(f"{base}/_host/loop", params={"reset": "1"}) as r:
                    rep = await r.json()
                    return rep["max_stall_ms"], rep["max_busy_stall_ms"]
            await asyncio.sleep(0.2)
    raise TimeoutError("the host did not get warm")


CONTROL = """
import asyncio, json, sys
from core.devhost import LoopMonitor
async def main():
    m = LoopMonitor(); m.start()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(json.dumps(m.report()))
asyncio.run(main())
"""


def one_round(index: Path, redis_url: str, debug: bool, i: int, deadline_s: float | None = None) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="cold-"))
    env = {"INDEX_LOCAL_PATH": str(index), "REDIS_URL": redis_url, "FUNCTION_KEYS": KEY, "REFRESH_INTERVAL_S": "0",
           "LOCAL_CACHE_DIR": str(tmp / "cache"), "ANTHROPIC_API_KEY": "", "HF_HUB_OFFLINE": "1",
           "PYTHONASYNCIODEBUG": "1" if debug else ""}
    if deadline_s:
        env["REQUEST_DEADLINE_S"] = str(deadline_s)
    log = tmp / "host.log"
    control = subprocess.Popen([sys.executable, "-c", CONTROL], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)  # an idle loop beside it: the machine's own stalls
    t0 = time.perf_counter()
    with process([sys.executable, "-m", "core.devhost", "--like-functions-host", "--port", str(port),
                  "--loop-monitor-ms", "50"], env, log):
        wait_for_port(port, 60)
        listen_ms = (time.perf_counter() - t0) * 1000
        cold = asyncio.run(_mix(base, f"c{i}"))
        stall, busy = asyncio.run(_wait_warm(base, 120))
        cold["stall_ms"], cold["busy_stall_ms"] = max(cold["stall_ms"], stall), max(cold["busy_stall_ms"], busy)
        warm = asyncio.run(_mix(base, f"w{i}"))
    control_out, _ = control.communicate("", timeout=30)
    text = log.read_text(errors="replace")
    slow = [line for line in text.splitlines() if "Executing" in line and "took" in line]
    return {"listen_ms": listen_ms, "cold": cold, "warm": warm,
            "control_stall_ms": json.loads(control_out)["max_stall_ms"],
            "redis_down_lines": text.count("Redis unavailable"),
            "slow_callbacks": slow}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--index", type=Path, default=ROOT / "var" / "index", help="a built index bundle")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--asyncio-debug", action="store_true")
    p.add_argument("--deadline-s", type=float, help="REQUEST_DEADLINE_S of the host (default: the app's, 8 s)")
    p.add_argument("--json", type=Path, help="write every round here")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rounds = []
    with private_redis() as redis_url:
        for i in range(args.rounds):
            r = one_round(args.index, redis_url, args.asyncio_debug, i, args.deadline_s)
            rounds.append(r)
            print(f"round {i + 1}: listen {r['listen_ms']:.0f} ms | cold: search {r['cold']['search_ms']:.0f} ms, "
                  f"ads {r['cold']['ads_ms']:.0f} ms, worst stall {r['cold']['stall_ms']:.0f} ms (busy "
                  f"{r['cold']['busy_stall_ms']:.0f}; idle control process {r['control_stall_ms']:.0f}), statuses "
                  f"{r['cold']['statuses']}, redis {r['cold']['redis']} | warm: search {r['warm']['search_ms']:.0f}"
                  f" ms, ads {r['warm']['ads_ms']:.0f} ms, worst stall {r['warm']['stall_ms']:.0f} ms"
                  f" | 'Redis unavailable' lines: {r['redis_down_lines']}", flush=True)
            for line in r["slow_callbacks"]:
                print("   ", line[:150], "...", line[-40:])

    def med(path: str) -> float:
        a, b = path.split(".") if "." in path else (path, None)
        return statistics.median(r[a][b] if b else r[a] for r in rounds)

    def worst(path: str) -> float:
        a, b = path.split(".")
        return max(r[a][b] for r in rounds)

    print(f"\n{args.rounds} fresh processes, medians (worst):")
    print(f"  listen (imports + indexing)   {med('listen_ms'):7.0f} ms")
    for phase in ("cold", "warm"):
        print(f"  {phase}: first search  {med(f'{phase}.search_ms'):7.0f} ms ({worst(f'{phase}.search_ms'):.0f})"
              f" | ads {med(f'{phase}.ads_ms'):7.0f} ms ({worst(f'{phase}.ads_ms'):.0f})"
              f" | worst loop stall {med(f'{phase}.stall_ms'):5.0f} ms ({worst(f'{phase}.stall_ms'):.0f})"
              f", process busy {med(f'{phase}.busy_stall_ms'):5.0f} ms ({worst(f'{phase}.busy_stall_ms'):.0f})")
    print(f"  idle control process beside it: worst loop stall {med('control_stall_ms'):.0f} ms "
          f"({max(r['control_stall_ms'] for r in rounds):.0f})")
    ok = all(s == 200 for r in rounds for ph in ("cold", "warm") for s in r[ph]["statuses"])
    print(f"  every search and ads request 200: {ok}; redis 'down' in health: "
          f"{sum(r[ph]['redis'] != 'up' for r in rounds for ph in ('cold', 'warm'))}; "
          f"'Redis unavailable' log lines: {sum(r['redis_down_lines'] for r in rounds)}")
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
