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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (fake_claude, fire, load_conversations, load_queries, local_host,  # noqa: E402
                           print_table, private_redis, rss_mb)


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
        with local_host(env, log=Path(args.host_log)) as (base, pid):
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
    args = p.parse_args()
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
