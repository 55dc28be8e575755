"""PassageEmbedder: the bundle's ONNX graph embeds passages like the query encoder and sentence-transformers."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.search import embed as E
from core.search.embed import PassageEmbedder
from core.search.encoder import QueryEncoder
from tests.test_encoder_parity import _varied_texts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def embedder(encoder_dir):
    return PassageEmbedder.load(encoder_dir, threads=2)


@pytest.fixture(scope="module")
def int8_dir(encoder_dir, tmp_path_factory):
    from core.search.export import quantize_encoder

    out = tmp_path_factory.mktemp("enc-int8")
    quantize_encoder(encoder_dir, out)
    return out


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.astype(np.float64) * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.timeout(900)   # the 2-core machine is shared: generous, not a speed check
def test_passages_match_sentence_transformers_and_the_query_encoder(embedder, encoder_dir):
    from core.search.export import load_sentence_transformer

    texts = _varied_texts()
    assert len(texts) >= 200
    got = embedder.embed(texts)
    assert got.dtype == np.float32 and got.shape == (len(texts), embedder.dim) == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    # sentence-transformers on every third text (all kinds: single words to 700-word texts, unicode, junk);
    # test_encoder_parity compares it with the query encoder on all of them.
    some = list(range(0, len(texts), 3))
    ref = load_sentence_transformer(threads=2).encode([texts[i] for i in some], batch_size=32,
                                                      normalize_embeddings=True, convert_to_numpy=True)
    cos = _cos(got[some], ref)
    assert cos.min() >= 0.9999, f"cosine {cos.min():.6f} for {texts[some[int(np.argmin(cos))]][:80]!r}"
    queries = QueryEncoder.load(encoder_dir, threads=1)
    one_by_one = np.concatenate([queries.encode([t]) for t in texts])
    assert np.abs(one_by_one - got).max() <= 1e-5


def test_a_text_alone_or_in_any_batch_gives_the_same_vector(embedder, monkeypatch):
    texts = _varied_texts()[:120]
    # Small windows and budgets: many batches of different widths, several tokenisation windows.
    monkeypatch.setattr(E, "WINDOW", 17)
    monkeypatch.setattr(E, "TOKEN_BUDGET", 300)
    batched = embedder.embed(texts)
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(texts))
    shuffled = embedder.embed([texts[i] for i in perm])
    assert np.abs(shuffled - batched[perm]).max() <= 1e-5
    for i in (0, 5, 40, 119):
        alone = embedder.embed([texts[i]])
        assert np.abs(alone[0] - batched[i]).max() <= 1e-5
    monkeypatch.undo()
    assert np.abs(embedder.embed(texts) - batched).max() <= 1e-5


def test_empty_input_bad_input_and_out_buffer(embedder, tmp_path):
    empty = embedder.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    with pytest.raises(TypeError):
        embedder.embed("a string is not a list of passages")
    texts = ["parse yaml files", "http client with retries", "plot a heatmap " * 80]
    mm = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32, shape=(3, 384))
    assert embedder.embed(texts, out=mm, progress=True) is mm
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), embedder.embed(texts), atol=1e-5)
    with pytest.raises(ValueError):
        embedder.embed(texts, out=np.empty((2, 384), dtype=np.float32))


def test_threads_default_to_all_cores(encoder_dir):
    assert PassageEmbedder.load(encoder_dir).threads == E.cpu_count() >= 1
    assert PassageEmbedder.load(encoder_dir, threads=1).threads == 1


@pytest.mark.timeout(900)
def test_fingerprint_follows_the_graph(embedder, encoder_dir, int8_dir, tmp_path):
    fp = embedder.fingerprint
    assert len(fp) == 16 and int(fp, 16) >= 0
    copy = tmp_path / "copy"
    shutil.copytree(encoder_dir, copy)
    assert PassageEmbedder.load(copy).fingerprint == fp            # same graph, other folder: same key
    int8 = PassageEmbedder.load(int8_dir)
    assert int8.fingerprint != fp                                    # fp32 vs int8: never share vectors
    tok = copy / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"[UNK]"', '"[UNK]" ', 1))
    assert PassageEmbedder.load(copy).fingerprint != fp              # another tokenizer file: another key


@pytest.mark.timeout(900)
def test_int8_graph_runs_one_text_at_a_time_and_stays_close(embedder, int8_dir):
    texts = _varied_texts()[:80]
    int8 = PassageEmbedder.load(int8_dir, threads=2)
    got = int8.embed(texts)
    # Dynamic quantisation scales activations per input tensor: run alone, a text's vector is its own.
    queries = QueryEncoder.load(int8_dir, threads=1)
    assert queries.single
    np.testing.assert_array_equal(np.concatenate([queries.encode([t]) for t in texts]), got)
    np.testing.assert_array_equal(queries.encode(texts), got)        # the query encoder's batch path too
    np.testing.assert_array_equal(int8.embed(texts[::-1]), got[::-1])
    assert _cos(got, embedder.embed(texts)).min() >= 0.95


def test_embedding_passages_imports_no_torch(encoder_dir):
    code = ("import sys; from pathlib import Path; from core.search.embed import PassageEmbedder; "
            f"e = PassageEmbedder.load(Path({str(encoder_dir)!r})); v = e.embed(['a passage', 'another one']); "
            "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]; "
            "print(bad, v.shape); sys.exit(1 if bad or v.shape != (2, 384) else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
