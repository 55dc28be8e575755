"""Passage embedding: throughput benchmark, and pre-embedding a corpus into the embedding cache.

    # ONNX embedder (the bundle's graph) vs sentence-transformers, same texts, interleaved rounds
    .venv/bin/python -m bench.bench_embed throughput [--rounds 3] [--short 600] [--long 150] [--json OUT]

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
        eta_s = "-" if eta == float("inf") else time.strftime("%H:%M:%S", time.gmtime(eta))
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
        _, st = cache.get_or_embed(part, emb.embed, progress=args.progress)
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
    args = ap.parse_args(argv)
    if args.cmd == "prefill":
        return prefill(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
