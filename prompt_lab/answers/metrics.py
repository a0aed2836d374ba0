"""Scoring metrics for model outputs: exact match, classification report, BLEU/chrF, ROUGE, string checks.

Every function takes plain lists/strings and returns plain Python values so results can go straight into JSON.
sacrebleu and rouge_score are imported lazily: the CLI imports this module and should start fast.
"""
from __future__ import annotations

import re
from functools import lru_cache

NONE_COLUMN = "(none)"


def _norm(text: str) -> str:
    return text.strip().casefold()


def exact_match(pred: str | None, gold: str) -> bool:
    """True when pred equals gold after stripping whitespace, ignoring case. None never matches."""
    if pred is None or gold is None:
        return False
    return _norm(pred) == _norm(gold)


def accuracy(correct: list[bool]) -> float:
    """Share of True values; 0.0 for an empty list."""
    if not correct:
        return 0.0
    return sum(1 for c in correct if c) / len(correct)


def _safe_div(num: float, den: float) -> float:
    return num / den if den else 0.0


def classification_report(gold: list[str], pred: list[str | None], labels: list[str]) -> dict:
    """Per-class precision/recall/F1, macro F1, accuracy and a confusion matrix.

    Labels are matched after strip + case-folding. A prediction that is None *or* not one of `labels`
    goes to the "(none)" column, counts as wrong and as invalid. A gold value outside `labels` raises
    ValueError, because it would have no row in the matrix.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred differ in length ({len(gold)} vs {len(pred)})")
    index = {}
    for i, label in enumerate(labels):
        index.setdefault(_norm(label), i)  # duplicate labels (by case) map to the first one
    none_col = len(labels)
    matrix = [[0] * (len(labels) + 1) for _ in labels]
    invalid = 0
    correct = 0
    for g, p in zip(gold, pred):
        row = index.get(_norm(g)) if g is not None else None
        if row is None:
            raise ValueError(f"gold label {g!r} is not one of the labels {labels!r}")
        col = index.get(_norm(p), none_col) if p is not None else none_col
        if col == none_col:
            invalid += 1
        matrix[row][col] += 1
        correct += row == col

    per_class = {}
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted = sum(matrix[r][i] for r in range(len(labels)))
        precision = _safe_div(tp, predicted)  # no predictions of this class -> 0.0, not a crash
        recall = _safe_div(tp, support)
        f1 = _safe_div(2 * precision * recall, precision + recall)
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}

    return {
        "labels": list(labels),
        "per_class": per_class,
        "macro_f1": _safe_div(sum(c["f1"] for c in per_class.values()), len(per_class)),
        "accuracy": _safe_div(correct, len(gold)),
        "confusion": {"rows": list(labels), "columns": list(labels) + [NONE_COLUMN], "matrix": matrix},
        "invalid": invalid,
    }


def _texts(hypotheses: list[str | None], references: list[str]) -> tuple[list[str], list[str]]:
    if len(hypotheses) != len(references):
        raise ValueError(f"hypotheses and references differ in length ({len(hypotheses)} vs {len(references)})")
    # A missing output is scored as an empty one, so it drags the score down instead of being skipped.
    return [h or "" for h in hypotheses], [r or "" for r in references]


def bleu(hypotheses: list[str | None], references: list[str]) -> float:
    """Corpus BLEU (0-100) with one reference per hypothesis, via sacrebleu. 0.0 for empty input."""
    hyps, refs = _texts(hypotheses, references)
    if not hyps:
        return 0.0
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def sentence_bleu(hypothesis: str | None, reference: str) -> float:
    """Smoothed sentence-level BLEU (0-100) for a single item."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(hypothesis or "", [reference or ""]).score)


def chrf(hypotheses: list[str | None], references: list[str]) -> float:
    """Corpus chrF (0-100) via sacrebleu. 0.0 for empty input."""
    hyps, refs = _texts(hypotheses, references)
    if not hyps:
        return 0.0
    import sacrebleu

    return float(sacrebleu.corpus_chrf(hyps, [refs]).score)


@lru_cache(maxsize=1)
def _rouge_scorer():
    # Building the scorer loads the stemmer; do it once per process.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def _rouge_pair(hypothesis: str | None, reference: str) -> tuple[float, float]:
    if not hypothesis:
        return 0.0, 0.0
    scores = _rouge_scorer().score(reference or "", hypothesis)
    return float(scores["rouge1"].fmeasure), float(scores["rougeL"].fmeasure)


def rouge(hypotheses: list[str | None], references: list[str]) -> dict:
    """Mean ROUGE-1 and ROUGE-L F1 over items: {"rouge1": float, "rougeL": float}. Zeros for empty input."""
    hyps, refs = _texts(hypotheses, references)
    if not hyps:
        return {"rouge1": 0.0, "rougeL": 0.0}
    pairs = [_rouge_pair(h, r) for h, r in zip(hyps, refs)]
    return {"rouge1": sum(p[0] for p in pairs) / len(pairs), "rougeL": sum(p[1] for p in pairs) / len(pairs)}


def rouge_l(hypothesis: str | None, reference: str) -> float:
    """ROUGE-L F1 for a single item; an empty or None hypothesis scores 0.0."""
    return _rouge_pair(hypothesis, reference)[1]


def contains(output: str | None, expected: str) -> bool:
    """Case-insensitive substring check; None output never contains anything."""
    if output is None:
        return False
    return expected.casefold() in output.casefold()


def matches_regex(output: str | None, pattern: str) -> bool:
    """re.search with IGNORECASE. An invalid pattern raises ValueError naming the pattern."""
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"invalid regular expression {pattern!r}: {err}") from None
    if output is None:
        return False
    return compiled.search(output) is not None
