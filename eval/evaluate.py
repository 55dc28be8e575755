"""Evaluate BM25-only, dense-only and fused retrieval on a corpus + judged questions.

    python eval/evaluate.py --corpus eval/data/pydocs_corpus.jsonl \\
        --queries eval/data/pydocs_queries.jsonl --bundle-dir var/eval-bundle \\
        [--alphas 0.3,0.5,0.7] [--norms minmax,tmm,zscore] [--dense-floor 0] \\
        [--rrf-k 60] [--depth 100] [--folds 2] [--json OUT] [--markdown OUT]

The bundle is built with the product's own builder (``core.search.build.build_bundle``);
``--bundle-dir`` reuses an existing bundle when its manifest's source sha256 equals the
corpus file's, and (re)builds it there otherwise. Without ``--bundle-dir`` it is built
in a temporary folder.

Rankings come from the product's engine, ``SearchIndex.search(query, method=...)``
(document-level results): ``bm25``, ``dense``, ``rrf`` and ``convex`` (min-max, one run
per alpha). Convex fusion with the other normalisations (``tmm``, ``zscore``), which the
engine does not expose, is computed with ``core.search.fusion.convex(..., norm=...)`` on
the engine's own BM25 and dense candidate lists (top ``depth`` each), exactly as the
engine fuses them; the tool checks that this path reproduces the engine's min-max
convex ranking on every question and reports it.

Metrics (binary relevance, a question's ``relevant`` ids): success@1, success@5
(at least one relevant document in the top k), MRR@10 (1/rank of the first relevant
document in the top 10, else 0), nDCG@10 (gain 1 per relevant document,
1/log2(rank+1) discount, ideal = all relevant documents first) and recall@10.
Each question's ``kind`` (if any) is used only for the breakdown.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

METRICS = ("success@1", "success@5", "mrr@10", "ndcg@10", "recall@10")
CUTOFF = 10


# ----------------------------------------------------------------------------- metrics
def success_at(ranking: Sequence[str], relevant: Iterable[str], k: int) -> float:
    rel = set(relevant)
    return 1.0 if any(d in rel for d in ranking[:k]) else 0.0


def mrr_at(ranking: Sequence[str], relevant: Iterable[str], k: int = CUTOFF) -> float:
    rel = set(relevant)
    for i, d in enumerate(ranking[:k], start=1):
        if d in rel:
            return 1.0 / i
    return 0.0


def ndcg_at(ranking: Sequence[str], relevant: Iterable[str], k: int = CUTOFF) -> float:
    rel = set(relevant)
    if not rel:
        return 0.0
    seen: set[str] = set()
    dcg = 0.0
    for i, d in enumerate(ranking[:k], start=1):
        if d in rel and d not in seen:  # a duplicate id earns nothing twice
            seen.add(d)
            dcg += 1.0 / math.log2(i + 1)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(rel), k) + 1))
    return dcg / ideal


def recall_at(ranking: Sequence[str], relevant: Iterable[str], k: int = CUTOFF) -> float:
    rel = set(relevant)
    if not rel:
        return 0.0
    return len(rel & set(ranking[:k])) / len(rel)


def query_metrics(ranking: Sequence[str], relevant: Iterable[str]) -> dict[str, float]:
    rel = list(relevant)
    return {"success@1": success_at(ranking, rel, 1), "success@5": success_at(ranking, rel, 5),
            "mrr@10": mrr_at(ranking, rel, CUTOFF), "ndcg@10": ndcg_at(ranking, rel, CUTOFF),
            "recall@10": recall_at(ranking, rel, CUTOFF)}


def mean_metrics(per_query: list[dict[str, float]]) -> dict[str, float]:
    if not per_query:
        return {m: 0.0 for m in METRICS}
    return {m: sum(q[m] for q in per_query) / len(per_query) for m in METRICS}


# ----------------------------------------------------------------------------- inputs
def sha256_of(path: Path) -> str:
    """sha256 of a corpus file; of a folder: over its sorted relative paths and their files' sha256."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0" + sha256_of(f).encode())
        return h.hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_queries(path: Path) -> list[dict]:
    out: list[dict] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        q = json.loads(line)
        if not isinstance(q.get("query"), str) or not q["query"].strip():
            raise ValueError(f"{path} line {n}: missing query")
        if not isinstance(q.get("relevant"), list) or not q["relevant"]:
            raise ValueError(f"{path} line {n}: 'relevant' must be a non-empty list of ids")
        q.setdefault("qid", f"line{n}")
        q.setdefault("kind", "all")
        out.append(q)
    if not out:
        raise ValueError(f"{path}: no questions")
    return out


def ensure_bundle(corpus: Path, bundle_dir: Path | None, progress: bool,
                  chunking: str = "flat", min_section_words: int | None = None) -> tuple[Path, str]:
    """The bundle to evaluate and how it was obtained ("reused" or "built").

    A folder corpus is built through the folder source (converters, structure-aware
    chunking ``flat``, the builder's default: one section per document; ``sections``: split
    on headings, each passage carrying its heading path).
    """
    from core.search.build import build_bundle

    digest = sha256_of(corpus)
    version = f"eval-{digest[:12]}" + ("" if chunking == "sections" else f"-{chunking}") + (
        "" if min_section_words is None else f"-min{min_section_words}")
    if bundle_dir is not None and (bundle_dir / "manifest.json").is_file():
        try:
            manifest = json.loads((bundle_dir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        same = ((manifest.get("source") or {}).get("sha256") == digest if not Path(corpus).is_dir()
                else manifest.get("version") == version)
        if same and not (manifest.get("embeddings") or {}).get("random"):
            return bundle_dir, "reused"
        print(f"{bundle_dir}: built from another corpus (or random embeddings); rebuilding", file=sys.stderr)
    if bundle_dir is None:
        bundle_dir = Path(tempfile.mkdtemp(prefix="eval-bundle-")) / "bundle"
    build_bundle(corpus, bundle_dir, version=version, progress=progress, structured=chunking == "sections",
                 min_section_words=min_section_words)
    return bundle_dir, "built"


# ----------------------------------------------------------------------------- runs
def parse_floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def run_name(method: str, alpha: float | None = None, norm: str | None = None) -> str:
    if method != "convex":
        return method
    return f"convex-{norm} a={alpha:.2f}"


def collect_rankings(index, queries: list[dict], *, alphas: list[float], norms: list[str], depth: int,
                     rrf_k: int, dense_floor: float, doc_pos: dict[str, int],
                     progress: bool) -> tuple[dict[str, list[list[str]]], int]:
    """Top-10 document ids per run and question, and how many questions the offline convex
    (min-max) path ranked exactly like the engine (for every alpha)."""
    import numpy as np
    from tqdm import tqdm

    from core.search import fusion

    runs: dict[str, list[list[str]]] = {}
    agree = 0
    id_of = {v: k for k, v in doc_pos.items()}

    def add(name: str, ranking: list[str]) -> None:
        runs.setdefault(name, []).append(ranking[:CUTOFF])

    for q in tqdm(queries, desc="questions", unit="q", disable=not progress):
        text = q["query"]
        bm = index.search(text, top_k=depth, method="bm25", depth=depth)
        de = index.search(text, top_k=depth, method="dense", depth=depth)
        add("bm25", [h.id for h in bm])
        add("dense", [h.id for h in de])
        add("rrf", [h.id for h in index.search(text, top_k=CUTOFF, method="rrf", depth=depth, rrf_k=rrf_k)])
        b_list = (np.array([doc_pos[h.id] for h in bm], dtype=np.int64), np.array([h.score for h in bm]))
        d_list = (np.array([doc_pos[h.id] for h in de], dtype=np.int64), np.array([h.score for h in de]))
        same = True
        for alpha in alphas:
            engine = [h.id for h in index.search(text, top_k=CUTOFF, method="convex", depth=depth, alpha=alpha)]
            for norm in norms:
                ids, _ = fusion.convex(b_list, d_list, alpha, norm=norm, dense_floor=dense_floor)
                ranking = [id_of[int(d)] for d in ids[:CUTOFF]]
                if norm == "minmax":
                    same &= ranking == engine
                    ranking = engine  # the product's own result is the one reported
                add(run_name("convex", alpha, norm), ranking)
        agree += same
    return runs, agree


def score_runs(runs: dict[str, list[list[str]]], queries: list[dict],
               subset: Sequence[int] | None = None) -> dict[str, dict[str, float]]:
    idx = range(len(queries)) if subset is None else subset
    return {name: mean_metrics([query_metrics(rankings[i], queries[i]["relevant"]) for i in idx])
            for name, rankings in runs.items()}


def folds_of(queries: list[dict], n: int) -> list[list[int]]:
    """Deterministic folds, stratified by kind: within each kind, questions sorted by qid are dealt
    round-robin."""
    folds: list[list[int]] = [[] for _ in range(n)]
    by_kind: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_kind.setdefault(q["kind"], []).append(i)
    for kind in sorted(by_kind):
        for j, i in enumerate(sorted(by_kind[kind], key=lambda i: str(queries[i]["qid"]))):
            folds[j % n].append(i)
    return [sorted(f) for f in folds]


def tune_objective(m: dict[str, float]) -> tuple[float, float, float]:
    return (m["success@5"] + m["mrr@10"], m["ndcg@10"], m["success@1"])


def cross_validate(runs, queries, n_folds: int) -> list[dict]:
    """For each fold: pick the best convex run on the other folds (success@5 + MRR@10), report it on
    this fold next to BM25, dense and RRF."""
    out = []
    folds = folds_of(queries, n_folds)
    convex_runs = [r for r in runs if r.startswith("convex")]
    for k, test in enumerate(folds):
        train = sorted(set(range(len(queries))) - set(test))
        train_scores = score_runs({r: runs[r] for r in convex_runs}, queries, train)
        best = max(convex_runs, key=lambda r: (tune_objective(train_scores[r]), -convex_runs.index(r)))
        test_scores = score_runs(runs, queries, test)
        out.append({"fold": k + 1, "n_train": len(train), "n_test": len(test), "chosen_on_train": best,
                    "test": {r: test_scores[r] for r in ("bm25", "dense", "rrf", best)}})
    return out


# ----------------------------------------------------------------------------- output
def fmt_row(name: str, m: dict[str, float], bold: bool = False) -> str:
    cells = [f"{m[k]:.3f}" for k in METRICS]
    if bold:
        name = f"**{name}**"
    return f"| {name} | " + " | ".join(cells) + " |"


def markdown(report: dict) -> str:
    lines = []
    cfg = report["config"]
    lines.append(f"Questions: {report['n_queries']}; bundle {cfg['bundle_version']} ({cfg['bundle']}), "
                 f"encoder {cfg['encoder']}; depth {cfg['depth']}, rrf k {cfg['rrf_k']}, "
                 f"tmm dense floor {cfg['dense_floor']}.")
    lines.append("")
    lines.append("| run | " + " | ".join(METRICS) + " |")
    lines.append("| --- | " + " | ".join("---:" for _ in METRICS) + " |")
    default = report.get("default_run")
    for name, m in report["overall"].items():
        lines.append(fmt_row(name, m, bold=(name == default)))
    lines.append("")
    lines.append(f"Offline convex (min-max) fusion = engine convex on {report['engine_agreement']}/"
                 f"{report['n_queries']} questions (every alpha).")
    if report.get("by_kind"):
        lines.append("")
        lines.append("By kind (success@5 / MRR@10 / nDCG@10):")
        lines.append("")
        kinds = list(next(iter(report["by_kind"].values())).keys())
        counts = report["kind_counts"]
        lines.append("| run | " + " | ".join(f"{k} ({counts[k]})" for k in kinds) + " |")
        lines.append("| --- | " + " | ".join("---" for _ in kinds) + " |")
        for name, per in report["by_kind"].items():
            cells = [f"{per[k]['success@5']:.3f} / {per[k]['mrr@10']:.3f} / {per[k]['ndcg@10']:.3f}" for k in kinds]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if report.get("folds"):
        lines.append("")
        lines.append("Cross-validation (convex run chosen on the other fold by success@5 + MRR@10, reported on "
                     "this fold; success@5 / MRR@10):")
        lines.append("")
        lines.append("| test fold | n | chosen on train | bm25 | dense | rrf | chosen |")
        lines.append("| --- | ---: | --- | --- | --- | --- | --- |")
        for f in report["folds"]:
            t = f["test"]
            cell = {r: f"{m['success@5']:.3f} / {m['mrr@10']:.3f}" for r, m in t.items()}
            lines.append(f"| {f['fold']} | {f['n_test']} | {f['chosen_on_train']} | {cell['bm25']} | "
                         f"{cell['dense']} | {cell['rrf']} | {cell[f['chosen_on_train']]} |")
    if default:
        lines.append("")
        lines.append(f"Done-when (default `{default}`): success@5 and MRR@10 >= max(bm25, dense): "
                     f"**{'holds' if report['done_when'] else 'does NOT hold'}**.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from core.settings import Settings

    defaults = Settings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True, help="JSONL corpus, or a folder of documents")
    p.add_argument("--chunking", choices=("sections", "flat"), default="flat",
                   help="folder corpus: one section per document (the builder's default), or split on headings")
    p.add_argument("--min-section-words", type=int, help="fold sections shorter than this into the next one")
    p.add_argument("--queries", type=Path, required=True)
    p.add_argument("--bundle-dir", type=Path, help="bundle to reuse (same corpus sha256) or build into")
    p.add_argument("--alphas", default="0.3,0.5,0.7", help="dense weights of convex fusion, comma-separated")
    p.add_argument("--norms", default="minmax", help="convex normalisations: minmax,tmm,zscore")
    p.add_argument("--dense-floor", type=float, default=0.0, help="cosine lower bound used by tmm")
    p.add_argument("--rrf-k", type=int, default=defaults.rrf_k)
    p.add_argument("--depth", type=int, default=defaults.fusion_depth)
    p.add_argument("--default", dest="default_run",
                   help=f"run checked by the done-when rule (default: the settings' {defaults.fusion_method}, "
                        f"alpha {defaults.convex_alpha}, min-max)")
    p.add_argument("--folds", type=int, default=2, help="cross-validation folds (0: none)")
    p.add_argument("--json", type=Path, help="write the full report as JSON")
    p.add_argument("--markdown", type=Path, help="write the tables as Markdown")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    from core.search import fusion
    from core.search.engine import SearchIndex

    alphas = parse_floats(args.alphas)
    norms = [n.strip() for n in args.norms.split(",") if n.strip()]
    if "minmax" not in norms:
        norms.insert(0, "minmax")
    bad = [n for n in norms if n not in fusion.NORMS]
    if bad or not alphas or any(not 0 <= a <= 1 for a in alphas) or args.depth < CUTOFF:
        p.error(f"bad --norms {bad} / --alphas / --depth (norms: {fusion.NORMS}; depth >= {CUTOFF})")
    queries = read_queries(args.queries)
    t0 = time.perf_counter()
    bundle_dir, how = ensure_bundle(args.corpus, args.bundle_dir, progress=not args.quiet, chunking=args.chunking,
                                    min_section_words=args.min_section_words)
    index = SearchIndex.load(bundle_dir, encoder_threads=1)
    from core.search.bundle import open_bundle

    store = open_bundle(bundle_dir, deep_verify=False).documents
    doc_ids = [store.doc_id(d) for d in range(len(store))]
    doc_pos = {d: i for i, d in enumerate(doc_ids)}
    unknown = sorted({r for q in queries for r in q["relevant"] if r not in doc_pos})
    if unknown:
        print(f"warning: {len(unknown)} judged ids are not in the corpus: {unknown[:5]}", file=sys.stderr)

    runs, agree = collect_rankings(index, queries, alphas=alphas, norms=norms, depth=args.depth,
                                   rrf_k=args.rrf_k, dense_floor=args.dense_floor, doc_pos=doc_pos,
                                   progress=not args.quiet)
    order = ["bm25", "dense", "rrf"] + [run_name("convex", a, n) for n in norms for a in alphas]
    runs = {r: runs[r] for r in order}
    overall = score_runs(runs, queries)

    default_run = args.default_run
    if default_run is None:
        default_run = ("rrf" if defaults.fusion_method == "rrf"
                       else run_name("convex", defaults.convex_alpha, "minmax"))
    if default_run not in runs:
        default_run = None
    main_runs = ["bm25", "dense", "rrf"]
    best_convex = max((r for r in order if r.startswith("convex")), key=lambda r: tune_objective(overall[r]))
    for r in (default_run, best_convex):
        if r and r not in main_runs:
            main_runs.append(r)
    kinds = sorted({q["kind"] for q in queries})
    by_kind = {r: {k: score_runs({r: runs[r]}, queries, [i for i, q in enumerate(queries) if q["kind"] == k])[r]
                   for k in kinds} for r in main_runs}
    done_when = None
    if default_run:
        d = overall[default_run]
        done_when = all(d[m] >= max(overall["bm25"][m], overall["dense"][m]) - 1e-12
                        for m in ("success@5", "mrr@10"))
    m = index.manifest
    report = {
        "n_queries": len(queries),
        "config": {"corpus": str(args.corpus), "corpus_sha256": sha256_of(args.corpus), "chunking": args.chunking,
                   "queries": str(args.queries), "bundle": how, "bundle_dir": str(bundle_dir),
                   "bundle_version": index.version, "encoder": m["encoder"].get("name"), "depth": args.depth,
                   "rrf_k": args.rrf_k, "alphas": alphas, "norms": norms, "dense_floor": args.dense_floor,
                   "folds": args.folds},
        "overall": overall,
        "engine_agreement": agree,
        "default_run": default_run,
        "best_convex_overall": best_convex,
        "done_when": done_when,
        "kind_counts": {k: sum(q["kind"] == k for q in queries) for k in kinds},
        "by_kind": by_kind,
        "folds": cross_validate(runs, queries, args.folds) if args.folds >= 2 else [],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    text = markdown(report)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
