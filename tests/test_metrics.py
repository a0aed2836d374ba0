import json
import math
import re

import pytest

from prompt_lab.answers import metrics
def test_exact_match_and_accuracy():
    assert metrics.exact_match("  Paris ", "paris")
    assert not metrics.exact_match(None, "paris")
    assert not metrics.exact_match("Lyon", "paris")
    assert metrics.accuracy([True, False, True, True]) == 0.75
    assert metrics.accuracy([]) == 0.0


def test_classification_report_hand_computed():
    labels = ["pos", "neg", "neu"]
    gold = ["pos", "pos", "pos", "neg", "neg", "neu"]
    pred = ["pos", "POS ", "neg", "neg", None, "maybe"]
    report = metrics.classification_report(gold, pred, labels)

    # pos: tp=2, predicted 2, support 3 -> p=1, r=2/3, f1=0.8
    pos = report["per_class"]["pos"]
    assert pos["precision"] == pytest.approx(1.0)
    assert pos["recall"] == pytest.approx(2 / 3)
    assert pos["f1"] == pytest.approx(0.8)
    assert pos["support"] == 3
    # neg: tp=1, predicted 2, support 2 -> p=0.5, r=0.5, f1=0.5
    neg = report["per_class"]["neg"]
    assert (neg["precision"], neg["recall"], neg["f1"], neg["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    # neu: never predicted -> precision 0.0, no crash; f1 0.0
    neu = report["per_class"]["neu"]
    assert (neu["precision"], neu["recall"], neu["f1"], neu["support"]) == (0.0, 0.0, 0.0, 1)

    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert report["accuracy"] == pytest.approx(3 / 6)
    assert report["invalid"] == 2  # None and the out-of-label "maybe"
    assert report["labels"] == labels
    assert report["confusion"]["rows"] == labels
    assert report["confusion"]["columns"] == labels + ["(none)"]
    assert report["confusion"]["matrix"] == [
        [2, 1, 0, 0],
        [0, 1, 0, 1],
        [0, 0, 0, 1],
    ]
    assert json.loads(json.dumps(report)) == report  # plain values only: it survives a JSON round trip unchanged


def test_classification_report_rejects_unknown_gold_and_length_mismatch():
    with pytest.raises(ValueError, match="other"):
        metrics.classification_report(["other"], ["pos"], ["pos", "neg"])
    with pytest.raises(ValueError, match=r"^gold and pred differ in length \(1 vs 0\)$"):
        metrics.classification_report(["pos"], [], ["pos"])


def test_classification_report_empty():
    report = metrics.classification_report([], [], ["a", "b"])
    assert report["accuracy"] == 0.0
    assert report["macro_f1"] == 0.0
    assert report["confusion"]["matrix"] == [[0, 0, 0], [0, 0, 0]]


def test_bleu_identical_and_disjoint():
    refs = ["the cat sat on the mat", "a quick brown fox jumps over the dog"]
    assert metrics.bleu(refs, refs) == pytest.approx(100.0)
    assert metrics.bleu(["alpha beta gamma delta", "one two three four"], refs) == pytest.approx(0.0, abs=1e-6)
    assert metrics.sentence_bleu(refs[0], refs[0]) == pytest.approx(100.0)
    assert metrics.sentence_bleu(None, refs[0]) == pytest.approx(0.0, abs=1e-6)
    assert metrics.bleu([None, refs[1]], refs) < 100.0
    assert metrics.bleu([], []) == 0.0
    assert metrics.chrf(refs, refs) == pytest.approx(100.0)
    with pytest.raises(ValueError, match=r"^hypotheses and references differ in length \(1 vs 0\)$"):
        metrics.bleu(["x"], [])


def test_rouge():
    ref = "the cats were sitting on the mat"
    assert metrics.rouge_l(ref, ref) == pytest.approx(1.0)
    assert metrics.rouge_l("", ref) == 0.0
    assert metrics.rouge_l(None, ref) == 0.0
    scores = metrics.rouge([ref, None], [ref, ref])
    assert scores == pytest.approx({"rouge1": 0.5, "rougeL": 0.5})
    # stemming: "cat sit" matches "cats ... sitting"
    assert metrics.rouge_l("cat sit", "cats sitting") == pytest.approx(1.0)
    assert metrics.rouge([], []) == {"rouge1": 0.0, "rougeL": 0.0}


def test_contains_and_regex():
    assert metrics.contains("The answer is PARIS.", "paris")
    assert not metrics.contains("The answer is Lyon.", "paris")
    assert not metrics.contains(None, "paris")
    assert metrics.matches_regex("Answer: 42", r"answer:\s*\d+")
    assert not metrics.matches_regex("Answer: none", r"answer:\s*\d+")


def test_bad_regex_names_pattern():
    with pytest.raises(ValueError, match=r"\(unclosed"):
        metrics.matches_regex("text", "(unclosed")


def test_classification_report_accuracy_counts_right_answers():
    report = metrics.classification_report(["a", "a", "a", "b"], ["a", "A", "a", "a"], ["a", "b"])
    assert report["accuracy"] == 0.75
    assert report["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["confusion"]["matrix"] == [[3, 0, 0], [1, 0, 0]]


@pytest.mark.parametrize("gold, pred, message", [
    (["pos"], [], "gold and pred differ in length (1 vs 0)"),
    ([None], ["pos"], "gold label None is not one of the labels ['pos', 'neg']"),
    (["other"], ["pos"], "gold label 'other' is not one of the labels ['pos', 'neg']"),
])
def test_classification_report_error_messages(gold, pred, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        metrics.classification_report(gold, pred, ["pos", "neg"])


def test_bleu_of_uneven_pairs_is_the_brevity_penalty():
    """Every n-gram of a short output is right, so BLEU is 100 times the brevity penalty exp(1 - r/c)."""
    refs = ["the cat sat on the mat", "a quick brown fox jumps over the dog"]
    # sentence: 3 of 6 words -> exp(1 - 6/3)
    assert metrics.sentence_bleu("the cat sat", refs[0]) == pytest.approx(100 * math.exp(-1))
    # corpus: a missing output counts as an empty one, 8 words against 14 -> exp(1 - 14/8)
    assert metrics.bleu([None, refs[1]], refs) == pytest.approx(100 * math.exp(1 - 14 / 8))
    assert metrics.bleu([None, refs[1]], refs) == metrics.bleu(["", refs[1]], refs)
    # a missing reference is an empty one too: an empty output against it changes nothing
    assert metrics.bleu([refs[0], ""], [refs[0], None]) == pytest.approx(100.0)


def test_a_placeholder_output_does_not_match_a_missing_reference():
    """Missing text is empty text, so a redaction-style output like "XXXX" scores 0 against a missing reference,
    and a missing output scores 0 against an "XXXX" reference."""
    assert metrics.sentence_bleu("XXXX", None) == 0.0
    assert metrics.sentence_bleu(None, "XXXX") == 0.0
    assert metrics.rouge_l("XXXX", None) == 0.0
    assert metrics.rouge_l("XXXX", "XXXX") == pytest.approx(1.0)


def test_rouge1_and_rougel_differ_on_reordered_words():
    """Output "on the mat the cat" (5 words) against "the cat was on the mat" (6 words): 5 words in common ->
    ROUGE-1 P=1, R=5/6, F=10/11; longest common subsequence "on the mat" -> ROUGE-L P=3/5, R=3/6, F=6/11."""
    scores = metrics.rouge(["on the mat the cat"], ["the cat was on the mat"])
    assert scores == pytest.approx({"rouge1": 10 / 11, "rougeL": 6 / 11})
    assert metrics.rouge_l("on the mat the cat", "the cat was on the mat") == pytest.approx(6 / 11)


@pytest.mark.parametrize("metric", [metrics.bleu, metrics.chrf])
def test_corpus_metrics_of_nothing_are_zero(metric):
    assert metric([], []) == 0.0


@pytest.mark.parametrize("metric", [metrics.bleu, metrics.chrf, metrics.rouge])
def test_corpus_metrics_reject_uneven_lists(metric):
    with pytest.raises(ValueError, match=r"^hypotheses and references differ in length \(1 vs 2\)$"):
        metric(["x"], ["x", "y"])


def test_regex_on_a_missing_output_is_false():
    assert not metrics.matches_regex(None, "")
    assert not metrics.matches_regex(None, ".*")
