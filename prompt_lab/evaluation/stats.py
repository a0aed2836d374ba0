"""Statistics for comparing prompts: bootstrap CIs, exact McNemar test, plain-words verdicts, self-consistency.

Functions take plain lists and return plain Python values (floats, dicts, lists) so results are JSON-serializable.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from prompt_lab.answers.metrics import exact_match

# Cap on the size of one block of bootstrap indices, so a large sample does not allocate resamples * n at once.
_MAX_BLOCK = 2_000_000


def bootstrap_ci(values: list[float], *, confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean. Empty -> (0.0, 0.0); constant values -> (v, v)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if len(values) == 0:
        return 0.0, 0.0
    data = np.asarray(values, dtype=float)
    if np.all(data == data[0]):
        # Resampled means of constant data can differ from v by rounding; report v itself.
        v = float(data[0])
        return v, v
    n = len(data)
    rng = np.random.default_rng(seed)
    rows = max(1, _MAX_BLOCK // n)
    means = []
    for start in range(0, resamples, rows):
        idx = rng.integers(0, n, size=(min(rows, resamples - start), n))
        means.append(data[idx].mean(axis=1))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(means), [tail, 100 - tail])
    return float(low), float(high)


def mcnemar_exact(a: list[bool], b: list[bool]) -> dict:
    """Exact (binomial) two-sided McNemar test on paired correctness of two prompts over the same items."""
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length (got {len(a)} and {len(b)})")
    both = only_a = only_b = neither = 0
    for x, y in zip(a, b):
        if x and y:
            both += 1
        elif x:
            only_a += 1
        elif y:
            only_b += 1
        else:
            neither += 1
    m = only_a + only_b
    if m == 0:
        p_value = 1.0
    else:
        # Integer arithmetic keeps the tail exact; big-int true division rounds correctly to a float.
        tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1))
        p_value = min(1.0, 2 * tail / 2**m)
    return {"n": len(a), "both": both, "only_a": only_a, "only_b": only_b, "neither": neither,
            "p_value": p_value}


def _format_p(p: float) -> str:
    if p < 0.001:
        return "p < 0.001"
    text = f"{p:.2g}"
    return f"p = {'1.0' if text == '1' else text}"


def verdict(name_a: str, name_b: str, acc_a: float, acc_b: float, p_value: float, alpha: float = 0.05) -> str:
    """One sentence in plain words saying whether prompt A or B is better (accuracies as fractions 0-1)."""
    if p_value < alpha and acc_a != acc_b:
        if acc_a > acc_b:
            winner, loser, acc_w, acc_l = name_a, name_b, acc_a, acc_b
        else:
            winner, loser, acc_w, acc_l = name_b, name_a, acc_b, acc_a
        return (f"{winner} is better than {loser} ({acc_w:.0%} vs {acc_l:.0%}, {_format_p(p_value)}): "
                "unlikely to be chance.")
    return (f"No clear difference between {name_a} and {name_b} ({acc_a:.0%} vs {acc_b:.0%}, "
            f"{_format_p(p_value)}): could be chance at this sample size.")


KeyFn = Callable[[str], object]  # the form in which two answers count as the same vote
SameFn = Callable[[str, object], bool]  # whether an answer is right for an item's gold


def _key(answer: str) -> str:
    # Same normalisation as exact_match, so "Paris" and "paris " vote together.
    return answer.strip().casefold()


def majority_vote(answers: list[str | None], key: KeyFn | None = None) -> tuple[str | None, float]:
    """Most common valid answer and its share of all samples (invalid ones included in the denominator).

    None answers never vote; ties go to the answer seen first. Answers are grouped by `key` (by default
    case-insensitively; the report passes scoring.answer_key, so '10' and '10.0' vote together) and the first
    spelling seen is returned. (None, 0.0) when there is no valid answer.
    """
    key_of = key or _key
    counts: dict = {}
    first_spelling: dict = {}
    for answer in answers:
        if answer is None:
            continue
        key = key_of(answer)
        counts[key] = counts.get(key, 0) + 1
        first_spelling.setdefault(key, answer)
    if not counts:
        return None, 0.0
    # dicts keep insertion order and max() returns the first maximum, which gives first-appearance tie-breaking
    best = max(counts, key=counts.__getitem__)
    return first_spelling[best], counts[best] / len(answers)


def agreement_rates(samples: list[list[str | None]], key: KeyFn | None = None) -> list[float]:
    """Per item, the share of its samples that agree with its majority answer."""
    return [majority_vote(item, key)[1] for item in samples]


def _item_curve(answers: list[str | None], gold, resamples: int, rng: np.random.Generator,
                key_of: KeyFn = _key, same: SameFn = exact_match) -> list[float]:
    """Accuracy of majority-of-k for k = 1..n-1 on one item, estimated over random draw orders."""
    n = len(answers)
    first_answer = {}
    for a in answers:
        if a is not None:
            first_answer.setdefault(key_of(a), a)
    keys = list(first_answer)
    if n < 2 or not keys:
        return [0.0] * max(n - 1, 0)
    classes = len(keys)
    code_of = {k: i for i, k in enumerate(keys)}
    codes = np.array([code_of[key_of(a)] if a is not None else classes for a in answers])  # invalid -> extra column
    # each vote class is judged by the same rule as a single answer: on its first spelling
    is_gold = np.array([bool(same(first_answer[k], gold)) for k in keys] + [False])
    # The first k entries of a random permutation are a uniform k-subset without replacement, so one permutation
    # per resample serves every k; its order also breaks ties at random, like drawing samples one by one.
    drawn = codes[np.argsort(rng.random((resamples, n)), axis=1)]
    rows = np.arange(resamples)
    counts = np.zeros((resamples, classes + 1), dtype=int)
    first = np.full((resamples, classes + 1), n)
    out = []
    for step in range(n - 1):
        col = drawn[:, step]
        counts[rows, col] += 1
        first[rows, col] = np.minimum(first[rows, col], step)
        valid = counts[:, :classes]
        # Highest count wins; among equal counts the smaller first position wins (first > 0 only breaks ties).
        winner = np.argmax(valid * (n + 1) - first[:, :classes], axis=1)
        correct = is_gold[winner] & (valid.max(axis=1) > 0)
        out.append(float(correct.mean()))
    return out


def self_consistency_curve(samples: list[list[str | None]], gold: list, *, resamples: int = 200,
                           seed: int = 0, key: KeyFn | None = None, same: SameFn | None = None) -> list[dict]:
    """Accuracy of majority vote over k samples per item, for k = 1..n: [{"k": k, "accuracy": float}].

    For k < n the accuracy is averaged over `resamples` random k-subsets per item; k = n uses all samples once.
    `key` groups answers into votes and `same(answer, gold)` judges a vote (defaults: case-insensitive equality,
    metrics.exact_match); the report passes the template's answer_key and scoring.is_correct.
    """
    key_of, same = key or _key, same or exact_match
    if len(samples) != len(gold):
        raise ValueError(f"samples and gold differ in length ({len(samples)} vs {len(gold)})")
    if not samples:
        return []
    n = len(samples[0])
    if any(len(item) != n for item in samples):
        raise ValueError(f"every item needs the same number of samples (first item has {n})")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    totals = [0.0] * n
    for answers, g in zip(samples, gold):
        for i, acc in enumerate(_item_curve(answers, g, resamples, rng, key_of, same)):
            totals[i] += acc
        vote = majority_vote(answers, key_of)[0]
        totals[n - 1] += float(vote is not None and bool(same(vote, g)))
    return [{"k": k, "accuracy": totals[k - 1] / len(samples)} for k in range(1, n + 1)]
