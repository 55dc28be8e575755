"""Compact, memory-mapped documents and passages, with metadata filter postings.

Nothing is parsed at load time: strings live in blobs addressed by offset arrays
(``np.load(..., mmap_mode="r")``), and a field is decoded only when a hit needs
it. Files (all under the bundle root)::

    documents.bin        id, title, url of each document, back to back (UTF-8; zstd blocks, below)
    documents.idx.npy    uint32 (int64 past 4 GiB) (3 * doc_count + 1): offset of every field (+ end)
    documents.blocks.npy int64 (2, blocks + 1): where each zstd block starts, uncompressed and in the file
    documents.meta.npy   uint8/uint16/int32 (doc_count,) (the smallest that fits): row of the document's
                         metadata in the table below
    metadata.bin         distinct metadata objects as JSON (sorted keys), back to back
    metadata.idx.npy     offsets, as above;  metadata.blocks.npy  its blocks
    passages.bin         heading, text of each passage, back to back
    passages.idx.npy     offsets (2 * passage_count + 1);  passages.blocks.npy  its blocks
    doc_starts.npy       uint32 (int64 past 2**32 passages) (doc_count + 1): passages of document i are
                         [starts[i], starts[i+1])
    filters.json         {"fields": {name: {"values": [[tag, value], ...], "offsets": [...],
                         "bitmaps": {value number: row}}}, "scan": [...]}
    filters.npy          int32 document ids of every (field, value) posting, back to back
    filters.bits.npy     uint8 (rows, ceil(doc_count / 8)): the postings of values held by more
                         than 1 document in 32, as packed bitmaps (smaller than their id lists)

Compression (bundle format 3): each blob is cut into blocks of about
``BLOCK_BYTES`` of UTF-8, never splitting a record (a document's three fields, a
passage's heading and text), and every block is one zstd frame (level
``ZSTD_LEVEL``). Offsets address the uncompressed text, so a field is found by
one ``searchsorted`` over the block starts and one decompression of a few KB
(~10 us); decoded blocks are kept in a small LRU. On the packages corpus this
takes the document store from ~171 to 67 bytes a document
(docs/search-engine.md). Format 2 bundles (plain blobs, int64 offsets, no
``*.blocks.npy``) are still read.

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
from functools import lru_cache
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
DOCS_BLOCKS = "documents.blocks.npy"
META_BLOCKS = "metadata.blocks.npy"
PASS_BLOCKS = "passages.blocks.npy"
FILES_V2 = (DOCS_BIN, DOCS_IDX, DOCS_META, META_BIN, META_IDX, PASS_BIN, PASS_IDX, DOC_STARTS, FILTERS_JSON,
            FILTERS_NPY)
FILTERS_BITS = "filters.bits.npy"
FILES = FILES_V2 + (DOCS_BLOCKS, META_BLOCKS, PASS_BLOCKS, FILTERS_BITS)
MAX_FILTER_VALUES = 4096
BLOCK_BYTES = 4096      # uncompressed bytes per zstd block (a record longer than this gets a block of its own)
ZSTD_LEVEL = 19         # build-time cost only: ~0.3 s per MB of text; decoding is as fast at any level
BLOCK_CACHE = 256       # decoded blocks kept per blob (~1 MB)


def settings() -> dict[str, Any]:
    """The document store's layout, for the manifest."""
    return {"compression": "zstd", "level": ZSTD_LEVEL, "block_bytes": BLOCK_BYTES}


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


def _offsets_dtype(total: int):
    return np.uint32 if total < 2**32 else np.int64


class _Blob:
    """Append-only blob of UTF-8 records, cut into zstd blocks, plus its offsets and block table."""

    def __init__(self, path: Path) -> None:
        import zstandard

        self._fh = open(path, "wb")
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False, write_content_size=True)
        self.offsets: list[int] = [0]
        self._pos = 0                    # uncompressed bytes so far
        self._buf = bytearray()
        self._blocks_u: list[int] = [0]  # uncompressed start of each block (+ end)
        self._blocks_c: list[int] = [0]  # its start in the file (+ end)

    def add(self, *texts: str) -> None:
        """Append ``texts`` as consecutive records, all in the same block."""
        datas = [t.encode("utf-8") for t in texts]
        if self._buf and len(self._buf) + sum(map(len, datas)) > BLOCK_BYTES:
            self._flush()
        for data in datas:
            self._buf += data
            self._pos += len(data)
            self.offsets.append(self._pos)

    def _flush(self) -> None:
        frame = self._zstd.compress(bytes(self._buf))
        self._fh.write(frame)
        self._blocks_u.append(self._pos)
        self._blocks_c.append(self._blocks_c[-1] + len(frame))
        self._buf.clear()

    def close(self, idx_path: Path, blocks_path: Path) -> None:
        if self._buf:
            self._flush()
        self._fh.close()
        np.save(idx_path, np.asarray(self.offsets, dtype=_offsets_dtype(self._pos)), allow_pickle=False)
        np.save(blocks_path, np.asarray([self._blocks_u, self._blocks_c], dtype=np.int64), allow_pickle=False)


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
        self._docs.add(doc_id, title, url)
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
            self._pass.add(heading, text)
        self._starts.append(self._starts[-1] + len(passages))

    def close(self) -> None:
        self._docs.close(self.root / DOCS_IDX, self.root / DOCS_BLOCKS)
        self._meta.close(self.root / META_IDX, self.root / META_BLOCKS)
        self._pass.close(self.root / PASS_IDX, self.root / PASS_BLOCKS)
        rows = len(self._meta_rows)
        meta_dtype = np.uint8 if rows <= 2**8 else np.uint16 if rows <= 2**16 else np.int32
        np.save(self.root / DOCS_META, np.asarray(self._doc_meta, dtype=meta_dtype), allow_pickle=False)
        np.save(self.root / DOC_STARTS, np.asarray(self._starts, dtype=_offsets_dtype(self._starts[-1])),
                allow_pickle=False)
        n = self.doc_count
        fields: dict[str, dict] = {}
        chunks: list[np.ndarray] = []
        bitmaps: list[np.ndarray] = []
        pos = 0
        for name in sorted(self._postings):
            items = sorted(self._postings[name].items(), key=lambda kv: (kv[0][0], str(kv[0][1])))
            offsets = [pos]
            rows_of: dict[str, int] = {}
            for i, (_, docs) in enumerate(items):
                if len(docs) * 32 > n:   # a bitmap (n / 8 bytes) is smaller than the ids (4 bytes each)
                    bits = np.zeros(n, dtype=bool)
                    bits[np.asarray(docs, dtype=np.int64)] = True
                    rows_of[str(i)] = len(bitmaps)
                    bitmaps.append(np.packbits(bits))
                else:
                    chunks.append(np.asarray(docs, dtype=np.int32))
                    pos += len(docs)
                offsets.append(pos)
            fields[name] = {"values": [list(k) for k, _ in items], "offsets": offsets, "bitmaps": rows_of}
        np.save(self.root / FILTERS_NPY, np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32),
                allow_pickle=False)
        np.save(self.root / FILTERS_BITS, np.stack(bitmaps) if bitmaps else np.zeros((0, (n + 7) // 8), np.uint8),
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


class _BlobReader:
    """Records of one blob by number: plain (format 2) or zstd blocks (format 3)."""

    def __init__(self, root: Path, name: str, idx_name: str, blocks_name: str | None, count: int | None,
                 in_memory: bool) -> None:
        mode = None if in_memory else "r"
        self._raw = Path(root / name).read_bytes() if in_memory else _map(root / name)
        idx = np.load(root / idx_name, mmap_mode=mode, allow_pickle=False)
        if blocks_name is None:
            self._blocks = None
            total = len(self._raw)
            dtypes: tuple = (np.int64,)
        else:
            blocks = np.load(root / blocks_name, allow_pickle=False)
            if blocks.dtype != np.int64 or blocks.ndim != 2 or blocks.shape[0] != 2 or blocks.shape[1] < 1 \
                    or int(blocks[1, -1]) != len(self._raw) or np.any(np.diff(blocks, axis=1) < 0):
                raise ArtifactError(f"{root}: {blocks_name} does not cut {name} into blocks")
            self._blocks = blocks
            self._starts_u = blocks[0]
            total = int(blocks[0, -1])
            dtypes = (np.uint32, np.int64)
            import zstandard

            self._local = threading.local()
            self._zstd = zstandard
            self._block = lru_cache(maxsize=BLOCK_CACHE)(self._decode_block)
        if idx.dtype not in dtypes or idx.ndim != 1 or (count is not None and idx.shape != (count + 1,)) \
                or idx.shape[0] < 1:
            want = " or ".join(np.dtype(d).name for d in dtypes)
            raise ArtifactError(f"{root}: {idx_name} is {idx.dtype} {idx.shape}, expected {want} "
                                f"({'?' if count is None else count + 1},)")
        if int(idx[0]) != 0 or int(idx[-1]) != total:
            raise ArtifactError(f"{root}: {idx_name} does not index {name}")
        self._offs = idx.view(np.ndarray) if isinstance(idx, np.memmap) else idx  # still mapped; cheaper slicing
        self.count = int(idx.shape[0] - 1)

    def _decode_block(self, b: int) -> bytes:
        dec = getattr(self._local, "dec", None)
        if dec is None:  # a ZstdDecompressor is not safe to share between threads
            dec = self._local.dec = self._zstd.ZstdDecompressor()
        c0, c1 = int(self._blocks[1, b]), int(self._blocks[1, b + 1])
        return dec.decompress(self._raw[c0:c1])

    def get(self, j: int) -> str:
        return self.get_run(j, 1)[0]

    def get_run(self, j: int, n: int) -> list[str]:
        """Records ``j`` to ``j + n - 1``, which the writer kept in one block (a record group)."""
        offs = self._offs[j:j + n + 1].tolist()
        if self._blocks is None:
            return [self._raw[a:b].decode("utf-8") for a, b in zip(offs, offs[1:])]
        if offs[0] == offs[-1]:
            return [""] * n
        b = int(self._starts_u.searchsorted(offs[0], side="right")) - 1
        base = int(self._starts_u[b])
        data = self._block(b)
        return [data[a - base:c - base].decode("utf-8") for a, c in zip(offs, offs[1:])]


class DocStore:
    """Read side: documents, passages and filters of a bundle, memory-mapped."""

    def __init__(self, root: Path, *, doc_count: int, passage_count: int, in_memory: bool = False) -> None:
        root = Path(root)
        mode = None if in_memory else "r"
        try:
            blocks = (root / DOCS_BLOCKS).exists()  # format 3; format 2 had plain blobs
            self._docs = _BlobReader(root, DOCS_BIN, DOCS_IDX, DOCS_BLOCKS if blocks else None, 3 * doc_count,
                                     in_memory)
            self._pass = _BlobReader(root, PASS_BIN, PASS_IDX, PASS_BLOCKS if blocks else None, 2 * passage_count,
                                     in_memory)
            self._meta = _BlobReader(root, META_BIN, META_IDX, META_BLOCKS if blocks else None, None, in_memory)
            if self._meta.count < 1:
                raise ArtifactError(f"{root}: {META_IDX} does not index {META_BIN}")
            self._doc_meta = np.load(root / DOCS_META, mmap_mode=mode, allow_pickle=False)
            if self._doc_meta.dtype not in (np.uint8, np.uint16, np.int32) or self._doc_meta.shape != (doc_count,):
                raise ArtifactError(f"{root}: {DOCS_META} is {self._doc_meta.dtype} {self._doc_meta.shape}")
            starts = np.load(root / DOC_STARTS, allow_pickle=False)
            if starts.dtype not in (np.uint32, np.int64) or starts.shape != (doc_count + 1,) or int(starts[0]) != 0 \
                    or int(starts[-1]) != passage_count or np.any(np.diff(starts.astype(np.int64)) <= 0):
                raise ArtifactError(f"{root}: {DOC_STARTS} does not tile {passage_count} passages")
            starts = starts.astype(np.int64)
            self._filters_path = root / FILTERS_JSON
            self._postings_path = root / FILTERS_NPY
            self._bits_path = root / FILTERS_BITS   # format 3
            self._in_memory = in_memory
            self._filters: dict | None = (json.loads(self._filters_path.read_text(encoding="utf-8"))
                                          if in_memory else None)
            self._postings = (np.load(self._postings_path, allow_pickle=False) if in_memory else None)
            self._bits = (self._load_bits(None, doc_count) if in_memory else None)
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
    def document(self, d: int) -> tuple[str, str, str]:
        """(id, title, url) of document ``d``: one lookup, one block."""
        doc_id, title, url = self._docs.get_run(3 * d, 3)
        return doc_id, title, url

    def doc_id(self, d: int) -> str:
        return self._docs.get(3 * d)

    def title(self, d: int) -> str:
        return self._docs.get(3 * d + 1)

    def url(self, d: int) -> str:
        return self._docs.get(3 * d + 2)

    def metadata(self, d: int) -> dict:
        return json.loads(self._meta.get(int(self._doc_meta[d])))

    def heading(self, p: int) -> str:
        return self._pass.get(2 * p)

    def text(self, p: int) -> str:
        return self._pass.get(2 * p + 1)

    def passage_doc(self) -> np.ndarray:
        """int32 (passage_count,): the document of every passage."""
        counts = (self.ends - self.starts).astype(np.int64)
        return np.repeat(np.arange(self.doc_count, dtype=np.int32), counts)

    # ------------------------------------------------------------------ filters
    def _load_bits(self, mmap_mode, doc_count: int) -> np.ndarray:
        if not self._bits_path.exists():   # format 2: every posting is an id list
            return np.zeros((0, 0), dtype=np.uint8)
        bits = np.load(self._bits_path, mmap_mode=mmap_mode, allow_pickle=False)
        if bits.dtype != np.uint8 or bits.ndim != 2 or bits.shape[1] != (doc_count + 7) // 8:
            raise ArtifactError(f"{self._bits_path}: {bits.dtype} {bits.shape}, not bitmaps of {doc_count} documents")
        return bits

    def _load_filters(self) -> tuple[dict, np.ndarray]:
        if self._filters is None:
            with self._lock:
                if self._filters is None:
                    postings = np.load(self._postings_path, mmap_mode="r", allow_pickle=False)
                    self._bits = self._load_bits("r", self.doc_count)
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
                offs, rows = spec["offsets"], spec.get("bitmaps", {})
                idx = {}
                for i, v in enumerate(spec["values"]):
                    row = rows.get(str(i))
                    idx[tuple(v)] = (postings[offs[i]:offs[i + 1]] if row is None else   # ids, or a bool mask
                                     np.unpackbits(self._bits[row], count=self.doc_count).view(bool))
            elif name in filters["scan"]:
                idx = self._scan_field(name)
            else:
                idx = {}
            self._field_cache[name] = idx
        return idx

    def _scan_field(self, name: str) -> dict[tuple, np.ndarray]:
        rows: dict[tuple, list[int]] = {}
        for r in range(self._meta.count):
            meta = json.loads(self._meta.get(r))
            if name in meta:
                for k in _keys_of(meta[name]):
                    rows.setdefault(k, []).append(r)
        doc_meta = np.asarray(self._doc_meta)
        return {k: np.flatnonzero(np.isin(doc_meta, np.asarray(v, dtype=np.int32))).astype(np.int32)
                for k, v in rows.items()}

    def mask(self, filters: dict) -> np.ndarray:
        """bool (doc_count,): documents whose metadata matches every field (a list value means any of).

        A value's postings are document ids or, for frequent values, a bool mask of every document."""
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
                if docs is None:
                    continue
                if docs.dtype == bool:
                    m |= docs
                else:
                    m[docs] = True
            result = m if result is None else (result & m)
        return result if result is not None else np.ones(self.doc_count, dtype=bool)
