"""The compressed document store (bundle format 3) and the plain one it replaces (format 2, still read)."""

import json
import random

import numpy as np
import pytest

from core.artifacts import ArtifactError
from core.search import docstore as D
from core.search.docstore import DocStore, DocStoreWriter


def _docs(n: int, seed: int = 7) -> list[tuple]:
    rng = random.Random(seed)
    words = ["yaml", "parser", "http", "client", "retry", "heatmap", "plot", "série", "日本語", "emoji 🙂"]
    out = []
    for i in range(n):
        passages = [("" if rng.random() < 0.5 else f"Section {j}", " ".join(rng.choices(words, k=rng.randint(0, 40))))
                    for j in range(rng.randint(1, 3))]
        out.append((f"pypi:pkg-{i}", f"pkg-{i}" if i % 7 else "", f"pkg:pypi/pkg-{i}",
                    {"ecosystem": ["pypi", "npm", "cargo"][i % 3], "stamp": i}, passages))
    # a record far larger than a block, and an all-empty document
    out.append(("big", "Big", "u:big", {"ecosystem": "npm"}, [("", "x" * (5 * D.BLOCK_BYTES))]))
    out.append(("", "", "", {}, [("", "")]))
    return out


def _write(root, docs) -> tuple[int, int]:
    w = DocStoreWriter(root)
    for d in docs:
        w.add(*d)
    w.close()
    return w.doc_count, w.passage_count


def _check(store: DocStore, docs) -> None:
    p = 0
    for d, (doc_id, title, url, meta, passages) in enumerate(docs):
        assert (store.doc_id(d), store.title(d), store.url(d)) == (doc_id, title, url)
        assert store.metadata(d) == meta
        for heading, text in passages:
            assert (store.heading(p), store.text(p)) == (heading, text)
            p += 1


@pytest.mark.parametrize("in_memory", [False, True])
def test_compressed_store_returns_every_field_exactly(tmp_path, in_memory):
    docs = _docs(3000)
    n_docs, n_pass = _write(tmp_path, docs)
    blocks = np.load(tmp_path / D.DOCS_BLOCKS)
    assert blocks.shape[0] == 2 and blocks.shape[1] > 20   # many blocks, so lookups cross block boundaries
    assert np.load(tmp_path / D.DOCS_IDX).dtype == np.uint32
    store = DocStore(tmp_path, doc_count=n_docs, passage_count=n_pass, in_memory=in_memory)
    _check(store, docs)
    # random access, in any order (the LRU must not mix blocks up)
    order = list(range(n_docs))
    random.Random(1).shuffle(order)
    for d in order[:500]:
        assert store.doc_id(d) == docs[d][0]
    # frequent values are stored as bitmaps, rare ones as id lists; both answer the same way
    assert np.load(tmp_path / D.FILTERS_BITS).shape == (3, (n_docs + 7) // 8)
    npm = [d[3].get("ecosystem") == "npm" for d in docs]
    assert store.mask({"ecosystem": "npm"}).tolist() == npm
    assert store.mask({"ecosystem": ["npm", "cargo"], "stamp": [4, 5, 6]}).tolist() == \
        [d[3].get("stamp") in (4, 5) for d in docs]   # 4 is cargo, 5 is npm, 6 is pypi
    assert np.load(tmp_path / D.DOCS_META).dtype == np.uint16 and np.load(tmp_path / D.DOC_STARTS).dtype == np.uint32


def test_compression_shrinks_the_store(tmp_path):
    """Package-like records (id, title and url repeat the name) compress several-fold."""
    docs = [(f"pypi:name-{i}", f"name-{i}", f"pkg:pypi/name-{i}", {"ecosystem": "pypi"},
             [("", f"A library for parsing yaml files number {i} with retries")]) for i in range(5000)]
    _write(tmp_path, docs)
    raw = sum(len(d[0]) + len(d[1]) + len(d[2]) + len(d[4][0][1]) for d in docs)
    stored = sum((tmp_path / f).stat().st_size for f in (D.DOCS_BIN, D.PASS_BIN))
    assert stored * 3 < raw


def test_format_2_plain_store_is_still_read(tmp_path):
    """A format-2 store: plain UTF-8 blobs, int64 offsets, no block tables."""
    docs = _docs(50)
    (tmp_path / "v3").mkdir()
    n_docs, n_pass = _write(tmp_path / "v3", docs)
    v3 = DocStore(tmp_path / "v3", doc_count=n_docs, passage_count=n_pass)
    root = tmp_path / "v2"
    root.mkdir()
    for blob, idx, count in ((D.DOCS_BIN, D.DOCS_IDX, 3 * n_docs), (D.PASS_BIN, D.PASS_IDX, 2 * n_pass)):
        reader = v3._docs if blob == D.DOCS_BIN else v3._pass
        texts = [reader.get(j).encode("utf-8") for j in range(count)]
        (root / blob).write_bytes(b"".join(texts))
        np.save(root / idx, np.concatenate([[0], np.cumsum([len(t) for t in texts])]).astype(np.int64))
    meta = [v3._meta.get(r).encode("utf-8") for r in range(v3._meta.count)]
    (root / D.META_BIN).write_bytes(b"".join(meta))
    np.save(root / D.META_IDX, np.concatenate([[0], np.cumsum([len(t) for t in meta])]).astype(np.int64))
    # format 2 dtypes, id-list postings only (here: every field scanned from the metadata table)
    np.save(root / D.DOCS_META, np.load(tmp_path / "v3" / D.DOCS_META).astype(np.int32))
    np.save(root / D.DOC_STARTS, np.load(tmp_path / "v3" / D.DOC_STARTS).astype(np.int64))
    (root / D.FILTERS_JSON).write_text(json.dumps({"fields": {}, "scan": ["ecosystem", "stamp"]}))
    np.save(root / D.FILTERS_NPY, np.zeros(0, dtype=np.int32))
    v2 = DocStore(root, doc_count=n_docs, passage_count=n_pass)
    _check(v2, docs)
    assert v2.mask({"ecosystem": "npm"}).tolist() == v3.mask({"ecosystem": "npm"}).tolist()
    np.save(root / D.DOCS_IDX, np.load(root / D.DOCS_IDX).astype(np.uint32))   # format 2 offsets are int64
    with pytest.raises(ArtifactError, match="int64"):
        DocStore(root, doc_count=n_docs, passage_count=n_pass)


def test_inconsistent_block_table_is_refused(tmp_path):
    docs = _docs(200)
    n_docs, n_pass = _write(tmp_path, docs)
    blocks = np.load(tmp_path / D.DOCS_BLOCKS)
    bad = blocks.copy()
    bad[1, -1] += 1          # claims more compressed bytes than the file holds
    np.save(tmp_path / D.DOCS_BLOCKS, bad)
    with pytest.raises(ArtifactError, match="blocks"):
        DocStore(tmp_path, doc_count=n_docs, passage_count=n_pass)
    bad = blocks.copy()
    bad[0, -1] -= 1          # uncompressed size disagrees with the offsets
    np.save(tmp_path / D.DOCS_BLOCKS, bad)
    with pytest.raises(ArtifactError, match="does not index"):
        DocStore(tmp_path, doc_count=n_docs, passage_count=n_pass)


def test_manifest_settings_describe_the_layout():
    assert D.settings() == {"compression": "zstd", "level": D.ZSTD_LEVEL, "block_bytes": D.BLOCK_BYTES}
    assert json.dumps(D.settings())
