"""Two evaluation runs side by side: which conditions pair up, and a paired test for each pair."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from prompt_lab.errors import PromptLabError
from prompt_lab.reporting.report import paired_test
from prompt_lab.reporting.summary import EvalReport, PairedResult, eval_report
from prompt_lab.runlog.store import connect


@dataclass
class ConditionPair:
    a: str  # condition label in run A
    b: str  # condition label in run B
    test: PairedResult | None  # None where a side has no right/wrong per item (bleu, rouge)


@dataclass
class RunPairs:
    run_a: int
    run_b: int
    report_a: EvalReport
    report_b: EvalReport
    pairs: list[ConditionPair]

    def verdict_lines(self) -> list[str]:
        return [f"- run {self.run_a} {p.a} vs run {self.run_b} {p.b}: {p.test.verdict}"
                for p in self.pairs if p.test is not None]

    def to_dict(self) -> dict:
        return asdict(self)


def pair_conditions(a: EvalReport, b: EvalReport) -> list[tuple[dict, dict]]:
    """The conditions of two runs that answer the same question: same strategy, k and seed (the model may
    differ: base against tuned, say). With none in common, the first condition of each. The one place runs
    are paired."""
    key = lambda c: (c["strategy"], c["k"], c["seed"])  # noqa: E731
    by_key = {key(c): c for c in b.conditions}
    pairs = [(c, by_key[key(c)]) for c in a.conditions if key(c) in by_key]
    if not pairs and a.conditions and b.conditions:
        pairs = [(a.conditions[0], b.conditions[0])]
    return pairs


def compare_runs(run_a: int, run_b: int, db_path: str | Path | None = None) -> RunPairs:
    """Two evaluation runs' reports and a paired test for each pair of conditions they share."""
    if not run_a or not run_b:
        raise PromptLabError("enter two evaluation run ids")
    with connect(db_path) as db:
        a, b = eval_report(int(run_a), db), eval_report(int(run_b), db)
    pairs = [ConditionPair(x["label"], y["label"],
                           PairedResult.from_test(paired_test(x, y)) if "accuracy" in x and "accuracy" in y else None)
             for x, y in pair_conditions(a, b)]
    return RunPairs(int(run_a), int(run_b), a, b, pairs)
