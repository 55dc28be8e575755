"""BM25 over passages with bm25s (``method="robertson"``: ranks like rank-bm25's BM25Okapi).

Queries are scored with ``get_scores_from_ids`` over the whole (mmap'd) index;
top-k selection is done by the caller with ``argpartition`` on negated scores,
which stays fast when most scores tie at zero (bm25s' own ``retrieve`` does not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.search.text import TextTokenizer

METHOD = "robertson"
K1 = 1.5
B = 0.75


class BM25Index:
    def __init__(self, retriever, tokenizer: TextTokenizer) -> None:
        self._r = retriever
        self.tokenizer = tokenizer
        self.size = int(retriever.scores["num_docs"])
        self._vocab: dict[str, int] = retriever.vocab_dict

    @classmethod
    def build(cls, texts: list[str], tokenizer: TextTokenizer, *, k1: float = K1, b: float = B,
              progress: bool = False) -> "BM25Index":

        return cls.build_from_tokens([tokenizer(t) for t in texts], tokenizer, k1=k1, b=b, progress=progress)

    @classmethod
    def build_from_tokens(cls, tokens: list[list[str]], tokenizer: TextTokenizer, *, k1: float = K1, b: float = B,
                          progress: bool = False) -> "BM25Index":
        acc = TokenAccumulator()
        for doc in tokens:
            acc.add(doc)
        return acc.build(tokenizer, k1=k1, b=b, progress=progress)

    def save(self, directory: Path) -> None:
        self._r.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, tokenizer: TextTokenizer, *, mmap: bool = True) -> "BM25Index":
        import bm25s

        retriever = bm25s.BM25.load(str(directory), mmap=mmap, show_progress=False)
        return cls(retriever, tokenizer)

    def settings(self) -> dict[str, Any]:
        return {"library": "bm25s", "method": self._r.method, "idf_method": self._r.idf_method,
                "k1": float(self._r.k1), "b": float(self._r.b), "tokenizer": self.tokenizer.settings(),
                "vocab_size": len(self._vocab)}

    @property
    def method(self) -> str:
        return self._r.method

    def token_ids(self, query: str) -> list[int]:
        vocab = self._vocab
        return [vocab[t] for t in self.tokenizer(query) if t in vocab]

    def scores(self, query: str) -> np.ndarray | None:
        """float32 BM25 score of every passage, or None when no query term is in the index."""
        ids = self.token_ids(query)
        if not ids:
            return None
        return self._r.get_scores_from_ids(ids)


class TokenAccumulator:
    """Passage tokens as flat int32 ids (first-seen numbering) for a streaming build.

    ``build`` renumbers terms in sorted order, so the index files are byte-identical
    across runs (bm25s' own ``index`` numbers terms in the iteration order of a
    Python set, which depends on ``PYTHONHASHSEED``).
    """

    def __init__(self) -> None:
        from array import array

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

    def build(self, tokenizer: TextTokenizer, *, k1: float = K1, b: float = B, progress: bool = False) -> BM25Index:
        import bm25s

        terms = sorted(self._vocab)
        rank = np.empty(len(terms), dtype=np.int32)
        for new, t in enumerate(terms):
            rank[self._vocab[t]] = new
        self._vocab = {}
        flat = rank[np.frombuffer(self._ids, dtype=np.int32)] if len(self._ids) else np.zeros(0, dtype=np.int32)
        bounds = np.cumsum(np.frombuffer(self._lengths, dtype=np.int32))[:-1]
        ids = [a.tolist() for a in np.split(flat, bounds)]
        del flat
        vocab = {t: i for i, t in enumerate(terms)}
        retriever = bm25s.BM25(method=METHOD, k1=k1, b=b)
        retriever.index((ids, vocab), show_progress=progress)
        return BM25Index(retriever, tokenizer)
