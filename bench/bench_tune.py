"""Tuning benchmarks, measured in one run on the default model.

1. training throughput of the job's Trainer setup vs a plain peft + torch loop on the same model, data and
   batch (target: job >= 0.95x the plain loop)
2. wall time of the default short tune (experiments/tune_sentiment_codes.yaml) as a job, end to end

Run: make bench  (or: .venv/bin/python bench/bench_tune.py [--steps N])
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
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    os.environ["PROMPT_LAB_HOME"] = tempfile.mkdtemp(prefix="prompt-lab-bench-tune-")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    from prompt_lab.tuning import jobs
    from prompt_lab.models.local.generation import format_prompt
    from prompt_lab.models.registry import base_location
    from prompt_lab.tuning.spec import load_tune_spec
    from prompt_lab.tuning.train import collate, peft_model, split, tokenize_pairs, training_pairs

    spec = load_tune_spec(ROOT / "experiments/tune_sentiment_codes.yaml")
    location = base_location(spec.model)
    tokenizer = AutoTokenizer.from_pretrained(location)

    class Formatter:
        def format_prompt(self, prompt):
            return format_prompt(tokenizer, prompt)

    pairs, _ = training_pairs(spec, Formatter())
    train_rows = tokenize_pairs(tokenizer, split(pairs, spec.val_fraction, spec.seed)[0], spec.max_seq_len)
    batches = [train_rows[i:i + spec.batch_size] for i in range(0, len(train_rows), spec.batch_size)]
    batches = [b for b in batches if len(b) == spec.batch_size]

    def fresh_model():
        torch.manual_seed(0)
        return peft_model(AutoModelForCausalLM.from_pretrained(location), spec, tokenizer)

    pad = collate(tokenizer.pad_token_id)
    rows = [r for b in batches for r in b]

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    # B first: the job's Trainer configuration (logging every step, as the job does; no eval or saves)
    clock = StepClock()
    targs = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=spec.batch_size,
                              learning_rate=spec.learning_rate, max_steps=args.steps, logging_steps=1,
                              save_strategy="no", eval_strategy="no", use_cpu=True, report_to=[], disable_tqdm=True,
                              remove_unused_columns=False, dataloader_num_workers=0, seed=0)
    trainer = Trainer(model=fresh_model(), args=targs, train_dataset=rows, data_collator=pad, callbacks=[clock])
    order = list(trainer.get_train_dataloader())  # the same batches, in the same order, for the plain loop
    trainer.train()
    job_rate = (len(clock.times) - 1) / (clock.times[-1] - clock.times[0])

    # A: a plain peft + torch loop over those batches (AdamW, same learning rate)
    model = fresh_model()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.learning_rate)
    times = []
    for step in range(args.steps):
        batch = order[step % len(order)]
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter())
    plain = (len(times) - 1) / (times[-1] - times[0])
    print(f"[throughput] batch {spec.batch_size}, {args.steps} steps on the same batches (first step excluded): "
          f"plain peft loop {plain:.3f} steps/s, Trainer as the job runs it {job_rate:.3f} steps/s -> "
          f"{job_rate / plain:.2f}x (target >= 0.95x)")

    start = time.perf_counter()
    job_id = jobs.submit(spec)
    job = jobs.wait(job_id)
    wall = time.perf_counter() - start
    metrics = json.loads(job["metrics_json"] or "{}")
    print(f"[default tune] {spec.max_steps} steps of LoRA r={spec.r} on {spec.model}: job {job['status']} in "
          f"{wall:.0f} s wall (training {metrics.get('train_seconds')} s, then base-vs-tuned evaluation)")
    print(json.dumps({"plain_steps_per_s": round(plain, 3), "job_steps_per_s": round(job_rate, 3),
                      "ratio": round(job_rate / plain, 3), "default_tune_wall_s": round(wall, 1)}))


if __name__ == "__main__":
    main()
