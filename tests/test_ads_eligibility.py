"""Eligibility rules in code, and the frequency cap counted atomically in the real Redis."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from core.adapters.cache import Cache
from core.ads.catalog import Ad, GeoPoint, GeoTargets
from core.ads.eligibility import FrequencyCap, check
from core.ads.geo import Place

TODAY = date(2026, 6, 15)
PARIS = Place("Paris", 48.8534, 2.3488, "FR", "FR-11")
PARIS_TX = Place("Paris", 33.6609, -95.5555, "US", "US-TX")
LYON = Place("Lyon", 45.764, 4.8357, "FR", "FR-84")


def ad(**over):
    base = dict(id="a", advertiser="A", title="T", body="B", url="https://a.example/", keywords=("k",), bid_cpm=1.0)
    base.update(over)
    return Ad(**base)


def paris_point(radius=15):
    return GeoTargets(points=(GeoPoint(lat=48.8566, lon=2.3522, radius_km=radius),))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(status="paused"), "paused"),
    (dict(status="archived"), "archived"),
    (dict(start_date=date(2026, 7, 1)), "not_started"),
    (dict(end_date=date(2026, 6, 14)), "ended"),
    (dict(languages=("de",)), "language"),
    (dict(geo=paris_point()), ""),
])
def test_static_rules(kwargs, expected):
    e = check(ad(**kwargs), today=TODAY, language="fr", place=PARIS)
    assert e.ok == (expected == "") and e.reason == expected


def test_dates_are_inclusive_and_unknown_language_is_allowed():
    assert check(ad(start_date=TODAY, end_date=TODAY), today=TODAY, language=None, place=None).ok
    assert check(ad(languages=("fr",)), today=TODAY, language=None, place=None).ok


def test_geo_radius_country_region_and_everywhere():
    near = check(ad(geo=paris_point()), today=TODAY, language=None, place=PARIS)
    assert near.ok and near.distance_km is not None and near.distance_km < 1
    assert check(ad(geo=paris_point()), today=TODAY, language=None, place=PARIS_TX).reason == "geo"
    assert check(ad(geo=paris_point()), today=TODAY, language=None, place=LYON).reason == "geo"
    assert check(ad(geo=paris_point()), today=TODAY, language=None, place=None).reason == "geo_unknown"
    assert check(ad(geo=GeoTargets(countries=("FR",))), today=TODAY, language=None, place=LYON).ok
    assert not check(ad(geo=GeoTargets(countries=("FR",))), today=TODAY, language=None, place=PARIS_TX).ok
    assert check(ad(geo=GeoTargets(regions=("US-TX",))), today=TODAY, language=None, place=PARIS_TX).ok
    assert not check(ad(geo=GeoTargets(regions=("US-TX",))), today=TODAY, language=None, place=PARIS).ok
    assert check(ad(), today=TODAY, language=None, place=None).ok  # no geo: everywhere


async def test_frequency_cap_is_atomic_in_redis(redis_cache, key_prefix):
    cap = FrequencyCap(redis_cache, 3, key_prefix=key_prefix)
    results = await asyncio.gather(*[cap.claim("thread-1", "ad-1") for _ in range(40)])
    assert sum(results) == 3
    assert 3 <= await cap.shown("thread-1", "ad-1") <= 40  # concurrent losers at the cap may count once
    assert not await cap.claim("thread-1", "ad-1")
    before = await cap.shown("thread-1", "ad-1")
    assert not await cap.claim("thread-1", "ad-1")
    assert await cap.shown("thread-1", "ad-1") == before  # an ad at its cap is not counted again
    assert await cap.claim("thread-2", "ad-1")  # per thread
    assert await cap.claim("thread-1", "ad-2")  # per ad
    ttl = await redis_cache.redis.ttl(cap.key("thread-1", "ad-1"))
    assert 86400 < ttl <= 2 * 86400
    key = cap.key("thread-1", "ad-1")
    assert key.startswith(f"{key_prefix}:freq:") and "thread-1" not in key  # thread names are hashed


async def test_frequency_cap_still_holds_per_process_without_redis():
    import redis.asyncio as aioredis

    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.1)
    cache = Cache(dead, op_timeout_s=0.2)
    cap = FrequencyCap(cache, 2)
    assert [await cap.claim("t", "a") for _ in range(4)] == [True, True, False, False]
    await dead.aclose()


async def test_claim_first_claims_in_order_skipping_capped_in_one_call(redis_cache, key_prefix):
    cap = FrequencyCap(redis_cache, 1, key_prefix=key_prefix)
    assert await cap.claim("t", "b")  # b is at its cap
    assert await cap.claim_first("t", ["a", "b", "c", "d"], 2) == [True, False, True]  # d not examined
    assert [await cap.shown("t", x) for x in "abcd"] == [1, 1, 1, 0]  # only shown ads counted
    assert await cap.claim_first("t", ["a", "b", "c", "d"], 3) == [False, False, False, True]
    key = cap.key("t", "a")
    assert 86400 < await redis_cache.redis.ttl(key) <= 2 * 86400
    assert key.count("{") == 1 and key.split("}")[1] == ":a"  # one thread's keys share a cluster slot


async def test_claim_first_without_redis_keeps_the_same_rule():
    import redis.asyncio as aioredis

    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.1)
    cap = FrequencyCap(Cache(dead, op_timeout_s=0.2), 1)
    assert await cap.claim_first("t", ["a", "b"], 1) == [True]
    assert await cap.claim_first("t", ["a", "b"], 2) == [False, True]
    assert await cap.claim_first("t", ["a", "b"], 2) == [False, False]
    await dead.aclose()
