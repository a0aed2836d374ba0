"""Remote-model benchmarks: the embedded model through `transformers serve` on this machine, measured in one run.

1. the same 3-strategy compare (sentiment: zero-shot, few-shot, CoT; greedy, 64 new tokens) through the local
   backend and through the server (median of --repeats runs each, interleaved) -> ratio
2. evaluation throughput (items/s) through the server with 1, 4 and 8 requests in flight (the endpoint's
   max_concurrency), on a plain server and on one started with --continuous-batching; the local backend at
   batch 16 on the same items for reference

Both the server and this process share the machine's cores, so the figures compare serving paths, not
hardware. Run: make bench  (or: .venv/bin/python bench/bench_remote.py [--items N] [--repeats N])
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from serving import served  # noqa: E402  (bench/ is on sys.path when this file runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=48, help="sentiment items per throughput run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="prompt-lab-bench-remote-"))
    os.environ["PROMPT_LAB_HOME"] = str(home)

    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.models import GenerationParams, get_backend
    from prompt_lab.models.local.loading import convert_gguf, embedded_gguf
    from prompt_lab.compare import compare

    folder = convert_gguf(embedded_gguf())
    get_backend("default")  # loaded outside the timings
    review = "The pasta was cold and the waiter ignored us for an hour, but the dessert almost made up for it."
    params = GenerationParams(max_new_tokens=64)
    dataset = str(ROOT / "experiments/data/sentiment.csv")
    columns = {"variables": {"review": "review"}, "target": "label"}
    summary: dict = {}

    def timed_compare(model: str) -> float:
        start = time.perf_counter()
        compare("sentiment", {"review": review}, strategies=["zero_shot", "few_shot", "cot"], models=[model],
                params=params)
        return time.perf_counter() - start

    def throughput(model: str, batch: int) -> tuple[float, float]:
        spec = EvalSpec(template="sentiment", dataset=dataset, columns=columns, models=[model],
                        strategies=["zero_shot"], limit=args.items, max_new_tokens=16, batch_size=batch)
        start = time.perf_counter()
        evaluate(spec)
        seconds = time.perf_counter() - start
        return args.items / seconds, seconds

    with served(folder) as url:
        (home / "endpoints.yaml").write_text("".join(
            f"serve-{n}:\n  base_url: {url}\n  max_concurrency: {n}\n  timeout_s: 300\n" for n in (1, 4, 8)))
        remote = f"openai:{folder}@serve-4"
        timed_compare(remote)  # the server's first request loads its model
        local_s, remote_s = [], []
        for _ in range(args.repeats):
            local_s.append(timed_compare("default"))
            remote_s.append(timed_compare(remote))
        local, server = statistics.median(local_s), statistics.median(remote_s)
        summary.update(compare_local_s=local, compare_server_s=server, compare_ratio=server / local)
        print(f"[compare] 3 strategies x 64 tokens, median of {args.repeats}: local backend {local:.2f} s, through "
              f"transformers serve {server:.2f} s -> the server path takes {server / local:.2f}x the local time")
        for n in (1, 4, 8):
            rate, seconds = throughput(f"openai:{folder}@serve-{n}", 16)
            summary[f"plain_{n}_items_per_s"] = rate
            print(f"[eval, plain server] {args.items} items, {n} in flight: {seconds:.1f} s -> {rate:.2f} items/s")

    with served(folder, "--continuous-batching") as url:
        (home / "endpoints.yaml").write_text("".join(
            f"cb-{n}:\n  base_url: {url}\n  max_concurrency: {n}\n  timeout_s: 300\n" for n in (1, 4, 8)))
        throughput(f"openai:{folder}@cb-1", 16)  # warm-up: loads the model and builds the paged cache
        for n in (1, 4, 8):
            rate, seconds = throughput(f"openai:{folder}@cb-{n}", 16)
            summary[f"cb_{n}_items_per_s"] = rate
            print(f"[eval, --continuous-batching] {args.items} items, {n} in flight: {seconds:.1f} s -> "
                  f"{rate:.2f} items/s")

    rate, seconds = throughput("default", 16)
    summary["local_batch16_items_per_s"] = rate
    print(f"[eval, local backend] {args.items} items at batch 16: {seconds:.1f} s -> {rate:.2f} items/s")
    for mode in ("plain", "cb"):
        print(f"[eval] {mode}: 8 in flight vs 1: {summary[f'{mode}_8_items_per_s'] / summary[f'{mode}_1_items_per_s']:.2f}x")
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}))


if __name__ == "__main__":
    main()
