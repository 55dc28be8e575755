"""The OpenAPI document against the API (issue 11, item 9): it says what the API does, and real responses,
including the rarer shapes Schemathesis seldom produces (a crisis conversation, an answer, a query with no
searchable term, a health report), validate against its schemas."""

from __future__ import annotations

import json

import azure.functions as func
import jsonschema_rs
import pytest

import core.runtime as runtime_module
import function_app
from core.openapi import document
from core.settings import PROJECT_ROOT
from tests.fixtures.app import app_settings

DOC = document()


def _schema(name: str) -> dict:
    """A component schema as plain JSON Schema: OpenAPI 3.0's ``nullable`` becomes a null alternative."""
    def convert(node):
        if isinstance(node, list):
            return [convert(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: convert(v) for k, v in node.items() if k != "nullable"}
        if "$ref" in out:
            out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/definitions/")
        return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") else out

    defs = convert(DOC["components"]["schemas"])
    return {"$ref": f"#/definitions/{name}", "definitions": defs}


def _valid(name: str, instance) -> None:
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in jsonschema_rs.validator_for(_schema(name)).iter_errors(instance)]
    assert errors == [], (name, errors, instance)


def test_the_document_says_what_the_api_does():
    text = json.dumps(DOC)
    get = DOC["paths"]["/search"]["get"]
    params = {p["name"]: p for p in get["parameters"]}
    assert set(params) == {"q", "top_k", "answer"} and params["answer"]["schema"]["type"] == "boolean"
    assert "`query`" in params["q"]["description"] and "ignored" in get["description"]
    assert "8,190 bytes" in params["q"]["description"] and "414" in get["responses"]
    assert "20,000" in json.dumps(DOC["components"]["schemas"]["AdsRequest"])
    ads = DOC["components"]["schemas"]["AdsResponse"]["properties"]
    assert {"thread_name", "catalog_version", "context", "safety", "no_ads_reason"} <= set(ads)
    assert "why" in DOC["components"]["schemas"]["Ad"]["properties"]
    assert set(DOC["components"]["schemas"]["Answer"]["properties"]) == {"text", "citations", "grounded"}
    assert DOC["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Health"}
    assert "/openapi.json" in DOC["paths"]
    assert "null" in text and "NaN" in text and "ASCII digits" in text  # the typing rule is written down
    for op in (DOC["paths"]["/search"]["post"], DOC["paths"]["/ads"]["post"]):
        assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = DOC["components"]["schemas"]["SearchRequest"]["properties"]
    assert not any(p.get("nullable") for p in request.values())


def test_the_checked_in_document_is_the_served_one():
    assert json.loads((PROJECT_ROOT / "openapi.json").read_text()) == DOC


@pytest.fixture(scope="module")
async def rt(redis_server, sample_bundle, tmp_path_factory):
    runtime = await runtime_module.reset_runtime(app_settings(sample_bundle, redis_server.url,
                                                              tmp_path_factory.mktemp("openapi")))
    await runtime.index.get(wait_s=180)
    assert await runtime.warmed(180)
    yield runtime
    await runtime.close()
    runtime_module._runtime = None


def _post(route: str, body) -> func.HttpRequest:
    return func.HttpRequest("POST", f"http://localhost/api/{route}", body=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})


async def test_real_responses_match_the_document(rt):
    cases = [
        ("search", {"query": "trouble falling asleep", "top_k": 3}, "SearchResponse"),
        ("search", {"query": "wifi", "answer": True}, "SearchResponse"),  # answer: null, degraded (no Claude)
        ("search", {"query": "?!"}, "SearchResponse"),  # no_results_reason
        ("search", {"query": "x", "top_k": "5"}, "Error"),
        ("ads", {"thread_name": "t1", "conversation": [
            {"role": "user", "content": "my laptop screen cracked, any repair shop in London?"}]}, "AdsResponse"),
        ("ads", {"thread_name": "t2", "conversation": [
            {"role": "user", "content": "I want to kill myself tonight"}]}, "AdsResponse"),  # safety
        ("ads", {"thread_name": "t3", "conversation": []}, "Error"),
    ]
    seen = set()
    for route, body, schema in cases:
        res = await getattr(function_app, route)(_post(route, body))
        payload = json.loads(res.get_body())
        assert (res.status_code == 200) == (schema != "Error"), (body, res.status_code, payload)
        _valid(schema, payload)
        seen |= set(payload)
    assert {"no_results_reason", "answer", "degraded", "safety", "no_ads_reason", "context"} <= seen
    health = await function_app.health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    _valid("Health", json.loads(health.get_body()))


def test_the_validator_is_not_vacuous():
    with pytest.raises(AssertionError):
        _valid("SearchResponse", {"query": "x", "results": [{"id": 1}], "index_version": "v", "fusion": "convex",
                                  "cached": False, "took_ms": 1.0})
    with pytest.raises(AssertionError):
        _valid("AdsResponse", {"ads": [], "degraded": False})
