"""Build a search-index bundle from a JSONL corpus.

    python -m core.search.build CORPUS.jsonl --out DIR [--version V] [--random-embeddings]
                                [--upload [--container NAME]]

One document per line: ``{"id": str, "title": str, "url": str, "text": str,
"metadata": {...}}`` (title, url and metadata optional). Bad input (invalid
JSON, missing/empty text, non-string id, duplicate id, ...) exits with code 2
and a message naming the line; nothing is left behind, since the bundle is
built in a staging folder that becomes DIR only when complete.

Passages are embedded with sentence-transformers (torch, build time only); the
same model, exported to ONNX, is copied into the bundle to encode queries.
``--random-embeddings`` replaces the embeddings by random unit vectors, for
latency benchmarks only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import sha256_file, staging_dir, write_manifest
from core.search import bundle as B
from core.search.bm25 import BM25Index
from core.search.dense import DenseIndex, random_unit_vectors
from core.search.text import DEFAULT_TOKENIZER, MAX_WORDS, OVERLAP

log = logging.getLogger("core.search.build")

EMBED_CHUNK = 512  # texts handed to sentence-transformers at once (it sorts each chunk by length)
EMBED_BATCH = 32


class CorpusError(ValueError):
    """Bad corpus input; ``line`` is 1-based (0 when the whole file is at fault)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


def read_corpus(path: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise CorpusError(0, f"cannot read {path}: {exc.strerror}") from exc
    with fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusError(n, f"not UTF-8 ({exc.reason})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(n, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
            try:
                doc = B.validate_document(obj)
            except B.DocumentError as exc:
                raise CorpusError(n, str(exc)) from None
            if doc["id"] in seen:
                raise CorpusError(n, f"duplicate id {doc['id']!r} (first on line {seen[doc['id']]})")
            seen[doc["id"]] = n
            docs.append(doc)
    if not docs:
        raise CorpusError(0, f"{path}: no documents")
    return docs


def _embed(texts: list[str], progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    from tqdm import tqdm

    from core.search import export

    model = export.load_sentence_transformer()
    dim_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    out = np.empty((len(texts), int(dim_of())), dtype=np.float32)
    t0 = time.perf_counter()
    with tqdm(total=len(texts), desc="embedding passages", unit="passage", disable=not progress) as bar:
        for start in range(0, len(texts), EMBED_CHUNK):
            chunk = texts[start:start + EMBED_CHUNK]
            out[start:start + len(chunk)] = model.encode(
                chunk, batch_size=EMBED_BATCH, normalize_embeddings=True, convert_to_numpy=True,
                show_progress_bar=False).astype(np.float32)
            bar.update(len(chunk))
    elapsed = time.perf_counter() - t0
    log.info("embedded %d passages in %.1fs (%.0f/s)", len(texts), elapsed, len(texts) / max(elapsed, 1e-9))
    return out, {"model": "sentence-transformers", "max_seq_length": int(model.max_seq_length)}


def build_bundle(corpus_path: Path, out_dir: Path, *, version: str | None = None, random_embeddings: bool = False,
                 progress: bool = True) -> dict:
    """Build the bundle of ``corpus_path`` into ``out_dir`` (replaced atomically); return the manifest.

    Raises CorpusError on bad input, before anything is written.
    """
    from core.search import export

    corpus_path, out_dir = Path(corpus_path), Path(out_dir)
    t0 = time.perf_counter()
    docs = read_corpus(corpus_path)
    chunked = B.chunk_documents(docs, MAX_WORDS, OVERLAP)
    log.info("%s: %d documents, %d passages", corpus_path, len(docs), len(chunked.passages))
    encoder_src = export.ensure_encoder()
    with staging_dir(out_dir) as tmp:
        B.write_documents(tmp, docs, chunked)
        B.write_passages(tmp, docs, chunked)
        bm25 = BM25Index.build(chunked.index_texts, DEFAULT_TOKENIZER, progress=False)
        bm25.save(tmp / B.BM25_DIR)
        log.info("BM25 index built (%d terms)", bm25.settings()["vocab_size"])
        enc_cfg = export.copy_encoder(encoder_src, tmp / B.ENCODER_DIR)
        if random_embeddings:
            log.warning("random embeddings: this bundle is for latency benchmarks only")
            matrix = random_unit_vectors(len(chunked.passages), int(enc_cfg["dim"]))
            emb_info: dict[str, Any] = {"model": "random-unit-vectors"}
        else:
            matrix, emb_info = _embed(chunked.index_texts, progress)
            if matrix.shape[1] != int(enc_cfg["dim"]):
                raise RuntimeError(f"model gives {matrix.shape[1]}-d vectors, encoder says {enc_cfg['dim']}")
        DenseIndex.save(tmp / B.EMBEDDINGS, matrix)
        manifest = write_manifest(
            tmp, kind=B.KIND, format_version=B.FORMAT_VERSION, version=version,
            doc_count=len(docs), passage_count=len(chunked.passages),
            encoder={k: enc_cfg.get(k) for k in ("name", "dim", "max_seq_length", "source_package",
                                                  "source_package_version", "fingerprint", "recipe")},
            bm25=bm25.settings(),
            chunking={"max_words": MAX_WORDS, "overlap": OVERLAP, "indexed_text": "title + newline + passage"},
            embeddings={"dtype": "float32", "shape": list(matrix.shape), "random": bool(random_embeddings),
                        "normalized": True, **emb_info},
            source={"file": corpus_path.name, "sha256": sha256_file(corpus_path)},
        )
        # Refuse to publish a bundle that does not load and answer.
        from core.search.engine import SearchIndex

        probe = SearchIndex.load(tmp, deep_verify=False)
        if not probe.search(docs[0]["title"] or docs[0]["text"][:200], top_k=1):
            raise RuntimeError("the new bundle answers nothing to its first document's title")
        del probe
    log.info("bundle %s written to %s in %.1fs", manifest["version"], out_dir, time.perf_counter() - t0)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.search.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="JSONL corpus, one document per line")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced if present)")
    parser.add_argument("--version", help="bundle version (default: UTC time + random suffix)")
    parser.add_argument("--random-embeddings", action="store_true",
                        help="random unit vectors instead of real embeddings (benchmarks only)")
    parser.add_argument("--upload", action="store_true", help="publish the bundle to Blob Storage after building")
    parser.add_argument("--container", help="blob container (default: INDEX_CONTAINER setting)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    args = parser.parse_args(argv)
    if args.container and not args.upload:
        parser.error("--container needs --upload")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        manifest = build_bundle(args.corpus, args.out, version=args.version,
                                random_embeddings=args.random_embeddings, progress=not args.quiet)
    except CorpusError as exc:
        log.error("%s: %s", args.corpus, exc)
        return 2
    summary = (f"built {args.out} version {manifest['version']}: {manifest['doc_count']} documents, "
               f"{manifest['passage_count']} passages in {time.perf_counter() - t0:.1f}s")
    if args.upload:
        from core.adapters.blob import publish_artifact
        from core.settings import Settings

        settings = Settings.from_env()
        container = args.container or settings.index_container
        published = publish_artifact(settings, args.out, container)
        summary += f"; uploaded to container {container!r} as version {published}"
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
