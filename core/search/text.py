"""Text handling shared by the build and the serving path: BM25 tokenisation,
passage chunking and snippets. Pure Python; no heavy imports.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

# Lucene's English stop-word list (the one bm25s ships as STOPWORDS_EN), kept here
# so that a library update cannot change the tokens of an existing bundle.
STOPWORDS_EN = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this",
    "to", "was", "will", "with",
))
STOPWORD_LISTS = {"en": STOPWORDS_EN, "none": frozenset()}

# Runs of letters or digits: punctuation and underscores separate words.
TOKEN_PATTERN = r"[^\W_]+"
_TOKEN_RE = re.compile(TOKEN_PATTERN)


@dataclass(frozen=True)
class TextTokenizer:
    """Lower-cased word tokens for BM25, minus stop-words, optionally stemmed.

    Defaults (English stop-words + Snowball English stemmer) were chosen by
    measurement on the pydocs corpus, see docs/search-engine.md.

    The settings are recorded in the bundle manifest and the serving side
    rebuilds the same tokenizer from them (:meth:`from_settings`).
    """

    stopwords: str = "en"
    stemmer: str | None = "english"  # a PyStemmer algorithm name, or None

    def __post_init__(self) -> None:
        if self.stopwords not in STOPWORD_LISTS:
            raise ValueError(f"unknown stop-word list {self.stopwords!r}")
        object.__setattr__(self, "_stop", STOPWORD_LISTS[self.stopwords])
        object.__setattr__(self, "_local", threading.local())
        if self.stemmer:
            self._get_stemmer()  # fail early when PyStemmer is missing

    def _get_stemmer(self):
        # PyStemmer's Stemmer objects are not thread-safe: one per thread.
        st = getattr(self._local, "stemmer", None)
        if st is None:
            import Stemmer  # PyStemmer

            st = self._local.stemmer = Stemmer.Stemmer(self.stemmer)
        return st

    def settings(self) -> dict[str, Any]:
        return {"lowercase": True, "pattern": TOKEN_PATTERN, "stopwords": self.stopwords,
                "stemmer": self.stemmer}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "TextTokenizer":
        if settings.get("pattern", TOKEN_PATTERN) != TOKEN_PATTERN or not settings.get("lowercase", True):
            raise ValueError(f"unsupported tokenizer settings {settings!r}")
        return cls(stopwords=settings["stopwords"], stemmer=settings["stemmer"])

    def __call__(self, text: str) -> list[str]:
        stop = self._stop
        words = [w for w in _TOKEN_RE.findall(text.lower()) if w not in stop]
        if self.stemmer and words:
            words = self._get_stemmer().stemWords(words)
        return words


DEFAULT_TOKENIZER = TextTokenizer()


# ---------------------------------------------------------------------------- passages
MAX_WORDS = 200
OVERLAP = 40


def split_passages(text: str, max_words: int = MAX_WORDS, overlap: int = OVERLAP) -> list[str]:
    """Split ``text`` into windows of ``max_words`` whitespace-separated words.

    Consecutive windows share ``overlap`` words. A text of at most ``max_words``
    words is one passage (its original whitespace kept). A last window that would
    add fewer than ``overlap`` new words is merged into the previous one, so a
    passage has at most ``max_words + overlap`` words and no passage is a sliver.
    """
    if not 0 <= overlap < max_words:
        raise ValueError("need 0 <= overlap < max_words")
    words = text.split()
    n = len(words)
    if n <= max_words:
        return [text.strip()] if n else []
    stride = max_words - overlap
    bounds: list[list[int]] = []
    start = 0
    while True:
        end = min(start + max_words, n)
        bounds.append([start, end])
        if end >= n:
            break
        start += stride
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] - overlap < overlap:
        bounds.pop()
        bounds[-1][1] = n
    return [" ".join(words[s:e]) for s, e in bounds]


def snippet(text: str, max_chars: int = 300) -> str:
    """The start of a passage, cut at a word boundary to about ``max_chars``."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text.rfind(" ", 0, max_chars)
    if cut < max_chars // 2:
        cut = max_chars
    return text[:cut].rstrip(" ,;:.-") + "…"
