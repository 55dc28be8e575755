"""Sections -> passages that follow the document's structure.

Each section is cut into word windows on its own (``core.search.text.split_passages``:
``max_words`` words, ``overlap`` shared), so a passage never straddles two sections,
and carries its heading path ("Installation > Proxies"). What BM25 and the encoder
see of a passage is :func:`index_text`: title, heading path and text, one a line.

A JSONL record is one section with an empty heading: exactly the word windows and
the "title\\ntext" index text the builder has always produced.

Sections with too few words to stand alone (``min_words``) are folded into the next
section of the same top-level heading, their heading kept as a line of text, so a
page of one-line sections does not become a page of one-line passages.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.ingest.models import Section, SourceDocument
from core.search.text import MAX_WORDS, OVERLAP, split_passages

HEADING_SEP = " > "
MIN_WORDS = 0   # 0: every section stands alone (measured: see docs/ingest.md)


@dataclass(frozen=True)
class PassageDraft:
    heading: str
    text: str


def heading_path(heading: tuple[str, ...]) -> str:
    return HEADING_SEP.join(h.strip() for h in heading if h and h.strip())


def index_text(title: str, heading: str, text: str) -> str:
    """The non-empty parts of title, heading path and passage text, joined by newlines."""
    return "\n".join(p for p in (title, heading, text) if p)


def _fold_small(sections: list[Section], min_words: int) -> list[Section]:
    if min_words <= 0 or len(sections) < 2:
        return sections
    out: list[Section] = []
    carry: Section | None = None
    for s in sections:
        if carry is not None:
            if carry.heading[:1] == s.heading[:1]:
                extra = heading_path(s.heading[len(carry.heading):]) if s.heading[:len(carry.heading)] == \
                    carry.heading else heading_path(s.heading)
                text = carry.text + ("\n\n" + extra if extra else "") + "\n\n" + s.text
                s = Section(carry.heading, text.strip())
            else:
                out.append(carry)
            carry = None
        if len(s.text.split()) < min_words:
            carry = s
        else:
            out.append(s)
    if carry is not None:
        out.append(carry)
    return out


def chunk_document(doc: SourceDocument, max_words: int = MAX_WORDS, overlap: int = OVERLAP,
                   min_words: int = MIN_WORDS) -> list[PassageDraft]:
    """The passages of ``doc`` in order; empty sections give none."""
    drafts: list[PassageDraft] = []
    for section in _fold_small([s for s in doc.sections if s.text and s.text.strip()], min_words):
        heading = heading_path(section.heading)
        for part in split_passages(section.text, max_words, overlap) or [section.text.strip()]:
            drafts.append(PassageDraft(heading, part))
    return drafts


def flatten(sections: list[Section]) -> list[Section]:
    """All sections as one, headings kept as lines of text: the document read without its structure."""
    parts = []
    for s in sections:
        if s.heading:
            parts.append(s.heading[-1])
        parts.append(s.text)
    return [Section((), "\n\n".join(p for p in parts if p))]


def chunk_settings(max_words: int = MAX_WORDS, overlap: int = OVERLAP, min_words: int = MIN_WORDS,
                   structured: bool = True) -> dict:
    """What the manifest records about chunking."""
    return {"max_words": max_words, "overlap": overlap, "min_section_words": min_words,
            "split": "sections (headings) first, then word windows" if structured else "word windows only",
            "indexed_text": "title, heading path, passage joined by newlines"}
