"""Experiment files and specs: what an evaluation will run, and the message for every field that is wrong."""
import pytest

from conftest import ROOT

from prompt_lab.evaluation.experiments import EvalSpec, ExperimentError, load_spec


def spec(**kwargs):
    return EvalSpec(**{"template": "sentiment", "dataset": "data.csv", **kwargs})


@pytest.mark.parametrize("fields, says", [
    ({"template": ""}, "field 'template': is required (a template name or .yaml path)"),
    ({"dataset": ""}, "field 'dataset': is required (a .csv, .jsonl, .json, .parquet or .arrow file, or a saved dataset folder)"),
    ({"strategies": ["zero_shot", "magic"]}, "field 'strategies': 'magic' is not one of: zero_shot, few_shot, cot, "
                                             "few_shot_cot"),
    ({"strategies": []}, "field 'strategies': '' is not one of"),
    ({"method": "vibes"}, "field 'method': 'vibes' is not one of: generate, label_probs"),
    ({"metric": "f1"}, "field 'metric': 'f1' is not one of: accuracy, bleu, rouge, contains, regex"),
    ({"models": []}, "field 'models': list at least one model spec, e.g. [default]"),
    ({"samples": 0}, "field 'samples': must be between 1 and 32"),
    ({"samples": 33, "temperature": 1.0}, "field 'samples': must be between 1 and 32"),
    ({"samples": 2}, "field 'samples': several samples need temperature > 0 (greedy samples are all the same)"),
    ({"k_shot": [3, 0]}, "field 'k_shot': each value must be at least 1, got 0"),
    ({"batch_size": 0}, "field 'batch_size': must be between 1 and 64"),
    ({"batch_size": 65}, "field 'batch_size': must be between 1 and 64"),
])
def test_every_bad_field_is_named_with_what_is_allowed(fields, says):
    with pytest.raises(ExperimentError, match="^exp[.]yaml: " + says.split(":", 1)[0] + ": ") as info:
        spec(**fields).validate("exp.yaml")
    assert str(info.value) == f"exp.yaml: {says}" or str(info.value).startswith(f"exp.yaml: {says}")


def test_limits_at_the_edges_are_allowed():
    assert spec(samples=32, temperature=0.5, batch_size=64, k_shot=[1]).validate() is not None
    assert spec(samples=1, batch_size=1, metric="regex").validate().metric == "regex"
    assert spec(samples=2, temperature=0.01).validate().samples == 2


def test_conditions_cross_models_strategies_k_and_seeds():
    s = spec(models=["a", "b"], strategies=["zero_shot", "few_shot", "few_shot_cot", "cot"], k_shot=[1, 3],
             seeds=[0, 7])
    conditions = s.conditions()
    assert conditions[:6] == [("zero_shot", "a", 0, 0), ("zero_shot", "a", 0, 7), ("few_shot", "a", 1, 0),
                              ("few_shot", "a", 1, 7), ("few_shot", "a", 3, 0), ("few_shot", "a", 3, 7)]
    assert len(conditions) == 2 * (1 + 2 + 2 + 1) * 2  # k sweeps only the strategies with examples
    assert ("cot", "b", 0, 7) in conditions and all(isinstance(k, int) for _, _, k, _ in conditions)


def test_the_spec_hash_names_the_exact_settings():
    assert spec().spec_hash == spec().spec_hash and len(spec().spec_hash) == 16
    assert spec(limit=10).spec_hash != spec().spec_hash
    assert spec().to_dict()["strategies"] == ["zero_shot"] and spec().to_dict()["method"] == "generate"


def test_an_experiment_file_resolves_its_paths_and_takes_single_values_as_lists(tmp_path):
    folder = tmp_path / "exps"
    folder.mkdir()
    (folder / "mine.yaml").write_text("template: ../my.yaml\ndataset: data/x.csv\nstrategies: cot\nmodels: default\n"
                                      "seeds: 3\nk_shot: 2\n")
    loaded = load_spec(folder / "mine.yaml")
    assert loaded.dataset == str((folder / "data" / "x.csv").resolve())
    assert loaded.template == str((tmp_path / "my.yaml").resolve())
    assert (loaded.strategies, loaded.models, loaded.seeds, loaded.k_shot) == (["cot"], ["default"], [3], [2])
    assert loaded.name == "mine"  # named after its file unless it says otherwise
    (folder / "named.yaml").write_text(f"template: sentiment\ndataset: {tmp_path}/abs.csv\nname: my run\n")
    named = load_spec(folder / "named.yaml")
    assert (named.template, named.dataset, named.name) == ("sentiment", f"{tmp_path}/abs.csv", "my run")


def test_experiment_file_errors_name_the_file_and_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("template: sentiment\n")
    with pytest.raises(ExperimentError, match=r"bad\.yaml: field 'dataset': is required"):
        load_spec(path)
    path.write_text("template: sentiment\ndataset: d.csv\nmethod: magic\n")
    with pytest.raises(ExperimentError, match=r"bad\.yaml, line 3: field 'method': 'magic' is not one of"):
        load_spec(path)
    path.write_text("- a list\n")
    with pytest.raises(ExperimentError, match=r"bad\.yaml: an experiment file must be a YAML mapping of field: value"):
        load_spec(path)


def test_the_shipped_experiments_are_valid(home):
    from prompt_lab.search.spec import load_search_spec

    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        if path.name.startswith("search_"):
            assert load_search_spec(path).name == path.stem
        elif not path.name.startswith("tune_"):
            assert load_spec(path).name == path.stem


def test_a_spec_built_in_code_is_named_experiment_in_its_errors(tmp_path):
    with pytest.raises(ExperimentError, match=r"^experiment: field 'method': 'x' is not one of"):
        spec(method="x").validate()
    (tmp_path / "e.yaml").write_text("template: t.yml\ndataset: d.csv\n")  # .yml templates resolve like .yaml
    assert load_spec(tmp_path / "e.yaml").template == str((tmp_path / "t.yml").resolve())
