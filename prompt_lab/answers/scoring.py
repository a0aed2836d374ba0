"""Answer extraction: pull the answer out of a completion according to the template's AnswerSpec."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from prompt_lab.answers import metrics
from prompt_lab.prompts.templates import AnswerSpec, Template

NUMBER_RE = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


@dataclass
class Extraction:
    answer: str | None  # None: the output has no answer in the expected format
    span: tuple[int, int] | None = None  # where in the text it was found
    method: str = ""


def normalize_number(raw: str) -> str:
    """'$1,234.50' -> '1234.5', '12.' -> '12'."""
    value = raw.replace(",", "").replace("$", "").rstrip(".")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value


def normalize_label(raw: str) -> str:
    return re.sub(r"[^\w\s-]", "", raw).strip().lower()


def _pick(matches: list, mode: str):
    return (matches[0] if mode == "first" else matches[-1]) if matches else None


def _after_prefix(text: str, prefix: str) -> tuple[int, int] | None:
    found = list(re.finditer(re.escape(prefix.strip()) + r"\s*:?\s*", text, flags=re.IGNORECASE))
    if not found:
        return None
    start = found[-1].end()
    end = text.find("\n", start)
    return start, len(text) if end < 0 else end


def extract_answer(text: str, spec: AnswerSpec, *, choices: list[str] | None = None,
                   answer_prefix: str = "The answer is") -> Extraction:
    """Extract per the spec: the regex (group, first/last) if set, else by type (choice, number, json, text)."""
    if spec.pattern:
        matches = list(re.finditer(spec.pattern, text, flags=re.IGNORECASE | re.MULTILINE))
        match = _pick(matches, spec.match)
        if match is None or match.group(spec.group) is None:
            return Extraction(None, method="pattern")
        value = match.group(spec.group).strip()
        if spec.type == "number":
            value = normalize_number(value)
        elif spec.type == "choice" and choices:
            by_norm = {normalize_label(c): c for c in choices}
            value = by_norm.get(normalize_label(value))
            if value is None:
                return Extraction(None, match.span(spec.group), "pattern")
        return Extraction(value, match.span(spec.group), "pattern")
    window = _after_prefix(text, answer_prefix)
    start, end = window if window else (0, len(text))
    if spec.type == "choice":
        choice_re = re.compile(r"\b(" + "|".join(re.escape(c) for c in choices or []) + r")\b", re.IGNORECASE)
        by_norm = {normalize_label(c): c for c in choices}
        matches = list(choice_re.finditer(text, start, end)) if window else []
        if not matches:
            matches = list(choice_re.finditer(text))
            if len({normalize_label(m.group(1)) for m in matches}) > 1:
                # "Positive, Negative or Neutral." names every label and picks none
                return Extraction(None, method="choice")
        match = _pick(matches, spec.match)
        if match is None:
            return Extraction(None, method="choice")
        return Extraction(by_norm[normalize_label(match.group(1))], match.span(1), "choice")
    if spec.type == "number":
        matches = list(NUMBER_RE.finditer(text, start, end)) or list(NUMBER_RE.finditer(text))
        match = _pick(matches, spec.match)
        if match is None:
            return Extraction(None, method="number")
        return Extraction(normalize_number(match.group(0)), match.span(), "number")
    if spec.type == "json":
        first = text.find("{")
        while first >= 0:
            try:
                value, size = json.JSONDecoder().raw_decode(text[first:])
                return Extraction(json.dumps(value, sort_keys=True, ensure_ascii=False), (first, first + size), "json")
            except ValueError:
                first = text.find("{", first + 1)
        return Extraction(None, method="json")
    answer = text[start:end].strip()
    if window:
        answer = answer.rstrip(".")
    return Extraction(answer or None, (start, end) if answer else None, "text")


def extract_for(template: Template, text: str, choices: list[str] | None = None) -> Extraction:
    """Flexible extraction (the default everywhere an answer is shown)."""
    return extract_answer(text, template.answer, choices=choices or template.choices,
                          answer_prefix=template.answer_prefix)


_LEAD_RE = re.compile(r"^\s*(?:\**\s*)?(?:final\s+)?answer\s*:\s*", re.IGNORECASE)


def _bare(text: str) -> tuple[str, int]:
    """The output without an 'Answer:' lead, surrounding space, quotes, bold marks and a final period."""
    lead = _LEAD_RE.match(text)
    start = lead.end() if lead else 0
    body = text[start:]
    stripped = body.strip()
    while True:  # marks and a final period in any order: **42**. / "42". / 42.
        before = stripped
        stripped = re.sub(r"[.!]+$", "", stripped.strip("*\"'`").strip()).strip()
        if stripped == before:
            break
    offset = start + (body.find(stripped) if stripped else 0)
    return stripped, offset


def extract_strict(template: Template, text: str, choices: list[str] | None = None) -> Extraction:
    """Strict extraction: the answer must be given in the expected format.

    Either the whole output is a bare answer ("Positive", "Answer: 42", "42."), or it ends its reasoning with
    "<answer_prefix> X." (the gsm8k CoT convention "The answer is N."); a number may also follow gsm8k's "####". A template regex, when set, is the
    strict rule itself. Anything else is a format failure (None), counted apart from wrong answers.
    """
    spec, choices = template.answer, choices or template.choices
    if spec.pattern:
        return extract_answer(text, spec, choices=choices, answer_prefix=template.answer_prefix)
    if spec.type == "number":  # gsm8k's own marker, as lm-evaluation-harness's strict-match reads it (first one)
        marked = re.search(r"####\s*(-?\$?[0-9.,]*[0-9])", text)
        if marked:
            return Extraction(normalize_number(marked.group(1)), marked.span(1), "strict")
    prefix_re = re.compile(re.escape(template.answer_prefix.strip()) + r"\s*:?\s*(.+?)\s*(?:\.\s*)?$",
                           re.IGNORECASE | re.MULTILINE)
    matches = list(prefix_re.finditer(text))
    if matches:
        candidate, offset = matches[-1].group(1), matches[-1].start(1)
    else:
        candidate, offset = _bare(text)
    candidate = candidate.strip().rstrip(".").strip()
    span = (offset, offset + len(candidate))
    if spec.type == "choice":
        by_norm = {normalize_label(c): c for c in choices or []}
        value = by_norm.get(normalize_label(candidate))
        return Extraction(value, span if value else None, "strict")
    if spec.type == "number":
        if re.fullmatch(r"-?\$?\d[\d,]*(?:\.\d+)?", candidate):
            return Extraction(normalize_number(candidate), span, "strict")
        return Extraction(None, method="strict")
    if spec.type == "json":
        body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
        try:
            value = json.loads(body)
        except ValueError:
            return Extraction(None, method="strict")
        if not isinstance(value, dict):
            return Extraction(None, method="strict")
        return Extraction(json.dumps(value, sort_keys=True, ensure_ascii=False), (0, len(text)), "strict")
    return Extraction(candidate or None, span if candidate else None, "strict")


_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}


def _number_from_words(text: str) -> int | None:
    """'ten' -> 10, 'twenty-one' -> 21, 'one hundred and five' -> 105, 'minus three' -> -3; else None."""
    words = re.sub(r"[-,]", " ", text.strip().lower()).split()
    sign = 1
    if words and words[0] in ("minus", "negative"):
        sign, words = -1, words[1:]
    if not words:
        return None
    total = current = 0
    if not any(w in _UNITS or w in _TENS or w in _SCALES for w in words):
        return None
    for word in words:
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            total += (current or 1) * _SCALES[word]
            current = 0
        elif word not in ("and", "a"):
            return None
    return sign * (total + current)


def number_value(text: str | None) -> Decimal | None:
    """The number an answer names, written in digits ('10', '10.0', '$1,000', '12.') or words ('ten'); else None."""
    if text is None:
        return None
    raw = str(text).strip().rstrip(".").strip()
    if re.fullmatch(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+", raw):
        try:
            return Decimal(raw.replace(",", "").replace("$", ""))
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimal numbers
            return None
    value = _number_from_words(raw)
    return Decimal(value) if value is not None else None


def answer_key(template: Template, answer: str | None) -> str | None:
    """The form in which two answers are the same answer under the template's answer type: numbers as numbers
    ('10' == '10.0' == 'ten'), labels without case or punctuation, JSON by value, text without case or surrounding
    space. Votes group answers by this key; None (no answer) has no key."""
    if answer is None:
        return None
    kind = template.answer.type
    if kind == "number":
        value = number_value(answer)
        return format(value.normalize(), "f") if value is not None else str(answer).strip().casefold()
    if kind == "json":
        try:
            return json.dumps(json.loads(answer), sort_keys=True, ensure_ascii=False)
        except ValueError:
            return str(answer).strip()
    if kind == "choice":
        return normalize_label(str(answer))
    return str(answer).strip().casefold()


def gold_answers(gold: str | list[str] | None) -> list[str]:
    """Every acceptable gold answer: a list as given, one answer as a list of one, none as []."""
    if gold is None:
        return []
    return [str(g) for g in gold] if isinstance(gold, (list, tuple)) else [str(gold)]


def same_answer(template: Template, predicted: str | None, gold: str | list[str] | None) -> bool:
    """Whether an extracted answer equals the gold one (or any of several acceptable ones) under the template's
    answer type. None never matches."""
    key = answer_key(template, predicted)
    return key is not None and any(answer_key(template, g) == key for g in gold_answers(gold))


CORRECTNESS_METRICS = ("accuracy", "contains", "regex")


def is_correct(template: Template, metric: str, answer: str | None, gold: str | list[str] | None) -> bool:
    """The one rule for "is this answer right", used for single samples, strict and flexible answers, majority
    votes and ensembles: `accuracy` compares by answer type (same_answer); `contains` and `regex` look for any gold
    text or pattern in the extracted answer. An invalid extraction (None) is never right."""
    if answer is None:
        return False
    if metric == "accuracy":
        return same_answer(template, answer, gold)
    if metric == "contains":
        return any(metrics.contains(answer, g) for g in gold_answers(gold))
    if metric == "regex":
        return any(metrics.matches_regex(answer, g) for g in gold_answers(gold))
    raise ValueError(f"metric {metric!r} scores items, it has no right or wrong (use one of "
                     f"{', '.join(CORRECTNESS_METRICS)})")
