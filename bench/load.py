"""Mixed HTTP load through the local host, with the fake Claude answering after a delay.

Starts ``python -m core.devhost`` (the real function_app handlers) and the fake
Anthropic server on 127.0.0.1, then:

1. cached search: every sample query once (to fill the cache), then
   ``--cached`` requests over them at low concurrency: the cache's own latency;
2. mixed load: ``--requests`` requests (search, partly cache misses, and
   multi-turn /api/ads conversations) at ``--concurrency``; resident memory of the
   host process before and after.

Prints requests/s, p50/p95/p99 per endpoint, error counts and memory; ``--json``
writes the same figures. Exit status 1 if any request failed (5xx or transport).

    python bench/load.py --requests 10000 --concurrency 32 --claude-delay 1.0

Concurrency sweep, one workload at a time (``--workload miss,cached,ads``; one name
picks one workload), with the served host pinned to CPU 0 (as ``taskset -c 0``: a
2048 MB Flex Consumption instance has one vCPU) and this load generator, the
private Redis and the fake Claude on CPU 1. Each point keeps N requests in flight
(closed loop) for ``--seconds`` (and at least ``--min-requests``); ``--rounds``
rounds, each with a fresh host, Redis and fake Claude; the table shows medians over
rounds and the range of p99:

    python bench/load.py --sweep 1,2,4,8,16,32 --rounds 3 --pin-host 0 --pin-client 1 --json var/sweep.json

Workloads: ``miss``: searches that are never cached (each query a new combination
of sample-query words); ``cached``: the sample queries, cached before the sweep;
``ads``: /api/ads with a new thread per request, so every request waits for one
Claude call (the fake, ``--claude-delay`` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (Samples, fake_claude, fire, timed_post, load_conversations, load_queries,  # noqa: E402
                           local_host, parse_cpus, pin, print_table, private_redis, rss_mb)

SWEEP_WORKLOADS = ("miss", "cached", "ads")
LABEL = {"miss": "search (miss)", "cached": "search (cached)", "ads": "ads (1 Claude call)"}


def mixed_jobs(base: str, n: int, ads_share: float, rng: random.Random) -> list[tuple[str, str, dict]]:
    queries, convs = load_queries(), load_conversations()
    jobs = []
    for i in range(n):
        if rng.random() < ads_share:
            c = rng.choice(convs)
            # Vary the thread so the context cache and frequency caps see many threads.
            jobs.append(("ads", f"{base}/api/ads", {**c, "thread_name": f"{c['thread_name']}-{i % 50}"}))
        elif rng.random() < 0.3:
            q = f"{rng.choice(queries)} {rng.choice(queries).split()[0]}"  # a cache miss
            jobs.append(("search (miss)", f"{base}/api/search", {"query": q, "top_k": 10}))
        else:
            jobs.append(("search (cached)", f"{base}/api/search", {"query": rng.choice(queries), "top_k": 10}))
    return jobs


async def run(args: argparse.Namespace) -> dict:
    import aiohttp

    rng = random.Random(7)
    with fake_claude(args.claude_delay) as claude_url, private_redis() as fresh_redis:
        env = {"ANTHROPIC_API_KEY": "bench-fake-key", "ANTHROPIC_BASE_URL": claude_url,
               "REDIS_URL": args.redis_url or fresh_redis, "REFRESH_INTERVAL_S": "0"}
        with local_host(env, log=Path(args.host_log), cpus=parse_cpus(args.pin_host)) as (base, pid):
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                queries = load_queries()
                warm = [("warm", f"{base}/api/search", {"query": q, "top_k": 10}) for q in queries]
                await fire(http, warm, 4)
                cached_jobs = [("search (cached)", f"{base}/api/search", {"query": queries[i % len(queries)],
                                                                         "top_k": 10}) for i in range(args.cached)]
                cached, _ = await fire(http, cached_jobs, args.cached_concurrency)
                rss_before = rss_mb(pid)
                mixed, seconds = await fire(http, mixed_jobs(base, args.requests, args.ads_share, rng),
                                            args.concurrency)
                rss_after = rss_mb(pid)
    report = {
        "cached_search": cached["search (cached)"].summary(),
        "mixed": {name: s.summary() for name, s in sorted(mixed.items())},
        "mixed_requests": args.requests, "mixed_seconds": round(seconds, 2),
        "requests_per_s": round(args.requests / seconds, 1),
        "rss_mb_before": rss_before, "rss_mb_after": rss_after,
        "rss_growth_pct": round(100 * (rss_after - rss_before) / rss_before, 1),
        "errors": sum(s.errors for s in mixed.values()) + cached["search (cached)"].errors,
        "settings": vars(args),
    }
    return report


# --- one workload at a time, swept over in-flight concurrency ---------------------------------


def job_source(workload: str, base: str, rng: random.Random, tag: str) -> Callable[[], tuple[str, str, dict]]:
    """A function that returns the next request of a workload (unique where the workload needs it)."""
    queries, convs = load_queries(), load_conversations()
    counter = itertools.count()
    if workload == "cached":
        return lambda: ("cached", f"{base}/api/search", {"query": queries[next(counter) % len(queries)], "top_k": 10})
    if workload == "ads":
        def ads() -> tuple[str, str, dict]:
            i = next(counter)
            c = convs[i % len(convs)]
            # A new thread each time: no cached context, no frequency cap; one Claude call per request.
            return "ads", f"{base}/api/ads", {**c, "thread_name": f"sweep-{tag}-{i}"}
        return ads
    vocabulary = sorted({w for q in queries for w in q.lower().split() if w.isalpha()})
    seen = set(queries)

    def miss() -> tuple[str, str, dict]:
        while True:
            q = " ".join(rng.sample(vocabulary, rng.randint(3, 6)))
            if q not in seen:
                seen.add(q)
                return "miss", f"{base}/api/search", {"query": q, "top_k": 10}
    return miss


async def closed_loop(http: Any, next_job: Callable[[], tuple[str, str, dict]], concurrency: int, seconds: float,
                      min_requests: int, max_seconds: float, timeout_s: float = 30) -> tuple[Samples, float]:
    """``concurrency`` workers, each sending its next request as soon as the last one answered, for
    ``seconds`` and at least ``min_requests`` requests (never longer than ``max_seconds``). A first
    request per worker, all at once, is a warm-up and is not counted."""
    import aiohttp

    samples = Samples()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    t0 = time.perf_counter()
    measure_from = [0.0]

    async def one() -> tuple[float, int]:
        _, url, body = next_job()
        return await timed_post(http, url, body, timeout)

    async def worker() -> None:
        while True:
            now = time.perf_counter()
            enough = now - measure_from[0] >= seconds and len(samples.latencies_ms) >= min_requests
            if enough or now - t0 >= max_seconds:
                return
            ms, status = await one()
            samples.add(ms, status)

    await asyncio.gather(*(one() for _ in range(concurrency)))  # warm-up: connections set up, not counted
    measure_from[0] = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - measure_from[0]


async def sweep_round(args: argparse.Namespace, workloads: list[str], levels: list[int], rnd: int,
                      host_cpus: set[int] | None) -> dict:
    import aiohttp

    rng = random.Random(1000 + rnd)
    out: dict[str, dict[int, dict]] = {w: {} for w in workloads}
    load_before = os.getloadavg()[0]
    with fake_claude(args.claude_delay) as claude_url, private_redis() as fresh_redis:
        env = {"ANTHROPIC_API_KEY": "bench-fake-key", "ANTHROPIC_BASE_URL": claude_url,
               "REDIS_URL": args.redis_url or fresh_redis, "REFRESH_INTERVAL_S": "0"}
        with local_host(env, log=Path(args.host_log), cpus=host_cpus) as (base, pid):
            affinity = sorted(os.sched_getaffinity(pid))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                # Fill the search cache with the sample queries; warm the ads path's own caches (geocodes,
                # catalog scores) once per sample conversation, so each point measures the steady state.
                await fire(http, [("warm", f"{base}/api/search", {"query": q, "top_k": 10})
                                  for q in load_queries()], 4)
                await fire(http, [("warm", f"{base}/api/ads", {**c, "thread_name": f"warm-{rnd}-{i}"})
                                  for i, c in enumerate(load_conversations())], 10)
                for workload in workloads:
                    for c in levels:
                        tag = f"r{rnd}c{c}"
                        samples, secs = await closed_loop(http, job_source(workload, base, rng, tag), c,
                                                          args.seconds, args.min_requests, args.max_seconds)
                        point = samples.summary()
                        point["req_per_s"] = round(point["n"] / secs, 1) if secs else 0.0
                        point["seconds"] = round(secs, 2)
                        out[workload][c] = point
                        print(f"  round {rnd + 1} {LABEL[workload]:<20} in flight {c:>3}: {point['req_per_s']:>7} req/s"
                              f"  p50 {point.get('p50_ms', 0):>8} ms  p99 {point.get('p99_ms', 0):>8} ms"
                              f"  n {point['n']:>5}  errors {point.get('errors', 0)}", flush=True)
                rss = rss_mb(pid)
    return {"points": out, "host_cpus": affinity, "loadavg_1m_before": round(load_before, 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2), "host_rss_mb": rss}


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 2) if xs else 0.0


def sweep_report(args: argparse.Namespace, workloads: list[str], levels: list[int], rounds: list[dict]) -> dict:
    table = {}
    for w in workloads:
        table[w] = {}
        for c in levels:
            pts = [r["points"][w][c] for r in rounds]
            p99s = [p.get("p99_ms", 0.0) for p in pts]
            table[w][c] = {"req_per_s": median([p["req_per_s"] for p in pts]),
                           "p50_ms": median([p.get("p50_ms", 0.0) for p in pts]),
                           "p99_ms": median(p99s), "p99_min_ms": min(p99s), "p99_max_ms": max(p99s),
                           "n_per_round": median([p["n"] for p in pts]),
                           "errors": sum(p.get("errors", 0) for p in pts)}
    ads_budget_ms = args.claude_delay * 1000 + 100
    return {"table": table, "rounds": rounds, "ads_p99_budget_ms": ads_budget_ms,
            "ads_p99_within_budget": {c: row["p99_ms"] <= ads_budget_ms for c, row in table.get("ads", {}).items()},
            "client_cpus": sorted(os.sched_getaffinity(0)),
            "errors": sum(row["errors"] for w in table.values() for row in w.values()),
            "settings": {k: v for k, v in vars(args).items() if k != "json"}}


def print_sweep(report: dict) -> None:
    rounds = report["rounds"]
    print(f"\nconcurrency sweep: host on CPU {rounds[0]['host_cpus']}, load generator + Redis + fake Claude on CPU "
          f"{report['client_cpus']}; {len(rounds)} round(s), medians over rounds; fake Claude "
          f"{report['settings']['claude_delay']} s")
    print(f"{'workload':<22}{'in flight':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99 range ms':>16}"
          f"{'n/round':>9}{'errors':>8}")
    for w, rows in report["table"].items():
        for c, r in rows.items():
            rng = f"{r['p99_min_ms']:g}-{r['p99_max_ms']:g}"
            print(f"{LABEL[w]:<22}{c:>10}{r['req_per_s']:>9g}{r['p50_ms']:>9g}{r['p99_ms']:>9g}{rng:>16}"
                  f"{r['n_per_round']:>9g}{r['errors']:>8}")
    if report["ads_p99_within_budget"]:
        ok = ", ".join(f"{c}: {'yes' if v else 'NO'}" for c, v in report["ads_p99_within_budget"].items())
        print(f"ads p99 <= Claude + 100 ms ({report['ads_p99_budget_ms']:g} ms), by in-flight count: {ok}")
    loads = ", ".join(f"{r['loadavg_1m_before']:g}->{r['loadavg_1m_after']:g}" for r in rounds)
    print(f"machine load average (1 min) before->after each round: {loads} (2 cores, shared with other work)")


def run_sweep(args: argparse.Namespace) -> dict:
    workloads = [w.strip() for w in args.workload.split(",") if w.strip()]
    unknown = set(workloads) - set(SWEEP_WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workload(s) {sorted(unknown)}; choose from {', '.join(SWEEP_WORKLOADS)} or mixed")
    levels = [int(x) for x in (args.sweep or str(args.concurrency)).split(",")]
    pin(parse_cpus(args.pin_client))
    host_cpus = parse_cpus(args.pin_host)
    rounds = []
    for rnd in range(args.rounds):
        rounds.append(asyncio.run(sweep_round(args, workloads, levels, rnd, host_cpus)))
    return sweep_report(args, workloads, levels, rounds)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=10_000, help="mixed-load requests (bounded)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--ads-share", type=float, default=0.1, help="share of /api/ads requests in the mix")
    p.add_argument("--cached", type=int, default=2000, help="cached-search requests in phase 1")
    p.add_argument("--cached-concurrency", type=int, default=1)
    p.add_argument("--claude-delay", type=float, default=1.0, help="seconds the fake Claude takes per call")
    p.add_argument("--redis-url", default="", help="default: a private, empty redis-server for this run")
    p.add_argument("--host-log", default="/tmp/bench-devhost.log")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--workload", default="",
                   help="mixed (default without --sweep), or one or more of miss,cached,ads (default with --sweep)")
    p.add_argument("--sweep", default="", help="in-flight counts to sweep, e.g. 1,2,4,8,16,32")
    p.add_argument("--rounds", type=int, default=1, help="sweep rounds (medians over rounds are reported)")
    p.add_argument("--seconds", type=float, default=6.0, help="measured seconds per sweep point")
    p.add_argument("--min-requests", type=int, default=30, help="at least this many requests per sweep point")
    p.add_argument("--max-seconds", type=float, default=60.0, help="hard time bound of one sweep point")
    p.add_argument("--pin-host", default="", help="CPUs of the served host, taskset syntax (e.g. 0)")
    p.add_argument("--pin-client", default="", help="CPUs of this load generator, Redis and fake Claude (e.g. 1)")
    args = p.parse_args()
    if args.sweep or (args.workload and args.workload != "mixed"):
        args.workload = args.workload if args.workload and args.workload != "mixed" else ",".join(SWEEP_WORKLOADS)
        report = run_sweep(args)
        print_sweep(report)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=2))
        return 1 if report["errors"] else 0
    pin(parse_cpus(args.pin_client))
    report = asyncio.run(run(args))
    print_table("phase 1: cached search, over HTTP", {"search (cached)": report["cached_search"]})
    print_table(f"phase 2: mixed load, {args.requests} requests at concurrency {args.concurrency}", report["mixed"])
    print(f"\nthroughput {report['requests_per_s']} req/s over {report['mixed_seconds']} s; "
          f"errors {report['errors']}; host RSS {report['rss_mb_before']} -> {report['rss_mb_after']} MB "
          f"({report['rss_growth_pct']:+.1f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
