"""BM25 over passages: built with bm25s (``method="robertson"``: ranks like rank-bm25's
BM25Okapi), served by a small numpy reader of bm25s' files.

Build: bm25s computes every (term, passage) score into a CSC matrix
(``data``/``indices``/``indptr`` ``.npy``). Term ids follow the sorted vocabulary,
so the files are byte-identical across runs (bm25s' own ``index`` numbers terms in
the iteration order of a Python set, which depends on ``PYTHONHASHSEED``), and the
sorted terms are also written as a UTF-8 blob with offsets (``terms.bin``,
``terms.idx.npy``).

Serve: the three arrays are memory-mapped, a query token is found by binary search
in the sorted terms blob (no vocabulary dict to parse: at 1M passages bm25s' load,
JSON vocabulary plus its scipy import, took ~4 s), and a query's scores are the sum
of its terms' columns, in query order (``scores[idx] += data``, what bm25s'
``get_scores_from_ids`` computes). Top-k selection is left to the caller.
"""

from __future__ import annotations

import json
import mmap
import os
import tempfile
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import ArtifactError
from core.search.text import TextTokenizer

METHOD = "robertson"
K1 = 1.5
B = 0.75
TERMS_BIN = "terms.bin"
VOCAB_JSON = "vocab.index.json"   # written by bm25s' save, removed
TERMS_IDX = "terms.idx.npy"
PARAMS = "params.index.json"
ARRAYS = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy")


class BM25Index:
    """Read side of a saved index (see the module docstring)."""

    def __init__(self, *, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, terms_blob,
                 terms_idx: np.ndarray, params: dict, tokenizer: TextTokenizer) -> None:
        self._data, self._indices, self._indptr = data, indices, indptr
        self._blob, self._tidx = terms_blob, terms_idx
        self._params = params
        self.tokenizer = tokenizer
        self.size = int(params["num_docs"])
        self.vocab_size = int(terms_idx.shape[0] - 1)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, texts: list[str], tokenizer: TextTokenizer, *, k1: float = K1, b: float = B) -> "BM25Index":
        """An in-memory index of ``texts`` (small corpora; bundles use ``TokenAccumulator``)."""
        acc = TokenAccumulator()
        for t in texts:
            acc.add(tokenizer(t))
        with tempfile.TemporaryDirectory(prefix="bm25-") as tmp:
            acc.write(Path(tmp), tokenizer, k1=k1, b=b)
            return cls.load(Path(tmp), tokenizer, mmap=False)

    # ------------------------------------------------------------------ load
    @classmethod
    def load(cls, directory: Path, tokenizer: TextTokenizer, *, mmap: bool = True) -> "BM25Index":
        directory = Path(directory)
        mode = "r" if mmap else None
        try:
            params = json.loads((directory / PARAMS).read_text(encoding="utf-8"))
            data, indices, indptr = (np.load(directory / name, mmap_mode=mode, allow_pickle=False) for name in ARRAYS)
            terms_idx = np.load(directory / TERMS_IDX, allow_pickle=False)
            blob = _read_blob(directory / TERMS_BIN, mmap)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{directory}: unreadable BM25 index ({type(exc).__name__}: {exc})") from exc
        n = int(params.get("num_docs", -1))
        if (data.ndim != 1 or indices.shape != data.shape or indptr.ndim != 1 or indptr.shape[0] < 2
                or int(indptr[-1]) != data.shape[0] or int(indptr[0]) != 0):
            raise ArtifactError(f"{directory}: BM25 arrays do not form a CSC matrix")
        if terms_idx.dtype not in (np.uint32, np.int64) or terms_idx.ndim != 1 or int(terms_idx[-1]) != len(blob) \
                or terms_idx.shape[0] - 1 > indptr.shape[0] - 1:
            raise ArtifactError(f"{directory}: {TERMS_IDX} does not index {TERMS_BIN} / the CSC columns")
        if n <= 0:
            raise ArtifactError(f"{directory}: BM25 index of {n} passages")
        return cls(data=data, indices=indices, indptr=indptr, terms_blob=blob, terms_idx=terms_idx, params=params,
                   tokenizer=tokenizer)

    def settings(self) -> dict[str, Any]:
        p = self._params
        return {"library": "bm25s", "method": p["method"], "idf_method": p.get("idf_method"), "k1": float(p["k1"]),
                "b": float(p["b"]), "tokenizer": self.tokenizer.settings(), "vocab_size": self.vocab_size,
                "term_ids": "sorted"}

    @property
    def method(self) -> str:
        return str(self._params["method"])

    # ------------------------------------------------------------------ query
    def _term(self, i: int) -> bytes:
        return self._blob[int(self._tidx[i]):int(self._tidx[i + 1])]

    def term_id(self, term: str) -> int | None:
        key = term.encode("utf-8")
        lo, hi = 0, self.vocab_size
        while lo < hi:
            mid = (lo + hi) // 2
            if self._term(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < self.vocab_size and self._term(lo) == key else None

    def token_ids(self, query: str) -> list[int]:
        return [i for i in (self.term_id(t) for t in self.tokenizer(query)) if i is not None]

    def scores(self, query: str) -> np.ndarray | None:
        """float32 BM25 score of every passage, or None when no query term is in the index."""
        ids = self.token_ids(query)
        if not ids:
            return None
        out = np.zeros(self.size, dtype=np.float32)
        for t in ids:
            s, e = int(self._indptr[t]), int(self._indptr[t + 1])
            out[self._indices[s:e]] += self._data[s:e]
        return out


def _read_blob(path: Path, use_mmap: bool):
    if not use_mmap or os.path.getsize(path) == 0:
        return path.read_bytes()
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


class TokenAccumulator:
    """Passage tokens as flat int32 ids (first-seen numbering) for a streaming build."""

    def __init__(self) -> None:
        self._vocab: dict[str, int] = {}
        self._ids = array("i")
        self._lengths = array("i")

    def add(self, tokens: list[str]) -> None:
        vocab = self._vocab
        for t in tokens:
            i = vocab.get(t)
            if i is None:
                i = vocab[t] = len(vocab)
            self._ids.append(i)
        self._lengths.append(len(tokens))

    def __len__(self) -> int:
        return len(self._lengths)

    def write(self, directory: Path, tokenizer: TextTokenizer, *, k1: float = K1, b: float = B,
              progress: bool = False) -> dict[str, Any]:
        """Index the passages with bm25s, term ids in sorted order; save; return the settings."""
        import bm25s

        terms = sorted(self._vocab)
        rank = np.empty(len(terms), dtype=np.int32)
        for new, t in enumerate(terms):
            rank[self._vocab[t]] = new
        self._vocab = {}
        flat = rank[np.frombuffer(self._ids, dtype=np.int32)] if len(self._ids) else np.zeros(0, dtype=np.int32)
        self._ids = array("i")
        bounds = np.cumsum(np.frombuffer(self._lengths, dtype=np.int32))[:-1]
        ids = [a.tolist() for a in np.split(flat, bounds)]
        del flat
        vocab = {t: i for i, t in enumerate(terms)}
        retriever = bm25s.BM25(method=METHOD, k1=k1, b=b)
        retriever.index((ids, vocab), show_progress=progress)
        del ids
        directory = Path(directory)
        retriever.save(str(directory), show_progress=False)
        # bm25s' JSON vocabulary is not read back (the sorted terms blob below replaces it) and is
        # ~15 MB at 1M passages, downloaded at every cold start: drop it.
        (directory / VOCAB_JSON).unlink(missing_ok=True)
        offsets = np.zeros(len(terms) + 1, dtype=np.int64)   # saved as uint32 below while the blob is < 4 GiB
        with open(directory / TERMS_BIN, "wb") as fh:
            pos = 0
            for i, t in enumerate(terms):
                data = t.encode("utf-8")
                fh.write(data)
                pos += len(data)
                offsets[i + 1] = pos
        np.save(directory / TERMS_IDX, offsets.astype(np.uint32) if offsets[-1] < 2**32 else offsets,
                allow_pickle=False)
        return {"library": "bm25s", "method": retriever.method, "idf_method": retriever.idf_method,
                "k1": float(retriever.k1), "b": float(retriever.b), "tokenizer": tokenizer.settings(),
                "vocab_size": len(terms), "term_ids": "sorted"}
