"""App benchmarks, printed as ratios and times measured in one run.

1. process start -> first HTTP 200: `python app.py` vs a bare Gradio Blocks page   target: <= 1.5x
2. History tab refresh on a run log with 100,000 generation rows                   target: < 1 s

Run: make bench  (or: .venv/bin/python bench/bench_app.py [--repeats N])
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BARE = """
import gradio as gr
with gr.Blocks() as demo:
    gr.Markdown("hello")
demo.launch(server_name="127.0.0.1", server_port={port}, quiet=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_to_200(cmd: list[str], env: dict, port: int, limit: float = 120) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < limit:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"no HTTP 200 within {limit} s: {cmd}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def seed_generations(db_path: Path, runs: int, per_run: int) -> None:
    """Fill a run log with `runs` compare runs of `per_run` generations each (one transaction)."""
    from prompt_lab.runlog.store import open_db, utc_now

    rng = random.Random(0)
    db = open_db(db_path)
    strategies = ["zero_shot", "few_shot", "cot", "few_shot_cot"]
    templates = ["sentiment", "arithmetic", "plausibility", "summarize"]
    now = utc_now()
    with db.conn:
        db.conn.executemany(
            "insert into runs (id, kind, status, created_utc, template_name, template_hash, models_json, "
            "strategies_json, params_json, options_json, variables_json, duration_ms) values "
            "(?, 'compare', 'completed', ?, ?, 'h', '[\"default\"]', ?, '{}', '{}', '{}', 1000)",
            [(i, now, templates[i % 4], json.dumps(strategies)) for i in range(1, runs + 1)])
        db.conn.executemany(
            "insert into generations (run_id, created_utc, template_name, strategy, model_spec, prompt, output, "
            "answer, prompt_tokens, completion_tokens, latency_ms, tokens_per_s) values "
            "(?, ?, ?, ?, 'default', 'a prompt', 'an output', 'Positive', ?, ?, ?, ?)",
            [(r, now, templates[r % 4], strategies[g % 4], rng.randint(50, 300), rng.randint(1, 128),
              rng.uniform(200, 6000), rng.uniform(5, 20)) for r in range(1, runs + 1) for g in range(per_run)])
    db.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="prompt-lab-bench-app-"))
    env = dict(os.environ, PROMPT_LAB_HOME=str(home), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")

    ours, bare = [], []
    for _ in range(args.repeats):  # alternate, so both see the same machine state
        port = free_port()
        ours.append(time_to_200([sys.executable, "app.py"], dict(env, PROMPT_LAB_PORT=str(port)), port))
        port = free_port()
        bare.append(time_to_200([sys.executable, "-c", BARE.replace("{port}", str(port))], env, port))
    ours_s, bare_s = statistics.median(ours), statistics.median(bare)
    print(f"[startup] python app.py -> first HTTP 200: {ours_s:.2f} s (median of {args.repeats})")
    print(f"[startup] bare Gradio Blocks    -> first HTTP 200: {bare_s:.2f} s")
    print(f"[startup] ratio: ours / bare = {ours_s / bare_s:.2f}x (target <= 1.5x)")

    os.environ["PROMPT_LAB_HOME"] = str(home)
    start = time.perf_counter()
    seed_generations(home / "runs.db", runs=25_000, per_run=4)
    print(f"[history] seeded 25,000 runs / 100,000 generations in {time.perf_counter() - start:.1f} s")
    from prompt_lab.ui.history_tab import refresh, show_run

    refresh("(any)", "(any)", "(any)", "(any)", "any time")  # first call imports plotly and warms the page cache
    timings = {}
    for label, filters in [("no filter", ("(any)", "(any)", "(any)", "(any)", "any time")),
                           ("template + strategy", ("arithmetic", "cot", "(any)", "(any)", "last 7 days"))]:
        timings[label] = statistics.median(
            [(lambda t0: (refresh(*filters), time.perf_counter() - t0)[1])(time.perf_counter())
             for _ in range(args.repeats)])
        print(f"[history] refresh ({label}): {timings[label] * 1000:.0f} ms (target < 1000 ms)")
    t0 = time.perf_counter()
    show_run(12_345)
    print(f"[history] one run's generations: {(time.perf_counter() - t0) * 1000:.0f} ms")
    print(json.dumps({"startup_ours_s": round(ours_s, 3), "startup_bare_s": round(bare_s, 3),
                      "startup_ratio": round(ours_s / bare_s, 3),
                      **{f"history_{k.replace(' ', '_')}_ms": round(v * 1000, 1) for k, v in timings.items()}}))


if __name__ == "__main__":
    main()
