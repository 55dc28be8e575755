#!/usr/bin/env python3
"""Retrieval benchmark on a real corpus with real embeddings, at 100k and at full size.

    .venv/bin/python bench/bench_search.py --corpus ../shared/bench/packages-corpus.jsonl.gz
        [--sizes 100000,full] [--rounds 3] [--queries bench/queries_packages.txt]
        [--workdir var/bench] [--peers] [--vectors N=FILE.npy ...] [--ann-threads N]
        [--ef-search 256,384,512] [--embed-rate R] [--json OUT]

For each size (the corpus' first N lines; ``full`` = all of it):

1. Bundles, cached under ``--workdir`` (git ignores ``var/``): one with the dense
   kind ``hnsw`` and one ``exact``, both built by ``core.search.build.build_bundle``
   from the same slice (the second reuses the embedding cache). ``--vectors
   100000=var/dev/vec100k.npy`` builds from precomputed vectors of those lines
   with ``BundleWriter`` instead (a development shortcut; same writer).
2. In one process, both bundles loaded side by side: query encode p50; hybrid
   (convex, the default) p50/p99 with encoding included, for HNSW and exact,
   ``--rounds`` rounds over every query, medians of the per-round figures; the
   same with precomputed query vectors; BM25 alone, and bm25s ``get_scores`` on
   the most common and on rare single terms; dense recall@10 of HNSW against exact
   dense top-10 and the overlap of the hybrid top-10 with the exact-dense hybrid's.
3. Fresh processes: cold start to first answer (median of 3) and RSS after 1000
   queries.
4. ``--peers``: bench/peers/run.py in its own process, on the same texts, vectors
   and precomputed query vectors (txtai, LanceDB, tantivy + usearch; see
   bench/peers/requirements.txt), with this engine timed in that same process.
5. ``--ef-search``: dense recall@10 and dense p50 at each HNSW beam width (the
   bundle's own value is the headline).

Build rate: ``build_passages_per_s`` is passages / seconds of a build from
scratch. A build that reused the embedding cache (``build.hnsw.embedded`` <
passages) is not one; given ``--embed-rate`` (passages/s of the same embedder,
measured by ``bench.bench_embed prefill`` on the same corpus), the figure is
passages / (cached build seconds + passages / embed rate), and
``build_rate_method`` says so.

The machine is shared: the load average is printed at start and end, and every
comparison is a ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DEFAULT_QUERIES = ROOT / "bench" / "queries_packages.txt"


# ------------------------------------------------------------------------- helpers
def pct(values, p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, p))


def read_queries(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def du_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def du_mb(path: Path) -> float:
    """MiB (2**20 bytes)."""
    return round(du_bytes(path) / 2**20, 1)


def corpus_slice(corpus: Path, n: int | None, workdir: Path) -> tuple[Path, int]:
    """The first ``n`` lines of the corpus as a plain JSONL file (cached)."""
    name = f"corpus-{n or 'full'}.jsonl"
    out = workdir / name
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        opener = gzip.open if corpus.suffix == ".gz" else open
        with opener(corpus, "rt", encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if n is not None and i >= n:
                    break
                dst.write(line)
        tmp.rename(out)
    with open(out, "rb") as fh:
        lines = sum(1 for _ in fh)
    return out, lines


def build_with_builder(src: Path, out: Path, dense: str, cache: Path, ann_threads: int = 1) -> dict:
    from core.search.build import build_bundle

    params = inspect.signature(build_bundle).parameters
    kw = {"version": f"bench-{dense}", "progress": True}
    if "ann_threads" in params:
        kw["ann_threads"] = ann_threads
    if "dense" not in params:
        raise SystemExit("core.search.build.build_bundle has no dense= setting yet: use --vectors")
    kw["dense"] = dense
    if "cache_dir" in params:
        kw["cache_dir"] = cache
    t0 = time.perf_counter()
    manifest = build_bundle(src, out, **kw)
    return {"build_s": time.perf_counter() - t0, "passages": manifest["passage_count"],
            "embedded": manifest.get("embeddings", {}).get("embedded"), "ann_threads": ann_threads}


def build_from_vectors(src: Path, out: Path, dense: str, vectors: Path) -> dict:
    """Development shortcut: the same BundleWriter, vectors precomputed for these lines."""
    from core.artifacts import staging_dir, write_manifest
    from core.search import bundle as B
    from core.search import export

    t0 = time.perf_counter()
    vec = np.load(vectors, mmap_mode="r")
    with staging_dir(out) as tmp:
        w = B.BundleWriter(tmp, dim=int(vec.shape[1]), dense=dense)
        with open(src, encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                title = d.get("title") or ""
                w.add_document(id=d["id"], title=title, url=d.get("url") or "", metadata=d.get("metadata") or {},
                               passages=[("", d["text"])],
                               index_texts=[f"{title}\n{d['text']}" if title else d["text"]])
        if vec.shape[0] < w.passage_count:
            raise SystemExit(f"{vectors}: {vec.shape[0]} vectors for {w.passage_count} passages")
        fields = w.finish(np.ascontiguousarray(vec[:w.passage_count]))
        enc = export.copy_encoder(export.ensure_encoder(), tmp / B.ENCODER_DIR)
        write_manifest(tmp, kind=B.KIND, format_version=B.FORMAT_VERSION, version=f"bench-{dense}",
                       encoder={k: enc.get(k) for k in ("name", "dim", "max_seq_length", "source_package",
                                                        "source_package_version", "fingerprint", "recipe")},
                       source={"file": src.name, "vectors": str(vectors)}, **fields)
    return {"build_s": time.perf_counter() - t0, "passages": int(fields["passage_count"]),
            "embedded": 0, "from_vectors": str(vectors)}


def ensure_bundles(src: Path, tag: str, workdir: Path, vectors: Path | None, rebuild: bool,
                   ann_threads: int = 1) -> dict:
    info: dict = {}
    for dense in ("hnsw", "exact"):
        out = workdir / f"bundle-{tag}-{dense}"
        meta = workdir / f"bundle-{tag}-{dense}.build.json"
        if rebuild or not (out / "manifest.json").exists() or not meta.exists():
            print(f"building {out} ...", flush=True)
            b = (build_from_vectors(src, out, dense, vectors) if vectors
                 else build_with_builder(src, out, dense, workdir / "embed-cache", ann_threads))
            meta.write_text(json.dumps(b))
        info[dense] = {"dir": out, **json.loads(meta.read_text())}
    return info


# ------------------------------------------------------------------------- in process
def term_queries(index, n: int = 20) -> tuple[list[str], list[str]]:
    """The ``n`` most common and ``n`` rare (document frequency 2-5) BM25 terms."""
    bm = index._bm25
    df = np.diff(np.asarray(bm._indptr))
    def term(i) -> str:
        return bm._term(int(i)).decode("utf-8")
    common = [t for t in map(term, np.argsort(-df)[:n]) if t]
    rare = [t for t in map(term, np.flatnonzero((df >= 2) & (df <= 5))[:n]) if t]
    return common, rare


def in_process(hnsw_dir: Path, exact_dir: Path, queries: list[str], rounds: int,
               ef_sweep: list[int] | None = None) -> dict:
    from core.search.engine import SearchIndex

    ann = SearchIndex.load(hnsw_dir, deep_verify=False)
    exact = SearchIndex.load(exact_dir, deep_verify=False)
    ann.manifest_dir = hnsw_dir
    for q in queries[:30]:
        ann.search(q)
        exact.search(q)
    t = []
    vecs = []
    for q in queries:
        t0 = time.perf_counter()
        vecs.append(ann.encoder.encode([q])[0])
        t.append(time.perf_counter() - t0)
    res: dict = {"encode_p50_ms": round(pct(t, 50), 2), "dense_kind": ann.dense_kind,
                 "exact_dense_kind": exact.dense_kind, "passages": ann.passage_count, "documents": ann.doc_count}

    # Quality: dense recall@10 vs exact dense top-10; hybrid top-10 overlap with exact-dense hybrid.
    rec, ov = [], []
    for q, v in zip(queries, vecs):
        a = {h.id for h in ann.search(q, top_k=10, method="dense", query_vector=v)}
        e = {h.id for h in exact.search(q, top_k=10, method="dense", query_vector=v)}
        rec.append(len(a & e) / max(1, len(e)))
        ha = {h.id for h in ann.search(q, top_k=10, query_vector=v)}
        he = {h.id for h in exact.search(q, top_k=10, query_vector=v)}
        ov.append(len(ha & he) / max(1, len(he)))
    res["dense_recall_at_10"] = round(float(np.mean(rec)), 4)
    res["hybrid_overlap_at_10"] = round(float(np.mean(ov)), 4)
    exact_top = [{h.id for h in exact.search(q, top_k=10, method="dense", query_vector=v)}
                 for q, v in zip(queries, vecs)]
    own_ef = getattr(ann._dense, "ef_search", None)
    sweep = {}
    for ef in ef_sweep or []:
        if own_ef is None:
            break
        ann._dense.ef_search = ef
        r, t = [], []
        for q, v, e in zip(queries, vecs, exact_top):
            t0 = time.perf_counter()
            a = {h.id for h in ann.search(q, top_k=10, method="dense", query_vector=v)}
            t.append(time.perf_counter() - t0)
            r.append(len(a & e) / max(1, len(e)))
        sweep[str(ef)] = {"dense_recall_at_10": round(float(np.mean(r)), 4), "dense_p50_ms": round(pct(t, 50), 2)}
    if own_ef is not None:
        ann._dense.ef_search = own_ef
        res["ef_search"] = own_ef
    res["ef_sweep"] = sweep

    def rounds_of(fn, items) -> dict:
        p50s, p99s = [], []
        for _ in range(rounds):
            times = []
            for it in items:
                t0 = time.perf_counter()
                fn(it)
                times.append(time.perf_counter() - t0)
            p50s.append(pct(times, 50))
            p99s.append(pct(times, 99))
        return {"p50_ms": round(statistics.median(p50s), 2), "p99_ms": round(statistics.median(p99s), 2),
                "rounds_p50_ms": [round(x, 2) for x in p50s]}

    pairs = list(zip(queries, vecs))
    # Interleave engines round by round so that machine noise hits both alike.
    res["hybrid"] = rounds_of(lambda q: ann.search(q, top_k=10), queries)
    res["hybrid_exact_dense"] = rounds_of(lambda q: exact.search(q, top_k=10), queries)
    res["hybrid_vec"] = rounds_of(lambda p: ann.search(p[0], top_k=10, query_vector=p[1]), pairs)
    res["hybrid_exact_dense_vec"] = rounds_of(lambda p: exact.search(p[0], top_k=10, query_vector=p[1]), pairs)
    res["dense_only_vec"] = rounds_of(lambda p: ann.search(p[0], top_k=10, method="dense", query_vector=p[1]), pairs)
    res["bm25_only"] = rounds_of(lambda q: ann.search(q, top_k=10, method="bm25"), queries)
    common, rare = term_queries(ann)
    bm = ann._bm25
    res["bm25_get_scores_common"] = rounds_of(bm.scores, common * 5)
    res["bm25_get_scores_rare"] = rounds_of(bm.scores, rare * 5)
    res["bm25_common_terms"] = common[:8]
    eco = ann.search(queries[0], top_k=1)[0].metadata.get("ecosystem")
    res["hybrid_filtered"] = rounds_of(lambda q: ann.search(q, top_k=10, filters={"ecosystem": eco}), queries)
    return res


COLD = r"""
import sys, time
t0 = time.perf_counter()
from pathlib import Path
from core.search.engine import SearchIndex
index = SearchIndex.load(Path(sys.argv[1]), deep_verify=False)
hits = index.search(sys.argv[2], top_k=10)
t_first = time.perf_counter() - t0
assert hits
qs = [q for q in open(sys.argv[3], encoding="utf-8").read().splitlines() if q.strip() and not q.startswith("#")]
n = int(sys.argv[4])
for i in range(n):
    index.search(qs[i % len(qs)] + ("" if i < len(qs) else " " + str(i // len(qs))), top_k=10)
status = {ln.split(":")[0]: int(ln.split()[1]) for ln in open("/proc/self/status")
          if ln.startswith(("VmRSS", "RssAnon", "VmHWM"))}
heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
print(t_first, status["VmRSS"], status["RssAnon"], status["VmHWM"], ",".join(heavy) or "-")
"""


def fresh_process(bundle: Path, query: str, queries_file: Path, n: int) -> tuple:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", COLD, str(bundle), query, str(queries_file), str(n)], cwd=ROOT,
                         capture_output=True, text=True, check=True, env=env).stdout.split()
    return float(out[0]), int(out[1]), int(out[2]), int(out[3]), out[4], time.perf_counter() - t0


def drop_page_cache_hint(bundle: Path) -> None:
    """Ask the kernel to drop the bundle's cached pages (posix_fadvise DONTNEED), so that a
    cold start reads from disk as a new instance would after its download."""
    for p in bundle.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def cold_and_rss(bundle: Path, queries: list[str], queries_file: Path) -> dict:
    firsts, firsts_dropped = [], []
    heavy = "-"
    for i in range(3):
        firsts.append(fresh_process(bundle, queries[i], queries_file, 0)[0])
        drop_page_cache_hint(bundle)
        r = fresh_process(bundle, queries[i + 3], queries_file, 0)
        firsts_dropped.append(r[0])
        heavy = r[4]
    r = fresh_process(bundle, queries[0], queries_file, 1000)
    return {"cold_start_s": round(statistics.median(firsts), 3),
            "cold_start_page_cache_dropped_s": round(statistics.median(firsts_dropped), 3),
            "rss_mb": round(r[1] / 1024, 1), "rss_anon_mb": round(r[2] / 1024, 1), "peak_rss_mb": round(r[3] / 1024, 1),
            "heavy_modules": heavy}


def peers(exact_dir: Path, hnsw_dir: Path, queries: list[str], rounds: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "peers" / "run.py"), str(exact_dir), str(hnsw_dir),
                          "--rounds", str(rounds), "--queries", json.dumps(queries)],
                         cwd=ROOT, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:] or ["peer run failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--sizes", default="100000,full", help="comma-separated line counts, or 'full'")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    ap.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--vectors", action="append", default=[], metavar="SIZE=FILE.npy",
                    help="precomputed vectors of the first SIZE lines (development shortcut)")
    ap.add_argument("--peers", action="store_true", help="also run bench/peers/run.py")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--ann-threads", type=int, default=1, help="HNSW build threads (1: byte-identical)")
    ap.add_argument("--ef-search", default="", help="comma-separated HNSW beam widths to sweep for recall")
    ap.add_argument("--embed-rate", type=float,
                    help="passages/s of this embedder on this corpus (bench_embed prefill), for builds from cache")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.workdir.mkdir(parents=True, exist_ok=True)
    vectors = {k: Path(v) for k, v in (x.split("=", 1) for x in args.vectors)}
    queries = read_queries(args.queries)
    results: dict = {"load_avg_start": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
                     "queries": len(queries), "rounds": args.rounds, "sizes": {}}
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        n = None if size == "full" else int(size)
        src, lines = corpus_slice(args.corpus, n, args.workdir)
        tag = size
        b = ensure_bundles(src, tag, args.workdir, vectors.get(size), args.rebuild, args.ann_threads)
        ip = in_process(b["hnsw"]["dir"], b["exact"]["dir"], queries, args.rounds,
                        [int(x) for x in args.ef_search.split(",") if x.strip()])
        hb = b["hnsw"]
        if hb.get("embedded") == hb["passages"]:
            rate, method = hb["passages"] / hb["build_s"], "measured: a build from scratch"
        elif args.embed_rate and not hb.get("from_vectors"):
            rate = hb["passages"] / (hb["build_s"] + hb["passages"] / args.embed_rate)
            method = (f"cached build ({hb['build_s']:.0f} s, {hb.get('embedded')} embedded) + every passage "
                      f"embedded at {args.embed_rate:g}/s (bench_embed prefill)")
        else:
            rate, method = hb["passages"] / hb["build_s"], "embeddings reused from the cache: not a full build"
        cs = cold_and_rss(b["hnsw"]["dir"], queries, args.queries)
        r = {"passages": ip["passages"], "documents": ip["documents"], "corpus_lines": lines,
             "hybrid_p50_ms": ip["hybrid"]["p50_ms"], "hybrid_p99_ms": ip["hybrid"]["p99_ms"],
             "encode_p50_ms": ip["encode_p50_ms"], "dense_recall_at_10": ip["dense_recall_at_10"],
             "hybrid_overlap_at_10": ip["hybrid_overlap_at_10"], "rss_mb": cs["rss_mb"],
             "cold_start_s": cs["cold_start_s"], "bundle_mb": du_mb(b["hnsw"]["dir"]),
             "bundle_bytes": du_bytes(b["hnsw"]["dir"]),
             "bundle_exact_mb": du_mb(b["exact"]["dir"]),
             "build_passages_per_s": round(rate, 1), "build_rate_method": method,
             "build": {k: {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in v.items()}
                       for k, v in b.items()},
             "in_process": ip, "fresh_process": cs}
        if args.peers:
            pr = peers(b["exact"]["dir"], b["hnsw"]["dir"], queries, args.rounds)
            r["peers"] = pr
            for name, val in pr.items():
                if isinstance(val, dict) and "p50_ms" in val:
                    r[f"{name}_p50_ms"] = val["p50_ms"]
        results["sizes"][size] = r
        print_size(size, r)
    results["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at start {results['load_avg_start']}, at end {results['load_avg_end']} "
          f"({os.cpu_count()} CPUs, shared machine: figures are noisy; medians of {args.rounds} rounds)")
    if args.json:
        flat = dict(results)
        if len(results["sizes"]) == 1:
            flat.update(next(iter(results["sizes"].values())))
        args.json.write_text(json.dumps(flat, indent=2, default=str))
    return 0


def print_size(size: str, r: dict) -> None:
    ip = r["in_process"]
    print(f"\n== {size}: {r['passages']} passages / {r['documents']} documents; dense {ip['dense_kind']} "
          f"(reference {ip['exact_dense_kind']})")
    print(f"{'path':<44}{'p50 ms':>9}{'p99 ms':>9}")
    for name, key in [("hybrid, encoding included", "hybrid"), ("hybrid, exact dense, encoding incl.",
                                                                  "hybrid_exact_dense"),
                      ("hybrid, precomputed query vector", "hybrid_vec"),
                      ("hybrid exact dense, precomputed vector", "hybrid_exact_dense_vec"),
                      ("dense only (HNSW), precomputed vector", "dense_only_vec"),
                      ("bm25 only", "bm25_only"), ("bm25s get_scores, common terms", "bm25_get_scores_common"),
                      ("bm25s get_scores, rare terms", "bm25_get_scores_rare"),
                      ("hybrid + ecosystem filter", "hybrid_filtered")]:
        print(f"{name:<44}{ip[key]['p50_ms']:>9.2f}{ip[key]['p99_ms']:>9.2f}")
    print(f"query encode p50 {r['encode_p50_ms']} ms; HNSW/exact hybrid p50 ratio "
          f"{ip['hybrid']['p50_ms'] / max(ip['hybrid_exact_dense']['p50_ms'], 1e-9):.2f}")
    print(f"dense recall@10 {r['dense_recall_at_10']}, hybrid top-10 overlap with exact-dense hybrid "
          f"{r['hybrid_overlap_at_10']}")
    fp = r["fresh_process"]
    print(f"cold start to first answer {r['cold_start_s']} s (page cache dropped: "
          f"{fp['cold_start_page_cache_dropped_s']} s); RSS after 1000 queries {r['rss_mb']} MB "
          f"(anonymous {fp['rss_anon_mb']} MB); torch & co imported: {fp['heavy_modules']}")
    print(f"bundle {r['bundle_mb']} MiB = {r['bundle_bytes'] / 1e6:.1f} MB (exact-dense bundle "
          f"{r['bundle_exact_mb']} MiB); build {r['build_passages_per_s']} passages/s ({r['build_rate_method']})")
    for ef, v in ip.get("ef_sweep", {}).items():
        print(f"  efSearch {ef:>4}: dense recall@10 {v['dense_recall_at_10']}, dense p50 {v['dense_p50_ms']} ms")
    for k, v in r.get("peers", {}).items():
        if isinstance(v, dict) and "p50_ms" in v:
            print(f"  peer {k:<38}{v['p50_ms']:>9.2f}{v.get('p99_ms', float('nan')):>9.2f}  {v.get('note', '')}")
        else:
            print(f"  peer {k}: {v}")


if __name__ == "__main__":
    sys.exit(main())
