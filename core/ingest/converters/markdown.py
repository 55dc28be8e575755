"""Markdown (CommonMark + tables) with markdown-it-py: headings split sections, markup is dropped.

Text is what a reader sees: inline markup, link targets and HTML tags go; code blocks
stay. YAML front matter's ``title:`` wins over the first heading.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from core.ingest.converters import Converted, SectionBuilder, decode_text

_MD = MarkdownIt("commonmark", {"html": True}).enable("table")
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S)
_TAG = re.compile(r"<[^>]{0,2000}>")
_BLOCK_END = {"paragraph_close", "list_item_close", "tr_close", "blockquote_close", "table_close"}


def _front_matter(text: str) -> tuple[str, str]:
    m = _FRONT.match(text)
    if not m:
        return "", text
    title = ""
    for line in m.group(1).splitlines():
        if line.lower().startswith("title:"):
            title = line.split(":", 1)[1].strip().strip("'\"")
    return title, text[m.end():]


def _inline_text(tok) -> str:
    parts: list[str] = []
    for child in tok.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)
    return "".join(parts)


def convert(data: bytes, name: str) -> Converted:
    title, text = _front_matter(decode_text(data))
    tokens = _MD.parse(text)
    out = SectionBuilder()
    buf = out.buf

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            level = int(tok.tag[1])
            out.heading(level, " ".join(_inline_text(tokens[i + 1]).split()))
            i += 3
            continue
        if tok.type == "inline":
            buf.append(_inline_text(tok))
            buf.append(" ")
        elif tok.type in ("fence", "code_block"):
            buf.append("\n" + tok.content + "\n")
        elif tok.type == "html_block":
            buf.append("\n" + _TAG.sub(" ", tok.content) + "\n")
        elif tok.type in _BLOCK_END:
            buf.append("\n\n")
        i += 1
    sections = out.sections()
    return Converted(title or out.first_h1 or out.first_heading, sections)
