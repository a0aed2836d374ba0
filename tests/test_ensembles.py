"""Ensembles of evaluation conditions (reporting/ensembles.py): a majority vote over extracted answers where invalid
answers never vote, ties go to the earliest member and an item nobody answers counts wrong; averaged label
probabilities; the CI and paired test against the best single member; refusals in words; `python -m prompt_lab
ensemble`. Hand-built run-log rows (no model), then a real label_probs evaluation on the embedded default model whose
ensembles are recomputed here from the logged rows and the dataset file."""
import csv
import json
import subprocess
import sys

import pytest

from conftest import ROOT

from prompt_lab.cli import main
from prompt_lab.evaluation import stats
from prompt_lab.evaluation.datasets import item_hash
from prompt_lab.prompts.templates import parse_template
from prompt_lab.reporting.ensembles import (EnsembleError, combine, ensemble, ensemble_json, ensemble_lines,
                                            member_from_rows, vote)
from prompt_lab.reporting.summary import eval_report
from prompt_lab.runlog.store import finish_run, log_generations, open_db, save_template_version, start_run

TEMPLATE_YAML = ("name: sentiment\ninstruction: Classify.\nvariables: [review]\nchoices: [Positive, Negative]\n"
                 "answer: {type: choice}\n")
TEMPLATE = parse_template(TEMPLATE_YAML)
REVIEWS = ["loved it", "hated it", "it broke", "no idea", "fine, really"]
GOLD = ["Positive", "Negative", "Negative", "Positive", "Positive"]
# Per member, its answer to each item. Item 0: two against one. Item 1: two invalid answers (None) would outvote the
# one valid answer if they voted. Item 2: a tie (one each, one invalid): the earliest member's answer wins. Item 3:
# nobody answers, so the ensemble has no answer and is wrong. Item 4: "positive." and "POSITIVE" are one vote.
ANSWERS = {"A": ["Positive", None, "Positive", None, "positive."],
           "B": ["Positive", "Negative", "Negative", None, "POSITIVE"],
           "C": ["Negative", None, None, None, "Negative"]}


def rows_for(answers, reviews=REVIEWS, gold=GOLD, probs=None, samples=None):
    """Logged-row dicts of one condition: item i answered answers[i] (or, with `samples`, several answers)."""
    rows = []
    for index, (review, target) in enumerate(zip(reviews, gold)):
        variables = {"review": review}
        for s, answer in enumerate(samples[index] if samples else [answers[index]]):
            rows.append({"item_index": index, "sample_index": s, "answer": answer, "strict_answer": answer,
                         "target": target, "targets_json": None, "choices_json": None,
                         "variables_json": json.dumps(variables), "item_hash": item_hash(variables, [target]),
                         "label_probs_json": json.dumps(probs[index]) if probs else None})
    return rows


def members(order="ABC", probs=None):
    return [member_from_rows(name, rows_for(ANSWERS[name], probs=(probs or {}).get(name)), TEMPLATE)
            for name in order]


def test_the_vote_ignores_invalid_answers_breaks_ties_by_member_order_and_counts_unanswered_items_wrong():
    result = combine(1, members("ABC"), TEMPLATE, "accuracy", "vote")
    assert result.answers == ["Positive", "Negative", "Positive", None, "positive."]
    assert result.correct == [1, 1, 0, 0, 1]
    assert (result.accuracy, result.no_answer, result.ties) == (0.6, 1, 1)
    # member order decides the tie on item 2: with B first, its Negative wins (and is right)
    reordered = combine(1, members("BAC"), TEMPLATE, "accuracy", "vote")
    assert reordered.answers[2] == "Negative" and reordered.correct == [1, 1, 1, 0, 1]
    # each member's accuracy is its own answers judged by the same rule; B (4 of 5) is the best single
    assert [(s["label"], s["accuracy"]) for s in result.member_scores] == [("A", 0.4), ("B", 0.8), ("C", 0.0)]
    assert result.best["label"] == "B" and result.best["correct"] == [1, 1, 1, 0, 1]


def test_ci_and_paired_test_are_the_shared_helpers_on_the_ensemble_and_best_single():
    result = combine(1, members("ABC"), TEMPLATE, "accuracy", "vote")
    assert result.ci == list(stats.bootstrap_ci([1, 1, 0, 0, 1]))
    assert result.best["ci"] == list(stats.bootstrap_ci([1, 1, 1, 0, 1]))
    direct = stats.mcnemar_exact([True, True, False, False, True], [True, True, True, False, True])
    t = result.test
    assert (t["n"], t["only_a"], t["only_b"], t["both"], t["neither"], t["p_value"]) == (
        5, 0, 1, 3, 1, direct["p_value"])
    assert direct["only_b"] == 1 and t["verdict"] == stats.verdict("ensemble (vote of 3)", "B", 0.6, 0.8, 1.0)
    data = ensemble_json(result)
    assert data["test"] == {**{k: data["test"][k] for k in ("both", "neither", "difference", "difference_ci")},
                            "p_value": 1.0, "verdict": t["verdict"], "n": 5, "only_ensemble": 0, "only_best": 1}
    assert data["ensemble"]["majority"] == 0.6 and data["ensemble"]["chance"] == 0.5


def test_a_member_with_several_samples_votes_with_its_own_majority():
    # item 0: samples Negative, Positive, Positive, None -> Positive (its report answer), though its first is Negative
    samples = [["Negative", "Positive", "Positive", None], ["Negative"], ["Positive", None], [None, None],
               ["Negative", "Negative"]]
    sc = member_from_rows("S", rows_for(None, samples=samples), TEMPLATE)
    assert list(sc.answers.values()) == ["Positive", "Negative", "Positive", None, "Negative"]
    result = combine(1, [sc, *members("CA")], TEMPLATE, "accuracy")
    assert result.answers == ["Positive", "Negative", "Positive", None, "Negative"]


PROBS = {"A": [{"Positive": 0.6, "Negative": 0.4}, {"Positive": 0.5, "Negative": 0.5}] + [{"Positive": 0.9,
                                                                                           "Negative": 0.1}] * 3,
         "B": [{"Positive": 0.3, "Negative": 0.7}, {"Positive": 0.5, "Negative": 0.5}] + [{"Positive": 0.2,
                                                                                           "Negative": 0.8}] * 3,
         "C": [{"Positive": 0.55, "Negative": 0.45}, {"Positive": 0.5, "Negative": 0.5}] + [{"Positive": 0.1,
                                                                                             "Negative": 0.9}] * 3}


def test_mean_probabilities_against_a_hand_computation():
    result = combine(1, members("ABC", probs=PROBS), TEMPLATE, "accuracy", "probs")
    # item 0: Positive (0.6 + 0.3 + 0.55) / 3 = 0.4833 < Negative 0.5167, though two of three members lean Positive
    assert result.mean_probs[0] == pytest.approx({"Positive": 1.45 / 3, "Negative": 1.55 / 3})
    # item 1: a tie at 0.5 goes to the label the first member lists first; items 2-4: Positive 0.4 vs Negative 0.6
    assert result.mean_probs[1] == pytest.approx({"Positive": 0.5, "Negative": 0.5})
    assert result.mean_probs[2] == pytest.approx({"Positive": 0.4, "Negative": 0.6})
    assert result.answers == ["Negative", "Positive", "Negative", "Negative", "Negative"]
    assert result.correct == [0, 0, 1, 0, 0] and result.accuracy == 0.2 and result.no_answer == 0


def test_with_label_probabilities_a_tied_vote_goes_to_the_highest_summed_probability():
    probs = [{"Positive": 0.4, "Negative": 0.35, "Neutral": 0.25}, {"Positive": 0.1, "Negative": 0.5, "Neutral": 0.4},
             {"Positive": 0.2, "Negative": 0.3, "Neutral": 0.5}]
    answers = ["Positive", "Negative", "Neutral"]
    assert vote(answers, TEMPLATE) == ("Positive", True)  # no probabilities: the first member's answer
    # summed: Positive 0.7, Negative 1.15, Neutral 1.15; the two equal sums go to the earlier member (Negative)
    assert vote(answers, TEMPLATE, probs) == ("Negative", True)
    assert vote(["Neutral", "Neutral", "Positive"], TEMPLATE, probs) == ("Neutral", False)  # no tie: counts decide
    assert vote([None, None, None], TEMPLATE, probs) == (None, False)
    # through combine: item 2 is tied (A Positive, B Negative); summed Positive 1.2 < Negative 1.8, in either order
    for order in ("ABC", "BAC"):
        result = combine(1, members(order, probs=PROBS), TEMPLATE, "accuracy", "vote")
        assert result.answers[2] == "Negative" and result.ties == 1 and result.ties_by_probs
    assert "ties 1 (broken by summed probability)" in ensemble_lines(result)[2]
    assert not combine(1, members("ABC"), TEMPLATE, "accuracy", "vote").ties_by_probs


def test_probabilities_are_refused_for_members_without_them():
    mixed = members("AB", probs={"A": PROBS["A"]})
    with pytest.raises(EnsembleError, match=r"averaging label probabilities needs them for every item of every "
                                            r"member, and B has none \(method generate logs none"):
        combine(1, mixed, TEMPLATE, "accuracy", "probs")


# --- through the run log -------------------------------------------------------------------------------------


def logged_run(db, conditions, *, metric="accuracy", method="generate"):
    """An evaluation run with one condition per (strategy, k, rows) entry."""
    save_template_version(db, "sentiment", "0123456789abcdef", TEMPLATE_YAML)
    run_id = start_run(db, kind="eval", template_name="sentiment", template_hash="0123456789abcdef",
                       strategies=["zero_shot", "few_shot"], params={"method": method},
                       options={"metric": metric, "dataset": "reviews.csv", "items": len(REVIEWS)})
    for strategy, k, rows in conditions:
        log_generations(db, run_id, [{**r, "strategy": strategy, "model_spec": "default", "k_shot": k, "seed": 0,
                                      "completion_tokens": 1, "latency_ms": 1.0} for r in rows])
    finish_run(db, run_id)
    return run_id


LABELS = ["zero_shot · default", "few_shot k=1 · default", "few_shot k=3 · default"]


@pytest.fixture
def three(home):
    db = open_db()
    return logged_run(db, [("zero_shot", 0, rows_for(ANSWERS["A"])), ("few_shot", 1, rows_for(ANSWERS["B"])),
                           ("few_shot", 3, rows_for(ANSWERS["C"]))])


def test_a_logged_run_ensembles_all_its_conditions_by_default_in_report_order(three):
    result = ensemble(three)
    assert result.members == LABELS == eval_report(three).labels
    assert result.answers == ["Positive", "Negative", "Positive", None, "positive."]
    # a member's correctness here is its report's
    assert [s["correct"] for s in result.member_scores] == [c["correct"] for c in eval_report(three).conditions]
    picked = ensemble(three, members=[LABELS[1], LABELS[0]])
    assert picked.members == [LABELS[1], LABELS[0]] and picked.answers[2] == "Negative"
    lines = ensemble_lines(result)
    assert lines[0] == (f"run {three} · ensemble of 3 conditions by majority vote over extracted answers · 5 items "
                        "all of them answered (matched by content)")
    assert lines[2].startswith("ensemble (vote of 3)") and lines[2].endswith("no answer 1, ties 1 (broken by member order)")
    assert any(line.startswith("few_shot k=1 · default") and line.endswith("best single") for line in lines)
    assert f"paired test: {result.test['verdict']}" in lines[-2]


def test_refusals_say_why(three):
    allowed = "; ".join(f"'{label}'" for label in LABELS)
    with pytest.raises(EnsembleError, match=rf"run {three} has no condition 'cot · default'; its conditions are "
                                            rf"{allowed}"):
        ensemble(three, members=["cot · default", LABELS[0]])
    with pytest.raises(EnsembleError, match=r"an ensemble needs at least 2 conditions, and 1 you named"):
        ensemble(three, members=[LABELS[0]])
    with pytest.raises(EnsembleError, match=r"'zero_shot · default' listed twice: a member votes once"):
        ensemble(three, members=[LABELS[0], LABELS[0]])
    with pytest.raises(EnsembleError, match=r"at least 2 conditions, and 1 match the filters"):
        ensemble(three, strategies=["zero_shot"])
    assert ensemble(three, strategies=["few_shot"]).members == LABELS[1:]
    with pytest.raises(EnsembleError, match=r"unknown ensemble method 'mean': use vote"):
        ensemble(three, "mean")
    with pytest.raises(EnsembleError, match=r"averaging label probabilities needs them .* zero_shot · default, "
                                            r"few_shot k=1 · default, few_shot k=3 · default have none"):
        ensemble(three, "probs")
    db = open_db()
    one = logged_run(db, [("zero_shot", 0, rows_for(ANSWERS["A"]))])
    with pytest.raises(EnsembleError, match=r"at least 2 conditions, and 1 the run has"):
        ensemble(one)
    other = ["a new review", "another one", "third", "fourth", "fifth"]
    apart = logged_run(db, [("zero_shot", 0, rows_for(ANSWERS["A"])),
                            ("few_shot", 1, rows_for(ANSWERS["B"], reviews=other))])
    with pytest.raises(EnsembleError, match=r"the members share no items \(matched by inputs and gold answer\): "
                                            r"zero_shot · default \(5\), few_shot k=1 · default \(5\)"):
        ensemble(apart)
    scored = logged_run(db, [("zero_shot", 0, rows_for(ANSWERS["A"])), ("few_shot", 1, rows_for(ANSWERS["B"]))],
                        metric="rouge")
    with pytest.raises(EnsembleError, match=rf"run {scored} is scored by rouge, which has no right or wrong"):
        ensemble(scored)


def test_members_with_some_items_in_common_are_combined_on_those(home):
    db = open_db()
    run_id = logged_run(db, [("zero_shot", 0, rows_for(ANSWERS["A"])),
                             ("few_shot", 1, rows_for(ANSWERS["B"][2:], reviews=REVIEWS[2:], gold=GOLD[2:]))])
    result = ensemble(run_id)
    assert len(result.item_key) == 3 and result.answers == ["Positive", None, "positive."]
    assert result.test["n"] == 3


def test_prompt_variants_with_the_same_strategy_are_separate_members(home):
    # a run with prompt variants (original and terse, zero_shot each): its conditions differ only by template version
    db = open_db()
    versions = {"original": "0123456789abcdef", "terse": "fedcba9876543210"}
    for h in versions.values():
        save_template_version(db, "sentiment", h, TEMPLATE_YAML)
    run_id = start_run(db, kind="eval", template_name="sentiment", template_hash=versions["original"],
                       strategies=["zero_shot"], params={"method": "generate", "variants": [{"name": "terse"}]},
                       options={"metric": "accuracy", "dataset": "reviews.csv", "items": 5, "variants": versions})
    for name, member in (("original", "A"), ("terse", "B")):
        log_generations(db, run_id, [{**r, "strategy": "zero_shot", "model_spec": "default", "k_shot": 0, "seed": 0,
                                      "template_hash": versions[name], "completion_tokens": 1, "latency_ms": 1.0}
                                     for r in rows_for(ANSWERS[member])])
    finish_run(db, run_id)
    report = eval_report(run_id)
    assert len(report.labels) == 2
    result = ensemble(run_id)
    assert result.members == report.labels
    assert [s["correct"] for s in result.member_scores] == [c["correct"] for c in report.conditions]
    assert result.answers == ["Positive", "Negative", "Positive", None, "positive."]  # item 2: the tie goes to A
    assert ensemble(run_id, variants=["terse", "original"]).members == report.labels
    with pytest.raises(EnsembleError, match=r"at least 2 conditions, and 1 match the filters"):
        ensemble(run_id, variants=["terse"])


def test_the_cli_prints_the_rows_and_the_verdict_and_json(three, capsys):
    assert main(["ensemble", str(three)]) == 0
    text = capsys.readouterr().out
    assert "ensemble (vote of 3)" in text and "best single" in text and "paired test: No clear difference" in text
    assert main(["ensemble", str(three), "--members", LABELS[2], LABELS[1], "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"run_id", "how", "members", "ensemble", "best_single", "test"}
    assert set(data["ensemble"]) >= {"accuracy", "ci", "n"} and set(data["best_single"]) == {"label", "accuracy", "ci"}
    assert set(data["test"]) >= {"p_value", "verdict", "n", "only_ensemble", "only_best"}
    assert data["members"] == [LABELS[2], LABELS[1]] and data["how"] == "vote" and data["run_id"] == three
    assert data["best_single"]["label"] == LABELS[1] and data["ensemble"]["n"] == 5
    assert main(["ensemble", str(three), "--members", "nope"]) == 2
    assert "error: run" in capsys.readouterr().err
    # as a user runs it: a subprocess against the same data dir
    out = subprocess.run([sys.executable, "-m", "prompt_lab", "ensemble", str(three), "--how", "probs"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "error: averaging label probabilities needs them" in out.stderr


# --- end to end on the embedded default model ------------------------------------------------------------------


@pytest.mark.integration
def test_ensembles_of_a_real_label_probs_run_match_a_recomputation(default_model_dir, home):
    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.runlog.store import connect, run_generations

    data = ROOT / "experiments" / "data" / "sentiment.csv"
    spec = EvalSpec(template="sentiment", dataset=str(data), columns={"variables": {"review": "review"},
                                                                      "target": "label"},
                    strategies=["zero_shot", "few_shot"], models=["default"], method="label_probs", k_shot=[1, 3],
                    limit=12, batch_size=16)
    run_id = evaluate(spec)
    with open(data, newline="", encoding="utf-8") as f:
        gold = {row["review"]: row["label"] for row in csv.DictReader(f)}  # the file's gold, not the logged one
    with connect() as conn:
        rows = run_generations(conn, run_id)
    conditions = [("zero_shot", 0), ("few_shot", 1), ("few_shot", 3)]
    per = {c: {json.loads(r["variables_json"])["review"]: r for r in rows if (r["strategy"], r["k_shot"]) == c}
           for c in conditions}
    reviews = list(per[conditions[0]])
    assert len(reviews) == 12 and all(list(per[c]) == reviews for c in conditions)

    # the vote, spelled out: labels compared case-insensitively; a tie goes to the tied label with the highest
    # probability summed over the members, then to the earliest member's answer
    expected_vote, ties = [], 0
    for review in reviews:
        answers = [per[c][review]["answer"] for c in conditions]
        probs = [json.loads(per[c][review]["label_probs_json"]) for c in conditions]
        counts = {}
        for a in answers:
            if a is not None:
                counts[a.lower()] = counts.get(a.lower(), 0) + 1
        tied = [a for a in dict.fromkeys(answers) if a is not None and counts[a.lower()] == max(counts.values())]
        ties += len(tied) > 1
        summed = {a: sum(p[label] for p in probs for label in p if label.lower() == a.lower()) for a in tied}
        expected_vote.append(next(a for a in tied if summed[a] == max(summed.values())))
    # the mean of the three members' probabilities, its top label
    expected_probs = []
    for review in reviews:
        probs = [json.loads(per[c][review]["label_probs_json"]) for c in conditions]
        mean = {label: sum(p[label] for p in probs) / 3 for label in probs[0]}
        expected_probs.append(max(mean, key=mean.get))

    report = eval_report(run_id)
    assert ties > 0  # the run exercises the tie rule (three labels, three members: one vote each happens)
    for how, expected in (("vote", expected_vote), ("probs", expected_probs)):
        result = ensemble(run_id, how)
        assert result.members == report.labels and len(result.item_key) == 12
        assert result.answers == expected
        assert result.ties == (ties if how == "vote" else 0)
        correct = [int(a.lower() == gold[r].lower()) for a, r in zip(expected, reviews)]
        assert result.correct == correct and result.accuracy == sum(correct) / 12
        assert result.ci == list(stats.bootstrap_ci(correct))
        singles = {c: [int(per[c][r]["answer"].lower() == gold[r].lower()) for r in reviews] for c in conditions}
        best_index = max(range(3), key=lambda i: sum(singles[conditions[i]]))  # the first of equals
        assert result.best["label"] == report.labels[best_index]
        assert result.best["accuracy"] == report.rows[best_index].value
        direct = stats.mcnemar_exact([bool(x) for x in correct], [bool(x) for x in singles[conditions[best_index]]])
        assert result.test["p_value"] == direct["p_value"] and result.test["only_a"] == direct["only_a"]
        assert result.test["only_b"] == direct["only_b"]
    # the CLI on the same run, as a user runs it (the run is in the test's data dir)
    out = subprocess.run([sys.executable, "-m", "prompt_lab", "ensemble", str(run_id), "--how", "probs", "--json"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ensemble"]["accuracy"] == sum(int(a.lower() == gold[r].lower()) for a, r in
                                               zip(expected_probs, reviews)) / 12
    assert data["members"] == report.labels and data["how"] == "probs" and data["ensemble"]["n"] == 12
