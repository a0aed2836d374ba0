"""Experiment specs: what an evaluation runs (template, dataset, columns, strategies, models, decoding, sweeps).

Loaded from experiments/*.yaml (paths inside resolve relative to the file) or built by the UI. Every field is
declared once with its type, default, help and allowed values; validate() checks each of them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from prompt_lab.errors import PromptLabError
from prompt_lab.models.base import SEED_MAX
from prompt_lab.prompts.selection import SELECTIONS
from prompt_lab.prompts.strategies import STRATEGIES
from prompt_lab.prompts.templates import FORMATS, get_template
from prompt_lab.prompts.variants import ORIGINAL, build_variants, check_variants
from prompt_lab.specs import check_fields, failer, spec_field
from prompt_lab.yamlfiles import load_spec_lines

METHODS = ("generate", "label_probs")
METRICS = ("accuracy", "bleu", "rouge", "contains", "regex")  # contains/regex: the target column holds the text/pattern
MAX_BATCH_SIZE = 64


class ExperimentError(PromptLabError):
    """An experiment file or spec that cannot be used; the message names the file, the line and the field."""


@dataclass
class EvalSpec:
    template: str = spec_field(help="Template name, or a .yaml path (relative to the experiment file).")
    dataset: str = spec_field(help="A .csv, .jsonl, .json, .parquet or .arrow file, or a folder written by "
                                   "datasets' save_to_disk (relative to the experiment file).")
    name: str = spec_field("evaluation", help="Run name; an experiment file's default is its file name.")
    columns: dict | None = spec_field(None, help="{variables: {var: column}, target: column, choices: column, "
                                                 "aliases: column (more acceptable answers)}; empty: guessed from the "
                                                 "column names.")
    split: str | None = spec_field(None, help="The split to read when the dataset is a folder written by "
                                              "DatasetDict.save_to_disk (train, test, ...); empty otherwise.")
    strategies: list[str] = spec_field(default_factory=lambda: ["zero_shot"], choices=STRATEGIES,
                                       help="Prompting strategies to compare.")
    models: list[str] = spec_field(default_factory=lambda: ["default"], help="Model specs to run, e.g. [default].")
    method: str = spec_field("generate", choices=METHODS,
                             help="generate an answer, or label_probs: score each answer choice instead.")
    temperature: float = spec_field(0.0, min=0, max=2, help="Sampling temperature; 0 is greedy decoding.")
    top_p: float = spec_field(1.0, above=0, max=1, help="Nucleus sampling: keep the top tokens up to this mass.")
    max_new_tokens: int = spec_field(48, min=1, help="Most tokens generated per answer (the server caps it).")
    samples: int = spec_field(1, min=1, max=32, help="Samples per item; > 1 with temperature > 0 is "
                                                     "self-consistency (majority vote).")
    seeds: list[int] = spec_field(default_factory=lambda: [0], min=0, max=SEED_MAX,
                                  help="Seeds, each from 0 to 2**32-1; each one is a condition.")
    k_shot: list[int] = spec_field(default_factory=lambda: [3], min=1,
                                   help="Examples in the few-shot strategies; a list sweeps k.")
    example_selection: str = spec_field("random", choices=SELECTIONS,
                                        help="Which examples few-shot shows: random (seeded), fixed (the first k) or "
                                             "similar (the k closest to the item by BM25); never the item itself.")
    format: str | None = spec_field(None, choices=FORMATS,
                                    help="Prompt format: chat (the model's chat template) or raw (plain text: the "
                                         "template's separator between blocks, its answer_label before each answer, "
                                         "as lm-eval's default prompts); empty: the template's own.")
    limit: int | None = spec_field(None, min=0, help="Run the first N items only; empty or 0: all of them.")
    batch_size: int = spec_field(8, min=1, max=MAX_BATCH_SIZE,
                                 help="Items per generate call (capped by the server's PROMPT_LAB_MAX_BATCH).")
    metric: str | None = spec_field(None, choices=METRICS,
                                    help="Score: accuracy, bleu, rouge, contains or regex; empty: from the "
                                         "template's answer type.")
    variants: list[dict] | None = spec_field(None, help="Prompt variants, each a condition axis: a list of {name: "
                                                        "short_name, and any of instruction, output_format, input, "
                                                        "examples, cot_trigger, answer_prefix (replacing the "
                                                        "template's), or template: another template's name}; the "
                                                        "template itself is the variant 'original'.")
    baseline: str | None = spec_field(None, help="The variant every other is tested against (paired, same strategy, "
                                                 "model, k and seed); empty: original.")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def spec_hash(self) -> str:
        # fields added later leave the hash of a spec that does not use them as it was
        unused = {"variants": None, "baseline": None, "example_selection": "random", "format": None}
        data = {k: v for k, v in self.to_dict().items() if not (k in unused and v == unused[k])}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def conditions(self) -> list[tuple[str, str, int, int]]:
        """(strategy, model, k, seed) combinations; k is 0 for strategies without examples."""
        out = []
        for model in self.models:
            for strategy in self.strategies:
                for k in (self.k_shot if strategy in ("few_shot", "few_shot_cot") else [0]):
                    for seed in self.seeds:
                        out.append((strategy, model, int(k), int(seed)))
        return out

    def variant_names(self) -> list[str]:
        """'original' (the template itself), then each variant's name, in the order given."""
        return [ORIGINAL] + [v["name"] for v in self.variants or []]

    def crossed(self) -> list[tuple[str, str, str, int, int]]:
        """(variant, strategy, model, k, seed): every variant crossed with every condition, model by model."""
        conditions = self.conditions()
        return [(variant, *c) for model in dict.fromkeys(self.models) for variant in self.variant_names()
                for c in conditions if c[1] == model]

    def validate(self, source: str = "experiment", lines: dict[str, int] | None = None) -> "EvalSpec":
        """Check every field; the error names the source, the field's line (when known) and the field."""
        fail = failer(source, lines, ExperimentError)
        if not self.template:
            fail("template", "is required (a template name or .yaml path)")
        if not self.dataset:
            fail("dataset", "is required (a .csv, .jsonl, .json, .parquet or .arrow file, or a saved dataset folder)")
        if self.strategies == []:
            fail("strategies", f"'' is not one of: {', '.join(STRATEGIES)}")
        if self.models == []:
            fail("models", "list at least one model spec, e.g. [default]")
        check_fields(self, fail)
        if self.columns:
            _check_columns(self.columns, fail)
        if not all(self.models):
            fail("models", "a model spec is empty; list model specs, e.g. [default]")
        if self.samples > 1 and self.temperature <= 0:
            fail("samples", "several samples need temperature > 0 (greedy samples are all the same)")
        names = check_variants(self.variants, source=source, lines=lines, error=ExperimentError)
        if self.baseline is not None and self.baseline not in [ORIGINAL] + names:
            fail("baseline", f"'{self.baseline}' is not a variant; use one of: {', '.join([ORIGINAL] + names)}")
        return self


COLUMN_ROLES = ("variables", "target", "choices", "aliases")


def _check_columns(columns: dict, fail) -> None:
    unknown = [key for key in columns if key not in COLUMN_ROLES]
    if unknown:
        fail("columns", f"unknown key '{unknown[0]}'; allowed: {', '.join(COLUMN_ROLES)}")
    variables = columns.get("variables")
    if variables is not None and not (isinstance(variables, dict) and all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in variables.items())):
        fail("columns", f"variables must map each template variable to a column name, e.g. {{review: text}}, "
                        f"got {variables!r}")
    for key in COLUMN_ROLES[1:]:
        if columns.get(key) is not None and not (isinstance(columns[key], str) and columns[key]):
            fail("columns", f"{key} must be a column name, got {columns[key]!r}")


def load_spec(path: str | Path) -> EvalSpec:
    """Read an experiment YAML; relative template and dataset paths resolve against the file's folder."""
    path = Path(path)
    data, lines = load_spec_lines(path, "experiment file", EvalSpec.__dataclass_fields__, ExperimentError)
    for key in ("template", "dataset"):  # missing: validate() says it is required, like an empty value
        data.setdefault(key, "")
    for key in ("strategies", "models", "seeds", "k_shot"):
        if key in data and not isinstance(data[key], list):
            data[key] = [data[key]]
    try:
        spec = EvalSpec(**data)
    except TypeError as exc:
        raise ExperimentError(f"{path}: {exc}") from None
    spec.validate(str(path), lines)  # before the paths are joined: a wrong type is reported, not a crash
    base = path.resolve().parent
    dataset = Path(spec.dataset)
    if not dataset.is_absolute():
        spec.dataset = str((base / dataset).resolve())
    template = Path(spec.template)
    if spec.template.endswith((".yaml", ".yml")) and not template.is_absolute():
        spec.template = str((base / template).resolve())
    if spec.name == "evaluation":
        spec.name = path.stem
    if spec.variants:  # built now, so a variant that breaks the template is named with its line in this file
        build_variants(get_template(spec.template), spec.variants, source=str(path), lines=lines,
                       error=ExperimentError)
    return spec
