"""Building from a folder of real files: ids, titles, headings, hits, incremental reuse, bad files, atomicity."""

import shutil

import numpy as np
import pytest

from core.artifacts import read_manifest, verify
from core.search import build
from core.search.bundle import open_bundle
from core.search.engine import SearchIndex
from tests import ingest_files as F


def _store(bundle):
    return open_bundle(bundle).documents


def _passages(bundle):
    store = _store(bundle)
    owner = store.passage_doc()
    return [{"doc": store.doc_id(int(owner[i])), "heading": store.heading(i), "text": store.text(i)}
            for i in range(len(owner))]


def _documents(bundle):
    store = _store(bundle)
    return {store.doc_id(d): {"title": store.title(d), "url": store.url(d), "metadata": store.metadata(d)}
            for d in range(len(store))}


def _vectors_by_doc(bundle):
    vecs = np.load(bundle / "embeddings.npy")
    out: dict[str, list] = {}
    for p, v in zip(_passages(bundle), vecs):
        out.setdefault(p["doc"], []).append(v)
    return {k: np.stack(v) for k, v in out.items()}


@pytest.fixture
def folder(tmp_path):
    return F.write_folder(tmp_path / "kb")


def test_folder_build_ids_titles_urls_metadata_headings_and_hits(folder, tmp_path, encoder_dir):
    out = tmp_path / "out" / "bundle"
    m = build.build_bundle(folder, out, base_url="https://kb.example/docs/", progress=False, structured=True)
    verify(out, kind="search-index")
    docs = _documents(out)
    assert sorted(docs) == ["guides/install.md", "guides/passport.html", "hours.txt", "policies/expenses.docx",
                            "policies/travel insurance.pdf"]
    assert {k: d["title"] for k, d in docs.items()} == {
        "guides/install.md": "Installing the client", "guides/passport.html": "Passport renewal | Help Centre",
        "hours.txt": "hours", "policies/expenses.docx": "Expense policy",
        "policies/travel insurance.pdf": "Travel insurance guide"}
    assert docs["policies/travel insurance.pdf"]["url"] == \
        "https://kb.example/docs/policies/travel%20insurance.pdf"
    meta = docs["policies/expenses.docx"]["metadata"]
    assert meta["source_type"] == "docx" and meta["team"] == "hr" and meta["owner"] == "finance"
    assert meta["modified"].endswith("+00:00")
    assert docs["guides/install.md"]["metadata"]["source_type"] == "markdown" and "team" not in \
        docs["guides/install.md"]["metadata"]
    heads = {(p["doc"], p["heading"]) for p in _passages(out)}
    assert ("guides/install.md", "Install guide > Installation > Proxies") in heads
    assert ("policies/expenses.docx", "Travel > Hotels") in heads
    assert m["source"]["kind"] == "folder" and m["source"]["ignored"] == 1 and m["source"]["skipped"] == []
    assert m["embeddings"]["embedded"] == m["passage_count"] and m["embeddings"]["reused"] == 0
    index = SearchIndex.load(out)
    assert index.search("corporate proxy server HTTPS_PROXY", top_k=1)[0].id == "guides/install.md"
    assert index.search("how much does renewing an adult passport cost", top_k=1)[0].id == "guides/passport.html"
    assert index.search("hotel cap per night London", top_k=1)[0].id == "policies/expenses.docx"
    assert index.search("deadline for filing an insurance claim", top_k=1)[0].id == \
        "policies/travel insurance.pdf"
    # The heading path is part of what BM25 sees: a word only in a heading finds the passage.
    assert index.search("Proxies", top_k=1, method="bm25")[0].id == "guides/install.md"
    # Navigation, scripts and styles never become text.
    assert not index.search("navwordzz scriptwordzz stylewordzz footerwordzz", top_k=3, method="bm25")


def test_incremental_rebuild_reuses_unchanged_passages(folder, tmp_path, encoder_dir):
    out = tmp_path / "bundle"
    first = build.build_bundle(folder, out, progress=False, structured=True)
    before = _vectors_by_doc(out)
    assert (tmp_path / ("bundle" + build.CACHE_SUFFIX)).is_dir()
    # Edit one section of one file, remove another file, add a new one.
    md = folder / "guides" / "install.md"
    md.write_text(md.read_text().replace("Remove the folder.", "Delete the install folder and its cache."))
    (folder / "hours.txt").unlink()
    (folder / "faq.md").write_text("# FAQ\n\nAnswers to frequent questions about parking permits.\n")
    second = build.build_bundle(folder, out, progress=False, structured=True)
    after = _vectors_by_doc(out)
    assert "hours.txt" not in _documents(out) and "faq.md" in _documents(out)
    assert second["embeddings"]["embedded"] == 2        # the edited passage and the new file
    assert second["embeddings"]["reused"] == second["passage_count"] - 2
    for doc in ("guides/passport.html", "policies/expenses.docx", "policies/travel insurance.pdf"):
        assert np.array_equal(before[doc], after[doc])
    assert np.array_equal(before["guides/install.md"][:3], after["guides/install.md"][:3])
    assert not np.array_equal(before["guides/install.md"][3], after["guides/install.md"][3])
    assert first["passage_count"] - 1 + 1 == second["passage_count"]
    # A third build of the same input embeds nothing and gives byte-identical files.
    third = build.build_bundle(folder, out, progress=False, structured=True)
    assert third["embeddings"] == {**second["embeddings"], "embedded": 0, "reused": second["passage_count"]}
    assert {k: v for k, v in third["files"].items()} == second["files"]


def test_default_flat_chunking_keeps_headings_as_text(folder, tmp_path, encoder_dir):
    out = tmp_path / "bundle"
    m = build.build_bundle(folder, out, progress=False)
    passages = [p for p in _passages(out) if p["doc"] == "guides/install.md"]
    assert len(passages) == 1 and passages[0]["heading"] == ""
    assert "Proxies" in passages[0]["text"] and "HTTPS_PROXY" in passages[0]["text"]
    assert m["chunking"]["split"] == "word windows only"
    assert SearchIndex.load(out).search("Proxies", top_k=1, method="bm25")[0].id == "guides/install.md"


def test_bad_files_are_reported_skipped_and_strict_exits_1(folder, tmp_path, capsys, encoder_dir):
    F.make_scanned_pdf(folder / "scan.pdf")
    F.make_encrypted_pdf(folder / "locked.pdf")
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 not a zip")
    F.make_zip_bomb_docx(folder / "bomb.docx")
    (folder / "deep.html").write_text(F.deep_html(50_000))
    (folder / "big.txt").write_text("word " * 300_000)   # 1.5 MB, over --max-file-mb 1
    out = tmp_path / "bundle"
    code = build.main([str(folder), "--out", str(out), "--quiet", "--random-embeddings", "--max-file-mb", "1"])
    captured = capsys.readouterr()
    assert code == 0 and "5 documents" in captured.out
    for path, reason in [("scan.pdf", "no extractable text"), ("locked.pdf", "encrypted"),
                         ("broken.docx", "corrupt DOCX"), ("bomb.docx", "zip bomb"),
                         ("deep.html", "nested deeper"), ("big.txt", "limit")]:
        assert f"  {path}: " in captured.err and reason in captured.err.split(f"  {path}: ")[1].splitlines()[0]
    skipped = read_manifest(out)["source"]["skipped"]
    assert sorted(s["path"] for s in skipped) == ["big.txt", "bomb.docx", "broken.docx", "deep.html", "locked.pdf",
                                                  "scan.pdf"]
    code = build.main([str(folder), "--out", str(out), "--quiet", "--random-embeddings", "--max-file-mb", "1",
                       "--strict", "--version", "strict"])
    assert code == 1 and read_manifest(out)["version"] == "strict"


def test_on_error_fail_stops_and_leaves_the_previous_bundle_intact(folder, tmp_path, caplog, encoder_dir):
    out = tmp_path / "out" / "bundle"
    assert build.main([str(folder), "--out", str(out), "--quiet", "--random-embeddings", "--version", "v1"]) == 0
    files_before = read_manifest(out)["files"]
    (folder / "zz-corrupt.pdf").write_bytes(b"%PDF-1.4 garbage")
    code = build.main([str(folder), "--out", str(out), "--quiet", "--random-embeddings", "--on-error", "fail",
                       "--version", "v2"])
    assert code == 2 and "zz-corrupt.pdf" in caplog.text and "corrupt PDF" in caplog.text
    assert read_manifest(out)["version"] == "v1" and read_manifest(out)["files"] == files_before
    verify(out, kind="search-index")
    assert sorted(p.name for p in out.parent.iterdir()) == ["bundle"]   # no staging folder left


def test_a_failure_after_embedding_leaves_no_half_written_bundle(folder, tmp_path, monkeypatch, encoder_dir):
    out = tmp_path / "bundle"
    build.build_bundle(folder, out, progress=False, version="good")
    from core.search import bundle as B

    def broken_finish(self, vectors):
        raise RuntimeError("simulated crash while writing the indexes")

    monkeypatch.setattr(B.BundleWriter, "finish", broken_finish)
    (folder / "new.md").write_text("# New\n\nA brand new page about bicycle storage.\n")
    with pytest.raises(RuntimeError, match="simulated"):
        build.build_bundle(folder, out, progress=False, version="bad")
    assert read_manifest(out)["version"] == "good"
    verify(out, kind="search-index")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "bundle" + build.CACHE_SUFFIX, "kb"]
    # The embeddings made before the crash were committed: the retry embeds nothing new.
    monkeypatch.undo()
    assert build.build_bundle(folder, out, progress=False)["embeddings"]["embedded"] == 0


def test_folder_with_nothing_readable_is_refused(tmp_path, caplog):
    (tmp_path / "kb").mkdir()
    F.make_scanned_pdf(tmp_path / "kb" / "scan.pdf")
    code = build.main([str(tmp_path / "kb"), "--out", str(tmp_path / "o"), "--quiet", "--random-embeddings"])
    assert code == 2 and "no documents (1 files skipped)" in caplog.text
    assert not (tmp_path / "o").exists()


def test_usage_errors(tmp_path):
    for argv in ([], ["--from-blob", "c", str(tmp_path)], ["--max-file-mb", "0", str(tmp_path)]):
        with pytest.raises(SystemExit) as exc:
            build.main([*argv, "--out", str(tmp_path / "o")])
        assert exc.value.code == 2


def test_jsonl_source_still_builds_as_before(tmp_path, mini_corpus, encoder_dir):
    shutil.copy(mini_corpus, tmp_path / "c.jsonl")
    m = build.build_bundle(tmp_path / "c.jsonl", tmp_path / "b", progress=False, random_embeddings=True)
    assert m["source"]["kind"] == "jsonl" and len(m["source"]["sha256"]) == 64
    assert {p["heading"] for p in _passages(tmp_path / "b")} == {""}
