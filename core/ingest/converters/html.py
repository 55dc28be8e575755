"""HTML with lxml (libxml2): headings split sections; navigation, scripts and styles are never text.

Dropped before reading: ``script, style, noscript, template, nav, header, footer, aside,
form, button, svg, iframe, object`` and anything with ``role`` navigation/banner/
contentinfo/search or ``hidden``. When the page has a ``<main>`` (or ``role=main``, or
one ``<article>``) only that is read. Sphinx/MkDocs permalink anchors ("¶", "#") are
dropped from headings. The title is ``<title>``, else the first ``<h1>``.

libxml2 stops at 256 levels of nesting (without XML_PARSE_HUGE): such a page is refused
("nested deeper than 256 levels") instead of being read half; the walk itself is
iterative (``iterwalk``), so no depth can exhaust Python's stack.
"""

from __future__ import annotations

import lxml.etree as etree
import lxml.html

from core.ingest.converters import Converted, SectionBuilder
from core.ingest.models import ConversionError

DROP_TAGS = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "button",
             "svg", "iframe", "object", "embed", "canvas", "select", "dialog")
DROP_ROLES = ("navigation", "banner", "contentinfo", "search", "complementary")
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
BLOCKS = {"p", "div", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr", "pre", "blockquote", "section",
          "article", "main", "br", "hr", "figure", "figcaption", "caption", "body"}
CELLS = {"td", "th"}
PERMALINK = ("¶", "#", "\uf0c1", "🔗")


def _heading_text(el) -> str:
    text = " ".join(el.text_content().split())
    while text.endswith(PERMALINK):
        text = text[:-1].rstrip()
    return text


def convert(data: bytes, name: str) -> Converted:
    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)
    try:
        root = lxml.html.document_fromstring(data, parser=parser)
    except (etree.ParserError, ValueError) as exc:
        raise ConversionError(f"unreadable HTML ({exc})") from None
    if any("Excessive depth" in str(e) for e in parser.error_log):
        raise ConversionError("HTML nested deeper than 256 levels")
    title_el = root.find(".//title")
    title = " ".join(title_el.text_content().split()) if title_el is not None else ""
    drop = [el for el in root.iter(*DROP_TAGS)]
    drop += root.xpath("//*[@hidden or @aria-hidden='true' or " +
                       " or ".join(f"@role='{r}'" for r in DROP_ROLES) + "]")
    drop += root.xpath("//a[contains(concat(' ', normalize-space(@class), ' '), ' headerlink ')]")
    for el in drop:
        if el.getparent() is not None:
            el.drop_tree()
    main = root.xpath("//main | //*[@role='main']")
    if not main:
        articles = root.xpath("//article")
        main = articles if len(articles) == 1 else []
    body = main[0] if main else (root.find("body") if root.find("body") is not None else root)

    out = SectionBuilder()
    buf = out.buf
    skip_until = None   # the heading element being read as a heading: its text is not body text

    for event, el in etree.iterwalk(body, events=("start", "end")):
        tag = el.tag if isinstance(el.tag, str) else ""
        if event == "start":
            if skip_until is not None:
                continue
            level = HEADINGS.get(tag)
            if level:
                out.heading(level, _heading_text(el))
                skip_until = el
                continue
            if tag in BLOCKS:
                buf.append("\n")
            if tag == "pre":
                buf.append(el.text_content() + "\n")
                skip_until = el
                continue
            if el.text:
                buf.append(el.text)
        else:
            if skip_until is el:
                skip_until = None
            elif skip_until is not None:
                continue
            if tag in BLOCKS:
                buf.append("\n")
            elif tag in CELLS:
                buf.append(" | ")
            if el.tail and el is not body:
                buf.append(el.tail)
    sections = out.sections()
    return Converted(title or out.first_h1, sections)
