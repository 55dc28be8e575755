"""Geocoding: the offline GeoNames geocoder on real names, and Azure Maps (fake) with its fallback."""

from __future__ import annotations

import asyncio

import time
from types import SimpleNamespace

import aiohttp
import pytest
import pytest_asyncio

from core.adapters.maps import AzureMapsGeocoder, MapsError
from core.ads.geo import Geocoder, haversine_km, offline_geocoder
from core.deadline import Deadline
from core.settings import Settings


@pytest.fixture(scope="module")
def offline():
    return offline_geocoder().load()


@pytest.mark.parametrize("query,hint,country,region", [
    ("Paris", None, "FR", "FR-11"),
    ("Paris, France", None, "FR", "FR-11"),
    ("Paris, Texas", None, "US", "US-TX"),
    ("Paris, TX", None, "US", "US-TX"),
    ("Paris TX", None, "US", "US-TX"),
    ("Paris", "US", "US", "US-TX"),
    ("London", None, "GB", "GB-ENG"),
    ("London, Ontario", None, "CA", "CA-ON"),
    ("Sydney", None, "AU", "AU-NSW"),
    ("Toronto", None, "CA", "CA-ON"),
    ("New York", None, "US", "US-NY"),
    ("München", None, "DE", None),
    ("Tokyo", None, "JP", None),
    ("東京", None, "JP", None),
])
def test_offline_real_names(offline, query, hint, country, region):
    place = offline.geocode(query, hint)
    assert place is not None and place.country == country
    if region:
        assert place.region == region
    assert not place.fuzzy


def test_paris_vs_paris_texas_are_far_apart(offline):
    fr, tx = offline.geocode("Paris"), offline.geocode("Paris, Texas")
    assert haversine_km(fr.lat, fr.lon, tx.lat, tx.lon) > 7000
    assert abs(fr.lat - 48.85) < 0.1 and abs(tx.lon + 95.55) < 0.1


@pytest.mark.parametrize("typo,name", [("Pariss", "Paris"), ("Torronto", "Toronto"), ("Barcelonna", "Barcelona"),
                                       ("Frankfrt", "Frankfurt am Main")])
def test_offline_misspelt_city(offline, typo, name):
    place = offline.geocode(typo)
    assert place is not None and place.name == name and place.fuzzy


def test_offline_unknown_place(offline):
    assert offline.geocode("Qwxzzy") is None
    assert offline.geocode("") is None


@pytest.mark.parametrize("text,mention", [
    ("I'm in Paris and need a pharmacy", "Paris"),
    ("Any good dentist near Paris, Texas?", "Paris, Texas"),
    ("Je cherche une pharmacie à Lyon", "Lyon"),
    ("busco un dentista en Madrid", "Madrid"),
    ("I moved from Berlin to London, Ontario last year", "London, Ontario"),
    ("Nice weather today. Can you recommend a phone repair shop?", None),
])
def test_find_mention(offline, text, mention):
    assert offline.find_mention(text) == mention


# --- Azure Maps ---------------------------------------------------------------------------------------
def maps_settings(fake_maps, **extra) -> Settings:
    env = {"AZURE_MAPS_BASE_URL": fake_maps.url, "MAPS_TIMEOUT_S": "0.5", **extra}
    return Settings.from_env(env)


@pytest_asyncio.fixture(loop_scope="session")
async def session():
    s = aiohttp.ClientSession()
    yield s
    await s.close()


async def test_azure_maps_key_auth_and_lon_lat_order(fake_maps, session):
    maps = AzureMapsGeocoder(maps_settings(fake_maps, AZURE_MAPS_KEY="k-123"), session)
    place = await maps.geocode("Paris, TX", Deadline(2))
    assert (place.lat, place.lon) == (33.6609, -95.5555)  # GeoJSON [lon, lat] read the right way round
    assert place.country == "US" and place.region == "US-TX"
    (req,) = fake_maps.requests
    assert req.query["api-version"] == "2025-01-01" and req.query["top"] == "1"
    assert req.query["query"] == "Paris, TX" and req.headers["subscription-key"] == "k-123"
    assert "subscription-key" not in req.query  # the key stays out of URLs and logs
    assert await maps.geocode("Atlantis", Deadline(2)) is None


async def test_azure_maps_entra_auth(fake_maps, session):
    calls = []

    class Credential:  # stands in for azure.identity's DefaultAzureCredential (external)
        async def get_token(self, scope):
            calls.append(scope)
            return SimpleNamespace(token="tok-abc", expires_on=time.time() + 3600)

        async def close(self):
            pass

    settings = maps_settings(fake_maps, AZURE_MAPS_CLIENT_ID="maps-client-id")
    maps = AzureMapsGeocoder(settings, session, credential=Credential())
    assert (await maps.geocode("Berlin", Deadline(2))).country == "DE"
    await maps.geocode("London", Deadline(2))
    assert calls == ["https://atlas.microsoft.com/.default"]  # token cached
    h = fake_maps.requests[0].headers
    assert h["authorization"] == "Bearer tok-abc" and h["x-ms-client-id"] == "maps-client-id"


async def test_azure_maps_errors(fake_maps, session):
    maps = AzureMapsGeocoder(maps_settings(fake_maps, AZURE_MAPS_KEY="k"), session)
    fake_maps.push({"status": 500})
    with pytest.raises(MapsError, match="http_500"):
        await maps.geocode("Paris", Deadline(2))
    fake_maps.push({"features": [{"geometry": {"coordinates": "nope"}}]})
    with pytest.raises(MapsError, match="bad_response"):
        await maps.geocode("Paris", Deadline(2))


async def test_maps_timeout_falls_back_offline_marked_degraded(fake_maps, session, redis_cache, key_prefix):
    settings = maps_settings(fake_maps, AZURE_MAPS_KEY="k")
    geo = Geocoder(settings, redis_cache, session, key_prefix=f"{key_prefix}:geo")
    await geo.warm()
    fake_maps.push({"hang": True})
    t0 = time.monotonic()
    result = await geo.geocode("Paris, Texas", Deadline(3))
    assert time.monotonic() - t0 < settings.maps_timeout_s + 0.3
    assert result.degraded and result.reasons == ("geocode:azure_maps_timeout",)
    assert result.place.source == "offline" and result.place.region == "US-TX"
    # not cached: the next request asks Azure Maps again, and its answer is cached
    ok = await geo.geocode("Paris, Texas", Deadline(3))
    assert not ok.degraded and ok.place.source == "azure_maps"
    n = len(fake_maps.requests)
    again = await geo.geocode("Paris, Texas", Deadline(3))
    assert again.place == ok.place and len(fake_maps.requests) == n
    assert geo.status()["mode"] == "azure_maps"


async def test_maps_timeout_is_capped_by_the_deadline(fake_maps, session, redis_cache, key_prefix):
    settings = maps_settings(fake_maps, AZURE_MAPS_KEY="k", MAPS_TIMEOUT_S="5")
    geo = Geocoder(settings, redis_cache, session, key_prefix=f"{key_prefix}:geo")
    await geo.warm()
    fake_maps.push({"hang": True})
    t0 = time.monotonic()
    result = await geo.geocode("London", Deadline(0.4))
    assert time.monotonic() - t0 < 0.6
    assert result.degraded and result.place.country == "GB"


async def test_offline_results_are_cached_in_redis(redis_cache, key_prefix):
    geo = Geocoder(Settings.from_env({}), redis_cache, None, key_prefix=f"{key_prefix}:geo")
    assert geo.mode == "offline"
    first = await geo.geocode("Pariss", Deadline(2))
    keys = [k async for k in redis_cache.redis.scan_iter(match=f"{key_prefix}:geo*")]
    assert len(keys) == 1
    fresh = Geocoder(Settings.from_env({}), Cache_from(redis_cache), None, key_prefix=f"{key_prefix}:geo")
    assert (await fresh.geocode("Pariss", Deadline(2))).place == first.place


def Cache_from(cache):  # noqa: N802 - a fresh in-process level over the same Redis
    from core.adapters.cache import Cache

    return Cache(cache.redis, op_timeout_s=1.0)


async def test_first_request_does_not_wait_past_its_deadline_for_the_city_table(redis_cache, key_prefix):
    from core.ads.geo import OfflineGeocoder

    geo = Geocoder(Settings.from_env({}), redis_cache, None, offline=OfflineGeocoder(),
                   key_prefix=f"{key_prefix}:geo")
    stalls = []  # the JSON parse holds the GIL in one call: measure how long the loop was stalled

    async def watch():
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            stalls.append(now - last - 0.005)
            last = now

    watcher = asyncio.ensure_future(watch())
    t0 = time.monotonic()
    result = await geo.geocode("Paris", Deadline(0.2))
    elapsed = time.monotonic() - t0
    watcher.cancel()
    assert elapsed < 0.2 + max(stalls, default=0) + 0.1  # the deadline, plus at most one GIL stall
    assert result.place is None and result.reasons == ("geocode:offline_loading",)
    assert await geo.find_mention("a pharmacy in Paris", Deadline(0.05)) is None
    await geo.warm()  # the load went on in the background; it is shared, not restarted
    assert (await geo.geocode("Paris", Deadline(1))).place.country == "FR"
