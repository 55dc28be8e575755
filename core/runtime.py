"""Process-wide singletons: created once, reused by every warm invocation.

Nothing here does I/O at construction, so importing ``function_app`` never
fails and never waits. The first request (or the local host's warm-up) starts
the index and catalog supervisors; clients that need a running event loop (the
aiohttp session, the Claude client) are created on first use.

Cold start, as the Functions host runs it (no startup hook: the first request
starts everything, on the one event loop that also serves it): the modules every
request path needs are imported here, at import time (function indexing), not on
the loop; loads run in threads; the Anthropic SDK (~1.7 s of imports) is imported
in a thread, and Claude calls wait for it without holding the loop; the garbage
collector is paused during warm-up and the warm heap frozen afterwards (no full
collection on the loop). ``tests/test_cold_start.py`` holds every loop stall
under 50 ms.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Import time, not the first request's loop: every module a request path needs (~0.5 s).
import aiohttp

from core.adapters.cache import Cache, make_redis
from core.adapters.claude import ClaudeClient
from core.ads.catalog import CATALOG_FORMAT, CATALOG_KIND, LoadedCatalog
from core.ads.geo import Geocoder
from core.ads.service import AdsService
from core.artifacts import ArtifactError
from core.holder import ArtifactHolder, LocalArtifactSource
from core.search.answer import answer as _answer_with_claude
from core.search.bundle import KIND, READ_FORMATS
from core.search.engine import SearchIndex
from core.search.service import SearchService
from core.settings import PROJECT_ROOT, Settings

log = logging.getLogger("core.runtime")

BUILD_TIMEOUT_S = 900


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.monotonic()
        self.cache = Cache(make_redis(settings), lru_size=settings.lru_size, lru_ttl_s=settings.cache_ttl_s,
                           op_timeout_s=settings.redis_timeout_s)
        self.executor = ThreadPoolExecutor(max(1, settings.search_workers), thread_name_prefix="search")
        self.index: ArtifactHolder = self._index_holder()
        self._http: Any = None
        self._claude: Any = None
        self._ads: Any = None
        self._geo: Any = None
        self._warm_tasks: list[asyncio.Task] = []
        self._sdk: asyncio.Future | None = None  # the Anthropic SDK's import, in a thread
        self.catalog: ArtifactHolder | None = None
        self.search = SearchService(settings, self.cache, self.index, self.executor, answer_fn=self._answer)

    # ----------------------------------------------------------------- index
    def _index_holder(self) -> ArtifactHolder:
        s = self.settings
        if s.blob_configured:
            from core.adapters.blob import BlobArtifactSource

            source: Any = BlobArtifactSource(s, s.index_container, kind=KIND, format_version=READ_FORMATS)
            deep = False  # fetch() verified every file's sha256 on download
        else:
            source = LocalArtifactSource(s.path(s.index_local_path), ensure=self._build_local_index)
            deep = True

        def load(path: Path) -> Any:
            return SearchIndex.load(path, encoder_threads=s.encoder_threads, deep_verify=deep)

        return ArtifactHolder("search index", source, load, refresh_interval_s=s.refresh_interval_s,
                              wait_s=min(5.0, s.request_deadline_s), first_load_wait_s=_first_load_wait(s))

    async def _build_local_index(self) -> None:
        """Embedded default: build the sample knowledge base's bundle in a child process.

        The builder needs torch; the serving process never imports it.
        """
        s = self.settings
        corpus, out = s.path(s.sample_corpus), s.path(s.index_local_path)
        if not corpus.exists():
            raise ArtifactError(f"no index at {out} and no corpus at {corpus} to build one from")
        log.info("no index at %s: building it from %s (first run only)", out, corpus)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "core.search.build", str(corpus), "--out", str(out), "--quiet",
            cwd=str(PROJECT_ROOT), env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), BUILD_TIMEOUT_S)
        except asyncio.TimeoutError:
            proc.kill()
            raise ArtifactError(f"building the sample index took longer than {BUILD_TIMEOUT_S}s") from None
        if proc.returncode != 0:
            tail = output.decode(errors="replace").strip().splitlines()[-5:]
            raise ArtifactError(f"building the sample index failed: {' | '.join(tail)}")

    # --------------------------------------------------------------- clients
    async def http(self) -> Any:
        """The process's one aiohttp session (Azure Maps and other plain HTTP)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, limit_per_host=50, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self.settings.request_deadline_s))
        return self._http

    def claude(self) -> Any:
        if self._claude is None:
            self._claude = ClaudeClient(self.settings)
        return self._claude

    def _import_sdk(self) -> asyncio.Future | None:
        """Import the Anthropic SDK and build its client in a thread, once (only when Claude is configured):
        the import takes ~1 s, and the client's SSL context (the system's CA bundle) 20-40 ms more."""
        if self._sdk is None and self.settings.claude_configured:
            self._sdk = asyncio.ensure_future(asyncio.to_thread(self.claude().prepare))
        return self._sdk

    async def _sdk_ready(self, deadline: Any = None) -> None:
        """Before a Claude call: wait (without holding the loop) for the SDK's import. An import on the loop
        while the thread holds the module lock would block the loop until the thread is done."""
        sdk = self._import_sdk()
        if sdk is not None and not sdk.done():
            wait = asyncio.shield(sdk)
            await (deadline.run(wait) if deadline is not None else wait)

    async def _answer(self, query: str, hits: list, deadline: Any) -> dict[str, Any]:
        await self._sdk_ready(deadline)
        return await _answer_with_claude(query, hits, self.claude(), deadline)

    # ------------------------------------------------------------------- ads
    def _catalog_holder(self) -> ArtifactHolder:
        s = self.settings
        if s.blob_configured:
            from core.adapters.blob import BlobArtifactSource

            source: Any = BlobArtifactSource(s, s.ads_container, kind=CATALOG_KIND, format_version=CATALOG_FORMAT)
        else:
            source = _LocalFileSource(s.path(s.ads_catalog_path))

        def load(path: Path) -> Any:
            index = self.index.current
            if index is None:
                raise ArtifactError("the search index (and its encoder) is not loaded yet")
            if path.is_file():
                return LoadedCatalog.from_jsonl(path, index.encoder)
            return LoadedCatalog.from_dir(path, index.encoder)

        return ArtifactHolder("ads catalog", source, load, refresh_interval_s=s.refresh_interval_s,
                              retry_initial_s=0.5, wait_s=min(5.0, s.request_deadline_s),
                              first_load_wait_s=_first_load_wait(s))

    async def recommend_ads(self, req: Any, deadline: Any) -> dict[str, Any]:
        if self.catalog is None:
            self.catalog = self._catalog_holder()
        await self.index.get(wait_s=deadline.cap(self.index.wait_s))  # the catalog needs its encoder
        catalog = await self.catalog.get(wait_s=deadline.cap(self.catalog.wait_s))
        await self._sdk_ready(deadline)
        if self._ads is None:
            self._ads = AdsService(self.settings, self.cache, self.claude(), await self._geocoder(),
                                   executor=self.executor, rerank=self.settings.ads_claude_rerank)
        return await self._ads.recommend(req, catalog, deadline)

    async def _geocoder(self) -> Any:
        if self._geo is None:
            self._geo = Geocoder(self.settings, self.cache, await self.http())
        return self._geo

    # ---------------------------------------------------------------- health
    def ensure_warming(self) -> None:
        """Start the warm-up once per process (idempotent; called by every request)."""
        if not self._warm_tasks:
            loop = asyncio.get_running_loop()
            self._warm_tasks = [loop.create_task(self._warm())]

    async def _warm(self) -> None:
        """Load the index, then the catalog (its index needs the query encoder) and the offline city
        table; then take the long-lived objects out of the garbage collector's generations.

        The collector is paused meanwhile: the loads allocate a few hundred thousand long-lived objects,
        and each automatic full collection they would trigger walks the whole heap with the GIL held
        (in whichever thread allocates), holding the event loop with it. Paused at most ``GC_PAUSE_MAX_S``."""
        pause = _pause_gc(GC_PAUSE_MAX_S)
        try:
            self._import_sdk()
            self.index.start()
            if self.catalog is None:
                self.catalog = self._catalog_holder()
            geocoder = await self._geocoder()
            geo = asyncio.ensure_future(geocoder.warm())
            await self.index.wait_loaded()
            await self.catalog.wait_loaded()
            await geo
            if self._sdk is not None:
                await self._sdk
            # Freeze while the collector is still paused: resuming it triggers a collection at the next
            # allocation (the counts grew while paused); frozen, the warm heap is not part of it.
            self._freeze_heap()
        finally:
            pause.resume()

    async def warmed(self, timeout_s: float) -> bool:
        """Wait (bounded) until the warm-up has finished. True when it has."""
        self.ensure_warming()
        try:
            await asyncio.wait_for(asyncio.shield(self._warm_tasks[0]), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    @staticmethod
    def _freeze_heap() -> None:
        """Move what warm-up loaded (index, catalog, city table, SDK models: ~250k objects) out of the
        collector's generations (``gc.freeze``, constant time): a full collection then walks only what
        requests allocate (measured: ~200 ms -> ~20 ms per gen-2 pass in the middle of a burst). No
        ``gc.collect()`` first: on this heap it holds the loop for ~100-200 ms, and the cyclic garbage of
        a load is small. Objects freed by reference counting (an index replaced on refresh) are still
        freed. (``gc.get_freeze_count()`` walks the frozen set: ~50 ms, so it is not logged.)"""
        gc.freeze()
        log.info("warm: heap frozen")

    async def health(self) -> dict[str, Any]:
        self.ensure_warming()
        redis_ok = await self.cache.ping() if self.cache.redis_configured else None
        index = self.index.status()
        report: dict[str, Any] = {
            "status": "ok" if index["state"] == "ready" and not self.settings.errors else "unavailable",
            "index": index,
            "cache": {**self.cache.status(), **({"redis_ping": redis_ok} if redis_ok is not None else {})},
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "warm": bool(self._warm_tasks) and self._warm_tasks[0].done(),  # index, catalog, city table loaded
        }
        if self.catalog is not None:
            report["catalog"] = self.catalog.status()
        if self._geo is not None:
            report["geocoder"] = self._geo.status()
        if self._claude is not None:
            report["claude"] = self._claude.status()
        else:
            report["claude"] = {"configured": self.settings.claude_configured}
        if self.settings.errors:
            report["config_errors"] = list(self.settings.errors)
        if index["state"] != "ready":
            report["reason"] = index.get("last_error") or f"search index {index['state']}"
        return report

    async def close(self) -> None:
        for task in self._warm_tasks:
            task.cancel()
        await self.index.close()
        if self.catalog is not None:
            await self.catalog.close()
        if self._claude is not None:
            await self._claude.close()
        if self._geo is not None:
            await self._geo.close()
        if self._http is not None:
            await self._http.close()
        await self.cache.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def _first_load_wait(s: Settings) -> float:
    """How long a request waits for an artifact's first load, while it is under way and has not failed,
    before a 503: all of its deadline but a second for the work itself. A cold start (the Functions host
    starts nothing before the first request) then answers its first requests instead of refusing them.
    Once a load has failed, requests wait at most 5 s (the holder's ``wait_s``)."""
    return max(1.0, s.request_deadline_s - 1.0)


class _LocalFileSource(LocalArtifactSource):
    """A single local file (the sample ads catalog JSONL), versioned by its content hash."""

    async def latest(self) -> dict[str, Any]:
        import hashlib

        raw = await asyncio.to_thread(self.path.read_bytes)
        digest = hashlib.sha256(raw).hexdigest()
        return {"version": f"file-{digest[:12]}", "manifest_sha256": digest}


_runtime: Runtime | None = None
GC_PAUSE_MAX_S = 60.0


class _GcPause:
    """``gc.disable()`` until ``resume()`` or a time limit, whichever comes first (a warm-up that never
    finishes must not leave the collector off). Nested pauses: the collector resumes with the last one."""

    active = 0
    _restore = True

    def __init__(self, max_s: float) -> None:
        self._done = False
        if _GcPause.active == 0:
            _GcPause._restore = gc.isenabled()
            gc.disable()
        _GcPause.active += 1
        self._timer = asyncio.get_running_loop().call_later(max_s, self.resume)

    def resume(self) -> None:
        if self._done:
            return
        self._done = True
        self._timer.cancel()
        _GcPause.active -= 1
        if _GcPause.active == 0 and _GcPause._restore:
            gc.enable()


def _pause_gc(max_s: float) -> _GcPause:
    return _GcPause(max_s)


def preload_tables() -> None:
    """Import time (function indexing), before any request: load the tables whose parse holds the GIL in
    one long call, which no thread can keep off the event loop. The offline city table is one 17 MB JSON
    document (``orjson.loads`` ~100 ms+ of CPU with the GIL held), needed unless Azure Maps is configured.
    Then freeze what is loaded (constant time), so no collection walks it. Never raises: a failure here
    shows later, where the table is used, as it would without the preload."""
    try:
        if Settings.from_env().maps_configured:
            return
        from core.ads.geo import _OFFLINE

        _OFFLINE.load()
        gc.freeze()
    except Exception as exc:  # import must not fail
        log.warning("preloading the offline city table failed (it loads on first use): %s", exc)


preload_tables()


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        settings = Settings.from_env()
        logging.getLogger("core").setLevel(settings.log_level.upper() if settings.log_level else "INFO")
        for noisy in ("httpx", "httpx2"):  # one INFO line per Claude call: CPU and log volume under load
            logging.getLogger(noisy).setLevel(logging.WARNING)
        from core import telemetry

        telemetry.configure(settings)
        _runtime = Runtime(settings)
    return _runtime


async def reset_runtime(settings: Settings | None = None) -> Runtime:
    """Close the current runtime and make a new one (tests, the local host)."""
    global _runtime
    if _runtime is not None:
        await _runtime.close()
    _runtime = Runtime(settings or Settings.from_env())
    return _runtime
