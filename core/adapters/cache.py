"""Two-level cache: an in-process TTL LRU in front of Redis, shared by every instance.

Redis is an optimisation, never a dependency: when it is unreachable every call
degrades to the in-process level, the outage is logged once (not per request),
and the next call after a short back-off tries Redis again, so caching resumes
on its own when Redis comes back.

Slow is not down. A call that times out (an operation, a wait for a pooled
connection) degrades that one call only. Redis is marked down on a connection
failure, or when ``timeouts_before_probe`` timeouts in a row are confirmed by a
probe: a PING from a thread with its own synchronous client and a longer
timeout, so that a busy event loop (a CPU-bound burst, a cold start) cannot make
a healthy Redis look dead. One WARNING line per outage, one INFO line when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable

import redis.asyncio as aioredis
import redis.exceptions as redis_errors

import orjson
from cachetools import TTLCache

log = logging.getLogger("core.cache")

# In order, count one event for each key not at its cap, until ARGV[1] keys are counted: per key examined,
# its new count or -1 when it was at the cap. One round trip for what would be a claim per key.
_INCR_CAPPED_FIRST = """
local want, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local out, got = {}, 0
for i, key in ipairs(KEYS) do
  if got >= want then break end
  local n = tonumber(redis.call('GET', key) or '0')
  if n >= cap then
    out[i] = -1
  else
    n = redis.call('INCR', key)
    if n == 1 then redis.call('EXPIRE', key, ARGV[3]) end
    out[i] = n
    got = got + 1
  end
end
return out
"""


def is_slow(exc: BaseException) -> bool:
    """A timeout (of an operation, of the connection pool's wait), as opposed to a refused or broken connection."""
    if isinstance(exc, (TimeoutError, redis_errors.TimeoutError)):
        return True
    return isinstance(exc, redis_errors.ConnectionError) and isinstance(exc.__cause__, TimeoutError)


class Cache:
    """JSON values by string key. ``redis`` is a ``redis.asyncio.Redis`` or None.

    ``probe``: a blocking ``() -> None`` that raises when Redis does not answer (run in a thread); by
    default a synchronous PING to the async client's host and port with ``probe_timeout_s``."""

    def __init__(self, redis: Any | None, *, lru_size: int = 4096, lru_ttl_s: float = 600.0,
                 op_timeout_s: float = 0.25, retry_after_s: float = 1.0, timeouts_before_probe: int = 3,
                 probe_timeout_s: float | None = None, probe: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis
        self._lru: TTLCache[str, bytes] = TTLCache(maxsize=lru_size, ttl=lru_ttl_s, timer=clock)
        self._counters: TTLCache[str, int] = TTLCache(maxsize=lru_size, ttl=86400, timer=clock)
        self._timeout = op_timeout_s
        self._retry_after = retry_after_s
        self._timeouts_before_probe = max(1, timeouts_before_probe)
        self._probe_timeout = probe_timeout_s if probe_timeout_s is not None else max(1.0, 4 * op_timeout_s)
        self._probe_fn = probe
        self._probe_task: asyncio.Task | None = None
        self._clock = clock
        self._down_until = 0.0
        self._down_since: float | None = None
        self._last_error = ""
        self._timeouts_in_a_row = 0
        self.stats = {"timeouts": 0, "probes": 0, "probes_failed": 0, "outages": 0}

    # -- state --------------------------------------------------------------------
    @property
    def redis_configured(self) -> bool:
        return self.redis is not None

    @property
    def redis_up(self) -> bool:
        return self.redis is not None and self._down_since is None

    def status(self) -> dict[str, Any]:
        if self.redis is None:
            return {"redis": "not configured", "lru_entries": len(self._lru)}
        state = "up" if self._down_since is None else "down"
        out: dict[str, Any] = {"redis": state, "lru_entries": len(self._lru)}
        if self._last_error and state == "down":
            out["redis_error"] = self._last_error
        if self.stats["timeouts"]:
            out["redis_timeouts"] = self.stats["timeouts"]
        return out

    def _usable(self) -> bool:
        return self.redis is not None and self._clock() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self._down_until = self._clock() + self._retry_after
        self._last_error = f"{type(exc).__name__}: {exc}"[:200]
        if self._down_since is None:
            self._down_since = self._clock()
            self.stats["outages"] += 1
            log.warning("Redis unavailable, serving from the in-process cache only: %s", self._last_error)

    def _timed_out(self, exc: BaseException) -> None:
        self.stats["timeouts"] += 1
        if self._down_since is not None:  # a trial call while down: stay down
            self._down_until = self._clock() + self._retry_after
            return
        self._timeouts_in_a_row += 1
        if self._timeouts_in_a_row >= self._timeouts_before_probe and self._probe_task is None:
            self._probe_task = asyncio.get_running_loop().create_task(self._confirm(exc))

    async def _confirm(self, cause: BaseException) -> None:
        """Timeouts in a row: is Redis down, or only slow to reach from a busy loop? Ask from a thread."""
        self.stats["probes"] += 1
        try:
            await asyncio.to_thread(self._probe)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats["probes_failed"] += 1
            self._failed(exc if not is_slow(exc) else cause)
        else:
            self._timeouts_in_a_row = 0
            log.debug("Redis slow (%d timeouts), probe answered: not down", self.stats["timeouts"])
        finally:
            self._probe_task = None

    def _probe(self) -> None:
        if self._probe_fn is None:
            self._probe_fn = _sync_ping(self.redis, self._probe_timeout)
        self._probe_fn()

    def _succeeded(self) -> None:
        self._timeouts_in_a_row = 0
        if self._down_since is not None:
            log.info("Redis is back after %.1fs; shared caching resumed", self._clock() - self._down_since)
            self._down_since = None
            self._last_error = ""

    async def _call(self, fn: Callable[[], Any], timeout_s: float | None = None) -> tuple[bool, Any]:
        if not self._usable():
            return False, None
        try:
            result = await asyncio.wait_for(fn(), timeout_s or self._timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any Redis failure degrades to the local level
            if is_slow(exc):
                self._timed_out(exc)
            else:
                self._failed(exc)
            return False, None
        self._succeeded()
        return True, result

    # -- values -------------------------------------------------------------------
    def get_local(self, key: str) -> Any | None:
        """The in-process level only: no await, no Redis."""
        raw = self._lru.get(key)
        return None if raw is None else orjson.loads(raw)

    async def get(self, key: str) -> Any | None:
        raw = self._lru.get(key)
        if raw is None:
            ok, raw = await self._call(lambda: self.redis.get(key))
            if not ok or raw is None:
                return None
            self._lru[key] = raw
        return orjson.loads(raw)

    async def set(self, key: str, value: Any, ttl_s: int) -> None:
        raw = orjson.dumps(value)
        self._lru[key] = raw
        await self._call(lambda: self.redis.set(key, raw, ex=max(1, int(ttl_s))))

    async def incr_capped_first(self, keys: list[str], cap: int, want: int, ttl_s: int) -> list[int | None]:
        """Count one event for each of ``keys`` that is below ``cap``, in order, until ``want`` of them were
        counted, atomically and in one round trip (TTL set on a key's first count): per key examined, its new
        count or None when it was at the cap (not counted). While Redis is down, per-process counters apply
        the same rule, so caps still hold per instance. Keys
        after the ``want``-th counted one are not examined. In Redis Cluster the keys must share a hash
        slot (a ``{hash tag}``)."""
        if not keys or want <= 0:
            return []
        ok, out = await self._call(lambda: self.redis.eval(_INCR_CAPPED_FIRST, len(keys), *keys, int(want),
                                                           int(cap), max(1, int(ttl_s))))
        if ok:
            return [None if int(n) < 0 else int(n) for n in out]
        result: list[int | None] = []
        for key in keys:  # per-process counters while Redis is down, same rule
            if sum(r is not None for r in result) >= want:
                break
            n = self._counters.get(key, 0)
            if n >= cap:
                result.append(None)
            else:
                self._counters[key] = n + 1
                result.append(n + 1)
        return result

    async def peek_count(self, key: str) -> int:
        ok, n = await self._call(lambda: self.redis.get(key))
        if ok:
            return int(n or 0)
        return self._counters.get(key, 0)

    async def ping(self) -> bool:
        """Health's check: the probe's longer timeout, not one operation's."""
        ok, _ = await self._call(lambda: self.redis.ping(), self._probe_timeout)
        return ok

    async def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
        if self.redis is not None:
            try:
                await self.redis.aclose()
            except Exception:  # closing a broken connection must not mask anything
                pass


def make_redis(settings: Any) -> Any | None:
    """The process's one Redis client, or None when no Redis is configured.

    Locally a ``REDIS_URL``; in Azure ``REDIS_HOST`` with TLS and Entra ID (the
    managed identity), through redis-entraid's credential provider.
    """
    common = dict(socket_timeout=settings.redis_timeout_s, socket_connect_timeout=settings.redis_timeout_s,
                  retry_on_timeout=False, health_check_interval=30)
    if settings.redis_host:
        from redis_entraid.cred_provider import create_from_default_azure_credential

        provider = create_from_default_azure_credential(("https://redis.azure.com/.default",))
        pool = aioredis.BlockingConnectionPool(
            host=settings.redis_host, port=settings.redis_port, ssl=True,
            connection_class=aioredis.SSLConnection, credential_provider=provider,
            max_connections=settings.redis_max_connections, timeout=settings.redis_timeout_s, **common)
        return aioredis.Redis(connection_pool=pool)
    if settings.redis_url:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=settings.redis_max_connections,
            timeout=settings.redis_timeout_s, **common)
        return aioredis.Redis(connection_pool=pool)
    return None


def _sync_ping(client: Any, timeout_s: float) -> Callable[[], None]:
    """A blocking PING to the same Redis as ``client`` (an asyncio client), for the probe thread."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kw = client.connection_pool.connection_kwargs
    params: dict[str, Any] = {k: kw[k] for k in ("host", "port", "db", "username", "password",
                                                  "credential_provider") if kw.get(k) is not None}
    if issubclass(client.connection_pool.connection_class, aioredis.SSLConnection):
        params["ssl"] = True
    sync = redis.Redis(socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                       retry=Retry(NoBackoff(), 0), single_connection_client=True, **params)
    lock = threading.Lock()

    def ping() -> None:
        with lock:  # one connection, one probe at a time
            sync.ping()

    return ping
