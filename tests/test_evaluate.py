"""The eval CLI (eval/evaluate.py): metric functions on hand-computed rankings, and one end-to-end run."""

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("eval_evaluate", ROOT / "eval" / "evaluate.py")
ev = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ev)

RANKING = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]


def test_success_at_k():
    assert ev.success_at(RANKING, {"c", "x"}, 1) == 0.0
    assert ev.success_at(RANKING, {"c", "x"}, 3) == 1.0
    assert ev.success_at(RANKING, {"c", "x"}, 2) == 0.0
    assert ev.success_at(RANKING, {"a"}, 1) == 1.0
    assert ev.success_at(RANKING, {"f"}, 5) == 0.0
    assert ev.success_at(RANKING, {"zz"}, 10) == 0.0


def test_mrr_at_10():
    assert ev.mrr_at(RANKING, {"c", "x"}) == pytest.approx(1 / 3)
    assert ev.mrr_at(RANKING, {"f", "b"}) == pytest.approx(1 / 2)   # first relevant counts
    assert ev.mrr_at(RANKING, {"j"}) == pytest.approx(1 / 10)
    assert ev.mrr_at(RANKING, {"k"}) == 0.0                          # rank 11: beyond the cutoff
    assert ev.mrr_at([], {"a"}) == 0.0


def test_ndcg_at_10_binary():
    # one of two relevant documents, at rank 3: (1/log2 4) / (1 + 1/log2 3)
    assert ev.ndcg_at(RANKING, {"c", "x"}) == pytest.approx(0.5 / (1 + 1 / math.log2(3)))
    assert ev.ndcg_at(RANKING, {"a", "b"}) == pytest.approx(1.0)
    assert ev.ndcg_at(RANKING, {"b", "a"}) == pytest.approx(1.0)
    # both relevant at ranks 2 and 4
    want = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ev.ndcg_at(RANKING, {"b", "d"}) == pytest.approx(want)
    assert ev.ndcg_at(RANKING, {"k"}) == 0.0
    assert ev.ndcg_at(["a", "a"], {"a", "b"}) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_query_metrics_and_mean():
    m = ev.query_metrics(RANKING, ["f", "zz"])
    assert m == pytest.approx({"success@1": 0.0, "success@5": 0.0, "mrr@10": 1 / 6,
                               "ndcg@10": (1 / math.log2(7)) / (1 + 1 / math.log2(3)), "recall@10": 0.5})
    mean = ev.mean_metrics([ev.query_metrics(RANKING, ["a"]), ev.query_metrics(RANKING, ["e"])])
    assert mean["success@1"] == 0.5 and mean["success@5"] == 1.0
    assert mean["mrr@10"] == pytest.approx((1 + 1 / 5) / 2)


def test_folds_are_stratified_and_disjoint():
    qs = [{"qid": f"q{i:02d}", "kind": "lexical" if i % 3 else "paraphrase"} for i in range(10)]
    a, b = ev.folds_of(qs, 2)
    assert sorted(a + b) == list(range(10)) and not set(a) & set(b)
    kinds = lambda f: sorted(qs[i]["kind"] for i in f)  # noqa: E731
    assert abs(kinds(a).count("paraphrase") - kinds(b).count("paraphrase")) <= 1


QUESTIONS = [
    {"qid": "t1", "query": "how do I fix a flat bike tyre", "relevant": ["tire-puncture"], "kind": "lexical"},
    {"qid": "t2", "query": "isolated python package environment", "relevant": ["python-virtualenv"],
     "kind": "mixed"},
    {"qid": "t3", "query": "why does the moon make the sea go up and down", "relevant": ["tides"],
     "kind": "paraphrase"},
]


ALPHA = Settings().convex_alpha  # the product's default is the run the done-when rule checks


def test_cli_end_to_end_on_the_mini_corpus(tmp_path, mini_bundle, mini_corpus, capsys):
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    bundle = tmp_path / "bundle"
    shutil.copytree(mini_bundle, bundle)           # same corpus sha256: reused, not rebuilt
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    rc = ev.main(["--corpus", str(mini_corpus), "--queries", str(queries), "--bundle-dir", str(bundle),
                  "--alphas", f"0.5,0.7,{ALPHA}", "--norms", "minmax,tmm,zscore", "--depth", "20",
                  "--json", str(out_json), "--markdown", str(out_md), "--quiet"])
    assert rc == 0
    report = json.loads(out_json.read_text())
    assert report["n_queries"] == 3 and report["config"]["bundle"] == "reused"
    runs = set(report["overall"])
    assert {"bm25", "dense", "rrf", "convex-minmax a=0.70", "convex-tmm a=0.50", "convex-zscore a=0.70"} <= runs
    # the offline min-max convex path ranks exactly like the engine
    assert report["engine_agreement"] == 3
    # these questions are easy for the dense retriever on this corpus
    assert report["overall"]["dense"]["success@5"] == 1.0
    for m in report["overall"].values():
        assert set(m) == set(ev.METRICS) and all(0.0 <= v <= 1.0 for v in m.values())
    assert set(report["by_kind"]["bm25"]) == {"lexical", "mixed", "paraphrase"}
    assert report["default_run"] == f"convex-minmax a={ALPHA:.2f}" and isinstance(report["done_when"], bool)
    text = out_md.read_text()
    assert "| bm25 |" in text and "success@5" in text and "Cross-validation" in text
    assert "| dense |" in capsys.readouterr().out
