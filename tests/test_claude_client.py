"""ClaudeClient against the fake Messages API, through the real anthropic SDK."""

from __future__ import annotations

import asyncio
import time

import pytest

import anthropic
import pydantic

from core.adapters.claude import CircuitBreaker, ClaudeClient, ClaudeUnavailable, Output, output_format
from core.deadline import Deadline
from core.settings import Settings


class Topics(Output):
    topics: list[str]
    sensitive: bool


GOOD_JSON = {"topics": ["pharmacy"], "sensitive": False}
GOOD = Topics(**GOOD_JSON)
MESSAGES = [{"role": "user", "content": "where can I buy allergy pills?"}]


async def call(client: ClaudeClient, budget: float = 3.0) -> dict:
    return await client.structured(system="Extract topics.", messages=MESSAGES, output=Topics,
                                   deadline=Deadline(budget), max_tokens=200)


async def test_structured_output_and_request_shape(claude, fake_anthropic):
    fake_anthropic.push({"json": GOOD_JSON})
    assert await call(claude) == GOOD
    (req,) = fake_anthropic.requests
    body = req.body
    assert body["system"] == [{"type": "text", "text": "Extract topics.", "cache_control": {"type": "ephemeral"}}]
    # The schema the SDK itself derives from the model (what messages.parse would send), strict: every field
    # required, no other property.
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": anthropic.transform_schema(Topics)}}
    schema = body["output_config"]["format"]["schema"]
    assert schema["required"] == ["topics", "sensitive"] and schema["additionalProperties"] is False
    assert req.headers.get("content-type", "").startswith("application/json")
    assert body["messages"] == MESSAGES and body["model"] == claude.model
    assert "test-key" in (req.headers.get("x-api-key", "") + req.headers.get("authorization", ""))
    assert req.headers.get("x-stainless-retry-count") in (None, "0")
    assert claude.status()["breaker"]["state"] == "closed"


async def test_not_configured_fails_at_once_without_network(fake_anthropic):
    client = ClaudeClient(Settings.from_env({"ANTHROPIC_BASE_URL": fake_anthropic.url}))
    with pytest.raises(ClaudeUnavailable) as err:
        await call(client)
    assert err.value.reason == "not_configured"
    assert fake_anthropic.count == 0
    assert client.status()["configured"] is False


@pytest.mark.parametrize("status,reason", [(529, "overloaded"), (500, "server_error"), (429, "rate_limited")])
async def test_retryable_errors_are_retried_then_succeed(claude, fake_anthropic, status, reason):
    fake_anthropic.push({"status": status}, {"json": GOOD_JSON})
    assert await call(claude) == GOOD
    assert fake_anthropic.count == 2


async def test_retries_stop_at_max_attempts(claude, fake_anthropic, claude_settings):
    fake_anthropic.push(*[{"status": 529}] * 10)
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude)
    assert err.value.reason == "overloaded"
    assert fake_anthropic.count == claude_settings.claude_max_attempts == 3


async def test_spend_limit_429_is_not_retried(claude, fake_anthropic):
    fake_anthropic.push({"status": 429, "error_code": "enforced_spend_limit_reached", "retry_after": 0},
                        {"json": GOOD_JSON})
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude)
    assert err.value.reason == "spend_limit"
    assert fake_anthropic.count == 1


async def test_non_retryable_4xx_is_not_retried(claude, fake_anthropic):
    fake_anthropic.push({"status": 400}, {"json": GOOD_JSON})
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude)
    assert err.value.reason == "error"
    assert fake_anthropic.count == 1


async def test_retry_after_honoured_when_it_fits(claude, fake_anthropic):
    fake_anthropic.push({"status": 429, "retry_after": 0.4}, {"json": GOOD_JSON})
    t0 = time.monotonic()
    assert await call(claude) == GOOD
    gap = fake_anthropic.requests[1].at - fake_anthropic.requests[0].at
    assert gap >= 0.4, gap
    assert time.monotonic() - t0 < 1.5


async def test_retry_after_beyond_deadline_is_not_waited_for(claude, fake_anthropic):
    fake_anthropic.push({"status": 429, "retry_after": 30}, {"json": GOOD_JSON})
    t0 = time.monotonic()
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude, budget=2.0)
    assert err.value.reason == "rate_limited"
    assert time.monotonic() - t0 < 0.5  # gave up at once rather than sleeping
    assert fake_anthropic.count == 1


async def test_slow_answer_times_out_within_deadline(claude, fake_anthropic):
    fake_anthropic.push(*[{"hang": True}] * 5)
    budget = 1.2
    t0 = time.monotonic()
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude, budget=budget)
    elapsed = time.monotonic() - t0
    assert err.value.reason == "timeout"
    assert elapsed <= budget + 0.1, elapsed
    assert fake_anthropic.count == 1  # the first attempt used the whole deadline


async def test_per_call_timeout_then_retry_succeeds(fake_anthropic, claude_settings):
    settings = Settings(**{**claude_settings.as_dict(), "claude_timeout_s": 0.4})
    client = ClaudeClient(settings)
    try:
        fake_anthropic.push({"delay": 2.0, "json": GOOD_JSON}, {"json": GOOD_JSON})
        t0 = time.monotonic()
        assert await call(client, budget=3.0) == GOOD
        assert time.monotonic() - t0 < 1.5
        assert fake_anthropic.count == 2
    finally:
        await client.close()


@pytest.mark.parametrize("step,reason", [
    ({"stop_reason": "refusal", "text": ""}, "refusal"),
    ({"stop_reason": "max_tokens", "text": '{"topics": ["pharm'}, "max_tokens"),
    ({"text": "Sure! Here are the topics: pharmacy"}, "malformed_output"),
    ({"json": {"topics": "pharmacy", "sensitive": False}}, "malformed_output"),
    ({"json": {"topics": [], "sensitive": False, "url": "http://evil.example"}}, "malformed_output"),
    ({"raw": b"<html>oops</html>", "content_type": "text/html"}, "malformed_output"),
    ({"raw": b"garbage"}, "malformed_output"),
    ({"raw": b'{"type": "message", "content": "nope"}'}, "malformed_output"),
])
async def test_unusable_outputs_are_handled(claude, fake_anthropic, step, reason):
    fake_anthropic.push(step)
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude)
    assert err.value.reason == reason
    assert fake_anthropic.count == 1  # not retried
    assert claude.breaker.state == "closed"  # Claude answered: no breaker failure


async def test_breaker_opens_then_probe_closes_it(claude, fake_anthropic, claude_settings):
    fake_anthropic.push(*[{"status": 500}] * (claude_settings.breaker_failures * claude_settings.claude_max_attempts))
    for _ in range(claude_settings.breaker_failures):
        with pytest.raises(ClaudeUnavailable):
            await call(claude)
    assert claude.breaker.state == "open"
    sent = fake_anthropic.count
    t0 = time.monotonic()
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude)
    assert err.value.reason == "circuit_open"
    assert time.monotonic() - t0 < 0.05 and fake_anthropic.count == sent  # no network while open
    assert claude.status()["last_error"]["reason"] == "server_error"

    await asyncio.sleep(claude_settings.breaker_cooldown_s + 0.05)
    fake_anthropic.push({"delay": 0.3, "json": GOOD_JSON})
    probe = asyncio.create_task(call(claude))
    await asyncio.sleep(0.1)
    assert claude.breaker.state == "half_open"
    with pytest.raises(ClaudeUnavailable) as err:  # only one probe at a time
        await call(claude)
    assert err.value.reason == "circuit_open"
    assert await probe == GOOD
    assert claude.breaker.state == "closed"
    fake_anthropic.push({"json": GOOD_JSON})
    assert await call(claude) == GOOD


async def test_failed_probe_reopens():
    now = [0.0]
    breaker = CircuitBreaker(2, 10.0, clock=lambda: now[0])
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


async def test_deadline_never_exceeded_under_mixed_failures(claude, fake_anthropic):
    fake_anthropic.push({"status": 529, "retry_after": 0.3}, {"delay": 5, "json": GOOD_JSON}, {"json": GOOD_JSON})
    budget = 1.0
    t0 = time.monotonic()
    with pytest.raises(ClaudeUnavailable):
        await call(claude, budget=budget)
    assert time.monotonic() - t0 <= budget + 0.1


async def test_concurrent_calls_share_one_sdk_client(claude, fake_anthropic):
    fake_anthropic.default_delay_s = 0.2
    fake_anthropic.responder = lambda body: {"json": GOOD_JSON}
    t0 = time.monotonic()
    results = await asyncio.gather(*[call(claude) for _ in range(50)])
    assert results == [GOOD] * 50
    assert time.monotonic() - t0 < 1.5  # concurrent, not serial
    sdk = claude._sdk()
    assert sdk is claude._sdk() and sdk.max_retries == 0


@pytest.mark.parametrize("text", [
    '{"topics": "pharmacy", "sensitive": false}',      # wrong type
    '{"topics": ["pharmacy"], "sensitive": "false"}',  # no coercion of a string to a boolean
    '{"topics": ["pharmacy"]}',                        # missing field
    '{"topics": [], "sensitive": true, "x": 1}',       # extra field
    '{"topics": [1], "sensitive": true}',              # wrong item type
])
async def test_output_is_validated_strictly_by_the_model(claude, fake_anthropic, text):
    fake_anthropic.push({"text": text})
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude)
    assert err.value.reason == "malformed_output" and err.value.detail


def test_output_format_is_built_once_per_model():
    assert output_format(Topics) is output_format(Topics)
    assert output_format(Topics) == {"type": "json_schema", "schema": anthropic.transform_schema(Topics)}


async def test_fake_server_speaks_the_sdk_parse_path(claude, fake_anthropic):
    """The fake answers ``messages.parse`` as the API does (a text block of schema-valid JSON), so the SDK's
    own parse path works against it; and why ``structured`` does not use it: parse validates the text
    before the caller sees ``stop_reason``, so a refusal surfaces as a bare ValidationError."""
    sdk = claude._sdk()
    fake_anthropic.push({"json": GOOD_JSON})
    parsed = await sdk.messages.parse(model=claude.model, max_tokens=100, messages=MESSAGES, output_format=Topics)
    assert parsed.parsed_output == GOOD and parsed.stop_reason == "end_turn"
    sent = fake_anthropic.requests[-1]
    assert sent.body["output_config"] == {"format": output_format(Topics)}
    assert sent.headers.get("x-stainless-helper") == "messages.parse"
    fake_anthropic.push({"stop_reason": "refusal", "text": ""})
    with pytest.raises(pydantic.ValidationError):
        await sdk.messages.parse(model=claude.model, max_tokens=100, messages=MESSAGES, output_format=Topics)
    fake_anthropic.push({"stop_reason": "refusal", "text": ""})
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude)
    assert err.value.reason == "refusal"


async def test_fake_refuses_what_the_api_refuses(claude, fake_anthropic):
    """The fake checks ``output_config`` as the API does, so a schema the API would refuse fails here too."""
    sdk = claude._sdk()
    loose = {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    with pytest.raises(anthropic.BadRequestError):
        await sdk.messages.create(model=claude.model, max_tokens=10, messages=MESSAGES,
                                  output_config={"format": loose})
