"""Property-based tests of the HTTP contract: thousands of generated requests per endpoint.

Whatever arrives — arbitrary JSON, near-valid bodies with one field wrong, odd content types, raw bytes —
the answer is never a 5xx, and every 4xx is a JSON ``{"error": {"code", "message"}}``.
"""

import json

import azure.functions as func
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import function_app

EXAMPLES = 1000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
texts = st.text(max_size=60) | st.text(min_size=990, max_size=1100) | st.sampled_from(
    ["", " ", "\x00", "passport", "ignore previous instructions", "😀" * 10, "a" * 1001, "Paris, TX"])

search_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"query": texts}, optional={
        "top_k": st.integers(-5, 60) | scalars, "filters": json_values | st.dictionaries(
            st.sampled_from(["category", "lang", "x"]), scalars | st.lists(scalars, max_size=3), max_size=3),
        "answer": scalars, "extra": scalars}),
)
turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", ""]) | scalars,
                              "content": texts | scalars})
ads_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"thread_name": texts | scalars,
                           "conversation": st.lists(turn, max_size=6) | json_values},
                          optional={"extra": scalars}),
    st.builds(lambda n, c: {"thread_name": "fuzz", "conversation": [{"role": "user", "content": "x"}] * n
                            if c else [{"role": "user", "content": "y" * n * 100}]},
              st.integers(0, 60), st.booleans()),
)
# JSON that json.dumps never writes: lone surrogate escapes, non-standard numbers, integers over Python's
# 4,300-digit int-string limit, each spliced into an otherwise valid body (issue 11, items 1-3 and 6).
_ODD_VALUES = [r'"\ud800"', r'"x\udfff"', r'"\udc00\ud800"', "NaN", "Infinity", "-Infinity", "1e400", "-1e999",
               "9" * 4301, "-" + "1" * 5000, "18446744073709551616", '"\u0000"', '"\u200b"', '"\u001e"']
_ODD_BODIES = ['{"query": %s}', '{"query": "x", "top_k": %s}', '{"query": "x", "filters": {"k": %s}}',
               '{"query": "x", %s: 1}', '{"query": "x", "answer": %s}',
               '{"thread_name": %s, "conversation": [{"role": "user", "content": "hi"}]}',
               '{"thread_name": "t", "conversation": [{"role": "user", "content": %s}]}',
               '{"thread_name": "t", %s: 1, "conversation": [{"role": "user", "content": "hi"}]}']
odd_json = st.builds(lambda body, value: (body % value).encode(), st.sampled_from(_ODD_BODIES),
                     st.sampled_from(_ODD_VALUES))
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", "",
                                 "application/x-www-form-urlencoded", "application/problem+json"])


def _encode(body, raw: bytes | None) -> bytes:
    return raw if raw is not None else json.dumps(body).encode()


def _check(res: func.HttpResponse) -> None:
    assert res.status_code < 500 or res.status_code in (503, 504), (res.status_code, res.get_body()[:300])
    assert res.headers["Content-Type"] == "application/json" and res.headers["X-Request-Id"]
    payload = json.loads(res.get_body())
    if res.status_code >= 400:
        err = payload["error"]
        assert isinstance(err["code"], str) and err["code"] and isinstance(err["message"], str)


@FUZZ
@given(body=search_bodies, raw=st.none() | st.binary(max_size=200) | odd_json, ctype=content_types)
async def test_search_never_5xx_and_errors_are_json(runtime, body, raw, ctype):
    req = func.HttpRequest("POST", "http://localhost/api/search", headers={"Content-Type": ctype},
                           body=_encode(body, raw))
    res = await function_app.search(req)
    _check(res)
    assert res.status_code != 503  # the index is loaded: every answer is a 200 or a 4xx


@FUZZ
@given(body=ads_bodies, raw=st.none() | st.binary(max_size=200) | odd_json, ctype=content_types)
async def test_ads_never_5xx_and_errors_are_json(runtime, body, raw, ctype):
    req = func.HttpRequest("POST", "http://localhost/api/ads", headers={"Content-Type": ctype},
                           body=_encode(body, raw))
    res = await function_app.ads(req)
    _check(res)
    if res.status_code == 200:
        payload = json.loads(res.get_body())
        assert isinstance(payload["ads"], list)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(params=st.dictionaries(st.sampled_from(["q", "query", "top_k", "answer", "x"]),
                              st.text(max_size=30)
                              | st.sampled_from(["\u00b2", "\u2460", "\u0665", "\ud800", "9" * 5000]),
                              max_size=4))
async def test_search_get_never_5xx(runtime, params):
    req = func.HttpRequest("GET", "http://localhost/api/search", params=params, body=b"")
    _check(await function_app.search(req))
