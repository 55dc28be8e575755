"""The process's one Claude client: structured output, deadline, retries, circuit breaker.

* One ``anthropic.AsyncAnthropic`` on the SDK's aiohttp transport, created lazily
  on first use (inside the running event loop) and reused by every request.
* The SDK's own retries are off (``max_retries=0``); our tenacity loop retries
  only retryable failures (429 except spend limits, 529, 5xx, timeouts,
  connection errors), at most ``claude_max_attempts`` attempts in all, and only
  while the next attempt, after any ``retry-after`` wait, still fits the deadline.
* Each attempt is bounded by ``deadline.cap(claude_timeout_s)`` twice over: the
  SDK's timeout (per socket phase) and an ``asyncio`` timeout on the whole call.
* A circuit breaker: ``breaker_failures`` consecutive failed calls open it for
  ``breaker_cooldown_s``; then one probe call is let through (half-open). While
  it is open, callers get ``ClaudeUnavailable("circuit_open")`` at once.
* Structured output from a pydantic model per call site: the SDK builds the
  ``output_config.format`` schema from it (``anthropic.transform_schema``, as
  ``messages.parse`` does) and the model validates the text that comes back
  (``model_validate_json``, strict, no extra fields). Refusals, ``max_tokens`` and
  malformed output become ``ClaudeUnavailable`` with a reason, never a crash.
* The request goes out through the SDK client's own ``post`` (auth, headers, timeout,
  error classes as with ``messages.create``) with the body serialised once by orjson,
  and the body comes back as bytes: not ``messages.create``. Measured side by side on
  one core at 16 requests in flight with Claude at 1 s, ``messages.create`` (its
  per-call request transform, response model construction and tracing span: ~0.7 ms
  of CPU per call more) gave 3-7% less ads throughput and a higher p99 (README,
  "The Claude adapter"). Not ``messages.parse`` either: it validates the text before
  the caller sees ``stop_reason``, so a refusal surfaces as a bare ``ValidationError``.

Everything that fails surfaces as ``ClaudeUnavailable(reason)`` so that callers
have exactly one thing to catch and can take their non-LLM path.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from core.deadline import Deadline

log = logging.getLogger("core.claude")

# An attempt is only started when at least this much of the deadline is left for it.
MIN_ATTEMPT_S = 0.25
# Exponential back-off between attempts when the server gives no retry-after.
BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 2.0
MESSAGES_PATH = "/v1/messages"
# Spend-limit 429s never succeed on retry (the SDK would retry them).
_SPEND_LIMIT_MARKERS = ("spend_limit",)


class ClaudeUnavailable(Exception):
    """Claude gave no usable answer; ``reason`` is a short machine-readable code.

    Reasons: not_configured, circuit_open, deadline, timeout, connection_error,
    rate_limited, spend_limit, overloaded, server_error, refusal, max_tokens,
    malformed_output, error.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------
# Circuit breaker
# ---------------------------------------------------------------------------------
class CircuitBreaker:
    """closed -> (N consecutive failures) -> open -> (cooldown) -> half-open: one probe.

    The probe's success closes the breaker; its failure opens it for another cooldown.
    Single-threaded (asyncio): no locks needed.
    """

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = max(1, int(failures))
        self.cooldown_s = float(cooldown_s)
        self._clock = clock
        self.state = "closed"
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self._probe_in_flight = False

    def allow(self) -> bool:
        """Whether a call may go out now (taking the probe slot when half-open)."""
        if self.state == "closed":
            return True
        if self.state == "open":
            assert self.opened_at is not None
            if self._clock() - self.opened_at < self.cooldown_s:
                return False
            self.state = "half_open"
            self._probe_in_flight = False
            log.info("Claude circuit breaker half-open: letting one probe through")
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        if self.state != "closed":
            log.info("Claude circuit breaker closed after a successful %s",
                     "probe" if self.state == "half_open" else "call")
        self.state = "closed"
        self.consecutive_failures = 0
        self.opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        if self.state == "half_open" or self.consecutive_failures >= self.threshold:
            if self.state != "open":
                log.warning("Claude circuit breaker open for %.1fs after %d consecutive failures",
                            self.cooldown_s, self.consecutive_failures)
            self.state = "open"
            self.opened_at = self._clock()
        self._probe_in_flight = False

    def release(self) -> None:
        """A call ended without a verdict on Claude's health (e.g. cancelled): free the probe slot."""
        self._probe_in_flight = False

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "consecutive_failures": self.consecutive_failures}
        if self.state == "open" and self.opened_at is not None:
            out["retry_in_s"] = round(max(0.0, self.cooldown_s - (self._clock() - self.opened_at)), 1)
        return out


# ---------------------------------------------------------------------------------
# Structured output: a pydantic model per call site
# ---------------------------------------------------------------------------------
OutputT = TypeVar("OutputT", bound=BaseModel)


class Output(BaseModel):
    """Base of the models Claude's JSON must match: every field required, no other field, no coercion
    (``"false"`` is not a boolean). Subclasses are the schema sent in ``output_config.format``."""

    model_config = {"extra": "forbid", "strict": True}


@cache
def output_format(model: type[BaseModel]) -> dict[str, Any]:
    """``output_config.format`` for ``model``, as the SDK builds it for ``messages.parse`` (once per model:
    the same bytes every call, so the schema part of the prompt cache stays valid)."""
    import anthropic

    return {"type": "json_schema", "schema": anthropic.transform_schema(model)}


# ---------------------------------------------------------------------------------
# Failure classification
# ---------------------------------------------------------------------------------
@dataclass
class _Attempt:
    """Why one attempt failed, whether to retry it, and the server's retry-after."""

    reason: str
    retryable: bool
    retry_after_s: float | None
    detail: str


class _AttemptFailed(Exception):
    def __init__(self, info: _Attempt) -> None:
        super().__init__(f"{info.reason}: {info.detail}")
        self.info = info


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    raw = headers.get("retry-after")
    try:
        if raw_ms is not None:
            return max(0.0, float(raw_ms) / 1000.0)
        if raw is not None:
            return max(0.0, float(raw))
    except ValueError:
        return None  # HTTP-date form: not worth honouring inside a seconds-long deadline
    return None


def classify(exc: BaseException) -> _Attempt:
    """Map an SDK / asyncio exception to (reason, retryable, retry-after)."""
    import anthropic

    detail = f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, (asyncio.TimeoutError, anthropic.APITimeoutError)):
        return _Attempt("timeout", True, None, detail)
    if isinstance(exc, anthropic.APIConnectionError):
        return _Attempt("connection_error", True, None, detail)
    if isinstance(exc, (anthropic.APIResponseValidationError, ValueError)):
        return _Attempt("malformed_output", False, None, detail)  # a 200 whose body is not a Message
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        code = (getattr(exc, "error_code", None) or "") + " " + str(getattr(exc, "type", None) or "")
        if status == 429:
            if any(m in code for m in _SPEND_LIMIT_MARKERS):
                return _Attempt("spend_limit", False, None, detail)
            return _Attempt("rate_limited", True, _retry_after(exc), detail)
        if status == 529:
            return _Attempt("overloaded", True, _retry_after(exc), detail)
        if status >= 500:
            return _Attempt("server_error", True, _retry_after(exc), detail)
        if status == 408:
            return _Attempt("timeout", True, _retry_after(exc), detail)
        return _Attempt("error", False, None, detail)
    return _Attempt("error", False, None, detail)


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` of a decoded JSON object, ``obj.name`` of an SDK model; None when absent."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


# Reasons that say nothing bad about Claude's availability (the call itself worked).
_HEALTHY_REASONS = frozenset({"refusal", "max_tokens", "malformed_output"})


# ---------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------
class ClaudeClient:
    def __init__(self, settings: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.model = settings.claude_model
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s, clock)
        self._client: Any | None = None
        self._last_error: str = ""
        self._last_error_reason: str = ""
        self._calls = 0
        self._client_lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.settings.anthropic_api_key)

    def prepare(self) -> None:
        """Import the SDK and create the client: blocking work (~1 s), for a thread before the first call.
        The client opens its aiohttp session lazily, on its first request, in the loop that makes it."""
        self._sdk()

    def _sdk(self) -> Any:
        """The one AsyncAnthropic, created on first use (or by :meth:`prepare`, in a thread: hence the lock)."""
        if self._client is not None:
            return self._client
        with self._client_lock:
            if self._client is None:
                import anthropic

                self._client = anthropic.AsyncAnthropic(
                    api_key=self.settings.anthropic_api_key,
                    base_url=self.settings.anthropic_base_url or None,
                    max_retries=0,  # our tenacity loop is the only retry layer
                    timeout=max(0.1, float(self.settings.claude_timeout_s)),
                    http_client=anthropic.DefaultAioHttpClient(),
                )
        return self._client

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"configured": self.configured, "model": self.model,
                               "breaker": self.breaker.snapshot(), "calls": self._calls}
        if self._last_error:
            out["last_error"] = {"reason": self._last_error_reason, "detail": self._last_error}
        return out

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # -- the one public call ------------------------------------------------------
    async def structured(self, *, system: str, messages: list[dict[str, Any]], output: type[OutputT],
                         deadline: Deadline, max_tokens: int) -> OutputT:
        """An ``output`` instance from Claude's JSON, or ``ClaudeUnavailable``.

        ``system`` must be stable across requests (it is the cached prefix);
        everything per-request goes in ``messages``.
        """
        if not self.configured:
            raise ClaudeUnavailable("not_configured", "no ANTHROPIC_API_KEY")
        if deadline.remaining() < MIN_ATTEMPT_S:
            raise ClaudeUnavailable("deadline", f"{deadline.remaining():.3f}s left")
        if not self.breaker.allow():
            raise ClaudeUnavailable("circuit_open", "Claude calls paused after repeated failures")

        self._calls += 1
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": messages,
        }
        prepared: dict[str, bytes] = {}  # the request body, serialised once for every attempt
        started = time.monotonic()
        attempts = 0
        try:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(max(1, int(self.settings.claude_max_attempts))) | self._stop_for(deadline),
                wait=self._wait,
                retry=retry_if_exception(lambda e: isinstance(e, _AttemptFailed) and e.info.retryable),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    response = await self._attempt(request, output, deadline, prepared)
        except _AttemptFailed as exc:
            info = exc.info
            self._failed(info.reason, info.detail)
            log.warning("Claude call failed after %d attempt(s) in %.2fs: %s (%s)",
                        attempts, time.monotonic() - started, info.reason, info.detail)
            raise ClaudeUnavailable(info.reason, info.detail) from None
        except asyncio.CancelledError:
            self.breaker.release()
            raise

        try:
            result = self._parse(response, output)
        except ClaudeUnavailable as exc:
            self.breaker.record_success()  # Claude answered: the service is up
            self._last_error, self._last_error_reason = exc.detail, exc.reason
            log.warning("Claude answered but gave no usable output: %s (%s)", exc.reason, exc.detail)
            raise
        self.breaker.record_success()
        if log.isEnabledFor(logging.INFO):
            usage = _field(response, "usage")
            log.info("Claude call ok in %.2fs (%d attempt(s); tokens in=%s out=%s cache_read=%s)",
                     time.monotonic() - started, attempts, _field(usage, "input_tokens"),
                     _field(usage, "output_tokens"), _field(usage, "cache_read_input_tokens"))
        return result

    # -- internals ----------------------------------------------------------------
    def _failed(self, reason: str, detail: str) -> None:
        self._last_error, self._last_error_reason = detail, reason
        if reason in _HEALTHY_REASONS:
            self.breaker.record_success()
        else:
            self.breaker.record_failure()

    async def _attempt(self, request: dict[str, Any], output: type[BaseModel], deadline: Deadline,
                       prepared: dict[str, bytes]) -> Any:
        try:
            sdk = self._sdk()  # imports the SDK on first use: before the attempt's time is taken
            if "body" not in prepared:
                prepared["body"] = orjson.dumps({**request, "output_config": {"format": output_format(output)}})
            limit = deadline.cap(float(self.settings.claude_timeout_s))
            if limit < MIN_ATTEMPT_S:
                raise _AttemptFailed(_Attempt("timeout", False, None, "deadline too close for another attempt"))
            import httpx2  # the anthropic SDK's HTTP library

            # The SDK's own per-attempt timeout, and ``asyncio.timeout`` on the whole call (without the extra
            # task that ``wait_for`` makes).
            async with asyncio.timeout(limit):
                response = await sdk.post(MESSAGES_PATH, cast_to=httpx2.Response, content=prepared["body"],
                                          options={"timeout": limit})
                return await response.aread()
        except (asyncio.CancelledError, _AttemptFailed):
            raise
        except Exception as exc:  # classified: every SDK/transport failure becomes a reason
            info = classify(exc)
            log.info("Claude attempt failed: %s (retryable=%s, retry-after=%s)",
                     info.reason, info.retryable, info.retry_after_s)
            raise _AttemptFailed(info) from exc

    @staticmethod
    def _wait(state: RetryCallState) -> float:
        """The server's retry-after when it gave one, else jittered exponential back-off."""
        exc = state.outcome.exception() if state.outcome else None
        info = exc.info if isinstance(exc, _AttemptFailed) else None
        if info is not None and info.retry_after_s is not None:
            return info.retry_after_s
        backoff = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** (state.attempt_number - 1)))
        return backoff * (0.75 + 0.5 * random.random())

    @staticmethod
    def _stop_for(deadline: Deadline) -> Callable[[RetryCallState], bool]:
        """Stop when the planned wait (tenacity computes it before asking us) leaves too little time."""
        def stop(state: RetryCallState) -> bool:
            left = deadline.remaining() - state.upcoming_sleep
            if left < MIN_ATTEMPT_S:
                log.info("Not retrying Claude: waiting %.2fs would leave %.2fs of the deadline",
                         state.upcoming_sleep, left)
                return True
            return False
        return stop

    @staticmethod
    def _parse(response: Any, output: type[OutputT]) -> OutputT:
        """``output`` from a Messages API response: its body (bytes), or a decoded body or the SDK's
        ``Message`` (the bench's blocking client): the stop reason first, then the text blocks, validated
        by the model."""
        if isinstance(response, (bytes, bytearray, memoryview, str)):
            try:
                response = orjson.loads(response)
            except orjson.JSONDecodeError as exc:
                raise ClaudeUnavailable("malformed_output", f"the response body is not JSON: {exc}") from None
        stop_reason = _field(response, "stop_reason")
        if stop_reason == "refusal":
            raise ClaudeUnavailable("refusal", "the model declined")
        if stop_reason == "max_tokens":
            raise ClaudeUnavailable("max_tokens", "output cut off at max_tokens")
        content = _field(response, "content")
        if not isinstance(content, list):
            raise ClaudeUnavailable("malformed_output", "response has no content list")
        text = "".join(t for b in content if _field(b, "type") == "text" and isinstance(t := _field(b, "text"), str))
        if not text.strip():
            raise ClaudeUnavailable("malformed_output", "no text block in the response")
        try:
            return output.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '$'}: {e['msg']}" for e in exc.errors()[:5])
            raise ClaudeUnavailable("malformed_output", problems) from None
