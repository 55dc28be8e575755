"""Cited answers for search: from the top results only, citations checked, never raising."""

from __future__ import annotations

import json
import time

import anthropic  # noqa: F401 - loaded as on a warm instance, not inside the first test's deadline
import pytest

from core.adapters.claude import ClaudeClient, output_format
from core.deadline import Deadline
from core.search.answer import TOP_RESULTS, AnswerOutput, answer
from core.search.engine import Hit
from core.settings import Settings

HITS = [Hit(id=f"kb-{i}", title=f"Title {i}", url=f"https://help.example.com/{i}", snippet=f"Snippet number {i}.",
            score=1.0 - i / 10, bm25_rank=i + 1, dense_rank=i + 1, metadata={}) for i in range(8)]


async def test_cited_answer_from_top_results(claude, fake_anthropic):
    fake_anthropic.push({"json": {"answer": "Rest and fluids help [kb-0]. See also [kb-2].",
                                  "cited_ids": ["kb-0", "kb-2"]}})
    out = await answer("how to treat a cold", HITS, claude, Deadline(3))
    assert out["degraded"] is False and out["reasons"] == []
    assert out["answer"]["text"] == "Rest and fluids help [kb-0]. See also [kb-2]."
    assert out["answer"]["grounded"] is True
    assert out["answer"]["citations"] == [{"id": "kb-0", "title": "Title 0", "url": "https://help.example.com/0"},
                                          {"id": "kb-2", "title": "Title 2", "url": "https://help.example.com/2"}]
    rec = fake_anthropic.requests[0]
    assert rec.body["output_config"] == {"format": output_format(AnswerOutput)}
    assert rec.schema["required"] == ["answer", "cited_ids"]
    sent = json.loads(rec.user_text)
    assert sent["question"] == "how to treat a cold"
    assert [r["id"] for r in sent["results"]] == [h.id for h in HITS[:TOP_RESULTS]]  # top results only
    assert "how to treat a cold" not in rec.system_text


async def test_unknown_citations_are_dropped(claude, fake_anthropic):
    fake_anthropic.push({"json": {
        "answer": "Buy our pills at https://evil.example/pills [kb-1] [kb-7] [made-up].",
        "cited_ids": ["kb-1", "made-up", "kb-7", "kb-1"]}})
    out = await answer("q", HITS, claude, Deadline(3))
    ans = out["answer"]
    assert [c["id"] for c in ans["citations"]] == ["kb-1"]  # kb-7 is a result, but not a top result
    assert "evil.example" not in ans["text"] and "[link removed]" in ans["text"]
    assert "[made-up]" not in ans["text"] and "[kb-7]" not in ans["text"] and "[kb-1]" in ans["text"]
    assert ans["grounded"] and not out["degraded"]


async def test_no_valid_citation_is_marked(claude, fake_anthropic):
    fake_anthropic.push({"json": {"answer": "Trust me.", "cited_ids": ["doc-99"]}})
    out = await answer("q", HITS, claude, Deadline(3))
    assert out["answer"]["grounded"] is False and out["answer"]["citations"] == []
    assert out["degraded"] is True and out["reasons"] == ["answer:invalid_citations"]

    fake_anthropic.push({"json": {"answer": "The results do not cover this.", "cited_ids": []}})
    out = await answer("q", HITS, claude, Deadline(3))
    assert out["answer"]["grounded"] is False and out["degraded"] is False


@pytest.mark.parametrize("step,reason", [
    ({"status": 529}, "answer:overloaded"),
    ({"stop_reason": "refusal", "text": ""}, "answer:refusal"),
    ({"stop_reason": "max_tokens", "text": '{"answer": "Rest an'}, "answer:max_tokens"),
    ({"raw": b"garbage"}, "answer:malformed_output"),
    ({"json": {"answer": "", "cited_ids": []}}, "answer:malformed_output"),
])
async def test_claude_failures_never_raise(claude, fake_anthropic, step, reason):
    fake_anthropic.push(*[step] * 5)
    out = await answer("q", HITS, claude, Deadline(3))
    assert out == {"answer": None, "degraded": True, "reasons": [reason]}


async def test_not_configured_and_no_results(fake_anthropic):
    client = ClaudeClient(Settings.from_env({"ANTHROPIC_BASE_URL": fake_anthropic.url}))
    assert (await answer("q", HITS, client, Deadline(3)))["reasons"] == ["answer:not_configured"]
    assert await answer("q", [], client, Deadline(3)) == {"answer": None, "degraded": False,
                                                          "reasons": ["answer:no_results"]}
    assert (await answer("q", HITS, None, Deadline(3)))["degraded"] is True
    assert fake_anthropic.count == 0


async def test_slow_claude_stays_inside_the_deadline(claude, fake_anthropic):
    fake_anthropic.push({"hang": True}, {"hang": True})
    t0 = time.monotonic()
    out = await answer("q", HITS, claude, Deadline(0.8))
    assert time.monotonic() - t0 < 0.9
    assert out["reasons"] == ["answer:timeout"]
