"""Evaluation results from the run log: per-condition accuracy with CIs, strict vs flexible, format
failures, per-class scores, BLEU/ROUGE, self-consistency, calibration, and paired tests between conditions."""
from __future__ import annotations

import json
from collections import defaultdict

from prompt_lab.answers import metrics

from prompt_lab.evaluation import stats
from prompt_lab.errors import PromptLabError
from prompt_lab.answers.scoring import normalize_label
from prompt_lab.runlog.queries import eval_generations, extraction_rows
from prompt_lab.runlog import Database
from prompt_lab.runlog.store import get_run, run_template

CONDITION_COLUMNS = ("strategy", "model_spec", "k_shot", "seed")


def condition_label(strategy: str, model: str, k: int, seed: int, show_seed: bool = False) -> str:
    label = f"{strategy}{f' k={k}' if k else ''} · {model}"
    return label + (f" · seed {seed}" if show_seed else "")


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


def _summarize(rows: list[dict], metric: str, choices: list[str] | None) -> dict:
    by_item: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_item[row["item_index"]].append(row)
    indices = sorted(by_item)
    first = [by_item[i][0] for i in indices]
    samples = max(len(v) for v in by_item.values())
    gold = [r["target"] for r in first]
    out = {"items": len(indices), "samples": samples, "item_index": indices,
           "completion_tokens": sum(r["completion_tokens"] or 0 for r in rows) / len(rows),
           "latency_ms": sum(r["latency_ms"] or 0 for r in rows) / len(rows),
           "format_failures_strict": sum(r["strict_answer"] is None for r in rows),
           "format_failures_flexible": sum(r["answer"] is None for r in rows), "generations": len(rows)}
    if metric in ("accuracy", "contains", "regex"):
        if samples > 1:  # self-consistency: the majority of valid answers is the item's answer
            answers = [[r["answer"] for r in by_item[i]] for i in indices]
            votes = [stats.majority_vote(a) for a in answers]
            predicted = [v[0] for v in votes]
            correct = [int(p is not None and metrics.exact_match(p, g)) for p, g in zip(predicted, gold)]
            out["self_consistency"] = {"curve": stats.self_consistency_curve(answers, gold),
                                       "agreement": stats.agreement_rates(answers),
                                       "single_sample_accuracy": sum(r["correct"] for r in first) / len(first)}
            strict = [int(r["correct_strict"]) for r in first]
        else:
            predicted = [r["answer"] for r in first]
            correct = [int(r["correct"]) for r in first]
            strict = [int(r["correct_strict"]) for r in first]
        item_choices = [list(json.loads(r["label_probs_json"])) if r["label_probs_json"] else choices
                        for r in first]
        out.update(baselines(gold, item_choices if metric == "accuracy" else []))
        out["correct"] = correct
        out["accuracy"] = metrics.accuracy([bool(c) for c in correct])
        out["accuracy_ci"] = stats.bootstrap_ci(correct)
        out["strict_accuracy"] = metrics.accuracy([bool(c) for c in strict])
        out["strict_accuracy_ci"] = stats.bootstrap_ci(strict)
        out["wrong_answers"] = sum(1 for p, c in zip(predicted, correct) if p is not None and not c)
        out["no_answer"] = sum(1 for p in predicted if p is None) if metric == "accuracy" else 0
        if choices and metric == "accuracy":  # contains/regex targets are texts and patterns, not classes
            # gold as people write it ("positive.", " NEGATIVE") is the label it names, as when scoring
            canonical = {normalize_label(c): c for c in choices}
            as_label = lambda value: canonical.get(normalize_label(value), value) if value is not None else None  # noqa: E731
            out["classes"] = metrics.classification_report([as_label(g) for g in gold],
                                                           [as_label(p) for p in predicted], choices)
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
        out["corpus"] = ({"bleu": metrics.bleu(hyps, gold)} if metric == "bleu" else metrics.rouge(hyps, gold))
    return out


def run_report(db: Database, run_id: int) -> dict:
    """Everything the Evaluate view and `eval` print for one evaluation run."""
    run = get_run(db, int(run_id))
    if run is None or run["kind"] != "eval":
        raise PromptLabError(f"run {run_id} is not an evaluation run")
    metric = run["options"].get("metric", "accuracy")
    choices = run_template(db, run).choices
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for row in eval_generations(db, run["id"]):
        grouped[tuple(row[c] for c in CONDITION_COLUMNS)].append(row)
    seeds = {key[3] for key in grouped}
    conditions = []
    for key, rows in grouped.items():
        summary = _summarize(rows, metric, choices)
        summary.update(strategy=key[0], model=key[1], k=key[2], seed=key[3],
                       label=condition_label(*key, show_seed=len(seeds) > 1))
        conditions.append(summary)
    order = {s: i for i, s in enumerate(run["strategies"])}
    conditions.sort(key=lambda c: (c["model"], order.get(c["strategy"], 99), c["k"], c["seed"]))
    return {"run_id": run["id"], "status": run["status"], "template": run["template_name"], "metric": metric,
            "dataset": run["options"].get("dataset"), "items": run["options"].get("items"), "conditions": conditions}


def paired_test(a: dict, b: dict) -> dict:
    """Exact McNemar test between two conditions (of one run or two) on the items both have."""
    common = sorted(set(a["item_index"]) & set(b["item_index"]))
    if not common:
        raise PromptLabError("the two results share no items, so they cannot be compared item by item")
    if "accuracy" not in a or "accuracy" not in b:
        raise PromptLabError("a paired test needs right/wrong per item (an accuracy metric)")
    ca = dict(zip(a["item_index"], a["correct"]))
    cb = dict(zip(b["item_index"], b["correct"]))
    right_a = [bool(ca[i]) for i in common]
    right_b = [bool(cb[i]) for i in common]
    test = stats.mcnemar_exact(right_a, right_b)
    acc_a, acc_b = sum(right_a) / len(common), sum(right_b) / len(common)
    test.update(a=a["label"], b=b["label"], accuracy_a=acc_a, accuracy_b=acc_b,
                verdict=stats.verdict(a["label"], b["label"], acc_a, acc_b, test["p_value"]))
    return test


def extraction_view(db: Database, run_id: int, label: str, limit: int = 200) -> list[dict]:
    """Per item of one condition: the output with the matched span, strict and flexible answers, gold."""
    from prompt_lab.answers.scoring import extract_for

    run = get_run(db, int(run_id))
    template = run_template(db, run)
    rows = extraction_rows(db, int(run_id), int(limit) * 40)
    out = []
    for row in rows:
        if condition_label(row["strategy"], row["model_spec"], row["k_shot"], row["seed"]) != label.split(" · seed")[0]:
            continue
        span = extract_for(template, row["output"] or "").span
        out.append({**row, "span": span})
        if len(out) >= limit:
            break
    return out
