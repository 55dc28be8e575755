"""Word (.docx) with python-docx: "Heading N" / "Title" paragraph styles give the sections.

The title is the core property ``title``, else the first Title-style paragraph, else
the first heading. Tables are read row by row. The zip is checked before it is
opened: too many entries, too many uncompressed bytes, or an entry that inflates more
than ``MAX_RATIO`` times (a zip bomb) is refused.
"""

from __future__ import annotations

import io
import re
import zipfile

from core.ingest.converters import Converted, SectionBuilder
from core.ingest.models import ConversionError

MAX_ENTRIES = 10_000
MAX_UNCOMPRESSED = 256 * 2**20
MAX_RATIO = 200
_LEVEL = re.compile(r"heading\s*(\d)", re.I)


def check_zip(data: bytes) -> None:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ConversionError(f"corrupt DOCX (not a zip: {exc})") from None
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ConversionError(f"DOCX with {len(infos)} zip entries (limit {MAX_ENTRIES})")
    total = sum(i.file_size for i in infos)
    if total > MAX_UNCOMPRESSED:
        raise ConversionError(f"DOCX inflates to {total} bytes (limit {MAX_UNCOMPRESSED}): zip bomb?")
    for i in infos:
        if i.file_size > 2**20 and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            raise ConversionError(f"DOCX entry {i.filename} inflates {i.file_size // max(i.compress_size, 1)}x: "
                                  "zip bomb?")
    if "word/document.xml" not in zf.namelist():
        raise ConversionError("not a Word document (no word/document.xml)")


def _style_level(paragraph) -> int:
    try:
        name = paragraph.style.name or ""
    except (KeyError, AttributeError, ValueError):
        return 0
    if name.lower() == "title":
        return -1
    m = _LEVEL.match(name)
    return int(m.group(1)) if m else 0


def convert(data: bytes, name: str) -> Converted:
    check_zip(data)
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        core_title = (document.core_properties.title or "").strip()
        blocks = list(document.iter_inner_content())
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001 - python-docx raises many kinds on broken parts
        raise ConversionError(f"corrupt DOCX ({type(exc).__name__}: {exc})") from None
    out = SectionBuilder(sep="\n")
    buf = out.buf
    style_title = ""

    for block in blocks:
        if isinstance(block, Table):
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:
                    t = " ".join(cell.text.split())
                    if t and (not cells or cells[-1] != t):   # merged cells repeat their text
                        cells.append(t)
                buf.append(" | ".join(cells))
            continue
        text = " ".join(block.text.split())
        level = _style_level(block)
        if level == -1:
            style_title = style_title or text
            continue
        if level and text:
            out.heading(level, text)
            continue
        buf.append(block.text)
    sections = out.sections()
    return Converted(core_title or style_title or out.first_heading, sections)
