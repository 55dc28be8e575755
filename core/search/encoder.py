"""The serving-time query encoder: onnxruntime + tokenizers only (no torch).

An encoder folder holds ``model.onnx`` (all-MiniLM-L6-v2 with mean pooling and
L2 normalisation inside the graph, see ``export.py``), ``tokenizer.json`` and
``encoder.json`` (name, dim, max_seq_length, source package and version).

Single texts are tokenised without padding (the shipped tokenizer.json pads to
128, which costs ~7 ms a query); batches are padded here to their longest
member. A graph with dynamic int8 quantisation (``encoder.json`` says
``"batching": "single"``) computes its activation scales over the whole input
tensor, so a text's vector would depend on its batch-mates and on padding:
such a graph is always run one text at a time, which keeps every vector a
function of its text alone (what the embedding cache and query/passage parity
rely on). Inputs are truncated to ``max_seq_length`` tokens. Output is float32,
L2-normalised, shape ``(n, dim)``. ``encode`` is safe to call from many threads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.artifacts import ArtifactError

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "encoder.json"
ENCODER_KIND = "onnx-encoder"
_BATCH = 64


class QueryEncoder:
    name: str
    dim: int

    def __init__(self, session, tokenizer, config: dict) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self.config = config
        self.name = str(config["name"])
        self.dim = int(config["dim"])
        self.max_seq_length = int(config["max_seq_length"])
        self._inputs = {i.name for i in session.get_inputs()}
        self._output = config.get("output", "sentence_embedding")
        self.single = config.get("batching", "padded") == "single"

    @classmethod
    def load(cls, encoder_dir: Path, *, threads: int = 1) -> "QueryEncoder":
        import onnxruntime as ort
        from tokenizers import Tokenizer

        encoder_dir = Path(encoder_dir)
        try:
            config = json.loads((encoder_dir / CONFIG_FILE).read_text(encoding="utf-8"))
            for key in ("name", "dim", "max_seq_length"):
                if key not in config:
                    raise ArtifactError(f"{encoder_dir / CONFIG_FILE}: no {key!r}")
            tokenizer = Tokenizer.from_file(str(encoder_dir / TOKENIZER_FILE))
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=int(config["max_seq_length"]))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = max(1, int(threads))
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            session = ort.InferenceSession(str(encoder_dir / MODEL_FILE), sess_options=opts,
                                           providers=["CPUExecutionProvider"])
        except ArtifactError:
            raise
        except Exception as exc:  # missing file, corrupt model or tokenizer, bad JSON
            raise ArtifactError(f"{encoder_dir}: cannot load the query encoder ({exc})") from exc
        enc = cls(session, tokenizer, config)
        out = enc.encode(["warm up"])  # first run initialises kernels; also checks the graph's output
        if out.shape != (1, enc.dim):
            raise ArtifactError(f"{encoder_dir}: encoder outputs {out.shape[1]} dims, config says {enc.dim}")
        return enc

    def run_padded(self, encs: list) -> np.ndarray:
        """Run tokenised texts as one batch padded to its longest member: float32 ``(len(encs), dim)``."""
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, e in enumerate(encs):
            m = len(e.ids)
            ids[row, :m] = e.ids
            mask[row, :m] = e.attention_mask
            types[row, :m] = e.type_ids
        return self._run(ids, mask, types)

    def _run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = types
        out = self._session.run([self._output], feed)[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        """One text, unpadded: float32 ``(1, dim)``."""
        e = self._tokenizer.encode(text)
        return self._run(np.asarray([e.ids], dtype=np.int64), np.asarray([e.attention_mask], dtype=np.int64),
                         np.asarray([e.type_ids], dtype=np.int64))

    def encode(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings")
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if n == 1:
            return self.encode_one(texts[0])
        out = np.empty((n, self.dim), dtype=np.float32)
        if self.single:
            for i, t in enumerate(texts):
                out[i] = self.encode_one(t)[0]
            return out
        encs = self._tokenizer.encode_batch(list(texts))
        # Sort by length so that each padded batch wastes little.
        order = sorted(range(n), key=lambda i: len(encs[i].ids))
        for start in range(0, n, _BATCH):
            chunk = order[start:start + _BATCH]
            out[chunk] = self.run_padded([encs[i] for i in chunk])
        return out
