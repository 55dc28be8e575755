"""The Blob source against a real Azurite: ids relative to the prefix, blob urls, sidecars, bad blobs."""

import pytest

from core.ingest import IngestError, IngestReport, iter_documents
from core.search import build
from core.search.engine import SearchIndex
from core.settings import Settings
from tests import ingest_files as F


@pytest.fixture
def blob_source(azurite, tmp_path, request):
    settings = Settings.from_env({"BLOB_CONNECTION_STRING": azurite.connection_string,
                                  "LOCAL_CACHE_DIR": str(tmp_path / "cache"), "BLOB_TIMEOUT_S": "5"})
    from core.adapters.blob import sync_service_client

    container = "docs" + str(abs(hash(request.node.name)))[:10]
    cc = sync_service_client(settings).get_container_client(container)
    cc.create_container()
    folder = F.write_folder(tmp_path / "kb")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            cc.upload_blob("kb/" + path.relative_to(folder).as_posix(), path.read_bytes())
    cc.upload_blob("other/outside.md", b"# Outside\n\nnot under the prefix\n")
    cc.upload_blob("kb/scan.pdf", F.make_scanned_pdf(tmp_path / "scan.pdf").read_bytes())
    return settings, container, cc


def test_blob_prefix_documents_ids_urls_metadata(blob_source):
    settings, container, cc = blob_source
    report = IngestReport()
    docs = list(iter_documents(None, from_blob=f"{container}/kb", settings=settings, report=report, progress=False))
    assert [d.id for d in docs] == ["guides/install.md", "guides/passport.html", "hours.txt",
                                    "policies/expenses.docx", "policies/travel insurance.pdf"]
    pdf = docs[-1]
    assert pdf.title == "Travel insurance guide" and pdf.metadata["source_type"] == "pdf"
    assert pdf.url == cc.get_blob_client("kb/policies/travel insurance.pdf").url
    assert pdf.metadata["team"] == "hr" and pdf.metadata["modified"].endswith("+00:00")
    assert [(s.path, s.reason.split(" (")[0]) for s in report.skipped] == [("scan.pdf", "no extractable text")]
    assert report.source == {"kind": "blob", "container": container, "prefix": "kb"}


def test_build_from_blob_and_rebuild_reuses(blob_source, tmp_path, encoder_dir, capsys, monkeypatch):
    settings, container, cc = blob_source
    monkeypatch.setenv("BLOB_CONNECTION_STRING", settings.blob_connection_string)
    out = tmp_path / "bundle"
    argv = ["--from-blob", f"{container}/kb/", "--out", str(out), "--quiet", "--base-url", "https://kb.example"]
    assert build.main(argv) == 0
    assert "5 documents" in capsys.readouterr().out
    hit = SearchIndex.load(out).search("corporate proxy server", top_k=1)[0]
    assert hit.id == "guides/install.md" and hit.url == "https://kb.example/guides/install.md"
    cc.delete_blob("kb/hours.txt")
    assert build.main([*argv, "--strict"]) == 1      # scan.pdf is still skipped
    printed = capsys.readouterr()
    assert "scan.pdf: no extractable text" in printed.err and "0 embedded" in printed.out
    assert "hours.txt" not in {h.id for h in SearchIndex.load(out).search("office opening hours", top_k=10)}


def test_missing_container_is_an_ingest_error(blob_source):
    settings, _, _ = blob_source
    with pytest.raises(IngestError, match="no container"):
        list(iter_documents(None, from_blob="nosuchcontainer", settings=settings, report=IngestReport(),
                            progress=False))
