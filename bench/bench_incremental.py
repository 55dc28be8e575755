"""Incremental builds: full build vs rebuild after editing 1% of the documents.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.bench_incremental [--docs 5000] [--sections 20] [--words 25]
        [--edit-fraction 0.01] [--rounds 3] [--workdir DIR] [--json OUT]

Writes a folder of Markdown files (``--docs`` documents of ``--sections`` sections, each
one passage of ``--words`` words drawn from the pydocs corpus vocabulary, seeded), builds
it with the real pipeline (converters, chunking, real ONNX embeddings through the
embedding cache, BM25, dense index, manifest, probe, atomic swap), then ``--rounds``
times rewrites every section of a different ``--edit-fraction`` of the documents and
rebuilds. Builds use ``structured=True`` (one passage per section, the finer-grained
reuse; the default flat chunking would give fewer, longer passages). Prints the full
build time, each rebuild time, the median rebuild / full ratio and the manifest's
embedded/reused counts. The full build is one round (it embeds every passage); the
machine's other load shows up in both, so read the ratio.

``--estimate-full`` is for a machine too busy to embed 100k passages in the time at
hand: the cache is first filled for the initial corpus with random unit vectors, the
"full" build is then measured end to end with every passage a cache hit (all its work
but the embedding), and the embedding of all passages is added as ``passages /
throughput``, the throughput being measured on a random sample of the corpus's own
index texts with the same embedder in the same run. The rebuilds are measured end to
end either way, their changed passages embedded for real. Wall time and process CPU
time (all threads) are both reported: on a machine shared with other work the CPU-time
ratio is the steadier of the two.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def vocabulary() -> list[str]:
    words: set[str] = set()
    with open(ROOT / "eval" / "data" / "pydocs_corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            words.update(w for w in json.loads(line)["text"].split() if w.isalpha() and 2 < len(w) < 14)
    return sorted(words)


def write_doc(path: Path, i: int, sections: int, words: int, rng: random.Random, vocab: list[str]) -> None:
    parts = [f"# Document {i}\n"]
    for j in range(sections):
        parts.append(f"## Topic {j}\n\n" + " ".join(rng.choices(vocab, k=words)) + "\n")
    path.write_text("\n".join(parts), encoding="utf-8")


CPU: dict[str, float] = {}   # process CPU seconds (all threads): steadier than wall time on a shared machine


def prefill_and_throughput(src: Path, out: Path, sample: int, rng: random.Random) -> float:
    """Fill the embedding cache for ``src`` with random unit vectors; return the embedder's texts/s."""
    from core.ingest import IngestReport, iter_documents
    from core.ingest.chunking import chunk_document, index_text
    from core.ingest.embedcache import EmbeddingCache
    from core.search.build import default_cache_dir
    from core.search.dense import random_unit_vectors
    from core.search.embed import PassageEmbedder
    from core.search.export import ensure_encoder

    texts = [index_text(d.title, p.heading, p.text)
             for d in iter_documents(src, report=IngestReport(), progress=False) for p in chunk_document(d)]
    embedder = PassageEmbedder.load(ensure_encoder())
    timed = rng.sample(texts, min(sample, len(texts)))
    embedder.embed(timed[:32])   # warm up
    t, c = time.perf_counter(), time.process_time()
    embedder.embed(timed)
    rate = len(timed) / (time.perf_counter() - t)
    CPU["embed_per_text"] = (time.process_time() - c) / len(timed)
    cache = EmbeddingCache(default_cache_dir(out), embedder.fingerprint, embedder.dim)
    cache.get_or_embed(texts, lambda ts: random_unit_vectors(len(ts), embedder.dim, seed=len(ts)), progress=False)
    cache.commit()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--sections", type=int, default=20)
    ap.add_argument("--words", type=int, default=25)
    ap.add_argument("--edit-fraction", type=float, default=0.01)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--estimate-full", action="store_true",
                    help="measure the full build without its embedding and add passages / measured throughput")
    ap.add_argument("--sample", type=int, default=1000, help="texts timed for the throughput (--estimate-full)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from core.search.build import build_bundle

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-incr-"))
    src, out = work / "docs", work / "bundle"
    shutil.rmtree(work, ignore_errors=True)
    src.mkdir(parents=True)
    vocab = vocabulary()
    rng = random.Random(42)
    for i in range(args.docs):
        sub = src / f"part{i % 50:02d}"
        sub.mkdir(exist_ok=True)
        write_doc(sub / f"doc{i:06d}.md", i, args.sections, args.words, rng, vocab)
    estimate = None
    if args.estimate_full:
        estimate = prefill_and_throughput(src, out, args.sample, rng)
    t, c = time.perf_counter(), time.process_time()
    full = build_bundle(src, out, progress=not args.estimate_full, structured=True)
    full_s = time.perf_counter() - t
    full_cpu = time.process_time() - c
    print(f"full build: {full['doc_count']} docs, {full['passage_count']} passages, "
          f"embedded {full['embeddings']['embedded']}, {full_s:.1f}s", flush=True)
    if estimate is not None:
        embed_s = full["passage_count"] / estimate
        print(f"  without embedding (all cache hits) {full_s:.1f}s + embedding {full['passage_count']} passages "
              f"at {estimate:.1f}/s = {embed_s:.0f}s (estimated) -> full {full_s + embed_s:.0f}s", flush=True)
        full_s += embed_s
        full_cpu += full["passage_count"] * CPU["embed_per_text"]
        print(f"  CPU: {full_cpu - full['passage_count'] * CPU['embed_per_text']:.0f}s + embedding "
              f"{CPU['embed_per_text'] * 1000:.1f} ms CPU per passage -> full {full_cpu:.0f} CPU-s", flush=True)
    n_edit = max(1, round(args.docs * args.edit_fraction))
    order = list(range(args.docs))
    rng.shuffle(order)
    rounds = []
    for r in range(args.rounds):
        for i in order[r * n_edit:(r + 1) * n_edit]:
            write_doc(src / f"part{i % 50:02d}" / f"doc{i:06d}.md", i, args.sections, args.words, rng, vocab)
        t, c = time.perf_counter(), time.process_time()
        m = build_bundle(src, out, progress=False, structured=True)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        rounds.append({"seconds": dt, "cpu_seconds": dc, "embedded": m["embeddings"]["embedded"],
                       "reused": m["embeddings"]["reused"]})
        print(f"rebuild {r + 1}: {n_edit} docs edited, embedded {m['embeddings']['embedded']}, "
              f"reused {m['embeddings']['reused']}, {dt:.1f}s ({dt / full_s:.1%} of the full build), "
              f"{dc:.0f} CPU-s ({dc / full_cpu:.1%} of the full build's)", flush=True)
    med = statistics.median(x["seconds"] for x in rounds)
    med_cpu = statistics.median(x["cpu_seconds"] for x in rounds)
    result = {"estimated_full": bool(args.estimate_full), "throughput": estimate,
              "docs": args.docs, "passages": full["passage_count"], "edited_docs_per_round": n_edit,
              "full_seconds": full_s, "rebuilds": rounds, "median_rebuild_seconds": med,
              "median_ratio": med / full_s, "full_cpu_seconds": full_cpu, "median_rebuild_cpu_seconds": med_cpu,
              "median_cpu_ratio": med_cpu / full_cpu}
    print(f"median rebuild {med:.1f}s = {med / full_s:.1%} of the full build ({full_s:.1f}s); "
          f"CPU {med_cpu:.0f}s = {med_cpu / full_cpu:.1%} of {full_cpu:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
