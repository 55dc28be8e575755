"""ClaudeClient against the fake Messages API, through the real anthropic SDK."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.adapters.claude import CircuitBreaker, ClaudeClient, ClaudeUnavailable, schema_errors
from core.deadline import Deadline
from core.settings import Settings

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"topics": {"type": "array", "items": {"type": "string"}}, "sensitive": {"type": "boolean"}},
    "required": ["topics", "sensitive"],
}
GOOD = {"topics": ["pharmacy"], "sensitive": False}
MESSAGES = [{"role": "user", "content": "where can I buy allergy pills?"}]


async def call(client: ClaudeClient, budget: float = 3.0) -> dict:
    return await client.structured(system="Extract topics.", messages=MESSAGES, schema=SCHEMA,
                                   deadline=Deadline(budget), max_tokens=200)


async def test_structured_output_and_request_shape(claude, fake_anthropic):
    fake_anthropic.push({"json": GOOD})
    assert await call(claude) == GOOD
    (req,) = fake_anthropic.requests
    body = req.body
    assert body["system"] == [{"type": "text", "text": "Extract topics.", "cache_control": {"type": "ephemeral"}}]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
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
    fake_anthropic.push({"status": status}, {"json": GOOD})
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
                        {"json": GOOD})
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude)
    assert err.value.reason == "spend_limit"
    assert fake_anthropic.count == 1


async def test_non_retryable_4xx_is_not_retried(claude, fake_anthropic):
    fake_anthropic.push({"status": 400}, {"json": GOOD})
    with pytest.raises(ClaudeUnavailable) as err:
        await call(claude)
    assert err.value.reason == "error"
    assert fake_anthropic.count == 1


async def test_retry_after_honoured_when_it_fits(claude, fake_anthropic):
    fake_anthropic.push({"status": 429, "retry_after": 0.4}, {"json": GOOD})
    t0 = time.monotonic()
    assert await call(claude) == GOOD
    gap = fake_anthropic.requests[1].at - fake_anthropic.requests[0].at
    assert gap >= 0.4, gap
    assert time.monotonic() - t0 < 1.5


async def test_retry_after_beyond_deadline_is_not_waited_for(claude, fake_anthropic):
    fake_anthropic.push({"status": 429, "retry_after": 30}, {"json": GOOD})
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
        fake_anthropic.push({"delay": 2.0, "json": GOOD}, {"json": GOOD})
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
    fake_anthropic.push({"delay": 0.3, "json": GOOD})
    probe = asyncio.create_task(call(claude))
    await asyncio.sleep(0.1)
    assert claude.breaker.state == "half_open"
    with pytest.raises(ClaudeUnavailable) as err:  # only one probe at a time
        await call(claude)
    assert err.value.reason == "circuit_open"
    assert await probe == GOOD
    assert claude.breaker.state == "closed"
    fake_anthropic.push({"json": GOOD})
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
    fake_anthropic.push({"status": 529, "retry_after": 0.3}, {"delay": 5, "json": GOOD}, {"json": GOOD})
    budget = 1.0
    t0 = time.monotonic()
    with pytest.raises(ClaudeUnavailable):
        await call(claude, budget=budget)
    assert time.monotonic() - t0 <= budget + 0.1


async def test_concurrent_calls_share_one_sdk_client(claude, fake_anthropic):
    fake_anthropic.default_delay_s = 0.2
    fake_anthropic.responder = lambda body: {"json": GOOD}
    t0 = time.monotonic()
    results = await asyncio.gather(*[call(claude) for _ in range(50)])
    assert results == [GOOD] * 50
    assert time.monotonic() - t0 < 1.5  # concurrent, not serial
    sdk = claude._sdk()
    assert sdk is claude._sdk() and sdk.max_retries == 0


def test_schema_validator():
    assert schema_errors(GOOD, SCHEMA) == []
    assert schema_errors({"topics": [1], "sensitive": False}, SCHEMA)
    assert schema_errors({"topics": []}, SCHEMA)
    assert schema_errors({"x": 1, "topics": [], "sensitive": True}, SCHEMA)
    assert schema_errors("a", {"type": "string", "enum": ["b"]})
    assert not schema_errors(None, {"type": ["string", "null"]})
