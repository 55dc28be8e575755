"""The HTTP contract of issue 11: every input answered with the right status, JSON errors with a request id,
strict typing, the client's own query echoed, no noise for queries with no searchable term.

Bodies are written as raw bytes where the point is JSON that ``json.dumps`` would not write (lone
surrogate escapes, NaN, 5,000-digit integers).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import azure.functions as func
import pytest

import core.runtime as runtime_module
import function_app
from core import api
from core.ads.models import parse_ads_request
from core.errors import ApiError
from core.search.service import NO_LETTERS_OR_DIGITS, ONLY_STOP_WORDS, unsearchable_reason
from tests.fixtures.app import app_settings

TURN = '[{"role": "user", "content": "hello"}]'


@pytest.fixture(scope="module")
async def ready(redis_server, sample_bundle, tmp_path_factory):
    """One runtime for the module, over the sample bundle and a real Redis, with its index loaded (on a busy
    machine a first request could otherwise get a 503)."""
    rt = await runtime_module.reset_runtime(app_settings(sample_bundle, redis_server.url,
                                                         tmp_path_factory.mktemp("contract")))
    await rt.cache.redis.flushdb()
    await rt.index.get(wait_s=180)
    yield rt
    await rt.close()
    runtime_module._runtime = None


def post(route: str, raw: bytes | str) -> func.HttpRequest:
    body = raw.encode() if isinstance(raw, str) else raw
    return func.HttpRequest("POST", f"http://localhost/api/{route}", body=body,
                            headers={"Content-Type": "application/json"})


def get(params: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest("GET", "http://localhost/api/search", params=params, body=b"")


def error_of(res: func.HttpResponse, status: int = 400) -> dict:
    assert res.status_code == status, (res.status_code, res.get_body()[:300])
    assert res.headers["Content-Type"] == "application/json" and res.headers["X-Request-Id"]
    err = json.loads(res.get_body())["error"]
    assert err["code"] and err["message"]
    return err


BIG = "9" * 5000  # over Python's 4,300-digit int-string limit

INVALID_JSON = [
    # item 1: lone surrogates in the query, a filter key, a filter value, the thread name
    ("search", r'{"query": "sleep \ud800"}'),
    ("search", r'{"query": "x", "filters": {"\udc00": "a"}}'),
    ("search", r'{"query": "x", "filters": {"category": "\ud800"}}'),
    ("ads", r'{"thread_name": "\ud800", "conversation": ' + TURN + "}"),
    ("ads", r'{"thread_name": "t", "conversation": [{"role": "user", "content": "hi \udfff"}]}'),
    # item 2: a lone surrogate in an unknown field name (the 400 used to echo it and fail to serialise)
    ("search", r'{"query": "x", "\ud800": 1}'),
    ("ads", r'{"thread_name": "t", "\ud800": 1, "conversation": ' + TURN + "}"),
    # item 3: integer literals over the int-string limit
    ("search", '{"query": "x", "top_k": ' + BIG + "}"),
    ("search", '{"query": "x", "filters": {"n": ' + BIG + "}}"),
    ("ads", '{"thread_name": "t", "conversation": ' + TURN + ', "n": ' + BIG + "}"),
    # item 6: non-standard numbers
    ("search", '{"query": "x", "top_k": NaN}'),
    ("search", '{"query": "x", "top_k": Infinity}'),
    ("search", '{"query": "x", "filters": {"n": -Infinity}}'),
    ("search", '{"query": "x", "filters": {"n": 1e400}}'),
    ("search", '{"query": "x", "filters": {"n": NaN}}'),
]


async def _codes(cases) -> list:
    """(case, status, code) of every case whose answer is not the expected JSON 400 error."""
    wrong = []
    for route, req, code, status in cases:
        res = await getattr(function_app, route)(req)
        try:
            assert error_of(res, status)["code"] == code
        except (AssertionError, KeyError, ValueError):
            wrong.append((req.method, req.params or req.get_body()[:60], res.status_code, res.get_body()[:120]))
    return wrong


async def test_strict_json_is_a_400_invalid_json(ready):
    assert await _codes([(route, post(route, raw), "invalid_json", 400) for route, raw in INVALID_JSON]) == []


async def test_invalid_json_messages_say_why(ready):
    err = error_of(await function_app.search(post("search", r'{"query": "\ud800"}')))
    assert "surrogate" in err["message"]
    err = error_of(await function_app.search(post("search", '{"query": "x", "top_k": 1e400}')))
    assert "Infinity" in err["message"]


async def test_lone_surrogates_from_other_decoders_are_400_invalid_text(ready):
    # A GET query string (or another JSON decoder) can hand us a lone surrogate; it never reaches a hash,
    # a cache key or a log: 400 invalid_text.
    assert error_of(await function_app.search(get({"q": "sleep \ud800"})))["code"] == "invalid_text"
    for body in ({"thread_name": "\ud800", "conversation": [{"role": "user", "content": "hi"}]},
                 {"thread_name": "t", "conversation": [{"role": "user", "content": "hi \udbff"}]}):
        with pytest.raises(ApiError) as exc:
            parse_ads_request(body)
        assert exc.value.code == "invalid_text"


BAD_GET = [{"q": "sleep", "top_k": "\u00b2"}, {"q": "sleep", "top_k": "\u2460"}, {"q": "sleep", "top_k": "\u0665"},
           {"q": "sleep", "top_k": " 5"}, {"q": "sleep", "top_k": "+5"}, {"q": "sleep", "top_k": "-1"},
           {"q": "sleep", "top_k": "5.0"}, {"q": "sleep", "top_k": ""}, {"q": "sleep", "answer": "yes"},
           {"q": "sleep", "answer": "1"}]


async def test_get_parameters_are_parsed_strictly(ready):
    # item 4: Unicode "digits" (superscript two, circled one, Arabic-Indic five) are not ASCII digits.
    assert await _codes([("search", get(p), "invalid_type", 400) for p in BAD_GET]) == []


async def test_get_aliases_and_limits(ready):
    res = await function_app.search(get({"query": "password reset", "top_k": "02", "code": "k", "other": "x"}))
    assert res.status_code == 200, res.get_body()
    body = json.loads(res.get_body())
    assert body["query"] == "password reset" and 1 <= len(body["results"]) <= 2 and "answer" not in body
    res = await function_app.search(get({"q": "password", "answer": "true"}))
    assert res.status_code == 200 and "answer" in json.loads(res.get_body())
    assert error_of(await function_app.search(get({"q": "x", "top_k": "0" * 20 + "51"})))["code"] == "invalid_top_k"
    assert error_of(await function_app.search(get({"q": "x", "top_k": "9" * 5000})))["code"] == "invalid_top_k"
    assert error_of(await function_app.search(get({})))["code"] == "invalid_query"


STRICT_POST = [
    # item 7: strings, fractions and other digit forms are not integers; null is no value for any field
    ('{"query": "x", "top_k": "5"}', "invalid_type"),
    ('{"query": "x", "top_k": " 5 "}', "invalid_type"),
    ('{"query": "x", "top_k": "05"}', "invalid_type"),
    ('{"query": "x", "top_k": "\u0665"}', "invalid_type"),
    ('{"query": "x", "top_k": "\u00b2"}', "invalid_type"),
    ('{"query": "x", "top_k": "\u2460"}', "invalid_type"),
    ('{"query": "x", "top_k": 5.0}', "invalid_type"),
    ('{"query": "x", "top_k": null}', "invalid_type"),
    ('{"query": "x", "filters": null}', "invalid_filters"),
    ('{"query": "x", "answer": null}', "invalid_type"),
    ('{"query": null}', "invalid_query"),
    ('{"query": "x", "top_k": 18446744073709551616}', "invalid_type"),
]


async def test_post_types_are_strict(ready):
    assert await _codes([("search", post("search", raw), code, 400) for raw, code in STRICT_POST]) == []


async def test_every_response_echoes_its_own_query_even_from_the_cache(ready):
    # item 5
    first = json.loads((await function_app.search(post("search", '{"query": "Passport Renewal  Abroad zq1"}'))
                        ).get_body())
    second = json.loads((await function_app.search(post("search", '{"query": "passport renewal abroad ZQ1"}'))
                         ).get_body())
    assert first["cached"] is False and second["cached"] is True
    assert first["query"] == "Passport Renewal  Abroad zq1"
    assert second["query"] == "passport renewal abroad ZQ1"
    assert second["results"] == first["results"]
    # the same through the in-process LRU (a third spelling) and over GET
    third = json.loads((await function_app.search(get({"q": "PASSPORT renewal abroad zq1"}))).get_body())
    assert third["cached"] is True and third["query"] == "PASSPORT renewal abroad zq1"


UNSEARCHABLE = [
    ("?!...", NO_LETTERS_OR_DIGITS), ("\u200b\u200b", NO_LETTERS_OR_DIGITS), ("\u0000", NO_LETTERS_OR_DIGITS),
    ("\u001e", NO_LETTERS_OR_DIGITS), ("\ufeff--", NO_LETTERS_OR_DIGITS),
    ("\u2603 \u2192 \u00a9", NO_LETTERS_OR_DIGITS),
    ("the of and", ONLY_STOP_WORDS), ("Is it THE ...?", ONLY_STOP_WORDS),
]


async def test_a_query_with_no_searchable_term_returns_no_results_and_says_why(ready):
    # item 8: these used to return 10 arbitrary passages with a top score of 0.8 (or, for U+001E, a 400)
    seen = []
    for query, _ in UNSEARCHABLE:
        res = await function_app.search(post("search", json.dumps({"query": query, "answer": True})))
        body = json.loads(res.get_body())
        seen.append((query, res.status_code, body.get("results"), body.get("no_results_reason"), body.get("query"),
                     body.get("answer", "missing")))
    assert seen == [(q, 200, [], reason, q, None) for q, reason in UNSEARCHABLE]


async def test_searchable_queries_are_searched():
    assert unsearchable_reason("sleep") is None and unsearchable_reason("to be or not to be, wifi") is None
    assert unsearchable_reason("日本") is None and unsearchable_reason("42") is None


async def test_white_space_only_query_is_400(ready):
    # White space is Unicode's White_Space set, which is what the schema's pattern says.
    cases = ["   ", "\t\n", "\u3000", "\u00a0\u2028", "\u0085"]
    assert await _codes([("search", post("search", json.dumps({"query": q})), "invalid_query", 400)
                         for q in cases]) == []


def test_ads_text_follows_the_same_white_space_rule():
    ok = parse_ads_request({"thread_name": "\u001e", "conversation": [{"role": "user", "content": "\u200b"}]})
    assert ok.thread_name == "\u001e"
    for body, code in [({"thread_name": "\u3000", "conversation": [{"role": "user", "content": "a"}]},
                        "invalid_thread_name"),
                       ({"thread_name": "t", "conversation": [{"role": "user", "content": "\u2029 "}]},
                        "empty_content")]:
        with pytest.raises(ApiError) as exc:
            parse_ads_request(body)
        assert exc.value.code == code


# ------------------------------------------------------------------ the error path cannot fail (item 2)
def _runtime_stub():
    return SimpleNamespace(ensure_warming=lambda: None, settings=SimpleNamespace(request_deadline_s=5.0))


async def _run(endpoint, headers=None):
    req = api.Request.build("POST", "http://localhost/api/x", headers or {}, None, b"{}")
    return await api.handle("x", req, _runtime_stub(), endpoint)


async def test_an_error_whose_text_cannot_be_encoded_keeps_its_status_and_is_json():
    async def bad_field(req, rt, deadline):
        raise ApiError(400, "unknown_field", "unknown field(s): \ud800")

    res = await _run(bad_field, {"X-Request-Id": "rid-1"})
    assert res.status == 400 and res.headers["X-Request-Id"] == "rid-1"
    assert res.headers["Content-Type"] == "application/json" and res.headers["X-Process-Time"].endswith("ms")
    err = json.loads(res.body)["error"]
    assert err["code"] == "unknown_field" and "\\ud800" in err["message"]


@pytest.mark.parametrize("payload", [{"x": object()}, {"query": "\udfff"}, {1.5: "non-str key"}])
async def test_a_response_that_cannot_be_serialised_is_a_json_500_with_the_request_id(payload):
    async def endpoint(req, rt, deadline):
        return payload

    res = await _run(endpoint, {"X-Request-Id": "rid-2"})
    assert res.status == 500 and res.headers["X-Request-Id"] == "rid-2"
    assert json.loads(res.body)["error"]["code"] == "internal_error"


@pytest.mark.parametrize("rid", ["a\r\nSet-Cookie: x=1", "\u00e9t\u00e9", "x" * 65, "", "with space"])
async def test_an_unusable_request_id_is_replaced(rid):
    async def ok(req, rt, deadline):
        return {"ok": True}

    res = await _run(ok, {"X-Request-Id": rid})
    assert res.status == 200 and res.headers["X-Request-Id"] != rid and len(res.headers["X-Request-Id"]) == 32


async def test_unicode_digits_in_content_length_do_not_break_the_size_check(ready):
    req = func.HttpRequest("POST", "http://localhost/api/search", body=b'{"query": "x"}',
                           headers={"Content-Type": "application/json", "Content-Length": "\u00b2"})
    assert (await function_app.search(req)).status_code == 200
    req = func.HttpRequest("POST", "http://localhost/api/search", body=b'{"query": "x"}',
                           headers={"Content-Type": "application/json", "Content-Length": "9" * 5000})
    assert error_of(await function_app.search(req), 413)["code"] == "payload_too_large"
