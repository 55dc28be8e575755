"""One typed, frozen settings object, read from the environment once per process.

Every setting has an environment variable, a default that works on a developer
machine with nothing configured (the "embedded defaults"), and a one-line meaning.
`local.settings.json.example` lists each of them; a test keeps the two in step.

Reading never raises: a malformed value is recorded in ``Settings.errors`` and the
default is used, so that importing the function app cannot fail. Health reports
the errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _setting(env: str, default: Any, help: str) -> Any:  # noqa: A002 - "help" reads best here
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    # --- HTTP surface -------------------------------------------------------------
    function_keys: str = _setting(
        "FUNCTION_KEYS", "local-dev-key",
        "Comma-separated function keys accepted by the local host (Azure checks its own keys).")
    request_deadline_s: float = _setting(
        "REQUEST_DEADLINE_S", 8.0, "Deadline for a whole request, every outbound call included.")
    max_body_bytes: int = _setting(
        "MAX_BODY_BYTES", 262144, "Largest accepted request body; bigger bodies get 413 before parsing.")
    log_level: str = _setting("LOG_LEVEL", "INFO", "Python log level of the app's loggers.")

    # --- Index source -------------------------------------------------------------
    index_local_path: str = _setting(
        "INDEX_LOCAL_PATH", "var/index",
        "Local index bundle used when no Blob Storage is configured; built from SAMPLE_CORPUS if missing.")
    sample_corpus: str = _setting(
        "SAMPLE_CORPUS", "data/knowledge_base.jsonl", "JSONL corpus of the embedded sample knowledge base.")
    blob_connection_string: str = _setting(
        "BLOB_CONNECTION_STRING", "",
        "Blob Storage connection string (Azurite or development). Empty: use BLOB_ACCOUNT_URL or local files.")
    blob_account_url: str = _setting(
        "BLOB_ACCOUNT_URL", "",
        "Blob account URL used with DefaultAzureCredential (managed identity in Azure).")
    azure_client_id: str = _setting(
        "AZURE_CLIENT_ID", "", "Client id of the user-assigned managed identity (empty: system/default).")
    index_container: str = _setting("INDEX_CONTAINER", "search-index", "Blob container of the index bundles.")
    cache_dir: str = _setting(
        "LOCAL_CACHE_DIR", "", "Where downloaded bundles are kept (default: <tmp>/searchsvc-cache).")
    refresh_interval_s: float = _setting(
        "REFRESH_INTERVAL_S", 60.0,
        "How often running instances check the `latest` pointer for a new index/catalog (0 = never).")
    blob_timeout_s: float = _setting("BLOB_TIMEOUT_S", 30.0, "Timeout of one Blob Storage operation.")

    # --- Retrieval ----------------------------------------------------------------
    default_top_k: int = _setting("DEFAULT_TOP_K", 10, "Results returned when a request gives no top_k.")
    fusion_method: str = _setting("FUSION_METHOD", "convex", "Hybrid fusion: `convex` or `rrf`.")
    fusion_depth: int = _setting("FUSION_DEPTH", 100, "Candidates taken from each retriever before fusion.")
    rrf_k: int = _setting("RRF_K", 60, "k of reciprocal rank fusion.")
    convex_alpha: float = _setting(
        "CONVEX_ALPHA", 0.8, "Weight of the dense score in convex fusion (1 - alpha goes to BM25).")
    encoder_threads: int = _setting("ENCODER_THREADS", 1, "onnxruntime intra-op threads of the query encoder.")
    search_workers: int = _setting(
        "SEARCH_WORKERS", 2, "Threads that run CPU work (encoding, scoring) off the event loop.")

    # --- Cache --------------------------------------------------------------------
    redis_url: str = _setting(
        "REDIS_URL", "redis://127.0.0.1:6379/0",
        "Redis connection string (local/dev). Empty with REDIS_HOST unset: in-process cache only.")
    redis_host: str = _setting(
        "REDIS_HOST", "", "Azure Managed Redis host name; when set, connect with TLS and Entra ID.")
    redis_port: int = _setting("REDIS_PORT", 10000, "Port of REDIS_HOST (Azure Managed Redis: 10000).")
    redis_timeout_s: float = _setting("REDIS_TIMEOUT_S", 0.25, "Timeout of one Redis operation.")
    redis_max_connections: int = _setting("REDIS_MAX_CONNECTIONS", 128, "Size of the Redis connection pool.")
    cache_ttl_s: int = _setting("CACHE_TTL_S", 600, "Lifetime of a cached search result.")
    lru_size: int = _setting("LRU_SIZE", 4096, "Entries of the in-process LRU in front of Redis.")

    # --- Claude -------------------------------------------------------------------
    anthropic_api_key: str = _setting(
        "ANTHROPIC_API_KEY", "", "Anthropic API key. Empty: ads and answers run in their non-LLM mode.")
    anthropic_base_url: str = _setting(
        "ANTHROPIC_BASE_URL", "", "Override of the Messages API base URL (tests point it at a fake).")
    claude_model: str = _setting("CLAUDE_MODEL", "claude-haiku-4-5", "Model used for ads context and answers.")
    claude_timeout_s: float = _setting("CLAUDE_TIMEOUT_S", 5.0, "Timeout of one Claude call.")
    claude_max_attempts: int = _setting(
        "CLAUDE_MAX_ATTEMPTS", 2, "Attempts per Claude call, first included (only retryable errors).")
    breaker_failures: int = _setting(
        "BREAKER_FAILURES", 5, "Consecutive Claude failures that open the circuit breaker.")
    breaker_cooldown_s: float = _setting(
        "BREAKER_COOLDOWN_S", 30.0, "How long the breaker stays open before one probe call.")

    # --- Ads ----------------------------------------------------------------------
    ads_catalog_path: str = _setting(
        "ADS_CATALOG_PATH", "data/ads_catalog.jsonl", "Local ads catalog used when no Blob Storage is set.")
    ads_container: str = _setting("ADS_CONTAINER", "ads-catalog", "Blob container of the ads catalog.")
    ads_max: int = _setting("ADS_MAX", 3, "Most ads returned for one request.")
    ads_frequency_cap: int = _setting("ADS_FREQUENCY_CAP", 3, "Times one ad may be shown per thread per day.")
    ads_relevance_floor: float = _setting("ADS_RELEVANCE_FLOOR", 0.2, "Lowest relevance an ad may have.")
    ads_claude_rerank: bool = _setting(
        "ADS_CLAUDE_RERANK", False, "Let Claude re-rank the eligible ads (a second, sequential Claude call).")
    context_turns: int = _setting("CONTEXT_TURNS", 8, "Last conversation turns read for the ads context.")
    context_cache_ttl_s: int = _setting(
        "CONTEXT_CACHE_TTL_S", 1800, "Lifetime of a cached conversation context (per thread + last turns).")

    # --- Geocoding ----------------------------------------------------------------
    azure_maps_key: str = _setting("AZURE_MAPS_KEY", "", "Azure Maps subscription key (empty: offline geocoder).")
    azure_maps_client_id: str = _setting(
        "AZURE_MAPS_CLIENT_ID", "", "Azure Maps account client id, for Entra ID auth with the managed identity.")
    azure_maps_base_url: str = _setting(
        "AZURE_MAPS_BASE_URL", "https://atlas.microsoft.com", "Azure Maps endpoint (tests point it at a fake).")
    maps_timeout_s: float = _setting("MAPS_TIMEOUT_S", 2.0, "Timeout of one Azure Maps call.")
    geocode_cache_ttl_s: int = _setting("GEOCODE_CACHE_TTL_S", 86400, "Lifetime of a cached geocode.")

    # --- Telemetry ----------------------------------------------------------------
    appinsights_connection_string: str = _setting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING", "",
        "Application Insights connection string; when set, traces go out through OpenTelemetry.")

    errors: tuple[str, ...] = field(default=(), metadata={})

    # ------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        errors: list[str] = []
        for f in fields(cls):
            name = f.metadata.get("env")
            if not name or name not in env:
                continue
            raw = env[name].strip()
            try:
                values[f.name] = _parse(raw, type(f.default))
            except ValueError:
                errors.append(f"{name}={raw!r} is not a valid {type(f.default).__name__}; using {f.default!r}")
        settings = cls(**values, errors=tuple(errors))
        return settings._validated()

    def _validated(self) -> "Settings":
        problems = list(self.errors)
        values = self.as_dict()
        for f in fields(self):
            # An unresolved Key Vault reference reaches the app as the literal reference text.
            v = values[f.name]
            if isinstance(v, str) and v.startswith("@Microsoft.KeyVault("):
                problems.append(f"{f.metadata.get('env')} is an unresolved Key Vault reference; treated as unset")
                values[f.name] = ""
        if self.fusion_method not in ("convex", "rrf"):
            problems.append(f"FUSION_METHOD={self.fusion_method!r} must be 'convex' or 'rrf'")
        if not 0.0 <= self.convex_alpha <= 1.0:
            problems.append(f"CONVEX_ALPHA={self.convex_alpha} must lie in [0, 1]")
        for name in ("request_deadline_s", "max_body_bytes", "fusion_depth", "rrf_k", "default_top_k"):
            if getattr(self, name) <= 0:
                problems.append(f"{env_name(name)} must be positive")
        if problems == list(self.errors):
            return self
        return Settings(**{**values, "errors": tuple(problems)})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # Derived values ---------------------------------------------------------------
    def path(self, value: str) -> Path:
        """Resolve a configured path relative to the project root."""
        p = Path(value)
        return p if p.is_absolute() else PROJECT_ROOT / p

    @property
    def blob_configured(self) -> bool:
        return bool(self.blob_connection_string or self.blob_account_url)

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.function_keys.split(",") if k.strip())

    @property
    def cache_path(self) -> Path:
        if self.cache_dir:
            return self.path(self.cache_dir)
        import tempfile

        return Path(tempfile.gettempdir()) / "searchsvc-cache"

    @property
    def claude_configured(self) -> bool:
        return bool(self.anthropic_api_key)

    @property
    def maps_configured(self) -> bool:
        return bool(self.azure_maps_key or self.azure_maps_client_id)

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log or show: secrets are reduced to whether they are set."""
        secret = {"anthropic_api_key", "azure_maps_key", "blob_connection_string", "function_keys",
                  "appinsights_connection_string", "redis_url"}
        return {k: (bool(v) if k in secret else v) for k, v in self.as_dict().items()}


def env_name(field_name: str) -> str:
    for f in fields(Settings):
        if f.name == field_name:
            return f.metadata["env"]
    raise KeyError(field_name)


def documented() -> list[tuple[str, Any, str]]:
    """(env var, default, meaning) of every setting, in declaration order."""
    return [(f.metadata["env"], f.default, f.metadata["help"]) for f in fields(Settings) if f.metadata.get("env")]


def _parse(raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(raw)
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    return raw
