"""The OpenAPI 3.0 document of the API, served at /api/openapi.json and checked in as openapi.json.

Regenerate the checked-in copy with ``python -m core.openapi > openapi.json``; a test compares the two.
"""

from __future__ import annotations

import json
from typing import Any

from core.ads.models import MAX_THREAD_NAME, MAX_TOTAL_CHARS, MAX_TURNS, ROLES
from core.contract import VISIBLE_PATTERN
from core.search.models import MAX_QUERY_CHARS, MAX_TOP_K

MAX_GET_URL_BYTES = 8190  # the request line of a GET (method, path, query string, version)

_REF = "#/components/schemas/"
_TYPING = (
    "Typing. POST bodies are strict RFC 8259 JSON, typed strictly: an integer field takes a JSON integer "
    "literal (5, not \"5\", 5.0 or true), a boolean field a JSON boolean, and no field accepts null (omit an "
    "optional field to get its default). NaN, Infinity, numbers beyond the float range (1e400, or an integer "
    "literal too long for one) and lone surrogate escapes (\\ud800) are invalid JSON (400 invalid_json); "
    "unknown fields are refused (400 unknown_field). GET query strings are parsed strictly: integers are "
    "ASCII digits 0-9 only, booleans are true or false; unknown query parameters are ignored (the function "
    "key travels as ?code=). Text fields that must say something need one character outside Unicode's "
    "White_Space set (the `pattern`); zero-width and control characters count as characters.\n\n"
    f"Limits. A GET request line (path and query string, percent-encoded) may be at most {MAX_GET_URL_BYTES:,} "
    "bytes: longer ones get 414 with the JSON error (code uri_too_long); send long queries with POST. "
    "Bodies over MAX_BODY_BYTES (default 262,144) get 413 before they are parsed.\n\n"
    "Every response, errors included, is JSON and carries X-Request-Id (yours if you sent one of 1-64 "
    "visible ASCII characters, else a new one) and X-Process-Time."
)
_NO_RESULTS = (
    "Present when the query was not searched because it has no searchable term: `no_letters_or_digits` "
    "(only punctuation, symbols, zero-width or control characters) or `only_stop_words` (every word is a "
    "stop-word such as \"the\" or \"of\"). `results` is then empty, rather than passages that merely lie "
    "nearest to a meaningless vector.")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _text(min_len: int, max_len: int | None, description: str) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string", "minLength": min_len, "pattern": VISIBLE_PATTERN,
                         "description": description}
    if max_len is not None:
        s["maxLength"] = max_len
    return s


_HEADERS = {
    "X-Request-Id": {"description": "Your X-Request-Id when it is 1-64 visible ASCII characters, else a new one",
                     "required": True, "schema": {"type": "string"}},
    "X-Process-Time": {"description": "Time spent in the app, e.g. `4.12ms`", "required": True,
                       "schema": {"type": "string"}},
}


def _json(ref: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "headers": {**_HEADERS, **(headers or {})},
            "content": {"application/json": {"schema": {"$ref": _REF + ref}}}}


_ERROR_TEXT = {
    400: "Invalid request: invalid_json, invalid_encoding, invalid_body, invalid_type, unknown_field, "
         "invalid_text and the field-specific codes",
    401: "Missing or wrong function key (unauthorized)",
    413: "Body larger than MAX_BODY_BYTES (payload_too_large)",
    414: f"Request line longer than {MAX_GET_URL_BYTES:,} bytes (uri_too_long); use POST",
    415: "Body is not application/json (unsupported_media_type)",
    503: "Not ready (index loading): not_ready, see Retry-After",
    504: "The request deadline passed (deadline_exceeded)",
}


def _errors(*codes: int) -> dict[str, Any]:
    out = {}
    for c in codes:
        extra = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}} if c == 503 else None
        out[str(c)] = _json("Error", _ERROR_TEXT[c], extra)
    return out


def _schemas() -> dict[str, Any]:
    scalar = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    error = {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}},
    }
    search_request = {
        "type": "object", "required": ["query"], "additionalProperties": False,
        "properties": {
            "query": _text(1, MAX_QUERY_CHARS, "What to search for (characters, not bytes). Echoed back as sent."),
            "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 10,
                      "description": "How many documents to return; a JSON integer. Omit for DEFAULT_TOP_K."},
            "filters": {"type": "object", "description": "Metadata field -> value, or a non-empty list of "
                                                         "values (any of). An empty object means no filter.",
                        "additionalProperties": {"oneOf": [scalar, {"type": "array", "minItems": 1,
                                                                    "items": scalar}]}},
            "answer": {"type": "boolean", "default": False,
                       "description": "Ask Claude for an answer that cites the top 5 results."},
        },
    }
    result = {
        "type": "object",
        "required": ["id", "title", "url", "snippet", "score", "bm25_rank", "dense_rank", "metadata"],
        "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "url": {"type": "string"},
                       "snippet": {"type": "string", "description": "The document's best passage"},
                       "score": {"type": "number"},
                       "bm25_rank": _nullable({"type": "integer", "minimum": 1}),
                       "dense_rank": _nullable({"type": "integer", "minimum": 1}),
                       "metadata": {"type": "object"}},
    }
    answer = {
        "type": "object", "required": ["text", "citations", "grounded"],
        "description": "Written by Claude from the top 5 results; citations are checked against the results.",
        "properties": {
            "text": {"type": "string"},
            "citations": {"type": "array", "items": {
                "type": "object", "required": ["id", "title", "url"],
                "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "url": {"type": "string"}}}},
            "grounded": {"type": "boolean", "description": "True when the answer cites at least one result"},
        },
    }
    search_response = {
        "type": "object", "required": ["query", "results", "index_version", "fusion", "cached", "took_ms"],
        "properties": {
            "query": {"type": "string", "description": "This request's query, exactly as sent"},
            "results": {"type": "array", "items": {"$ref": _REF + "SearchResult"}},
            "index_version": {"type": "string"}, "fusion": {"type": "string", "enum": ["convex", "rrf"]},
            "cached": {"type": "boolean"}, "took_ms": {"type": "number"},
            "answer": _nullable({"allOf": [{"$ref": _REF + "Answer"}],
                                 "description": "Only when answer was requested; null when none could be "
                                                "written (then degraded and reasons say why)"}),
            "degraded": {"type": "boolean"}, "reasons": {"type": "array", "items": {"type": "string"}},
            "no_results_reason": {"type": "string", "enum": ["no_letters_or_digits", "only_stop_words"],
                                  "description": _NO_RESULTS},
        },
    }
    ads_request = {
        "type": "object", "required": ["thread_name", "conversation"], "additionalProperties": False,
        "properties": {
            "thread_name": _text(1, MAX_THREAD_NAME, "Your id of the chat thread (frequency caps count per "
                                                     "thread); echoed back"),
            "conversation": {
                "type": "array", "minItems": 1, "maxItems": MAX_TURNS,
                "description": f"The chat so far, oldest first: at most {MAX_TURNS} turns and "
                               f"{MAX_TOTAL_CHARS:,} characters of content in all (400 conversation_too_long).",
                "items": {"type": "object", "required": ["role", "content"], "additionalProperties": False,
                          "properties": {"role": {"type": "string", "enum": list(ROLES)},
                                         "content": _text(1, MAX_TOTAL_CHARS, "The turn's text")}}},
        },
    }
    nullable_str = _nullable({"type": "string"})
    ad = {
        "type": "object",
        "required": ["id", "advertiser", "title", "body", "url", "label", "impression_id", "why"],
        "properties": {
            **{k: {"type": "string"} for k in ("id", "advertiser", "title", "body", "url", "impression_id")},
            "label": {"type": "string", "enum": ["Sponsored"]},
            "why": {"type": "object", "required": ["matched_topics", "distance_km"], "properties": {
                "matched_topics": {"type": "array", "items": {"type": "string"}},
                "distance_km": _nullable({"type": "number",
                                          "description": "From the conversation's place; null when none"})}},
        },
    }
    place = _nullable({"type": "object", "required": ["name", "lat", "lon", "source"], "properties": {
        "name": {"type": "string"}, "country": nullable_str, "region": nullable_str,
        "lat": {"type": "number"}, "lon": {"type": "number"}, "source": {"type": "string"}}})
    ads_response = {
        "type": "object", "required": ["thread_name", "ads", "degraded", "reasons", "catalog_version", "context"],
        "properties": {
            "thread_name": {"type": "string"},
            "ads": {"type": "array", "items": {"$ref": _REF + "Ad"}},
            "degraded": {"type": "boolean", "description": "A stage fell back (see reasons)"},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "catalog_version": {"type": "string"},
            "context": {"type": "object", "required": ["topics", "place", "language"], "properties": {
                "topics": {"type": "array", "items": {"type": "string"},
                           "description": "Topics read from the conversation, as catalog terms"},
                "place": place, "language": nullable_str}},
            "no_ads_reason": {"type": "string", "description": "Why no ads are shown on purpose, e.g. "
                                                               "sensitive_conversation"},
            "safety": {"type": "object", "required": ["category", "source"],
                       "description": "Only on a sensitive conversation: what the screen found",
                       "properties": {"category": {"type": "string"}, "source": {"type": "string"}}},
        },
    }
    health = {
        "type": "object", "required": ["status", "index", "cache", "uptime_s", "warm"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "index": {"type": "object", "required": ["state"], "description": "Search index state and version",
                      "properties": {"state": {"type": "string"}, "version": nullable_str}},
            "catalog": {"type": "object", "description": "Ads catalog state and version"},
            "cache": {"type": "object", "description": "LRU and Redis state (redis up/down)"},
            "geocoder": {"type": "object"}, "claude": {"type": "object", "description": "Breaker state"},
            "uptime_s": {"type": "number"}, "warm": {"type": "boolean"},
            "config_errors": {"type": "array", "items": {"type": "string"}},
            "reason": {"type": "string", "description": "Why the status is not ok"},
        },
    }
    return {"SearchRequest": search_request, "SearchResult": result, "Answer": answer,
            "SearchResponse": search_response, "AdsRequest": ads_request, "Ad": ad, "AdsResponse": ads_response,
            "Health": health, "Error": error}


def document() -> dict[str, Any]:
    body = lambda ref: {"required": True, "content": {"application/json": {"schema": {"$ref": _REF + ref}}}}  # noqa: E731
    query_param = {"name": "q", "in": "query", "required": True,
                   "description": f"The query (alias: `query`; `q` wins when both are given). The whole "
                                  f"request line may be at most {MAX_GET_URL_BYTES:,} bytes: use POST for "
                                  f"long or non-ASCII queries.",
                   "schema": _text(1, MAX_QUERY_CHARS, "What to search for")}
    get_params = [query_param,
                  {"name": "top_k", "in": "query", "required": False, "description": "ASCII digits 0-9",
                   "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 10}},
                  {"name": "answer", "in": "query", "required": False, "description": "true or false",
                   "schema": {"type": "boolean", "default": False}}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "Search and ads API", "version": "1.1.0",
                 "description": "Hybrid search over a knowledge base, and sponsored ads for a chat conversation."
                                "\n\n" + _TYPING},
        "servers": [{"url": "/api"}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
        "paths": {
            "/search": {
                "post": {"operationId": "search", "requestBody": body("SearchRequest"),
                         "responses": {"200": _json("SearchResponse", "Results"),
                                       **_errors(400, 401, 413, 415, 503, 504)}},
                "get": {"operationId": "searchGet", "description": "The same search for quick tries (no filters). "
                                                                   "Unknown parameters are ignored.",
                        "parameters": get_params,
                        "responses": {"200": _json("SearchResponse", "Results"),
                                      **_errors(400, 401, 414, 503, 504)}},
            },
            "/ads": {
                "post": {"operationId": "ads", "requestBody": body("AdsRequest"),
                         "responses": {"200": _json("AdsResponse", "Sponsored ads (possibly none)"),
                                       **_errors(400, 401, 413, 415, 503, 504)}},
            },
            "/health": {"get": {"operationId": "health", "security": [],
                                "responses": {"200": _json("Health", "Ready"),
                                              "503": _json("Health", "Not ready; the body says why"),
                                              **_errors(414)}}},
            "/openapi.json": {"get": {"operationId": "openapi", "security": [],
                                      "responses": {"200": {"description": "This document", "headers": _HEADERS,
                                                            "content": {"application/json": {
                                                                "schema": {"type": "object"}}}},
                                                    **_errors(414)}}},
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }


if __name__ == "__main__":
    print(json.dumps(document(), indent=2, ensure_ascii=False))
