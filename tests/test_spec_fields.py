"""Every field of an experiment file (EvalSpec) and a tune file (TuneSpec): wrong types, out-of-range values and
the boundaries, each error naming the file, the field's line and the field."""
import dataclasses

import pytest

from prompt_lab.evaluation.experiments import EvalSpec, ExperimentError, load_spec
from prompt_lab.specs import spec_help
from prompt_lab.tuning.spec import TuneError, TuneSpec, load_tune_spec

STRATEGY_NAMES = "zero_shot, few_shot, cot, few_shot_cot"


def write_spec(tmp_path, fields: dict) -> tuple:
    """A spec file with a comment line, then one `key: value` line per field; returns (path, {key: line})."""
    path = tmp_path / "spec.yaml"
    lines, numbers = ["# written by the test"], {}
    for key, value in fields.items():
        numbers[key] = len(lines) + 1
        lines.append(f"{key}: {value}")
    path.write_text("\n".join(lines) + "\n")
    return path, numbers


EVAL_BASE = {"template": "sentiment", "dataset": "d.csv"}

EVAL_BAD = [
    ("split", "[train]", "must be text, got ['train']"),
    ("template", "''", "is required (a template name or .yaml path)"),
    ("template", "5", "must be text, got 5"),
    ("dataset", "''", "is required (a .csv, .jsonl, .json, .parquet or .arrow file, or a saved dataset folder)"),
    ("dataset", "[a.csv]", "must be text, got ['a.csv']"),
    ("name", "3", "must be text, got 3"),
    ("columns", "target", "must be a mapping, got 'target'"),
    ("strategies", "[zero_shot, magic]", f"'magic' is not one of: {STRATEGY_NAMES}"),
    ("strategies", "[]", f"'' is not one of: {STRATEGY_NAMES}"),
    ("strategies", "[1]", "each value must be text, got 1"),
    ("models", "[]", "list at least one model spec, e.g. [default]"),
    ("models", "[3]", "each value must be text, got 3"),
    ("models", "['']", "a model spec is empty; list model specs, e.g. [default]"),
    ("method", "vibes", "'vibes' is not one of: generate, label_probs"),
    ("method", "1", "must be text, got 1"),
    ("temperature", "hot", "must be a number, got 'hot'"),
    ("temperature", "-0.1", "must be between 0 and 2, got -0.1"),
    ("temperature", "2.5", "must be between 0 and 2, got 2.5"),
    ("top_p", "0", "must be above 0 and at most 1, got 0"),
    ("top_p", "1.01", "must be above 0 and at most 1, got 1.01"),
    ("top_p", "all", "must be a number, got 'all'"),
    ("max_new_tokens", "0", "must be at least 1, got 0"),
    ("max_new_tokens", "1.5", "must be a whole number, got 1.5"),
    ("samples", "0", "must be between 1 and 32, got 0"),
    ("samples", "33", "must be between 1 and 32, got 33"),
    ("samples", "'2'", "must be a whole number, got '2'"),
    ("samples", "2", "several samples need temperature > 0 (greedy samples are all the same)"),
    ("seeds", "[-1]", "each value must be between 0 and 4294967295, got -1"),
    ("seeds", "[a]", "each value must be a whole number, got 'a'"),
    ("seeds", "[0, 4294967296]", "each value must be between 0 and 4294967295, got 4294967296"),  # 2**32
    ("seeds", f"[{2**200}]", "each value must be between 0 and 4294967295, got a number of 201 bits"),
    ("k_shot", "[3, 0]", "each value must be at least 1, got 0"),
    ("k_shot", "[1.5]", "each value must be a whole number, got 1.5"),
    ("limit", "-1", "must be at least 0, got -1"),
    ("limit", "ten", "must be a whole number, got 'ten'"),
    ("batch_size", "0", "must be between 1 and 64, got 0"),
    ("batch_size", "65", "must be between 1 and 64, got 65"),
    ("batch_size", "true", "must be a whole number, got True"),
    ("metric", "f1", "'f1' is not one of: accuracy, bleu, rouge, contains, regex"),
    ("metric", "2", "must be text, got 2"),
    ("variants", "terse", "must be a list, got 'terse'"),
    ("variants", "[3]", "each value must be a mapping, got 3"),
    ("baseline", "3", "must be text, got 3"),
    ("baseline", "terse", "'terse' is not a variant; use one of: original"),
    ("example_selection", "nearest", "'nearest' is not one of: random, fixed, similar"),
    ("example_selection", "3", "must be text, got 3"),
    ("format", "text", "'text' is not one of: chat, raw"),
    ("format", "[raw]", "must be text, got ['raw']"),
]


@pytest.mark.parametrize("key, value, says", EVAL_BAD, ids=[f"{k}={v}" for k, v, _ in EVAL_BAD])
def test_every_experiment_field_names_file_line_and_field(tmp_path, key, value, says):
    path, lines = write_spec(tmp_path, {**EVAL_BASE, key: value})
    with pytest.raises(ExperimentError, match=f"line {lines[key]}: field '{key}': ") as info:
        load_spec(path)
    assert str(info.value) == f"{path}, line {lines[key]}: field '{key}': {says}"


EVAL_EDGES = [
    ("temperature", "0"), ("temperature", "2"), ("top_p", "1"), ("top_p", "0.01"), ("max_new_tokens", "1"),
    ("samples", "1"), ("seeds", "[0]"), ("seeds", "[4294967295]"), ("k_shot", "[1]"), ("limit", "0"), ("limit", "null"), ("batch_size", "1"),
    ("batch_size", "64"), ("metric", "null"), ("metric", "regex"), ("columns", "null"), ("strategies", "cot"),
    ("method", "label_probs"), ("name", "mine"), ("models", "[default, other]"), ("variants", "null"),
    ("variants", "[]"), ("baseline", "original"), ("example_selection", "similar"), ("example_selection", "fixed"),
    ("format", "raw"), ("format", "chat"),
]


@pytest.mark.parametrize("key, value", EVAL_EDGES, ids=[f"{k}={v}" for k, v in EVAL_EDGES])
def test_experiment_values_at_the_edges_are_allowed(tmp_path, key, value):
    path, _ = write_spec(tmp_path, {**EVAL_BASE, key: value})
    assert isinstance(load_spec(path), EvalSpec)


def test_several_samples_at_the_top_with_temperature_are_allowed(tmp_path):
    path, _ = write_spec(tmp_path, {**EVAL_BASE, "samples": "32", "temperature": "0.01"})
    assert load_spec(path).samples == 32


TUNE_BASE = {"dataset": "d.csv", "template": "sentiment"}

TUNE_BAD = [
    ("dataset", "''", "is required (a .csv, .jsonl, .json, .parquet or .arrow file, or a saved dataset folder)"),
    ("dataset", "3", "must be text, got 3"),
    ("template", "[a]", "must be text, got ['a']"),
    ("name", "7", "must be text, got 7"),
    ("columns", "[a]", "must be a mapping, got ['a']"),
    ("strategy", "magic", f"'magic' is not one of: {STRATEGY_NAMES}"),
    ("model", "''", "is required (default, a folder, a .gguf or a Hub id)"),
    ("model", "3", "must be text, got 3"),
    ("model", "openai:m@http://x:1/v1", "'openai:m@http://x:1/v1' is a remote model; tuning needs local weights "
                                         "(default, a folder, a .gguf or a Hub id)"),
    ("method", "qlora", "'qlora' is not one of: lora, prompt_tuning"),
    ("r", "0", "must be at least 1, got 0"),
    ("r", "1.5", "must be a whole number, got 1.5"),
    ("alpha", "0", "must be at least 1, got 0"),
    ("alpha", "'16'", "must be a whole number, got '16'"),
    ("dropout", "1", "must be at least 0 and below 1, got 1"),
    ("dropout", "-0.1", "must be at least 0 and below 1, got -0.1"),
    ("dropout", "some", "must be a number, got 'some'"),
    ("target_modules", "[]", "must be a list of module names or \"all-linear\", got []"),
    ("target_modules", "[1]", "must be a list of module names or \"all-linear\", got [1]"),
    ("target_modules", "3", "must be a list of module names or \"all-linear\", got 3"),
    ("num_virtual_tokens", "0", "must be at least 1, got 0"),
    ("learning_rate", "0", "must be above 0, got 0"),
    ("learning_rate", "-0.001", "must be above 0, got -0.001"),
    ("learning_rate", "fast", "must be a number, got 'fast'"),
    ("epochs", "0.5", "must be at least 1, got 0.5"),
    ("epochs", "one", "must be a number, got 'one'"),
    ("max_steps", "-2", "must be at least -1, got -2"),
    ("max_steps", "1.5", "must be a whole number, got 1.5"),
    ("batch_size", "0", "must be at least 1, got 0"),
    ("grad_accum", "0", "must be at least 1, got 0"),
    ("warmup_steps", "-1", "must be at least 0, got -1"),
    ("warmup_steps", "0.5", "must be a whole number, got 0.5"),
    ("weight_decay", "-0.1", "must be at least 0, got -0.1"),
    ("max_seq_len", "0", "must be at least 1, got 0"),
    ("seed", "-1", "must be between 0 and 4294967295, got -1"),
    ("seed", "x", "must be a whole number, got 'x'"),
    ("seed", "4294967296", "must be between 0 and 4294967295, got 4294967296"),  # 2**32: what samplers take
    ("val_fraction", "0", "must be between 0 and 1 (both excluded), got 0"),
    ("val_fraction", "1", "must be between 0 and 1 (both excluded), got 1"),
    ("val_fraction", "half", "must be a number, got 'half'"),
    ("eval_steps", "0", "must be at least 1, got 0"),
    ("save_steps", "0", "must be at least 1, got 0"),
    ("early_stopping_patience", "-1", "must be at least 0, got -1"),
    ("limit", "-1", "must be at least 0, got -1"),
    ("limit", "all", "must be a whole number, got 'all'"),
]


@pytest.mark.parametrize("key, value, says", TUNE_BAD, ids=[f"{k}={v}" for k, v, _ in TUNE_BAD])
def test_every_tune_field_names_file_line_and_field(tmp_path, key, value, says):
    path, lines = write_spec(tmp_path, {**TUNE_BASE, key: value})
    with pytest.raises(TuneError, match=f"line {lines[key]}: field '{key}': ") as info:
        load_tune_spec(path)
    assert str(info.value) == f"{path}, line {lines[key]}: field '{key}': {says}"


TUNE_EDGES = [
    ("dropout", "0"), ("dropout", "0.99"), ("val_fraction", "0.01"), ("val_fraction", "0.99"), ("epochs", "1"),
    ("learning_rate", "0.000001"), ("max_steps", "-1"), ("max_steps", "0"), ("max_steps", "1"),
    ("warmup_steps", "0"), ("weight_decay", "0"), ("seed", "0"), ("seed", "4294967295"), ("early_stopping_patience", "0"), ("limit", "0"),
    ("limit", "null"), ("r", "1"), ("alpha", "1"), ("batch_size", "1"), ("grad_accum", "1"), ("max_seq_len", "1"),
    ("eval_steps", "1"), ("save_steps", "1"), ("num_virtual_tokens", "1"), ("target_modules", "all-linear"),
    ("template", "null"), ("method", "prompt_tuning"), ("strategy", "few_shot_cot"), ("columns", "{target: t}"),
]


@pytest.mark.parametrize("key, value", TUNE_EDGES, ids=[f"{k}={v}" for k, v in TUNE_EDGES])
def test_tune_values_at_the_edges_are_allowed(tmp_path, key, value):
    path, _ = write_spec(tmp_path, {**TUNE_BASE, key: value})
    assert isinstance(load_tune_spec(path), TuneSpec)


def test_every_field_is_covered_by_a_bad_value():
    assert {k for k, _, _ in EVAL_BAD} == {f.name for f in dataclasses.fields(EvalSpec)}
    assert {k for k, _, _ in TUNE_BAD} == {f.name for f in dataclasses.fields(TuneSpec)}


def test_a_spec_built_in_code_names_no_line():
    with pytest.raises(TuneError, match=r"^tune spec: field 'epochs': must be at least 1, got 0$"):
        TuneSpec(dataset="d.csv", epochs=0).validate()
    with pytest.raises(ExperimentError, match=r"^experiment: field 'top_p': must be above 0 and at most 1, got 2$"):
        EvalSpec(template="t", dataset="d.csv", top_p=2).validate()


@pytest.mark.parametrize("cls", [EvalSpec, TuneSpec])
def test_every_field_has_a_type_a_default_and_help(cls):
    rows = spec_help(cls)
    assert [r.name for r in rows] == [f.name for f in dataclasses.fields(cls)]
    assert all(r.help and r.type for r in rows)
    required = {r.name for r in rows if r.default == "(required)"}
    assert required == ({"template", "dataset"} if cls is EvalSpec else {"dataset"})
    by_name = {r.name: r for r in rows}
    assert (by_name["batch_size"].type, by_name["batch_size"].default) == ("int", 8)
