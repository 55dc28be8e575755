#!/usr/bin/env python3
"""Latency benchmark of the search engine on a synthetic 100k-passage bundle.

    .venv/bin/python bench/bench_search.py [--passages 100000] [--queries 300]
        [--baseline-queries 30] [--workdir DIR] [--rebuild] [--json OUT]

What it does:

1. Writes a synthetic corpus (Zipf-distributed pseudo-word text, ~10% of the
   documents long enough to make several passages, a ``category`` metadata
   field) and builds it with ``build_bundle(random_embeddings=True)``: passage
   vectors are random unit vectors, queries go through the real ONNX encoder.
   The bundle is kept in ``--workdir`` and reused while its size matches.
2. In-process: ``SearchIndex.load`` then per-query latency of hybrid (convex and
   rrf), BM25-only, dense-only and filtered hybrid search, plus the query
   encoder alone; p50/p99.
3. Cold start: a fresh subprocess imports the engine, loads the bundle with
   ``deep_verify=False`` and answers one query (median of 3); it then runs 50
   more queries and reports its peak RSS.
4. Baseline, in another subprocess: rank-bm25 ``BM25Okapi.get_scores`` + the
   sentence-transformers (torch) model's ``encode`` + numpy dense scores + RRF
   over the top 100 of each, on ``--baseline-queries`` of the same queries,
   in a process of its own (torch's OpenMP threads, interleaved with this
   engine in one process, slowed both down several-fold: 179 ms per torch
   encode). The machine's load average is printed: other work on the 2 cores
   moves every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SEED = 1234
VOCAB = 30_000
CATEGORIES = [f"cat{i:02d}" for i in range(20)]


# ------------------------------------------------------------------------- corpus
def _vocabulary(rng: np.random.Generator) -> list[str]:
    syll = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    words: set[str] = set()
    while len(words) < VOCAB:
        n = int(rng.integers(2, 5))
        words.add("".join(syll[int(i)] for i in rng.integers(0, len(syll), size=n)))
    return sorted(words, key=lambda w: (len(w), w))


def _zipf_probs() -> np.ndarray:
    p = 1.0 / np.arange(1, VOCAB + 1) ** 1.07
    return p / p.sum()


def write_corpus(path: Path, passages: int) -> int:
    from core.search.text import MAX_WORDS, OVERLAP, split_passages

    rng = np.random.default_rng(SEED)
    vocab = np.array(_vocabulary(rng))
    cdf = np.cumsum(_zipf_probs())
    draw = lambda n: np.minimum(np.searchsorted(cdf, rng.random(n)), VOCAB - 1)  # noqa: E731
    stride = MAX_WORDS - OVERLAP
    made = docs = 0
    with open(path, "w", encoding="utf-8") as fh:
        while made < passages:
            left = passages - made
            if left >= 3 and rng.random() < 0.1:
                n_words = int(rng.integers(MAX_WORDS + stride // 2, MAX_WORDS + 2 * stride))
            else:
                n_words = int(rng.integers(30, 150))
            words = vocab[draw(n_words)]
            text = " ".join(words.tolist())
            n_pass = len(split_passages(text))
            if n_pass > left:
                text = " ".join(words[:100].tolist())
                n_pass = 1
            title = " ".join(vocab[draw(4)].tolist()).capitalize()
            doc = {"id": f"d{docs:07d}", "title": title, "url": f"https://bench.example/{docs}", "text": text,
                   "metadata": {"category": CATEGORIES[docs % len(CATEGORIES)]}}
            fh.write(json.dumps(doc) + "\n")
            made += n_pass
            docs += 1
    return docs


def make_queries(n: int) -> list[str]:
    rng = np.random.default_rng(SEED + 1)
    vocab = _vocabulary(np.random.default_rng(SEED))
    # content-word-like queries: 2-4 terms of middle frequency (ranks 50..5000)
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 5))
        out.append(" ".join(vocab[int(r)] for r in rng.integers(50, 5000, size=k)))
    return out


def ensure_bundle(workdir: Path, passages: int, rebuild: bool) -> Path:
    from core.artifacts import read_manifest

    bundle = workdir / f"bundle-{passages}"
    if bundle.exists() and not rebuild:
        try:
            if read_manifest(bundle).get("passage_count") == passages:
                print(f"reusing {bundle}", file=sys.stderr)
                return bundle
        except Exception:
            pass
    from core.search.build import build_bundle

    corpus = workdir / f"corpus-{passages}.jsonl"
    t0 = time.perf_counter()
    docs = write_corpus(corpus, passages)
    print(f"corpus: {docs} documents, {passages} passages in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    t0 = time.perf_counter()
    build_bundle(corpus, bundle, version=f"bench-{passages}", random_embeddings=True, progress=False)
    print(f"bundle built in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return bundle


# ------------------------------------------------------------------------- timing
def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, p))


def stats(values: list[float]) -> dict:
    return {"p50_ms": round(pct(values, 50), 2), "p99_ms": round(pct(values, 99), 2),
            "mean_ms": round(float(np.mean(values)) * 1000, 2), "n": len(values)}


def time_calls(fn, args_list) -> list[float]:
    out = []
    for a in args_list:
        t0 = time.perf_counter()
        fn(a)
        out.append(time.perf_counter() - t0)
    return out


def in_process(bundle: Path, queries: list[str], threads: int) -> dict:
    from core.search.engine import SearchIndex

    t0 = time.perf_counter()
    index = SearchIndex.load(bundle, deep_verify=False, encoder_threads=threads)
    load_s = time.perf_counter() - t0
    for q in queries[:20]:                       # warm-up: page in the mmaps, initialise kernels
        index.search(q, method="convex")
        index.search(q, method="bm25")
    index.search(queries[0], filters={"category": "cat00"})   # builds the metadata postings once
    res = {"load_s": round(load_s, 3), "doc_count": index.doc_count, "passage_count": index.passage_count}
    res["encode_only"] = stats(time_calls(lambda q: index.encoder.encode([q]), queries))
    q_vec = index.encoder.encode([queries[0]])[0]
    res["dense_matmul_only"] = stats(time_calls(lambda _: index._dense.scores(q_vec), queries))
    for name, kw in [("hybrid_convex", {"method": "convex"}), ("hybrid_rrf", {"method": "rrf"}),
                     ("bm25_only", {"method": "bm25"}), ("dense_only", {"method": "dense"}),
                     ("hybrid_filtered", {"method": "convex", "filters": {"category": ["cat03", "cat07"]}})]:
        res[name] = stats(time_calls(lambda q, kw=kw: index.search(q, top_k=10, **kw), queries))
    hits = index.search(queries[0], top_k=10)
    res["sample_hits"] = [(h.id, round(h.score, 3), h.bm25_rank, h.dense_rank) for h in hits[:3]]
    return res


COLD = r"""
import sys, time
t0 = time.perf_counter()
from pathlib import Path
from core.search.engine import SearchIndex
t_import = time.perf_counter() - t0
index = SearchIndex.load(Path(sys.argv[1]), deep_verify=False, encoder_threads=int(sys.argv[3]))
t_load = time.perf_counter() - t0
hits = index.search(sys.argv[2], top_k=10)
t_first = time.perf_counter() - t0
assert hits
for i in range(50):
    index.search(sys.argv[2] + " " + str(i), top_k=10)
heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork + exec
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(t_import, t_load, t_first, hwm, ",".join(heavy) or "-")
"""


def cold_start(bundle: Path, query: str, threads: int, runs: int = 3) -> dict:
    rows = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", COLD, str(bundle), query, str(threads)], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
        wall = time.perf_counter() - t0
        rows.append((float(out[0]), float(out[1]), float(out[2]), int(out[3]), out[4], wall))
    med = lambda i: round(statistics.median(r[i] for r in rows), 3)  # noqa: E731
    return {"import_s": med(0), "load_s": med(1), "first_result_s": med(2), "process_wall_s": med(5),
            "peak_rss_mb": round(max(r[3] for r in rows) / 1024, 1), "heavy_modules": rows[0][4]}


BASELINE = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from core.search.export import load_sentence_transformer
from core.search.text import DEFAULT_TOKENIZER
from rank_bm25 import BM25Okapi
bundle, queries = sys.argv[2], json.loads(sys.argv[3])
texts = [json.loads(line)["text"] for line in open(bundle + "/passages.jsonl", encoding="utf-8")]
docs = [json.loads(line) for line in open(bundle + "/documents.jsonl", encoding="utf-8")]
titles = []
for d in docs:
    titles += [d["title"]] * d["passages"][1]
t0 = time.perf_counter()
okapi = BM25Okapi([DEFAULT_TOKENIZER(t + "\n" + p) for t, p in zip(titles, texts)])
build_s = time.perf_counter() - t0
emb = np.load(bundle + "/embeddings.npy")
model = load_sentence_transformer()
parts = {"bm25": [], "encode": []}
def search(q):
    t = time.perf_counter()
    b = okapi.get_scores(DEFAULT_TOKENIZER(q))
    t1 = time.perf_counter()
    v = model.encode([q], normalize_embeddings=True, convert_to_numpy=True)[0].astype(np.float32)
    t2 = time.perf_counter()
    parts["bm25"].append(t1 - t)
    parts["encode"].append(t2 - t1)
    d = emb @ v
    bt = np.argsort(-b)[:100]
    dt = np.argsort(-d)[:100]
    fused = {}
    for lst in (bt, dt):
        for r, i in enumerate(lst.tolist(), 1):
            fused[i] = fused.get(i, 0.0) + 1.0 / (60 + r)
    return sorted(fused.items(), key=lambda kv: -kv[1])[:10]
for q in queries[:3]:
    search(q)
parts = {"bm25": [], "encode": []}
times = []
for q in queries:
    t = time.perf_counter(); search(q); times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "bm25_build_s": build_s,
                  "bm25_p50_ms": 1000 * float(np.median(parts["bm25"][3:])),
                  "encode_p50_ms": 1000 * float(np.median(parts["encode"][3:]))}))
"""


def baseline(bundle: Path, queries: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", BASELINE, str(ROOT), str(bundle), json.dumps(queries)], cwd=ROOT,
                         capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {**stats(data["times"]), "bm25_build_s": round(data["bm25_build_s"], 1),
            "bm25_get_scores_p50_ms": round(data["bm25_p50_ms"], 1),
            "torch_encode_p50_ms": round(data["encode_p50_ms"], 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--baseline-queries", type=int, default=30, help="0 skips the rank-bm25 + torch baseline")
    ap.add_argument("--threads", type=int, default=1, help="encoder intra-op threads (ENCODER_THREADS)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "searchsvc-bench")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the bundle even if one of this size exists")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    bundle = ensure_bundle(args.workdir, args.passages, args.rebuild)
    queries = make_queries(args.queries)
    results: dict = {"load_avg_start": [round(x, 2) for x in os.getloadavg()], "passages": args.passages,
                     "queries": args.queries, "encoder_threads": args.threads,
                     "cpus": os.cpu_count(), "bundle": str(bundle)}
    results["in_process"] = in_process(bundle, queries, args.threads)
    results["cold_start"] = cold_start(bundle, queries[0], args.threads)
    if args.baseline_queries:
        results["baseline"] = baseline(bundle, queries[:args.baseline_queries])
        ours = results["in_process"]["hybrid_rrf"]["p50_ms"]
        results["speedup_vs_baseline_p50"] = round(results["baseline"]["p50_ms"] / ours, 1)
    results["bench_seconds"] = round(time.perf_counter() - t_start, 1)

    ip = results["in_process"]
    print(f"\nsearch benchmark: {ip['passage_count']} passages / {ip['doc_count']} documents, "
          f"{args.queries} queries, encoder threads {args.threads}, {os.cpu_count()} CPUs")
    print(f"{'path':<34}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    rows = [("hybrid convex (default)", ip["hybrid_convex"]), ("hybrid rrf", ip["hybrid_rrf"]),
            ("hybrid convex + filter", ip["hybrid_filtered"]), ("bm25 only", ip["bm25_only"]),
            ("dense only (encode + matmul)", ip["dense_only"]), ("  query encode only", ip["encode_only"]),
            ("  dense matmul only", ip["dense_matmul_only"])]
    if "baseline" in results:
        rows.append((f"baseline rank-bm25+torch ({args.baseline_queries} q)", results["baseline"]))
    for name, s in rows:
        print(f"{name:<34}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['mean_ms']:>10.2f}")
    cs = results["cold_start"]
    print(f"cold start (median of 3): import {cs['import_s']:.2f}s, load {cs['load_s']:.2f}s, first result "
          f"{cs['first_result_s']:.2f}s, whole process {cs['process_wall_s']:.2f}s; peak RSS {cs['peak_rss_mb']} MB; "
          f"torch & co imported: {cs['heavy_modules']}")
    if "baseline" in results:
        bl = results["baseline"]
        print(f"baseline parts (p50): rank-bm25 get_scores {bl['bm25_get_scores_p50_ms']} ms, "
              f"sentence-transformers encode {bl['torch_encode_p50_ms']} ms")
        print(f"speed-up vs baseline (p50, rrf vs rrf): {results['speedup_vs_baseline_p50']}x")
    print(f"bench took {results['bench_seconds']}s; load average at start {results['load_avg_start']}, "
          f"at end {[round(x, 2) for x in os.getloadavg()]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
