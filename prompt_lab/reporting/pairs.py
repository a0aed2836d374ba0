"""Two evaluation runs side by side: which items and conditions pair up, and a paired test for each pair.

Items pair by content (the hash of their inputs and gold answers), never by position: two runs over different
datasets share no items and are refused, as is a pair with too few shared items for a test to mean anything.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from prompt_lab.errors import PromptLabError
from prompt_lab.prompts.variants import ORIGINAL
from prompt_lab.reporting.report import paired_test
from prompt_lab.reporting.summary import EvalReport, PairedResult, eval_report
from prompt_lab.runlog.store import connect

MIN_PAIRED = 10  # fewer shared items than this and an exact McNemar test cannot say anything useful


class UnpairableError(PromptLabError):
    """Two runs (or conditions) that cannot be compared item by item; the message says why in plain words."""


@dataclass
class Side:
    """One side of a pair, named fully: which run, template version, strategy, k, model and scoring method."""
    run_id: int
    label: str  # the condition's label within its run
    template: str
    template_version: str  # the first 8 characters of the template's content hash
    strategy: str
    k: int
    model: str
    method: str  # generate or label_probs
    metric: str
    dataset: str | None
    variant: str | None = None  # the prompt variant, in a run with variants

    def describe(self) -> str:
        k = f" k={self.k}" if self.k else ""
        variant = f" variant {self.variant}" if self.variant else ""
        return (f"run {self.run_id} ({self.template}@{self.template_version}{variant}, {self.strategy}{k}, "
                f"{self.model}, {self.method}, {self.metric})")


@dataclass
class ConditionPair:
    a: Side
    b: Side
    paired: int  # items of these two conditions with the same content
    test: PairedResult | None  # None where a side has no right/wrong per item (bleu, rouge) or too few items pair
    note: str = ""  # why there is no test

    @property
    def verdict(self) -> str:
        return self.test.verdict if self.test is not None else self.note


@dataclass
class RunPairs:
    run_a: int
    run_b: int
    report_a: EvalReport
    report_b: EvalReport
    paired: int  # items (by content) the two runs share
    pairs: list[ConditionPair]

    def verdict_lines(self) -> list[str]:
        return [f"- {p.verdict}" for p in self.pairs]

    def to_dict(self) -> dict:
        return asdict(self)


def _side(report: EvalReport, condition: dict) -> Side:
    return Side(run_id=report.run_id, label=condition["label"], template=report.template,
                template_version=(condition.get("template_hash") or report.template_hash or "")[:8],
                strategy=condition["strategy"], k=condition["k"], model=condition["model"], method=report.method,
                metric=report.metric, dataset=report.dataset, variant=condition.get("variant"))


def _keys(report: EvalReport) -> set[str]:
    return {k for c in report.conditions for k in c.get("item_key", [])}


def pair_conditions(a: EvalReport, b: EvalReport, condition: str | None = None) -> list[tuple[dict, dict]]:
    """The conditions of two runs that answer the same question: same prompt variant (a run without variants is
    its `original`), strategy, k and seed (the model may differ: base against tuned, say). With none in common, the
    first condition of each. With `condition`, only the condition of that label (in run A, matched in run B by label,
    else by variant, strategy, k and seed, else run B's only condition). The one place runs' conditions are paired."""
    key = lambda c: (c.get("variant") or ORIGINAL, c["strategy"], c["k"], c["seed"])  # noqa: E731
    if condition is not None:
        chosen = next((c for c in a.conditions if c["label"] == condition), None)
        if chosen is None:
            raise UnpairableError(f"run {a.run_id} has no condition '{condition}' (its conditions: "
                                  f"{', '.join(c['label'] for c in a.conditions)})")
        match = next((c for c in b.conditions if c["label"] == condition), None) or next(
            (c for c in b.conditions if key(c) == key(chosen)), None)
        if match is None and len(b.conditions) == 1:
            match = b.conditions[0]
        if match is None:
            raise UnpairableError(f"run {b.run_id} has no condition matching '{condition}' (its conditions: "
                                  f"{', '.join(c['label'] for c in b.conditions)})")
        return [(chosen, match)]
    by_key = {key(c): c for c in b.conditions}
    pairs = [(c, by_key[key(c)]) for c in a.conditions if key(c) in by_key]
    if not pairs and a.conditions and b.conditions:
        pairs = [(a.conditions[0], b.conditions[0])]
    return pairs


def _shared_items(a: EvalReport, b: EvalReport) -> int:
    """How many items (by content) two runs share; raises UnpairableError, in words, when they cannot be paired:
    fewer than MIN_PAIRED shared items, or each run has items the other lacks (two datasets)."""
    keys_a, keys_b = _keys(a), _keys(b)
    shared, only_a, only_b = len(keys_a & keys_b), len(keys_a - keys_b), len(keys_b - keys_a)
    where = (f"run {a.run_id} has {only_a} item(s) run {b.run_id} lacks and run {b.run_id} has {only_b} "
             f"run {a.run_id} lacks")
    datasets = f"{a.dataset or '?'} and {b.dataset or '?'}"
    if shared < MIN_PAIRED:
        raise UnpairableError(f"runs {a.run_id} and {b.run_id} cannot be paired: only {shared} item(s) have the same "
                              f"inputs and gold answer in both (datasets {datasets}; {where}), and a paired test "
                              f"needs at least {MIN_PAIRED}")
    if only_a and only_b:
        raise UnpairableError(f"runs {a.run_id} and {b.run_id} evaluated different datasets ({datasets}): {shared} "
                              f"items are the same but {where}; evaluate both on the same file to compare them")
    return shared


def compare_runs(run_a: int, run_b: int, db_path: str | Path | None = None, *,
                 condition: str | None = None) -> RunPairs:
    """Two evaluation runs' reports and a paired test for each pair of conditions they share, on the items with
    the same content in both. Raises UnpairableError when their datasets differ or fewer than MIN_PAIRED items
    pair."""
    if not run_a or not run_b:
        raise PromptLabError("enter two evaluation run ids")
    with connect(db_path) as db:
        a, b = eval_report(int(run_a), db), eval_report(int(run_b), db)
    shared = _shared_items(a, b)
    pairs = [_pair(a, b, x, y) for x, y in pair_conditions(a, b, condition)]
    return RunPairs(int(run_a), int(run_b), a, b, shared, pairs)


def _pair(a: EvalReport, b: EvalReport, x: dict, y: dict) -> ConditionPair:
    side_a, side_b = _side(a, x), _side(b, y)
    n = len(set(x["item_key"]) & set(y["item_key"]))
    names = f"{side_a.describe()} vs {side_b.describe()}"
    if "accuracy" not in x or "accuracy" not in y:
        return ConditionPair(side_a, side_b, n, None,
                             f"{names}: no paired test, these scores (BLEU/ROUGE) have no right or wrong per item")
    if n < MIN_PAIRED and a.run_id != b.run_id:
        return ConditionPair(side_a, side_b, n, None, f"{names}: only {n} item(s) answered in both, a paired "
                                                      f"test needs at least {MIN_PAIRED}")
    return ConditionPair(side_a, side_b, n, PairedResult.from_test(paired_test(x, y, side_a.describe(),
                                                                               side_b.describe())))


def pair_labels(a: EvalReport, label_a: str, b: EvalReport, label_b: str) -> ConditionPair:
    """The paired test between one condition of run A and one of run B (or of the same run), by label; two
    different runs must pass the same checks as compare_runs (same items by content, enough of them)."""
    x, y = a.condition(label_a), b.condition(label_b)
    if x is None or y is None:
        raise UnpairableError(f"pick a condition of each run: run {a.run_id} has {', '.join(a.labels)}; "
                              f"run {b.run_id} has {', '.join(b.labels)}")
    if a.run_id != b.run_id:
        _shared_items(a, b)
    pair = _pair(a, b, x, y)
    if pair.test is None:
        raise UnpairableError(pair.note)
    return pair
