"""The HNSW dense index and the compact document store, on real embeddings of real texts
(the first 3000 records of the shared packages corpus, embedded by the bundle's encoder)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.artifacts import ArtifactError, read_manifest
from core.search import bundle as B
from core.search.docstore import DocStore, DocStoreWriter
from core.search.engine import SearchIndex
from tests.fixtures.index import ROOT, write_packages_bundle

QUERIES = [q for q in (ROOT / "bench" / "queries_packages.txt").read_text(encoding="utf-8").splitlines()
           if q.strip() and not q.startswith("#")]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, packages_sample, encoder_dir):
    docs, texts, vectors = packages_sample
    root = tmp_path_factory.mktemp("ann")
    meta = lambda i: {"bucket": i % 3, "even": i % 2 == 0}  # noqa: E731
    write_packages_bundle(root / "hnsw", docs, texts, vectors, encoder_dir, ann_threshold=1000, extra_metadata=meta)
    write_packages_bundle(root / "exact", docs, texts, vectors, encoder_dir, ann_threshold=5000, extra_metadata=meta)
    return root


@pytest.fixture(scope="module")
def indexes(bundles):
    return SearchIndex.load(bundles / "hnsw"), SearchIndex.load(bundles / "exact")


def test_manifest_records_dense_kind_and_threshold(bundles):
    m = read_manifest(bundles / "hnsw")
    assert m["dense"]["kind"] == "hnsw" and m["dense"]["threshold"] == 1000 and m["passage_count"] == 3000
    assert m["dense"]["hnsw"]["library"] == "faiss" and m["dense"]["hnsw"]["quantizer"] == "QT_8bit"
    assert B.ANN_FILE in m["files"] and B.EMBEDDINGS not in m["files"]
    e = read_manifest(bundles / "exact")
    assert e["dense"]["kind"] == "exact" and e["dense"]["threshold"] == 5000
    assert B.EMBEDDINGS in e["files"] and B.ANN_FILE not in e["files"]


def test_bundle_above_or_below_threshold_loads_the_right_kind(indexes):
    ann, exact = indexes
    assert ann.dense_kind == "hnsw" and ann.info()["dense"] == "hnsw"
    assert exact.dense_kind == "exact" and exact.info()["dense"] == "exact"


def test_hnsw_recall_at_10_against_exact_on_real_embeddings(indexes):
    ann, exact = indexes
    queries = QUERIES[:100]
    vecs = ann.encoder.encode(queries)
    recall = []
    for q, v in zip(queries, vecs):
        a = [h.id for h in ann.search(q, top_k=10, method="dense", query_vector=v)]
        e = [h.id for h in exact.search(q, top_k=10, method="dense", query_vector=v)]
        assert len(a) == 10 and len(e) == 10
        recall.append(len(set(a) & set(e)) / 10)
    assert np.mean(recall) >= 0.98, np.mean(recall)
    # int8 cosines stay close to the float ones
    h_a = ann.search(queries[0], top_k=1, method="dense")[0]
    h_e = exact.search(queries[0], top_k=1, method="dense")[0]
    assert abs(h_a.score - h_e.score) < 0.02


def test_manifest_graph_settings_and_ef_search_override(bundles):
    h = read_manifest(bundles / "hnsw")["dense"]["hnsw"]
    assert (h["M"], h["ef_construction"], h["ef_search"]) == (10, 200, 256)
    assert SearchIndex.load(bundles / "hnsw", deep_verify=False)._dense.ef_search == 256
    narrow = SearchIndex.load(bundles / "hnsw", deep_verify=False, ef_search=16)
    assert narrow._dense.ef_search == 16
    # a narrower beam still answers (faiss searches with max(ef_search, k))
    assert len(narrow.search(QUERIES[0], top_k=10, method="dense")) == 10


def test_hybrid_top10_overlaps_exact_dense_hybrid(indexes):
    ann, exact = indexes
    overlap = [len({h.id for h in ann.search(q)} & {h.id for h in exact.search(q)}) / 10 for q in QUERIES[:60]]
    assert np.mean(overlap) >= 0.95


def test_filters_work_on_the_compact_store(indexes):
    ann, exact = indexes
    for index in (ann, exact):
        hits = index.search("parse yaml files", top_k=10, filters={"bucket": 1})
        assert hits and all(h.metadata["bucket"] == 1 for h in hits)
        hits = index.search("http client", top_k=10, filters={"bucket": [0, 2], "even": True})
        assert hits and all(h.metadata["bucket"] in (0, 2) and h.metadata["even"] is True for h in hits)
        assert index.search("http client", filters={"bucket": 7}) == []
        assert index.search("http client", filters={"even": 1}) == []   # True is not 1
    # the filtered HNSW path (exact scoring of the few passages that pass) agrees with exact search
    a = [h.id for h in ann.search("plot a heatmap", top_k=10, method="dense", filters={"bucket": 2})]
    e = [h.id for h in exact.search("plot a heatmap", top_k=10, method="dense", filters={"bucket": 2})]
    assert len(set(a) & set(e)) >= 9


def test_wide_filter_is_applied_inside_the_graph_search(indexes, monkeypatch):
    """A filter too wide to score exactly restricts the HNSW search itself (faiss IDSelectorBitmap):
    every hit passes, and the filtered results match exact filtered dense search."""
    from core.search import engine

    ann, exact = indexes
    monkeypatch.setattr(engine, "ANN_FILTER_EXACT", 10)   # 1,000 passages per bucket: the graph path
    queries = QUERIES[:40]
    vecs = ann.encoder.encode(queries)
    recall = []
    for q, v in zip(queries, vecs):
        a = ann.search(q, top_k=10, method="dense", query_vector=v, filters={"bucket": 2})
        e = exact.search(q, top_k=10, method="dense", query_vector=v, filters={"bucket": 2})
        assert len(a) == 10 and all(h.metadata["bucket"] == 2 for h in a)
        recall.append(len({h.id for h in a} & {h.id for h in e}) / 10)
    assert np.mean(recall) >= 0.95, np.mean(recall)
    with pytest.raises(ValueError, match="allowed"):
        ann._dense.search(vecs[0], 10, allowed=np.ones(5, dtype=bool))


def test_tampered_ann_file_is_refused(bundles, tmp_path):
    import shutil

    dst = tmp_path / "b"
    shutil.copytree(bundles / "hnsw", dst)
    path = dst / B.ANN_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        SearchIndex.load(dst)
    path.write_bytes(bytes(data[:-16]))
    with pytest.raises(ArtifactError, match="bytes"):
        SearchIndex.load(dst, deep_verify=False)


def test_docstore_fields_and_scan_filters(tmp_path):
    w = DocStoreWriter(tmp_path, max_filter_values=2)
    w.add("a", "Títle A", "u:a", {"stamp": "2024-01-01", "tag": ["x", "y"], "n": 1}, [("H", "alpha"), ("", "beta")])
    w.add("b", "", "", {"stamp": "2024-01-02", "tag": "y", "n": 2.5}, [("", "gamma")])
    w.add("c", "C", "u:c", {"stamp": "2024-01-03", "n": True}, [("", "delta")])
    w.close()
    filters = json.loads((tmp_path / "filters.json").read_text())
    assert "stamp" in filters["scan"] and "tag" in filters["fields"]    # 3 stamps > 2 values: scanned
    for in_memory in (False, True):
        s = DocStore(tmp_path, doc_count=3, passage_count=4, in_memory=in_memory)
        assert [s.doc_id(i) for i in range(3)] == ["a", "b", "c"] and s.title(0) == "Títle A" and s.url(1) == ""
        assert s.heading(0) == "H" and s.text(1) == "beta" and s.text(3) == "delta"
        assert s.starts.tolist() == [0, 2, 3] and s.ends.tolist() == [2, 3, 4]
        assert s.passage_doc().tolist() == [0, 0, 1, 2] and s.metadata(0)["tag"] == ["x", "y"]
        assert s.mask({"stamp": "2024-01-02"}).tolist() == [False, True, False]
        assert s.mask({"stamp": ["2024-01-01", "2024-01-03"]}).tolist() == [True, False, True]
        assert s.mask({"tag": "y", "stamp": "2024-01-01"}).tolist() == [True, False, False]
        assert s.mask({"n": 1}).tolist() == [True, False, False]       # True is not 1
        assert s.mask({"n": True}).tolist() == [False, False, True]
        assert s.mask({"missing": "x"}).tolist() == [False, False, False]
    with pytest.raises(ArtifactError):
        DocStore(tmp_path, doc_count=4, passage_count=4)


DETERMINISM = r"""
import gzip, json, sys
from pathlib import Path
import numpy as np
from core.search.bundle import BundleWriter
from core.search.dense import random_unit_vectors
root, corpus = Path(sys.argv[1]), sys.argv[2]
w = BundleWriter(root, dim=32, dense="hnsw")
with gzip.open(corpus, "rt", encoding="utf-8") as fh:
    for i, line in zip(range(1500), fh):
        d = json.loads(line)
        meta = dict(d["metadata"], shard=i % 5, tags=[f"t{i % 7}", f"t{i % 11}"])
        w.add_document(id=d["id"], title=d["title"], url=d["url"], metadata=meta,
                       passages=[("", d["text"])], index_texts=[d["title"] + "\n" + d["text"]])
w.finish(random_unit_vectors(w.passage_count, 32, seed=3))
"""


def _digests(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_rebuilds_are_byte_identical_across_hash_seeds(tmp_path):
    from tests.fixtures.index import _packages_corpus

    digests = []
    for seed in ("1", "4242"):
        out = tmp_path / f"seed{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", DETERMINISM, str(out), str(_packages_corpus())], check=True,
                       env=env, cwd=ROOT, timeout=300)
        digests.append(_digests(out))
    assert B.ANN_FILE in digests[0] and "bm25/terms.bin" in digests[0] and "filters.json" in digests[0]
    assert "documents.blocks.npy" in digests[0]   # the compressed document store is covered too
    assert digests[0] == digests[1]
    root = tmp_path / "seed1" / "bm25"
    offsets = np.load(root / "terms.idx.npy")
    blob = (root / "terms.bin").read_bytes()
    terms = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
    assert len(terms) > 1000 and terms == sorted(terms)   # term ids follow the sorted vocabulary
