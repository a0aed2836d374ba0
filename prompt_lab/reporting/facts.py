"""What a shareable report says, as plain data (the Report and its parts), and the pieces export.gather() builds it
from: one run's facts (what was run and how to run it again), a bounded sample of its items (wrong ones first, never
every row, so a run of 20,000 items makes a small file), short names for its conditions and the paired-test
verdicts in plain words. The numbers come from the reporting functions the app and the CLI use."""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field, replace

import yaml

from prompt_lab.evaluation.stats import verdict
from prompt_lab.models.naming import short_model
from prompt_lab.reporting.pairs import RunPairs, Side
from prompt_lab.reporting.summary import EvalReport, PairedResult
from prompt_lab.runlog.queries import sample_generations
from prompt_lab.runlog.store import run_template

SAMPLE_PER_CONDITION = 30  # items shown per condition (wrong ones first)


@dataclass
class ModelFacts:
    spec: str  # as the run named it
    name: str  # short, for people (models.naming.short_model)
    revision: str  # weights fingerprint, or served model @ endpoint


@dataclass
class RunFacts:
    """What was run: enough to read it and to run it again."""
    run_id: int
    kind: str  # compare | eval
    status: str
    created_utc: str
    duration_s: float | None
    error: str
    template: str
    template_hash: str
    template_text: str  # the exact template version the run used (YAML from template_versions)
    strategies: list[str]
    models: list[ModelFacts]
    decoding: dict[str, str]  # setting -> value, as a person reads it
    variables: dict = field(default_factory=dict)  # a compare's inputs
    dataset: str | None = None
    dataset_items: int | None = None
    dataset_hash: str | None = None
    method: str | None = None
    metric: str | None = None
    command: str = ""  # as logged
    repeat: str = ""  # the CLI line that runs it again
    spec_file: str = ""  # YAML the repeat line reads (an experiment or tune file); "" when it reads none
    spec_file_name: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class SampleItem:
    """One answer shown in a report's sample."""
    run_id: int
    condition: str  # the condition's label in its run
    strategy: str
    model: str
    item: int | None  # 1-based item number in the dataset (None in a compare)
    inputs: dict
    prompt: str
    output: str
    answer: str | None
    gold: str | None
    correct: bool | None  # None: no gold (a compare) or a score metric
    score: float | None
    tokens: int | None
    latency_ms: float | None


@dataclass
class Verdict:
    """A paired test in plain words: the verdict (evaluation.stats.verdict) and the figures it rests on."""
    text: str
    detail: str = ""
    p_value: float | None = None  # None: no test (the detail says why)

    @property
    def clear(self) -> bool:
        """A difference unlikely to be chance (p < 0.05), as the verdict says."""
        return self.p_value is not None and self.p_value < 0.05

    def __str__(self) -> str:
        return f"{self.text} {self.detail}".strip()


@dataclass
class TuneFacts:
    job_id: int
    name: str
    status: str
    spec: dict  # the TuneSpec the job ran
    metrics: dict  # train/eval loss, steps, seconds
    adapter_path: str | None
    losses: list[dict]  # job_events rows: step, loss, val_loss, learning_rate


@dataclass
class Report:
    kind: str  # compare | eval | pair | tune
    title: str
    run_ids: list[int]
    runs: list[RunFacts]
    evals: list[EvalReport]  # eval and tune: one; pair: two; compare: none
    pairs: RunPairs | None
    verdicts: list[Verdict]  # paired-test verdicts in plain words
    notes: list[str]  # baseline verdicts and warnings
    samples: list[SampleItem]
    sample_note: str
    names: dict[int, dict[str, str]]  # run id -> condition label -> a short name for people (model shortened)
    tune: TuneFacts | None = None
    report_command: str = ""  # the CLI line that writes this report again
    generated_utc: str = ""


# ------------------------------------------------------------------ what was run


def spec_yaml(data: dict) -> str:
    return yaml.safe_dump({k: v for k, v in data.items() if v is not None}, sort_keys=False, allow_unicode=True,
                          width=100)


def run_facts(db, run: dict, revisions: dict[str, str]) -> RunFacts:
    params, options = run.get("params") or {}, run.get("options") or {}
    models = [ModelFacts(m, short_model(m), revisions.get(m, "")) for m in run.get("models") or []]
    template = run_template(db, run)
    shown_format = {"prompt format": options.get("format") or template.format}  # as asked (generations log the used)
    facts = RunFacts(run_id=run["id"], kind=run["kind"], status=run["status"], created_utc=run["created_utc"] or "",
                     duration_s=None if run["duration_ms"] is None else round(run["duration_ms"] / 1000, 1),
                     error=run["error"] or "", template=run["template_name"] or "",
                     template_hash=run["template_hash"] or "", template_text=template.to_yaml(),
                     strategies=list(run.get("strategies") or []), models=models, decoding={},
                     command=run["command"] or "", warnings=list(options.get("warnings") or []))
    if run["kind"] == "compare":
        facts.variables = dict(run.get("variables") or {})
        facts.decoding = {"temperature": f"{params.get('temperature', 0):g}", "top_p": f"{params.get('top_p', 1):g}",
                          "max_new_tokens": str(params.get("max_new_tokens")), "seed": str(params.get("seed")),
                          "samples per strategy": str(params.get("n", 1)), "few-shot k": str(options.get("k", 3))}
        if any(s in ("few_shot", "few_shot_cot") for s in facts.strategies):
            facts.decoding["few-shot examples"] = options.get("example_selection", "random")
        if params.get("stop"):
            facts.decoding["stop"] = ", ".join(map(repr, params["stop"]))
        facts.decoding.update(shown_format)
        facts.repeat = facts.command
        return facts
    facts.dataset, facts.dataset_items = options.get("dataset"), options.get("items")
    facts.dataset_hash, facts.metric = options.get("dataset_hash"), options.get("metric", "accuracy")
    facts.method = params.get("method", "generate")
    facts.decoding = {"method": facts.method}
    if facts.method == "generate":
        facts.decoding.update({"temperature": f"{params.get('temperature', 0):g}",
                               "top_p": f"{params.get('top_p', 1):g}",
                               "max_new_tokens": str(params.get("max_new_tokens")),
                               "samples per item": str(params.get("samples", 1))})
    facts.decoding["seeds"] = ", ".join(map(str, params.get("seeds") or [0]))
    facts.decoding.update(shown_format)
    if any(s in ("few_shot", "few_shot_cot") for s in facts.strategies):
        facts.decoding["few-shot k"] = ", ".join(map(str, params.get("k_shot") or []))
        facts.decoding["few-shot examples"] = params.get("example_selection", "random")
    if params.get("limit"):
        facts.decoding["limit"] = f"first {params['limit']} items"
    facts.spec_file, facts.spec_file_name = spec_yaml(params), "experiment.yaml"
    repeats = facts.command.startswith("python -m prompt_lab ")  # CLI runs log their own line; app runs log none
    facts.repeat = facts.command if repeats else f"python -m prompt_lab eval {facts.spec_file_name}"
    return facts


def report_command(ids: list[int]) -> str:
    return f"python -m prompt_lab report {' '.join(map(str, ids))} -o report.html"


# ------------------------------------------------------------------ samples and names


def condition_name(condition: dict, show_seed: bool = False) -> str:
    """A condition as people read it: [prompt variant], strategy, k, the model's short name (and the seed when several
    ran)."""
    variant = f"[{condition['variant']}] " if condition.get("variant") else ""
    k = f" k={condition['k']}" if condition.get("k") else ""
    seed = f" · seed {condition['seed']}" if show_seed else ""
    return f"{variant}{condition['strategy']}{k} · {short_model(condition['model'])}{seed}"


def condition_names(report: EvalReport, prefix: str = "") -> dict[str, str]:
    seeds = len({c["seed"] for c in report.conditions}) > 1
    return {c["label"]: prefix + condition_name(c, seeds) for c in report.conditions}


def _gold(row: dict) -> str | None:
    if row.get("targets_json"):
        return " / ".join(map(str, json.loads(row["targets_json"])))
    return row.get("target")


def sample_item(run_id: int, row: dict, label: str) -> SampleItem:
    correct = row.get("correct")
    return SampleItem(run_id=run_id, condition=label, strategy=row["strategy"], model=row["model_spec"],
                      item=None if row.get("item_index") is None else row["item_index"] + 1,
                      inputs=json.loads(row.get("variables_json") or "{}"), prompt=row.get("prompt") or "",
                      output=row.get("output") or "", answer=row.get("answer"), gold=_gold(row),
                      correct=None if correct is None else bool(correct), score=row.get("score"),
                      tokens=row.get("completion_tokens"), latency_ms=row.get("latency_ms"))


def eval_samples(db, report: EvalReport, per_condition: int) -> tuple[list[SampleItem], dict[str, str]]:
    """The sample of a run's items, and each model's revision (every condition has sampled rows)."""
    labels = {(c.get("template_hash"), c["strategy"], c["model"], c["k"], c["seed"]): c["label"]
              for c in report.conditions}
    tracked = bool(report.variants)  # a run with prompt variants: a condition is also a template version
    rows = sample_generations(db, report.run_id, per_condition)
    revisions = {r["model_spec"]: r["model_revision"] or "" for r in rows}
    order = {label: i for i, label in enumerate(report.labels)}
    samples = [sample_item(report.run_id, r, labels.get((r["template_hash"] if tracked else None, r["strategy"],
                                                         r["model_spec"], r["k_shot"], r["seed"]), r["strategy"]))
               for r in rows]
    samples.sort(key=lambda s: order.get(s.condition, len(order)))  # stable: wrong ones stay first
    return samples, revisions


def sample_note(report_items: int, per_condition: int) -> str:
    return (f"At most {per_condition} items per condition, wrong answers (or the lowest scores) first, each item's "
            f"first sample; the run log holds all {report_items:,} items (History exports them as CSV).")


# ------------------------------------------------------------------ verdicts


def points(fraction: float) -> str:
    """A difference of rates in signed percentage points, one decimal; a difference that rounds to zero is +0.0,
    never -0.0."""
    return f"{round(100 * fraction, 1) + 0.0:+.1f}"


def verdict_sentence(test: PairedResult, name_a: str, name_b: str, better_first: bool = True) -> Verdict:
    """A paired test in plain words (evaluation.stats.verdict), with the difference (the better side first, unless
    better_first is False) and the items it rests on."""
    if better_first and test.difference < 0:
        test, name_a, name_b = flipped(test), name_b, name_a
    low, high = (test.difference_ci or [test.difference, test.difference])[:2]
    return Verdict(verdict(name_a, name_b, test.accuracy_a, test.accuracy_b, test.p_value),
                   f"{name_a} minus {name_b}: {points(test.difference)} points (95% CI {points(low)} to "
                   f"{points(high)}) on the same {test.n:,} items; {test.only_a} right only with {name_a}, "
                   f"{test.only_b} only with {name_b} (exact McNemar test).", test.p_value)


def baseline_notes(report: EvalReport, names: dict[str, str]) -> list[str]:
    """Which conditions beat always answering the majority class (in one line) and, one by one, which do not."""
    beat = [r for r in report.rows if r.beats_majority]
    notes = [f"{names.get(r.condition, r.condition)}: {r.baseline_note}" for r in report.rows if r.baseline_note]
    if len(beat) == 1:
        r = beat[0]
        notes.insert(0, f"{names.get(r.condition, r.condition)}: {r.value:.0%} (95% CI {r.ci_low:.0%}-{r.ci_high:.0%}) "
                        f"beats always answering '{r.majority_label}' ({r.majority:.0%}).")
    elif beat:
        rates = "-".join(sorted({f"{r.majority:.0%}" for r in beat}))
        who = (f"All {len(beat)} conditions" if len(beat) == len(report.rows) else
               f"{len(beat)} of {len(report.rows)} conditions ({', '.join(names.get(r.condition, r.condition) for r in beat)})")
        notes.insert(0, f"{who} beat always answering '{beat[0].majority_label}' ({rates}): each 95% CI lies above it.")
    return notes


def eval_verdicts(report: EvalReport, names: dict[str, str]) -> list[Verdict]:
    """The paired tests of a run, clear differences first."""
    verdicts = [verdict_sentence(t, names.get(t.a, t.a), names.get(t.b, t.b)) for t in report.paired]
    return sorted(verdicts, key=lambda v: not v.clear)


def flipped(test: PairedResult) -> PairedResult:
    """The same test read from B's side (tuned against base, say)."""
    low, high = (test.difference_ci or [test.difference, test.difference])[:2]
    return replace(test, a=test.b, b=test.a, only_a=test.only_b, only_b=test.only_a, accuracy_a=test.accuracy_b,
                   accuracy_b=test.accuracy_a, ci_a=test.ci_b, ci_b=test.ci_a, difference=-test.difference,
                   difference_ci=[-high, -low])


def side_name(side: Side, both_models_same: bool) -> str:
    k = f" k={side.k}" if side.k else ""
    return f"run {side.run_id} {side.strategy}{k}" + ("" if both_models_same else f" ({short_model(side.model)})")


def pair_command(report: Report) -> str:
    """The CLI line that repeats a pair report's paired tests."""
    return shlex.join(["python", "-m", "prompt_lab", "pair", *map(str, report.run_ids)])
