"""Converters side by side: ours (markdown-it-py, lxml, pypdf, python-docx) vs markitdown.

    .venv/bin/python -m bench.bench_converters [--markitdown-path /tmp/mdtest] [--rounds 3]

Over the pkgdocs dev-set files (Markdown READMEs, mdBook HTML) and generated PDF/DOCX
files, per format: median ms per file, files whose title matches the expected one,
heading-led sections found, and leaks of navigation/script text into the output.
markitdown is imported from a separate --target install (it pulls magika, onnxruntime,
mammoth, markdownify, pdfminer.six), so the shared venv stays as it is.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "eval" / "data" / "pkgdocs"
LEAKS = ("Keyboard shortcuts", "Press ←", "const path_to_root", "Toggle Table of Contents")


def _files(tmp: Path) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from tests.ingest_files import make_docx, make_pdf

    files = sorted(DOCS.rglob("*.md"))[:30] + sorted(DOCS.rglob("*.html"))[:30]
    for i in range(10):
        pages = [(f"Chapter {k}", f"Body text of chapter {k} of document {i}. " * 8) for k in range(12)]
        files.append(make_pdf(tmp / f"doc{i}.pdf", title=f"Generated manual {i}", pages=pages))
        files.append(make_docx(tmp / f"doc{i}.docx", core_title=f"Expense policy {i}"))
    return files


def ours(path: Path):
    from core.ingest.converters import convert

    result, _ = convert(path.read_bytes(), path.name)
    text = "\n".join(s.text for s in result.sections)
    return result.title, sum(1 for s in result.sections if s.heading), text


def markitdown_fn():
    from markitdown import MarkItDown

    md = MarkItDown(enable_plugins=False)

    def run(path: Path):
        from core.ingest.converters import markdown as mdconv

        res = md.convert(str(path))
        parsed = mdconv.convert(res.text_content.encode(), path.name + ".md")
        text = "\n".join(s.text for s in parsed.sections)
        return (res.title or parsed.title or ""), sum(1 for s in parsed.sections if s.heading), text
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--markitdown-path", default="/tmp/mdtest")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    files = _files(tmp)
    expected = {}
    for p in files:
        expected[p] = ours(p)[0]
    sys.path.append(args.markitdown_path)   # after the venv: only markitdown's own extras come from there
    t0 = time.perf_counter()
    md_run = markitdown_fn()
    md_import = time.perf_counter() - t0
    for name, fn in (("ours", ours), ("markitdown", md_run)):
        by_fmt: dict[str, list] = {}
        for p in files:
            times = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                try:
                    title, heads, text = fn(p)
                except Exception as exc:  # noqa: BLE001
                    title, heads, text = f"ERROR {type(exc).__name__}", 0, ""
                times.append(time.perf_counter() - t)
            fmt = p.suffix
            by_fmt.setdefault(fmt, []).append((statistics.median(times), title, heads,
                                                any(s in text for s in LEAKS)))
        for fmt, rows in sorted(by_fmt.items()):
            ms = 1000 * statistics.median(r[0] for r in rows)
            print(f"{name:10s} {fmt:6s} files {len(rows):3d}  median {ms:7.1f} ms"
                  f"  sectioned {sum(r[2] > 0 for r in rows):3d}  leaks {sum(r[3] for r in rows):3d}"
                  f"  titles e.g. {[r[1] for r in rows[:2]]}")
    print(f"markitdown import+init {md_import:.2f}s")


if __name__ == "__main__":
    main()
