"""Shared pieces of the HTTP benchmarks: start the local host and the fake Claude, fire requests, report.

Everything runs on 127.0.0.1 and every loop is bounded by a request count.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tests.fakes.processes import RedisProcess, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"


def wait_http(url: str, timeout: float, ok=(200,), warm: bool = False) -> None:
    """Until ``url`` answers with a status in ``ok`` (and, with ``warm``, a health body saying warm)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status in ok and (not warm or json.loads(r.read()).get("warm")):
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout}s ({last})")


def parse_cpus(text: str) -> set[int] | None:
    """``"0"`` / ``"0,1"`` / ``"0-1"`` (taskset's list syntax) -> CPU ids; empty -> None (no pinning)."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus or None


def pin(cpus: set[int] | None, pid: int = 0) -> None:
    """``taskset -c`` for a process (0: this one); its children inherit the affinity."""
    if cpus:
        os.sched_setaffinity(pid, cpus)


@contextmanager
def process(args: list[str], env: dict[str, str] | None = None, log: Path | None = None,
            cpus: set[int] | None = None) -> Iterator[subprocess.Popen]:
    """A child process; with ``cpus``, pinned to them from its first instruction (like ``taskset -c``)."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log:
            out.close()


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own on a free port, empty, so a run never reads an earlier run's cache."""
    server = RedisProcess().start()
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def fake_claude(delay_s: float) -> Iterator[str]:
    port = free_port()
    with process([sys.executable, "-m", "tests.fakes.anthropic_server", "--port", str(port), "--delay", str(delay_s)]):
        wait_for_port(port, 20)
        yield f"http://127.0.0.1:{port}"


@contextmanager
def local_host(env: dict[str, str], log: Path | None = None, ready_timeout: float = 900,
               cpus: set[int] | None = None, host_args: list[str] | None = None) -> Iterator[tuple[str, int]]:
    """Start ``python -m core.devhost`` (on ``cpus`` only, if given); yields (base URL, pid) once warm."""
    port = free_port()
    full_env = {"FUNCTION_KEYS": KEY, "HF_HUB_OFFLINE": "1", "LOG_LEVEL": "WARNING", **env}
    args = [sys.executable, "-m", "core.devhost", "--port", str(port), *(host_args or [])]
    with process(args, full_env, log, cpus) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/api/health", ready_timeout, warm=True)
        yield base, proc.pid


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # transport errors and 5xx

    def add(self, ms: float, status: int) -> None:
        self.latencies_ms.append(ms)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 500 or status == 0:
            self.errors += 1

    def summary(self) -> dict[str, Any]:
        xs = sorted(self.latencies_ms)
        if not xs:
            return {"n": 0}

        def pct(p: float) -> float:
            return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))], 2)

        return {"n": len(xs), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "max_ms": round(xs[-1], 2),
                "mean_ms": round(statistics.fmean(xs), 2), "errors": self.errors,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}


async def timed_post(session: Any, url: str, body: dict, client_timeout: Any) -> tuple[float, int]:
    """POST ``body`` with the function key and read the answer: (latency ms, status; 0 when it failed)."""
    import aiohttp

    t0 = time.perf_counter()
    try:
        async with session.post(url, json=body, headers={"x-functions-key": KEY}, timeout=client_timeout) as r:
            await r.read()
            status = r.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        status = 0
    return (time.perf_counter() - t0) * 1000, status


async def fire(session: Any, jobs: list[tuple[str, str, dict]], concurrency: int,
               timeout_s: float = 30) -> tuple[dict[str, Samples], float]:
    """Send every (name, url, json body) job with at most ``concurrency`` in flight."""
    import aiohttp

    results: dict[str, Samples] = {}
    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def worker() -> None:
        while True:
            try:
                name, url, body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            ms, status = await timed_post(session, url, body, timeout)
            results.setdefault(name, Samples()).add(ms, status)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - t0


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def print_table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'endpoint':<22}{'n':>7}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}{'errors':>8}")
    for name, s in rows.items():
        print(f"{name:<22}{s.get('n', 0):>7}{s.get('p50_ms', 0):>10}{s.get('p95_ms', 0):>10}"
              f"{s.get('p99_ms', 0):>10}{s.get('max_ms', 0):>10}{s.get('errors', 0):>8}")


def load_queries() -> list[str]:
    return [q.strip() for q in (ROOT / "data" / "sample_queries.txt").read_text().splitlines() if q.strip()]


def load_conversations() -> list[dict]:
    return json.loads((ROOT / "bench" / "conversations.json").read_text())
