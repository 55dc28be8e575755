import math

import numpy as np
import pytest

from core.search import fusion


def ids(ranked):
    return ranked[0].tolist()


def test_rrf_hand_computed():
    got_ids, got_scores = fusion.rrf([[1, 2, 3], [3, 1]], k=60)
    expected = {1: 1 / 61 + 1 / 62, 2: 1 / 62, 3: 1 / 63 + 1 / 61}
    assert got_ids.tolist() == [1, 3, 2]
    assert got_scores.tolist() == pytest.approx([expected[1], expected[3], expected[2]])


def test_rrf_k_changes_the_order():
    # k=0: doc 5 (rank 1 once) beats doc 7 (rank 2 twice): 1 > 1/2 + 1/2 is false -> tie broken by id
    assert ids(fusion.rrf([[5, 7], [8, 7]], k=0)) == [5, 7, 8]
    got = fusion.rrf([[5, 7], [8, 7]], k=0)[1].tolist()
    assert got == pytest.approx([1.0, 1.0, 1.0])
    # k=60: appearing twice wins
    assert ids(fusion.rrf([[5, 7], [8, 7]], k=60)) == [7, 5, 8]


def test_rrf_empty_lists():
    assert ids(fusion.rrf([[], []])) == []
    assert ids(fusion.rrf([[4, 2], []])) == [4, 2]


def test_minmax():
    assert fusion.minmax(np.array([10.0, 5.0, 0.0])).tolist() == [1.0, 0.5, 0.0]
    assert fusion.minmax(np.array([3.0, 3.0])).tolist() == [1.0, 1.0]
    assert fusion.minmax(np.array([])).tolist() == []


def test_convex_hand_computed():
    bm25 = (np.array([0, 1, 2]), np.array([10.0, 5.0, 0.0]))   # normalised 1, .5, 0
    dense = (np.array([2, 3]), np.array([0.9, 0.5]))          # normalised 1, 0
    got_ids, got_scores = fusion.convex(bm25, dense, alpha=0.7)
    # doc2: .3*0 + .7*1 = .7; doc0: .3*1 = .3; doc1: .3*.5 = .15; doc3: .7*0 = 0
    assert got_ids.tolist() == [2, 0, 1, 3]
    assert got_scores.tolist() == pytest.approx([0.7, 0.3, 0.15, 0.0])


def test_convex_alpha_extremes_and_missing_lists():
    bm25 = (np.array([0, 1]), np.array([2.0, 1.0]))
    dense = (np.array([1, 0]), np.array([0.8, 0.2]))
    assert ids(fusion.convex(bm25, dense, alpha=1.0))[:1] == [1]
    assert ids(fusion.convex(bm25, dense, alpha=0.0))[:1] == [0]
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0))
    only = fusion.convex(empty, dense, alpha=0.7)
    assert ids(only) == [1, 0] and only[1].tolist() == pytest.approx([0.7, 0.0])
    with pytest.raises(ValueError):
        fusion.convex(bm25, dense, alpha=1.5)


def test_top_k_orders_desc_and_breaks_ties_by_id():
    s = np.array([0.5, 2.0, 0.5, 3.0, 0.0], dtype=np.float32)
    got_ids, got_scores = fusion.top_k(s, 4)
    assert got_ids.tolist() == [3, 1, 0, 2]
    assert got_scores.tolist() == [3.0, 2.0, 0.5, 0.5]
    assert fusion.top_k(s, 10)[0].tolist() == [3, 1, 0, 2, 4]


def test_top_k_with_mask_selects_only_valid():
    s = np.array([9.0, 8.0, 7.0, 6.0, 5.0], dtype=np.float32)
    valid = np.array([False, True, False, True, True])
    assert fusion.top_k(s, 2, valid)[0].tolist() == [1, 3]
    assert fusion.top_k(s, 10, valid)[0].tolist() == [1, 3, 4]
    assert fusion.top_k(s, 3, np.zeros(5, dtype=bool))[0].tolist() == []


def test_top_k_many_ties_at_zero():
    s = np.zeros(100_000, dtype=np.float32)
    s[[17, 99_999, 5]] = [1.0, 3.0, 2.0]
    assert fusion.top_k(s, 3)[0].tolist() == [99_999, 5, 17]


def test_doc_max_collapses_contiguous_passages():
    passage_scores = np.array([0.1, 0.9, 0.3, 0.4, 0.2, 0.8], dtype=np.float32)
    starts = np.array([0, 2, 3])   # doc0 = p0,p1; doc1 = p2; doc2 = p3..p5
    assert fusion.doc_max(passage_scores, starts).tolist() == pytest.approx([0.9, 0.3, 0.8])


def test_top_docs_hand_computed():
    scores = np.array([0.1, 0.9, 0.3, 0.4, 0.2, 0.8], dtype=np.float32)
    passage_doc = np.array([0, 0, 1, 2, 2, 2])
    docs, best, passages = fusion.top_docs(scores, passage_doc, 2)
    assert docs.tolist() == [0, 2] and best.tolist() == pytest.approx([0.9, 0.8]) and passages.tolist() == [1, 5]
    # restricted to candidate passages: p1 and p5 are out
    docs, best, passages = fusion.top_docs(scores, passage_doc, 3, np.array([0, 2, 3, 4]))
    assert docs.tolist() == [2, 1, 0] and passages.tolist() == [3, 2, 0]
    assert fusion.top_docs(scores, passage_doc, 3, np.array([], dtype=np.int64))[0].tolist() == []


def test_top_docs_equals_full_per_document_max():
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 9, size=3000)            # many multi-passage documents
    passage_doc = np.repeat(np.arange(counts.size), counts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    for trial in range(20):
        scores = rng.standard_normal(passage_doc.size).astype(np.float32)
        if trial % 2:
            scores = np.round(scores, 1)                 # plenty of ties
        for k in (1, 10, 100, 2999):
            expected_ids, expected_scores = fusion.top_k(fusion.doc_max(scores, starts), k)
            docs, best, passages = fusion.top_docs(scores, passage_doc, k)
            assert best.tolist() == expected_scores.tolist()
            assert (passage_doc[passages] == docs).all() and (scores[passages] == best).all()
            if trial % 2 == 0:
                assert docs.tolist() == expected_ids.tolist()


def test_top_positions_is_exact_on_large_arrays():
    rng = np.random.default_rng(5)
    for trial in range(30):
        n = int(rng.integers(8192, 60_000))
        s = rng.standard_normal(n).astype(np.float32)
        if trial % 3 == 1:
            s[rng.random(n) < 0.9] = 0.0                     # mostly ties at zero
        if trial % 3 == 2:
            s = np.sort(s)                                    # adversarial for the 1-in-16 sample
        for want in (1, 7, 100, 200, 1000):
            got = fusion.top_positions(s, want)
            assert got.shape == (want,) and len(set(got.tolist())) == want
            kth = np.sort(s)[-want]
            assert (s[got] >= kth).all() and np.sort(s[got]).tolist() == np.sort(s)[-want:].tolist()


def test_normalise_tmm_and_zscore_hand_computed():
    s = np.array([10.0, 5.0, 2.0])
    assert fusion.normalise(s, "minmax").tolist() == pytest.approx([1.0, 3 / 8, 0.0])
    assert fusion.normalise(s, "tmm", floor=0.0).tolist() == pytest.approx([1.0, 0.5, 0.2])
    assert fusion.normalise(np.array([0.8, 0.4]), "tmm", floor=-1.0).tolist() == pytest.approx([1.0, 1.4 / 1.8])
    z = fusion.normalise(np.array([1.0, 2.0, 3.0]), "zscore")
    assert z.tolist() == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    assert fusion.normalise(np.array([3.0, 3.0]), "zscore").tolist() == [0.0, 0.0]
    assert fusion.normalise(np.array([0.0]), "tmm").tolist() == [1.0]
    with pytest.raises(ValueError):
        fusion.normalise(s, "bogus")


def test_convex_default_norm_is_minmax():
    bm25 = (np.array([0, 1, 2]), np.array([10.0, 5.0, 0.0]))
    dense = (np.array([2, 3]), np.array([0.9, 0.5]))
    a = fusion.convex(bm25, dense, alpha=0.7)
    b = fusion.convex(bm25, dense, alpha=0.7, norm="minmax")
    assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
    with pytest.raises(ValueError):
        fusion.convex(bm25, dense, alpha=0.7, norm="nope")


def test_convex_tmm_hand_computed():
    bm25 = (np.array([0, 1]), np.array([10.0, 5.0]))        # / 10      -> 1, .5
    dense = (np.array([1, 2]), np.array([0.8, 0.6]))        # / 0.8     -> 1, .75 (floor 0)
    got_ids, got_scores = fusion.convex(bm25, dense, alpha=0.5, norm="tmm", dense_floor=0.0)
    # doc1: .5*.5 + .5*1 = .75; doc0: .5; doc2: .375
    assert got_ids.tolist() == [1, 0, 2]
    assert got_scores.tolist() == pytest.approx([0.75, 0.5, 0.375])
    # min-max sends each list's last entry to 0: doc1 is 0 on the BM25 side, doc2 0 on the dense side
    mm = fusion.convex(bm25, dense, alpha=0.5)
    assert mm[0].tolist() == [0, 1, 2] and mm[1].tolist() == pytest.approx([0.5, 0.5, 0.0])


def test_convex_zscore_missing_documents_get_the_list_minimum():
    bm25 = (np.array([0, 1, 2]), np.array([3.0, 2.0, 1.0]))   # z: +1.2247, 0, -1.2247
    dense = (np.array([3]), np.array([0.5]))                   # constant list: z = 0
    got_ids, got_scores = fusion.convex(bm25, dense, alpha=0.5, norm="zscore")
    r = math.sqrt(1.5)
    # doc3 is absent from bm25 -> gets bm25's lowest z (-r); docs 0-2 absent from dense -> dense min (0)
    expected = {0: 0.5 * r, 1: 0.0, 2: -0.5 * r, 3: -0.5 * r}
    assert got_ids.tolist() == [0, 1, 2, 3]
    assert got_scores.tolist() == pytest.approx([expected[d] for d in [0, 1, 2, 3]])
