import json
import math

import pytest

from prompt_lab import stats


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
    with pytest.raises(ValueError):
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
    json.dumps(curve)


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
    with pytest.raises(ValueError):
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
