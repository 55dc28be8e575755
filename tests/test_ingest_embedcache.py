"""The embedding cache: reuse by text, per-fingerprint isolation, atomic commits, compaction."""

import json

import numpy as np
import pytest

from core.ingest import embedcache
from core.ingest.embedcache import EmbeddingCache


class Counting:
    """A deterministic stand-in embedder that records what it was asked to embed."""

    def __init__(self, dim=8):
        self.dim = dim
        self.seen: list[str] = []

    def __call__(self, texts):
        self.seen.extend(texts)
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.dim) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def test_reuse_only_embeds_new_texts_and_returns_identical_vectors(tmp_path):
    emb = Counting()
    cache = EmbeddingCache(tmp_path, "fp1", 8)
    v1, stats = cache.get_or_embed(["a", "b", "a", "c"], emb, progress=False)
    assert stats == {"embedded": 3, "reused": 0} and sorted(emb.seen) == ["a", "b", "c"]
    assert np.array_equal(v1[0], v1[2])
    assert cache.commit() == 3
    emb.seen.clear()
    again = EmbeddingCache(tmp_path, "fp1", 8)
    v2, stats = again.get_or_embed(["c", "d", "a", "b"], emb, progress=False)
    assert stats == {"embedded": 1, "reused": 3} and emb.seen == ["d"]
    assert np.array_equal(v2[0], v1[3]) and np.array_equal(v2[2], v1[0]) and np.array_equal(v2[3], v1[1])
    # Uncommitted entries are found by the same cache object, and not by another one.
    v3, stats = again.get_or_embed(["d"], emb, progress=False)
    assert stats["reused"] == 1 and np.array_equal(v3[0], v2[1])
    assert EmbeddingCache(tmp_path, "fp1", 8).get_or_embed(["d"], emb, progress=False)[1]["embedded"] == 1


def test_another_fingerprint_never_sees_these_vectors_and_dim_is_checked(tmp_path):
    emb = Counting()
    c = EmbeddingCache(tmp_path, "fp1", 8)
    c.get_or_embed(["a"], emb, progress=False)
    c.commit()
    assert EmbeddingCache(tmp_path, "fp2", 8).get_or_embed(["a"], emb, progress=False)[1] == \
        {"embedded": 1, "reused": 0}
    with pytest.raises(ValueError, match="8-d"):
        EmbeddingCache(tmp_path, "fp1", 16)


def test_crash_before_the_index_is_replaced_leaves_the_old_cache(tmp_path, monkeypatch):
    emb = Counting()
    c = EmbeddingCache(tmp_path, "fp", 8)
    c.get_or_embed(["a", "b"], emb, progress=False)
    c.commit()
    before = json.loads((tmp_path / "fp" / "index.json").read_text())
    c.get_or_embed(["x", "y"], emb, progress=False)

    def boom(path, obj):
        raise OSError("disk full")

    monkeypatch.setattr(embedcache, "_save_json", boom)
    with pytest.raises(OSError):
        c.commit()
    assert json.loads((tmp_path / "fp" / "index.json").read_text()) == before
    monkeypatch.undo()
    fresh = EmbeddingCache(tmp_path, "fp", 8)
    v, stats = fresh.get_or_embed(["a", "x"], emb, progress=False)
    assert stats == {"embedded": 1, "reused": 1}
    fresh.commit()   # the orphan shard of the failed commit is removed
    listed = {s["name"] for s in json.loads((tmp_path / "fp" / "index.json").read_text())["shards"]}
    on_disk = {p.name.split(".")[0] for p in (tmp_path / "fp").glob("shard-*")}
    assert on_disk == listed


def test_a_shard_that_does_not_match_its_index_entry_is_refused(tmp_path):
    c = EmbeddingCache(tmp_path, "fp", 8)
    c.get_or_embed(["a", "b"], Counting(), progress=False)
    c.commit()
    idx = json.loads((tmp_path / "fp" / "index.json").read_text())
    name = idx["shards"][0]["name"]
    np.save(tmp_path / "fp" / f"{name}.vectors.npy", np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match="does not match"):
        EmbeddingCache(tmp_path, "fp", 8)


def test_many_commits_compact_into_one_shard_and_keep_every_vector(tmp_path, monkeypatch):
    monkeypatch.setattr(embedcache, "MAX_SHARDS", 3)
    emb = Counting()
    c = EmbeddingCache(tmp_path, "fp", 8)
    expected = {}
    for round_ in range(5):
        texts = [f"t{round_}-{i}" for i in range(50)]
        v, _ = c.get_or_embed(texts, emb, progress=False)
        expected.update(zip(texts, v))
        c.commit()
    shards = json.loads((tmp_path / "fp" / "index.json").read_text())["shards"]
    assert len(shards) <= 3 and sum(s["count"] for s in shards) == 250
    emb.seen.clear()
    texts = sorted(expected)
    v, stats = EmbeddingCache(tmp_path, "fp", 8).get_or_embed(texts, emb, progress=False)
    assert stats == {"embedded": 0, "reused": 250} and not emb.seen
    assert all(np.array_equal(v[i], expected[t]) for i, t in enumerate(texts))


def test_prefix_collisions_are_resolved_on_the_full_key(tmp_path):
    # Two keys with the same 64-bit prefix: both must be found with their own vector.
    keys = np.array([b"\x01" * 8 + b"\x00" * 24, b"\x01" * 8 + b"\xff" * 24], dtype="S32")
    seg = embedcache._Segment(np.sort(keys), np.eye(2, 8, dtype=np.float32))
    rows = seg.find(keys[::-1], embedcache._prefix(keys[::-1]))
    assert rows.tolist() == [1, 0]
    other = np.array([b"\x01" * 8 + b"\x05" * 24], dtype="S32")
    assert seg.find(other, embedcache._prefix(other)).tolist() == [-1]
