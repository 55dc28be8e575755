#!/usr/bin/env python3
"""Peer engines side by side with this one, on the same texts, vectors and precomputed query vectors.

    .venv/bin/python bench/peers/run.py EXACT_BUNDLE HNSW_BUNDLE --queries JSON [--rounds 3] [--peers a,b]

Reads the passage index texts and float32 vectors of EXACT_BUNDLE (dense kind exact), encodes the queries
once with the bundle's encoder, then times, one query at a time, with no encoding in the timed part:

* ``ours``: ``SearchIndex.search(query_vector=...)`` on HNSW_BUNDLE (and the exact bundle);
* ``tantivy_usearch``: tantivy BM25 top 100 + usearch HNSW (i8, M 16, ef 128) top 100, min-max convex
  fusion (alpha 0.8) in numpy: the composition of the same kind of parts;
* ``txtai``: ``Embeddings(hybrid=True)`` over faiss Flat (exact) with external vectors;
* ``lancedb``: a LanceDB table with native FTS, ``query_type="hybrid"``, no vector index (exact).
* ``txtai_hnsw`` / ``lancedb_ann``: the same two at a recall-matched ANN setting: txtai over faiss
  ``IDMap,HNSW32`` and LanceDB with an ``IVF_HNSW_SQ`` index; the beam (``efSearch`` / ``ef``) is raised
  until their dense recall@10 against exact top-10 reaches ``--recall`` (this engine's, by default 0.98),
  and the hybrid is timed at that setting.

Prints one JSON line: {name: {"p50_ms", "p99_ms", "note"}}. Needs bench/peers/requirements.txt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def timed(fn, items, rounds: int) -> dict:
    p50, p99 = [], []
    for _ in range(rounds):
        ts = []
        for it in items:
            t0 = time.perf_counter()
            fn(it)
            ts.append(time.perf_counter() - t0)
        p50.append(float(np.percentile(ts, 50)) * 1e3)
        p99.append(float(np.percentile(ts, 99)) * 1e3)
    return {"p50_ms": round(statistics.median(p50), 2), "p99_ms": round(statistics.median(p99), 2)}


def minmax(s: np.ndarray) -> np.ndarray:
    if s.size == 0:
        return s
    lo, hi = float(s.min()), float(s.max())
    return np.ones_like(s) if hi - lo <= 1e-12 else (s - lo) / (hi - lo)


def convex(b_ids, b_sc, d_ids, d_sc, alpha=0.8, k=10):
    fused: dict[int, float] = {}
    for ids, sc, w in ((b_ids, minmax(np.asarray(b_sc, dtype=np.float64)), 1 - alpha),
                       (d_ids, minmax(np.asarray(d_sc, dtype=np.float64)), alpha)):
        for i, s in zip(list(ids), sc.tolist()):
            fused[int(i)] = fused.get(int(i), 0.0) + w * s
    return sorted(fused, key=lambda i: -fused[i])[:k]


def load_data(exact: Path):
    from core.search.docstore import DocStore
    from core.artifacts import read_manifest

    m = read_manifest(exact)
    store = DocStore(exact, doc_count=int(m["doc_count"]), passage_count=int(m["passage_count"]))
    texts = []
    for d in range(store.doc_count):
        title = store.title(d)
        for p in range(int(store.starts[d]), int(store.ends[d])):
            texts.append(f"{title}\n{store.text(p)}" if title else store.text(p))
    vectors = np.load(exact / "embeddings.npy")
    return texts, vectors


def peer_tantivy_usearch(texts, vectors, queries, qvecs, rounds):
    import onnxruntime  # noqa: F401  (import before usearch: the reverse order crashes here)
    import tantivy
    from usearch.index import Index

    t0 = time.perf_counter()
    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("pid", stored=True, fast=True, indexed=True)
    sb.add_text_field("body", stored=False, tokenizer_name="en_stem")
    schema = sb.build()
    index = tantivy.Index(schema)
    w = index.writer(heap_size=256_000_000, num_threads=1)
    for i, t in enumerate(texts):
        w.add_document(tantivy.Document(pid=i, body=t))
    w.commit()
    w.wait_merging_threads()
    index.reload()
    searcher = index.searcher()
    ann = Index(ndim=vectors.shape[1], metric="cos", dtype="i8", connectivity=16, expansion_add=128,
                expansion_search=128)
    ann.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=2)
    build_s = time.perf_counter() - t0

    def bm25(q):
        try:
            parsed = index.parse_query(q, ["body"])
        except ValueError:
            return [], []
        hits = searcher.search(parsed, 100).hits
        return ([searcher.doc(a)["pid"][0] for _, a in hits], [s for s, _ in hits])

    def hybrid(pair):
        q, v = pair
        b_ids, b_sc = bm25(q)
        m = ann.search(v, 100, threads=1)
        return convex(b_ids, b_sc, m.keys, 1 - m.distances)

    pairs = list(zip(queries, qvecs))
    out = {"tantivy_usearch": {**timed(hybrid, pairs, rounds), "note": f"built in {build_s:.0f}s"}}
    out["tantivy_bm25"] = timed(lambda q: bm25(q), queries, rounds)
    out["usearch_i8_dense"] = timed(lambda v: ann.search(v, 100, threads=1), list(qvecs), rounds)
    return out


def txtai_hybrid(texts, vectors, queries, qvecs, components: str):
    """A txtai hybrid index over faiss ``components``, fed our vectors; (embeddings, build seconds)."""
    from txtai import Embeddings

    lookup = {t: vectors[i] for i, t in enumerate(texts)}
    lookup.update({q: qvecs[i] for i, q in enumerate(queries)})

    def transform(inputs):
        return np.stack([lookup[x] if isinstance(x, str) else lookup[x[1]] for x in inputs]).astype(np.float32)

    t0 = time.perf_counter()
    emb = Embeddings({"method": "external", "transform": transform, "hybrid": True, "content": False,
                      "backend": "faiss", "faiss": {"components": components}})
    emb.index([(i, t, None) for i, t in enumerate(texts)])
    return emb, time.perf_counter() - t0


def peer_txtai(texts, vectors, queries, qvecs, rounds):
    emb, build_s = txtai_hybrid(texts, vectors, queries, qvecs, "IDMap,Flat")
    emb.search(queries[0], 10)
    return {"txtai": {**timed(lambda q: emb.search(q, 10), queries, rounds),
                      "note": f"hybrid, faiss Flat (exact); built in {build_s:.0f}s"}}


def exact_top10(vectors, qvecs) -> list[set]:
    scores = np.asarray(qvecs, dtype=np.float32) @ vectors.T
    return [set(np.argpartition(-row, 10)[:10].tolist()) for row in scores]


def recall(got: list, truth: list[set]) -> float:
    return float(np.mean([len(set(map(int, g)) & t) / 10 for g, t in zip(got, truth)]))


BEAMS = (16, 32, 64, 128, 256, 512)


def peer_txtai_hnsw(texts, vectors, queries, qvecs, rounds, target=0.98):
    import faiss

    emb, build_s = txtai_hybrid(texts, vectors, queries, qvecs, "IDMap,HNSW32")
    inner = faiss.downcast_index(faiss.downcast_index(emb.ann.backend).index)
    truth = exact_top10(vectors, qvecs)
    q = np.ascontiguousarray(qvecs, dtype=np.float32)
    sweep = {}
    for ef in BEAMS:
        inner.hnsw.efSearch = ef
        _, ids = emb.ann.backend.search(q, 10)
        sweep[ef] = recall(ids.tolist(), truth)
        if sweep[ef] >= target:
            break
    emb.search(queries[0], 10)
    return {"txtai_hnsw": {**timed(lambda x: emb.search(x, 10), queries, rounds), "ef_search": ef,
                           "dense_recall_at_10": round(sweep[ef], 4),
                           "note": f"hybrid, faiss IDMap,HNSW32 at efSearch {ef} (recall sweep {sweep}); "
                                   f"built in {build_s:.0f}s"}}


def lancedb_table(texts, vectors, index_type: str | None):
    """A LanceDB table (pid, text, vector) with native FTS and, if given, a cosine vector index."""
    import lancedb
    import pyarrow as pa

    tmp = tempfile.mkdtemp(prefix="lancedb-bench-")
    t0 = time.perf_counter()
    db = lancedb.connect(tmp)
    dim = vectors.shape[1]
    table = pa.table({"pid": pa.array(np.arange(len(texts)), pa.int64()), "text": pa.array(texts),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)})
    tbl = db.create_table("passages", data=table)
    tbl.create_fts_index("text")
    if index_type:
        tbl.create_index(metric="cosine", vector_column_name="vector", index_type=index_type)
    return tbl, time.perf_counter() - t0


def peer_lancedb_ann(texts, vectors, queries, qvecs, rounds, target=0.98, n_queries=80):
    tbl, build_s = lancedb_table(texts, vectors, "IVF_HNSW_SQ")
    pairs = list(zip(queries, qvecs))[:n_queries]
    truth = exact_top10(vectors, [v for _, v in pairs])
    sweep = {}
    # ef first (LanceDB's own partition count), then more IVF partitions at the widest ef
    for nprobes, ef in [(None, e) for e in BEAMS] + [(n, BEAMS[-1]) for n in (16, 32, 64, 128)]:
        def query(v, nprobes=nprobes, ef=ef):
            qb = tbl.search(v).ef(ef)
            return qb.nprobes(nprobes) if nprobes else qb
        got = [[r["pid"] for r in query(v).limit(10).select(["pid"]).to_list()] for _, v in pairs]
        key = f"ef{ef}" + (f"/nprobes{nprobes}" if nprobes else "")
        sweep[key] = round(recall(got, truth), 4)
        if sweep[key] >= target:
            break

    def hybrid(pair):
        q, v = pair
        qb = tbl.search(query_type="hybrid").vector(v).text(q).ef(ef)
        return (qb.nprobes(nprobes) if nprobes else qb).limit(10).to_list()

    hybrid(pairs[0])
    return {"lancedb_ann": {**timed(hybrid, pairs, rounds), "setting": key, "dense_recall_at_10": sweep[key],
                            "note": f"hybrid, IVF_HNSW_SQ at {key} (recall sweep {sweep}), {len(pairs)} queries; "
                                    f"built in {build_s:.0f}s"}}


def peer_lancedb(texts, vectors, queries, qvecs, rounds, n_queries=40):
    tbl, build_s = lancedb_table(texts, vectors, None)

    def hybrid(pair):
        q, v = pair
        return tbl.search(query_type="hybrid").vector(v).text(q).limit(10).to_list()

    pairs = list(zip(queries, qvecs))[:n_queries]
    hybrid(pairs[0])
    return {"lancedb": {**timed(hybrid, pairs, rounds),
                        "note": f"hybrid, no vector index (exact), {len(pairs)} queries; built in {build_s:.0f}s"}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("exact", type=Path)
    ap.add_argument("hnsw", type=Path)
    ap.add_argument("--queries", required=True, help="JSON list of query strings")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peers", default="tantivy_usearch,txtai_hnsw,lancedb_ann,txtai,lancedb")
    ap.add_argument("--recall", type=float, default=0.98, help="dense recall@10 the ANN peers must reach")
    args = ap.parse_args()
    queries = json.loads(args.queries)
    from core.search.engine import SearchIndex

    ours = SearchIndex.load(args.hnsw, deep_verify=False)
    ours_exact = SearchIndex.load(args.exact, deep_verify=False)
    qvecs = ours.encoder.encode(queries)
    texts, vectors = load_data(args.exact)
    out: dict = {}
    pairs = list(zip(queries, qvecs))
    for q, v in pairs[:20]:
        ours.search(q, query_vector=v)
        ours_exact.search(q, query_vector=v)
    out["ours"] = {**timed(lambda p: ours.search(p[0], top_k=10, query_vector=p[1]), pairs, args.rounds),
                   "note": f"hybrid convex, dense {ours.dense_kind}"}
    out["ours_exact"] = {**timed(lambda p: ours_exact.search(p[0], top_k=10, query_vector=p[1]), pairs,
                                 args.rounds), "note": "hybrid convex, dense exact"}
    out["ours_bm25"] = timed(lambda q: ours.search(q, top_k=10, method="bm25"), queries, args.rounds)
    fns = {"tantivy_usearch": peer_tantivy_usearch, "txtai": peer_txtai, "lancedb": peer_lancedb,
           "txtai_hnsw": lambda *a: peer_txtai_hnsw(*a, target=args.recall),
           "lancedb_ann": lambda *a: peer_lancedb_ann(*a, target=args.recall)}
    for name in [p.strip() for p in args.peers.split(",") if p.strip()]:
        try:
            out.update(fns[name](texts, vectors, queries, qvecs, args.rounds))
        except Exception as exc:  # a missing or failing peer is reported, not fatal
            out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        # this engine again after each peer: the ratios stay side by side in time
        out[f"ours_after_{name}"] = timed(lambda p: ours.search(p[0], top_k=10, query_vector=p[1]), pairs, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
