import json

import pytest

from prompt_lab import metrics


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
    json.dumps(report)  # plain values only


def test_classification_report_rejects_unknown_gold_and_length_mismatch():
    with pytest.raises(ValueError, match="other"):
        metrics.classification_report(["other"], ["pos"], ["pos", "neg"])
    with pytest.raises(ValueError):
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
    with pytest.raises(ValueError):
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
