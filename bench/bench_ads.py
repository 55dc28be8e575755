#!/usr/bin/env python3
"""/api/ads under a burst of concurrent requests, with Claude answering after 1 s; the old design beside it.

    .venv/bin/python bench/bench_ads.py [--requests 200] [--claude-delay 1.0] [--workers 1] [--json OUT]
    taskset -c 0 .venv/bin/python bench/bench_ads.py --designs async --concurrency 16 --duration 20 --rounds 3

With ``--concurrency N`` the load is a closed loop instead of a burst: N requests in flight at all
times for ``--duration`` seconds per round (each finished request is replaced at once), reporting
the throughput (requests/s) and the latency percentiles over the round. ``--designs async`` measures
only the shipped design (e.g. to compare two checkouts, run this script in each, interleaved).

Starts the fake Anthropic API (``tests.fakes.anthropic_server``, every answer
after ``--claude-delay`` seconds) and, one after the other, two local hosts
(``python -m core.devhost``) serving the real handlers on 127.0.0.1:

* **async** (``function_app``): the shipped design, one ``AsyncAnthropic`` on
  aiohttp; a request waiting for Claude holds no thread.
* **old design** (``--module bench.bench_ads``, the ``app`` defined lazily at the
  end of this file): the same pipeline, but the Claude call is the blocking SDK
  call pushed to the default thread pool with ``run_in_executor`` - what the old
  service did. Its requests still have the request deadline; a call still queued
  for a thread when the context stage's time is up falls back to keywords
  (degraded), so slowness shows as latency and degraded responses.

Each host is warmed (index, catalog, offline geocoder), then ``--rounds`` times
``--requests`` requests go out at once, every one on its own thread name (so each
needs its own Claude call: no context cache hit, no frequency cap), from one driver
session whose connections to the host are opened before each burst; the first
round also opens the connections to Claude, the last is reported. Prints
p50/p95/p99, errors, degraded responses and the ratios old/async. Exit status 1 when the async design
has errors or its p99 is above ``--p99-target-ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------------- driver
async def open_connections(http: Any, base: str, n: int) -> None:
    """``n`` keep-alive connections to the host, opened before a burst (a cheap anonymous GET each), so
    that the burst measures requests, not TCP set-up - as a client with a warm pool sees it."""
    async def one() -> None:
        async with http.get(f"{base}/api/openapi.json") as r:
            await r.read()

    await asyncio.gather(*(one() for _ in range(n)))


class _Tally:
    """Latency samples and what the 200 answers said (degraded, with ads, fallback reasons)."""

    def __init__(self) -> None:
        from bench.harness import Samples

        self.samples = Samples()
        self.degraded = self.with_ads = 0
        self.reasons: dict[str, int] = {}

    async def post(self, http: Any, base: str, body: dict, timeout_s: float) -> None:
        import aiohttp

        from bench.harness import KEY

        t0 = time.perf_counter()
        status, payload = 0, None
        try:
            async with http.post(f"{base}/api/ads", json=body, headers={"x-functions-key": KEY},
                                 timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
                status = r.status
                payload = await r.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            pass
        self.samples.add((time.perf_counter() - t0) * 1000, status)
        if status == 200 and isinstance(payload, dict):
            self.degraded += bool(payload.get("degraded"))
            self.with_ads += bool(payload.get("ads"))
            for reason in payload.get("reasons", []):
                self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def counts(self) -> dict[str, Any]:
        return {"degraded": self.degraded, "with_ads": self.with_ads, "reasons": self.reasons}


async def burst(base: str, convs: list[dict], n: int, tag: str, timeout_s: float,
                http: Any | None = None) -> dict[str, Any]:
    """``n`` /api/ads requests at once; latency, statuses, degraded and ads counts. ``http``: the
    driver's one session (an unlimited pool, connections already open); a new one when None."""
    import aiohttp

    tally = _Tally()
    start = asyncio.Event()

    async def one(i: int, http: aiohttp.ClientSession) -> None:
        await start.wait()
        await tally.post(http, base, {**convs[i % len(convs)], "thread_name": f"{tag}-{i}"}, timeout_s)

    own = http is None
    if own:
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    try:
        tasks = [asyncio.create_task(one(i, http)) for i in range(n)]
        await asyncio.sleep(0.2)  # every request ready, then all at once
        t0 = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    finally:
        if own:
            await http.close()
    return {**tally.samples.summary(), "wall_s": round(wall, 2), "requests_per_s": round(n / wall, 1),
            **tally.counts()}


async def closed_loop(base: str, convs: list[dict], concurrency: int, duration_s: float, tag: str,
                      timeout_s: float, http: Any) -> dict[str, Any]:
    """``concurrency`` requests in flight for ``duration_s``: each worker sends its next request as soon as
    the previous one is answered (every request on its own thread name: one Claude call each)."""
    tally = _Tally()
    counter = iter(range(10**9))
    t0 = time.perf_counter()
    stop_at = t0 + duration_s

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            i = next(counter)
            await tally.post(http, base, {**convs[i % len(convs)], "thread_name": f"{tag}-{i}"}, timeout_s)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    summary = tally.samples.summary()
    return {**summary, "concurrency": concurrency, "wall_s": round(wall, 2),
            "requests_per_s": round(summary.get("n", 0) / wall, 2), **tally.counts()}


async def warm(base: str, convs: list[dict], tag: str) -> None:
    """Load the catalog (it needs the index) and the offline geocoder before measuring."""
    import aiohttp

    from bench.harness import KEY

    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 300
        ok = 0
        while ok < 3:
            body = {**convs[ok % len(convs)], "thread_name": f"{tag}-warm-{ok}"}
            async with http.post(f"{base}/api/ads", json=body, headers={"x-functions-key": KEY}) as r:
                await r.read()
                if r.status == 200:
                    ok += 1
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"{base}/api/ads still answers {r.status} after warm-up")
                else:
                    await asyncio.sleep(0.5)


async def measure(module: str, env: dict[str, str], convs: list[dict], args: argparse.Namespace,
                  label: str) -> dict[str, Any]:
    from bench.harness import KEY, free_port, process, wait_http

    port = free_port()
    full_env = {"FUNCTION_KEYS": KEY, "HF_HUB_OFFLINE": "1", "LOG_LEVEL": "WARNING", **env}
    log = Path(args.log_dir) / f"bench_ads_{label}.log"
    import aiohttp

    cmd = [sys.executable, "-m", "core.devhost", "--port", str(port), "--module", module,
           "--workers", str(args.workers)]
    with process(cmd, full_env, log):
        base = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_http, f"{base}/api/health", 900)
        tag = f"bench-{label}-{uuid.uuid4().hex[:8]}"
        await warm(base, convs, tag)
        rounds = []
        # One driver session for every round; its connections are opened before each burst.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            for r in range(args.rounds):  # round 1 opens the connections to Claude; later rounds reuse them
                if args.concurrency:
                    await open_connections(http, base, args.concurrency)
                    await asyncio.sleep(0.5)
                    rounds.append({**await closed_loop(base, convs, args.concurrency, args.duration, f"{tag}-r{r}",
                                                       args.timeout, http), "kind": f"{args.concurrency} in flight"})
                if not args.concurrency or args.also_burst:
                    await open_connections(http, base, args.requests)
                    await asyncio.sleep(0.5)
                    rounds.append({**await burst(base, convs, args.requests, f"{tag}-b{r}", args.timeout, http),
                                   "kind": f"burst of {args.requests}"})
                await asyncio.sleep(1.0)
        return {**rounds[-1], "rounds": rounds}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.harness import fake_claude, load_conversations

    convs = load_conversations()
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any load
    with fake_claude(args.claude_delay) as claude_url:
        env = {"ANTHROPIC_API_KEY": "bench-fake-key", "ANTHROPIC_BASE_URL": claude_url, "REDIS_URL": args.redis_url,
               "REFRESH_INTERVAL_S": "0"}
        new = await measure("function_app", env, convs, args, "async")
        old = (await measure("bench.bench_ads", env, convs, args, "old")) if "old" in args.designs else None

    def ratio(key: str) -> float | None:
        return round(old[key] / new[key], 2) if old and new.get(key) else None

    return {"requests": args.requests, "concurrency": args.concurrency, "claude_delay_s": args.claude_delay,
            "workers": args.workers, "async": new, "old_run_in_executor": old,
            "ratio_old_over_async": {"p50": ratio("p50_ms"), "p99": ratio("p99_ms"), "wall": ratio("wall_s")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--claude-delay", type=float, default=1.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout of one request")
    parser.add_argument("--rounds", type=int, default=2,
                        help="bursts per design; the last one is reported (the first also pays for new connections)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes of the local host (core.devhost --workers; FUNCTIONS_WORKER_PROCESS_COUNT)")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="closed loop: this many requests in flight for --duration seconds per round (0: bursts)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per closed-loop round")
    parser.add_argument("--also-burst", action="store_true",
                        help="with --concurrency: also a burst of --requests after each closed-loop round")
    parser.add_argument("--designs", choices=("async,old", "async"), default="async,old",
                        help="which designs to run: the shipped one and the old one, or the shipped one only")
    parser.add_argument("--p99-target-ms", type=float, default=1300.0)
    parser.add_argument("--log-dir", default=str(ROOT / "bench" / "out"))
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()

    from bench.harness import print_table

    report = asyncio.run(run(args))
    load = (f"{args.concurrency} in flight for {args.duration:g}s" if args.concurrency
            else f"{args.requests} requests at once")
    rows = {"async (shipped)": report["async"]}
    if report["old_run_in_executor"]:
        rows["old: run_in_executor"] = report["old_run_in_executor"]
    print_table(f"POST /api/ads, {load}, Claude answering after {args.claude_delay}s, "
                f"{args.workers} worker process(es)", rows)
    for name, key in (("async (shipped)", "async"), ("old: run_in_executor", "old_run_in_executor")):
        for i, r in enumerate((report[key] or {}).get("rounds", []), 1):
            print(f"{name:<22} round {i} ({r.get('kind', 'burst')}): p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                  f"wall {r['wall_s']}s, "
                  f"{r['requests_per_s']} req/s, errors {r['errors']}, degraded {r['degraded']}, "
                  f"with ads {r['with_ads']}, reasons {r['reasons']}")
    print(f"ratio old/async: {report['ratio_old_over_async']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    new = report["async"]
    ok = new.get("errors", 1) == 0 and new.get("p99_ms", 1e9) <= args.p99_target_ms
    print("PASS" if ok else f"FAIL: async p99 {new.get('p99_ms')} ms (target {args.p99_target_ms}), "
          f"errors {new.get('errors')}")
    return 0 if ok else 1


# ------------------------------------------------------------------ the old design, as an app
def _old_design_app() -> Any:
    """function_app's routes, with the Claude call made the old way: the blocking SDK call in the
    default thread pool (``run_in_executor(None, ...)``). Everything else is the shipped pipeline."""
    import azure.functions as func

    from core import api
    from core.adapters.claude import ClaudeClient, ClaudeUnavailable, classify, output_format
    from core.runtime import get_runtime

    class BlockingClaude(ClaudeClient):
        def __init__(self, settings: Any) -> None:
            super().__init__(settings)
            import anthropic

            self._sync = anthropic.Anthropic(api_key=settings.anthropic_api_key,
                                             base_url=settings.anthropic_base_url or None,
                                             max_retries=0, timeout=settings.claude_timeout_s)

        async def structured(self, *, system: str, messages: list[dict], output: type, deadline: Any,
                             max_tokens: int) -> Any:
            def call() -> Any:
                return self._sync.messages.create(
                    model=self.model, max_tokens=max_tokens, messages=messages,
                    system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                    output_config={"format": output_format(output)})

            try:
                response = await asyncio.get_running_loop().run_in_executor(None, call)
            except Exception as exc:  # noqa: BLE001 - mapped to a reason like the shipped client
                raise ClaudeUnavailable(classify(exc).reason, str(exc)[:200]) from exc
            return self._parse(response, output)

        async def close(self) -> None:
            self._sync.close()

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    def runtime() -> Any:
        rt = get_runtime()
        if not isinstance(rt._claude, BlockingClaude):  # bench only: swap the process's Claude client
            rt._claude = BlockingClaude(rt.settings)
        return rt

    async def serve(name: str, req: func.HttpRequest, endpoint: Any) -> func.HttpResponse:
        request = api.Request.build(req.method, req.url, dict(req.headers), dict(req.params), req.get_body())
        res = await api.handle(name, request, runtime(), endpoint)
        return func.HttpResponse(body=res.body, status_code=res.status, headers=res.headers)

    @app.route(route="ads", methods=["POST"])
    async def ads(req: func.HttpRequest) -> func.HttpResponse:
        return await serve("ads", req, api.ads_endpoint)

    @app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    async def health(req: func.HttpRequest) -> func.HttpResponse:
        return await serve("health", req, api.health_endpoint)

    return app


_APP: Any = None


def __getattr__(name: str) -> Any:  # ``bench.bench_ads.app`` for ``core.devhost --module bench.bench_ads``
    global _APP
    if name == "app":
        if _APP is None:
            _APP = _old_design_app()
        return _APP
    raise AttributeError(name)


if __name__ == "__main__":
    raise SystemExit(main())
