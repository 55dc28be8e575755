"""The search-index bundle: layout, document validation, the streaming writer, reading.

A bundle is a folder (an artifact of kind ``search-index``, format 3, see
``core.artifacts``; format 2 bundles, whose document store is not compressed,
are still read)::

    manifest.json          kind, format_version, version, files (sha256 + size), and
                           doc_count, passage_count, encoder, bm25, dense, chunking, embeddings, source
    documents.*, metadata.*, passages.*, doc_starts.npy, filters.*
                           the compact memory-mapped document store (``core.search.docstore``):
                           zstd-compressed UTF-8 blocks + offsets, deduplicated metadata, filter postings
    embeddings.npy         dense kind "exact": float32 (passage_count, dim), L2-normalised, mmap'd
    dense/hnsw.faiss       dense kind "hnsw": faiss HNSW graph over 8-bit scalar-quantised vectors, codes
                           mmap'd (``core.search.ann``)
    bm25/                  bm25s index (params json + CSC .npy arrays, term ids in sorted order, the sorted
                           terms as a blob + offsets), mmap'd
    encoder/               model.onnx, tokenizer.json, encoder.json: the query encoder, i.e.
                           the graph that embedded the passages

Passages of one document are contiguous and in document order. The dense kind is
chosen at build time (``dense="auto"``: HNSW above ``ann_threshold`` passages) and
recorded in the manifest with the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import ArtifactError
from core.search import docstore
from core.search.docstore import DocStore, DocStoreWriter
from core.search.text import MAX_WORDS, OVERLAP, split_passages

KIND = "search-index"
FORMAT_VERSION = 3          # what the builder writes
READ_FORMATS = (2, 3)       # what the reader accepts (2: uncompressed document store)
EMBEDDINGS = "embeddings.npy"
ANN_FILE = "dense/hnsw.faiss"
BM25_DIR = "bm25"
ENCODER_DIR = "encoder"
MANIFEST_FIELDS = ("doc_count", "passage_count", "encoder", "bm25", "chunking")
ANN_THRESHOLD = 50_000   # default: bundles with more passages than this get an HNSW index
DENSE_KINDS = ("auto", "exact", "hnsw")


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
    """The document store of already-chunked documents (headings empty)."""
    w = DocStoreWriter(Path(root))
    ends = list(chunked.doc_starts[1:].tolist()) + [len(chunked.passages)]
    for d, s, e in zip(docs, chunked.doc_starts.tolist(), ends):
        w.add(d["id"], d["title"], d["url"], d["metadata"], [("", p) for p in chunked.passages[s:e]])
    w.close()


def write_passages(root: Path, docs: list[dict], chunked: Chunked) -> None:
    """Kept for the old builder: ``write_documents`` writes the passages too."""


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
    embed) and the BM25 token ids (flat int32) stay in memory.
    """

    def __init__(self, root: Path, *, dim: int, dense: str = "auto", ann_threshold: int = ANN_THRESHOLD,
                 tokenizer=None, chunking: dict | None = None, ann_threads: int = 1,
                 ann_ef_search: int | None = None) -> None:
        from core.search.bm25 import TokenAccumulator
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
        self.ann_threads = int(ann_threads)
        self.ann_ef_search = ann_ef_search
        self.tokenizer = tokenizer or DEFAULT_TOKENIZER
        self.chunking = dict(chunking) if chunking is not None else {
            "max_words": MAX_WORDS, "overlap": OVERLAP, "indexed_text": "title, heading, passage joined by newlines"}
        self._store = DocStoreWriter(self.root)
        self._texts: list[str] = []
        self._tokens = TokenAccumulator()
        self._ids: set[str] = set()
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
        self._store.add(id, title or "", url or "", metadata, [(h or "", t) for h, t in passages])
        for itext in index_texts:
            self._texts.append(itext)
            self._tokens.add(self.tokenizer(itext))

    @property
    def index_texts(self) -> list[str]:
        return self._texts

    @property
    def passage_count(self) -> int:
        return len(self._texts)

    @property
    def doc_count(self) -> int:
        return self._store.doc_count

    def dense_kind(self) -> str:
        if self.dense != "auto":
            return self.dense
        return "hnsw" if self.passage_count > self.ann_threshold else "exact"

    def finish(self, vectors: np.ndarray, *, progress: bool = False) -> dict[str, Any]:
        from core.search import ann
        from core.search.dense import DenseIndex

        if self._finished:
            raise RuntimeError("finish() was called twice")
        if self.doc_count == 0:
            raise DocumentError("no documents")
        n = self.passage_count
        if tuple(vectors.shape) != (n, self.dim) or vectors.dtype != np.float32:
            raise ValueError(f"vectors are {vectors.dtype} {vectors.shape}, expected float32 ({n}, {self.dim})")
        self._finished = True
        self._store.close()
        self._ids = set()
        bm25_settings = self._tokens.write(self.root / BM25_DIR, self.tokenizer, progress=progress)
        self._tokens = None
        kind = self.dense_kind()
        dense: dict[str, Any] = {"kind": kind, "threshold": self.ann_threshold, "requested": self.dense}
        if kind == "hnsw":
            kw = {"ef_search": int(self.ann_ef_search)} if self.ann_ef_search else {}
            dense["hnsw"] = ann.build(vectors, self.root / ANN_FILE, threads=self.ann_threads, progress=progress, **kw)
            stored = {"dtype": "uint8 (faiss QT_8bit, per-dimension range)", "file": ANN_FILE}
        else:
            DenseIndex.save(self.root / EMBEDDINGS, vectors)
            stored = {"dtype": "float32", "file": EMBEDDINGS}
        return {"doc_count": self.doc_count, "passage_count": n, "bm25": bm25_settings, "dense": dense,
                "chunking": self.chunking, "documents": docstore.settings(),
                "embeddings": {"shape": [n, self.dim], "normalized": True, **stored}}


# ------------------------------------------------------------------------- reading
def dense_settings(manifest: dict) -> dict[str, Any]:
    """The manifest's dense section; a bundle without one is exact."""
    dense = manifest.get("dense") or {"kind": "exact"}
    if not isinstance(dense, dict) or dense.get("kind") not in ("exact", "hnsw"):
        raise ArtifactError(f"unknown dense index {dense!r} in the manifest")
    return dense


@dataclass
class BundleParts:
    manifest: dict
    documents: DocStore
    dense: dict
    dense_path: Path
    bm25_dir: Path
    encoder_dir: Path


def open_bundle(root: Path, *, deep_verify: bool = True) -> BundleParts:
    """Verify a bundle against its manifest and map its document store; raise ArtifactError."""
    from core.artifacts import verify

    root = Path(root)
    manifest = verify(root, kind=KIND, format_version=READ_FORMATS, deep=deep_verify)
    missing = [f for f in MANIFEST_FIELDS if f not in manifest]
    if missing:
        raise ArtifactError(f"{root}: manifest lacks {', '.join(missing)}")
    dense = dense_settings(manifest)
    dense_file = EMBEDDINGS if dense["kind"] == "exact" else dense.get("hnsw", {}).get("file", ANN_FILE)
    store_files = docstore.FILES if manifest["format_version"] >= 3 else docstore.FILES_V2
    required = [*store_files, dense_file, f"{ENCODER_DIR}/model.onnx", f"{ENCODER_DIR}/tokenizer.json",
                f"{ENCODER_DIR}/encoder.json", f"{BM25_DIR}/params.index.json", f"{BM25_DIR}/terms.bin",
                f"{BM25_DIR}/terms.idx.npy"]
    absent = [f for f in required if f not in manifest["files"]]
    if absent:
        raise ArtifactError(f"{root}: manifest lists no {', '.join(absent)}")
    try:
        documents = DocStore(root, doc_count=int(manifest["doc_count"]),
                             passage_count=int(manifest["passage_count"]))
    except ArtifactError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{root}: unreadable bundle ({type(exc).__name__}: {exc})") from exc
    return BundleParts(manifest, documents, dense, root / dense_file, root / BM25_DIR, root / ENCODER_DIR)
