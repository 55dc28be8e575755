"""bm25s (method="robertson") must rank like rank-bm25's BM25Okapi on the same tokens."""

import json
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from core.search import fusion
from core.search.bm25 import BM25Index, TokenAccumulator
from core.search.bundle import chunk_documents, validate_document
from core.search.text import DEFAULT_TOKENIZER

ROOT = Path(__file__).resolve().parents[1]
PYDOCS = ROOT / "eval" / "data" / "pydocs_corpus.jsonl"

# Ordinary content-word queries (no stop-words) over the Python docs corpus.
QUERIES = [
    "sleep seconds", "copy file directory", "parse url components", "symbolic link", "decompress data",
    "checksum bytes", "print traceback exception", "count elements iterable", "lock coroutine release",
    "random number generator seed", "cleanup function test", "docstring node", "unpack binary struct format",
    "email address name", "indent lines prefix", "unique identifier", "garbage collector objects",
    "response header request", "tar archive members", "floating point literal", "class definition",
    "future result", "socket timeout", "thread daemon", "logging handler format", "json encode",
    "regular expression match", "temporary directory", "environment variable", "decimal precision",
    "heap queue priority", "date time zone", "hash digest", "subprocess pipe output", "csv reader dialect",
]


def _corpus_texts() -> list[str]:
    path = PYDOCS if PYDOCS.is_file() else ROOT / "data" / "knowledge_base.jsonl"
    docs = [validate_document(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return chunk_documents(docs).index_texts


@pytest.fixture(scope="module")
def indexes():
    texts = _corpus_texts()
    assert len(texts) > 500
    ours = BM25Index.build(texts, DEFAULT_TOKENIZER)
    okapi = BM25Okapi([DEFAULT_TOKENIZER(t) for t in texts], k1=1.5, b=0.75)
    return ours, okapi


@pytest.mark.parametrize("query", QUERIES)
def test_same_top10_as_rank_bm25(indexes, query):
    ours, okapi = indexes
    s = ours.scores(query)
    assert s is not None and s.dtype == np.float32
    ref = okapi.get_scores(DEFAULT_TOKENIZER(query))
    got_ids, got_scores = fusion.top_k(s, 10, s > 0)
    ref_ids = np.argsort(-ref, kind="stable")[:10]
    assert len(got_ids) == 10
    # robertson in bm25s = BM25Okapi divided by (k1 + 1)
    np.testing.assert_allclose(got_scores * 2.5, ref[got_ids], rtol=1e-4)
    if got_ids.tolist() != ref_ids.tolist():
        # Only exact score ties may be ordered differently.
        np.testing.assert_allclose(ref[got_ids], ref[ref_ids], rtol=1e-5)
        assert set(got_ids.tolist()) == set(ref_ids.tolist()) or ref[ref_ids[-1]] == pytest.approx(ref[got_ids[-1]])


def test_unknown_terms_score_nothing(indexes):
    ours, _ = indexes
    assert ours.scores("zzqxv qqxxzz") is None
    assert ours.scores("the and of") is None   # stop-words only


def test_save_load_mmap_round_trip(tmp_path):
    texts = _corpus_texts()
    acc = TokenAccumulator()
    for t in texts:
        acc.add(DEFAULT_TOKENIZER(t))
    acc.write(tmp_path / "bm25", DEFAULT_TOKENIZER)
    again = BM25Index.load(tmp_path / "bm25", DEFAULT_TOKENIZER, mmap=True)
    assert isinstance(again._data, np.memmap)
    assert again.settings()["method"] == "robertson" and again.settings()["tokenizer"]["stemmer"] == "english"
    # Same scores as bm25s' own loader and scorer on the same files.
    import bm25s

    # The bundle drops bm25s' JSON vocabulary (the sorted terms blob replaces it); give its loader one back.
    assert not (tmp_path / "bm25" / "vocab.index.json").exists()
    vocab = {again._term(i).decode("utf-8"): i for i in range(again.vocab_size)}
    (tmp_path / "bm25" / "vocab.index.json").write_text(json.dumps(vocab), encoding="utf-8")
    ref = bm25s.BM25.load(str(tmp_path / "bm25"), mmap=True)
    for q in QUERIES:
        ids = [ref.vocab_dict[t] for t in DEFAULT_TOKENIZER(q) if t in ref.vocab_dict]
        assert again.token_ids(q) == ids
        np.testing.assert_array_equal(again.scores(q), ref.get_scores_from_ids(ids))
    assert again.term_id("zzzzzzzz") is None and again.term_id("") is None
