"""Approximate dense search: a faiss HNSW graph over 8-bit scalar-quantised vectors, mmap'd.

``faiss.IndexHNSWSQ(dim, QT_8bit, M, METRIC_INNER_PRODUCT)``: each vector is stored
once, as 8-bit codes with a per-dimension range trained on the corpus, and the
graph's distances are computed on those codes. Read with
``faiss.IO_FLAG_MMAP_IFC``: the codes (the bulk of the file) stay in the page
cache and are never copied into the process.

Chosen by measurement on real embeddings (docs/search-engine.md): usearch's i8
(a fixed x127 cast of the unit vector) plateaued at recall@10 ~0.95 against exact
float search whatever the beam width, because its quantisation error (~0.02 in
cosine) reorders close neighbours; its f16 storage reaches 0.98 but would not fit
the bundle budget at 1M (768 MB of vectors). faiss' trained 8-bit codes err by
~0.002 in cosine, so the scores it returns are, in effect, exactly re-scored,
and recall is bounded only by the graph search (``efSearch``).

Graph settings (measured on real packages-corpus embeddings, docs/search-engine.md):
``M = 10`` with ``efConstruction = 200`` recalls as well as ``M = 16`` with 128
(0.990 against 0.989 recall@10 at 50k, efSearch 256) in 80 bytes of links a
vector at level 0 instead of 128, which is what keeps a 1M-passage bundle under
700 MB. ``efSearch`` defaults to 256; the engine asks for ``2 * depth`` = 200
passages a query, and faiss searches with ``max(efSearch, k)``. A bundle's
``ef_search`` can be overridden at load time (``SearchIndex.load(ef_search=)``)
to trade recall for latency without a rebuild.

Scores are inner products = cosines (vectors are L2-normalised). The build is
single-threaded by default, which makes the file byte-identical across runs;
``threads > 1`` (``--ann-threads``) builds faster but not reproducibly.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import ArtifactError

ANN_FILE = "dense/hnsw.faiss"
M = 10
EF_CONSTRUCTION = 200
EF_SEARCH = 256
_ADD_BLOCK = 65536
_faiss_lock = threading.Lock()


def _faiss():
    import faiss

    with _faiss_lock:
        # One OpenMP thread per search: the caller decides the concurrency, and
        # onnxruntime (and other requests) share the same 2 cores.
        if faiss.omp_get_max_threads() != 1:
            faiss.omp_set_num_threads(1)
    return faiss


def settings(**overrides: Any) -> dict[str, Any]:
    s = {"library": "faiss", "index": "IndexHNSWSQ", "quantizer": "QT_8bit", "metric": "inner_product",
         "M": M, "ef_construction": EF_CONSTRUCTION, "ef_search": EF_SEARCH, "file": ANN_FILE}
    s.update(overrides)
    return s


def build(vectors: np.ndarray, path: Path, *, m: int = M, ef_construction: int = EF_CONSTRUCTION,
          ef_search: int = EF_SEARCH, threads: int = 1, progress: bool = False) -> dict[str, Any]:
    """Index ``vectors`` (float32 (n, dim), L2-normalised, may be a memmap) into ``path``; return its settings."""
    faiss = _faiss()
    n, dim = vectors.shape
    index = faiss.IndexHNSWSQ(int(dim), faiss.ScalarQuantizer.QT_8bit, int(m), faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(ef_construction)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="HNSW graph", unit="passage")
    faiss.omp_set_num_threads(max(1, int(threads)))
    try:
        # QT_8bit trains a min/max per dimension: one streaming pass over every vector.
        lo = np.full(dim, np.inf, dtype=np.float32)
        hi = np.full(dim, -np.inf, dtype=np.float32)
        for start in range(0, n, _ADD_BLOCK):
            block = np.asarray(vectors[start:start + _ADD_BLOCK], dtype=np.float32)
            lo = np.minimum(lo, block.min(axis=0))
            hi = np.maximum(hi, block.max(axis=0))
        index.train(np.vstack([lo, hi]))
        for start in range(0, n, _ADD_BLOCK):
            block = np.ascontiguousarray(vectors[start:start + _ADD_BLOCK], dtype=np.float32)
            index.add(block)
            if bar is not None:
                bar.update(len(block))
    finally:
        faiss.omp_set_num_threads(1)
        if bar is not None:
            bar.close()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))
    return settings(M=int(m), ef_construction=int(ef_construction), ef_search=int(ef_search))


class AnnIndex:
    """Search side: the HNSW graph in memory, the 8-bit codes memory-mapped."""

    kind = "hnsw"

    def __init__(self, index, ef_search: int) -> None:
        self._index = index
        self.size = int(index.ntotal)
        self.dim = int(index.d)
        self.ef_search = int(ef_search)

    @classmethod
    def load(cls, path: Path, *, dim: int, ef_search: int = EF_SEARCH) -> "AnnIndex":
        faiss = _faiss()
        flags = getattr(faiss, "IO_FLAG_MMAP_IFC", 0) or faiss.IO_FLAG_MMAP
        try:
            index = faiss.read_index(str(path), flags | faiss.IO_FLAG_READ_ONLY)
        except Exception as exc:  # faiss raises RuntimeError on a bad or truncated file
            raise ArtifactError(f"{path}: not a readable faiss index ({str(exc).splitlines()[0][:200]})") from exc
        if not hasattr(index, "hnsw") or int(index.d) != int(dim):
            raise ArtifactError(f"{path}: not a {dim}-d HNSW index")
        return cls(index, ef_search)

    def search(self, query_vec: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` passages: (int64 ids, float32 cosines), best first.

        ``allowed`` (bool, one per passage) restricts the results to those passages inside
        the graph search (a faiss ``IDSelectorBitmap``): the graph is still walked through
        the others, so a filter costs a wider walk, not a post-filtered over-fetch."""
        faiss = _faiss()
        q = np.ascontiguousarray(np.asarray(query_vec, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise ValueError(f"query vector has {q.shape[1]} dims, index has {self.dim}")
        k = min(int(k), self.size)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, k)
        if allowed is not None:
            if allowed.shape != (self.size,):
                raise ValueError(f"allowed has shape {allowed.shape}, index has {self.size} passages")
            bits = np.packbits(allowed, bitorder="little")   # faiss reads bit i as (b[i >> 3] >> (i & 7)) & 1
            selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bits))
            params.sel = selector
        dist, ids = self._index.search(q, k, params=params)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), dist[0][keep].astype(np.float32)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 (len(ids), dim): the decoded 8-bit vectors of ``ids``."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(ids)

    def scores_of(self, query_vec: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Cosine of the query with the decoded vectors of ``ids`` (filters, snippets)."""
        v = self.vectors(ids)
        if v.size == 0:
            return np.zeros(0, dtype=np.float32)
        return np.einsum("ij,j->i", v, np.asarray(query_vec, dtype=np.float32).reshape(-1))
