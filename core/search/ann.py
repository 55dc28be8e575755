"""Approximate dense search: a usearch HNSW graph over int8-quantised vectors, memory-mapped.

Chosen over faiss-cpu because usearch stores the quantised vectors inside the
graph file and serves it straight from an mmap (``Index.restore(path,
view=True)``): opening a 1M-passage index reads only the pages a query touches,
and the file is one artifact the manifest can hash. Settings and the
measurements behind them are in docs/search-engine.md.

Scores are cosines of the int8 vectors (``1 - distance``, metric ``cos``). The
build is single-threaded by default so that the file is byte-identical across
runs (parallel insertion orders the graph by thread timing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import ArtifactError

ANN_FILE = "dense/hnsw.usearch"
METRIC = "cos"
DTYPE = "i8"
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128
_ADD_BLOCK = 65536


def settings(**overrides: Any) -> dict[str, Any]:
    s = {"library": "usearch", "metric": METRIC, "dtype": DTYPE, "connectivity": CONNECTIVITY,
         "expansion_add": EXPANSION_ADD, "expansion_search": EXPANSION_SEARCH, "file": ANN_FILE}
    s.update(overrides)
    return s


def build(vectors: np.ndarray, path: Path, *, connectivity: int = CONNECTIVITY, expansion_add: int = EXPANSION_ADD,
          dtype: str = DTYPE, threads: int = 1, progress: bool = False) -> dict[str, Any]:
    """Index ``vectors`` (float32 (n, dim), may be a memmap) into ``path``; return its settings."""
    from usearch.index import Index

    n, dim = vectors.shape
    index = Index(ndim=dim, metric=METRIC, dtype=dtype, connectivity=connectivity, expansion_add=expansion_add)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="HNSW graph", unit="passage")
    for start in range(0, n, _ADD_BLOCK):
        block = np.ascontiguousarray(vectors[start:start + _ADD_BLOCK], dtype=np.float32)
        index.add(np.arange(start, start + len(block), dtype=np.uint64), block, threads=threads)
        if bar is not None:
            bar.update(len(block))
    if bar is not None:
        bar.close()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    index.save(str(path))
    return settings(connectivity=connectivity, expansion_add=expansion_add, dtype=dtype)


class AnnIndex:
    """Search side: the HNSW file viewed from an mmap (nothing is read up front)."""

    kind = "hnsw"

    def __init__(self, index, size: int, dim: int, expansion_search: int) -> None:
        self._index = index
        self.size = size
        self.dim = dim
        self.expansion_search = expansion_search

    @classmethod
    def load(cls, path: Path, *, dim: int, expansion_search: int = EXPANSION_SEARCH) -> "AnnIndex":
        from usearch.index import Index

        try:
            index = Index.restore(str(path), view=True)
        except Exception as exc:  # usearch raises RuntimeError/ValueError on a bad file
            raise ArtifactError(f"{path}: not a readable usearch index ({exc})") from exc
        if index is None:
            raise ArtifactError(f"{path}: not a usearch index")
        if int(index.ndim) != int(dim):
            raise ArtifactError(f"{path}: {index.ndim}-d index, expected {dim}")
        index.expansion_search = int(expansion_search)
        return cls(index, len(index), int(index.ndim), int(expansion_search))

    def search(self, query_vec: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` passages: (int64 ids, float32 cosines), best first."""
        q = np.asarray(query_vec, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query vector has {q.shape[0]} dims, index has {self.dim}")
        k = min(int(k), self.size)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self.expansion_search < k:
            # usearch needs ef >= k to return k results of good quality
            self._index.expansion_search = k
        m = self._index.search(q, k, threads=1)
        if self.expansion_search < k:
            self._index.expansion_search = self.expansion_search
        keys = np.asarray(m.keys, dtype=np.int64)
        scores = (1.0 - np.asarray(m.distances, dtype=np.float32)).astype(np.float32)
        return keys, scores

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 (len(ids), dim): the (dequantised) stored vectors of ``ids``."""
        ids = np.asarray(ids, dtype=np.uint64)
        if ids.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._index.get(ids, dtype=np.float32)
        return np.asarray(out, dtype=np.float32).reshape(len(ids), self.dim)

    def scores_of(self, query_vec: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Cosine of the query with the stored vectors of ``ids`` (for filters and snippets)."""
        v = self.vectors(ids)
        if v.size == 0:
            return np.zeros(0, dtype=np.float32)
        norms = np.linalg.norm(v, axis=1)
        norms[norms == 0] = 1.0
        q = np.asarray(query_vec, dtype=np.float32).reshape(-1)
        return (np.einsum("ij,j->i", v, q) / norms).astype(np.float32)
