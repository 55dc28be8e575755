"""The /api/search request: parsed and validated once, with 400s that say what is wrong.

Typing follows :mod:`core.contract`: POST JSON is typed strictly (a JSON integer for ``top_k``, a JSON boolean
for ``answer``, ``null`` for no field), GET query strings are parsed strictly (ASCII digits, ``true``/``false``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from core.contract import check_scalar_text, get_bool, get_int, has_visible
from core.errors import bad_request

MAX_QUERY_CHARS = 1000
MAX_TOP_K = 50
_SCALAR = (str, int, float, bool)
_FIELDS = {"query", "top_k", "filters", "answer"}


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str  # as the client sent it (echoed back); the cache key normalises it
    top_k: int
    filters: dict[str, Any] | None = None
    answer: bool = False


def _check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise bad_request("'query' is required and must be a string", "invalid_query")
    if not query:
        raise bad_request("'query' must not be empty", "invalid_query")
    if len(query) > MAX_QUERY_CHARS:
        raise bad_request(f"'query' is longer than {MAX_QUERY_CHARS} characters", "query_too_long")
    check_scalar_text(query, "'query'")
    if not has_visible(query):
        raise bad_request("'query' is only white space", "invalid_query")
    return query


def _check_top_k(top_k: int) -> int:
    if not 1 <= top_k <= MAX_TOP_K:
        raise bad_request(f"'top_k' must be between 1 and {MAX_TOP_K}", "invalid_top_k")
    return top_k


def _check_filters(filters: Any) -> dict[str, Any] | None:
    if not isinstance(filters, dict):
        raise bad_request("'filters' must be an object of metadata field -> value", "invalid_filters")
    for key, value in filters.items():
        check_scalar_text(key, "a filter name")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, _SCALAR) for v in values):
            raise bad_request(f"filter {key!r} must be a string, number, boolean or a non-empty list of them",
                              "invalid_filters")
        for v in values:
            if isinstance(v, str):
                check_scalar_text(v, f"filter {key!r}")
    return filters or None


def parse_search_request(body: Any, default_top_k: int = 10) -> SearchRequest:
    """A decoded POST body. Optional fields are omitted for their default; ``null`` is a wrong type."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", "invalid_body")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise bad_request(f"unknown field(s): {shown}; the fields are query, top_k, filters, answer",
                          "unknown_field")
    query = _check_query(body.get("query"))
    top_k = default_top_k
    if "top_k" in body:
        top_k = body["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise bad_request("'top_k' must be a JSON integer such as 5 (not a string, a fraction or null; "
                              "omit it for the default)", "invalid_type")
    top_k = _check_top_k(top_k)
    filters = _check_filters(body["filters"]) if "filters" in body else None
    answer = body.get("answer", False)
    if not isinstance(answer, bool):
        raise bad_request("'answer' must be true or false (omit it for false)", "invalid_type")
    return SearchRequest(query=query, top_k=top_k, filters=filters, answer=answer)


def from_query_params(params: Mapping[str, str], default_top_k: int = 10) -> SearchRequest:
    """GET /api/search?q=...&top_k=...&answer=true for quick tries.

    ``query`` is an alias of ``q`` (``q`` wins when both are given). Parameters other than these are ignored
    (the function key travels as ``code``), unlike POST, which refuses unknown fields."""
    raw = params.get("q", params.get("query"))
    if raw is None:
        raise bad_request("'q' is required: /api/search?q=...", "invalid_query")
    query = _check_query(raw)
    top_k = _check_top_k(get_int(params["top_k"], "top_k")) if "top_k" in params else default_top_k
    answer = get_bool(params["answer"], "answer") if "answer" in params else False
    return SearchRequest(query=query, top_k=top_k, filters=None, answer=answer)
