"""The ads service: a conversation in, at most ``ads_max`` sponsored listings out.

    safety screen (code) -> context (Claude | keywords, cached) -> model's sensitive flag
    -> place to coordinates (cache, Azure Maps | offline) -> catalog retrieval (dense scores,
    off the loop) -> eligibility (status, dates, language, geo) -> ranking (tier, relevance x bid,
    floor; optional Claude re-rank) -> frequency cap (atomic, counted only for ads shown)
    -> a response built from catalog fields only.

Every stage that falls back adds a reason (``stage:why``) and marks the response
degraded; a sensitive conversation gets no ads and says why.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable

from cachetools import LRUCache

from core.adapters.claude import ClaudeClient
from core.ads.catalog import LoadedCatalog
from core.ads.context import Context, ContextExtractor, TermMatcher, folded_pairs
from core.ads.eligibility import FrequencyCap, check
from core.ads.geo import GeoResult, Place
from core.ads.models import AdsRequest
from core.ads.ranking import Candidate, claude_rerank, rank
from core.ads.safety import SafetyVerdict, health_risk, screen
from core.deadline import Deadline
from core.singleflight import SingleFlight
from core.telemetry import span

log = logging.getLogger("core.ads.service")

LABEL = "Sponsored"
MAX_CANDIDATES = 200
# Relevance = DENSE_WEIGHT * cosine(context, ad text) + LEXICAL_WEIGHT * (a context term names one of the ad's
# keywords/categories). Cosine of all-MiniLM-L6-v2 is < ~0.2 for unrelated texts, 0.4-0.7 for related ones.
DENSE_WEIGHT = 0.7
LEXICAL_WEIGHT = 0.3
# Time kept back from the context stage (Claude) for geocoding, retrieval, Redis and the response.
RESERVE_AFTER_CONTEXT_S = 0.5
RESERVE_AFTER_RERANK_S = 0.2
RESERVE_AFTER_RETRIEVAL_S = 0.2  # what is left after retrieval: eligibility, Redis, the response
MAX_TOPICS_SHOWN = 8
SCORE_CACHE_SIZE = 2048  # (catalog version, retrieval query) -> dense scores, in process


@dataclass(frozen=True)
class _CatalogTerms:
    """Per catalog version: each ad's terms, and the (term, folded term) pairs of the whole vocabulary."""

    version: str
    by_ad: dict[str, tuple[str, ...]]
    vocabulary: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, catalog: LoadedCatalog) -> "_CatalogTerms":
        by_ad = {ad.id: tuple(dict.fromkeys((*ad.keywords, *ad.categories))) for ad in catalog.ads.values()}
        vocab = folded_pairs(sorted({t for terms in by_ad.values() for t in terms}))
        return cls(catalog.version, by_ad, vocab)


async def _traced(name: str, aw: Any) -> Any:
    with span(name):
        return await aw


class AdsService:
    def __init__(self, settings: Any, cache: Any, claude: ClaudeClient | None, geocoder: Any, *,
                 key_prefix: str = "ads", rerank: bool = False, executor: Executor | None = None,
                 today: Callable[[], date] | None = None) -> None:
        """``rerank``: let Claude reorder the eligible ads within each priority tier (a second call).
        ``executor``: where retrieval runs (default: the loop's default executor)."""
        self.settings = settings
        self.cache = cache
        self.claude = claude
        self.geocoder = geocoder
        self.rerank = rerank
        self.executor = executor
        self._today = today or (lambda: datetime.now(timezone.utc).date())
        self.contexts = ContextExtractor(settings, cache, claude, geocoder, key_prefix=key_prefix)
        self.frequency = FrequencyCap(cache, settings.ads_frequency_cap, key_prefix=key_prefix)
        self._terms: _CatalogTerms | None = None
        self._scores_cache: LRUCache = LRUCache(SCORE_CACHE_SIZE)
        self._named_cache: LRUCache = LRUCache(SCORE_CACHE_SIZE)
        self._flight = SingleFlight()

    async def recommend(self, req: AdsRequest, catalog: LoadedCatalog, deadline: Deadline) -> dict[str, Any]:
        started = time.monotonic()
        trace = hashlib.sha256(req.thread_name.encode()).hexdigest()[:8]

        verdict = screen(t.content for t in req.conversation)
        if verdict.sensitive:
            log.info("ads[%s]: sensitive conversation (code screen: %s); no ads, no model call", trace,
                     verdict.category)
            return self._no_ads(req, catalog, "sensitive_conversation", verdict=verdict)

        with span("ads.context"):
            ctx = await self.contexts.extract(
                req, Deadline(max(0.0, deadline.remaining() - RESERVE_AFTER_CONTEXT_S)))
        reasons = list(ctx.reasons)
        if ctx.sensitive:
            log.info("ads[%s]: the model flagged the conversation as sensitive (%s); no ads", trace,
                     ctx.sensitive_category)
            return self._no_ads(req, catalog, "sensitive_conversation", reasons=reasons,
                                verdict=SafetyVerdict(True, ctx.sensitive_category or "other", "model"))

        # Context terms that name a catalog id are dropped: no user asks for "gl-archived-01"; a model
        # repeating an injected request does.
        terms = tuple(t for t in ctx.terms() if t not in catalog.ads and t.upper() not in catalog.ads)
        query = " ".join(terms)
        geo_job = (self.geocoder.geocode(ctx.place, deadline, country_hint=ctx.place_country)
                   if ctx.place and self.geocoder is not None else _no_place())
        scores_job = self._scores_within(catalog, query, deadline) if query else _no_scores()
        geo, (scores, score_reasons) = await asyncio.gather(_traced("ads.geocode", geo_job),
                                                            _traced("ads.retrieval", scores_job))
        reasons.extend(geo.reasons)
        reasons.extend(score_reasons)
        place = geo.place

        with span("ads.eligibility"):
            today = self._today()
            above_floor = self._relevant(catalog, terms, scores, cacheable=not score_reasons)
            if above_floor and health_risk(t.content for t in req.conversation):
                # Medicines or doses: only ads the context names (a catalog term), never a filler ad that
                # is merely close in meaning, such as a global pharmacy next to a question about doses.
                above_floor = tuple(item for item in above_floor if item[2])
            relevant = len(above_floor)
            candidates: list[Candidate] = []
            for ad, relevance, matched in above_floor:
                verdict_e = check(ad, today=today, language=ctx.language, place=place)
                if verdict_e.ok:
                    candidates.append(Candidate(ad, relevance, list(matched), verdict_e.distance_km))
            ranked = rank(candidates, floor=self.settings.ads_relevance_floor)

        if self.rerank and self.claude is not None and len(ranked) > self.settings.ads_max:
            ranked, rerank_reasons = await claude_rerank(
                self.claude, ranked, terms, Deadline(max(0.0, deadline.remaining() - RESERVE_AFTER_RERANK_S)))
            reasons.extend(rerank_reasons)

        shown: list[Candidate] = []
        capped = 0
        if ranked and not deadline.expired:
            # One atomic script claims the best ads in rank order, skipping those at their cap.
            with span("ads.frequency_cap"):
                claims = await self.frequency.claim_first(req.thread_name, [c.ad.id for c in ranked],
                                                          self.settings.ads_max)
            for cand, ok in zip(ranked, claims):
                if ok:
                    shown.append(cand)
                else:
                    capped += 1

        no_ads_reason = None
        if not shown:
            if not query:
                no_ads_reason = "no_context"
            elif "retrieval:deadline" in reasons:
                no_ads_reason = "deadline"
            elif "retrieval:error" in reasons:
                no_ads_reason = "retrieval_failed"
            elif relevant == 0:
                no_ads_reason = "no_relevant_ads"
            elif not ranked:
                no_ads_reason = "no_eligible_ads"
            elif capped:
                no_ads_reason = "frequency_capped"
            else:
                no_ads_reason = "deadline"
        response = self._response(req, catalog, ctx, place, reasons, shown, no_ads_reason)
        log.info("ads[%s]: context=%s place=%s relevant=%d eligible=%d capped=%d shown=%s reasons=%s in %.0f ms",
                 trace, ctx.source, place.name if place else None, relevant, len(ranked), capped,
                 [c.ad.id for c in shown], reasons, (time.monotonic() - started) * 1000)
        return response

    # -- retrieval ------------------------------------------------------------------
    async def _scores_within(self, catalog: LoadedCatalog, query: str,
                             deadline: Deadline) -> tuple[list[tuple[str, float]], tuple[str, ...]]:
        try:
            return await deadline.run(self._scores(catalog, query), reserve_s=RESERVE_AFTER_RETRIEVAL_S), ()
        except asyncio.TimeoutError:
            log.warning("catalog retrieval did not finish within the request deadline")
            return [], ("retrieval:deadline",)
        except Exception:  # a broken index must not fail the request: no ads, said why, logged in full
            log.exception("catalog retrieval failed")
            return [], ("retrieval:error",)

    async def _scores(self, catalog: LoadedCatalog, query: str) -> list[tuple[str, float]]:
        """Cosine similarity of the context with every ad text.

        Encoding the query is the costly part (a few ms of CPU), and the same topics come back
        again and again: results are kept per (catalog version, query) in an in-process LRU, and
        identical concurrent queries share one computation. It runs off the event loop.
        """
        key = (catalog.version, query)
        cached = self._scores_cache.get(key)
        if cached is not None:
            return cached
        top_k = min(len(catalog.ads), MAX_CANDIDATES)

        def run() -> list[tuple[str, float]]:
            return [(h.id, float(h.score)) for h in catalog.index.search(query, top_k=top_k, method="dense")]

        async def compute() -> list[tuple[str, float]]:
            result = await asyncio.get_running_loop().run_in_executor(self.executor, run)
            self._scores_cache[key] = result
            return result

        return await self._flight.run(f"{catalog.version}\x00{query}", compute)

    def _relevant(self, catalog: LoadedCatalog, terms: tuple[str, ...], scores: list[tuple[str, float]], *,
                  cacheable: bool) -> tuple[tuple[Any, float, tuple[str, ...]], ...]:
        """(ad, relevance, matched catalog terms) of the ads at or above the relevance floor, best scores
        first. A function of (catalog, context terms) only: kept per catalog version and terms, since the
        same topics come back across users (the per-request rules, dates, language and geo, come after)."""
        floor = self.settings.ads_relevance_floor
        key = ("relevant", catalog.version, terms, floor)
        out = self._named_cache.get(key) if cacheable else None
        if out is not None:
            return out
        catalog_terms = self._catalog_terms(catalog)
        named = self._named_terms(catalog_terms, terms)  # the catalog terms the context names
        found = []
        for ad_id, cosine in scores:
            ad = catalog.ads.get(ad_id)
            if ad is None:
                continue
            matched = tuple(t for t in catalog_terms.by_ad[ad_id] if t in named)
            relevance = round(DENSE_WEIGHT * max(0.0, cosine) + LEXICAL_WEIGHT * (1.0 if matched else 0.0), 4)
            if relevance >= floor:
                found.append((ad, relevance, matched))
        out = tuple(found)
        if cacheable:
            self._named_cache[key] = out
        return out

    # -- responses ------------------------------------------------------------------
    def _named_terms(self, catalog_terms: _CatalogTerms, terms: tuple[str, ...]) -> frozenset[str]:
        key = (catalog_terms.version, terms)
        named = self._named_cache.get(key)
        if named is None:
            named = self._named_cache[key] = frozenset(TermMatcher(terms).match(catalog_terms.vocabulary))
        return named

    def _catalog_terms(self, catalog: LoadedCatalog) -> _CatalogTerms:
        if self._terms is None or self._terms.version != catalog.version:
            self._terms = _CatalogTerms.of(catalog)
        return self._terms

    def _context_view(self, catalog: LoadedCatalog, ctx: Context | None, place: Place | None) -> dict[str, Any]:
        """What the response says about the context: topics as catalog terms (never the model's own words),
        the geocoded place (from GeoNames / Azure Maps, not the model's mention), a checked language code."""
        if ctx is None:
            return {"topics": [], "place": None, "language": None}
        catalog_terms = self._catalog_terms(catalog)
        key = ("topics", catalog_terms.version, ctx.topics)
        topics = self._named_cache.get(key)
        if topics is None:  # topics repeat across users: matched against the vocabulary once
            topics = self._named_cache[key] = tuple(
                TermMatcher(ctx.topics).match(catalog_terms.vocabulary)[:MAX_TOPICS_SHOWN])
        return {"topics": list(topics), "place": place.public() if place else None, "language": ctx.language}

    def _response(self, req: AdsRequest, catalog: LoadedCatalog, ctx: Context | None, place: Place | None,
                  reasons: list[str], shown: list[Candidate], no_ads_reason: str | None) -> dict[str, Any]:
        reasons = list(dict.fromkeys(reasons))
        out: dict[str, Any] = {
            "thread_name": req.thread_name,
            "ads": [{
                "id": c.ad.id,
                "advertiser": c.ad.advertiser,
                "title": c.ad.title,
                "body": c.ad.body,
                "url": c.ad.url,
                "label": LABEL,
                "impression_id": uuid.uuid4().hex,
                "why": {"matched_topics": list(c.matched_topics), "distance_km": c.distance_km},
            } for c in shown],
            "degraded": bool(reasons),
            "reasons": reasons,
            "catalog_version": catalog.version,
            "context": self._context_view(catalog, ctx, place),
        }
        if no_ads_reason:
            out["no_ads_reason"] = no_ads_reason
        return out

    def _no_ads(self, req: AdsRequest, catalog: LoadedCatalog, why: str, *, ctx: Context | None = None,
                reasons: list[str] | None = None, verdict: SafetyVerdict | None = None) -> dict[str, Any]:
        out = self._response(req, catalog, ctx, None, reasons or [], [], why)
        if verdict is not None:
            out["safety"] = {"category": verdict.category, "source": verdict.source}
        return out


async def _no_place() -> GeoResult:
    return GeoResult(None)


async def _no_scores() -> tuple[list[tuple[str, float]], tuple[str, ...]]:
    return [], ()
