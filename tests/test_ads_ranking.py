"""Ranking: priority tier, relevance x bid, floor; re-rank keeps only eligible ids."""

from __future__ import annotations


from core.ads.catalog import Ad
from core.ads.ranking import Candidate, apply_order, claude_rerank, rank
from core.deadline import Deadline


def ad(i, bid=1.0, priority=0):
    return Ad(id=i, advertiser="A", title=f"T {i}", body="B", url="https://a.example/", keywords=("k",),
              bid_cpm=bid, priority=priority)


def test_tier_then_value_then_floor():
    cands = [Candidate(ad("low-rel-rich", bid=100), 0.25), Candidate(ad("tier1", bid=1, priority=1), 0.3),
             Candidate(ad("rel-poor", bid=2), 0.9), Candidate(ad("below-floor", bid=1000), 0.1)]
    assert [c.ad.id for c in rank(cands, floor=0.2)] == ["tier1", "low-rel-rich", "rel-poor"]


def test_apply_order_drops_unknown_ids_and_keeps_tiers():
    ranked = rank([Candidate(ad("a", priority=1), 0.5), Candidate(ad("b"), 0.9), Candidate(ad("c"), 0.8),
                   Candidate(ad("d"), 0.7)], floor=0.0)
    out = apply_order(ranked, ["evil-ad", "d", "c", "d", 42, "https://evil.example", "a"])
    assert [c.ad.id for c in out] == ["a", "d", "c", "b"]


async def test_claude_rerank_only_reorders_the_eligible_set(claude, fake_anthropic):
    ranked = rank([Candidate(ad("a"), 0.9), Candidate(ad("b"), 0.8), Candidate(ad("c"), 0.7)], floor=0.0)
    fake_anthropic.push({"json": {"ranked_ids": ["not-eligible", "c", "a"]}})
    out, reasons = await claude_rerank(claude, ranked, ("pharmacy",), Deadline(2))
    assert [c.ad.id for c in out] == ["c", "a", "b"] and reasons == ()
    sent = fake_anthropic.requests[0].user_text
    assert '"id":"a"' in sent and "not-eligible" not in sent


async def test_claude_rerank_failure_keeps_order(claude, fake_anthropic):
    ranked = rank([Candidate(ad("a"), 0.9), Candidate(ad("b"), 0.8)], floor=0.0)
    fake_anthropic.push({"stop_reason": "refusal", "text": ""})
    out, reasons = await claude_rerank(claude, ranked, ("x",), Deadline(2))
    assert [c.ad.id for c in out] == ["a", "b"] and reasons == ("rerank:refusal",)
