"""The ONNX query encoder must embed like the sentence-transformers model that embeds passages."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from core.artifacts import ArtifactError
from core.search.encoder import QueryEncoder

ROOT = Path(__file__).resolve().parents[1]


def _varied_texts() -> list[str]:
    rng = random.Random(7)
    texts: list[str] = []
    for line in (ROOT / "tests" / "data" / "mini_corpus.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        texts += [d["title"] or "untitled", d["text"]]                 # short and medium
    words = " ".join(texts).split()
    for n in (1, 2, 3, 5, 8, 13, 21, 34):
        for _ in range(14):
            start = rng.randrange(0, len(words) - n)
            texts.append(" ".join(words[start:start + n]))
    for _ in range(8):                                                # far beyond 256 tokens
        texts.append(" ".join(rng.choice(words) for _ in range(rng.randrange(300, 700))))
    texts += [
        "Ünïcödé façade — naïve café 東京タワー 😀🚀", "Ελληνικά και русский текст", "مرحبا بالعالم",
        "!!!???...;;;", "C++ / C# / F#: which one?", "e-mail: a.b@example.com, url: https://x.y/z?q=1&r=2",
        "   leading and trailing spaces   ", "tabs\tand\nnewlines\r\nmixed", "UPPER CASE QUERY", "a",
        "x" * 600, "🙂" * 50, "1234567890 " * 30, "<html><body>tag soup</body></html>",
    ]
    return texts


@pytest.fixture(scope="module")
def st_model():
    from core.search.export import load_sentence_transformer

    return load_sentence_transformer()


@pytest.fixture(scope="module")
def encoder(encoder_dir):
    return QueryEncoder.load(encoder_dir, threads=2)


def test_onnx_matches_sentence_transformers(encoder, st_model):
    texts = _varied_texts()
    assert len(texts) >= 200
    onnx = encoder.encode(texts)
    ref = st_model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    assert onnx.dtype == np.float32 and onnx.shape == (len(texts), encoder.dim) == ref.shape
    cos = (onnx.astype(np.float64) * ref).sum(axis=1) / np.linalg.norm(ref, axis=1)
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.999, f"cosine {cos.min():.5f} for {texts[worst][:80]!r}"
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-4)


def test_single_text_path_equals_batch_path(encoder):
    texts = ["short", "a somewhat longer query about bread baking", "word " * 400]
    batch = encoder.encode(texts)
    for i, t in enumerate(texts):
        single = encoder.encode([t])
        assert single.shape == (1, encoder.dim)
        assert float(single[0] @ batch[i]) >= 0.9999


def test_single_query_is_not_padded_and_long_input_is_truncated(encoder):
    assert len(encoder._tokenizer.encode("hello world").ids) == 4          # [CLS] hello world [SEP]
    assert len(encoder._tokenizer.encode("word " * 1000).ids) == encoder.max_seq_length == 256


def test_encoder_metadata_and_empty_input(encoder):
    assert encoder.dim == 384 and "MiniLM" in encoder.name
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        encoder.encode("not a list")


def test_broken_encoder_folder_raises_artifact_error(encoder_dir, tmp_path):
    import shutil

    bad = tmp_path / "enc"
    shutil.copytree(encoder_dir, bad)
    (bad / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ArtifactError):
        QueryEncoder.load(bad)
    (bad / "encoder.json").unlink()
    with pytest.raises(ArtifactError):
        QueryEncoder.load(bad)
