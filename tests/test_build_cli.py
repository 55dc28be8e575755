import json
import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest

from core.artifacts import read_manifest, verify
from core.search import build
from core.search.engine import SearchIndex

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"id": "a", "title": "Alpha", "url": "https://x/a", "text": "alpha beta gamma", "metadata": {"k": 1}}


def _write(path: Path, lines: list) -> Path:
    path.write_bytes(b"".join((ln if isinstance(ln, bytes) else
                               (ln if isinstance(ln, str) else json.dumps(ln)).encode()) + b"\n" for ln in lines))
    return path


BAD_CASES = {
    "invalid_json": ([GOOD, '{"id": "b", "text": "oops"', GOOD], 2, "invalid JSON"),
    "missing_text": ([GOOD, {"id": "b", "title": "B"}], 2, "missing 'text'"),
    "empty_text": ([GOOD, {"id": "c", "text": "x"}, {"id": "b", "text": "   \n "}], 3, "'text' is empty"),
    "non_string_text": ([{"id": "b", "text": 42}], 1, "'text' must be a string"),
    "non_string_id": ([GOOD, {"id": 7, "text": "seven"}], 2, "'id' must be a string"),
    "missing_id": ([{"text": "no id"}], 1, "missing 'id'"),
    "duplicate_id": ([GOOD, {**GOOD, "text": "other"}], 2, "duplicate id 'a' (first on line 1)"),
    "bad_metadata": ([GOOD, {"id": "b", "text": "t", "metadata": ["x"]}], 2, "'metadata' must be an object"),
    "not_an_object": ([GOOD, GOOD | {"id": "z"}, "[1, 2]"], 3, "must be a JSON object"),
    "not_utf8": ([GOOD, b'{"id": "b", "text": "caf\xe9"}'], 2, "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_the_line_exits_2_and_leaves_nothing(case, tmp_path, caplog):
    lines, line_no, message = BAD_CASES[case]
    corpus = _write(tmp_path / "corpus.jsonl", lines)
    parent = tmp_path / "out"
    parent.mkdir()
    with caplog.at_level(logging.ERROR):
        code = build.main([str(corpus), "--out", str(parent / "bundle"), "--quiet"])
    assert code == 2
    assert f"line {line_no}: " in caplog.text and message in caplog.text
    assert list(parent.iterdir()) == []


def test_empty_corpus_is_refused(tmp_path):
    corpus = _write(tmp_path / "c.jsonl", ["", "   "])
    with pytest.raises(build.CorpusError, match="no documents"):
        build.build_bundle(corpus, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_entry_point_in_a_subprocess(tmp_path):
    corpus = _write(tmp_path / "c.jsonl", [GOOD, "{broken"])
    proc = subprocess.run([sys.executable, "-m", "core.search.build", str(corpus), "--out", str(tmp_path / "b")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "line 2: invalid JSON" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]
    usage = subprocess.run([sys.executable, "-m", "core.search.build", str(corpus)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "--out" in usage.stderr


def test_build_upload_and_replace(tmp_path, monkeypatch, capsys, encoder_dir):
    calls = []
    fake = types.ModuleType("core.adapters.blob")

    def publish_artifact(settings, artifact_dir, container):
        verify(artifact_dir, kind="search-index")
        calls.append((type(settings).__name__, Path(artifact_dir), container))
        return read_manifest(artifact_dir)["version"]

    fake.publish_artifact = publish_artifact
    monkeypatch.setitem(sys.modules, "core.adapters.blob", fake)
    others = [{"id": f"o{i}", "text": f"other document number {i}"} for i in range(3)]
    corpus = _write(tmp_path / "c.jsonl", [GOOD, {"id": "b", "title": "Beta", "text": "delta epsilon " * 150,
                                                  "metadata": {"k": 2}}, *others])
    out = tmp_path / "out" / "bundle"
    code = build.main([str(corpus), "--out", str(out), "--version", "v1", "--random-embeddings", "--quiet",
                       "--upload", "--container", "idx"])
    assert code == 0
    assert calls == [("Settings", out, "idx")]
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "version v1" in summary[0] and "5 documents" in summary[0] and "'idx'" in summary[0]
    m = read_manifest(out)
    assert m["embeddings"]["random"] is True and m["passage_count"] == 6 and m["doc_count"] == 5
    # Rebuilding replaces the folder atomically and leaves no staging folders behind.
    assert build.main([str(corpus), "--out", str(out), "--version", "v2", "--random-embeddings", "--quiet"]) == 0
    assert read_manifest(out)["version"] == "v2"
    assert sorted(p.name for p in out.parent.iterdir()) == ["bundle"]
    index = SearchIndex.load(out)
    assert [h.id for h in index.search("epsilon", method="bm25")] == ["b"]


def test_container_without_upload_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        build.main([str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "o"), "--container", "x"])
    assert exc.value.code == 2
