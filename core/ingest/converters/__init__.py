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


class SectionBuilder:
    """Body text cut into sections at headings; each section carries the path of the headings above it.

    Converters append body text to ``buf`` and call :meth:`heading` at each heading: a heading closes the
    open section and replaces every heading of its level or deeper on the path (an empty one only closes).
    """

    def __init__(self, sep: str = "") -> None:
        self.buf: list[str] = []
        self.first_heading = ""   # the document's first heading, any level
        self.first_h1 = ""        # its first level-1 heading
        self._sep = sep
        self._stack: list[tuple[int, str]] = []
        self._sections: list[Section] = []

    def flush(self) -> None:
        text = clean(self._sep.join(self.buf))
        if text:
            self._sections.append(Section(tuple(h for _, h in self._stack), text))
        self.buf.clear()

    def heading(self, level: int, text: str) -> None:
        self.flush()
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        if text:
            self._stack.append((level, text))
            self.first_heading = self.first_heading or text
            if level == 1 and not self.first_h1:
                self.first_h1 = text

    def sections(self) -> list[Section]:
        """The sections, the open one closed."""
        self.flush()
        return self._sections


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
