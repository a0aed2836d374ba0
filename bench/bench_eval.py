"""Evaluation benchmarks on the default model, measured in one run.

1. label-probability scoring vs generate-then-extract on the 100-item sentiment set   target: >= 5x faster
   (zero-shot and few-shot prompts; both at batch 16; generation greedy, max_new_tokens 32)
2. evaluation throughput (items/s) of generate-then-extract at batch sizes 1, 4 and 16

Run: make bench  (or: .venv/bin/python bench/bench_eval.py [--items N])
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--throughput-items", type=int, default=32)
    args = parser.parse_args()
    os.environ["PROMPT_LAB_HOME"] = tempfile.mkdtemp(prefix="prompt-lab-bench-eval-")

    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.models import get_backend
    from prompt_lab.reporting.report import run_report
    from prompt_lab.runlog.store import open_db

    get_backend("default")  # load (and convert) outside the timings
    dataset = str(ROOT / "experiments/data/sentiment.csv")
    columns = {"variables": {"review": "review"}, "target": "label"}

    def timed_eval(**kwargs) -> tuple[float, dict]:
        spec = EvalSpec(template="sentiment", dataset=dataset, columns=columns, models=["default"], **kwargs)
        start = time.perf_counter()
        run_id = evaluate(spec)
        elapsed = time.perf_counter() - start
        return elapsed, run_report(open_db(), run_id)["conditions"][0]

    # warm-up: the first forward passes of a process allocate and tune kernels; neither method should pay that
    timed_eval(strategies=["zero_shot"], method="label_probs", limit=16, batch_size=16)
    timed_eval(strategies=["zero_shot"], method="generate", limit=4, max_new_tokens=8, batch_size=4)
    summary = {}
    for strategy, k in (("zero_shot", [3]), ("few_shot", [3])):
        probs_s, probs = timed_eval(strategies=[strategy], k_shot=k, method="label_probs", limit=args.items,
                                    batch_size=16)
        gen_s, gen = timed_eval(strategies=[strategy], k_shot=k, method="generate", limit=args.items,
                                max_new_tokens=32, batch_size=16)
        ratio = gen_s / probs_s
        summary[f"{strategy}_label_probs_s"], summary[f"{strategy}_generate_s"] = probs_s, gen_s
        summary[f"{strategy}_speedup"] = ratio
        print(f"[{strategy}] {probs['items']} items: label probabilities {probs_s:6.1f} s "
              f"(accuracy {probs['accuracy']:.0%}), generate-then-extract {gen_s:6.1f} s "
              f"(accuracy {gen['accuracy']:.0%}, {gen['no_answer']} without an answer) -> label probabilities "
              f"{ratio:.1f}x faster (target >= 5x)")

    for batch in (1, 4, 16):
        elapsed, result = timed_eval(strategies=["zero_shot"], method="generate", limit=args.throughput_items,
                                     max_new_tokens=32, batch_size=batch)
        summary[f"throughput_batch_{batch}"] = result["items"] / elapsed
        print(f"[throughput] generate-then-extract, zero-shot, batch {batch:2d}: {result['items'] / elapsed:5.2f} items/s "
              f"({result['items']} items in {elapsed:.1f} s)")
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}))


if __name__ == "__main__":
    main()
