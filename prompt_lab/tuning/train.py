"""Short LoRA / prompt-tuning runs: the training itself, run in the job's own process (see jobs.py).

A template + dataset become prompt/completion pairs through the same strategy code as prompting;
transformers' Trainer does the loop, with the loss on completion tokens only. Progress goes to SQLite
as it happens; checkpoints are marked complete only after Trainer has written all of them.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from prompt_lab.tuning.checkpoints import checkpoint_number, last_complete_checkpoint, mark_complete
from prompt_lab.tuning.spec import TuneError, TuneSpec

# ------------------------------------------------------------------ data


@dataclass
class Pair:
    index: int
    prompt: str
    completion: str
    variables: dict
    target: str


def training_pairs(spec: TuneSpec, tokenizer_backend) -> tuple[list[Pair], str]:
    """Prompt/completion pairs from the dataset, rendered like prompting does; returns them and a data hash."""
    from prompt_lab.evaluation.datasets import load_dataset, mapping_for, to_items
    from prompt_lab.models.base import prompt_format
    from prompt_lab.prompts.strategies import Prompt, build_prompts
    from prompt_lab.prompts.templates import get_template

    dataset = load_dataset(spec.dataset)
    pairs = []
    if spec.template is None:
        missing = [c for c in ("instruction", "output") if c not in dataset.columns]
        if missing:
            raise TuneError(f"{dataset.name}: an instruction dataset needs columns instruction, input (optional) "
                            f"and output; missing {', '.join(missing)}. Or name a template.")
        for i, (row, line) in enumerate(zip(dataset.rows, dataset.lines)):
            lists = [c for c in ("instruction", "input", "output") if isinstance(row.get(c), list)]
            if lists:
                raise TuneError(f"{dataset.name}, {dataset.unit} {line}: column '{lists[0]}' holds a list; an "
                                "instruction dataset needs text in instruction, input and output")
            user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input", "").strip() else "")
            prompt = Prompt("zero_shot", [{"role": "user", "content": user}])
            pairs.append(Pair(i, tokenizer_backend.format_prompt(prompt), row["output"], {"instruction": user},
                              row["output"]))
    else:
        template = get_template(spec.template)
        mapping = mapping_for(dataset, template.variables, spec.columns)
        if mapping.target is None:
            raise TuneError(f"{dataset.name}: no target column; name it in columns.target")
        for item in to_items(dataset, mapping):
            prompt = build_prompts(template, [spec.strategy], item.variables, seed=spec.seed, choices=item.choices)[0]
            completion = item.target
            if spec.strategy in ("cot", "few_shot_cot"):
                completion = f"{template.answer_prefix} {item.target}."
            text = tokenizer_backend.format_prompt(prompt)
            if prompt_format(tokenizer_backend, prompt) == "raw":  # the answer follows its label after a space
                completion = f" {completion}"
            pairs.append(Pair(item.index, text, completion, item.variables, item.target))
    pairs = pairs[: spec.limit or None]
    return pairs, dataset.content_hash


def split(pairs: list[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Seeded train/validation split; the validation part is kept for the before/after evaluation."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(pairs) * val_fraction))
    val = sorted(order[:n_val])
    return [pairs[i] for i in sorted(order[n_val:])], [pairs[i] for i in val]


def tokenize_pairs(tokenizer, pairs: list[Pair], max_len: int) -> list[dict]:
    """input_ids = prompt + completion + eos; labels mask the prompt (-100), so loss is on the completion."""
    rows = []
    for pair in pairs:
        prompt = tokenizer(pair.prompt, add_special_tokens=False)["input_ids"]
        completion = tokenizer(pair.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (prompt + completion)[-max_len:]
        labels = ([-100] * len(prompt) + completion)[-max_len:]
        rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)})
    return rows


def collate(pad_id: int):
    def fn(batch):
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        out = {"input_ids": [], "labels": [], "attention_mask": []}
        for b in batch:
            pad = width - len(b["input_ids"])
            out["input_ids"].append(b["input_ids"] + [pad_id] * pad)
            out["labels"].append(b["labels"] + [-100] * pad)
            out["attention_mask"].append(b["attention_mask"] + [0] * pad)
        return {k: torch.tensor(v) for k, v in out.items()}
    return fn


def peft_model(model, spec: TuneSpec, tokenizer):
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    if spec.method == "lora":
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=spec.r, lora_alpha=spec.alpha,
                            lora_dropout=spec.dropout, target_modules=spec.target_modules)
    else:
        config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=spec.num_virtual_tokens,
                                    prompt_tuning_init=PromptTuningInit.TEXT,
                                    prompt_tuning_init_text="Answer the question in the expected format.",
                                    tokenizer_name_or_path=tokenizer.name_or_path)
    return get_peft_model(model, config)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------ the job body


def _progress_callback(job_id: int, started: float):
    from transformers import TrainerCallback

    from prompt_lab.runlog.jobs import log_progress
    from prompt_lab.runlog.store import connect

    class SQLiteProgress(TrainerCallback):
        """Writes step, loss, validation loss, learning rate, throughput and ETA as they happen."""

        first_step = 0  # the step this process started from (a resumed job starts at its checkpoint)

        started_at = started

        def on_train_begin(self, args, state, control, **kwargs):
            self.first_step, self.started_at = state.global_step, time.monotonic()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            loss, val_loss, lr = logs.get("loss"), logs.get("eval_loss"), logs.get("learning_rate")
            elapsed = time.monotonic() - self.started_at
            done = max(state.global_step - self.first_step, 1)
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (state.max_steps - state.global_step) / rate if rate > 0 else None
            samples = rate * args.per_device_train_batch_size * args.gradient_accumulation_steps
            with connect() as db:
                log_progress(db, job_id, step=state.global_step, max_steps=state.max_steps, loss=loss,
                             val_loss=val_loss, learning_rate=lr, samples_per_s=round(samples, 3),
                             eta_s=None if eta is None else round(eta, 1))

        def on_save(self, args, state, control, **kwargs):
            # Trainer writes a checkpoint in place; the marker says it got to the end of it.
            mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}", state.global_step)

    return SQLiteProgress()


def train(job_id: int, spec: TuneSpec, folder: Path, resume_run: bool) -> dict:
    """Fine-tune; returns metadata for the saved adapter (folder / 'adapter')."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback, Trainer, \
        TrainingArguments

    from prompt_lab.models.local.generation import format_prompt, plain_text_prefix, used_format
    from prompt_lab.models.registry import base_location

    torch.manual_seed(spec.seed)
    location = base_location(spec.model)
    tokenizer = AutoTokenizer.from_pretrained(location)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    prefix = plain_text_prefix(tokenizer)  # once, as HFBackend does, not three tokenizer calls per training pair

    class Formatter:
        def format_prompt(self, prompt):
            return format_prompt(tokenizer, prompt, prefix)

        def prompt_format(self, prompt):
            return used_format(tokenizer, prompt)

    pairs, data_hash = training_pairs(spec, Formatter())
    train_pairs, val_pairs = split(pairs, spec.val_fraction, spec.seed)
    with open(folder / "validation.jsonl", "w", encoding="utf-8") as fh:
        for pair in val_pairs:
            fh.write(json.dumps({**pair.variables, "target": pair.target}, ensure_ascii=False) + "\n")
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.bfloat16 if bf16 else torch.float32)
    model = peft_model(model, spec, tokenizer)
    args = TrainingArguments(
        output_dir=str(folder / "checkpoints"), per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size, gradient_accumulation_steps=spec.grad_accum,
        learning_rate=spec.learning_rate, num_train_epochs=spec.epochs, max_steps=spec.max_steps,
        warmup_steps=spec.warmup_steps, weight_decay=spec.weight_decay, logging_steps=1,
        eval_strategy="steps", eval_steps=spec.eval_steps, save_strategy="steps", save_steps=spec.save_steps,
        save_total_limit=3, load_best_model_at_end=spec.early_stopping_patience > 0,
        metric_for_best_model="eval_loss", bf16=bf16, use_cpu=not cuda, report_to=[], seed=spec.seed,
        disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False)
    callbacks = [_progress_callback(job_id, time.monotonic())]
    if spec.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=spec.early_stopping_patience))
    trainer = Trainer(model=model, args=args, train_dataset=tokenize_pairs(tokenizer, train_pairs, spec.max_seq_len),
                      eval_dataset=tokenize_pairs(tokenizer, val_pairs, spec.max_seq_len),
                      data_collator=collate(tokenizer.pad_token_id), callbacks=callbacks)
    checkpoint = last_complete_checkpoint(folder / "checkpoints") if resume_run else None
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    metrics = {"train_loss": result.training_loss, "steps": trainer.state.global_step,
               "train_seconds": round(time.monotonic() - started, 1),
               "resumed_from_step": checkpoint_number(checkpoint) if checkpoint else 0}
    metrics.update({k: v for k, v in trainer.evaluate().items() if k == "eval_loss"})
    model.eval()
    check = []  # greedy outputs of the tuned model in memory, to compare with the adapter once reloaded
    with torch.inference_mode():
        for pair in val_pairs[:3]:
            ids = tokenizer(pair.prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
            out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            check.append({"prompt": pair.prompt, "output": tokenizer.decode(out[0, ids["input_ids"].shape[1]:])})
    staging, adapter = folder / ".adapter-staging", folder / "adapter"
    model.save_pretrained(staging)  # PEFT format, safetensors
    from prompt_lab.models.local.loading import dir_fingerprint

    meta = {"base_model": spec.model, "base_location": location,
            "base_fingerprint": dir_fingerprint(Path(location)), "template": spec.template,
            "data_hash": data_hash, "hyperparameters": spec.to_dict(), "metrics": metrics,
            "validation_items": len(val_pairs), "train_items": len(train_pairs), "greedy_check": check}
    from prompt_lab.prompts.templates import get_template

    if spec.template:
        meta["template_hash"] = get_template(spec.template).content_hash
    weights = staging / "adapter_model.safetensors"
    meta["adapter_sha256"] = file_hash(weights)
    (staging / "prompt_lab_adapter.json").write_text(json.dumps(meta, indent=2))
    if adapter.exists():
        import shutil

        shutil.rmtree(adapter)
    os.replace(staging, adapter)
    return meta


def base_vs_tuned(job_id: int, spec: TuneSpec, folder: Path) -> int | None:
    """Evaluate base and adapter on the validation split with the same template and strategy (one run, two
    models, so the report pairs them item by item)."""
    if spec.template is None:
        return None
    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.prompts.templates import get_template

    template = get_template(spec.template)
    eval_spec = EvalSpec(template=spec.template, dataset=str(folder / "validation.jsonl"), name=f"job {job_id}",
                         columns={"variables": {v: v for v in template.variables}, "target": "target"},
                         strategies=[spec.strategy], models=[spec.model, f"{spec.model}+{folder / 'adapter'}"],
                         max_new_tokens=32, batch_size=8)
    return evaluate(eval_spec, command=f"base vs tuned for job {job_id}")
