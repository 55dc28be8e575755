"""The search use case: cache, single flight, retrieval off the event loop, optional answer."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from concurrent.futures import Executor
from dataclasses import asdict
from typing import Any, Awaitable, Callable

import orjson

from core.adapters.cache import Cache
from core.deadline import Deadline
from core.holder import ArtifactHolder
from core.search.models import SearchRequest
from core.search.text import DEFAULT_TOKENIZER, TextTokenizer
from core.settings import Settings
from core.singleflight import SingleFlight
from core.telemetry import span

log = logging.getLogger("core.search")

CACHE_PREFIX = "search:v1:"
AnswerFn = Callable[[str, list, Deadline], Awaitable[dict[str, Any]]]


# Why a query returns no results without being searched (``no_results_reason``).
NO_LETTERS_OR_DIGITS = "no_letters_or_digits"  # only punctuation, symbols, zero-width or control characters
ONLY_STOP_WORDS = "only_stop_words"  # letters, but every word is a stop-word ("the", "of it")


def normalise_query(query: str) -> str:
    return " ".join(query.casefold().split())


def unsearchable_reason(query: str, tokenizer: TextTokenizer = DEFAULT_TOKENIZER) -> str | None:
    """Why ``query`` has no searchable term, or None when it has one.

    A query with no BM25 term after tokenising (the index's own tokenizer: words of letters or digits, minus
    stop-words) would still get a dense vector, whose nearest passages are noise with a confident-looking
    score; such a query returns no results instead, and says why."""
    if tokenizer(query):
        return None
    return ONLY_STOP_WORDS if any(c.isalnum() for c in query) else NO_LETTERS_OR_DIGITS


class SearchService:
    def __init__(self, settings: Settings, cache: Cache, index: ArtifactHolder, executor: Executor,
                 answer_fn: AnswerFn | None = None) -> None:
        self.settings = settings
        self.cache = cache
        self.index = index
        self.executor = executor
        self.answer_fn = answer_fn
        self.flight = SingleFlight()

    def cache_key(self, req: SearchRequest, version: str) -> str:
        s = self.settings
        parts = [normalise_query(req.query), req.top_k, req.filters or {}, req.answer,
                 s.fusion_method, s.fusion_depth, s.rrf_k, s.convex_alpha, version]
        digest = hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
        return f"{CACHE_PREFIX}{version}:{digest}"

    async def search(self, req: SearchRequest, deadline: Deadline) -> dict[str, Any]:
        t0 = time.perf_counter()
        index = await self.index.get(wait_s=deadline.cap(self.index.wait_s))
        reason = unsearchable_reason(req.query, index.tokenizer)
        if reason is not None:
            payload: dict[str, Any] = {"query": req.query, "results": [], "index_version": index.version,
                                       "fusion": self.settings.fusion_method, "no_results_reason": reason}
            if req.answer:
                payload["answer"] = None
            return {**payload, "cached": False, "took_ms": round((time.perf_counter() - t0) * 1000, 2)}
        key = self.cache_key(req, index.version)
        payload = self.cache.get_local(key)
        cached = payload is not None
        if not cached:
            # Identical concurrent requests share one Redis lookup and, on a miss, one computation.
            payload, cached = await self.flight.run(key, lambda: self._lookup_or_compute(req, index, key, deadline),
                                                    deadline)
        # A cache hit (or a shared computation) answers for every query that normalises alike: each response
        # echoes its own request's query, never the text of the request that filled the cache.
        return {**payload, "query": req.query, "cached": cached,
                "took_ms": round((time.perf_counter() - t0) * 1000, 2)}

    async def _lookup_or_compute(self, req: SearchRequest, index: Any, key: str,
                                 deadline: Deadline) -> tuple[dict[str, Any], bool]:
        with span("cache.get"):
            payload = await self.cache.get(key)
        if payload is not None:
            return payload, True
        return await self._compute(req, index, key, deadline), False

    async def _compute(self, req: SearchRequest, index: Any, key: str, deadline: Deadline) -> dict[str, Any]:
        s = self.settings
        loop = asyncio.get_running_loop()
        with span("retrieval", top_k=req.top_k, method=s.fusion_method):
            hits = await deadline.run(loop.run_in_executor(
                self.executor, lambda: index.search(req.query, req.top_k, filters=req.filters,
                                                    method=s.fusion_method, depth=s.fusion_depth,
                                                    rrf_k=s.rrf_k, alpha=s.convex_alpha)))
        payload: dict[str, Any] = {
            "query": req.query,
            "results": [_result(h) for h in hits],
            "index_version": index.version,
            "fusion": s.fusion_method,
        }
        degraded_reasons: list[str] = []
        if req.answer:
            if self.answer_fn is None:
                payload["answer"] = None
                degraded_reasons.append("answer: not available in this deployment")
            else:
                with span("answer"):
                    ans = await self.answer_fn(req.query, hits, deadline)
                payload["answer"] = ans.get("answer")
                degraded_reasons.extend(ans.get("reasons", []) if ans.get("degraded") else [])
        if degraded_reasons:
            payload["degraded"] = True
            payload["reasons"] = degraded_reasons
        else:
            with span("cache.set"):
                await self.cache.set(key, payload, s.cache_ttl_s)  # only complete answers are cached
        return payload


def _result(hit: Any) -> dict[str, Any]:
    d = asdict(hit)
    d["score"] = round(float(d["score"]), 6)
    return d
