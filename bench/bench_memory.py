"""Memory benchmark: the peak resident memory (RSS) of the app with the default model, measured in one run.

The app (`python app.py`, a fresh data folder, the default model) is driven through its own API endpoints, as a
visitor's page drives it, and its peak RSS (VmHWM in /proc) is read after each step:
1. after start-up (the model loads on first use, so this is the app alone)
2. after a 3-strategy compare (sentiment: zero-shot, few-shot, CoT; 64 new tokens)      target: <= 1.5 GB
3. after an evaluation with label probabilities (experiments/sentiment_label_probs.yaml, 100 items)
4. after an evaluation with generate-then-extract (the same items, --gen-items of them)
5. a short LoRA tune (the shipped tune file, --tune-steps steps): a job runs in its own process, whose RSS is
   sampled every 0.2 s until it ends; the app's own peak is read again after it
A bare Python process that imports torch and transformers is measured as the floor.

Run: make bench  (or: .venv/bin/python bench/bench_memory.py [--gen-items N] [--tune-steps N]); Linux only.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LIMIT_MB = 1536


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb(pid: int) -> dict:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in MB."""
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": round(fields["VmRSS"]), "peak_mb": round(fields["VmHWM"])}


def job_processes(parent: int) -> list[int]:
    """PIDs of tuning-job processes the app started (python -m prompt_lab.tuning.jobs N)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"prompt_lab.tuning.jobs" in cmd:
                found.append(int(entry.name))
    return found


def floor_mb() -> dict:
    """The same interpreter importing torch and transformers, nothing else."""
    code = ("import torch, transformers, os; "
            "print(open(f'/proc/{os.getpid()}/status').read())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    fields = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in out.splitlines()
              if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss_mb": round(fields["VmRSS"]), "peak_mb": round(fields["VmHWM"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gen-items", type=int, default=32)
    parser.add_argument("--tune-steps", type=int, default=10)
    args = parser.parse_args()

    from gradio_client import Client

    home, port = tempfile.mkdtemp(prefix="prompt-lab-bench-mem-"), free_port()
    env = dict(os.environ, PROMPT_LAB_HOME=home, PROMPT_LAB_PORT=str(port), HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    steps = {}
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # not listening yet
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the app did not start") from None
                time.sleep(0.5)
        steps["floor: python + torch + transformers"] = floor_mb()
        steps["app started"] = memory_mb(proc.pid)

        client.predict("sentiment", {"review": "The battery lasts two days, but the speaker is tinny."},
                       ["zero_shot", "few_shot", "cot"], ["default"], {"max_new_tokens": 64}, 3, api_name="/compare")
        steps["after a compare (3 strategies, 64 tokens)"] = memory_mb(proc.pid)

        report = client.predict("sentiment_label_probs", 0, api_name="/evaluate")
        steps[f"after an evaluation, label probabilities ({report['items']} items)"] = memory_mb(proc.pid)

        report = client.predict("sentiment_strategies", args.gen_items, api_name="/evaluate")
        steps[f"after an evaluation, generate ({report['items']} items)"] = memory_mb(proc.pid)

        spec = yaml.safe_load((ROOT / "experiments/tune_sentiment_codes.yaml").read_text())
        spec.update(dataset=Path(spec["dataset"]).name, max_steps=args.tune_steps, eval_steps=args.tune_steps,
                    save_steps=args.tune_steps)
        job_id = client.predict(spec, api_name="/tune")["job_id"]
        job_peak, status = 0.0, "queued"
        while status in ("queued", "running"):
            for pid in job_processes(proc.pid):
                try:
                    job_peak = max(job_peak, memory_mb(pid)["peak_mb"])
                except OSError:
                    pass
            status = client.predict(job_id, api_name="/job")["job"]["status"]
            time.sleep(0.2)
        steps[f"tuning job process, {args.tune_steps} LoRA steps + base-vs-tuned evaluation ({status})"] = {
            "rss_mb": None, "peak_mb": round(job_peak)}
        steps["app after the tune"] = memory_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    for name, mem in steps.items():
        now = f"now {mem['rss_mb']:5d} MB, " if mem["rss_mb"] is not None else " " * 13
        print(f"[memory] {name:<72} {now}peak {mem['peak_mb']:5d} MB")
    app_peak = max(m["peak_mb"] for n, m in steps.items() if n.startswith(("app", "after")))
    print(f"[memory] the app's peak with the default model: {app_peak} MB "
          f"({'within' if app_peak <= LIMIT_MB else 'OVER'} the {LIMIT_MB} MB target)")
    print(json.dumps({"steps": steps, "app_peak_mb": app_peak, "target_mb": LIMIT_MB}))


if __name__ == "__main__":
    main()
