"""Build-time passage embedding through the bundle's own ONNX graph (onnxruntime, no torch).

Documents and queries go through the same exported graph (``model.onnx`` of an
encoder folder, see ``export.py``) and the same tokenizer settings as
:class:`core.search.encoder.QueryEncoder`, so their parity holds by construction.

Throughput comes from padding little: texts are ordered by length (characters
first, globally; then tokens within a window), each batch is padded only to its
longest member, and a batch holds at most ``TOKEN_BUDGET`` padded tokens (many
short texts, few long ones). All cores by default, as one single-threaded
onnxruntime session per core, each running its own batches: on 2 cores and
~20-token texts that beat one 2-thread session by ~15% (small matrices split
badly across threads), and small batches (64 rows, 2,048 tokens) beat large
ones (256 rows, 8,192 tokens) by ~25% (docs/search-engine.md). A graph that must run one
text at a time (dynamic int8 quantisation, ``encoder.json`` ``"batching":
"single"``, see ``encoder.py``) is run unpadded by ``threads`` workers sharing
one single-threaded session instead: same vectors as the query path, bit for
bit, whatever the batch.

``fingerprint`` keys the embedding cache: a hash of the graph file, the
tokenizer file and the truncation length, so a different graph (fp32 vs int8,
another export) never reuses another graph's vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from core.artifacts import sha256_file
from core.search.encoder import CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, QueryEncoder

FINGERPRINT_RECIPE = "passage-embed/v1"
WINDOW = 4096          # texts tokenised at once (in length order)
TOKEN_BUDGET = 2048    # padded tokens per onnxruntime call
MAX_ROWS = 64          # rows per call, whatever the budget


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def graph_fingerprint(encoder_dir: Path, max_seq_length: int) -> str:
    """sha256 over the graph, the tokenizer and the truncation length (16 hex digits)."""
    encoder_dir = Path(encoder_dir)
    h = hashlib.sha256(FINGERPRINT_RECIPE.encode())
    for name in (MODEL_FILE, TOKENIZER_FILE):
        h.update(name.encode())
        h.update(sha256_file(encoder_dir / name).encode())
    h.update(f"max_seq_length={int(max_seq_length)}".encode())
    return h.hexdigest()[:16]


def output_rows(out: np.ndarray | None, n: int, dim: int) -> np.ndarray:
    """``out`` checked to be float32 ``(n, dim)`` (e.g. an ``np.memmap``), or a new such array."""
    if out is None:
        return np.empty((n, dim), dtype=np.float32)
    if out.shape != (n, dim) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(n, dim)}, not {out.dtype} {out.shape}")
    return out


class PassageEmbedder:
    """Embeds passages with an exported encoder folder; output float32 ``(n, dim)``, L2-normalised."""

    def __init__(self, encoder: QueryEncoder, fingerprint: str, threads: int,
                 workers: list[QueryEncoder] | None = None) -> None:
        self._encoder = encoder
        self._workers = workers or [encoder]   # one single-threaded session per core
        self.fingerprint = fingerprint
        self.threads = threads
        self.dim = encoder.dim
        self.name = encoder.name
        self.config = encoder.config
        self.max_seq_length = encoder.max_seq_length

    @classmethod
    def load(cls, encoder_dir: Path, *, threads: int | None = None) -> "PassageEmbedder":
        threads = cpu_count() if threads is None else max(1, int(threads))
        try:
            single = json.loads((Path(encoder_dir) / CONFIG_FILE).read_text()).get("batching") == "single"
        except (OSError, ValueError):
            single = False  # QueryEncoder.load reports the broken folder
        encoder = QueryEncoder.load(Path(encoder_dir), threads=1)
        workers = [encoder] + [QueryEncoder.load(Path(encoder_dir), threads=1) for _ in range(threads - 1)] \
            if not single else None
        return cls(encoder, graph_fingerprint(encoder_dir, encoder.max_seq_length), threads, workers)

    def embed(self, texts: Sequence[str], *, progress: bool = False, out: np.ndarray | None = None,
              desc: str = "embedding passages") -> np.ndarray:
        """Embed ``texts`` in input order. ``out`` (e.g. an ``np.memmap``) receives the rows if given."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings")
        n = len(texts)
        out = output_rows(out, n, self.dim)
        if n == 0:
            return out
        from tqdm import tqdm

        tok = self._encoder._tokenizer
        if self._encoder.single:
            return self._embed_single(texts, out, progress, desc)
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
        order = np.argsort(lengths, kind="stable")
        idle: queue.SimpleQueue = queue.SimpleQueue()
        for w in self._workers:
            idle.put(w)

        def run(encs: list) -> np.ndarray:
            worker = idle.get()
            try:
                return worker.run_padded(encs)
            finally:
                idle.put(worker)

        with ThreadPoolExecutor(len(self._workers)) as pool, \
                tqdm(total=n, desc=desc, unit="passage", disable=not progress, smoothing=0.05,
                     mininterval=1.0) as bar:
            for w0 in range(0, n, WINDOW):
                window = order[w0:w0 + WINDOW]
                encs = tok.encode_batch([texts[i] for i in window])
                tlen = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
                sub = np.argsort(tlen, kind="stable")
                batches = []
                start = 0
                while start < len(sub):
                    width = int(tlen[sub[min(start + MAX_ROWS, len(sub)) - 1]])
                    rows = max(1, min(MAX_ROWS, TOKEN_BUDGET // max(width, 1), len(sub) - start))
                    batches.append(sub[start:start + rows])
                    start += rows
                for batch, vecs in zip(batches, pool.map(run, [[encs[j] for j in b] for b in batches])):
                    out[window[batch]] = vecs
                    bar.update(len(batch))
        return out

    def _embed_single(self, texts: Sequence[str], out: np.ndarray, progress: bool, desc: str) -> np.ndarray:
        from tqdm import tqdm

        one = self._encoder.encode_one
        n = len(texts)
        with ThreadPoolExecutor(self.threads) as pool, \
                tqdm(total=n, desc=desc, unit="passage", disable=not progress, smoothing=0.05,
                     mininterval=1.0) as bar:
            for w0 in range(0, n, WINDOW):
                rows = list(pool.map(one, texts[w0:w0 + WINDOW]))
                out[w0:w0 + len(rows)] = np.concatenate(rows)
                bar.update(len(rows))
        return out

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)
