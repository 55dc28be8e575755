"""The data that flows through ingestion: documents with sections, and what was skipped."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path, e.g. ``("Installation", "Proxies")``; ``()`` for none."""

    heading: tuple[str, ...]
    text: str


@dataclass
class SourceDocument:
    """One document as the chunker sees it. ``source_type`` is mirrored into ``metadata["source_type"]``."""

    id: str
    title: str
    url: str
    metadata: dict
    sections: list[Section]
    source_type: str

    def __post_init__(self) -> None:
        self.metadata = dict(self.metadata)
        self.metadata.setdefault("source_type", self.source_type)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What a source run saw: filled in while documents are yielded."""

    skipped: list[Skipped] = field(default_factory=list)
    files_seen: int = 0
    documents: int = 0
    ignored: int = 0                             # files of a type no converter reads
    source: dict = field(default_factory=dict)   # description of the source, for the manifest

    def summary(self) -> dict:
        return {"files_seen": self.files_seen, "documents": self.documents, "ignored": self.ignored,
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped]}


class IngestError(ValueError):
    """Bad input: ``path`` (a file, a relative id or a blob name), ``reason``, and a 1-based JSONL ``line``."""

    def __init__(self, path: str, reason: str, line: int = 0) -> None:
        self.path = str(path)
        self.reason = reason
        self.line = line
        where = f"line {line}: " if line else ""
        super().__init__(f"{self.path}: {where}{reason}" if self.path else f"{where}{reason}")


class ConversionError(Exception):
    """A converter could not get text out of a file (corrupt, encrypted, empty, too deep, ...)."""
