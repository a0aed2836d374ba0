"""Tune specs: what a LoRA / prompt-tuning job trains (template, dataset, model, method, hyperparameters).

Loaded from experiments/tune_*.yaml (the dataset path resolves relative to the file) or built by the UI. Every
field is declared once with its type, default, help and allowed values; validate() checks each of them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from prompt_lab.errors import PromptLabError
from prompt_lab.models.base import SEED_MAX
from prompt_lab.models.registry import is_local_spec
from prompt_lab.prompts.strategies import STRATEGIES
from prompt_lab.specs import check_fields, failer, spec_field
from prompt_lab.yamlfiles import load_spec_lines

METHODS = ("lora", "prompt_tuning")


class TuneError(PromptLabError):
    """A tune spec or dataset that cannot be used; the message names the file, the line and the field."""


@dataclass
class TuneSpec:
    dataset: str = spec_field(help="A .csv, .jsonl, .json, .parquet or .arrow file, or a folder written by "
                                   "datasets' save_to_disk (relative to the tune file).")
    template: str | None = spec_field(None, help="Template name or .yaml path; empty: an instruction dataset with "
                                                 "instruction / input / output columns.")
    name: str = spec_field("tune", help="Job name; a tune file's default is its file name.")
    columns: dict | None = spec_field(None, help="{variables: {var: column}, target: column}; empty: guessed.")
    strategy: str = spec_field("zero_shot", choices=STRATEGIES, help="How each training prompt is built.")
    model: str = spec_field("default", help="Base model spec with local weights (default, a folder, a .gguf or a "
                                            "Hub id).")
    method: str = spec_field("lora", choices=METHODS, help="lora adapters, or prompt_tuning (virtual tokens).")
    r: int = spec_field(8, min=1, help="LoRA rank.")
    alpha: int = spec_field(16, min=1, help="LoRA alpha (scale = alpha / r).")
    dropout: float = spec_field(0.05, min=0, below=1, help="LoRA dropout, from 0 up to (not including) 1.")
    target_modules: list[str] | str = spec_field(default_factory=lambda: ["q_proj", "v_proj"],
                                                 help="Module names LoRA adapts, or \"all-linear\".")
    num_virtual_tokens: int = spec_field(16, min=1, help="Prompt tuning: virtual tokens learnt.")
    learning_rate: float = spec_field(2e-3, above=0, help="Peak learning rate.")
    epochs: float = spec_field(1.0, min=1, help="Passes over the training split (max_steps > 0 overrides it).")
    max_steps: int = spec_field(-1, min=-1, help="Optimizer steps; > 0 overrides epochs, -1 or 0: use epochs.")
    batch_size: int = spec_field(8, min=1, help="Training pairs per step and device.")
    grad_accum: int = spec_field(1, min=1, help="Gradient accumulation steps.")
    warmup_steps: int = spec_field(0, min=0, help="Steps of linear learning-rate warmup.")
    weight_decay: float = spec_field(0.0, min=0, help="AdamW weight decay.")
    max_seq_len: int = spec_field(256, min=1, help="Tokens kept per pair (prompt + completion), from the end.")
    seed: int = spec_field(0, min=0, max=SEED_MAX, help="Seed of the split, the initialisation and the data order "
                                                         "(0 to 2**32-1).")
    val_fraction: float = spec_field(0.2, above=0, below=1, help="Share held out for validation, between 0 and 1 "
                                                               "(both excluded).")
    eval_steps: int = spec_field(10, min=1, help="Validation loss every N steps.")
    save_steps: int = spec_field(10, min=1, help="A checkpoint (to resume from) every N steps.")
    early_stopping_patience: int = spec_field(0, min=0, help="Stop after N evaluations without improvement; "
                                                            "0: off.")
    limit: int | None = spec_field(None, min=0, help="Use the first N pairs only; empty or 0: all of them.")

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, source: str = "tune spec", lines: dict[str, int] | None = None) -> "TuneSpec":
        """Check every field; the error names the source, the field's line (when known) and the field."""
        fail = failer(source, lines, TuneError)
        if not self.dataset:
            fail("dataset", "is required (a .csv, .jsonl, .json, .parquet or .arrow file, or a saved dataset folder)")
        check_fields(self, fail)
        if not self.model:
            fail("model", "is required (default, a folder, a .gguf or a Hub id)")
        if not is_local_spec(self.model):
            fail("model", f"'{self.model}' is a remote model; tuning needs local weights (default, a folder, a "
                          ".gguf or a Hub id)")
        modules = self.target_modules
        if not (isinstance(modules, str) and modules) and not (
                isinstance(modules, list) and modules and all(isinstance(m, str) and m for m in modules)):
            fail("target_modules", f"must be a list of module names or \"all-linear\", got {modules!r}")
        return self


def load_tune_spec(path: str | Path) -> TuneSpec:
    """Read a tune YAML; a relative dataset path resolves against the file's folder."""
    path = Path(path)
    data, lines = load_spec_lines(path, "tune file", TuneSpec.__dataclass_fields__, TuneError)
    return spec_from_mapping(data, path, lines)


def spec_from_mapping(data: dict, path: Path, lines: dict[str, int] | None = None) -> TuneSpec:
    """A checked TuneSpec from a tune file's fields (errors name the file, the field's line and the field); a
    relative dataset path resolves against the file's folder, and the default name is the file's name."""
    data = dict(data)
    data.setdefault("dataset", "")  # missing: validate() says it is required, like an empty value
    spec = TuneSpec(**data)
    spec.validate(str(path), lines)  # before the path is joined: a wrong type is reported, not a crash
    base = path.resolve().parent
    if not Path(spec.dataset).is_absolute():
        spec.dataset = str((base / spec.dataset).resolve())
    if spec.name == "tune":
        spec.name = path.stem
    return spec
