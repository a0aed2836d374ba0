"""Prompt search benchmarks on the default model, measured in one run.

1. the wall time of the shipped search (experiments/search_sentiment.yaml: SmolLM2 proposes, SmolLM2 answers,
   2 rounds x 3 candidates, 50 dev and 50 test reviews), with what it found on dev and on the held-out test split
2. candidates scored per minute on the CPU: the candidates that search logged, each scored on the same dev items
   with label probabilities and with generate-then-extract (greedy, max_new_tokens 48, batch 16), A vs B

Run: make bench-search  (or: .venv/bin/python bench/bench_search.py [--rounds R] [--candidates N])
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--candidates", type=int)
    args = parser.parse_args()
    os.environ["PROMPT_LAB_HOME"] = tempfile.mkdtemp(prefix="prompt-lab-bench-search-")

    from prompt_lab.evaluation.evaluate import plan, score_batch
    from prompt_lab.models import get_backend
    from prompt_lab.runlog.store import open_db, run_template
    from prompt_lab.search.loop import search
    from prompt_lab.search.results import search_lines, search_result
    from prompt_lab.search.spec import load_search_spec, split_items

    backend = get_backend("default")  # load (and convert) outside the timings
    spec = load_search_spec(ROOT / "experiments/search_sentiment.yaml", rounds=args.rounds, candidates=args.candidates)
    start = time.perf_counter()
    run_id = search(spec)
    search_s = time.perf_counter() - start
    result = search_result(run_id)
    print("\n".join(search_lines(result)))
    print(f"\n[shipped search] {search_s:.1f} s wall time ({search_s / 60:.1f} min): "
          f"{len(result['candidates'])} candidates, {result['budget']['calls_used']} model calls")

    db = open_db()
    scored = [c for c in result["candidates"] if c["status"] == "scored"]
    templates = [run_template(db, {"id": run_id, "template_hash": c["template_hash"]}) for c in scored]
    summary = {"search_s": search_s, "candidates": len(scored)}
    for method in ("label_probs", "generate"):
        p = plan(replace(spec.eval_spec(method), batch_size=16))
        dev, _ = split_items(p.items, spec.dev_fraction, spec.seed)
        started = time.perf_counter()
        for template in templates:
            version = replace(p, template=template)
            for i in range(0, len(dev), 16):
                score_batch(version, backend, ("zero_shot", "default", 0, 0), dev[i:i + 16], None)
        elapsed = time.perf_counter() - started
        summary[f"{method}_s"] = elapsed
        summary[f"{method}_per_min"] = len(templates) / (elapsed / 60)
        print(f"[scoring] {len(templates)} candidates x {len(dev)} dev items with {method}: {elapsed:.1f} s = "
              f"{len(templates) / (elapsed / 60):.1f} candidates/min")
    print(f"[scoring] label probabilities score {summary['generate_s'] / summary['label_probs_s']:.1f}x more "
          "candidates per minute than generate-then-extract")
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}))


if __name__ == "__main__":
    main()
