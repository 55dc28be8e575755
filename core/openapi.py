"""The OpenAPI 3.0 document of the API, served at /api/openapi.json and checked in as openapi.json."""

from __future__ import annotations

from typing import Any

from core.search.models import MAX_QUERY_CHARS, MAX_TOP_K

_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}
_SCALAR = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Invalid request", 401: "Missing or wrong function key", 413: "Body too large",
            415: "Body is not JSON", 503: "Not ready (index loading); see Retry-After",
            504: "Deadline exceeded"}
    return {str(c): {"description": text[c],
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for c in codes}


def document() -> dict[str, Any]:
    search_request = {
        "type": "object", "required": ["query"], "additionalProperties": False,
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS},
            "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 10},
            "filters": {"type": "object", "additionalProperties": {
                "oneOf": [_SCALAR, {"type": "array", "minItems": 1, "items": _SCALAR}]}},
            "answer": {"type": "boolean", "default": False},
        },
    }
    result = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "url": {"type": "string"},
                       "snippet": {"type": "string"}, "score": {"type": "number"},
                       "bm25_rank": {"type": "integer", "nullable": True},
                       "dense_rank": {"type": "integer", "nullable": True},
                       "metadata": {"type": "object"}},
    }
    search_response = {
        "type": "object", "required": ["results", "index_version", "took_ms"],
        "properties": {"query": {"type": "string"}, "results": {"type": "array", "items": result},
                       "index_version": {"type": "string"}, "took_ms": {"type": "number"},
                       "cached": {"type": "boolean"}, "fusion": {"type": "string"},
                       "answer": {"type": "object", "nullable": True},
                       "degraded": {"type": "boolean"}, "reasons": {"type": "array", "items": {"type": "string"}}},
    }
    ads_request = {
        "type": "object", "required": ["thread_name", "conversation"], "additionalProperties": False,
        "properties": {
            "thread_name": {"type": "string", "minLength": 1, "maxLength": 128},
            "conversation": {"type": "array", "minItems": 1, "maxItems": 50, "items": {
                "type": "object", "required": ["role", "content"], "additionalProperties": False,
                "properties": {"role": {"type": "string", "enum": ["user", "assistant"]},
                               "content": {"type": "string", "minLength": 1}}}},
        },
    }
    ad = {"type": "object", "properties": {k: {"type": "string"} for k in
                                           ("id", "advertiser", "title", "body", "url", "label", "impression_id")}}
    ads_response = {"type": "object", "required": ["ads", "degraded"],
                    "properties": {"ads": {"type": "array", "items": ad}, "degraded": {"type": "boolean"},
                                   "reasons": {"type": "array", "items": {"type": "string"}},
                                   "no_ads_reason": {"type": "string"}}}
    json_body = lambda ref: {"required": True, "content": {"application/json": {"schema": ref}}}  # noqa: E731
    ok = lambda ref, d: {"description": d, "content": {"application/json": {"schema": ref}}}  # noqa: E731
    return {
        "openapi": "3.0.3",
        "info": {"title": "Search and ads API", "version": "1.0.0",
                 "description": "Hybrid search over a knowledge base, and sponsored ads for a chat conversation."},
        "servers": [{"url": "/api"}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
        "paths": {
            "/search": {
                "post": {"operationId": "search",
                         "requestBody": json_body({"$ref": "#/components/schemas/SearchRequest"}),
                         "responses": {"200": ok({"$ref": "#/components/schemas/SearchResponse"}, "Results"),
                                       **_errors(400, 401, 413, 415, 503, 504)}},
                "get": {"operationId": "searchGet",
                        "parameters": [{"name": "q", "in": "query", "required": True,
                                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS}},
                                       {"name": "top_k", "in": "query", "required": False,
                                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K}}],
                        "responses": {"200": ok({"$ref": "#/components/schemas/SearchResponse"}, "Results"),
                                      **_errors(400, 401, 503, 504)}},
            },
            "/ads": {
                "post": {"operationId": "ads", "requestBody": json_body({"$ref": "#/components/schemas/AdsRequest"}),
                         "responses": {"200": ok({"$ref": "#/components/schemas/AdsResponse"}, "Sponsored ads"),
                                       **_errors(400, 401, 413, 415, 503, 504)}},
            },
            "/health": {"get": {"operationId": "health", "security": [],
                                "responses": {"200": {"description": "Ready"},
                                              "503": {"description": "Not ready; the body says why"}}}},
        },
        "components": {
            "schemas": {"SearchRequest": search_request, "SearchResponse": search_response,
                        "AdsRequest": ads_request, "AdsResponse": ads_response, "Error": _ERROR},
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }
