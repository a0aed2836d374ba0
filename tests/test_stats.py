import json
import math
import re

import numpy as np
import pytest

from prompt_lab.answers import metrics

from prompt_lab.evaluation import stats
def _paired(both, only_a, only_b, neither):
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return a, b


def test_mcnemar_known_value():
    result = stats.mcnemar_exact(*_paired(both=30, only_a=10, only_b=2, neither=8))
    assert result == {"n": 50, "both": 30, "only_a": 10, "only_b": 2, "neither": 8,
                      "p_value": pytest.approx(0.03857421875, abs=1e-15)}
    expected = 2 * sum(math.comb(12, i) for i in range(3)) / 2**12
    assert result["p_value"] == pytest.approx(expected)
    # order of the two prompts does not change p
    swapped = stats.mcnemar_exact(*_paired(both=30, only_a=2, only_b=10, neither=8))
    assert swapped["p_value"] == pytest.approx(0.03857421875)


def test_mcnemar_no_discordant_and_symmetric():
    assert stats.mcnemar_exact(*_paired(5, 0, 0, 5))["p_value"] == 1.0
    assert stats.mcnemar_exact([], [])["p_value"] == 1.0
    assert stats.mcnemar_exact(*_paired(5, 5, 5, 5))["p_value"] == 1.0


def test_mcnemar_large_sample_is_finite():
    p = stats.mcnemar_exact(*_paired(0, 1500, 1400, 0))["p_value"]
    assert 0.0 < p < 1.0


def test_mcnemar_length_mismatch():
    with pytest.raises(ValueError, match=r"3.*2"):
        stats.mcnemar_exact([True, False, True], [True, False])


def test_bootstrap_ci_binary_vector():
    values = [1.0] * 120 + [0.0] * 80
    low, high = stats.bootstrap_ci(values)
    assert low < 0.6 < high
    assert 0.12 <= high - low <= 0.15
    assert stats.bootstrap_ci(values, seed=0) == (low, high)
    assert isinstance(low, float) and isinstance(high, float)
    narrower = stats.bootstrap_ci(values, confidence=0.5)
    assert narrower[1] - narrower[0] < high - low


def test_bootstrap_ci_edge_cases():
    assert stats.bootstrap_ci([]) == (0.0, 0.0)
    assert stats.bootstrap_ci([0.1] * 7) == (0.1, 0.1)
    with pytest.raises(ValueError, match=r"^confidence must be between 0 and 1, got 1.5$"):
        stats.bootstrap_ci([1.0, 0.0], confidence=1.5)


def test_majority_vote():
    assert stats.majority_vote(["b", None, "a", "a", None, None]) == ("a", pytest.approx(2 / 6))
    # tie between a and b: a appeared first
    assert stats.majority_vote(["a", "b", "b", "a"]) == ("a", 0.5)
    assert stats.majority_vote([None, "b", "a", "a", "b"]) == ("b", pytest.approx(2 / 5))
    assert stats.majority_vote([None, None]) == (None, 0.0)
    assert stats.majority_vote([]) == (None, 0.0)
    # grouped like exact_match: case and surrounding space ignored, first spelling returned
    assert stats.majority_vote(["Paris", "paris ", "Lyon"]) == ("Paris", pytest.approx(2 / 3))


def test_agreement_rates():
    assert stats.agreement_rates([["a", "a", "b", None], [None, None], ["x"]]) == [0.5, 0.0, 1.0]


def test_self_consistency_all_correct():
    samples = [["4"] * 5, ["7"] * 5, ["x"] * 5]
    curve = stats.self_consistency_curve(samples, ["4", "7", "X"])
    assert [p["k"] for p in curve] == [1, 2, 3, 4, 5]
    assert all(p["accuracy"] == 1.0 for p in curve)
    assert json.loads(json.dumps(curve)) == curve  # plain values only


def test_self_consistency_majority_helps():
    # each item: 3 of 5 samples right, the 2 wrong ones disagree -> single sample 60%, vote of all 5 always right
    samples = [["1", "9", "1", "8", "1"], ["2", "2", None, "2", "7"], ["c", "a", "b", "c", "c"]]
    curve = stats.self_consistency_curve(samples, ["1", "2", "c"], resamples=500, seed=1)
    acc = {p["k"]: p["accuracy"] for p in curve}
    assert acc[1] == pytest.approx(0.6, abs=0.07)
    assert acc[5] == 1.0
    assert acc[5] >= acc[1]
    assert stats.self_consistency_curve(samples, ["1", "2", "c"], resamples=500, seed=1) == curve


def test_self_consistency_edge_cases():
    assert stats.self_consistency_curve([], []) == []
    assert stats.self_consistency_curve([[None, None]], ["a"]) == [{"k": 1, "accuracy": 0.0},
                                                                    {"k": 2, "accuracy": 0.0}]
    assert stats.self_consistency_curve([["a"]], ["a"]) == [{"k": 1, "accuracy": 1.0}]
    with pytest.raises(ValueError, match=r"^every item needs the same number of samples \(first item has 2\)$"):
        stats.self_consistency_curve([["a", "b"], ["a"]], ["a", "a"])


def test_verdict_wording():
    better = stats.verdict("few_shot", "zero_shot", 0.71, 0.52, 0.003)
    assert better == "few_shot is better than zero_shot (71% vs 52%, p = 0.003): unlikely to be chance."
    flipped = stats.verdict("zero_shot", "few_shot", 0.52, 0.71, 0.003)
    assert flipped.startswith("few_shot is better than zero_shot (71% vs 52%")
    unclear = stats.verdict("A", "B", 0.55, 0.53, 0.62)
    assert unclear == "No clear difference between A and B (55% vs 53%, p = 0.62): could be chance at this sample size."
    assert "could be chance" in stats.verdict("A", "B", 0.6, 0.5, 0.6)
    assert "p < 0.001" in stats.verdict("A", "B", 0.9, 0.5, 1e-6)


# --- bootstrap CI: the percentile bootstrap by its definition ------------------------------------------------------

def _percentile_bootstrap(values, confidence, resamples, seed):
    """The percentile bootstrap written out from its definition: `resamples` samples of size n drawn with
    replacement (numpy's default_rng(seed)), and the (1-c)/2 and 1-(1-c)/2 quantiles of their means."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


@pytest.mark.parametrize("values, confidence, resamples, seed", [
    (list(range(100)), 0.95, 2000, 0),  # the defaults
    ([1.0] * 120 + [0.0] * 80, 0.5, 37, 3),
    ([0.25, 4.0, 1.5], 0.8, 1, 7),  # a single resample: both ends are its mean
    ([(i * 37) % 101 / 10 for i in range(3000)], 0.9, 2000, 5),  # 3000 values: drawn in several blocks
])
def test_bootstrap_ci_is_the_percentile_bootstrap(values, confidence, resamples, seed):
    expected = _percentile_bootstrap(values, confidence, resamples, seed)
    assert stats.bootstrap_ci(values, confidence=confidence, resamples=resamples, seed=seed) == expected
    if (confidence, resamples, seed) == (0.95, 2000, 0):
        assert stats.bootstrap_ci(values) == expected  # documented defaults: 95%, 2000 resamples, seed 0


def test_bootstrap_ci_single_resample_is_one_mean():
    low, high = stats.bootstrap_ci([0.0, 1.0, 2.0], resamples=1)
    assert low == high and low * 3 == int(low * 3)  # the mean of three of the values


def test_bootstrap_ci_matches_the_normal_approximation():
    """For the mean of 0..99 (sigma 28.866, standard error 2.8866) the bootstrap interval is close to the
    normal one: mean +- 1.96 SE at 95% and +- 0.674 SE at 50%."""
    values = list(range(100))
    se = math.sqrt((100 ** 2 - 1) / 12) / 10
    low, high = stats.bootstrap_ci(values)
    assert low == pytest.approx(49.5 - 1.960 * se, abs=0.35) and high == pytest.approx(49.5 + 1.960 * se, abs=0.35)
    low, high = stats.bootstrap_ci(values, confidence=0.5)
    assert low == pytest.approx(49.5 - 0.674 * se, abs=0.25) and high == pytest.approx(49.5 + 0.674 * se, abs=0.25)


@pytest.mark.parametrize("kwargs, message", [
    ({"confidence": 0.0}, "confidence must be between 0 and 1, got 0.0"),
    ({"confidence": 1.0}, "confidence must be between 0 and 1, got 1.0"),
    ({"confidence": 1.5}, "confidence must be between 0 and 1, got 1.5"),
    ({"resamples": 0}, "resamples must be at least 1, got 0"),
])
def test_bootstrap_ci_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        stats.bootstrap_ci([1.0, 0.0], **kwargs)


# --- verdict wording at the edges ----------------------------------------------------------------------------------

UNCLEAR = "No clear difference between A and B ({}): could be chance at this sample size."
BETTER = "A is better than B ({}): unlikely to be chance."


@pytest.mark.parametrize("acc_a, acc_b, p_value, sentence", [
    (0.6, 0.5, 0.05, UNCLEAR.format("60% vs 50%, p = 0.05")),  # p must be below alpha
    (0.9, 0.5, 0.001, BETTER.format("90% vs 50%, p = 0.001")),
    (0.9, 0.5, 0.0009, BETTER.format("90% vs 50%, p < 0.001")),
    (0.5, 0.5, 1.0, UNCLEAR.format("50% vs 50%, p = 1.0")),
    (0.5, 0.52, 0.996, UNCLEAR.format("50% vs 52%, p = 1.0")),  # rounds to 1, written 1.0
    (0.7, 0.7, 0.01, UNCLEAR.format("70% vs 70%, p = 0.01")),  # a small p with equal accuracies names no winner
])
def test_verdict_sentence_at_the_edges(acc_a, acc_b, p_value, sentence):
    assert stats.verdict("A", "B", acc_a, acc_b, p_value) == sentence


# --- self-consistency curve: values worked out by hand ---------------------------------------------------------------

class _FixedOrder:
    """Stands in for numpy's Generator in _item_curve: resample i draws the answers in the order orders[i]."""

    def __init__(self, *orders):
        self.orders = orders

    def random(self, shape):
        assert shape == (len(self.orders), len(self.orders[0]))
        return np.array([np.argsort(order) for order in self.orders], dtype=float)


@pytest.mark.parametrize("answers, gold", [
    (["b", "a", "a", "b", "a"], "a"),  # k=2 and k=4 are ties that the first-drawn b wins
    ([None, "a", None, "b", "b"], "a"),  # k=1 draws only an invalid answer: wrong
    (["B ", "a", "A", "b", "b", "a"], "a"),
    ([None, None, "x", "y", "y", "x"], "x"),
])
def test_majority_of_the_first_k_draws_is_majority_vote_of_them(answers, gold):
    """In a fixed draw order, the vote of the first k samples is majority_vote of those k (ties to the one drawn
    first, invalid answers never win)."""
    n = len(answers)
    forward, backward = list(range(n)), list(range(n))[::-1]
    right = [[float(metrics.exact_match(stats.majority_vote([answers[i] for i in order[:k]])[0], gold))
              for k in range(1, n)] for order in (forward, backward)]
    assert stats._item_curve(answers, gold, 1, _FixedOrder(forward)) == right[0]
    assert stats._item_curve(answers, gold, 2, _FixedOrder(forward, backward)) == [
        (x + y) / 2 for x, y in zip(*right)]


def test_self_consistency_when_most_samples_are_invalid():
    """One valid right answer among four samples: a vote of k random samples is right when it includes it, so the
    accuracy is k/4 (invalid answers never win, even when they are all that was drawn)."""
    curve = stats.self_consistency_curve([[None, None, "a", None]], ["a"], resamples=4000)
    assert [p["k"] for p in curve] == [1, 2, 3, 4]
    assert [p["accuracy"] for p in curve] == pytest.approx([0.25, 0.5, 0.75, 1.0], abs=0.03)


def test_self_consistency_three_of_four_right():
    """Answers a, a, a, b with gold a: one sample is right 3/4 of the time; two samples are a+a (3 of 6 pairs) or a
    tie a+b broken at random, so 3/6 + 3/6 * 1/2 = 3/4; every three samples hold at least two a's, so 1.0."""
    curve = stats.self_consistency_curve([["a", "b", "a", "a"]], ["a"], resamples=4000)
    acc = [p["accuracy"] for p in curve]
    assert acc[0] == pytest.approx(0.75, abs=0.03) and acc[1] == pytest.approx(0.75, abs=0.03)
    assert acc[2:] == [1.0, 1.0]


def test_self_consistency_two_samples():
    assert stats.self_consistency_curve([["a", "a"]], ["a"]) == [{"k": 1, "accuracy": 1.0}, {"k": 2, "accuracy": 1.0}]
    curve = stats.self_consistency_curve([["b", "a"], ["a", "a"]], ["a", "a"], resamples=4000)
    # item 1: k=1 right half the time, k=2 a tie that b (seen first) wins; item 2 always right
    assert curve[0]["accuracy"] == pytest.approx((0.5 + 1.0) / 2, abs=0.03)
    assert curve[1] == {"k": 2, "accuracy": 0.5}


def test_self_consistency_single_resample_and_defaults():
    samples, gold = [["a", "b", "a", "c"], ["x", "y", None, "y"], ["q", "r", "s", "q"]], ["a", "y", "s"]
    curve = stats.self_consistency_curve(samples, gold, resamples=1)
    assert all(p["accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0) for p in curve)
    assert curve[-1] == {"k": 4, "accuracy": pytest.approx(2 / 3)}
    # documented defaults: 200 random subsets per item, seed 0
    assert stats.self_consistency_curve(samples, gold) == stats.self_consistency_curve(samples, gold, resamples=200,
                                                                                       seed=0)


@pytest.mark.parametrize("samples, gold, kwargs, message", [
    ([["a"], ["b"]], ["a"], {}, "samples and gold differ in length (2 vs 1)"),
    ([["a", "b"], ["a"]], ["a", "a"], {}, "every item needs the same number of samples (first item has 2)"),
    ([["a", "b"]], ["a"], {"resamples": 0}, "resamples must be at least 1, got 0"),
])
def test_self_consistency_rejects_bad_input(samples, gold, kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        stats.self_consistency_curve(samples, gold, **kwargs)


def test_votes_group_and_are_judged_by_the_callers_rule():
    """The report passes the template's answer_key and scoring.is_correct: '10', '10.0' and 'ten' are one vote, and
    a vote is judged like a single answer (here: contains)."""
    key = lambda a: {"ten": "10", "10.0": "10"}.get(a, a)  # noqa: E731
    assert stats.majority_vote(["7", "10.0", "ten", "7", None], key) == ("7", pytest.approx(2 / 5))  # tie: first
    assert stats.majority_vote(["7", "10.0", "ten", "10", "7", None], key) == ("10.0", pytest.approx(3 / 6))
    assert stats.majority_vote(["7", "10.0", "ten", "10", "7"]) == ("7", 0.4)  # by default, only case and space
    contains = lambda answer, gold: gold.casefold() in answer.casefold()  # noqa: E731
    samples = [["It is Paris.", "paris", "Lyon"], ["Lyon", "Lyon", None]]
    curve = stats.self_consistency_curve(samples, ["Paris", "Paris"], key=str.casefold, same=contains)
    assert curve[-1] == {"k": 3, "accuracy": 0.5}  # item 1: 'It is Paris.' vs 'paris' tie -> first; item 2: Lyon
    assert stats.self_consistency_curve(samples, ["Paris", "Paris"])[-1] == {"k": 3, "accuracy": 0.0}
    assert stats.agreement_rates([["7", "10.0", "ten"]], key) == [pytest.approx(2 / 3)]
