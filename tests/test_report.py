"""What an evaluation report says, computed from run-log rows written here (no model): per condition accuracy
with CI, strict vs flexible, format failures, per-class scores, calibration, self-consistency, text metrics,
paired tests and the extraction view. These are the numbers users read in the Evaluate tab and `eval`."""
import json

import pytest

from prompt_lab.evaluation import stats
from prompt_lab.errors import PromptLabError
from prompt_lab.reporting.report import condition_label, extraction_view, paired_test, run_report
from prompt_lab.runlog.store import log_generations, open_db, save_template_version, start_run

TEMPLATE = ("name: sentiment\ninstruction: Classify.\nvariables: [review]\nchoices: [Positive, Negative, Neutral]\n"
            "answer: {type: choice}\n")


def eval_run(db, rows, *, metric="accuracy", strategies=("zero_shot", "few_shot"), template=TEMPLATE, items=None):
    save_template_version(db, "sentiment", "h", template)
    run_id = start_run(db, kind="eval", template_name="sentiment", template_hash="h", strategies=list(strategies),
                       options={"metric": metric, "dataset": "reviews.csv", "items": items})
    log_generations(db, run_id, [{"model_spec": "default", "k_shot": 0, "seed": 0, "sample_index": 0,
                                  "completion_tokens": 0, "latency_ms": 10.0, **r} for r in rows])
    return run_id


def item(i, gold, answer, strict=None, strategy="zero_shot", **extra):
    correct = int(answer is not None and answer.lower() == gold.lower())
    strict = answer if strict is None else (None if strict == "none" else strict)
    return {"strategy": strategy, "item_index": i, "target": gold, "answer": answer, "strict_answer": strict,
            "correct": correct, "correct_strict": int(strict is not None and strict.lower() == gold.lower()),
            "score": float(correct), "output": f"output {i}: {answer}",
            "variables_json": json.dumps({"review": f"review {i}"}), **extra}


GOLD = ["Positive", "Negative", "Neutral", "Positive", "Positive", "Negative"]


def test_a_condition_reports_accuracy_ci_strictness_failures_and_baselines(home):
    db = open_db()
    answers = ["Positive", "Positive", None, "Positive", "Negative", "Negative"]
    stricts = [None, "none", None, "none", None, None]
    run_id = eval_run(db, [item(i, g, a, s, completion_tokens=4, latency_ms=20.0 + i)
                           for i, (g, a, s) in enumerate(zip(GOLD, answers, stricts))], items=6)
    report = run_report(db, run_id)
    assert (report["run_id"], report["status"], report["template"], report["metric"], report["dataset"],
            report["items"]) == (run_id, "running", "sentiment", "accuracy", "reviews.csv", 6)
    (c,) = report["conditions"]
    assert c["label"] == "zero_shot · default" and (c["strategy"], c["model"], c["k"], c["seed"]) == (
        "zero_shot", "default", 0, 0)
    assert c["correct"] == [1, 0, 0, 1, 0, 1] and c["accuracy"] == 0.5
    assert c["accuracy_ci"] == stats.bootstrap_ci([1, 0, 0, 1, 0, 1])
    assert c["strict_accuracy"] == pytest.approx(2 / 6)  # items 0 and 5: the strict answers that were right
    assert (c["no_answer"], c["wrong_answers"]) == (1, 2)
    assert (c["format_failures_flexible"], c["format_failures_strict"]) == (1, 3)
    assert (c["items"], c["samples"], c["generations"], c["item_index"]) == (6, 1, 6, list(range(6)))
    assert c["completion_tokens"] == 4 and c["latency_ms"] == pytest.approx(22.5)
    assert (c["chance"], c["majority"], c["majority_label"]) == (1 / 3, 0.5, "Positive")
    classes = c["classes"]
    assert classes["confusion"]["matrix"] == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]]
    assert classes["per_class"]["Positive"] == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3),
                                                 "f1": pytest.approx(2 / 3), "support": 3}


def test_conditions_are_ordered_as_the_run_listed_strategies_and_seeds_are_named_only_when_swept(home):
    db = open_db()
    rows = [item(i, "Positive", "Positive", strategy="few_shot", k_shot=k, seed=s) for i in range(2) for k in (3, 1)
            for s in (0, 1)]
    rows += [item(i, "Positive", None, strategy="zero_shot", seed=s) for i in range(2) for s in (1, 0)]
    report = run_report(db, eval_run(db, rows, strategies=("zero_shot", "few_shot")))
    assert [c["label"] for c in report["conditions"]] == [
        "zero_shot · default · seed 0", "zero_shot · default · seed 1", "few_shot k=1 · default · seed 0",
        "few_shot k=1 · default · seed 1", "few_shot k=3 · default · seed 0", "few_shot k=3 · default · seed 1"]
    one_seed = run_report(db, eval_run(db, [item(0, "Positive", "Positive")]))
    assert one_seed["conditions"][0]["label"] == "zero_shot · default"
    assert condition_label("cot", "m", 0, 2) == "cot · m" and condition_label("cot", "m", 0, 2, True) == "cot · m · seed 2"
    assert condition_label("few_shot", "m", 4, 0) == "few_shot k=4 · m"


def test_label_probabilities_give_calibration_and_confidence(home):
    db = open_db()
    probs = [0.95, 0.85, 0.55, 0.35, 1.0]
    rows = [item(i, "Positive", "Positive" if i != 2 else "Negative",
                 label_probs_json=json.dumps({"Positive": p, "Negative": 1 - p})) for i, p in enumerate(probs)]
    (c,) = run_report(db, eval_run(db, rows))["conditions"]
    confidence = [max(p, 1 - p) for p in probs]  # the chosen answer's probability
    assert c["mean_confidence"] == pytest.approx(sum(confidence) / 5)
    assert [b["confidence"] for b in c["calibration"]] == pytest.approx([0.55, 0.65, 0.85, 0.975])
    bins = {b["bin"]: (b["count"], b["accuracy"]) for b in c["calibration"]}
    assert bins == {"0.5-0.6": (1, 0.0), "0.6-0.7": (1, 1.0), "0.8-0.9": (1, 1.0), "0.9-1.0": (2, 1.0)}
    assert c["chance"] == 0.5  # each item offered two labels
    generated = run_report(db, eval_run(db, [item(0, "Positive", "Positive")]))["conditions"][0]
    assert "calibration" not in generated and "mean_confidence" not in generated


def test_several_samples_vote_and_report_self_consistency(home):
    db = open_db()
    votes = [["Positive", "Positive", "Negative"], ["Negative", None, None], ["Neutral", "Positive", "Positive"]]
    gold = ["Positive", "Negative", "Neutral"]
    rows = [{**item(i, gold[i], a), "sample_index": s} for i, answers in enumerate(votes)
            for s, a in enumerate(answers)]
    (c,) = run_report(db, eval_run(db, rows))["conditions"]
    assert c["samples"] == 3 and c["generations"] == 9
    assert c["correct"] == [1, 1, 0]  # majority of valid answers: Positive, Negative (None never votes), Positive
    sc = c["self_consistency"]
    assert sc["single_sample_accuracy"] == 1.0  # every first sample was right: here the vote costs an item
    assert sc["agreement"] == pytest.approx([2 / 3, 1 / 3, 2 / 3])
    assert sc["curve"] == stats.self_consistency_curve(votes, gold)


@pytest.mark.parametrize("metric, corpus", [("bleu", {"bleu"}), ("rouge", {"rouge1", "rougeL"})])
def test_text_metrics_report_mean_item_scores_and_the_corpus_score(home, metric, corpus):
    db = open_db()
    rows = [{"strategy": "zero_shot", "item_index": i, "target": t, "answer": a, "strict_answer": a, "score": s,
             "output": a} for i, (t, a, s) in enumerate([("le chat", "le chat", 1.0), ("un chien", "une vache", 0.2)])]
    (c,) = run_report(db, eval_run(db, rows, metric=metric, template=TEMPLATE.replace(
        "choices: [Positive, Negative, Neutral]\nanswer: {type: choice}\n", "")))["conditions"]
    assert c["score"] == pytest.approx(0.6) and c["correct"] == [1.0, 0.2]
    assert c["score_ci"] == stats.bootstrap_ci([1.0, 0.2])
    assert set(c["corpus"]) == corpus and "accuracy" not in c and c["chance"] is None and c["majority"] is None


def test_a_paired_test_uses_only_the_items_both_sides_have(home):
    db = open_db()
    a = run_report(db, eval_run(db, [item(i, "Positive", "Positive" if i < 8 else "Negative") for i in range(10)]))
    b = run_report(db, eval_run(db, [item(i, "Positive", "Positive" if i % 2 else "Negative") for i in range(2, 12)]))
    test = paired_test(a["conditions"][0], b["conditions"][0])
    # shared items 2..9: A right on 2-7, B right on 3, 5, 7, 9
    assert (test["n"], test["both"], test["only_a"], test["only_b"], test["neither"]) == (8, 3, 3, 1, 1)
    assert test["accuracy_a"] == 6 / 8 and test["accuracy_b"] == 4 / 8
    assert test["p_value"] == stats.mcnemar_exact([True] * 6 + [False] * 2,
                                                  [False, True, False, True, False, True, False, True])["p_value"]
    assert test["a"] == test["b"] == "zero_shot · default"
    assert test["verdict"] == stats.verdict("zero_shot · default", "zero_shot · default", 0.75, 0.5, test["p_value"])
    c = run_report(db, eval_run(db, [item(i, "Positive", "Positive") for i in range(20, 22)]))
    with pytest.raises(PromptLabError, match="the two results share no items, so they cannot be compared item by item"):
        paired_test(a["conditions"][0], c["conditions"][0])
    bleu = {"item_index": [0], "label": "x", "score": 1.0}
    with pytest.raises(PromptLabError, match=r"a paired test needs right/wrong per item \(an accuracy metric\)"):
        paired_test(a["conditions"][0], bleu)


def test_only_evaluation_runs_have_a_report(home):
    db = open_db()
    compare_run = start_run(db, kind="compare")
    for run_id in (compare_run, 999):
        with pytest.raises(PromptLabError, match=f"run {run_id} is not an evaluation run"):
            run_report(db, run_id)


def test_the_extraction_view_marks_the_span_of_each_answer_for_one_condition(home):
    db = open_db()
    rows = [item(0, "Positive", "Positive", output="I think it is positive overall."),
            item(1, "Negative", None, output="Hard to say."),
            item(0, "Positive", "Negative", strategy="few_shot", k_shot=3, output="Negative")]
    run_id = eval_run(db, rows)
    view = extraction_view(db, run_id, "zero_shot · default")
    assert [(r["item_index"], r["answer"], r["target"], r["correct"]) for r in view] == [
        (0, "Positive", "Positive", 1), (1, None, "Negative", 0)]
    text = view[0]["output"]
    assert text[view[0]["span"][0]:view[0]["span"][1]] == "positive" and view[1]["span"] is None
    assert [r["strategy"] for r in extraction_view(db, run_id, "few_shot k=3 · default · seed 0")] == ["few_shot"]
    assert len(extraction_view(db, run_id, "zero_shot · default", limit=1)) == 1


def test_calibration_bins_are_tenths_with_their_lower_edge_included(home):
    db = open_db()
    confidences = [0.5, 0.6, 0.999, 1.0, 0.55]
    rows = [item(i, "Positive", "Positive", label_probs_json=json.dumps({"Positive": p, "Negative": 1 - p}))
            for i, p in enumerate(confidences)]
    (c,) = run_report(db, eval_run(db, rows))["conditions"]
    assert [(b["bin"], b["count"]) for b in c["calibration"]] == [("0.5-0.6", 2), ("0.6-0.7", 1), ("0.9-1.0", 2)]


def test_what_the_report_counts_when_values_are_missing(home):
    db = open_db()
    rows = [item(0, "Positive", "Positive", completion_tokens=None, latency_ms=None),
            item(1, "Negative", None, strict="none", completion_tokens=6, latency_ms=30.0),
            item(2, "Neutral", "Neutral", strict="none")]
    (c,) = run_report(db, eval_run(db, rows))["conditions"]
    assert c["completion_tokens"] == pytest.approx(6 / 3) and c["latency_ms"] == pytest.approx(40 / 3)
    assert (c["format_failures_flexible"], c["format_failures_strict"]) == (1, 2)
    assert c["strict_accuracy"] == pytest.approx(1 / 3) and c["strict_accuracy_ci"] == stats.bootstrap_ci([1, 0, 0])
    assert "self_consistency" not in c  # one sample per item: no vote
    text = [{"strategy": "zero_shot", "item_index": 0, "target": "a", "answer": None, "score": None, "output": ""},
            {"strategy": "zero_shot", "item_index": 1, "target": "b", "answer": "b", "score": 1.0, "output": "b"}]
    (t,) = run_report(db, eval_run(db, text, metric="rouge"))["conditions"]
    assert t["correct"] == [0.0, 1.0] and t["score"] == 0.5  # a missing score counts as 0


def test_two_samples_already_vote(home):
    db = open_db()
    rows = [{**item(0, "Positive", a), "sample_index": s} for s, a in enumerate([None, "Positive"])]
    (c,) = run_report(db, eval_run(db, rows))["conditions"]
    assert c["samples"] == 2 and c["correct"] == [1] and "self_consistency" in c


@pytest.mark.parametrize("metric", ["contains", "regex"])
def test_contains_and_regex_judge_the_extracted_answer_without_label_baselines(home, metric):
    db = open_db()
    # the logged verdicts are stale on purpose: the report judges the extracted answers by the one rule
    rows = [{**item(i, gold, answer), "correct": 0, "correct_strict": 0}
            for i, (gold, answer) in enumerate([("Paris", "paris is the capital"), ("Rome", "Milan"), ("Oslo", "Oslo"),
                                                ("Bern", None)])]
    (c,) = run_report(db, eval_run(db, rows, metric=metric))["conditions"]
    assert c["accuracy"] == pytest.approx(2 / 4) and c["correct"] == [1, 0, 1, 0]
    assert (c["no_answer"], c["wrong_answers"]) == (1, 1)  # no answer is counted apart from a wrong one
    assert c["chance"] is None and "classes" not in c
    if metric == "contains":  # always answering one gold text finds it in one item of four
        assert (c["majority"], c["majority_label"]) == (pytest.approx(1 / 4), "Paris")
    else:  # a pattern is not an answer: no majority baseline
        assert (c["majority"], c["majority_label"]) == (None, None)


def test_gold_written_like_people_write_it_still_has_its_class(home):
    db = open_db()
    rows = [item(0, "positive.", "Positive"), item(1, " NEGATIVE", "Negative"), item(2, "Neutral!", "Positive")]
    (c,) = run_report(db, eval_run(db, rows))["conditions"]
    assert c["classes"]["confusion"]["matrix"] == [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]]


def test_conditions_follow_the_order_the_run_listed_its_strategies(home):
    db = open_db()
    rows = [item(0, "Positive", "Positive", strategy="few_shot", k_shot=2), item(0, "Positive", None)]
    report = run_report(db, eval_run(db, rows, strategies=("few_shot", "zero_shot")))
    assert [c["label"] for c in report["conditions"]] == ["few_shot k=2 · default", "zero_shot · default"]
    no_metric = start_run(db, kind="eval", template_name="sentiment", template_hash="h", options={})
    log_generations(db, no_metric, [item(0, "Positive", "Positive", model_spec="m", k_shot=0, seed=0, sample_index=0)])
    assert run_report(db, no_metric)["metric"] == "accuracy"  # runs logged before metrics were named


def test_paired_test_refusals_are_whole_sentences(home):
    db = open_db()
    a = run_report(db, eval_run(db, [item(0, "Positive", "Positive")]))["conditions"][0]
    b = run_report(db, eval_run(db, [item(5, "Positive", "Positive")]))["conditions"][0]
    with pytest.raises(PromptLabError, match=r"^the two results share no items, so they cannot be compared item by "
                                             r"item$"):
        paired_test(a, b)
    with pytest.raises(PromptLabError, match=r"^a paired test needs right/wrong per item \(an accuracy metric\)$"):
        paired_test(a, {"item_index": [0], "label": "x", "score": 1.0})


def test_the_extraction_view_pages_through_long_runs(home):
    db = open_db()
    rows = [item(i, "Positive", "Positive") for i in range(205)]
    run_id = eval_run(db, rows)
    assert len(extraction_view(db, run_id, "zero_shot · default")) == 200
    assert len(extraction_view(db, run_id, "zero_shot · default", limit=205)) == 205
