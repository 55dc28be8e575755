"""Passage embedding: throughput benchmark, and pre-embedding a corpus into the embedding cache.

    # ONNX embedder (the bundle's graph) vs sentence-transformers, same texts, interleaved rounds
    .venv/bin/python -m bench.bench_embed throughput [--rounds 3] [--short 600] [--long 150] [--int8] [--json OUT]

    # eval/evaluate.py's bundle with the int8 candidate for passages and queries (then run evaluate.py on it)
    .venv/bin/python -m bench.bench_embed eval-bundle --graph int8 --out var/eval-int8

    # fill the builder's embedding cache for a JSONL(.gz) corpus (what the 1M benchmark build reuses)
    .venv/bin/python -m bench.bench_embed prefill --corpus ../shared/bench/packages-corpus.jsonl.gz \\
        --cache var/bench/embed-cache [--import-vectors var/dev/vec100k.npy] [--status var/EMBED_STATUS.txt]

``prefill`` computes each passage's index text exactly as the builder does
(``core.ingest`` validation, ``chunk_document`` and ``index_text``), embeds the
ones the cache lacks with :class:`core.search.embed.PassageEmbedder` and commits
to :class:`core.ingest.embedcache.EmbeddingCache` every ``--commit-every``
passages, so an interrupted run keeps what it did. ``--import-vectors`` takes
vectors already computed with the same graph for the corpus' first lines (one
row per line, text ``title\\ntext``) and stores those whose index text is that
same string, after checking a sample of them against the embedder.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def corpus_index_texts(path: Path, limit: int | None = None) -> tuple[list[str], list[int]]:
    """Every passage's index text, in corpus order, and the corpus line (0-based) of each."""
    from core.ingest.chunking import chunk_document, index_text
    from core.ingest.models import SourceDocument, Section
    from core.search.bundle import validate_document

    texts: list[str] = []
    lines: list[int] = []
    with _open(path) as fh:
        for n, line in enumerate(fh):
            if limit is not None and n >= limit:
                break
            if not line.strip():
                continue
            d = validate_document(json.loads(line))
            doc = SourceDocument(d["id"], d["title"], d["url"], d["metadata"], [Section((), d["text"])], "jsonl")
            for p in chunk_document(doc):
                texts.append(index_text(doc.title, p.heading, p.text))
                lines.append(n)
    return texts, lines


class Status:
    def __init__(self, path: Path | None, total: int, cache_dir: Path, fingerprint: str) -> None:
        self.path, self.total, self.cache_dir, self.fp = path, total, cache_dir, fingerprint
        self.t0 = time.time()
        self.base = 0

    def write(self, state: str, done: int) -> None:
        el = time.time() - self.t0
        rate = (done - self.base) / el if el > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_s = "-" if eta == float("inf") else f"{int(eta // 3600)}h{int(eta % 3600 // 60):02d}m"
        line = (f"{state} {done}/{self.total} passages, {rate:.0f} passages/s, ETA {eta_s}, "
                f"cache {self.cache_dir}, fingerprint {self.fp}, updated {time.strftime('%H:%M:%S', time.gmtime())}Z")
        print(line, flush=True)
        if self.path:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(line + "\n")
            os.replace(tmp, self.path)


def prefill(args) -> int:
    from core.ingest.embedcache import EmbeddingCache
    from core.search.embed import PassageEmbedder
    from core.search.export import ensure_encoder

    enc_dir = Path(args.encoder) if args.encoder else ensure_encoder()
    emb = PassageEmbedder.load(enc_dir, threads=args.threads)
    t = time.time()
    texts, lines = corpus_index_texts(args.corpus, args.limit)
    print(f"{len(texts)} passages from {lines[-1] + 1} lines in {time.time() - t:.1f}s; encoder {enc_dir}, "
          f"fingerprint {emb.fingerprint}", flush=True)
    cache = EmbeddingCache(args.cache, emb.fingerprint, emb.dim)
    status = Status(args.status, len(texts), cache.dir, emb.fingerprint)

    if args.import_vectors:
        vec = np.load(args.import_vectors, mmap_mode="r")
        first_line = {}
        for i, ln in enumerate(lines):
            first_line.setdefault(ln, []).append(i)
        # line -> its passage text, for lines that are one passage equal to "title\ntext"
        raw: list[str] = []
        with _open(args.corpus) as fh:
            for n, line in enumerate(fh):
                if n >= len(vec):
                    break
                d = json.loads(line)
                t_ = d.get("title") or ""
                raw.append(f"{t_}\n{d['text']}" if t_ else d["text"])
        rows = {}
        for n, r in enumerate(raw):
            idx = first_line.get(n, [])
            if len(idx) == 1 and texts[idx[0]] == r:
                rows.setdefault(r, n)
        sample = random.Random(5).sample(sorted(rows), min(200, len(rows)))
        check = emb.embed(sample)
        cos = (check * np.asarray(vec[[rows[s] for s in sample]])).sum(1)
        print(f"import: {len(rows)} of {len(raw)} lines usable; check on {len(sample)}: min cosine {cos.min():.6f}",
              flush=True)
        if cos.min() < 0.9999:
            print("import refused: the vectors were not made by this graph", flush=True)
            return 1
        keys = sorted(rows)
        _, st = cache.get_or_embed(keys, lambda batch: np.asarray(vec[[rows[b] for b in batch]], dtype=np.float32),
                                   progress=False)
        print(f"import: {st}; committed {cache.commit()}", flush=True)

    done = 0
    step = args.commit_every
    stats = {"embedded": 0, "reused": 0}
    status.write("running", 0)
    first = True
    for s in range(0, len(texts), step):
        part = texts[s:s + step]
        seen = [0]

        def embed(batch: list[str], _s: int = s, seen: list[int] = seen) -> np.ndarray:
            v = emb.embed(batch)
            seen[0] += len(batch)   # misses so far in this chunk: an estimate of the position
            status.write("running", _s + min(seen[0], step))
            return v

        _, st = cache.get_or_embed(part, embed, progress=args.progress)
        cache.commit()
        stats = {k: stats[k] + st[k] for k in stats}
        done += len(part)
        if first and st["embedded"] == 0:
            status.base = done  # reused chunks do not count towards the rate
            status.t0 = time.time()
        else:
            first = False
        status.write("running", done)
    status.write("done", done)
    print(json.dumps({"passages": len(texts), **stats, "cache": str(cache.dir), "fingerprint": emb.fingerprint,
                      "seconds": round(time.time() - status.t0, 1)}), flush=True)
    return 0


def bench_texts(corpus: Path, n_short: int, n_long: int, words: int = 200) -> tuple[list[str], list[str]]:
    """Short texts: package summaries spread over the corpus ("title\\ntext"). Long: ``words``-word windows
    of the CPython-docs dev set (title + window), one per document that is long enough."""
    rng = random.Random(11)
    short: list[str] = []
    with _open(corpus) as fh:
        for i, line in enumerate(fh):
            if i % 1500 == 7:
                d = json.loads(line)
                short.append(f"{d['title']}\n{d['text']}" if d.get("title") else d["text"])
                if len(short) >= n_short:
                    break
    docs = [json.loads(x) for x in (ROOT / "eval" / "data" / "pydocs_corpus.jsonl").read_text().splitlines()]
    rng.shuffle(docs)
    long_: list[str] = []
    for d in docs:
        w = d["text"].split()
        if len(w) >= words:
            s = rng.randrange(0, len(w) - words + 1)
            long_.append(d["title"] + "\n" + " ".join(w[s:s + words]))
            if len(long_) >= n_long:
                break
    return short, long_


def throughput(args) -> int:
    from core.search.embed import PassageEmbedder
    from core.search.export import ensure_encoder, load_sentence_transformer, quantize_encoder

    short, long_ = bench_texts(args.corpus, args.short, args.long)
    enc_dir = ensure_encoder()
    from core.search.encoder import QueryEncoder

    runners = {"onnx-fp32": PassageEmbedder.load(enc_dir, threads=args.threads).embed}
    query_encoders = {"onnx-fp32": QueryEncoder.load(enc_dir, threads=1)}
    if args.int8:
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="bench-embed-int8-"))
        quantize_encoder(enc_dir, tmp)
        runners["onnx-int8-candidate"] = PassageEmbedder.load(tmp, threads=args.threads).embed
        query_encoders["onnx-int8-candidate"] = QueryEncoder.load(tmp, threads=1)
    queries = [json.loads(x)["query"] for x in
               (ROOT / "eval" / "data" / "pydocs_queries.jsonl").read_text().splitlines() if x.strip()]
    q_times: dict[str, list[float]] = {}
    st = load_sentence_transformer(threads=args.threads)
    runners["sentence-transformers"] = lambda texts: st.encode(
        texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    sets = {"short": short, "long": long_}
    tok = st.tokenizer
    lens = {k: statistics.median(len(tok(t, truncation=True, max_length=256)["input_ids"]) for t in v)
            for k, v in sets.items()}
    ref = {k: runners["sentence-transformers"](v) for k, v in sets.items()}   # also warms every runner up
    cos = {}
    for name, run in runners.items():
        for k, v in sets.items():
            c = (np.asarray(run(v), dtype=np.float64) * ref[k]).sum(1)
            cos[f"{name}/{k}"] = round(float(c.min()), 5)
    rates: dict[str, list[float]] = {}
    for rnd in range(args.rounds):   # interleaved: every runner on every set in each round
        for k, v in sets.items():
            for name, run in runners.items():
                t = time.perf_counter()
                run(v)
                rates.setdefault(f"{name}/{k}", []).append(len(v) / (time.perf_counter() - t))
        for name, qe in query_encoders.items():   # one query at a time, one thread (as served)
            for q in queries:
                t = time.perf_counter()
                qe.encode([q])
                q_times.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        print(f"round {rnd + 1}: " + ", ".join(f"{key} {r[-1]:.0f}/s" for key, r in rates.items()), flush=True)
    med = {key: round(statistics.median(r), 1) for key, r in rates.items()}
    load = os.getloadavg()
    result = {"threads": args.threads, "rounds": args.rounds, "loadavg_at_end": [round(x, 2) for x in load],
              "texts": {k: len(v) for k, v in sets.items()}, "median_tokens": lens,
              "passages_per_s": med, "passages_per_s_rounds": {k: [round(x, 1) for x in r] for k, r in rates.items()},
              "min_cosine_to_sentence_transformers": cos,
              "query_encode_p50_ms": {k: round(statistics.median(v), 3) for k, v in q_times.items()},
              "query_encode_p90_ms": {k: round(float(np.percentile(v, 90)), 3) for k, v in q_times.items()},
              "ratio_vs_sentence_transformers": {}}
    for name in runners:
        if name == "sentence-transformers":
            continue
        for k in sets:
            result["ratio_vs_sentence_transformers"][f"{name}/{k}"] = round(
                med[f"{name}/{k}"] / med[f"sentence-transformers/{k}"], 2)
    print(f"texts: {len(short)} short (median {lens['short']} tokens), {len(long_)} long "
          f"(median {lens['long']} tokens); {args.threads} threads; load average {load[0]:.1f}")
    print(f"{'runner':<24}{'short /s':>10}{'long /s':>10}{'x short':>9}{'x long':>8}  min cos short/long")
    for name in runners:
        xs = result["ratio_vs_sentence_transformers"].get(f"{name}/short", 1.0)
        xl = result["ratio_vs_sentence_transformers"].get(f"{name}/long", 1.0)
        print(f"{name:<24}{med[name + '/short']:>10.1f}{med[name + '/long']:>10.1f}{xs:>9.2f}{xl:>8.2f}"
              f"  {cos[name + '/short']:.4f}/{cos[name + '/long']:.4f}")
    print("query encode p50 (1 thread, one query at a time): "
          + ", ".join(f"{k} {v} ms" for k, v in result["query_encode_p50_ms"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def eval_bundle(args) -> int:
    """Build ``eval/evaluate.py``'s bundle with the fp32 graph or the int8 candidate (passages and queries)."""
    import hashlib
    import tempfile

    import core.search.build as build
    from core.search import export

    enc = export.ensure_encoder()
    if args.graph == "int8":
        tmp = Path(tempfile.mkdtemp(prefix="eval-int8-encoder-"))
        export.quantize_encoder(enc, tmp)
        enc = tmp
    export.ensure_encoder = lambda cache=None: enc   # the builder takes its encoder from here
    digest = hashlib.sha256(args.corpus.read_bytes()).hexdigest()
    build.build_bundle(args.corpus, args.out, version=f"eval-{digest[:12]}", progress=True)
    print(f"built {args.out} with the {args.graph} graph; now: .venv/bin/python eval/evaluate.py --corpus "
          f"{args.corpus} --queries eval/data/pydocs_queries.jsonl --bundle-dir {args.out} --alphas 0.8 --folds 0")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.bench_embed", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prefill", help="fill the embedding cache for a corpus")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True, help="embedding cache root (the builder's --cache)")
    p.add_argument("--encoder", type=Path, help="encoder folder (default: the exported graph, export.ensure_encoder)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--limit", type=int, help="first N corpus lines only")
    p.add_argument("--commit-every", type=int, default=25000)
    p.add_argument("--import-vectors", type=Path)
    p.add_argument("--status", type=Path)
    p.add_argument("--progress", action="store_true")
    t = sub.add_parser("throughput", help="ONNX embedder vs sentence-transformers, same texts, interleaved")
    t.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "bench" / "packages-corpus.jsonl.gz")
    t.add_argument("--short", type=int, default=600)
    t.add_argument("--long", type=int, default=150)
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--int8", action="store_true", help="also the int8 candidate graph (export.quantize_encoder)")
    t.add_argument("--json", type=Path)
    e = sub.add_parser("eval-bundle", help="the relevance dev set's bundle built with a chosen graph")
    e.add_argument("--graph", choices=("fp32", "int8"), required=True)
    e.add_argument("--corpus", type=Path, default=ROOT / "eval" / "data" / "pydocs_corpus.jsonl")
    e.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "prefill":
        return prefill(args)
    if args.cmd == "throughput":
        return throughput(args)
    if args.cmd == "eval-bundle":
        return eval_bundle(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
