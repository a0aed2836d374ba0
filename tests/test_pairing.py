"""Two evaluation runs pair by item content (inputs and gold), never by position: runs over different datasets and
pairs with too few shared items are refused in plain words, and every verdict names both sides in full. Run-log rows
are written here (no model); `python -m prompt_lab pair` is run in-process and as a subprocess."""
import json
import subprocess
import sys

import pytest

from prompt_lab.cli import main
from prompt_lab.evaluation import stats
from prompt_lab.evaluation.datasets import item_hash
from prompt_lab.reporting.pairs import MIN_PAIRED, UnpairableError, compare_runs, pair_labels
from prompt_lab.reporting.summary import eval_report
from prompt_lab.runlog.store import log_generations, open_db, save_template_version, start_run

from conftest import ROOT

TEMPLATE = ("name: sentiment\ninstruction: Classify.\nvariables: [review]\nchoices: [Positive, Negative]\n"
            "answer: {type: choice}\n")
REVIEWS = [f"review number {i}: {'great' if i % 2 else 'awful'}" for i in range(14)]
GOLD = ["Negative" if i % 2 == 0 else "Positive" for i in range(14)]


def run(db, items, *, dataset="reviews.csv", strategy="zero_shot", k=0, model="default", method="generate",
        template_hash="0123456789abcdef", logged_hash=True):
    """An evaluation run over `items`: (review, gold, answer) in the order given (item_index = position)."""
    save_template_version(db, "sentiment", template_hash, TEMPLATE)
    run_id = start_run(db, kind="eval", template_name="sentiment", template_hash=template_hash,
                       strategies=[strategy], params={"method": method},
                       options={"metric": "accuracy", "dataset": dataset, "items": len(items)})
    rows = []
    for index, (review, gold, answer) in enumerate(items):
        variables = {"review": review}
        rows.append({"strategy": strategy, "model_spec": model, "k_shot": k, "seed": 0, "sample_index": 0,
                     "item_index": index, "target": gold, "answer": answer, "strict_answer": answer,
                     "variables_json": json.dumps(variables), "completion_tokens": 1, "latency_ms": 5.0,
                     "item_hash": item_hash(variables, [gold]) if logged_hash else None})
    log_generations(db, run_id, rows)
    return run_id


def test_items_pair_by_content_not_by_position(home):
    db = open_db()
    a_answers = [GOLD[i] if i < 10 else "Positive" for i in range(14)]  # right on 0-9
    b_answers = [GOLD[i] if i >= 4 else ("Positive" if GOLD[i] == "Negative" else "Negative") for i in range(14)]
    a = run(db, list(zip(REVIEWS, GOLD, a_answers)))
    order = list(reversed(range(14)))  # run B saw the same items in the opposite order
    b = run(db, [(REVIEWS[i], GOLD[i], b_answers[i]) for i in order])
    pairs = compare_runs(a, b)
    assert pairs.paired == 14
    (pair,) = pairs.pairs
    right_a = [a_answers[i] == GOLD[i] for i in range(14)]
    right_b = [b_answers[i] == GOLD[i] for i in range(14)]
    expected = stats.mcnemar_exact(right_a, right_b)
    t = pair.test
    assert (t.n, t.both, t.only_a, t.only_b, t.neither) == (14, expected["both"], expected["only_a"],
                                                            expected["only_b"], expected["neither"])
    assert (t.only_a, t.only_b) == (4, 2)  # items 0-3 right only in A; items 11 and 13 only in B
    # by position, item 0 of B is item 13 of A: the counts would differ
    by_position = stats.mcnemar_exact(right_a, [right_b[i] for i in order])
    assert (by_position["only_a"], by_position["only_b"]) != (t.only_a, t.only_b)
    assert t.accuracy_a == pytest.approx(sum(right_a) / 14) and t.accuracy_b == pytest.approx(sum(right_b) / 14)
    assert t.difference == pytest.approx(t.accuracy_a - t.accuracy_b)
    assert t.ci_a[0] <= t.accuracy_a <= t.ci_a[1] and t.difference_ci[0] <= t.difference <= t.difference_ci[1]


def test_runs_over_different_datasets_are_refused_in_words(home):
    db = open_db()
    a = run(db, list(zip(REVIEWS, GOLD, GOLD)), dataset="reviews.csv")
    b = run(db, [(f"ticket {i}", "Positive", "Positive") for i in range(12)], dataset="tickets.csv")
    with pytest.raises(UnpairableError, match=rf"runs {a} and {b} cannot be paired: only 0 item\(s\) have the same "
                                              r"inputs and gold answer in both \(datasets reviews.csv and "
                                              rf"tickets.csv; .*\), and a paired test needs at least {MIN_PAIRED}"):
        compare_runs(a, b)
    # ten shared items, but each run has items the other lacks: still two datasets
    c = run(db, list(zip(REVIEWS[:12], GOLD[:12], GOLD[:12])) + [("an extra review", "Positive", "Positive")],
            dataset="reviews2.csv")
    d = run(db, list(zip(REVIEWS[2:], GOLD[2:], GOLD[2:])), dataset="reviews3.csv")
    with pytest.raises(UnpairableError, match=rf"runs {c} and {d} evaluated different datasets \(reviews2.csv and "
                                              rf"reviews3.csv\): 10 items are the same but run {c} has 3 item\(s\) "
                                              rf"run {d} lacks and run {d} has 2 run {c} lacks"):
        compare_runs(c, d)
    # the same gold changed on one item is a different item
    changed = GOLD[:9] + ["Positive" if GOLD[9] == "Negative" else "Negative"]
    e = run(db, list(zip(REVIEWS[:10], changed, changed)))
    with pytest.raises(UnpairableError, match=r"only 9 item\(s\)"):
        compare_runs(a, e)


def test_a_subset_of_the_same_dataset_pairs_on_the_shared_items(home):
    db = open_db()
    full = run(db, list(zip(REVIEWS, GOLD, GOLD)))
    first_ten = run(db, list(zip(REVIEWS[:10], GOLD[:10], ["Positive"] * 10)))
    pairs = compare_runs(full, first_ten)
    assert pairs.paired == 10 and pairs.pairs[0].test.n == 10
    assert (pairs.pairs[0].test.only_a, pairs.pairs[0].test.only_b) == (5, 0)
    nine = run(db, list(zip(REVIEWS[:9], GOLD[:9], GOLD[:9])))
    with pytest.raises(UnpairableError, match=r"only 9 item\(s\) have the same inputs and gold answer in both"):
        compare_runs(full, nine)


def test_repeated_items_pair_occurrence_by_occurrence_and_old_rows_get_their_hash_computed(home):
    db = open_db()
    items = [(REVIEWS[i % 6], GOLD[i % 6], GOLD[i % 6]) for i in range(12)]  # each item twice
    a = run(db, items)
    b = run(db, items[::-1], logged_hash=False)  # rows logged before hashes were: computed from their inputs
    pairs = compare_runs(a, b)
    assert pairs.paired == 12 and pairs.pairs[0].test.n == 12 and pairs.pairs[0].test.both == 12


def test_verdicts_name_both_sides_in_full(home):
    db = open_db()
    a = run(db, list(zip(REVIEWS, GOLD, GOLD)), strategy="few_shot", k=3, template_hash="aaaabbbbccccdddd")
    b = run(db, list(zip(REVIEWS, GOLD, ["Positive"] * 14)), model="default+/adapters/x", method="label_probs",
            template_hash="1111222233334444", strategy="few_shot", k=3)
    (pair,) = compare_runs(a, b).pairs
    side_a = f"run {a} (sentiment@aaaabbbb, few_shot k=3, default, generate, accuracy)"
    side_b = f"run {b} (sentiment@11112222, few_shot k=3, default+/adapters/x, label_probs, accuracy)"
    assert pair.a.describe() == side_a and pair.b.describe() == side_b
    assert pair.test.verdict.startswith(f"{side_a} is better than {side_b} (100% vs 50%, p = ")
    one = pair_labels(eval_report(a), "few_shot k=3 · default", eval_report(b), "few_shot k=3 · default+/adapters/x")
    assert one.test.verdict == pair.test.verdict and one.paired == 14
    with pytest.raises(UnpairableError, match=rf"pick a condition of each run: run {a} has few_shot k=3 · default;"):
        pair_labels(eval_report(a), "zero_shot · default", eval_report(b), "few_shot k=3 · default+/adapters/x")


def test_cli_pair_prints_the_test_and_exits_non_zero_when_unpairable(home, capsys):
    db = open_db()
    a = run(db, list(zip(REVIEWS, GOLD, GOLD)))
    b = run(db, list(zip(REVIEWS, GOLD, ["Positive"] * 14)))
    other = run(db, [(f"ticket {i}", "Positive", "Positive") for i in range(12)], dataset="tickets.csv")
    assert main(["pair", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"runs {a} and {b}: 14 items with the same inputs and gold answer in both" in out
    assert f"A: run {a} (sentiment@01234567, zero_shot, default, generate, accuracy)" in out
    assert "paired items: 14" in out
    assert "accuracy A 100.0% [100.0%, 100.0%] · B 50.0% [" in out and "difference A - B +50.0 points [" in out
    assert "exact McNemar p = 0.0156 (7 items right only in A, 0 only in B)" in out
    assert f"verdict: run {a} (sentiment@01234567, zero_shot, default, generate, accuracy) is better than" in out

    assert main(["pair", str(a), str(b), "--json", "--condition", "zero_shot · default"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["paired"] == 14 and data["pairs"][0]["paired"] == 14
    assert data["pairs"][0]["test"]["p_value"] == pytest.approx(2 / 2**7)
    assert (data["pairs"][0]["a"]["run_id"], data["pairs"][0]["b"]["method"]) == (a, "generate")

    assert main(["pair", str(a), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: runs {a} and {other} cannot be paired: only 0 item(s)")
    assert main(["pair", str(a), str(b), "--condition", "few_shot k=3 · default"]) == 2
    assert f"run {a} has no condition 'few_shot k=3 · default' (its conditions: zero_shot · default)" in (
        capsys.readouterr().err)


def test_pair_as_a_command(home):
    """The installed entry point: exit status and messages as a script sees them."""
    db = open_db()
    a = run(db, list(zip(REVIEWS, GOLD, GOLD)))
    other = run(db, [(f"ticket {i}", "Positive", "Positive") for i in range(12)], dataset="tickets.csv")
    db.close()
    done = subprocess.run([sys.executable, "-m", "prompt_lab", "pair", str(a), str(other), "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "cannot be paired: only 0 item(s) have the same inputs and gold answer" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_closed_pipe_ends_the_command_quietly(home):
    """`python -m prompt_lab pair A B --json | head -1`: the reader goes away before the output is written."""
    db = open_db()
    a = run(db, list(zip(REVIEWS, GOLD, GOLD)))
    b = run(db, list(zip(REVIEWS, GOLD, ["Positive"] * 14)))
    db.close()
    proc = subprocess.Popen([sys.executable, "-m", "prompt_lab", "pair", str(a), str(b), "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # nobody reads: the first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""
