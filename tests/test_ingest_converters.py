"""Converters on files the tests write: titles, heading paths, what never becomes text, bad files."""

import pytest

from core.ingest.chunking import chunk_document, index_text
from core.ingest.converters import convert
from core.ingest.models import ConversionError, Section, SourceDocument
from core.search.text import split_passages
from tests import ingest_files as F


def _sections(result):
    return [(" > ".join(s.heading), s.text) for s in result.sections]


def test_html_title_headings_and_no_chrome():
    result, kind = convert(F.HTML.encode(), "guides/passport.html")
    assert kind == "html" and result.title == "Passport renewal | Help Centre"
    heads = [h for h, _ in _sections(result)]
    assert heads == ["Passport renewal", "Passport renewal > Photos", "Passport renewal > Photos > Digital photos",
                     "Passport renewal > Fees"]
    text = " ".join(t for _, t in _sections(result))
    for word in ("stylewordzz", "scriptwordzz", "navwordzz", "headerwordzz", "footerwordzz", "¶"):
        assert word not in text
    assert "85 euros" in text and "glasses are not allowed" in text


def test_html_title_falls_back_to_h1_then_file_name():
    assert convert(b"<html><body><h1>Only heading</h1><p>x y</p></body></html>", "a.htm")[0].title == "Only heading"
    assert convert(b"<html><body><p>plain words</p></body></html>", "dir/my_page-name.html")[0].title == \
        "my page name"


def test_markdown_front_matter_title_heading_path_and_no_markup():
    result, kind = convert(F.MARKDOWN.encode(), "install.md")
    assert kind == "markdown" and result.title == "Installing the client"
    secs = dict(_sections(result))
    assert "Install guide > Installation > Proxies" in secs
    assert "HTTPS_PROXY" in secs["Install guide > Installation > Proxies"]
    assert "export HTTPS_PROXY=http://proxy:3128" in secs["Install guide > Installation > Proxies"]
    assert "**" not in secs["Install guide"] and "https://example.com" not in secs["Install guide"]
    assert convert(b"# First\n\ntext\n\n# Second\n\nmore", "x.markdown")[0].title == "First"
    assert convert(b"## Only h2\n\ntext", "x.md")[0].title == "Only h2"


def test_pdf_metadata_title_and_outline_sections(tmp_path):
    result, kind = convert(F.make_pdf(tmp_path / "t.pdf").read_bytes(), "t.pdf")
    assert kind == "pdf" and result.title == "Travel insurance guide"
    secs = dict(_sections(result))
    assert set(secs) == {"Coverage", "Claims"} and "thirty days" in secs["Claims"]
    plain = convert(F.make_pdf(tmp_path / "plain.pdf", title="", outline=False).read_bytes(), "plain_file.pdf")[0]
    assert plain.title == "plain file" and [h for h, _ in _sections(plain)] == [""]


def test_docx_core_title_heading_styles_and_tables(tmp_path):
    result, kind = convert(F.make_docx(tmp_path / "e.docx").read_bytes(), "e.docx")
    assert kind == "docx" and result.title == "Expense policy"
    secs = dict(_sections(result))
    assert list(secs) == ["", "Travel", "Travel > Hotels", "Meals"]
    assert "London | 220 euros" in secs["Travel > Hotels"]


@pytest.mark.parametrize("maker,name,reason", [
    (lambda p: F.make_scanned_pdf(p).read_bytes(), "scan.pdf", "no extractable text"),
    (lambda p: F.make_encrypted_pdf(p).read_bytes(), "locked.pdf", "encrypted"),
    (lambda p: b"%PDF-1.7 this is not really a pdf", "bad.pdf", "corrupt PDF"),
    (lambda p: b"PK\x03\x04 truncated", "bad.docx", "corrupt DOCX"),
    (lambda p: F.make_zip_bomb_docx(p).read_bytes(), "bomb.docx", "zip bomb"),
    (lambda p: F.deep_html().encode(), "deep.html", "nested deeper than 256"),
    (lambda p: b"\x00\x01\x02binary", "data.txt", "binary"),
    (lambda p: b"<html><body><nav>menu only</nav><script>x()</script></body></html>", "empty.html",
     "no extractable text"),
    (lambda p: b"", "empty.md", "no extractable text"),
])
def test_bad_files_raise_a_reason(tmp_path, maker, name, reason):
    data = maker(tmp_path / name)
    with pytest.raises(ConversionError, match=reason):
        convert(data, name)


def test_chunking_jsonl_record_is_todays_word_windows():
    text = " ".join(f"w{i}" for i in range(1000))
    doc = SourceDocument("x", "Title", "", {}, [Section((), text)], "jsonl")
    drafts = chunk_document(doc)
    assert [d.text for d in drafts] == split_passages(text) and {d.heading for d in drafts} == {""}
    assert index_text("Title", "", drafts[0].text) == "Title\n" + drafts[0].text
    assert index_text("", "", "t") == "t" and index_text("T", "A > B", "t") == "T\nA > B\nt"


def test_chunking_never_crosses_sections_and_carries_heading_path():
    long = " ".join(["alpha"] * 450)
    doc = SourceDocument("d", "T", "", {}, [Section(("A",), long), Section(("A", "B"), "short text"),
                                             Section(("C",), "   ")], "markdown")
    drafts = chunk_document(doc)
    assert [d.heading for d in drafts] == ["A", "A", "A", "A > B"]   # 450 words: 3 windows
    assert drafts[-1].text == "short text" and all(len(d.text.split()) <= 240 for d in drafts)
