"""Evaluation results from the run log: per-condition accuracy with CIs, strict vs flexible, format
failures, per-class scores, BLEU/ROUGE, self-consistency, calibration, and paired tests between conditions."""
from __future__ import annotations

import json
from collections import defaultdict

from prompt_lab.answers import metrics

from prompt_lab.evaluation import stats
from prompt_lab.errors import PromptLabError
from prompt_lab.answers.scoring import (CORRECTNESS_METRICS, answer_key, gold_answers, is_correct,
                                        normalize_label)
from prompt_lab.evaluation.datasets import item_hash
from prompt_lab.prompts.templates import Template
from prompt_lab.prompts.variants import ORIGINAL
from prompt_lab.runlog.queries import eval_generations, extraction_rows
from prompt_lab.runlog import Database
from prompt_lab.runlog.store import get_run, run_template

CONDITION_COLUMNS = ("strategy", "model_spec", "k_shot", "seed")


def condition_label(strategy: str, model: str, k: int, seed: int, show_seed: bool = False,
                    variant: str | None = None) -> str:
    label = f"{f'[{variant}] ' if variant else ''}{strategy}{f' k={k}' if k else ''} · {model}"
    return label + (f" · seed {seed}" if show_seed else "")


def run_variants(run: dict) -> dict[str, str]:
    """A run's prompt variants as template hash -> name, `original` included; empty for a run without variants."""
    return {h: name for name, h in (run["options"].get("variants") or {}).items()}


def _calibration(confidences: list[float], correct: list[int], bins: int = 10) -> list[dict]:
    out = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        chosen = [i for i, c in enumerate(confidences) if low <= c < high or (b == bins - 1 and c == 1.0)]
        if chosen:
            out.append({"bin": f"{low:.1f}-{high:.1f}", "confidence": sum(confidences[i] for i in chosen) / len(chosen),
                        "accuracy": sum(correct[i] for i in chosen) / len(chosen), "count": len(chosen)})
    return out


def baselines(gold: list[str | None], choices: list[list[str] | None]) -> dict:
    """What guessing scores on these items: `chance` (a uniform pick among each item's choices; None when the
    task has no choices) and `majority` (always answering the most common gold answer), both rates 0-1."""
    if not gold:
        return {"chance": None, "majority": None, "majority_label": None}
    counts: dict[str, int] = {}
    spelling: dict[str, str] = {}
    for g in gold:
        key = str(g).strip().casefold()
        counts[key] = counts.get(key, 0) + 1
        spelling.setdefault(key, str(g))
    top = max(counts, key=counts.__getitem__)
    chance = (sum(1 / len(c) for c in choices) / len(choices)) if choices and all(choices) else None
    return {"chance": chance, "majority": counts[top] / len(gold), "majority_label": spelling[top]}


def gold_of(row: dict):
    """A logged row's gold: every acceptable answer when the item had several, else its one target."""
    return json.loads(row["targets_json"]) if row.get("targets_json") else row["target"]


def item_keys(rows: list[dict]) -> list[str]:
    """Each item's identity across runs: its content hash (logged, or computed from its inputs and gold for rows
    logged before hashes were) and, for an item that appears more than once, which occurrence it is."""
    seen: dict[str, int] = {}
    keys = []
    for row in rows:
        digest = row.get("item_hash") or item_hash(json.loads(row["variables_json"] or "{}"),
                                                   gold_answers(gold_of(row)))
        seen[digest] = seen.get(digest, 0) + 1
        keys.append(f"{digest}#{seen[digest]}")
    return keys


def item_choices(row: dict, choices: list[str] | None) -> list[str] | None:
    """An item's answer choices: its own (a choices column), else those its label probabilities were scored over,
    else the template's `choices`."""
    if row.get("choices_json"):
        return json.loads(row["choices_json"])
    if row.get("label_probs_json"):
        return list(json.loads(row["label_probs_json"]))
    return choices


def _summarize(rows: list[dict], metric: str, template: Template) -> dict:
    choices = template.choices
    by_item: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_item[row["item_index"]].append(row)
    indices = sorted(by_item)
    first = [by_item[i][0] for i in indices]
    samples = max(len(v) for v in by_item.values())
    gold = [gold_of(r) for r in first]
    primary = [r["target"] for r in first]
    out = {"items": len(indices), "samples": samples, "item_index": indices, "item_key": item_keys(first),
           "completion_tokens": sum(r["completion_tokens"] or 0 for r in rows) / len(rows),
           "latency_ms": sum(r["latency_ms"] or 0 for r in rows) / len(rows),
           "format_failures_strict": sum(r["strict_answer"] is None for r in rows),
           "format_failures_flexible": sum(r["answer"] is None for r in rows), "generations": len(rows),
           # the prompt format the model got (raw or chat); runs logged before formats existed say nothing
           "format": json.loads(first[0].get("params_json") or "{}").get("format")}
    if metric in CORRECTNESS_METRICS:
        # one rule for right and wrong (scoring.is_correct) for single answers, strict ones and votes alike
        judge = lambda answer, g: is_correct(template, metric, answer, g)  # noqa: E731
        key = lambda answer: answer_key(template, answer)  # noqa: E731
        if samples > 1:  # self-consistency: the majority of valid answers is the item's answer
            answers = [[r["answer"] for r in by_item[i]] for i in indices]
            predicted = [stats.majority_vote(a, key)[0] for a in answers]
            single = [int(judge(r["answer"], g)) for r, g in zip(first, gold)]
            out["self_consistency"] = {"curve": stats.self_consistency_curve(answers, gold, key=key, same=judge),
                                       "agreement": stats.agreement_rates(answers, key),
                                       "single_sample_accuracy": sum(single) / len(single)}
        else:
            predicted = [r["answer"] for r in first]
        correct = [int(judge(p, g)) for p, g in zip(predicted, gold)]
        strict = [int(judge(r["strict_answer"], g)) for r, g in zip(first, gold)]
        per_item = [item_choices(r, choices) for r in first]
        out.update(baselines(primary, per_item if metric == "accuracy" else []))
        if metric != "accuracy":  # gold texts and patterns are not answers: judge each constant answer by the rule
            candidates = [] if metric == "regex" else list(dict.fromkeys(str(g) for g in primary))
            rates = {c: sum(judge(c, g) for g in gold) / len(gold) for c in candidates}
            best = max(rates, key=rates.__getitem__) if rates else None
            out.update(majority=rates.get(best), majority_label=best)
        out["correct"] = correct
        out["accuracy"] = metrics.accuracy([bool(c) for c in correct])
        out["accuracy_ci"] = stats.bootstrap_ci(correct)
        out["strict_accuracy"] = metrics.accuracy([bool(c) for c in strict])
        out["strict_accuracy_ci"] = stats.bootstrap_ci(strict)
        out["wrong_answers"] = sum(1 for p, c in zip(predicted, correct) if p is not None and not c)
        out["no_answer"] = sum(1 for p in predicted if p is None)  # invalid: counted apart, never a vote
        label_set = choices or (per_item[0] if per_item and per_item[0] and
                                all(c == per_item[0] for c in per_item) else None)
        if label_set and metric == "accuracy":  # contains/regex targets are texts and patterns, not classes
            # gold as people write it ("positive.", " NEGATIVE") is the label it names, as when scoring
            canonical = {normalize_label(c): c for c in label_set}
            as_label = lambda value: canonical.get(normalize_label(value), value) if value is not None else None  # noqa: E731
            try:
                out["classes"] = metrics.classification_report([as_label(g) for g in primary],
                                                               [as_label(p) for p in predicted], label_set)
            except ValueError:  # a gold answer outside the labels: no per-class table, the accuracy stands
                pass
        probs = [json.loads(r["label_probs_json"]) for r in first if r["label_probs_json"]]
        if len(probs) == len(first):
            out["calibration"] = _calibration([max(p.values()) for p in probs], correct)
            out["mean_confidence"] = sum(max(p.values()) for p in probs) / len(probs)
    else:
        hyps = [r["answer"] for r in first]
        scores = [float(r["score"] or 0) for r in first]
        out["score"] = sum(scores) / len(scores)
        out["score_ci"] = stats.bootstrap_ci(scores)
        out["correct"] = scores
        out.update(chance=None, majority=None, majority_label=None)  # scores have no right answer to guess
        out["corpus"] = ({"bleu": metrics.bleu(hyps, primary)} if metric == "bleu" else metrics.rouge(hyps, primary))
    return out


def run_report(db: Database, run_id: int) -> dict:
    """Everything the Evaluate view and `eval` print for one evaluation run."""
    run = get_run(db, int(run_id))
    if run is None or run["kind"] != "eval":
        raise PromptLabError(f"run {run_id} is not an evaluation run")
    metric = run["options"].get("metric", "accuracy")
    template = run_template(db, run)
    variants = run_variants(run)  # with variants, a condition is also a template version (the variant's hash)
    columns = CONDITION_COLUMNS + (("template_hash",) if variants else ())
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for row in eval_generations(db, run["id"]):
        grouped[tuple(row[c] for c in columns)].append(row)
    seeds = {key[3] for key in grouped}
    conditions = []
    for key, rows in grouped.items():
        summary = _summarize(rows, metric, template)
        variant = variants.get(key[4], key[4][:8]) if variants else None
        summary.update(strategy=key[0], model=key[1], k=key[2], seed=key[3], variant=variant,
                       template_hash=key[4] if variants else None,
                       label=condition_label(*key[:4], show_seed=len(seeds) > 1, variant=variant))
        conditions.append(summary)
    order = {s: i for i, s in enumerate(run["strategies"])}
    named = [ORIGINAL] + [v["name"] for v in run["params"].get("variants") or []] if variants else []
    place = {name: i for i, name in enumerate(named)}
    conditions.sort(key=lambda c: (c["model"], place.get(c["variant"], len(place)), order.get(c["strategy"], 99),
                                   c["k"], c["seed"]))
    wall_s = round(run["duration_ms"] / 1000, 2) if run.get("duration_ms") else None  # None while it runs
    scored = sum(c["items"] for c in conditions)  # (condition, item) pairs scored
    formats = {c["model"]: c["format"] for c in conditions if c["format"]}
    return {"run_id": run["id"], "status": run["status"], "template": run["template_name"], "metric": metric,
            "wall_s": wall_s, "scored": scored, "items_per_s": round(scored / wall_s, 2) if wall_s else None,
            "format": (next(iter(formats.values())) if len(set(formats.values())) == 1
                       else "; ".join(f"{m}: {f}" for m, f in formats.items()) or None),
            "template_hash": run["template_hash"], "method": run["params"].get("method", "generate"),
            "example_selection": run["params"].get("example_selection", "random"),
            "dataset": run["options"].get("dataset"), "dataset_hash": run["options"].get("dataset_hash"),
            "items": run["options"].get("items"), "warnings": run["options"].get("warnings", []),
            "conditions": conditions, "variants": named,
            "baseline": (run["options"].get("baseline") or ORIGINAL) if variants else None}


def _identities(condition: dict) -> list:
    return condition.get("item_key") or condition["item_index"]


def paired_test(a: dict, b: dict, name_a: str | None = None, name_b: str | None = None) -> dict:
    """Exact McNemar test between two conditions (of one run or two) on the items both have, matched by content
    (item_key: hash of inputs and gold), never by position. Reports n paired, each side's accuracy and 95% CI on
    those items, the difference with its paired bootstrap CI, p and the verdict naming both sides."""
    if "accuracy" not in a or "accuracy" not in b:
        raise PromptLabError("a paired test needs right/wrong per item (an accuracy metric)")
    ca = dict(zip(_identities(a), a["correct"]))
    cb = dict(zip(_identities(b), b["correct"]))
    common = [k for k in ca if k in cb]
    if not common:
        raise PromptLabError("the two results share no items, so they cannot be compared item by item")
    right_a = [int(bool(ca[k])) for k in common]
    right_b = [int(bool(cb[k])) for k in common]
    test = stats.mcnemar_exact([bool(x) for x in right_a], [bool(x) for x in right_b])
    acc_a, acc_b = sum(right_a) / len(common), sum(right_b) / len(common)
    name_a, name_b = name_a or a["label"], name_b or b["label"]
    test.update(a=name_a, b=name_b, accuracy_a=acc_a, accuracy_b=acc_b,
                ci_a=list(stats.bootstrap_ci(right_a)), ci_b=list(stats.bootstrap_ci(right_b)),
                difference=acc_a - acc_b,
                difference_ci=list(stats.bootstrap_ci([x - y for x, y in zip(right_a, right_b)])),
                verdict=stats.verdict(name_a, name_b, acc_a, acc_b, test["p_value"]))
    return test


def extraction_view(db: Database, run_id: int, label: str, limit: int = 200) -> list[dict]:
    """Per item of one condition: the output with the matched span, strict and flexible answers, gold."""
    from prompt_lab.answers.scoring import extract_for

    run = get_run(db, int(run_id))
    template = run_template(db, run)
    variants = run_variants(run)
    rows = extraction_rows(db, int(run_id), int(limit) * 40)
    out = []
    for row in rows:
        variant = variants.get(row["template_hash"], (row["template_hash"] or "")[:8]) if variants else None
        if condition_label(row["strategy"], row["model_spec"], row["k_shot"], row["seed"],
                           variant=variant) != label.split(" · seed")[0]:
            continue
        span = extract_for(template, row["output"] or "").span
        out.append({**row, "span": span})
        if len(out) >= limit:
            break
    return out
