"""Spans per stage, so a slow request shows where its time went."""

import json

import azure.functions as func
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import function_app
from core import telemetry


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_tracer(provider.get_tracer("test"))
    yield exporter
    telemetry.use_tracer(None)


def _post(route, body):
    return func.HttpRequest("POST", f"http://localhost/api/{route}", body=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})


async def test_search_stages_are_traced(runtime, spans):
    res = await function_app.search(_post("search", {"query": "traced query about passports"}))
    assert res.status_code == 200
    names = [s.name for s in spans.get_finished_spans()]
    assert {"cache.get", "retrieval", "cache.set"} <= set(names)
    retrieval = next(s for s in spans.get_finished_spans() if s.name == "retrieval")
    assert retrieval.attributes["method"] == runtime.settings.fusion_method
    assert retrieval.end_time > retrieval.start_time


async def test_ads_stages_are_traced(runtime, spans):
    body = {"thread_name": "trace", "conversation": [{"role": "user", "content": "pharmacy in Paris please"}]}
    res = await function_app.ads(_post("ads", body))
    assert res.status_code == 200, res.get_body()
    names = {s.name for s in spans.get_finished_spans()}
    assert {"ads.context", "ads.geocode", "ads.retrieval", "ads.eligibility"} <= names


def test_without_a_connection_string_nothing_is_configured():
    from core.settings import Settings

    assert telemetry.configure(Settings.from_env({})) is False
