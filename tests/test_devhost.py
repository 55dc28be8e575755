"""The local host: function_app's handlers over real HTTP, with routePrefix and function keys as in Azure."""

import aiohttp

from tests.fixtures.app import KEY, app_settings


async def test_routes_keys_and_prefix_over_http(runtime, serve, sample_bundle, redis_url, tmp_path):
    base = await serve(app_settings(sample_bundle, redis_url, tmp_path))
    async with aiohttp.ClientSession() as http:
        # No key: 401 with a JSON error; wrong key likewise.
        async with http.post(f"{base}/api/search", json={"query": "passport"}) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
        async with http.post(f"{base}/api/search", json={"query": "passport"},
                             headers={"x-functions-key": "wrong"}) as r:
            assert r.status == 401
        # Header key and ?code= both work.
        async with http.post(f"{base}/api/search", json={"query": "passport"},
                             headers={"x-functions-key": KEY}) as r:
            assert r.status == 200
            body = await r.json()
            assert body["results"] and r.headers["X-Process-Time"] and r.headers["X-Request-Id"]
        async with http.get(f"{base}/api/search", params={"q": "passport", "code": KEY}) as r:
            assert r.status == 200 and (await r.json())["results"]
        # Anonymous routes need no key; unknown routes and the un-prefixed path are 404.
        async with http.get(f"{base}/api/health") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with http.get(f"{base}/api/openapi.json") as r:
            assert r.status == 200 and "paths" in await r.json()
        async with http.get(f"{base}/search") as r:
            assert r.status == 404
        # Method not declared by the function.
        async with http.delete(f"{base}/api/search", headers={"x-functions-key": KEY}) as r:
            assert r.status == 405


async def test_oversized_body_refused_before_parsing(runtime, serve, sample_bundle, redis_url, tmp_path):
    base = await serve(app_settings(sample_bundle, redis_url, tmp_path, MAX_BODY_BYTES="1000"))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/search", data=b"{" + b" " * 5000 + b"}",
                             headers={"x-functions-key": KEY, "Content-Type": "application/json"}) as r:
            assert r.status == 413 and (await r.json())["error"]["code"] == "payload_too_large"


async def test_key_rule_a_present_header_decides(runtime, serve, sample_bundle, redis_url, tmp_path):
    base = await serve(app_settings(sample_bundle, redis_url, tmp_path))
    async with aiohttp.ClientSession() as http:
        # A right header wins over a wrong ?code=; an empty header is not rescued by a right ?code=.
        async with http.get(f"{base}/api/search", params={"q": "passport", "code": "wrong"},
                            headers={"x-functions-key": KEY}) as r:
            assert r.status == 200
        async with http.get(f"{base}/api/search", params={"q": "passport", "code": KEY},
                            headers={"x-functions-key": ""}) as r:
            assert r.status == 401 and (await r.json())["error"]["message"] == "the function key is not valid"
            assert r.headers["X-Request-Id"] and r.headers["X-Process-Time"]
