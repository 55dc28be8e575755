"""Compact, memory-mapped documents and passages, with metadata filter postings.

Nothing is parsed at load time: strings live in UTF-8 blobs addressed by int64
offset arrays (``np.load(..., mmap_mode="r")``), and a field is decoded only
when a hit needs it. Files (all under the bundle root)::

    documents.bin        UTF-8 id, title, url of each document, back to back
    documents.idx.npy    int64 (3 * doc_count + 1): offset of every field (+ end)
    documents.meta.npy   int32 (doc_count,): row of the document's metadata in the table below
    metadata.bin         distinct metadata objects as JSON (sorted keys), back to back
    metadata.idx.npy     int64 (distinct + 1) offsets
    passages.bin         UTF-8 heading, text of each passage, back to back
    passages.idx.npy     int64 (2 * passage_count + 1) offsets
    doc_starts.npy       int64 (doc_count + 1): passages of document i are [starts[i], starts[i+1])
    filters.json         {"fields": {name: {"values": [[tag, value], ...], "offsets": [...]}}, "scan": [...]}
    filters.npy          int32 document ids of every (field, value) posting, back to back

Filters: a field with at most ``MAX_FILTER_VALUES`` distinct scalar values gets
postings at build time (one ``np.ndarray`` slice per value at query time).
Fields with more values (timestamps, say) are listed under ``scan`` and matched
by decoding the distinct-metadata table once, on the first query that filters on
them. Value keys are type-aware: ``True`` never equals ``1``.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import ArtifactError

DOCS_BIN = "documents.bin"
DOCS_IDX = "documents.idx.npy"
DOCS_META = "documents.meta.npy"
META_BIN = "metadata.bin"
META_IDX = "metadata.idx.npy"
PASS_BIN = "passages.bin"
PASS_IDX = "passages.idx.npy"
DOC_STARTS = "doc_starts.npy"
FILTERS_JSON = "filters.json"
FILTERS_NPY = "filters.npy"
FILES = (DOCS_BIN, DOCS_IDX, DOCS_META, META_BIN, META_IDX, PASS_BIN, PASS_IDX, DOC_STARTS, FILTERS_JSON,
         FILTERS_NPY)
MAX_FILTER_VALUES = 4096


def value_key(value: Any) -> tuple | None:
    """Hashable, type-aware key of a metadata value, or None for non-scalars."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    return None


def _keys_of(value: Any) -> list[tuple]:
    vals = value if isinstance(value, list) else (value,)
    return [k for k in (value_key(x) for x in vals) if k is not None]


class _Blob:
    """Append-only UTF-8 blob plus its offsets."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "wb")
        self.offsets: list[int] = [0]
        self._pos = 0

    def add(self, text: str) -> None:
        data = text.encode("utf-8")
        self._fh.write(data)
        self._pos += len(data)
        self.offsets.append(self._pos)

    def close(self, idx_path: Path) -> None:
        self._fh.close()
        np.save(idx_path, np.asarray(self.offsets, dtype=np.int64), allow_pickle=False)


class DocStoreWriter:
    """Streams documents and passages to the files above; ``close`` writes the small indexes."""

    def __init__(self, root: Path, *, max_filter_values: int = MAX_FILTER_VALUES) -> None:
        self.root = Path(root)
        self._docs = _Blob(self.root / DOCS_BIN)
        self._meta = _Blob(self.root / META_BIN)
        self._pass = _Blob(self.root / PASS_BIN)
        self._meta_rows: dict[str, int] = {}
        self._doc_meta: list[int] = []
        self._starts: list[int] = [0]
        self._postings: dict[str, dict[tuple, list[int]]] = {}
        self._scan: set[str] = set()
        self._max_values = int(max_filter_values)

    @property
    def doc_count(self) -> int:
        return len(self._doc_meta)

    @property
    def passage_count(self) -> int:
        return self._starts[-1]

    def add(self, doc_id: str, title: str, url: str, metadata: dict, passages: list[tuple[str, str]]) -> None:
        d = self.doc_count
        for field in (doc_id, title, url):
            self._docs.add(field)
        meta_json = json.dumps(metadata, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        row = self._meta_rows.get(meta_json)
        if row is None:
            row = self._meta_rows[meta_json] = len(self._meta_rows)
            self._meta.add(meta_json)
        self._doc_meta.append(row)
        for name, value in metadata.items():
            if name in self._scan:
                continue
            field = self._postings.setdefault(name, {})
            for k in _keys_of(value):
                field.setdefault(k, []).append(d)
            if len(field) > self._max_values:
                self._scan.add(name)
                del self._postings[name]
        for heading, text in passages:
            self._pass.add(heading)
            self._pass.add(text)
        self._starts.append(self._starts[-1] + len(passages))

    def close(self) -> None:
        self._docs.close(self.root / DOCS_IDX)
        self._meta.close(self.root / META_IDX)
        self._pass.close(self.root / PASS_IDX)
        np.save(self.root / DOCS_META, np.asarray(self._doc_meta, dtype=np.int32), allow_pickle=False)
        np.save(self.root / DOC_STARTS, np.asarray(self._starts, dtype=np.int64), allow_pickle=False)
        fields: dict[str, dict] = {}
        chunks: list[np.ndarray] = []
        pos = 0
        for name in sorted(self._postings):
            items = sorted(self._postings[name].items(), key=lambda kv: (kv[0][0], str(kv[0][1])))
            offsets = [pos]
            for _, docs in items:
                chunks.append(np.asarray(docs, dtype=np.int32))
                pos += len(docs)
                offsets.append(pos)
            fields[name] = {"values": [list(k) for k, _ in items], "offsets": offsets}
        np.save(self.root / FILTERS_NPY, np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32),
                allow_pickle=False)
        (self.root / FILTERS_JSON).write_text(
            json.dumps({"fields": fields, "scan": sorted(self._scan)}, ensure_ascii=False, sort_keys=True),
            encoding="utf-8")
        self._postings = {}
        self._meta_rows = {}


def _map(path: Path) -> mmap.mmap | bytes:
    if os.path.getsize(path) == 0:
        return b""
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def _offsets(root: Path, name: str, count: int, blob_size: int, mmap_mode) -> np.ndarray:
    arr = np.load(root / name, mmap_mode=mmap_mode, allow_pickle=False)
    if arr.dtype != np.int64 or arr.shape != (count + 1,):
        raise ArtifactError(f"{root}: {name} is {arr.dtype} {arr.shape}, expected int64 ({count + 1},)")
    if int(arr[0]) != 0 or int(arr[-1]) != blob_size:
        raise ArtifactError(f"{root}: {name} does not index its blob")
    return arr


class DocStore:
    """Read side: documents, passages and filters of a bundle, memory-mapped."""

    def __init__(self, root: Path, *, doc_count: int, passage_count: int, in_memory: bool = False) -> None:
        root = Path(root)
        mode = None if in_memory else "r"
        read = (lambda p: Path(p).read_bytes()) if in_memory else _map
        try:
            self._docs_blob = read(root / DOCS_BIN)
            self._meta_blob = read(root / META_BIN)
            self._pass_blob = read(root / PASS_BIN)
            self._docs_idx = _offsets(root, DOCS_IDX, 3 * doc_count, len(self._docs_blob), mode)
            self._pass_idx = _offsets(root, PASS_IDX, 2 * passage_count, len(self._pass_blob), mode)
            meta_idx = np.load(root / META_IDX, mmap_mode=mode, allow_pickle=False)
            if meta_idx.dtype != np.int64 or meta_idx.ndim != 1 or meta_idx.shape[0] < 2 \
                    or int(meta_idx[-1]) != len(self._meta_blob):
                raise ArtifactError(f"{root}: {META_IDX} does not index {META_BIN}")
            self._meta_idx = meta_idx
            self._doc_meta = np.load(root / DOCS_META, mmap_mode=mode, allow_pickle=False)
            if self._doc_meta.dtype != np.int32 or self._doc_meta.shape != (doc_count,):
                raise ArtifactError(f"{root}: {DOCS_META} has shape {self._doc_meta.shape}")
            starts = np.load(root / DOC_STARTS, allow_pickle=False)
            if starts.dtype != np.int64 or starts.shape != (doc_count + 1,) or int(starts[0]) != 0 \
                    or int(starts[-1]) != passage_count or np.any(np.diff(starts) <= 0):
                raise ArtifactError(f"{root}: {DOC_STARTS} does not tile {passage_count} passages")
            self._filters_path = root / FILTERS_JSON
            self._postings_path = root / FILTERS_NPY
            self._in_memory = in_memory
            self._filters: dict | None = (json.loads(self._filters_path.read_text(encoding="utf-8"))
                                          if in_memory else None)
            self._postings = (np.load(self._postings_path, allow_pickle=False) if in_memory else None)
        except ArtifactError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{root}: unreadable document store ({type(exc).__name__}: {exc})") from exc
        self.starts = starts[:-1]
        self.ends = starts[1:]
        self.doc_count = doc_count
        self.passage_count = passage_count
        self._lock = threading.Lock()
        self._field_cache: dict[str, dict[tuple, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.doc_count

    # ------------------------------------------------------------------ fields
    @staticmethod
    def _str(blob, idx: np.ndarray, j: int) -> str:
        return bytes(blob[int(idx[j]):int(idx[j + 1])]).decode("utf-8")

    def doc_id(self, d: int) -> str:
        return self._str(self._docs_blob, self._docs_idx, 3 * d)

    def title(self, d: int) -> str:
        return self._str(self._docs_blob, self._docs_idx, 3 * d + 1)

    def url(self, d: int) -> str:
        return self._str(self._docs_blob, self._docs_idx, 3 * d + 2)

    def metadata(self, d: int) -> dict:
        return json.loads(self._str(self._meta_blob, self._meta_idx, int(self._doc_meta[d])))

    def heading(self, p: int) -> str:
        return self._str(self._pass_blob, self._pass_idx, 2 * p)

    def text(self, p: int) -> str:
        return self._str(self._pass_blob, self._pass_idx, 2 * p + 1)

    def passage_doc(self) -> np.ndarray:
        """int32 (passage_count,): the document of every passage."""
        counts = (self.ends - self.starts).astype(np.int64)
        return np.repeat(np.arange(self.doc_count, dtype=np.int32), counts)

    # ------------------------------------------------------------------ filters
    def _load_filters(self) -> tuple[dict, np.ndarray]:
        if self._filters is None:
            with self._lock:
                if self._filters is None:
                    postings = np.load(self._postings_path, mmap_mode="r", allow_pickle=False)
                    self._filters = json.loads(self._filters_path.read_text(encoding="utf-8"))
                    self._postings = postings
        return self._filters, self._postings

    def _field(self, name: str) -> dict[tuple, np.ndarray]:
        cached = self._field_cache.get(name)
        if cached is not None:
            return cached
        filters, postings = self._load_filters()
        spec = filters["fields"].get(name)
        with self._lock:
            if spec is not None:
                offs = spec["offsets"]
                idx = {tuple(v): postings[offs[i]:offs[i + 1]] for i, v in enumerate(spec["values"])}
            elif name in filters["scan"]:
                idx = self._scan_field(name)
            else:
                idx = {}
            self._field_cache[name] = idx
        return idx

    def _scan_field(self, name: str) -> dict[tuple, np.ndarray]:
        rows: dict[tuple, list[int]] = {}
        for r in range(self._meta_idx.shape[0] - 1):
            meta = json.loads(self._str(self._meta_blob, self._meta_idx, r))
            if name in meta:
                for k in _keys_of(meta[name]):
                    rows.setdefault(k, []).append(r)
        doc_meta = np.asarray(self._doc_meta)
        return {k: np.flatnonzero(np.isin(doc_meta, np.asarray(v, dtype=np.int32))).astype(np.int32)
                for k, v in rows.items()}

    def mask(self, filters: dict) -> np.ndarray:
        """bool (doc_count,): documents whose metadata matches every field (a list value means any of)."""
        if not isinstance(filters, dict):
            raise ValueError("filters must be an object of {field: value}")
        result: np.ndarray | None = None
        for name, wanted in filters.items():
            if not isinstance(name, str):
                raise ValueError("filter field names must be strings")
            values = wanted if isinstance(wanted, (list, tuple)) else [wanted]
            keys = [value_key(v) for v in values]
            if any(k is None for k in keys):
                raise ValueError(f"filter {name!r}: values must be strings, numbers or booleans")
            field_idx = self._field(name)
            m = np.zeros(self.doc_count, dtype=bool)
            for k in keys:
                docs = field_idx.get(k)
                if docs is not None:
                    m[docs] = True
            result = m if result is None else (result & m)
        return result if result is not None else np.ones(self.doc_count, dtype=bool)
