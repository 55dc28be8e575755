"""Faults and hot reload on the search path, driven over HTTP while they happen.

Each test runs a steady stream of /api/search requests through the local host
against real Redis and Azurite processes, injects the fault, and asserts the
number of failed requests and the worst latency.
"""

import asyncio
import json
import shutil

import pytest

from core.adapters.blob import publish_artifact, sync_service_client
from core.artifacts import ArtifactError
from tests.fixtures.app import app_settings
from tests.fixtures.services import AzuriteProcess, RedisProcess, free_port
from tests.fixtures.traffic import Traffic

QUERIES = [("search", {"query": q, "top_k": 5}) for q in
           ("reset my password", "wifi keeps dropping", "passport renewal", "sore throat remedies",
            "how to budget", "replace a tyre", "cat vomiting", "jet lag tips")]


def _versioned_copy(bundle, dest, version):
    shutil.copytree(bundle, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["version"] = version
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


async def _until(predicate, timeout_s=20.0, every=0.1):
    for _ in range(int(timeout_s / every)):
        if await predicate():
            return True
        await asyncio.sleep(every)
    return False


async def test_redis_stopped_mid_run_then_started_again(make_runtime, serve, mini_bundle, tmp_path):
    redis = RedisProcess().start()
    settings = app_settings(mini_bundle, redis.url, tmp_path)
    rt = await make_runtime(settings)
    base = await serve(settings)
    assert await rt.warmed(60)
    traffic = Traffic(base)
    # Distinct queries, so that every request reads and writes Redis (none is an in-process hit).
    distinct = [("search", {"query": f"{job[1]['query']} {i}", "top_k": 5}) for i, job in enumerate(QUERIES * 300)]
    for i in range(0, len(distinct), 4):  # and ads conversations: frequency caps and context live in Redis too
        distinct[i] = ("ads", {"thread_name": f"redis-{i}", "conversation": [
            {"role": "user", "content": "any pharmacy open late in London? I have a cold"}]})
    traffic.start(distinct, workers=4, max_seconds=30)
    await asyncio.sleep(1.0)
    redis.stop()
    await asyncio.sleep(2.0)
    during = traffic.count()
    redis.start()
    resumed = await _until(lambda: _redis_has_search_keys(rt), timeout_s=15)
    await asyncio.sleep(0.5)
    outcomes = await traffic.stop()
    redis.stop()
    assert len(outcomes) > during > 20
    assert traffic.failed() == [], traffic.failed()[:3]
    assert traffic.worst_ms() < 2000
    assert resumed, "caching did not resume in Redis after it came back"
    assert rt.cache.redis_up


async def _redis_has_search_keys(rt):
    try:
        return bool(await rt.cache.redis.keys("search:v1:*"))
    except Exception:
        return False


async def test_blob_unreachable_at_cold_start_then_reachable(make_runtime, serve, mini_bundle, tmp_path):
    port = free_port()
    azurite = AzuriteProcess(tmp_path / "azurite", port=port)
    settings = app_settings(mini_bundle, "", tmp_path, BLOB_CONNECTION_STRING=azurite.connection_string,
                            INDEX_CONTAINER="coldstart", BLOB_TIMEOUT_S="3", REDIS_URL="")
    rt = await make_runtime(settings)
    base = await serve(settings)
    traffic = Traffic(base)
    traffic.start(QUERIES, workers=2, max_seconds=60, pause_s=0.05)
    assert await _until(lambda: _state_is(rt, "failed"), timeout_s=15)
    await asyncio.sleep(1.0)
    azurite.start()
    publish_artifact(settings, mini_bundle, "coldstart", progress=False)
    loaded = await _until(lambda: _ready(rt), timeout_s=40)
    await asyncio.sleep(0.5)
    await traffic.stop()
    azurite.stop()
    assert loaded, rt.index.status()
    not_ok = traffic.failed(allowed=(200, 503))
    assert not_ok == [], not_ok[:3]
    unavailable = [o for o in traffic.outcomes if o.status == 503]
    assert unavailable and all(o.body["error"]["code"] == "not_ready" for o in unavailable)
    assert any(o.status == 200 for o in traffic.outcomes)
    assert rt.index.load_count == 1
    assert traffic.worst_ms() < 8000  # the request deadline bounds even a cold start


async def _ready(rt):
    return rt.index.status()["state"] == "ready"


async def _state_is(rt, state):
    return rt.index.status()["state"] == state


@pytest.mark.parametrize("damage", ["tampered", "truncated", "manifest-checksum"])
async def test_damaged_new_version_is_never_served(damage, make_runtime, serve, mini_bundle, azurite, tmp_path):
    container = f"damaged-{damage}"
    settings = app_settings(mini_bundle, "", tmp_path, BLOB_CONNECTION_STRING=azurite.connection_string,
                            INDEX_CONTAINER=container, REDIS_URL="")
    publish_artifact(settings, _versioned_copy(mini_bundle, tmp_path / "v1", "v1"), container, progress=False)
    rt = await make_runtime(settings)
    base = await serve(settings)
    await rt.index.get(wait_s=30)
    traffic = Traffic(base)
    traffic.start(QUERIES, workers=2, max_seconds=30)
    publish_artifact(settings, _versioned_copy(mini_bundle, tmp_path / "v2", "v2"), container, progress=False)
    cc = sync_service_client(settings).get_container_client(container)
    if damage == "tampered":
        name = "v2/embeddings.npy" if cc.get_blob_client("v2/embeddings.npy").exists() else None
        name = name or next(b.name for b in cc.list_blobs("v2/") if not b.name.endswith("manifest.json"))
        data = bytearray(cc.download_blob(name).readall())
        data[-1] ^= 0xFF
        cc.upload_blob(name, bytes(data), overwrite=True)
    elif damage == "truncated":
        name = next(b.name for b in cc.list_blobs("v2/") if b.size > 100 and not b.name.endswith("manifest.json"))
        data = cc.download_blob(name).readall()
        cc.upload_blob(name, data[: len(data) // 2], overwrite=True)
    else:
        manifest = json.loads(cc.download_blob("v2/manifest.json").readall())
        manifest["created_at"] = "tampered"
        cc.upload_blob("v2/manifest.json", json.dumps(manifest).encode(), overwrite=True)
    with pytest.raises(ArtifactError):
        await rt.index.refresh_now()
    await asyncio.sleep(0.5)
    await traffic.stop()
    assert rt.index.version == "v1"
    assert traffic.failed() == []
    assert {o.body["index_version"] for o in traffic.outcomes} == {"v1"}
    assert not (settings.cache_path / container / "v2").exists()


async def test_hot_reload_swaps_versions_under_traffic(make_runtime, serve, mini_bundle, mini_corpus, azurite,
                                                      redis_url, tmp_path):
    from core.search.build import build_bundle

    container = "hotreload"
    settings = app_settings(mini_bundle, redis_url, tmp_path, BLOB_CONNECTION_STRING=azurite.connection_string,
                            INDEX_CONTAINER=container, REFRESH_INTERVAL_S="0.3")
    publish_artifact(settings, _versioned_copy(mini_bundle, tmp_path / "v1", "v1"), container, progress=False)
    rt = await make_runtime(settings)
    base = await serve(settings)
    await rt.index.get(wait_s=30)
    probe = ("search", {"query": "zanzibarquux telescope", "top_k": 3})
    traffic = Traffic(base)
    traffic.start(QUERIES + [probe], workers=4, max_seconds=60)
    await asyncio.sleep(1.0)
    corpus = tmp_path / "v2.jsonl"
    new_doc = {"id": "new-doc", "title": "The zanzibarquux telescope", "url": "https://example.com/new",
               "text": "The zanzibarquux telescope is a fictional instrument used only in this reload test."}
    corpus.write_text(mini_corpus.read_text().rstrip("\n") + "\n" + json.dumps(new_doc) + "\n")
    build_bundle(corpus, tmp_path / "v2", version="v2", progress=False)
    publish_artifact(settings, tmp_path / "v2", container, progress=False)
    swapped = await _until(lambda: _version_is(rt, "v2"), timeout_s=20)
    await asyncio.sleep(1.0)
    outcomes = await traffic.stop()
    assert swapped
    assert traffic.failed() == [], traffic.failed()[:3]
    versions = [o.body["index_version"] for o in outcomes]
    assert versions[0] == "v1" and versions[-1] == "v2"
    probes = [o.body for o in outcomes if o.body["query"].startswith("zanzibarquux")]
    after = [b for b in probes if b["index_version"] == "v2"]
    assert after and all(b["results"][0]["id"] == "new-doc" for b in after)
    before = [b for b in probes if b["index_version"] == "v1"]
    assert all(r["id"] != "new-doc" for b in before for r in b["results"])  # no stale result outlives the swap
    health = await rt.health()
    assert health["index"]["version"] == "v2"


async def _version_is(rt, version):
    return rt.index.version == version


async def test_catalog_hot_reload_under_ads_traffic(make_runtime, serve, mini_bundle, azurite, redis_url, tmp_path):
    """A new ads catalog published to Blob is picked up without a restart; no request fails meanwhile."""
    from core.ads.catalog import build_catalog_artifact
    from core.settings import PROJECT_ROOT

    settings = app_settings(mini_bundle, redis_url, tmp_path, BLOB_CONNECTION_STRING=azurite.connection_string,
                            INDEX_CONTAINER="hot-index", ADS_CONTAINER="hot-ads", REFRESH_INTERVAL_S="0.3")
    publish_artifact(settings, _versioned_copy(mini_bundle, tmp_path / "i1", "i1"), "hot-index", progress=False)
    build_catalog_artifact(PROJECT_ROOT / "data" / "ads_catalog.jsonl", tmp_path / "c1", version="c1")
    publish_artifact(settings, tmp_path / "c1", "hot-ads", progress=False)
    rt = await make_runtime(settings)
    base = await serve(settings)
    assert await rt.warmed(60)
    assert rt.catalog.version == "c1"
    conv = [{"role": "user", "content": "my zorblax gadget broke, where can I get a zorblax repaired in London?"}]
    traffic = Traffic(base)
    traffic.start([("ads", {"thread_name": f"hot-{i}", "conversation": conv}) for i in range(500)],
                  workers=3, max_seconds=40)
    await asyncio.sleep(1.0)
    new_ad = {"id": "zz-zorblax-01", "advertiser": "Zorblax Fixers", "title": "Zorblax repair in London",
              "body": "Same-day zorblax gadget repair.", "url": "https://zorblax.example/",
              "keywords": ["zorblax", "zorblax repair", "gadget repair"], "categories": ["repair"],
              "languages": ["en"], "geo": {"points": [{"lat": 51.5074, "lon": -0.1278, "radius_km": 50}]},
              "status": "active", "bid_cpm": 9.0, "priority": 1, "start_date": "2025-01-01",
              "end_date": "2030-12-31"}
    corpus = tmp_path / "c2.jsonl"
    corpus.write_text((PROJECT_ROOT / "data" / "ads_catalog.jsonl").read_text().rstrip("\n") + "\n"
                      + json.dumps(new_ad) + "\n")
    build_catalog_artifact(corpus, tmp_path / "c2", version="c2")
    publish_artifact(settings, tmp_path / "c2", "hot-ads", progress=False)
    swapped = await _until(lambda: _catalog_is(rt, "c2"), timeout_s=20)
    await asyncio.sleep(1.0)
    outcomes = await traffic.stop()
    assert swapped, rt.catalog.status()
    assert traffic.failed() == [], traffic.failed()[:3]
    versions = [o.body["catalog_version"] for o in outcomes]
    assert versions[0] == "c1" and versions[-1] == "c2"
    shown_before = {a["id"] for o in outcomes if o.body["catalog_version"] == "c1" for a in o.body["ads"]}
    shown_after = {a["id"] for o in outcomes if o.body["catalog_version"] == "c2" for a in o.body["ads"]}
    assert "zz-zorblax-01" not in shown_before and "zz-zorblax-01" in shown_after


async def _catalog_is(rt, version):
    return rt.catalog is not None and rt.catalog.version == version
