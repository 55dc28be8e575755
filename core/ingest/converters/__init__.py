"""One converter per format: ``convert(data: bytes, name: str) -> Converted``.

A converter raises :class:`core.ingest.models.ConversionError` with a reason a person
can act on (corrupt, encrypted, no extractable text, too deeply nested, ...).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from core.ingest.models import ConversionError, Section

# extension -> (module, source_type)
FORMATS: dict[str, tuple[str, str]] = {
    ".md": ("markdown", "markdown"), ".markdown": ("markdown", "markdown"),
    ".txt": ("text", "text"),
    ".html": ("html", "html"), ".htm": ("html", "html"),
    ".pdf": ("pdf", "pdf"),
    ".docx": ("docx", "docx"),
}


@dataclass
class Converted:
    title: str
    sections: list[Section]
    metadata: dict = field(default_factory=dict)


def format_of(name: str) -> tuple[str, str] | None:
    """(converter module, source_type) for a file name, or None when unsupported."""
    return FORMATS.get(PurePosixPath(name).suffix.lower())


def convert(data: bytes, name: str) -> tuple[Converted, str]:
    """Convert one file; return the result and its source_type."""
    fmt = format_of(name)
    if fmt is None:
        raise ConversionError(f"unsupported file type {PurePosixPath(name).suffix or '(none)'}")
    module = importlib.import_module(f"core.ingest.converters.{fmt[0]}")
    result = module.convert(data, name)
    if not any(s.text.strip() for s in result.sections):
        raise ConversionError("no extractable text" + (" (a scanned PDF without OCR?)" if fmt[1] == "pdf" else ""))
    if not result.title.strip():
        result.title = fallback_title(name)
    return result, fmt[1]


def fallback_title(name: str) -> str:
    """The file name without extension, underscores and dashes read as spaces."""
    stem = PurePosixPath(name).stem
    return " ".join(stem.replace("_", " ").replace("-", " ").split()) or stem


def clean(text: str) -> str:
    """Collapse runs of spaces inside lines and runs of blank lines."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), else UTF-16 with a BOM, else Windows-1252; refuse binary."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ConversionError(f"not valid UTF-16 ({exc.reason})") from None
    if b"\x00" in data[:8192]:
        raise ConversionError("binary content, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")
