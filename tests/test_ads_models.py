"""parse_ads_request: every bad input is a 400 with its own code."""

from __future__ import annotations

import pytest

from core.ads.models import MAX_TOTAL_CHARS, MAX_TURNS, parse_ads_request
from core.errors import ApiError


def body(**over):
    b = {"thread_name": "t-1", "conversation": [{"role": "user", "content": "I need a pharmacy in Paris"}]}
    b.update(over)
    return b


def test_valid_request():
    req = parse_ads_request(body(conversation=[{"role": "user", "content": "hi"},
                                               {"role": "assistant", "content": "hello"}]))
    assert req.thread_name == "t-1"
    assert [t.role for t in req.conversation] == ["user", "assistant"]
    assert req.user_texts() == ["hi"]


@pytest.mark.parametrize("payload,code", [
    ([], "invalid_body"),
    ("x", "invalid_body"),
    (body(extra=1), "unknown_field"),
    ({"conversation": []}, "missing_field"),
    ({"thread_name": "t"}, "missing_field"),
    (body(thread_name=5), "invalid_type"),
    (body(thread_name=""), "invalid_thread_name"),
    (body(thread_name="   "), "invalid_thread_name"),
    (body(thread_name="x" * 129), "invalid_thread_name"),
    (body(conversation="hi"), "invalid_type"),
    (body(conversation=[]), "empty_conversation"),
    (body(conversation=[{"role": "user", "content": "x"}] * (MAX_TURNS + 1)), "too_many_turns"),
    (body(conversation=["hi"]), "invalid_type"),
    (body(conversation=[{"role": "system", "content": "x"}]), "unknown_role"),
    (body(conversation=[{"role": "tool", "content": "x"}]), "unknown_role"),
    (body(conversation=[{"role": 1, "content": "x"}]), "invalid_type"),
    (body(conversation=[{"role": "user", "content": ""}]), "empty_content"),
    (body(conversation=[{"role": "user", "content": " \n "}]), "empty_content"),
    (body(conversation=[{"role": "user", "content": ["x"]}]), "invalid_type"),
    (body(conversation=[{"role": "user"}]), "missing_field"),
    (body(conversation=[{"role": "user", "content": "x", "name": "bob"}]), "unknown_field"),
    (body(conversation=[{"role": "user", "content": "x" * 10_001}] * 2), "conversation_too_long"),
])
def test_bad_requests(payload, code):
    with pytest.raises(ApiError) as err:
        parse_ads_request(payload)
    assert err.value.status == 400
    assert err.value.code == code
    assert err.value.body()["error"]["code"] == code


def test_limits_are_inclusive():
    parse_ads_request(body(thread_name="x" * 128))
    parse_ads_request(body(conversation=[{"role": "user", "content": "x"}] * MAX_TURNS))
    parse_ads_request(body(conversation=[{"role": "user", "content": "x" * (MAX_TOTAL_CHARS // 2)}] * 2))
