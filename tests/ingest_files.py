"""Small documents of every supported format, written by the tests themselves (reportlab, python-docx)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

HTML = """<!doctype html><html><head><title>Passport renewal | Help Centre</title>
<style>.x { color: red } stylewordzz</style><script>var scriptwordzz = 1;</script></head>
<body><nav><a href="/">Home</a> navwordzz</nav><header>Site banner headerwordzz</header>
<main><h1>Passport renewal</h1><p>Renew your passport online before it expires.</p>
<h2>Photos<a class="headerlink" href="#photos">¶</a></h2><p>The photo must be recent, in colour, on a plain
light background; glasses are not allowed.</p>
<h3>Digital photos</h3><p>Upload a JPEG of at least 600 by 750 pixels.</p>
<h2>Fees</h2><table><tr><th>Service</th><th>Fee</th></tr><tr><td>Adult renewal</td><td>85 euros</td></tr></table>
</main><footer>Copyright footerwordzz</footer></body></html>"""

MARKDOWN = """---
title: Installing the client
---
# Install guide

Intro paragraph about **installing** the [client](https://example.com/client).

## Installation

Run the installer.

### Proxies

Set `HTTPS_PROXY` to route traffic through a corporate proxy server.

```
export HTTPS_PROXY=http://proxy:3128
```

## Uninstalling

Remove the folder.
"""

TEXT = "Office opening hours\n\nThe office opens at nine and closes at five on weekdays.\n"


def make_pdf(path: Path, *, title: str = "Travel insurance guide", outline: bool = True,
             pages: list[tuple[str, str]] | None = None) -> Path:
    """A PDF with a text layer, /Title metadata and (optionally) one bookmark per page."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pages = pages or [("Coverage", "The policy covers medical emergencies abroad and lost luggage."),
                      ("Claims", "File a claim within thirty days with receipts and a police report.")]
    c = canvas.Canvas(str(path), pagesize=A4)
    if title:
        c.setTitle(title)
    for i, (heading, body) in enumerate(pages):
        c.setFont("Helvetica-Bold", 16)
        c.drawString(72, 780, heading)
        c.setFont("Helvetica", 11)
        c.drawString(72, 750, body)
        if outline:
            key = f"p{i}"
            c.bookmarkPage(key)
            c.addOutlineEntry(heading, key, level=0)
        c.showPage()
    c.save()
    return path


def make_scanned_pdf(path: Path) -> Path:
    """A PDF whose only page is a drawing: no text layer, as a scan without OCR."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    c.rect(100, 100, 300, 300, fill=1)
    c.showPage()
    c.save()
    return path


def make_encrypted_pdf(path: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    src = make_pdf(path.with_name("plain-" + path.name))
    w = PdfWriter(clone_from=PdfReader(src))
    w.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    with open(path, "wb") as fh:
        w.write(fh)
    src.unlink()
    return path


def make_docx(path: Path, *, core_title: str = "Expense policy") -> Path:
    import docx

    d = docx.Document()
    d.core_properties.title = core_title
    d.add_paragraph("Expense policy", style="Title")
    d.add_paragraph("How staff claim expenses.")
    d.add_heading("Travel", level=1)
    d.add_paragraph("Book economy class for flights under six hours.")
    d.add_heading("Hotels", level=2)
    d.add_paragraph("Hotel stays are capped at 150 euros per night in most cities.")
    t = d.add_table(rows=2, cols=2)
    t.cell(0, 0).text, t.cell(0, 1).text = "City", "Cap"
    t.cell(1, 0).text, t.cell(1, 1).text = "London", "220 euros"
    d.add_heading("Meals", level=1)
    d.add_paragraph("Meals are reimbursed up to 40 euros a day.")
    d.save(str(path))
    return path


def make_zip_bomb_docx(path: Path, inflated: int = 300 * 2**20) -> Path:
    """A .docx whose document.xml inflates to ``inflated`` bytes of zeros (a few hundred KB on disk)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w", force_zip64=True) as fh:
            block = b"\0" * 2**20
            for _ in range(inflated // 2**20):
                fh.write(block)
    path.write_bytes(buf.getvalue())
    return path


def deep_html(depth: int = 100_000) -> str:
    return "<html><body><p>before</p>" + "<div>" * depth + "deep" + "</div>" * depth + "</body></html>"


def write_folder(root: Path) -> Path:
    """One good file of each type, in subfolders, plus a sidecar."""
    (root / "guides").mkdir(parents=True, exist_ok=True)
    (root / "policies").mkdir(parents=True, exist_ok=True)
    (root / "guides" / "passport.html").write_text(HTML, encoding="utf-8")
    (root / "guides" / "install.md").write_text(MARKDOWN, encoding="utf-8")
    (root / "hours.txt").write_text(TEXT, encoding="utf-8")
    make_pdf(root / "policies" / "travel insurance.pdf")
    make_docx(root / "policies" / "expenses.docx")
    (root / "policies" / "_meta.json").write_text(
        '{"metadata": {"team": "hr", "lang": "en"}, "files": {"expenses.docx": {"metadata": {"owner": "finance"}}}}')
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return root
