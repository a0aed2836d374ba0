"""Replicas benchmark: the embedded model served by one vs two `transformers serve` processes, measured in one run.

The same N items of experiments/data/sentiment.csv (zero-shot, generate, greedy, 16 new tokens) are evaluated
1. through an endpoint with one server holding every core (OMP_NUM_THREADS = cores; max_concurrency C, default 2),
2. through an endpoint with two servers of the same model that share the cores out (cores / 2 threads each;
   base_urls, max_concurrency C each),
3. through the same two-server endpoint with one server killed (SIGKILL) shortly after the run starts: its
   requests fail over to the other (the cost of a crash: lost work, the retry, one server for the rest),
4. through two servers that each take every core (the default when nobody sets threads): more busy threads
   than cores, which shows why replicas on one machine must share the cores out.
Prints items/s for each, the ratios to one server, and a JSON summary line.

All servers and this process share this machine's cores: two replicas on one machine add request slots, not
compute, so the gain is small; the figures show the client's spreading and failover cost more than what two
machines would give.
Run: make bench-replicas  (or: .venv/bin/python bench/bench_replicas.py [--items N] [--concurrency C])
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from serving import kill_server, served  # noqa: E402  (bench/ is on sys.path when this file runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=24, help="sentiment items per run (default 24)")
    parser.add_argument("--concurrency", type=int, default=2, help="max_concurrency per server (default 2)")
    parser.add_argument("--kill-after", type=float, default=1.0,
                        help="seconds into the failover run at which the second server is killed (default 1)")
    parser.add_argument("--skip-oversubscribed", action="store_true",
                        help="leave out the run with two servers of all cores' threads each")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="prompt-lab-bench-replicas-"))
    os.environ["PROMPT_LAB_HOME"] = str(home)
    logging.basicConfig(level=logging.WARNING, format="  [log] %(message)s")  # shows the replica going down

    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.models import GenerationParams, get_backend
    from prompt_lab.models.local.loading import convert_gguf, embedded_gguf

    folder = convert_gguf(embedded_gguf())
    dataset = str(ROOT / "experiments/data/sentiment.csv")
    columns = {"variables": {"review": "review"}, "target": "label"}

    def run(endpoint: str, during=None) -> dict:
        spec = EvalSpec(template="sentiment", dataset=dataset, columns=columns, models=[f"openai:{folder}@{endpoint}"],
                        strategies=["zero_shot"], limit=args.items, max_new_tokens=16, batch_size=args.items)
        if during is not None:
            threading.Timer(args.kill_after, during).start()
        start = time.perf_counter()
        run_id = evaluate(spec)
        seconds = time.perf_counter() - start
        db = sqlite3.connect(home / "runs.db")
        status = db.execute("select status from runs where id = ?", [run_id]).fetchone()[0]
        answered = db.execute("select count(*) from generations where run_id = ? and output != ''",
                              [run_id]).fetchone()[0]
        return {"seconds": seconds, "items_per_s": args.items / seconds, "status": status, "answered": answered}

    cores = os.cpu_count() or 1
    whole, half = {"OMP_NUM_THREADS": str(cores)}, {"OMP_NUM_THREADS": str(max(1, cores // 2))}

    def endpoints(**servers) -> None:
        lines = []
        for name, urls in servers.items():
            lines.append(f"{name}:\n  base_urls: [{', '.join(urls)}]\n  max_concurrency: {args.concurrency}\n"
                         "  timeout_s: 300\n")
        (home / "endpoints.yaml").write_text("".join(lines))
        for url in {u for urls in servers.values() for u in urls}:  # each server's first request loads its model
            get_backend(f"openai:{folder}@{url}").generate(["Say hi."], GenerationParams(max_new_tokens=4))

    with served(folder, env=whole) as solo:  # one server with every core
        endpoints(one=[solo])
        one = run("one")
    print(f"[one replica, {cores} threads]  {args.items} items, {args.concurrency} in flight: {one['seconds']:.1f} s "
          f"-> {one['items_per_s']:.2f} items/s")
    with served(folder, env=half) as first, served(folder, env=half) as second:  # the cores shared out
        endpoints(two=[first, second])
        two = run("two")
        print(f"[two replicas, {half['OMP_NUM_THREADS']} thread(s) each] {args.items} items, {args.concurrency} in "
              f"flight on each: {two['seconds']:.1f} s -> {two['items_per_s']:.2f} items/s "
              f"({two['items_per_s'] / one['items_per_s']:.2f}x one replica)")
        failover = run("two", during=lambda: kill_server(second))
        print(f"[two replicas, the second killed {args.kill_after:g} s in] {failover['seconds']:.1f} s -> "
              f"{failover['items_per_s']:.2f} items/s; run {failover['status']}, {failover['answered']}/{args.items} "
              "items answered")
    over = None
    if not args.skip_oversubscribed:
        with served(folder, env=whole) as first, served(folder, env=whole) as second:  # every core twice over
            endpoints(both=[first, second])
            over = run("both")
        print(f"[two replicas, {cores} threads each: more threads than cores] {over['seconds']:.1f} s -> "
              f"{over['items_per_s']:.2f} items/s ({over['items_per_s'] / one['items_per_s']:.2f}x one replica)")
    summary = {"items": args.items, "concurrency_per_replica": args.concurrency, "cpu_count": os.cpu_count(),
               "one_replica_items_per_s": one["items_per_s"], "two_replicas_items_per_s": two["items_per_s"],
               "two_vs_one_ratio": two["items_per_s"] / one["items_per_s"],
               "failover_items_per_s": failover["items_per_s"], "failover_answered": failover["answered"],
               "failover_status": failover["status"],
               "oversubscribed_items_per_s": over["items_per_s"] if over else None}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}))


if __name__ == "__main__":
    main()
