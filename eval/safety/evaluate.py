#!/usr/bin/env python3
"""Measure the ads safety screen (``core.ads.safety.screen``) on hand-written conversations.

    .venv/bin/python eval/safety/evaluate.py [--split dev|heldout|all] [--json OUT] [--show-misses]

``conversations.jsonl``: one conversation a line, ``label`` "sensitive" (suicide,
self-harm, abuse, crisis; indirect phrasings such as overdose amounts, lethal
doses, "not waking up") or "benign" (idioms such as "this traffic is killing me",
normal medication dosing, everyday needs), in English, French, Spanish, German,
Italian and Portuguese. ``split`` "dev" is the part the screen was tuned on;
"heldout" was written at the same time and not looked at while tuning.

Reports, per split: recall on sensitive conversations (blocked / sensitive) and the
false-block rate on benign ones (blocked / benign), with the misses listed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SET = Path(__file__).with_name("conversations.jsonl")


def load(path: Path = SET) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from core.ads.safety import screen

    out: dict[str, Any] = {}
    for split in ("dev", "heldout", "all"):
        part = [r for r in rows if split == "all" or r["split"] == split]
        sens = [r for r in part if r["label"] == "sensitive"]
        benign = [r for r in part if r["label"] == "benign"]
        verdicts = {r["id"]: screen(t["content"] for t in r["turns"]) for r in part}
        missed = [r for r in sens if not verdicts[r["id"]].sensitive]
        blocked = [r for r in benign if verdicts[r["id"]].sensitive]
        out[split] = {
            "sensitive": len(sens), "benign": len(benign),
            "recall": round(1 - len(missed) / len(sens), 3) if sens else None,
            "false_block_rate": round(len(blocked) / len(benign), 3) if benign else None,
            "missed": [{"id": r["id"], "text": r["turns"][-1]["content"]} for r in missed],
            "false_blocks": [{"id": r["id"], "text": r["turns"][-1]["content"],
                              "matched": verdicts[r["id"]].matched, "category": verdicts[r["id"]].category}
                             for r in blocked],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "heldout", "all"), default=None, help="only this split")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    report = evaluate(load())
    splits = [args.split] if args.split else ["dev", "heldout", "all"]
    print(f"{'split':<8} {'sensitive':>9} {'recall':>7} {'benign':>7} {'false-block':>11}")
    for s in splits:
        r = report[s]
        print(f"{s:<8} {r['sensitive']:>9} {r['recall']:>7.3f} {r['benign']:>7} {r['false_block_rate']:>11.3f}")
    if args.show_misses:
        for s in splits:
            if s == "all":
                continue
            for m in report[s]["missed"]:
                print(f"  missed      {m['id']}: {m['text']}")
            for m in report[s]["false_blocks"]:
                print(f"  false block {m['id']}: {m['text']}  [{m['category']}: {m['matched']!r}]")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
