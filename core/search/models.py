"""The /api/search request: parsed and validated once, with 400s that say what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import bad_request

MAX_QUERY_CHARS = 1000
MAX_TOP_K = 50
_SCALAR = (str, int, float, bool)
_FIELDS = {"query", "top_k", "filters", "answer"}


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    top_k: int
    filters: dict[str, Any] | None = None
    answer: bool = False


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise bad_request(f"'{name}' must be an integer", "invalid_type")
    return value


def parse_search_request(body: Any, default_top_k: int = 10) -> SearchRequest:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", "invalid_body")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(map(str, unknown))}", "unknown_field")
    query = body.get("query")
    if not isinstance(query, str):
        raise bad_request("'query' is required and must be a string", "invalid_query")
    if not query.strip():
        raise bad_request("'query' must not be empty", "invalid_query")
    if len(query) > MAX_QUERY_CHARS:
        raise bad_request(f"'query' is longer than {MAX_QUERY_CHARS} characters", "query_too_long")
    top_k = default_top_k if body.get("top_k") is None else _int(body["top_k"], "top_k")
    if not 1 <= top_k <= MAX_TOP_K:
        raise bad_request(f"'top_k' must be between 1 and {MAX_TOP_K}", "invalid_top_k")
    filters = body.get("filters")
    if filters is not None:
        if not isinstance(filters, dict):
            raise bad_request("'filters' must be an object of metadata field -> value", "invalid_filters")
        for key, value in filters.items():
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, _SCALAR) for v in values):
                raise bad_request(f"filter {key!r} must be a string, number, boolean or a non-empty list of them",
                                  "invalid_filters")
        filters = filters or None
    answer = body.get("answer", False)
    if not isinstance(answer, bool):
        raise bad_request("'answer' must be a boolean", "invalid_type")
    return SearchRequest(query=query.strip(), top_k=top_k, filters=filters, answer=answer)


def from_query_params(params: dict[str, str], default_top_k: int = 10) -> SearchRequest:
    """GET /api/search?q=...&top_k=... for quick tries."""
    body: dict[str, Any] = {"query": params.get("q", params.get("query"))}
    if "top_k" in params:
        body["top_k"] = params["top_k"]
    if params.get("answer", "").lower() in ("1", "true", "yes"):
        body["answer"] = True
    return parse_search_request(body, default_top_k)
