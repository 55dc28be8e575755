"""Ingestion: sources -> converters -> SourceDocuments (see docs/builder.md and docs/ingest.md).

``iter_documents`` is the one entry point: a JSONL file, a folder (walked recursively) or a
Blob container/prefix in, documents out in a deterministic order (JSONL: file order; files:
sorted ids). Bad files are reported (``on_error="skip"``) or stop the run (``"fail"``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath
from typing import Iterator

from core.ingest.models import (ConversionError, IngestError, IngestReport, Section, Skipped,  # noqa: F401
                                SourceDocument)
from core.ingest.sources import SIDECAR, SourceFile

log = logging.getLogger("core.ingest")

MAX_FILE_BYTES = 50 * 2**20
ON_ERROR = ("skip", "fail")


def _folder_of(rel: str) -> str:
    parent = PurePosixPath(rel).parent.as_posix()
    return "" if parent == "." else parent


class _Sidecars:
    """Per-folder ``_meta.json``: ``{"metadata": {...}, "files": {"name.pdf": {"title", "url", "metadata"}}}``.

    ``metadata`` applies to every file of the folder and its subfolders (deeper folders
    override); a ``files`` entry applies to that one file and wins over the folder's.
    """

    def __init__(self, files: list[SourceFile], report: IngestReport, on_error: str) -> None:
        self._raw = {_folder_of(f.id): f for f in files if PurePosixPath(f.id).name == SIDECAR}
        self._parsed: dict[str, dict] = {}
        self._report = report
        self._on_error = on_error

    def _load(self, folder: str) -> dict:
        if folder in self._parsed:
            return self._parsed[folder]
        spec: dict = {}
        f = self._raw.get(folder)
        if f is not None:
            try:
                obj = json.loads(f.read())
                if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict) \
                        or not isinstance(obj.get("files", {}), dict):
                    raise ValueError('expected {"metadata": {...}, "files": {"name": {...}}}')
                spec = obj
            except (OSError, ValueError) as exc:
                reason = f"bad sidecar ({exc})"
                if self._on_error == "fail":
                    raise IngestError(f.id, reason) from None
                self._report.skipped.append(Skipped(f.id, reason))
        self._parsed[folder] = spec
        return spec

    def for_file(self, rel: str) -> tuple[dict, dict]:
        """(metadata, per-file entry) that apply to ``rel``."""
        folder = _folder_of(rel)
        chain = [""]
        if folder:
            parts = folder.split("/")
            chain += ["/".join(parts[:i + 1]) for i in range(len(parts))]
        meta: dict = {}
        for d in chain:
            meta.update(self._load(d).get("metadata", {}))
        entry = self._load(folder).get("files", {}).get(PurePosixPath(rel).name, {})
        if not isinstance(entry, dict):
            entry = {}
        meta.update(entry.get("metadata", {}) if isinstance(entry.get("metadata", {}), dict) else {})
        return meta, entry


def _file_documents(files: list[SourceFile], *, on_error: str, max_file_bytes: int, report: IngestReport,
                    progress: bool) -> Iterator[SourceDocument]:
    from tqdm import tqdm

    from core.ingest import converters

    sidecars = _Sidecars(files, report, on_error)
    docs = [f for f in files if PurePosixPath(f.id).name != SIDECAR]
    with tqdm(total=len(docs), desc="reading files", unit="file", disable=not progress) as bar:
        for f in docs:
            bar.update(1)
            report.files_seen += 1
            if converters.format_of(f.id) is None:
                report.ignored += 1
                continue
            try:
                if f.size > max_file_bytes:
                    raise ConversionError(f"{f.size} bytes: over the {max_file_bytes} byte limit per file")
                try:
                    data = f.read()
                except Exception as exc:  # noqa: BLE001 - OSError, Azure errors: the file is unreadable
                    raise ConversionError(f"unreadable ({type(exc).__name__}: {exc})") from None
                if len(data) > max_file_bytes:
                    raise ConversionError(f"{len(data)} bytes: over the {max_file_bytes} byte limit per file")
                try:
                    result, source_type = converters.convert(data, f.id)
                except ConversionError:
                    raise
                except (RecursionError, MemoryError, Exception) as exc:  # noqa: BLE001 - a library failed
                    raise ConversionError(f"conversion failed ({type(exc).__name__}: {exc})") from None
            except ConversionError as exc:
                reason = str(exc)
                log.warning("skipped %s: %s", f.id, reason)
                if on_error == "fail":
                    raise IngestError(f.id, reason) from None
                report.skipped.append(Skipped(f.id, reason))
                continue
            extra, entry = sidecars.for_file(f.id)
            metadata = {**extra, **result.metadata, "modified": f.modified}
            title = entry.get("title") if isinstance(entry.get("title"), str) else result.title
            url = entry.get("url") if isinstance(entry.get("url"), str) else f.url
            report.documents += 1
            yield SourceDocument(f.id, title, url, metadata, result.sections, source_type)


def iter_documents(source: str | Path | None, *, from_blob: str | None = None, settings=None, base_url: str = "",
                   on_error: str = "skip", max_file_bytes: int = MAX_FILE_BYTES, report: IngestReport,
                   progress: bool = True) -> Iterator[SourceDocument]:
    """The documents of a JSONL file, a folder, or (``from_blob``) a Blob ``CONTAINER[/PREFIX]``."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}")
    if (source is None) == (from_blob is None):
        raise ValueError("give either a SOURCE path or from_blob, not both")
    if from_blob is not None:
        from core.ingest.sources.blob import list_blob

        files = list_blob(from_blob, settings, base_url)
        report.source = {"kind": "blob", "container": from_blob.split("/", 1)[0],
                         "prefix": from_blob.partition("/")[2]}
    else:
        path = Path(source)
        if path.is_dir():
            from core.ingest.sources.folder import list_folder

            files = list_folder(path, base_url)
            report.source = {"kind": "folder", "path": path.name}
        elif path.is_file() or not path.exists():
            from core.ingest.sources.jsonl import iter_jsonl

            report.source = {"kind": "jsonl", "file": path.name}
            yield from iter_jsonl(path, report)
            return
        else:
            raise IngestError(str(path), "not a file or folder")
    docs = _file_documents(files, on_error=on_error, max_file_bytes=max_file_bytes, report=report,
                           progress=progress)
    n = 0
    for doc in docs:
        n += 1
        yield doc
    if n == 0:
        raise IngestError(from_blob or str(source), "no documents" + (
            f" ({len(report.skipped)} files skipped)" if report.skipped else ""))
