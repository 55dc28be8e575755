"""A JSONL corpus: one document a line (id, title, url, text, metadata), validated as it is read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from core.ingest.models import IngestError, IngestReport, Section, SourceDocument
from core.search.bundle import DocumentError, validate_document


def iter_jsonl(path: Path, report: IngestReport) -> Iterator[SourceDocument]:
    """Documents in file order; any bad line raises IngestError naming it (whatever on_error says)."""
    path = Path(path)
    seen: dict[str, int] = {}
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise IngestError(str(path), f"cannot read ({exc.strerror})") from exc
    report.files_seen += 1
    with fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise IngestError(str(path), f"not UTF-8 ({exc.reason})", n) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IngestError(str(path), f"invalid JSON ({exc.msg} at column {exc.colno})", n) from None
            try:
                doc = validate_document(obj)
            except DocumentError as exc:
                raise IngestError(str(path), str(exc), n) from None
            if doc["id"] in seen:
                raise IngestError(str(path), f"duplicate id {doc['id']!r} (first on line {seen[doc['id']]})", n)
            seen[doc["id"]] = n
            report.documents += 1
            yield SourceDocument(doc["id"], doc["title"], doc["url"], doc["metadata"],
                                 [Section((), doc["text"])], "jsonl")
    if not seen:
        raise IngestError(str(path), "no documents")
