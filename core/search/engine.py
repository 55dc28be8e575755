"""Hybrid search over a search-index bundle (or a small in-memory corpus).

Serving path: numpy, bm25s (mmap), onnxruntime + tokenizers. Never imports
torch, transformers or sentence_transformers.

A query is scored against every passage by BM25 and by the dense encoder;
each list is collapsed to documents (a document scores as its best passage),
filtered by metadata *before* top-k selection, cut to its top ``depth``
documents, and fused (``convex`` or ``rrf``); ``bm25`` and ``dense`` return
one list alone. Each hit is one document, with its best passage as snippet:
for bm25/dense the document's best passage in that list, for rrf the best
passage of the list in which the document ranks higher, for convex the passage
with the best convex combination of its two min-max-normalised scores.

Scores: convex in [0, 1]; rrf the sum of 1/(rrf_k + rank); bm25 the bm25s
robertson score (rank-bm25's BM25Okapi / (k1 + 1)); dense the cosine.
A BM25 list holds only documents with a positive score (a query term present).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import ArtifactError
from core.search import fusion
from core.search.bm25 import BM25Index
from core.search.ann import AnnIndex
from core.search.bundle import (FORMAT_VERSION, KIND, Chunked, DocumentError, chunk_documents, open_bundle,
                                validate_document, write_documents)
from core.search.dense import DenseIndex
from core.search.docstore import DocStore
from core.search.encoder import QueryEncoder
from core.search.text import DEFAULT_TOKENIZER, MAX_WORDS, OVERLAP, TextTokenizer, snippet

log = logging.getLogger(__name__)

METHODS = ("convex", "rrf", "bm25", "dense")
SNIPPET_CHARS = 300


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    title: str
    url: str
    snippet: str
    score: float
    bm25_rank: int | None
    dense_rank: int | None
    metadata: dict


class SearchIndex:
    version: str
    manifest: dict
    doc_count: int
    passage_count: int
    encoder: QueryEncoder

    def __init__(self, *, manifest: dict, documents: DocStore, bm25: BM25Index,
                 dense: DenseIndex | AnnIndex, encoder: QueryEncoder) -> None:
        self.manifest = manifest
        self.version = str(manifest["version"])
        self.doc_count = len(documents)
        self.passage_count = dense.size
        self.encoder = encoder
        self.dense_kind = dense.kind
        self._docs = documents
        self._bm25 = bm25
        self._dense = dense
        self._starts = documents.starts
        self._ends = documents.ends
        self._passage_doc = documents.passage_doc()

    # ----------------------------------------------------------------------- loading
    @classmethod
    def load(cls, bundle_dir: Path, *, encoder_threads: int = 1, deep_verify: bool = True,
             ef_search: int | None = None) -> "SearchIndex":
        """Map a bundle; ``ef_search`` overrides the HNSW beam width its manifest records."""
        t0 = time.perf_counter()
        bundle_dir = Path(bundle_dir)
        parts = open_bundle(bundle_dir, deep_verify=deep_verify)
        m = parts.manifest
        passage_count = int(m["passage_count"])
        try:
            tokenizer = TextTokenizer.from_settings(m["bm25"]["tokenizer"])
        except (KeyError, TypeError, ValueError, ImportError) as exc:
            raise ArtifactError(f"{bundle_dir}: unusable BM25 tokenizer settings ({exc})") from exc
        try:
            bm25 = BM25Index.load(parts.bm25_dir, tokenizer, mmap=True)
        except Exception as exc:  # bm25s raises whatever numpy/json raise on a bad file
            raise ArtifactError(f"{bundle_dir}: cannot load the BM25 index ({type(exc).__name__}: {exc})") from exc
        if bm25.size != passage_count or bm25.method != m["bm25"].get("method"):
            raise ArtifactError(f"{bundle_dir}: BM25 index ({bm25.method}, {bm25.size} passages) does not "
                                f"match the manifest")
        dim = int(m["encoder"]["dim"])
        if parts.dense["kind"] == "hnsw":
            ef = ef_search if ef_search is not None else parts.dense.get("hnsw", {}).get("ef_search", 128)
            dense = AnnIndex.load(parts.dense_path, dim=dim, ef_search=int(ef))
        else:
            dense = DenseIndex.load(parts.dense_path, mmap=True)
        if dense.size != passage_count or dense.dim != dim:
            raise ArtifactError(f"{bundle_dir}: {dense.kind} dense index is ({dense.size}, {dense.dim}), "
                                f"manifest says ({passage_count}, {dim})")
        encoder = QueryEncoder.load(parts.encoder_dir, threads=encoder_threads)
        if encoder.dim != dense.dim or encoder.name != m["encoder"].get("name"):
            raise ArtifactError(f"{bundle_dir}: encoder {encoder.name} ({encoder.dim}-d) is not the one "
                                f"that embedded the passages")
        index = cls(manifest=m, documents=parts.documents, bm25=bm25, dense=dense, encoder=encoder)
        log.info("search index %s loaded from %s: %d documents, %d passages in %.2fs", index.version, bundle_dir,
                 index.doc_count, index.passage_count, time.perf_counter() - t0)
        return index

    @classmethod
    def from_documents(cls, docs: list[dict], encoder: QueryEncoder, *, version: str = "memory") -> "SearchIndex":
        """An in-memory index of a small corpus, embedded with ``encoder``. Raises ValueError on bad docs."""
        normalised: list[dict] = []
        seen: set[str] = set()
        for i, raw in enumerate(docs):
            try:
                d = validate_document(raw)
            except DocumentError as exc:
                raise DocumentError(f"document #{i}: {exc}") from None
            if d["id"] in seen:
                raise DocumentError(f"document #{i}: duplicate id {d['id']!r}")
            seen.add(d["id"])
            normalised.append(d)
        if not normalised:
            raise DocumentError("no documents")
        chunked: Chunked = chunk_documents(normalised)
        bm25 = BM25Index.build(chunked.index_texts, DEFAULT_TOKENIZER)
        dense = DenseIndex(np.ascontiguousarray(encoder.encode(chunked.index_texts), dtype=np.float32))
        manifest = {
            "kind": KIND, "format_version": FORMAT_VERSION, "version": version, "in_memory": True,
            "doc_count": len(normalised), "passage_count": len(chunked.passages),
            "encoder": {k: encoder.config.get(k) for k in ("name", "dim", "max_seq_length", "source_package",
                                                           "source_package_version", "fingerprint")},
            "bm25": bm25.settings(), "chunking": {"max_words": MAX_WORDS, "overlap": OVERLAP},
            "dense": {"kind": "exact"},
        }
        with tempfile.TemporaryDirectory(prefix="searchindex-") as tmp:
            write_documents(Path(tmp), normalised, chunked)
            store = DocStore(Path(tmp), doc_count=len(normalised), passage_count=len(chunked.passages),
                             in_memory=True)
        return cls(manifest=manifest, documents=store, bm25=bm25, dense=dense, encoder=encoder)

    # ----------------------------------------------------------------------- search
    def search(self, query: str, top_k: int = 10, *, filters: dict | None = None, method: str = "convex",
               depth: int = 100, rrf_k: int = 60, alpha: float = 0.8,
               query_vector: np.ndarray | None = None) -> list[Hit]:
        """Top ``top_k`` documents for ``query``; ``query_vector`` (the encoder's vector of
        ``query``, e.g. precomputed by a benchmark) skips the encoding."""
        if not isinstance(query, str):
            raise TypeError("query must be a string")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        if int(top_k) < 1 or int(depth) < 1:
            raise ValueError("top_k and depth must be positive")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError("alpha must lie in [0, 1]")
        if rrf_k < 0:
            raise ValueError("rrf_k must be >= 0")
        top_k = int(top_k)
        depth = max(int(depth), top_k)
        if not query.strip():
            return []
        valid = self._docs.mask(filters) if filters else None
        if valid is not None and not valid.any():
            return []

        empty = np.zeros(0, dtype=np.int64)
        b_pass = d_pass = None
        b_ids = d_ids = b_best = d_best = empty
        b_scores = d_scores = np.zeros(0, dtype=np.float32)
        valid_passages = valid[self._passage_doc] if valid is not None else None
        if method != "dense":
            b_pass = self._bm25.scores(query)
            if b_pass is not None:
                hit = b_pass > 0
                if valid_passages is not None:
                    hit &= valid_passages
                b_ids, b_scores, b_best = fusion.top_docs(b_pass, self._passage_doc, depth, np.flatnonzero(hit))
        if method != "bm25":
            q = self.encoder.encode([query])[0] if query_vector is None else query_vector
            if self.dense_kind == "exact":
                d_pass = self._dense.scores(q)
                cand = np.flatnonzero(valid_passages) if valid_passages is not None else None
                d_ids, d_scores, d_best = fusion.top_docs(d_pass, self._passage_doc, depth, cand)
            else:
                d_ids, d_scores, d_best = self._ann_docs(q, depth, valid_passages)
                d_pass = _AnnScores(self._dense, q)

        if method == "bm25":
            ids, scores = b_ids, b_scores
        elif method == "dense":
            ids, scores = d_ids, d_scores
        elif method == "rrf":
            ids, scores = fusion.rrf([b_ids, d_ids], k=rrf_k)
        else:
            ids, scores = fusion.convex((b_ids, b_scores), (d_ids, d_scores), alpha)

        b_rank = {d: r for r, d in enumerate(b_ids.tolist(), start=1)}
        d_rank = {d: r for r, d in enumerate(d_ids.tolist(), start=1)}
        hits: list[Hit] = []
        for d, s in zip(ids[:top_k].tolist(), scores[:top_k].tolist()):
            br, dr = b_rank.get(d), d_rank.get(d)
            if method == "rrf":
                use_bm25 = br is not None and (dr is None or br <= dr)
                p = int(b_best[br - 1]) if use_bm25 else int(d_best[dr - 1])
            elif method == "bm25":
                p = int(b_best[br - 1])
            elif method == "dense":
                p = int(d_best[dr - 1])
            else:
                p = self._convex_passage(d, b_pass, d_pass, _range(b_scores), _range(d_scores), alpha)
            doc_id, title, url = self._docs.document(d)
            hits.append(Hit(id=doc_id, title=title, url=url,
                            snippet=snippet(self._docs.text(p), SNIPPET_CHARS), score=float(s),
                            bm25_rank=br, dense_rank=dr, metadata=self._docs.metadata(d)))
        return hits

    def _ann_docs(self, q: np.ndarray, depth: int, valid_passages: np.ndarray | None):
        """Top ``depth`` documents from the HNSW index (a document scores as its best passage).

        Ask for ``2 * depth`` passages, more while they hold fewer than ``depth`` documents.
        Filtered: when few passages pass the filter, score them all exactly against their
        stored vectors; otherwise the graph search itself keeps only passing passages.
        """
        n = self.passage_count
        if valid_passages is not None:
            n = int(np.count_nonzero(valid_passages))
            if n <= ANN_FILTER_EXACT:
                cand = np.flatnonzero(valid_passages)
                return _top_docs_of(self._dense.scores_of(q, cand), cand, self._passage_doc, depth)
        want = min(n, 2 * depth)
        while True:
            keys, scores = self._dense.search(q, want, allowed=valid_passages)
            docs = self._passage_doc[keys]
            _, first = np.unique(docs, return_index=True)
            if first.shape[0] >= depth or want >= min(n, ANN_MAX_FETCH):
                break
            want = min(n, ANN_MAX_FETCH, want * 4)
        first = np.sort(first)[:depth]
        return docs[first].astype(np.int64), scores[first], keys[first]

    def _convex_passage(self, d: int, b_pass, d_pass, b_range, d_range, alpha: float) -> int:
        """The passage of document ``d`` with the best convex combination of its two
        normalised passage scores (same min-max ranges as the document lists)."""
        s, e = int(self._starts[d]), int(self._ends[d])
        if e - s == 1:
            return s
        combined = np.zeros(e - s, dtype=np.float64)
        if b_pass is not None and b_range is not None:
            combined += (1.0 - alpha) * _norm(b_pass[s:e], *b_range)
        if d_pass is not None and d_range is not None:
            combined += alpha * _norm(d_pass[s:e], *d_range)
        return s + int(np.argmax(combined))

    @property
    def tokenizer(self) -> TextTokenizer:
        """The BM25 tokenizer this bundle was built with (its manifest's settings)."""
        return self._bm25.tokenizer

    def info(self) -> dict[str, Any]:
        """A short description for health endpoints and logs."""
        return {"version": self.version, "doc_count": self.doc_count, "passage_count": self.passage_count,
                "encoder": self.encoder.name, "bm25": self._bm25.method, "dense": self.dense_kind}


ANN_FILTER_EXACT = 20_000   # filtered HNSW queries with at most this many passages score them all
ANN_MAX_FETCH = 8192        # the most passages one HNSW query fetches


class _AnnScores:
    """``scores[s:e]`` of an HNSW index: the cosines of the stored vectors of those passages."""

    def __init__(self, ann: AnnIndex, q: np.ndarray) -> None:
        self._ann, self._q = ann, q

    def __getitem__(self, sl: slice) -> np.ndarray:
        return self._ann.scores_of(self._q, np.arange(sl.start, sl.stop, dtype=np.int64))


def _top_docs_of(scores: np.ndarray, cand: np.ndarray, passage_doc: np.ndarray, depth: int):
    ids, sc, best = fusion.top_docs(scores, passage_doc[cand], depth)
    return ids, sc, cand[best]


def _range(scores: np.ndarray) -> tuple[float, float] | None:
    if scores.size == 0:
        return None
    return float(scores.min()), float(scores.max())


def _norm(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    v = values.astype(np.float64)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return (v >= lo).astype(np.float64)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0)
