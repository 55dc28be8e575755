"""Build a search-index bundle from a JSONL corpus, a folder of documents, or a Blob container.

    python -m core.search.build SOURCE --out DIR [--from-blob CONTAINER[/PREFIX]] [--cache DIR]
        [--base-url URL] [--on-error skip|fail] [--strict] [--max-file-mb N] [--chunking flat|sections]
        [--dense auto|exact|hnsw] [--ann-threshold N] [--ann-threads N]
        [--version V] [--random-embeddings] [--upload [--container NAME]] [--quiet]

SOURCE is a JSONL file (one document a line: id, title, url, text, metadata) or a folder
of .md/.markdown/.txt/.html/.htm/.pdf/.docx files, walked recursively; ``--from-blob``
reads a Blob container (optionally under a prefix) with the app's connection settings
instead. See docs/ingest.md.

The pipeline (docs/builder.md): source -> converter per format -> structure-aware
chunking -> BundleWriter -> embedding cache (only new passage texts are embedded, by
the bundle's own ONNX graph) -> BM25 + dense index -> manifest -> probe -> atomic swap.

Exit codes: 0 built; 1 built but files were skipped and ``--strict`` was given (then
nothing is uploaded); 2 bad input (a bad JSONL line, no documents, a bad file with
``--on-error fail``). Whatever happens, DIR keeps its previous bundle until the new one
is complete, and nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import sha256_file, staging_dir, write_manifest
from core.ingest import MAX_FILE_BYTES, IngestError, IngestReport, iter_documents
from core.ingest.chunking import chunk_document, chunk_settings, flatten, index_text
from core.search import bundle as B

log = logging.getLogger("core.search.build")

CorpusError = IngestError   # the name the builder's callers have always caught
CACHE_SUFFIX = ".embedding-cache"
_VECTORS_TMP = ".vectors.f32"


def default_cache_dir(out_dir: Path) -> Path:
    """Beside the output folder (it survives the swap of the bundle): ``<out>.embedding-cache``."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + CACHE_SUFFIX)


def _source_description(source, from_blob: str | None, report: IngestReport) -> dict[str, Any]:
    desc = dict(report.source)
    if desc.get("kind") == "jsonl":
        desc["sha256"] = sha256_file(Path(source))
    desc.update({"files_seen": report.files_seen, "documents": report.documents, "ignored": report.ignored,
                 "skipped": [{"path": s.path, "reason": s.reason} for s in report.skipped]})
    return desc


def build_bundle(source, out_dir: Path, *, from_blob: str | None = None, version: str | None = None,
                 random_embeddings: bool = False, progress: bool = True, cache_dir: Path | None = None,
                 base_url: str = "", on_error: str = "skip", max_file_bytes: int = MAX_FILE_BYTES,
                 dense: str = "auto", ann_threshold: int = B.ANN_THRESHOLD, settings=None,
                 report: IngestReport | None = None, structured: bool = False,
                 min_section_words: int | None = None, ann_threads: int = 1) -> dict:
    """Build the bundle of ``source`` (or ``from_blob``) into ``out_dir`` (replaced atomically); return the manifest.

    Raises IngestError (alias CorpusError) on bad input; ``out_dir`` is then untouched.
    ``report`` (optional) receives the files seen and skipped. ``structured=True`` cuts
    passages per section, each carrying its heading path; the default reads each document
    as one section (headings kept as lines of text), which measured one question better
    under the default fusion on the pkgdocs dev set (docs/ingest.md). JSONL is the same
    either way. ``ann_threads > 1`` builds the HNSW graph on that many threads: faster, but
    the graph file is then not byte-identical across runs.
    """
    from core.search import export

    out_dir = Path(out_dir)
    report = report if report is not None else IngestReport()
    t0 = time.perf_counter()
    encoder_src = export.ensure_encoder()
    embedder = None
    if not random_embeddings:
        from core.search.embed import PassageEmbedder

        embedder = PassageEmbedder.load(encoder_src)
        dim = embedder.dim
    else:
        import json

        dim = int(json.loads((encoder_src / "encoder.json").read_text())["dim"])
    chunking = chunk_settings(structured=structured) if min_section_words is None else \
        chunk_settings(structured=structured, min_words=min_section_words)
    with staging_dir(out_dir) as tmp:
        writer = B.BundleWriter(tmp, dim=dim, dense=dense, ann_threshold=ann_threshold, chunking=chunking,
                                ann_threads=ann_threads)
        probe_query = ""
        docs = iter_documents(None if from_blob else source, from_blob=from_blob, settings=settings,
                              base_url=base_url, on_error=on_error, max_file_bytes=max_file_bytes, report=report,
                              progress=progress)
        for doc in docs:
            if not structured:
                doc.sections = flatten(doc.sections)
            drafts = chunk_document(doc, chunking["max_words"], chunking["overlap"], chunking["min_section_words"])
            if not drafts:   # converters refuse text-less files, so this is a JSONL record of blanks
                continue
            writer.add_document(id=doc.id, title=doc.title, url=doc.url, metadata=doc.metadata,
                                passages=[(d.heading, d.text) for d in drafts],
                                index_texts=[index_text(doc.title, d.heading, d.text) for d in drafts])
            probe_query = probe_query or doc.title or drafts[0].text[:200]
        n = writer.passage_count
        log.info("%d documents, %d passages (%d files seen, %d skipped, %d of other types)",
                 report.documents, n, report.files_seen, len(report.skipped), report.ignored)
        vec_path = tmp / _VECTORS_TMP
        vectors = np.lib.format.open_memmap(vec_path, mode="w+", dtype=np.float32, shape=(n, dim))
        t_embed = time.perf_counter()
        if embedder is None:
            from core.search.dense import random_unit_vectors

            log.warning("random embeddings: this bundle is for latency benchmarks only")
            vectors[:] = random_unit_vectors(n, dim)
            emb_info: dict[str, Any] = {"random": True, "model": "random-unit-vectors", "embedded": n, "reused": 0}
        else:
            from core.ingest.embedcache import EmbeddingCache

            cache_root = Path(cache_dir) if cache_dir else default_cache_dir(out_dir)
            cache = EmbeddingCache(cache_root, embedder.fingerprint, dim)
            _, stats = cache.get_or_embed(writer.index_texts, lambda texts: embedder.embed(texts),
                                          progress=progress, out=vectors)
            cache.commit()   # valid whatever happens next: the next build reuses these vectors
            emb_info = {"random": False, "model": embedder.name, "fingerprint": embedder.fingerprint,
                        "max_seq_length": int(embedder.max_seq_length), **stats}
            log.info("embeddings: %d embedded, %d reused from the cache in %.1fs",
                     stats["embedded"], stats["reused"], time.perf_counter() - t_embed)
        vectors.flush()
        fields = writer.finish(vectors)
        del vectors
        vec_path.unlink()
        enc_cfg = export.copy_encoder(encoder_src, tmp / B.ENCODER_DIR)
        if int(enc_cfg["dim"]) != dim:
            raise RuntimeError(f"embedder gives {dim}-d vectors, encoder says {enc_cfg['dim']}")
        fields["embeddings"] = {**fields.get("embeddings", {}), **emb_info}
        manifest = write_manifest(
            tmp, kind=B.KIND, format_version=B.FORMAT_VERSION, version=version, **fields,
            encoder={k: enc_cfg.get(k) for k in ("name", "dim", "max_seq_length", "source_package",
                                                  "source_package_version", "fingerprint", "recipe")},
            source=_source_description(source, from_blob, report))
        # Refuse to publish a bundle that does not load and answer.
        from core.search.engine import SearchIndex

        probe = SearchIndex.load(tmp, deep_verify=False)
        if not probe.search(probe_query, top_k=1):
            raise RuntimeError("the new bundle answers nothing to its first document's title")
        del probe
    log.info("bundle %s written to %s in %.1fs", manifest["version"], out_dir, time.perf_counter() - t0)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.search.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path, help="JSONL corpus or folder of documents")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced if present)")
    parser.add_argument("--from-blob", metavar="CONTAINER[/PREFIX]", help="read the documents from Blob Storage")
    parser.add_argument("--cache", type=Path, help=f"embedding cache folder (default: <out>{CACHE_SUFFIX})")
    parser.add_argument("--base-url", default="", help="document urls: this joined with the relative path")
    parser.add_argument("--on-error", choices=("skip", "fail"), default="skip",
                        help="a bad file: report it and go on (default), or stop")
    parser.add_argument("--strict", action="store_true", help="exit 1 (and do not upload) when a file was skipped")
    parser.add_argument("--max-file-mb", type=float, default=MAX_FILE_BYTES / 2**20,
                        help="files larger than this are skipped (default %(default)g)")
    parser.add_argument("--chunking", choices=("flat", "sections"), default="flat",
                        help="files: word windows over the whole document (default), or per section with "
                             "heading paths (see docs/ingest.md)")
    parser.add_argument("--dense", choices=B.DENSE_KINDS, default="auto", help="dense index kind")
    parser.add_argument("--ann-threshold", type=int, default=B.ANN_THRESHOLD,
                        help="with --dense auto: HNSW above this many passages (default %(default)d)")
    parser.add_argument("--ann-threads", type=int, default=1,
                        help="threads for the HNSW graph (default 1: byte-identical rebuilds; more is faster, "
                             "not reproducible)")
    parser.add_argument("--version", help="bundle version (default: UTC time + random suffix)")
    parser.add_argument("--random-embeddings", action="store_true",
                        help="random unit vectors instead of real embeddings (benchmarks only)")
    parser.add_argument("--upload", action="store_true", help="publish the bundle to Blob Storage after building")
    parser.add_argument("--container", help="blob container (default: INDEX_CONTAINER setting)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    args = parser.parse_args(argv)
    if args.container and not args.upload:
        parser.error("--container needs --upload")
    if (args.source is None) == (args.from_blob is None):
        parser.error("give a SOURCE (JSONL file or folder) or --from-blob CONTAINER[/PREFIX], not both")
    if args.max_file_mb <= 0:
        parser.error("--max-file-mb must be positive")
    if args.ann_threads < 1:
        parser.error("--ann-threads must be at least 1")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = None
    if args.from_blob or args.upload:
        from core.settings import Settings

        settings = Settings.from_env()
    t0 = time.perf_counter()
    report = IngestReport()
    try:
        manifest = build_bundle(args.source, args.out, from_blob=args.from_blob, version=args.version,
                                random_embeddings=args.random_embeddings, progress=not args.quiet,
                                cache_dir=args.cache, base_url=args.base_url, on_error=args.on_error,
                                max_file_bytes=int(args.max_file_mb * 2**20), dense=args.dense,
                                ann_threshold=args.ann_threshold, settings=settings, report=report,
                                structured=args.chunking == "sections", ann_threads=args.ann_threads)
    except IngestError as exc:
        log.error("%s", exc)
        return 2
    emb = manifest.get("embeddings", {})
    summary = (f"built {args.out} version {manifest['version']}: {manifest['doc_count']} documents, "
               f"{manifest['passage_count']} passages ({emb.get('embedded', 0)} embedded, "
               f"{emb.get('reused', 0)} reused) in {time.perf_counter() - t0:.1f}s")
    if report.skipped:
        print(f"skipped {len(report.skipped)} file(s):", file=sys.stderr)
        for s in report.skipped:
            print(f"  {s.path}: {s.reason}", file=sys.stderr)
        if args.strict:
            print(summary + "; not uploaded (--strict and files were skipped)")
            return 1
    if args.upload:
        from core.adapters.blob import publish_artifact

        container = args.container or settings.index_container
        published = publish_artifact(settings, args.out, container)
        summary += f"; uploaded to container {container!r} as version {published}"
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
