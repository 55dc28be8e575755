import dataclasses
import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.search.engine import Hit, SearchIndex
from core.search.encoder import QueryEncoder

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["convex", "rrf", "bm25", "dense"]
OBVIOUS = {
    "fix a punctured inner tube": "tire-puncture",
    "sourdough starter wild yeast": "sourdough-bread",
    "espresso grind extraction time": "espresso-extraction",
    "total solar eclipse corona": "solar-eclipse",
    "Gutenberg movable type printing press": "history-printing",
    "kubernetes pods and deployments": "kubernetes-intro",
    "anglerfish bioluminescence hydrothermal vents": "deep-sea-life",
    "compound interest on savings": "compound-interest",
    "house-training a puppy": "dog-training",
    "git rebase squash commits": "git-rebase",
}


def _corpus(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("method", METHODS)
def test_obvious_queries_rank_the_relevant_document_first(mini_index, method):
    for query, expected in OBVIOUS.items():
        hits = mini_index.search(query, top_k=5, method=method)
        assert hits and hits[0].id == expected, (method, query, [h.id for h in hits])


def test_sample_bundle_finds_documents_by_their_title(sample_bundle, sample_corpus):
    index = SearchIndex.load(sample_bundle)
    docs = _corpus(sample_corpus)
    assert index.doc_count == len(docs)
    step = max(1, len(docs) // 15)
    misses = []
    for d in docs[::step]:
        hits = index.search(d["title"] or d["text"][:100], top_k=3)
        if d["id"] not in [h.id for h in hits]:
            misses.append(d["id"])
    assert not misses


def test_one_entry_per_document_with_best_passage_snippet(mini_index):
    # The three long documents have two passages each; both match these queries.
    for query in ["Gutenberg printing press", "deep sea vents", "kubernetes pods"]:
        for method in METHODS:
            hits = mini_index.search(query, top_k=40, depth=200, method=method)
            ids = [h.id for h in hits]
            assert len(ids) == len(set(ids)), (query, method)
    first = mini_index.search("scribes copied books by hand in monasteries", top_k=1)[0]
    second = mini_index.search("Jikji printed in Korea, first press in Mexico City", top_k=1)[0]
    assert first.id == second.id == "history-printing"
    assert first.snippet.startswith("Johannes Gutenberg introduced movable metal type")
    assert 0 < len(first.snippet) <= 301 and first.snippet.endswith("…")
    assert second.snippet != first.snippet   # the other passage (words 160-...) represents the doc
    for method in METHODS:
        assert mini_index.search("Jikji Korea Mexico City", top_k=1, method=method)[0].snippet == second.snippet


def test_hits_expose_ranks_consistent_with_single_lists(mini_index):
    query = "bicycle chain lubricant"
    bm25 = [h.id for h in mini_index.search(query, top_k=40, method="bm25")]
    dense = [h.id for h in mini_index.search(query, top_k=40, method="dense")]
    for method in ("convex", "rrf"):
        hits = mini_index.search(query, top_k=40, method=method)
        assert len(hits) == 40  # dense ranks every document
        for h in hits:
            assert h.bm25_rank == (bm25.index(h.id) + 1 if h.id in bm25 else None)
            assert h.dense_rank == dense.index(h.id) + 1
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    rrf = mini_index.search(query, top_k=5, method="rrf", rrf_k=60)
    for h in rrf:
        expected = sum(1 / (60 + r) for r in (h.bm25_rank, h.dense_rank) if r is not None)
        assert h.score == pytest.approx(expected)
    only_bm25 = mini_index.search(query, top_k=3, method="bm25")
    assert all(h.dense_rank is None and h.bm25_rank == i for i, h in enumerate(only_bm25, 1))
    only_dense = mini_index.search(query, top_k=3, method="dense")
    assert all(h.bm25_rank is None and h.dense_rank == i for i, h in enumerate(only_dense, 1))
    assert -1.0 <= only_dense[0].score <= 1.0


def test_depth_limits_each_list(mini_index):
    hits = mini_index.search("bicycle chain lubricant", top_k=10, depth=3, method="convex")
    # depth is raised to top_k, so every rank is within the top 10 of its list
    assert all((h.dense_rank or 0) <= 10 and (h.bm25_rank or 0) <= 10 for h in hits)
    assert max(h.dense_rank for h in hits if h.dense_rank) == 10


def test_convex_alpha_weights_the_lists(mini_index):
    q = "coffee pressure"
    all_dense = mini_index.search(q, top_k=5, alpha=1.0)
    assert [h.id for h in all_dense] == [h.id for h in mini_index.search(q, top_k=5, method="dense")]
    assert all_dense[0].score == pytest.approx(1.0)


def test_filters_apply_before_top_k(mini_index):
    hits = mini_index.search("bread baking", top_k=5, filters={"category": "programming"})
    assert len(hits) == 5 and all(h.metadata["category"] == "programming" for h in hits)
    cycling = mini_index.search("anything about wheels", top_k=10, filters={"category": "cycling"})
    assert sorted(h.id for h in cycling) == ["bike-chain", "tire-puncture"]
    # BM25 finds no "bread" among programming docs: bm25 alone returns nothing, not a wrong doc
    assert mini_index.search("sourdough", method="bm25", filters={"category": "programming"}) == []


def test_filter_value_types_and_any_of(mini_index):
    def ids(**kw):
        return sorted(h.id for h in mini_index.search("guide", top_k=50, **kw))

    featured = ids(filters={"featured": True})
    assert featured and all(mini_index.search("x", top_k=50, filters={"featured": True})[0].metadata["featured"]
                            is True for _ in [0])
    assert ids(filters={"featured": 1}) == []            # a bool is not an int
    assert ids(filters={"year": 2024}) == ["electric-cars", "rust-ownership", "solar-eclipse", "tokyo-transit"]
    assert ids(filters={"year": "2024"}) == []
    assert ids(filters={"category": ["cycling", "running"]}) == [
        "bike-chain", "marathon-training", "running-shoes", "tire-puncture"]
    assert ids(filters={"category": "cooking", "lang": "de"}) == ["german-doc"]
    assert ids(filters={"tags": "history"}) == ["history-printing"]      # list-valued metadata: membership
    assert ids(filters={"no_such_field": "x"}) == []
    assert ids(filters={"category": []}) == []
    assert len(ids(filters={})) == 40
    with pytest.raises(ValueError):
        mini_index.search("x", filters={"category": {"nested": 1}})
    with pytest.raises(ValueError):
        mini_index.search("x", filters=["category"])


def test_argument_checks_and_blank_queries(mini_index):
    with pytest.raises(ValueError):
        mini_index.search("x", method="bm42")
    with pytest.raises(ValueError):
        mini_index.search("x", top_k=0)
    with pytest.raises(ValueError):
        mini_index.search("x", alpha=2)
    assert mini_index.search("   ") == []
    assert mini_index.search("zzqxv", method="bm25") == []
    assert len(mini_index.search("zzqxv", top_k=3)) == 3      # dense still answers
    assert len(mini_index.search("kubernetes", top_k=100)) == 40


def test_hit_is_frozen_and_metadata_is_a_copy(mini_index):
    hit = mini_index.search("espresso", top_k=1)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        hit.score = 0.0
    hit.metadata["category"] = "changed"
    assert mini_index.search("espresso", top_k=1)[0].metadata["category"] == "cooking"
    assert isinstance(hit, Hit) and hit.url == "https://example.org/kb/espresso-extraction"


def test_concurrent_searches_equal_serial(mini_index):
    queries = list(OBVIOUS) + ["bread", "running shoes", "café crème", "東京", "insurance flood"]
    jobs = [(q, m, f) for q in queries for m in METHODS for f in (None, {"featured": True})]
    serial = [mini_index.search(q, top_k=7, method=m, filters=f) for q, m, f in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            parallel = list(pool.map(lambda job: mini_index.search(job[0], top_k=7, method=job[1], filters=job[2]),
                                     jobs))
            assert parallel == serial


def test_from_documents_in_memory(encoder_dir):
    encoder = QueryEncoder.load(encoder_dir)
    ads = [
        {"id": "ad-1", "title": "Trail running shoes sale", "url": "https://shop/1", "text": "Lightweight trail "
         "running shoes with grippy soles, 30% off this week.", "metadata": {"advertiser": "acme", "active": True}},
        {"id": "ad-2", "title": "Espresso machines", "url": "https://shop/2", "text": "Home espresso machines with "
         "a steam wand for latte art.", "metadata": {"advertiser": "brewco", "active": True}},
        {"id": "ad-3", "title": "Garden compost bins", "text": "Compost bins and worm farms for kitchen scraps.",
         "metadata": {"advertiser": "green", "active": False}},
    ]
    index = SearchIndex.from_documents(ads, encoder, version="ads-7")
    assert index.version == "ads-7" and index.doc_count == 3 and index.passage_count == 3
    assert index.encoder is encoder
    assert index.search("coffee maker for cappuccino", top_k=1)[0].id == "ad-2"
    assert index.search("marathon footwear", top_k=1, method="dense")[0].id == "ad-1"
    assert [h.id for h in index.search("compost", filters={"active": True})] != []
    assert "ad-3" not in [h.id for h in index.search("compost", filters={"active": True})]
    assert index.search("compost", top_k=1)[0].url == ""
    with pytest.raises(ValueError, match="duplicate"):
        SearchIndex.from_documents(ads + [ads[0]], encoder)
    with pytest.raises(ValueError, match="text"):
        SearchIndex.from_documents([{"id": "x", "text": ""}], encoder)
    with pytest.raises(ValueError):
        SearchIndex.from_documents([], encoder)


def test_serving_path_never_imports_torch(mini_bundle):
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from core.search.engine import SearchIndex
        index = SearchIndex.load(Path({str(mini_bundle)!r}), deep_verify=True)
        hits = index.search("fix a punctured inner tube", top_k=3)
        assert hits[0].id == "tire-puncture", hits
        import core.search.text, core.search.encoder, core.search.bm25, core.search.dense
        import core.search.fusion, core.search.bundle
        heavy = sorted(m for m in sys.modules
                       if m.split(".")[0] in ("torch", "transformers", "sentence_transformers"))
        assert not heavy, heavy
        print("ok", len(sys.modules))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")
