"""PDF with pypdf: text per page; the outline (bookmarks), when there is one, gives the sections.

The title is the document information's /Title, else the first outline entry. An
encrypted PDF that does not open with an empty password, a corrupt one and one
without a text layer (a scan) are refused with that reason.
"""

from __future__ import annotations

import io
import logging

from core.ingest.converters import Converted, clean
from core.ingest.models import ConversionError, Section

MAX_PAGES = 5000
_PLACEHOLDER_TITLES = {"untitled", "untitled document", "document", "title", "none", "null"}


def _meta_title(meta) -> str:
    """/Title unless it is a placeholder ("untitled") or the producer's prefix around a file name."""
    title = " ".join(str(meta.title or "").split()) if meta is not None and meta.title else ""
    for prefix in ("Microsoft Word - ", "Microsoft PowerPoint - "):
        if title.startswith(prefix):
            title = title[len(prefix):].rsplit(".", 1)[0]
    return "" if title.lower() in _PLACEHOLDER_TITLES else title


def _outline(reader) -> list[tuple[int, tuple[str, ...]]]:
    """(page index, heading path) of every outline entry, in page order."""
    out: list[tuple[int, tuple[str, ...]]] = []
    todo = [(reader.outline, ())]
    while todo:   # iterative: nested outlines cannot exhaust the stack
        items, path = todo.pop()
        last: tuple[str, ...] = path
        for item in items:
            if isinstance(item, list):
                todo.append((item, last))
                continue
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # noqa: BLE001 - a broken destination only loses that bookmark
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            if title and page is not None and page >= 0:
                last = (*path, title)
                out.append((page, last))
    out.sort(key=lambda e: e[0])
    return out


def convert(data: bytes, name: str) -> Converted:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception:  # noqa: BLE001 - unsupported cipher and friends
                ok = 0
            if not ok:
                raise ConversionError("encrypted PDF (needs a password)")
        if len(reader.pages) > MAX_PAGES:
            raise ConversionError(f"more than {MAX_PAGES} pages")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = _meta_title(reader.metadata)
        try:
            marks = _outline(reader)
        except Exception:  # noqa: BLE001 - a broken outline: read the text without it
            marks = []
    except ConversionError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
            RecursionError) as exc:
        raise ConversionError(f"corrupt PDF ({type(exc).__name__}: {exc})") from None
    if not marks:
        return Converted(title, [Section((), clean("\n\n".join(pages)))])
    sections: list[Section] = []
    head = clean("\n\n".join(pages[:marks[0][0]]))
    if head:
        sections.append(Section((), head))
    for k, (page, path) in enumerate(marks):
        end = marks[k + 1][0] if k + 1 < len(marks) else len(pages)
        text = clean("\n\n".join(pages[page:max(end, page + 1)] if end > page else []))
        if end == page:   # the next bookmark starts on the same page: that page goes to the last of them
            continue
        sections.append(Section(path, text))
    return Converted(title or marks[0][1][-1], sections)
