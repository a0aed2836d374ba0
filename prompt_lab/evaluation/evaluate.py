"""evaluate(): a dataset x strategies x models (x k x seeds) run, batched, scored, logged, resumable.

Each batch of items is generated (or label-scored) and written in one transaction, so a crash loses at
most the batch in flight; resume() finds the items a run already has and does only the rest.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from prompt_lab.answers import metrics
from prompt_lab.evaluation.datasets import Item, load_dataset, mapping_for, to_items
from prompt_lab.errors import CancelledError, PromptLabError
from prompt_lab.evaluation.experiments import EvalSpec
from prompt_lab.models import GenerationParams, get_backend, resolve
from prompt_lab.models.registry import is_local_spec
from prompt_lab.models.base import ProgressFn, format_params, prompt_format
from prompt_lab.answers.scoring import CORRECTNESS_METRICS, extract_for, extract_strict, is_correct, same_answer
from prompt_lab.runlog import Database
from prompt_lab.runlog.store import (connect, finishing, log_generations, logged_item_indexes, reopen_run, resumable_run,
                                     run_template, save_template_version, start_run)
from prompt_lab.settings import Settings, get_settings
from prompt_lab.prompts.strategies import (build_prompts, fit_strategies, is_own_example, strategy_notes,
                                           supported_strategies)
from prompt_lab.prompts.templates import Template, get_template
from prompt_lab.prompts.variants import ORIGINAL, Variant, build_variants

log = logging.getLogger(__name__)


@dataclass
class Plan:
    spec: EvalSpec
    template: Template
    items: list[Item]
    metric: str
    dataset_hash: str
    warnings: list[str]
    variants: list[Variant] = field(default_factory=list)  # `original` (the template) first, then the spec's


def default_metric(template: Template) -> str:
    if template.answer.type != "text":
        return "accuracy"
    return "bleu" if "translat" in (template.name + template.description).lower() else "rouge"


def plan(spec: EvalSpec, template: Template | None = None, variants: list[Variant] | None = None) -> Plan:
    """Load and check everything an evaluation needs before any run row is written. `variants`: the variants already
    built (a resume's, from the logged template versions), instead of the spec's built over the template."""
    spec.validate()
    template = template or get_template(spec.template)
    variants = variants or build_variants(template, spec.variants)
    # a template without examples evaluates zero-shot and CoT; few-shot is left out with a note, not an error
    spec.strategies, left_out = fit_strategies(template, spec.strategies)
    for variant in variants[1:]:
        unable = [s for s in spec.strategies if s not in supported_strategies(variant.template)]
        if unable:  # found now, not when its first prompt is built
            raise PromptLabError(f"variant '{variant.name}' cannot build {unable[0]}: "
                                 f"{'; '.join(strategy_notes(variant.template))}")
    dataset = load_dataset(spec.dataset, split=spec.split)
    mapping = mapping_for(dataset, template.variables, spec.columns)
    unmapped = [v for v in template.variables if v not in mapping.variables]
    if unmapped:  # found now, not when the first prompt is built with a variable missing
        raise PromptLabError(f"{dataset.name}: no column for the template variable{'s' if len(unmapped) > 1 else ''} "
                             f"{', '.join(repr(v) for v in unmapped)} (columns: {', '.join(dataset.columns)}); name "
                             f"it in columns: {{variables: {{{unmapped[0]}: <column>}}}}")
    if mapping.target is None:
        raise PromptLabError(f"{dataset.name}: which column holds the gold answer? None is named like one "
                             f"(columns: {', '.join(dataset.columns)}); pick it as the 'gold answer column' in the "
                             "Evaluate tab, or name it in the experiment file as columns: {target: <column>}")
    items = to_items(dataset, mapping)[: spec.limit or None]
    if spec.method == "label_probs" and not (template.choices or all(i.choices for i in items)):
        raise PromptLabError(f"method label_probs needs answer choices: template '{template.name}' has none "
                             "and the dataset has no choices column")
    metric = spec.metric or default_metric(template)
    if spec.method == "label_probs" and metric not in CORRECTNESS_METRICS:
        raise PromptLabError(f"method label_probs picks one answer choice, which is right or wrong, but metric "
                             f"'{metric}'{'' if spec.metric else ' (the default for this template)'} scores text; "
                             "set metric: accuracy, or use method generate")
    check_gold_in_choices(template, items, dataset.name, metric)
    remote = [m for m in spec.models if not is_local_spec(m)]
    if spec.method == "label_probs" and remote:
        raise PromptLabError(f"method label_probs scores choices with the model's own forward pass, which a remote "
                             f"model ({remote[0]}) does not offer; use method generate for remote models")
    if (spec.format or template.format) == "raw" and remote:
        raise PromptLabError(f"the raw prompt format sends plain text, which a chat API ({remote[0]}) does not take: "
                             "use format chat for remote models, or a local model for raw")
    for model in spec.models:
        resolve(model)  # a bad spec or an unknown endpoint fails here, before a run row is written
    warnings = left_out + example_duplicates(template, items, dataset.name)
    for variant in variants[1:]:
        if variant.template.examples != template.examples:
            warnings += [f"variant '{variant.name}': {w}" for w in example_duplicates(variant.template, items,
                                                                                   dataset.name)]
    return Plan(spec, template, items, spec.metric or default_metric(template), dataset.content_hash, warnings,
                variants)


def check_gold_in_choices(template: Template, items: list[Item], dataset: str, metric: str) -> None:
    """For a choice template scored by accuracy, every item's gold must name one of its choices: found before
    anything is generated, with the lines, instead of after every item ran."""
    if template.answer.type != "choice" or metric != "accuracy":
        return
    bad = [i for i in items
           if i.targets and not any(same_answer(template, c, i.targets) for c in i.choices or template.choices or [])]
    if bad:
        shown = "; ".join(f"line {i.line}: {i.target!r} not in {', '.join(i.choices or template.choices or [])}"
                          for i in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise PromptLabError(f"{dataset}: {len(bad)} item(s) have a gold answer that is not one of the answer choices "
                             f"({shown}{more}); fix the gold labels or the template's choices")


def example_duplicates(template: Template, items: list[Item], dataset: str) -> list[str]:
    """A warning naming the dataset items that ask the same question as one of the template's examples: few-shot
    leaves such an item out of its own demonstrations, but the model was shown it, so it is not unseen data."""
    dupes = [i for i in items if any(is_own_example(template, e, i.variables) for e in template.examples)]
    if not dupes:
        return []
    named = "; ".join(f"line {i.line}: {_preview(next(iter(i.variables.values()), ''))}" for i in dupes[:5])
    more = f" and {len(dupes) - 5} more" if len(dupes) > 5 else ""
    return [f"{dataset}: {len(dupes)} item(s) repeat an example of template '{template.name}' ({named}{more}); "
            "few-shot never shows an item its own example, but these items are not unseen data: drop them from "
            "the dataset or from the template's examples for a clean measure"]


def _preview(text: str, size: int = 40) -> str:
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= size else flat[:size - 1].rstrip() + "…")


def _gold(item: Item) -> str | list[str] | None:
    return item.targets if len(item.targets) > 1 else item.target


def _score(plan: Plan, output: str, item: Item) -> dict:
    flexible = extract_for(plan.template, output, item.choices)
    strict = extract_strict(plan.template, output, item.choices)
    row = {"answer": flexible.answer, "strict_answer": strict.answer}
    if plan.metric in CORRECTNESS_METRICS:  # one rule for right and wrong: scoring.is_correct
        row["correct"] = int(is_correct(plan.template, plan.metric, flexible.answer, _gold(item)))
        row["correct_strict"] = int(is_correct(plan.template, plan.metric, strict.answer, _gold(item)))
        row["score"] = float(row["correct"])
    elif plan.metric == "bleu":
        row["score"] = metrics.sentence_bleu(flexible.answer or "", item.target or "")
    else:
        row["score"] = metrics.rouge_l(flexible.answer or "", item.target or "")
    return row


def _pending(db: Database, run_id: int, condition, items: list[Item],
             template_hash: str | None = None) -> list[Item]:
    done = logged_item_indexes(db, run_id, *condition, template_hash=template_hash)
    return [i for i in items if i.index not in done]


def capped_batch_size(spec: EvalSpec, settings: Settings | None = None) -> int:
    """Items per generate call: the spec's batch_size, clamped (with a logged warning) to the server's cap on
    prompts per call (Settings.max_batch_prompts, PROMPT_LAB_MAX_BATCH). Results do not depend on it."""
    cap = max(1, (settings or get_settings()).max_batch_prompts)
    if spec.batch_size > cap:
        log.warning("batch_size %d is above the cap of %d prompts per call (PROMPT_LAB_MAX_BATCH); clamped to %d",
                    spec.batch_size, cap, cap)
        return cap
    return spec.batch_size


def score_batch(plan: Plan, backend, condition, batch: list[Item], cancel) -> list[dict]:
    """Generate (or label-score) one batch of items under one (strategy, model, k, seed) condition with
    plan.template, and score each answer: the generation rows to log, one per sample."""
    strategy, model, k, seed = condition
    spec, template = plan.spec, plan.template
    prompts = [build_prompts(template, [strategy], item.variables, k=max(k, 1), seed=seed, choices=item.choices,
                             selection=spec.example_selection, prompt_format=spec.format)[0]
               for item in batch]
    texts = [backend.format_prompt(p) for p in prompts]
    layout = prompt_format(backend, prompts[0])  # raw: answers follow the label after a space, end at the separator
    base = {"template_name": template.name, "template_hash": template.content_hash, "strategy": strategy,
            "model_spec": model, "model_revision": backend.revision, "seed": seed, "k_shot": k}
    identity = {item.index: {"item_hash": item.content_hash,
                             "targets_json": json.dumps(item.targets, ensure_ascii=False) if len(item.targets) > 1
                             else None,
                             "choices_json": json.dumps(item.choices, ensure_ascii=False) if item.choices else None}
                for item in batch}
    rows = []
    if spec.method == "label_probs":
        if cancel is not None and cancel.is_set():
            raise CancelledError("evaluation stopped")
        choice_lists = [item.choices or template.choices for item in batch]
        lead = " " if layout == "raw" else ""  # lm-eval's target delimiter: the continuation scored is " " + choice
        started = time.perf_counter()
        scores = backend.score_choices(texts, [[lead + c for c in cs] for cs in choice_lists], cancel=cancel)
        per_item_ms = (time.perf_counter() - started) * 1000 / len(batch)
        for item, text, choices, logliks in zip(batch, texts, choice_lists, scores):
            top = max(logliks)
            weights = [math.exp(s - top) for s in logliks]
            probs = {c: w / sum(weights) for c, w in zip(choices, weights)}
            answer = max(probs, key=probs.get)
            correct = int(is_correct(template, plan.metric, answer, _gold(item)))
            rows.append({**base, **identity[item.index], "item_index": item.index, "target": item.target, "prompt": text,
                         "variables_json": json.dumps(item.variables, ensure_ascii=False),
                         "params_json": json.dumps({"method": "label_probs", "format": layout}), "sample_index": 0,
                         "output": answer, "answer": answer, "strict_answer": answer, "correct": correct,
                         "correct_strict": correct, "score": float(correct),
                         "label_probs_json": json.dumps(probs), "prompt_tokens": backend.count_tokens(text),
                         "completion_tokens": 0, "latency_ms": round(per_item_ms, 1), "token_source": "local"})
        return rows
    params, _ = GenerationParams(temperature=spec.temperature, top_p=spec.top_p, max_new_tokens=spec.max_new_tokens,
                                 seed=seed, n=spec.samples).clamped(get_settings())
    params = format_params(params, prompts[0], layout)  # raw: the answer also ends at the separator
    results = backend.generate(texts, params, cancel=cancel)
    if cancel is not None and cancel.is_set():  # a batch cut short is not logged: resume runs it whole
        raise CancelledError("evaluation stopped")
    for item, text, gens in zip(batch, texts, results):
        for gen in gens:
            rows.append({**base, **identity[item.index], **_score(plan, gen.text, item), "item_index": item.index, "target": item.target,
                         "prompt": text, "variables_json": json.dumps(item.variables, ensure_ascii=False),
                         "params_json": json.dumps({**params.to_dict(), "format": layout}), **gen.log_fields()})
    return rows


# Label scoring takes this many batches at once: the backend orders them by length and makes its own passes (up
# to 16 prompts or 1,024 tokens each), so a window of 128 reviews wastes 3% of a pass on padding where batches of
# 16 in file order wasted 20%. Rows are logged in item order, a window at a time (what a Stop can lose: seconds).
LABEL_WINDOW_BATCHES = 8


def _execute(plan: Plan, run_id: int, db_path, progress: ProgressFn | None, cancel) -> int:
    with connect(db_path) as db, finishing(db, run_id):
        size = capped_batch_size(plan.spec)
        variants = {v.name: v for v in plan.variants}
        tracked = bool(plan.spec.variants)  # a run without variants keeps its condition identity (and old runs)
        work = [(variants[name], tuple(c), _pending(db, run_id, tuple(c), plan.items,
                                                    variants[name].template.content_hash if tracked else None))
                for name, *c in plan.spec.crossed()]
        total = sum(len(p) for *_, p in work) or 1
        done = 0
        for variant, condition, pending in work:
            backend = get_backend(condition[1], progress)
            variant_plan = replace(plan, template=variant.template)
            step = size * LABEL_WINDOW_BATCHES if plan.spec.method == "label_probs" else size
            for start in range(0, len(pending), step):
                if cancel is not None and cancel.is_set():
                    raise CancelledError("evaluation stopped")
                batch = pending[start:start + step]
                log_generations(db, run_id, score_batch(variant_plan, backend, condition, batch, cancel))
                done += len(batch)
                if progress:
                    progress(done / total, f"evaluating: {done}/{total} items "
                                           f"({f'[{variant.name}] ' if tracked else ''}{condition[0]}, "
                                           f"{condition[1]}, k={condition[2]})")
    return run_id


def evaluate(spec: EvalSpec, *, template: Template | None = None, db_path: str | Path | None = None,
             progress: ProgressFn | None = None, cancel: threading.Event | None = None, command: str = "") -> int:
    """Run an evaluation; returns its run id. Every generation is logged with its score. `template`: the template
    already loaded (the app's, from a name or YAML text), instead of spec.template looked up by name or path."""
    p = plan(spec, template)
    options = {"dataset": Path(spec.dataset).name, "dataset_hash": p.dataset_hash, "items": len(p.items),
               "metric": p.metric, "spec_hash": spec.spec_hash, "warnings": p.warnings,
               "format": spec.format or p.template.format}  # as asked; each generation logs the one used
    if spec.variants:  # each variant's exact text is a template version; its rows carry its hash
        options.update(variants={v.name: v.template.content_hash for v in p.variants},
                       baseline=spec.baseline or ORIGINAL)
    with connect(db_path) as db:
        for variant in p.variants:
            save_template_version(db, variant.template.name, variant.template.content_hash,
                                  variant.template.to_yaml())
        run_id = start_run(db, kind="eval", template_name=p.template.name, template_hash=p.template.content_hash,
                           models=spec.models, strategies=spec.strategies, params=spec.to_dict(), options=options,
                           command=command)
    return _execute(p, run_id, db_path, progress, cancel)


def resume(run_id: int, *, db_path: str | Path | None = None, progress: ProgressFn | None = None,
           cancel: threading.Event | None = None) -> int:
    """Continue an evaluation that did not complete, with its logged spec and template version; finished
    items are not run again."""
    with connect(db_path) as db:
        run = resumable_run(db, run_id, "eval", "evaluation")
        spec = EvalSpec(**run["params"])
        template = run_template(db, run)
        logged = run["options"].get("variants") or {}  # the variants' own logged versions, not rebuilt ones
        variants = [Variant(ORIGINAL, template)] + [
            Variant(name, run_template(db, {**run, "template_hash": logged[name]}))
            for name in spec.variant_names()[1:] if name in logged]
        p = plan(spec, template, variants if len(variants) == len(spec.variant_names()) else None)
        if p.dataset_hash != run["options"].get("dataset_hash"):
            raise PromptLabError(f"{Path(spec.dataset).name} changed since run {run_id} started; resuming would "
                                 "mix two datasets. Start a new evaluation instead.")
        reopen_run(db, int(run_id))
    return _execute(p, int(run_id), db_path, progress, cancel)
