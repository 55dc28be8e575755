"""The function app's handlers, called directly with azure.functions.HttpRequest, over real components."""

import asyncio
import json
import subprocess
import sys

import azure.functions as func
import pytest

import function_app
from core.devhost import functions_of
from core.settings import PROJECT_ROOT


def functions():
    return {f.get_function_name(): f for f in functions_of(function_app.app)}


def post(route: str, body, content_type="application/json", headers=None) -> func.HttpRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return func.HttpRequest("POST", f"http://localhost/api/{route}", body=raw,
                            headers={"Content-Type": content_type, **(headers or {})})


async def loaded(runtime):
    """Wait for the index: on a busy machine its first load can outlast one request's deadline (a 503)."""
    await runtime.index.get(wait_s=180)


def payload(res: func.HttpResponse):
    return json.loads(res.get_body())


def test_routes_methods_and_auth_levels():
    fns = functions()
    auth = {name: str(f.get_trigger().auth_level).split(".")[-1] for name, f in fns.items()}
    assert auth == {"search": "FUNCTION", "ads": "FUNCTION", "health": "ANONYMOUS", "openapi": "ANONYMOUS"}
    methods = {name: sorted(str(getattr(m, "value", m)) for m in f.get_trigger().methods) for name, f in fns.items()}
    assert methods["search"] == ["GET", "POST"] and methods["ads"] == ["POST"]


async def test_search_returns_ranked_results_with_headers(runtime):
    await loaded(runtime)
    res = await function_app.search(post("search", {"query": "how do I reset my password", "top_k": 3}))
    assert res.status_code == 200, res.get_body()
    body = payload(res)
    assert 1 <= len(body["results"]) <= 3
    first = body["results"][0]
    assert set(first) >= {"id", "title", "url", "snippet", "score", "bm25_rank", "dense_rank"}
    assert body["index_version"] == runtime.index.version
    assert len({r["id"] for r in body["results"]}) == len(body["results"])  # one entry per document
    assert res.headers["X-Process-Time"].endswith("ms")
    assert len(res.headers["X-Request-Id"]) >= 16


async def test_request_id_is_propagated(runtime):
    await loaded(runtime)
    res = await function_app.search(post("search", {"query": "x"}, headers={"X-Request-Id": "abc-123"}))
    assert res.headers["X-Request-Id"] == "abc-123"


async def test_get_search_for_quick_tries(runtime):
    await loaded(runtime)
    req = func.HttpRequest("GET", "http://localhost/api/search", params={"q": "password", "top_k": "2"}, body=b"")
    res = await function_app.search(req)
    assert res.status_code == 200 and len(payload(res)["results"]) <= 2


async def test_second_identical_search_is_cached_in_redis(runtime):
    await loaded(runtime)
    q = {"query": "  Password   RESET ", "top_k": 4}
    first = payload(await function_app.search(post("search", q)))
    second = payload(await function_app.search(post("search", {"query": "password reset", "top_k": 4})))
    assert first["cached"] is False and second["cached"] is True
    assert second["results"] == first["results"]
    keys = await runtime.cache.redis.keys("search:v1:*")
    assert len(keys) == 1 and runtime.index.version in keys[0].decode()


async def test_results_survive_redis_being_unreachable(make_runtime, sample_bundle, tmp_path):
    from tests.fixtures.app import app_settings
    from tests.fixtures.services import free_port

    rt = await make_runtime(app_settings(sample_bundle, f"redis://127.0.0.1:{free_port()}/0", tmp_path))
    await loaded(rt)
    for _ in range(3):
        res = await function_app.search(post("search", {"query": "wifi router"}))
        assert res.status_code == 200
    assert rt.cache.status()["redis"] == "down"


@pytest.mark.parametrize("body,code", [
    (b"{not json", "invalid_json"),
    ([1, 2], "invalid_body"),
    ({}, "invalid_query"),
    ({"query": 42}, "invalid_query"),
    ({"query": "   "}, "invalid_query"),
    ({"query": "x" * 1001}, "query_too_long"),
    ({"query": "x", "top_k": 0}, "invalid_top_k"),
    ({"query": "x", "top_k": 51}, "invalid_top_k"),
    ({"query": "x", "top_k": True}, "invalid_type"),
    ({"query": "x", "top_k": 2.5}, "invalid_type"),
    ({"query": "x", "filters": "category=health"}, "invalid_filters"),
    ({"query": "x", "filters": {"category": {"nested": 1}}}, "invalid_filters"),
    ({"query": "x", "filters": {"category": []}}, "invalid_filters"),
    ({"query": "x", "answer": "yes"}, "invalid_type"),
    ({"query": "x", "colour": "red"}, "unknown_field"),
    (b"", "invalid_body"),
    (b"\xff\xfe{}", "invalid_encoding"),
])
async def test_bad_input_is_a_json_400(runtime, body, code):
    res = await function_app.search(post("search", body))
    assert res.status_code == 400
    err = payload(res)["error"]
    assert err["code"] == code and err["message"]


async def test_wrong_content_type_is_415_and_oversized_body_413(runtime):
    res = await function_app.search(post("search", {"query": "x"}, content_type="text/plain"))
    assert res.status_code == 415 and payload(res)["error"]["code"] == "unsupported_media_type"
    big = json.dumps({"query": "x", "pad": "y" * 300_000}).encode()
    res = await function_app.search(post("search", big))
    assert res.status_code == 413 and payload(res)["error"]["code"] == "payload_too_large"


async def test_filters_restrict_results(runtime):
    await loaded(runtime)
    res = await function_app.search(post("search", {"query": "help", "top_k": 20, "filters": {"category": "tech"}}))
    results = payload(res)["results"]
    assert results and all(r["metadata"]["category"] == "tech" for r in results)


async def test_health_reports_ready_index_and_cache(runtime):
    await loaded(runtime)
    res = await function_app.health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    body = payload(res)
    assert res.status_code == 200 and body["status"] == "ok"
    assert body["index"]["state"] == "ready" and body["index"]["version"] == runtime.index.version
    assert body["cache"]["redis"] == "up"
    assert await runtime.warmed(60)
    body = payload(await function_app.health(func.HttpRequest("GET", "http://localhost/api/health", body=b"")))
    assert body["warm"] is True and body["catalog"]["state"] == "ready"
    assert body["geocoder"] == {"mode": "offline", "offline_loaded": True}


async def test_concurrent_first_requests_load_the_index_once(runtime):
    reqs = [function_app.search(post("search", {"query": f"question {i}"})) for i in range(20)]
    results = await asyncio.gather(*reqs)
    assert all(r.status_code == 200 for r in results)
    assert runtime.index.load_count == 1


async def test_search_answers_503_with_retry_after_until_the_index_is_ready(make_runtime, tmp_path, redis_url):
    from tests.fixtures.app import app_settings

    missing = tmp_path / "no-index"
    await make_runtime(app_settings(missing, redis_url, tmp_path, SAMPLE_CORPUS=str(tmp_path / "none.jsonl")))
    res = await function_app.search(post("search", {"query": "x"}))
    assert res.status_code == 503 and int(res.headers["Retry-After"]) >= 1
    assert payload(res)["error"]["code"] == "not_ready"
    health = await function_app.health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    assert health.status_code == 503 and "none.jsonl" in payload(health)["reason"]


async def test_openapi_document_is_served_and_checked_in(runtime):
    res = await function_app.openapi(func.HttpRequest("GET", "http://localhost/api/openapi.json", body=b""))
    assert res.status_code == 200
    served = payload(res)
    assert served == json.loads((PROJECT_ROOT / "openapi.json").read_text())
    assert set(served["paths"]) == {"/search", "/ads", "/health", "/openapi.json"}


def test_import_never_raises_on_bad_configuration():
    env = {"PATH": "", "DEFAULT_TOP_K": "many", "BLOB_CONNECTION_STRING": "not a connection string",
           "REDIS_URL": "redis://127.0.0.1:1/0", "HF_HUB_OFFLINE": "1"}
    code = ("import function_app, sys; from core.runtime import get_runtime; rt = get_runtime(); "
            "print(rt.settings.errors); assert 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "DEFAULT_TOP_K" in out.stdout


async def test_identical_concurrent_searches_are_computed_once(runtime):
    await runtime.index.get()
    calls = []
    index = runtime.index.current
    original = index.search

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    index.search = counting  # an instance attribute shadows the method for this test only
    try:
        body = {"query": "single flight probe", "top_k": 5}
        results = await asyncio.gather(*(function_app.search(post("search", body)) for _ in range(20)))
    finally:
        del index.search
    assert all(r.status_code == 200 for r in results)
    assert calls == ["single flight probe"]
    assert runtime.search.flight.shared == 19
    assert len({json.dumps(payload(r)["results"]) for r in results}) == 1
