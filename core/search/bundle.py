"""The search-index bundle: layout, document validation, chunking, reading.

A bundle is a folder (an artifact of kind ``search-index``, format 1, see
``core.artifacts``)::

    manifest.json          kind, format_version, version, files (sha256 + size), and
                           doc_count, passage_count, encoder, bm25, chunking, embeddings, source
    documents.jsonl        one document a line: id, title, url, metadata, passages [first, count]
    passages.jsonl         one passage a line: doc (id), n (0-based within the doc), text
    passage_offsets.npy    int64 byte offset of each passages.jsonl line (+ end): passages
                           are read lazily, one line at a time, from an mmap of the file
    embeddings.npy         float32 (passage_count, dim), L2-normalised, mmap-able
    bm25/                  bm25s index (params/vocab json + CSC .npy arrays), loaded with mmap
    encoder/               model.onnx, tokenizer.json, encoder.json: the query encoder, i.e.
                           the ONNX export of the model that embedded the passages

Passages of one document are contiguous and in document order.
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import ArtifactError
from core.search.text import MAX_WORDS, OVERLAP, split_passages

KIND = "search-index"
FORMAT_VERSION = 1
DOCUMENTS = "documents.jsonl"
PASSAGES = "passages.jsonl"
PASSAGE_OFFSETS = "passage_offsets.npy"
EMBEDDINGS = "embeddings.npy"
BM25_DIR = "bm25"
ENCODER_DIR = "encoder"
MANIFEST_FIELDS = ("doc_count", "passage_count", "encoder", "bm25", "chunking")


class DocumentError(ValueError):
    """A corpus document is malformed."""


_SCALARS = (str, int, float, bool)


def validate_document(obj: Any) -> dict[str, Any]:
    """Check one corpus document and return it normalised (id, title, url, text, metadata)."""
    if not isinstance(obj, dict):
        raise DocumentError(f"a document must be a JSON object, not {type(obj).__name__}")
    doc_id = obj.get("id")
    if not isinstance(doc_id, str):
        raise DocumentError("'id' must be a string" if "id" in obj else "missing 'id'")
    if not doc_id.strip():
        raise DocumentError("'id' is empty")
    text = obj.get("text")
    if "text" not in obj:
        raise DocumentError(f"document {doc_id!r}: missing 'text'")
    if not isinstance(text, str):
        raise DocumentError(f"document {doc_id!r}: 'text' must be a string")
    if not text.strip():
        raise DocumentError(f"document {doc_id!r}: 'text' is empty")
    out = {"id": doc_id, "text": text}
    for key in ("title", "url"):
        value = obj.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise DocumentError(f"document {doc_id!r}: {key!r} must be a string")
        out[key] = value
    meta = obj.get("metadata", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise DocumentError(f"document {doc_id!r}: 'metadata' must be an object")
    out["metadata"] = meta
    return out


def index_text(title: str, passage: str) -> str:
    """What BM25 and the encoder see of a passage: the document title, then the passage."""
    return f"{title}\n{passage}" if title else passage


@dataclass
class Chunked:
    doc_starts: np.ndarray        # int64 (doc_count,): first passage of each document
    passage_doc: np.ndarray       # int32 (passage_count,): document of each passage
    passages: list[str]           # passage texts
    index_texts: list[str]        # title + passage, what gets indexed and embedded


def chunk_documents(docs: list[dict], max_words: int = MAX_WORDS, overlap: int = OVERLAP) -> Chunked:
    starts: list[int] = []
    owner: list[int] = []
    passages: list[str] = []
    texts: list[str] = []
    for i, d in enumerate(docs):
        parts = split_passages(d["text"], max_words, overlap) or [d["text"].strip()]
        starts.append(len(passages))
        for p in parts:
            passages.append(p)
            owner.append(i)
            texts.append(index_text(d["title"], p))
    return Chunked(np.asarray(starts, dtype=np.int64), np.asarray(owner, dtype=np.int32), passages, texts)


# ------------------------------------------------------------------------- writing
def write_documents(root: Path, docs: list[dict], chunked: Chunked) -> None:
    ends = list(chunked.doc_starts[1:]) + [len(chunked.passages)]
    with open(root / DOCUMENTS, "w", encoding="utf-8") as fh:
        for d, s, e in zip(docs, chunked.doc_starts.tolist(), ends):
            rec = {"id": d["id"], "title": d["title"], "url": d["url"], "metadata": d["metadata"],
                   "passages": [int(s), int(e) - int(s)]}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_passages(root: Path, docs: list[dict], chunked: Chunked) -> None:
    offsets = np.empty(len(chunked.passages) + 1, dtype=np.int64)
    pos = 0
    n_in_doc = 0
    prev = -1
    with open(root / PASSAGES, "wb") as fh:
        for i, (owner, text) in enumerate(zip(chunked.passage_doc.tolist(), chunked.passages)):
            n_in_doc = n_in_doc + 1 if owner == prev else 0
            prev = owner
            line = (json.dumps({"doc": docs[owner]["id"], "n": n_in_doc, "text": text},
                               ensure_ascii=False) + "\n").encode("utf-8")
            offsets[i] = pos
            fh.write(line)
            pos += len(line)
    offsets[-1] = pos
    np.save(root / PASSAGE_OFFSETS, offsets, allow_pickle=False)


# ------------------------------------------------------------------------- reading
class PassageStore:
    """Passage texts, either in memory or read lazily from an mmap of passages.jsonl."""

    def __init__(self, texts: list[str] | None = None, *, blob=None, offsets: np.ndarray | None = None):
        self._texts = texts
        self._blob = blob
        self._offsets = offsets

    @classmethod
    def open(cls, root: Path, passage_count: int) -> "PassageStore":
        offsets = np.load(root / PASSAGE_OFFSETS, allow_pickle=False)
        if offsets.dtype != np.int64 or offsets.shape != (passage_count + 1,):
            raise ArtifactError(f"{root}: {PASSAGE_OFFSETS} has shape {offsets.shape}, "
                                f"expected ({passage_count + 1},)")
        size = os.path.getsize(root / PASSAGES)
        if offsets[0] != 0 or offsets[-1] != size or np.any(np.diff(offsets) <= 0):
            raise ArtifactError(f"{root}: {PASSAGE_OFFSETS} does not index {PASSAGES}")
        with open(root / PASSAGES, "rb") as fh:
            blob = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        return cls(blob=blob, offsets=offsets)

    def text(self, i: int) -> str:
        if self._texts is not None:
            return self._texts[i]
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        return json.loads(self._blob[start:end])["text"]


@dataclass
class Documents:
    ids: list[str]
    titles: list[str]
    urls: list[str]
    metadata: list[dict]
    starts: np.ndarray   # int64 (n,): first passage of each document
    ends: np.ndarray     # int64 (n,): one past its last passage

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_docs(cls, docs: list[dict], chunked: Chunked) -> "Documents":
        starts = chunked.doc_starts
        ends = np.append(starts[1:], len(chunked.passages)).astype(np.int64)
        return cls([d["id"] for d in docs], [d["title"] for d in docs], [d["url"] for d in docs],
                   [d["metadata"] for d in docs], starts, ends)

    @classmethod
    def read(cls, path: Path, passage_count: int) -> "Documents":
        # One json.loads over the whole file (lines never hold raw newlines) is ~3x
        # faster than one call per line at 100k documents.
        text = Path(path).read_text(encoding="utf-8")
        records = json.loads("[" + ",".join(line for line in text.split("\n") if line) + "]")
        ids = [r["id"] for r in records]
        titles = [r["title"] for r in records]
        urls = [r["url"] for r in records]
        metas = [r["metadata"] for r in records]
        starts = [r["passages"][0] for r in records]
        counts = [r["passages"][1] for r in records]
        del records, text
        st = np.asarray(starts, dtype=np.int64)
        ct = np.asarray(counts, dtype=np.int64)
        expected = np.concatenate(([0], np.cumsum(ct)[:-1])) if len(ct) else st
        if len(ids) == 0 or np.any(ct <= 0) or not np.array_equal(st, expected) or int(ct.sum()) != passage_count:
            raise ArtifactError(f"{path}: passage ranges do not tile {passage_count} passages")
        return cls(ids, titles, urls, metas, st, st + ct)


@dataclass
class BundleParts:
    manifest: dict
    documents: Documents
    passages: PassageStore
    embeddings_path: Path
    bm25_dir: Path
    encoder_dir: Path


def open_bundle(root: Path, *, deep_verify: bool = True) -> BundleParts:
    """Verify a bundle against its manifest and read its small parts; raise ArtifactError."""
    from core.artifacts import verify

    root = Path(root)
    manifest = verify(root, kind=KIND, format_version=FORMAT_VERSION, deep=deep_verify)
    missing = [f for f in MANIFEST_FIELDS if f not in manifest]
    if missing:
        raise ArtifactError(f"{root}: manifest lacks {', '.join(missing)}")
    required = [DOCUMENTS, PASSAGES, PASSAGE_OFFSETS, EMBEDDINGS, f"{ENCODER_DIR}/model.onnx",
                f"{ENCODER_DIR}/tokenizer.json", f"{ENCODER_DIR}/encoder.json", f"{BM25_DIR}/params.index.json",
                f"{BM25_DIR}/vocab.index.json"]
    absent = [f for f in required if f not in manifest["files"]]
    if absent:
        raise ArtifactError(f"{root}: manifest lists no {', '.join(absent)}")
    try:
        passage_count = int(manifest["passage_count"])
        documents = Documents.read(root / DOCUMENTS, passage_count)
        if len(documents) != int(manifest["doc_count"]):
            raise ArtifactError(f"{root}: {len(documents)} documents, manifest says {manifest['doc_count']}")
        passages = PassageStore.open(root, passage_count)
    except ArtifactError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{root}: unreadable bundle ({type(exc).__name__}: {exc})") from exc
    return BundleParts(manifest, documents, passages, root / EMBEDDINGS, root / BM25_DIR, root / ENCODER_DIR)



# ------------------------------------------------------------------------- streaming writer
ANN_THRESHOLD = 200_000   # default: bundles with more passages than this get an HNSW index
DENSE_KINDS = ("auto", "exact", "hnsw")


class BundleWriter:
    """Streams documents and passages into a bundle folder; ``finish`` writes the indexes.

    The builder (``core.search.build``) calls, in order::

        w = BundleWriter(root, dim=384)
        for doc in documents:
            w.add_document(id=..., title=..., url=..., metadata={...},
                           passages=[(heading, text), ...], index_texts=[...])
        vectors = embed(w.index_texts)            # float32 (passage_count, dim), may be a memmap
        fields = w.finish(vectors)                # -> doc_count, passage_count, bm25, dense, chunking, ...
        copy the encoder into root / ENCODER_DIR, then write_manifest(root, ..., **fields, encoder=...)

    Documents and passages go to files as they arrive; only the index texts (needed to
    embed) and the BM25 token ids stay in memory.
    """

    def __init__(self, root: Path, *, dim: int, dense: str = "auto", ann_threshold: int = ANN_THRESHOLD,
                 tokenizer=None, chunking: dict | None = None) -> None:
        from core.search.text import DEFAULT_TOKENIZER

        if dense not in DENSE_KINDS:
            raise ValueError(f"dense must be one of {', '.join(DENSE_KINDS)}")
        if int(dim) < 1 or int(ann_threshold) < 0:
            raise ValueError("dim must be positive and ann_threshold >= 0")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.dim = int(dim)
        self.dense = dense
        self.ann_threshold = int(ann_threshold)
        self.tokenizer = tokenizer or DEFAULT_TOKENIZER
        self.chunking = dict(chunking) if chunking is not None else {
            "max_words": MAX_WORDS, "overlap": OVERLAP, "indexed_text": "title, heading, passage joined by newlines"}
        self._docs = open(self.root / DOCUMENTS, "w", encoding="utf-8")
        self._passages = open(self.root / PASSAGES, "wb")
        self._offsets: list[int] = [0]
        self._pos = 0
        self._texts: list[str] = []
        self._tokens: list[list[str]] = []
        self._ids: set[str] = set()
        self._doc_count = 0
        self._finished = False

    def add_document(self, *, id: str, title: str, url: str, metadata: dict,
                     passages: list[tuple[str, str]], index_texts: list[str]) -> None:
        if self._finished:
            raise RuntimeError("finish() was called")
        if not isinstance(id, str) or not id.strip():
            raise DocumentError("a document id must be a non-empty string")
        if id in self._ids:
            raise DocumentError(f"duplicate document id {id!r}")
        if not passages or len(passages) != len(index_texts):
            raise DocumentError(f"document {id!r}: needs passages, and one index text per passage")
        if not isinstance(metadata, dict):
            raise DocumentError(f"document {id!r}: metadata must be a dict")
        self._ids.add(id)
        start = len(self._texts)
        rec = {"id": id, "title": title or "", "url": url or "", "metadata": metadata,
               "passages": [start, len(passages)]}
        self._docs.write(json.dumps(rec, ensure_ascii=False) + "\n")
        for n, ((heading, text), itext) in enumerate(zip(passages, index_texts)):
            line = (json.dumps({"doc": id, "n": n, "heading": heading or "", "text": text},
                               ensure_ascii=False) + "\n").encode("utf-8")
            self._passages.write(line)
            self._pos += len(line)
            self._offsets.append(self._pos)
            self._texts.append(itext)
            self._tokens.append(self.tokenizer(itext))
        self._doc_count += 1

    @property
    def index_texts(self) -> list[str]:
        return self._texts

    @property
    def passage_count(self) -> int:
        return len(self._texts)

    def dense_kind(self) -> str:
        if self.dense != "auto":
            return self.dense
        return "hnsw" if self.passage_count > self.ann_threshold else "exact"

    def finish(self, vectors: np.ndarray) -> dict[str, Any]:
        from core.search.bm25 import BM25Index
        from core.search.dense import DenseIndex

        if self._finished:
            raise RuntimeError("finish() was called twice")
        if self._doc_count == 0:
            raise DocumentError("no documents")
        n = self.passage_count
        if vectors.shape != (n, self.dim):
            raise ValueError(f"vectors are {vectors.shape}, expected ({n}, {self.dim})")
        self._docs.close()
        self._passages.close()
        np.save(self.root / PASSAGE_OFFSETS, np.asarray(self._offsets, dtype=np.int64), allow_pickle=False)
        bm25 = BM25Index.build_from_tokens(self._tokens, self.tokenizer)
        self._tokens = []
        bm25.save(self.root / BM25_DIR)
        DenseIndex.save(self.root / EMBEDDINGS, vectors)
        self._finished = True
        return {"doc_count": self._doc_count, "passage_count": n, "bm25": bm25.settings(),
                "dense": {"kind": "exact", "threshold": self.ann_threshold, "requested": self.dense},
                "chunking": self.chunking,
                "embeddings": {"dtype": "float32", "shape": [n, self.dim], "normalized": True}}
