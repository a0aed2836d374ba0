"""One evaluation run's report as plain data: a row per condition, the condition labels and the paired tests of
the first condition against each other one (in a run with prompt variants: of the baseline variant's, then of each
variant against the baseline in the same setting, with the variants ranked). The Evaluate and History views and
`eval` show these same rows."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from prompt_lab.reporting.report import condition_label, paired_test, run_report
from prompt_lab.runlog import Database
from prompt_lab.runlog.store import connect


@dataclass
class ConditionRow:
    """One condition's headline numbers (rates 0-1; None where the metric has no such number)."""
    condition: str  # the condition's label, e.g. "few_shot k=3 · default"
    kind: str  # "accuracy" (accuracy, contains, regex) or "score" (bleu, rouge)
    value: float  # accuracy, or the mean item score
    ci_low: float
    ci_high: float
    strict: float | None = None
    chance: float | None = None
    majority: float | None = None
    majority_label: str | None = None  # the most common gold answer (what always answering it scores: majority)
    beats_majority: bool | None = None  # the CI's low end above the majority-class rate (None: no baseline)
    baseline_note: str = ""  # in words, when the condition does not beat the majority class
    no_answer: int | None = None
    wrong: int | None = None
    tokens: float = 0.0  # mean completion tokens per answer
    latency_s: float = 0.0  # mean seconds per answer
    samples: int = 1  # answers per item (more than one: the majority vote is the item's answer)
    self_consistency: list[dict] | None = None  # accuracy of a vote of k samples, for each k
    agreement: float | None = None  # mean agreement of the samples with the vote
    corpus: dict | None = None  # corpus BLEU / ROUGE


@dataclass
class PairedResult:
    """An exact McNemar test between two conditions on the items both have."""
    a: str
    b: str
    verdict: str
    n: int
    both: int
    only_a: int
    only_b: int
    neither: int
    p_value: float
    accuracy_a: float
    accuracy_b: float
    ci_a: list[float] = field(default_factory=list)  # 95% CI of each side's accuracy on the paired items
    ci_b: list[float] = field(default_factory=list)
    difference: float = 0.0  # accuracy_a - accuracy_b
    difference_ci: list[float] = field(default_factory=list)  # paired bootstrap 95% CI of the difference

    @classmethod
    def from_test(cls, test: dict) -> "PairedResult":
        return cls(**{f: test[f] for f in cls.__dataclass_fields__ if f in test})


@dataclass
class VariantRank:
    """One prompt variant in one setting (strategy, k, model, seed): its place among the variants of that setting
    (1: the most accurate; ties share a place), its figure with the 95% CI, and its paired test against the baseline
    variant of the same setting on the same items (None for the baseline itself, or a score metric)."""
    setting: str  # the condition's label without the variant, e.g. "few_shot k=3 · default"
    rank: int
    variant: str
    condition: str  # the condition's label, e.g. "[terse] few_shot k=3 · default"
    value: float  # accuracy, or the mean item score
    ci_low: float
    ci_high: float
    baseline: bool  # this is the baseline variant
    test: PairedResult | None = None  # this variant (a) against the baseline (b)


@dataclass
class EvalReport:
    run_id: int
    status: str
    template: str
    dataset: str | None
    items: int | None
    metric: str
    rows: list[ConditionRow]
    labels: list[str]
    paired: list[PairedResult]  # the first condition against each other one (accuracy metrics)
    conditions: list[dict] = field(repr=False)  # everything run_report computed, for the charts
    template_hash: str = ""  # the template version the run used
    method: str = "generate"  # generate (then extract) or label_probs
    dataset_hash: str | None = None
    warnings: list[str] = field(default_factory=list)  # said when the run started (items repeating examples)
    example_selection: str = "random"  # how few-shot chose its examples (runs from before the choice: random)
    variants: list[VariantRank] = field(default_factory=list)  # ranked per setting; empty in a run without variants
    baseline: str | None = None  # the variant the others are tested against (None: a run without variants)
    wall_s: float | None = None  # how long the run ran, resumes included, pauses not (None while it runs)
    scored: int = 0  # (condition, item) pairs scored
    items_per_s: float | None = None  # scored / wall_s
    format: str | None = None  # the prompt format used: raw or chat ("model: format; ..." when models differ)

    def speed(self) -> str:
        """'312 items in 12.4 s, 25.2 items/s' (items = condition x item pairs), or '' while the run runs."""
        if not self.wall_s:
            return ""
        return f"{self.scored} items in {self.wall_s:.1f} s, {self.items_per_s:.1f} items/s"

    def condition(self, label: str) -> dict | None:
        return next((c for c in self.conditions if c["label"] == label), None)

    def to_dict(self) -> dict:
        """JSON-able: the rows, labels and paired tests, and each condition's full numbers."""
        return asdict(self)


def majority_verdict(accuracy: float, low: float, high: float, majority: float | None,
                     label: str | None) -> tuple[bool | None, str]:
    """Whether a condition beats always answering the most common gold answer: only when its whole 95% CI lies
    above that rate. Otherwise a sentence saying so (empty when it beats it, or there is no baseline)."""
    if majority is None:
        return None, ""
    if low > majority:
        return True, ""
    always = f"always answering '{label}'" if label is not None else "always giving the most common answer"
    if high < majority:
        return False, f"worse than {always} ({majority:.0%}): {accuracy:.0%}, 95% CI {low:.0%}-{high:.0%}"
    return False, (f"does not beat {always} ({majority:.0%}): {accuracy:.0%}, and its 95% CI "
                   f"{low:.0%}-{high:.0%} includes {majority:.0%}")


def condition_rows(report: dict) -> list[ConditionRow]:
    """The rows of a run_report(): the one place a report becomes a table."""
    rows = []
    for c in report["conditions"]:
        common = dict(condition=c["label"], tokens=c["completion_tokens"], latency_s=c["latency_ms"] / 1000,
                      samples=c["samples"])
        if "accuracy" in c:
            low, high = c["accuracy_ci"]
            consistency = c.get("self_consistency")
            agreement = consistency["agreement"] if consistency else None
            beats, note = majority_verdict(c["accuracy"], low, high, c.get("majority"), c.get("majority_label"))
            rows.append(ConditionRow(kind="accuracy", value=c["accuracy"], ci_low=low, ci_high=high,
                                     strict=c["strict_accuracy"], chance=c.get("chance"), majority=c.get("majority"),
                                     majority_label=c.get("majority_label"), beats_majority=beats, baseline_note=note,
                                     no_answer=c["no_answer"], wrong=c["wrong_answers"],
                                     self_consistency=consistency["curve"] if consistency else None,
                                     agreement=sum(agreement) / len(agreement) if agreement else None, **common))
        else:
            low, high = c["score_ci"]
            rows.append(ConditionRow(kind="score", value=c["score"], ci_low=low, ci_high=high,
                                     corpus=dict(c["corpus"]), **common))
    return rows


def _figure(c: dict) -> tuple[float, float, float]:
    value, (low, high) = (c["accuracy"], c["accuracy_ci"]) if "accuracy" in c else (c["score"], c["score_ci"])
    return value, low, high


def variant_ranks(report: dict) -> list[VariantRank]:
    """In a run with prompt variants, for each setting (strategy, k, model, seed): its variants ranked by accuracy
    (or score) with 95% CIs, each with the exact McNemar test against the baseline variant of that setting on the
    items both answered, matched by content. Empty for a run without variants."""
    if not report.get("variants"):
        return []
    baseline = report.get("baseline")
    settings: dict[tuple, list[dict]] = {}
    for c in report["conditions"]:
        settings.setdefault((c["strategy"], c["model"], c["k"], c["seed"]), []).append(c)
    show_seed = len({key[3] for key in settings}) > 1
    out = []
    for key, conditions in settings.items():
        base = next((c for c in conditions if c["variant"] == baseline), None)
        for c in sorted(conditions, key=lambda c: -_figure(c)[0]):
            value, low, high = _figure(c)
            test = None
            if base is not None and c is not base and "accuracy" in c and "accuracy" in base:
                test = PairedResult.from_test(paired_test(c, base))
            out.append(VariantRank(setting=condition_label(*key, show_seed=show_seed), variant=c["variant"],
                                   rank=1 + sum(_figure(o)[0] > value for o in conditions), condition=c["label"],
                                   value=value, ci_low=low, ci_high=high, baseline=c is base, test=test))
    return out


def baseline_tests(report: dict, ranks: list[VariantRank] = ()) -> list[PairedResult]:
    """The first condition against each later one, where both have right/wrong per item. In a run with prompt
    variants, the first condition of the baseline variant against its other ones (strategies, k), then each variant
    against the baseline in the same setting (the tests of `ranks`)."""
    conditions = [c for c in report["conditions"] if "accuracy" in c]
    if len(conditions) != len(report["conditions"]) or not conditions:
        return []
    if report.get("variants"):
        conditions = [c for c in conditions if c["variant"] == report.get("baseline")]
    tests = [PairedResult.from_test(paired_test(conditions[0], other)) for other in conditions[1:]]
    return tests + [r.test for r in ranks if r.test is not None]


def build_report(report: dict) -> EvalReport:
    ranks = variant_ranks(report)
    return EvalReport(run_id=report["run_id"], status=report["status"], template=report["template"],
                      dataset=report["dataset"], items=report["items"], metric=report["metric"],
                      rows=condition_rows(report), labels=[c["label"] for c in report["conditions"]],
                      paired=baseline_tests(report, ranks), conditions=report["conditions"],
                      template_hash=report.get("template_hash") or "", method=report.get("method") or "generate",
                      dataset_hash=report.get("dataset_hash"), warnings=list(report.get("warnings") or []),
                      example_selection=report.get("example_selection") or "random", variants=ranks,
                      baseline=report.get("baseline"), wall_s=report.get("wall_s"),
                      scored=report.get("scored") or 0, items_per_s=report.get("items_per_s"),
                      format=report.get("format"))


def eval_report(run_id: int, db: Database | None = None, db_path: str | Path | None = None) -> EvalReport:
    """The report of one evaluation run (on `db`, else on a connection opened and closed here)."""
    if db is not None:
        return build_report(run_report(db, int(run_id)))
    with connect(db_path) as own:
        return build_report(run_report(own, int(run_id)))
