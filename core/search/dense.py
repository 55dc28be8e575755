"""Exact dense search: cosine = dot product of L2-normalised float32 vectors.

The passage matrix is a float32 ``.npy`` opened with ``mmap_mode="r"``; a query
is one matrix-vector product. The query vector is forced to float32: a float64
vector would make numpy upcast the whole matrix on every query.

The product uses numpy's own single-threaded SIMD kernel (``einsum``) rather
than BLAS gemv (``matrix @ q``). At 100k x 384 both take ~7.7 ms (the product is
memory-bound: 154 MB read per query), but OpenBLAS's threaded gemv competes with
onnxruntime and with concurrent requests on 2 cores: measured in the full hybrid
search, p50 15-32 ms with BLAS against 14.2-14.8 ms with einsum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.artifacts import ArtifactError


class DenseIndex:
    kind = "exact"

    def __init__(self, matrix: np.ndarray) -> None:
        if matrix.dtype != np.float32 or matrix.ndim != 2:
            raise ArtifactError(f"embeddings must be a 2-d float32 matrix, not {matrix.dtype} {matrix.shape}")
        if not matrix.flags.c_contiguous:
            raise ArtifactError("embeddings must be C-contiguous")
        self.matrix = matrix
        self.size, self.dim = matrix.shape

    @classmethod
    def load(cls, path: Path, *, mmap: bool = True) -> "DenseIndex":
        try:
            matrix = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path}: not a readable .npy matrix ({exc})") from exc
        return cls(matrix)

    @staticmethod
    def save(path: Path, matrix: np.ndarray) -> None:
        np.save(path, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)

    def scores(self, query_vec: np.ndarray) -> np.ndarray:
        """Cosine similarity of the query with every passage (float32, shape (n,))."""
        q = np.asarray(query_vec, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query vector has {q.shape[0]} dims, index has {self.dim}")
        return np.einsum("ij,j->i", self.matrix, q)


def random_unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Benchmark stand-in for real embeddings: uniformly random unit vectors."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + len(block)] = block
    return out
