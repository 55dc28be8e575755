"""Plain text: one section; the title is the file name (plain text has no title of its own)."""

from __future__ import annotations

from core.ingest.converters import Converted, clean, decode_text
from core.ingest.models import Section


def convert(data: bytes, name: str) -> Converted:
    return Converted("", [Section((), clean(decode_text(data)))])
