"""Search specs: what a prompt search runs (template, dataset, scorer and proposer models, rounds, budgets).

Loaded from experiments/search_*.yaml (paths inside resolve relative to the file) or built by the app. Every field
is declared once with its type, default, help and bounds; validate() checks each of them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from prompt_lab.errors import PromptLabError
from prompt_lab.evaluation.experiments import METHODS, METRICS, EvalSpec
from prompt_lab.models.base import SEED_MAX
from prompt_lab.specs import check_fields, failer, spec_field
from prompt_lab.yamlfiles import load_spec_lines

SEARCH_STRATEGIES = ("zero_shot", "few_shot")  # the instruction is what changes; CoT would score its reasoning too
MAX_ROUNDS = 10
MAX_CANDIDATES = 16  # per round
MIN_ITEMS = 4  # at least two to search on and two held out


class SearchError(PromptLabError):
    """A search file or spec that cannot be used; the message names the file, the line and the field."""


@dataclass
class SearchSpec:
    template: str = spec_field(help="Template name, or a .yaml path (relative to the search file); the search "
                                    "rewrites its instruction.")
    dataset: str = spec_field(help="A .csv, .jsonl, .json, .parquet or .arrow file, or a saved dataset folder "
                                   "(relative to the search file); split into dev and test by `seed`.")
    name: str = spec_field("search", help="Run name; a search file's default is its file name.")
    columns: dict | None = spec_field(None, help="{variables: {var: column}, target: column, choices: column}; "
                                                 "empty: guessed from the column names.")
    split: str | None = spec_field(None, help="The split to read from a DatasetDict folder; empty otherwise.")
    limit: int | None = spec_field(None, min=0, help="Use the first N items only; empty or 0: all of them.")
    model: str = spec_field("default", help="The model whose prompt is searched: it answers every dev and test item.")
    proposer: str = spec_field("default", help="The model that writes candidate instructions (any model spec: the "
                                               "default local model, or openai:<model>@<endpoint>).")
    strategy: str = spec_field("zero_shot", choices=SEARCH_STRATEGIES, help="How each item is asked: zero_shot, or "
                                                                           "few_shot with k_shot examples.")
    k_shot: int = spec_field(3, min=1, help="Examples shown with strategy few_shot.")
    method: str | None = spec_field(None, choices=METHODS, help="label_probs (scores the answer choices: fast) or "
                                                                "generate; empty: label_probs when the task has "
                                                                "choices and the model is local, else generate.")
    metric: str | None = spec_field(None, choices=METRICS, help="The dev and test score; empty: from the "
                                                                "template's answer type.")
    rounds: int = spec_field(2, min=1, max=MAX_ROUNDS, help="Rounds of proposals after the original is scored.")
    candidates: int = spec_field(3, min=1, max=MAX_CANDIDATES, help="Candidate instructions scored per round.")
    keep: int = spec_field(2, min=1, max=MAX_CANDIDATES, help="The best few candidates so far (the original "
                                                              "included) that the next round's proposals are "
                                                              "written from, in turn.")
    failures_shown: int = spec_field(3, min=0, max=8, help="Dev items the parent got wrong that the proposer is "
                                                           "shown with each request.")
    dev_fraction: float = spec_field(0.5, above=0, below=1, help="Share of the items the search scores candidates "
                                                                 "on; the rest is the held-out test split.")
    seed: int = spec_field(0, min=0, max=SEED_MAX, help="Seed of the dev/test split and of the proposer's sampling.")
    max_calls: int = spec_field(2000, min=1, help="Budget: model calls of the search (each proposal and each dev "
                                                 "item scored is one); the final test is not counted.")
    max_minutes: float = spec_field(30.0, above=0, help="Budget: wall time of the search, checked between "
                                                        "candidates; the final test is not counted.")
    proposer_temperature: float = spec_field(0.8, above=0, max=2, help="Sampling temperature of the proposer "
                                                                       "(above 0, so each request can differ).")
    proposer_max_new_tokens: int = spec_field(96, min=8, max=512, help="Most tokens of one proposed instruction.")
    max_new_tokens: int = spec_field(48, min=1, help="Most tokens per answer with method generate.")
    batch_size: int = spec_field(16, min=1, max=64, help="Items per model call batch.")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def validate(self, source: str = "search", lines: dict[str, int] | None = None) -> "SearchSpec":
        fail = failer(source, lines, SearchError)
        if not self.template:
            fail("template", "is required (a template name or .yaml path)")
        if not self.dataset:
            fail("dataset", "is required (a .csv, .jsonl, .json, .parquet or .arrow file, or a saved dataset folder)")
        check_fields(self, fail)
        for key in ("model", "proposer"):
            if not str(getattr(self, key)).strip():
                fail(key, "is empty; give a model spec, e.g. default")
        return self

    def eval_spec(self, method: str) -> EvalSpec:
        """The evaluation each candidate is scored with (one condition: strategy, model, k, seed 0)."""
        return EvalSpec(template=self.template, dataset=self.dataset, name=self.name, columns=self.columns,
                        split=self.split, strategies=[self.strategy], models=[self.model], method=method,
                        max_new_tokens=self.max_new_tokens, k_shot=[self.k_shot], limit=self.limit,
                        batch_size=self.batch_size, metric=self.metric)


def load_search_spec(path: str | Path, **overrides) -> SearchSpec:
    """Read a search YAML; relative template and dataset paths resolve against the file's folder. `overrides`
    (e.g. rounds, candidates from the command line) replace the file's values and are checked like them."""
    path = Path(path)
    data, lines = load_spec_lines(path, "search file", SearchSpec.__dataclass_fields__, SearchError)
    for key in ("template", "dataset"):
        data.setdefault(key, "")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        spec = SearchSpec(**data)
    except TypeError as exc:
        raise SearchError(f"{path}: {exc}") from None
    spec.validate(str(path), lines)
    base = path.resolve().parent
    if not Path(spec.dataset).is_absolute():
        spec.dataset = str((base / spec.dataset).resolve())
    if spec.template.endswith((".yaml", ".yml")) and not Path(spec.template).is_absolute():
        spec.template = str((base / spec.template).resolve())
    if spec.name == "search":
        spec.name = path.stem
    return spec


def split_items(items: list, dev_fraction: float, seed: int) -> tuple[list, list]:
    """Dev and test items: the items are ordered by a hash of the seed and their content (so the split does not
    depend on the file's order) and the first `dev_fraction` of them is dev. At least one item on each side."""
    if len(items) < MIN_ITEMS:
        raise SearchError(f"a search needs at least {MIN_ITEMS} items (some to search on, some held out to test the "
                          f"winner on); the dataset gives {len(items)}")
    order = sorted(items, key=lambda i: (hashlib.sha256(f"{seed}:{i.content_hash}".encode()).hexdigest(), i.index))
    n_dev = min(len(items) - 1, max(1, round(len(items) * dev_fraction)))
    dev, test = order[:n_dev], order[n_dev:]
    return sorted(dev, key=lambda i: i.index), sorted(test, key=lambda i: i.index)
