"""Experiment specs: what an evaluation runs (template, dataset, columns, strategies, models, decoding, sweeps).

Loaded from experiments/*.yaml (paths inside resolve relative to the file) or built by the UI.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prompt_lab.errors import PromptLabError
from prompt_lab.prompts.strategies import STRATEGIES
from prompt_lab.yamlfiles import load_spec_file

METHODS = ("generate", "label_probs")
METRICS = ("accuracy", "bleu", "rouge", "contains", "regex")  # contains/regex: the target column holds the text/pattern


class ExperimentError(PromptLabError):
    """An experiment file or spec that cannot be used; the message names the file and field."""


@dataclass
class EvalSpec:
    template: str
    dataset: str
    name: str = "evaluation"
    columns: dict | None = None  # {variables: {var: column}, target: column, choices: column}
    strategies: list[str] = field(default_factory=lambda: ["zero_shot"])
    models: list[str] = field(default_factory=lambda: ["default"])
    method: str = "generate"  # or label_probs: score each answer choice instead of generating
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    samples: int = 1  # > 1 with temperature > 0: self-consistency
    seeds: list[int] = field(default_factory=lambda: [0])
    k_shot: list[int] = field(default_factory=lambda: [3])  # a list sweeps k for the few-shot strategies
    limit: int | None = None  # first N items only
    batch_size: int = 8
    metric: str | None = None  # default from the template's answer type

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def conditions(self) -> list[tuple[str, str, int, int]]:
        """(strategy, model, k, seed) combinations; k is 0 for strategies without examples."""
        out = []
        for model in self.models:
            for strategy in self.strategies:
                for k in (self.k_shot if strategy in ("few_shot", "few_shot_cot") else [0]):
                    for seed in self.seeds:
                        out.append((strategy, model, int(k), int(seed)))
        return out

    def validate(self, source: str = "experiment") -> "EvalSpec":
        def fail(key, problem):
            raise ExperimentError(f"{source}: field '{key}': {problem}")

        if not self.template:
            fail("template", "is required (a template name or .yaml path)")
        if not self.dataset:
            fail("dataset", "is required (a .csv or .jsonl path)")
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            fail("strategies", f"'{bad[0] if bad else ''}' is not one of: {', '.join(STRATEGIES)}")
        if self.method not in METHODS:
            fail("method", f"'{self.method}' is not one of: {', '.join(METHODS)}")
        if self.metric is not None and self.metric not in METRICS:
            fail("metric", f"'{self.metric}' is not one of: {', '.join(METRICS)}")
        if not self.models:
            fail("models", "list at least one model spec, e.g. [default]")
        if self.samples < 1 or self.samples > 32:
            fail("samples", "must be between 1 and 32")
        if self.samples > 1 and self.temperature <= 0:
            fail("samples", "several samples need temperature > 0 (greedy samples are all the same)")
        if any(k < 1 for k in self.k_shot):
            fail("k_shot", "values must be 1 or more")
        if self.batch_size < 1 or self.batch_size > 64:
            fail("batch_size", "must be between 1 and 64")
        return self


def load_spec(path: str | Path) -> EvalSpec:
    """Read an experiment YAML; relative template and dataset paths resolve against the file's folder."""
    path = Path(path)
    data = load_spec_file(path, "experiment file", EvalSpec.__dataclass_fields__, ExperimentError)
    for key in ("strategies", "models", "seeds", "k_shot"):
        if key in data and not isinstance(data[key], list):
            data[key] = [data[key]]
    try:
        spec = EvalSpec(**data)
    except TypeError as exc:
        raise ExperimentError(f"{path}: {exc}") from None
    base = path.resolve().parent
    dataset = Path(spec.dataset)
    if not dataset.is_absolute():
        spec.dataset = str((base / dataset).resolve())
    template = Path(spec.template)
    if spec.template.endswith((".yaml", ".yml")) and not template.is_absolute():
        spec.template = str((base / template).resolve())
    if spec.name == "evaluation":
        spec.name = path.stem
    return spec.validate(str(path))
