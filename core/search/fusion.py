"""Top-k selection, passage-to-document collapse and score fusion (pure numpy/Python).

Every ranked list here is a pair ``(ids, scores)`` of equal-length arrays, best
first. Ties are broken by the smaller id, so results are deterministic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Ranked = tuple[np.ndarray, np.ndarray]


def top_k(scores: np.ndarray, k: int, valid: np.ndarray | None = None) -> Ranked:
    """The ``k`` best entries of ``scores`` (restricted to ``valid`` when given), best first.

    Uses ``argpartition`` on the negated scores: fast even when most scores tie.
    """
    if valid is not None:
        cand = np.flatnonzero(valid)
        if cand.size == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype)
        sub = scores[cand]
    else:
        cand = None
        sub = scores
    m = sub.shape[0]
    k = min(k, m)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype)
    neg = -sub
    part = np.argpartition(neg, k - 1)[:k] if k < m else np.arange(m)
    # Order by score desc, then by position (smaller id first) for ties.
    order = np.lexsort((part, neg[part]))
    idx = part[order]
    ids = cand[idx] if cand is not None else idx
    return ids.astype(np.int64, copy=False), sub[idx]


def top_positions(scores: np.ndarray, want: int) -> np.ndarray:
    """Positions of the ``want`` largest scores, unordered (exact).

    On a large array, a threshold taken from a 1-in-16 sample keeps only the
    entries that can be in the top (~3x ``want`` expected), and ``argpartition``
    runs on those: ~0.1 ms instead of ~1 ms at 100k. If fewer than ``want``
    entries pass the threshold, the full ``argpartition`` answers instead, so the
    result is always an exact top set. (Negated scores: fast with many ties.)
    """
    m = scores.shape[0]
    if want >= m:
        return np.arange(m)
    if m >= 8192 and want * 64 <= m:
        sample = scores[::16]
        r = min(sample.shape[0] - 1, 3 * want // 16 + 1)
        pos = sample.shape[0] - 1 - r
        threshold = np.partition(sample, pos)[pos]
        cand = np.flatnonzero(scores >= threshold)
        if cand.shape[0] >= want:
            return cand[np.argpartition(-scores[cand], want - 1)[:want]]
    return np.argpartition(-scores, want - 1)[:want]


def top_docs(scores: np.ndarray, passage_doc: np.ndarray, k: int,
             candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best documents, a document scoring as its best passage.

    ``scores`` holds one score per passage, ``passage_doc`` the document of each
    passage; ``candidates`` (sorted passage indices) restricts the eligible
    passages. Returns ``(doc ids, doc scores, best passage of each doc)``, best
    first; ties go to the smaller passage index. Only the top passages are
    sorted: the top ``2k`` passages are taken, then more while they hold fewer
    than ``k`` distinct documents, so no full per-document pass is needed.
    """
    sub = scores if candidates is None else scores[candidates]
    m = sub.shape[0]
    if m == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype), np.zeros(0, dtype=np.int64)
    want = min(m, 2 * k)
    while True:
        part = top_positions(sub, want)
        idx = part[np.lexsort((part, -sub[part]))]
        pidx = idx if candidates is None else candidates[idx]
        docs = passage_doc[pidx]
        _, first = np.unique(docs, return_index=True)
        if first.shape[0] >= k or want >= m:
            break
        want = min(m, want * 4)
    first = np.sort(first)[:k]
    return docs[first].astype(np.int64), sub[idx[first]], pidx[first].astype(np.int64)


def doc_max(passage_scores: np.ndarray, doc_starts: np.ndarray) -> np.ndarray:
    """Per-document maximum of passage scores; documents own contiguous passage ranges.

    ``doc_starts`` holds the first passage of each document (length = doc count,
    strictly increasing, starting at 0).
    """
    return np.maximum.reduceat(passage_scores, doc_starts)


def rrf(lists: Sequence[Sequence[int]], k: int = 60) -> Ranked:
    """Reciprocal rank fusion: ``score(d) = sum over lists of 1 / (k + rank)``, rank 1-based."""
    if k < 0:
        raise ValueError("rrf k must be >= 0")
    fused: dict[int, float] = {}
    for ids in lists:
        for rank, d in enumerate(ids, start=1):
            d = int(d)
            fused[d] = fused.get(d, 0.0) + 1.0 / (k + rank)
    return _sorted(fused)


def minmax(scores: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1]; a list whose scores are all equal maps to 1."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    lo, hi = float(s.min()), float(s.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.ones_like(s)
    return (s - lo) / (hi - lo)


NORMS = ("minmax", "tmm", "zscore")
DENSE_FLOOR = 0.0  # theoretical lower bound used for the dense cosine by ``tmm`` (see ``normalise``)


def normalise(scores: np.ndarray, norm: str = "minmax", floor: float = 0.0) -> np.ndarray:
    """Per-query normalisation of one candidate list (the retriever's top ``depth`` scores).

    * ``minmax``: ``(s - min) / (max - min)`` over the list, in [0, 1]; all equal -> 1.
    * ``tmm`` ("theoretical min-max", Bruch et al. 2023): ``(s - floor) / (max - floor)``, the lower end
      a fixed bound of the score function instead of the list's own minimum (BM25: 0; cosine: the
      caller's floor), clipped at 0; a list whose max is at or below the floor maps to 1.
    * ``zscore``: ``(s - mean) / std`` over the list; a constant list maps to 0.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    if norm == "minmax":
        return minmax(s)
    if norm == "tmm":
        hi = float(s.max())
        if hi - floor <= 1e-12 * max(1.0, abs(hi)):
            return np.ones_like(s)
        return np.clip((s - floor) / (hi - floor), 0.0, None)
    if norm == "zscore":
        sd = float(s.std())
        if sd <= 1e-12 * max(1.0, abs(float(s.mean()))):
            return np.zeros_like(s)
        return (s - float(s.mean())) / sd
    raise ValueError(f"norm must be one of {', '.join(NORMS)}")


def convex(bm25: Ranked, dense: Ranked, alpha: float = 0.8, *, norm: str = "minmax",
           dense_floor: float = DENSE_FLOOR) -> Ranked:
    """``alpha * N(dense) + (1 - alpha) * N(bm25)`` with ``N`` = ``normalise(..., norm)``.

    A document absent from a list gets that list's floor: 0 for ``minmax`` and ``tmm`` (the list's
    minimum, resp. the theoretical minimum: BM25 0, cosine ``dense_floor``), and the list's lowest
    z-score for ``zscore``. The default (``minmax``) is the original behaviour.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must lie in [0, 1]")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}")
    lists = []
    for (ids, scores), weight, floor in ((bm25, 1.0 - alpha, 0.0), (dense, alpha, dense_floor)):
        normed = normalise(scores, norm, floor)
        missing = float(normed.min()) if (norm == "zscore" and normed.size) else 0.0
        lists.append((np.asarray(ids).tolist(), normed.tolist(), weight, missing))
    fused: dict[int, float] = {}
    for ids, normed, weight, _ in lists:
        for d, s in zip(ids, normed):
            fused[d] = fused.get(d, 0.0) + weight * s
    if any(missing for *_, missing in lists):
        for i, (ids, _, weight, missing) in enumerate(lists):
            present = set(ids)
            others = set().union(*(set(o[0]) for j, o in enumerate(lists) if j != i))
            for d in others - present:
                fused[d] += weight * missing
    return _sorted(fused)


def _sorted(fused: dict[int, float]) -> Ranked:
    if not fused:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    items = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
    return (np.fromiter((d for d, _ in items), dtype=np.int64, count=len(items)),
            np.fromiter((s for _, s in items), dtype=np.float64, count=len(items)))
