"""Prompt variants as an axis of an evaluation: experiment files and the Evaluate tab's box (every refusal names the
file, the line, the variant and the field), variants crossed with strategies, models, k and seeds, each variant's
text logged as a template version, the report ranking variants with CIs and paired tests against the baseline,
resume after a stop, and the shipped experiment run through the CLI on the embedded model."""
import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest
import yaml

from conftest import ROOT

from prompt_lab.errors import CancelledError, TemplateError
from prompt_lab.evaluation import stats
from prompt_lab.evaluation.evaluate import evaluate, plan, resume
from prompt_lab.evaluation.experiments import EvalSpec, ExperimentError, load_spec
from prompt_lab.prompts.templates import get_template, parse_template
from prompt_lab.prompts.variants import build_variants, variants_from_text, variants_text
from prompt_lab.reporting.export import gather, report_markdown
from prompt_lab.reporting.summary import eval_report
from prompt_lab.reporting.text import report_json, report_lines
from prompt_lab.runlog.store import connect, get_run
from test_evaluate import reviews_csv, spec_for  # noqa: F401  (the same small dataset and spec)

VARIANTS = [{"name": "terse", "instruction": "Sentiment of this review?"},
            {"name": "label-only", "output_format": "Reply with the label alone, nothing else."}]


def experiment(tmp_path, body: str):
    path = tmp_path / "exp.yaml"
    path.write_text("template: sentiment\ndataset: d.csv\n" + body)
    return path


# ------------------------------------------------------------------ parsing and refusals


REFUSALS = [  # (variants: ..., the line named, the message after "field 'variants': ")
    ("  - name: terse\n    instruction: 'Classify {{ tone }}'\n", 5,
     "variant 'terse', field 'instruction': uses 'tone', which is not in variables (review); add it to 'variables' "
     "or fix the name"),
    ("  - name: a\n    instruction: x\n  - name: a\n    instruction: y\n", 6,
     "variant 'a', field 'name': variant 1 has this name too; each variant needs its own"),
    ("  - name: a\n    colour: red\n", 5, "variant 'a', field 'colour': unknown field; a variant may set: name, "
                                         "template, instruction, output_format, input, examples, cot_trigger, "
                                         "answer_prefix"),
    ("  - name: a\n    input: 'Review: {{ review'\n", 5, "variant 'a', field 'input': template syntax error: "),
    ("  - name: a\n    examples:\n      - inputs: {text: hi}\n        output: Positive\n", 5,
     "variant 'a', field 'examples': example 1: inputs lack 'review'"),
    ("  - name: a\n    examples: Positive\n", 5, "variant 'a', field 'examples': must be a list"),
    ("  - name: a\n    answer_prefix: [x]\n", 5, "variant 'a', field 'answer_prefix': must be text, got ['x']"),
    ("  - name: original\n    instruction: x\n", 4,
     "variant 'original', field 'name': 'original' is the experiment's template itself; give the variant another "
     "name"),
    ("  - instruction: x\n", 4, "variant 1, field 'name': is required: a short name such as terse"),
    ("  - name: A very long name\n    instruction: x\n", 4, "variant 1, field 'name': 'A very long name' is not a "
                                                          "valid name"),
    ("  - name: a\n", 4, "variant 'a', changes nothing: give a template or at least one of instruction, "
                         "output_format, input, examples, cot_trigger, answer_prefix"),
    ("  - name: a\n    template: arithmetic\n", 5, "variant 'a', field 'template': template 'arithmetic' takes "
                                                   "question but 'sentiment' takes review"),
    ("  - name: a\n    template: ../templates/sentiment.yaml\n", 5, "variant 'a', field 'template': unknown template"),
    ("  - name: a\n    instruction: \"Read the review and decide the writer's overall feeling. Choose one of: "
     "{{ choices|join(', ') }}.\"\n", 4, "variant 'a', gives the same text as the template itself"),
    ("  - name: a\n    instruction: x\n  - name: b\n    instruction: x\n", 6,
     "variant 'b', gives the same text as variant 'a'; a variant must change something"),
]


@pytest.mark.parametrize("body, line, says", REFUSALS)
def test_a_bad_variant_is_refused_naming_file_line_variant_and_field(home, tmp_path, body, line, says):
    path = experiment(tmp_path, "variants:\n" + body)
    with pytest.raises(ExperimentError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}, line {line}: field 'variants': {says}"), str(info.value)


def test_other_refusals_of_the_variants_and_baseline_fields(home, tmp_path):
    with pytest.raises(ExperimentError, match=r"exp\.yaml, line 3: field 'variants': must be a list, got 'terse'"):
        load_spec(experiment(tmp_path, "variants: terse\n"))
    with pytest.raises(ExperimentError, match=r"exp\.yaml, line 4: not valid YAML: mapping values are not allowed"):
        load_spec(experiment(tmp_path, "variants:\n  - name: a: b\n"))
    with pytest.raises(ExperimentError, match=r"exp\.yaml, line 3: field 'baseline': 'nope' is not a variant; use "
                                              r"one of: original, a$"):
        load_spec(experiment(tmp_path, "baseline: nope\nvariants:\n  - name: a\n    instruction: x\n"))
    with pytest.raises(ExperimentError, match=r"^experiment: field 'baseline': 'a' is not a variant; use one of: "
                                              r"original$"):
        EvalSpec(template="sentiment", dataset="d.csv", baseline="a").validate()
    # a CoT trigger is plain text (not rendered), so any text is a valid one
    assert load_spec(experiment(tmp_path, "variants:\n  - name: a\n    cot_trigger: 'Think {{ x'\n")).variants


def test_the_variants_box_is_checked_like_a_file_and_names_its_own_lines():
    template = get_template("sentiment")
    assert variants_from_text("  \n", template) is None
    assert variants_from_text(variants_text(VARIANTS), template) == VARIANTS
    with pytest.raises(TemplateError, match=r"^variants box, line 4: field 'variants': variant 'b', field "
                                            r"'instruction': uses 'x', which is not in variables"):
        variants_from_text("- name: a\n  instruction: hi\n- name: b\n  instruction: '{{ x }}'\n", template)
    with pytest.raises(TemplateError, match=r"^variants box, line 2: not valid YAML: mapping values are not allowed"):
        variants_from_text("- name: a\n  instruction: a: b\n", template)
    with pytest.raises(TemplateError, match=r"^variants box: field 'variants': must be a list of variants"):
        variants_from_text("name: a\n", template)


def test_a_variant_is_the_template_with_its_fields_replaced_and_its_own_hash(home):
    template = get_template("sentiment")
    examples = [{"inputs": {"review": "Great."}, "output": "Positive"},
                {"inputs": {"review": "Bad."}, "output": "Negative", "rationale": "It says bad."}]
    original, terse, shown = build_variants(template, VARIANTS[:1] + [{
        "name": "shown", "input": "Customer review:\n{{ review }}", "examples": examples, "cot_trigger": "Go.",
        "answer_prefix": "Label:"}])
    assert original.template is template
    assert terse.template.instruction == "Sentiment of this review?"
    assert terse.template.output_format == template.output_format and terse.template.examples == template.examples
    assert (shown.template.input, shown.template.cot_trigger, shown.template.answer_prefix) == (
        "Customer review:\n{{ review }}", "Go.", "Label:")
    assert [e.output for e in shown.template.examples] == ["Positive", "Negative"]
    assert len({v.template.content_hash for v in (original, terse, shown)}) == 3
    assert parse_template(terse.template.to_yaml()).content_hash == terse.template.content_hash
    whole = build_variants(template, [{"name": "codes", "template": "sentiment", "instruction": "Say it."}])[1]
    assert whole.template.instruction == "Say it."  # a named template, then its fields replaced


def test_a_spec_without_variants_loads_and_hashes_as_before(tmp_path):
    old_params = {"template": "sentiment", "dataset": "d.csv", "name": "x", "columns": None, "split": None,
                  "strategies": ["zero_shot"], "models": ["default"], "method": "generate", "temperature": 0.0,
                  "top_p": 1.0, "max_new_tokens": 48, "samples": 1, "seeds": [0], "k_shot": [3], "limit": None,
                  "batch_size": 8, "metric": None}  # a run's params as logged before variants existed
    spec = EvalSpec(**old_params)
    assert spec.variants is None and spec.baseline is None and spec.variant_names() == ["original"]
    # the hash of the fields logged before variants, example_selection and format existed: old runs keep theirs
    data = {k: v for k, v in spec.to_dict().items()
            if k not in ("variants", "baseline", "example_selection", "format")}
    import hashlib
    assert spec.spec_hash == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    assert spec.crossed() == [("original", *c) for c in spec.conditions()]


def test_variants_cross_strategies_models_k_and_seeds():
    spec = EvalSpec(template="sentiment", dataset="d.csv", models=["a", "b"], strategies=["zero_shot", "few_shot"],
                    k_shot=[1, 3], seeds=[0, 7], variants=VARIANTS)
    crossed = spec.crossed()
    assert len(crossed) == 3 * 2 * (1 + 2) * 2  # variants x models x (zero_shot + few_shot at two k) x seeds
    assert len(set(crossed)) == len(crossed)
    assert crossed[:7] == [("original", "zero_shot", "a", 0, 0), ("original", "zero_shot", "a", 0, 7),
                           ("original", "few_shot", "a", 1, 0), ("original", "few_shot", "a", 1, 7),
                           ("original", "few_shot", "a", 3, 0), ("original", "few_shot", "a", 3, 7),
                           ("terse", "zero_shot", "a", 0, 0)]
    assert [c[2] for c in crossed] == ["a"] * 18 + ["b"] * 18  # model by model: each is loaded once


def test_a_variant_that_cannot_build_a_strategy_is_refused_before_anything_runs(home, reviews_csv):
    spec = spec_for(reviews_csv, "default", strategies=["few_shot_cot"],
                    variants=[{"name": "plain", "examples": [{"inputs": {"review": "Fine."}, "output": "Neutral"}]}])
    with pytest.raises(Exception, match="variant 'plain' cannot build few_shot_cot: few_shot_cot needs examples "
                                        "with a 'rationale'"):
        plan(spec)
    with connect() as db:
        assert db.execute("select count(*) from runs").fetchone() == (0,)


# ------------------------------------------------------------------ runs, logs and reports (tiny model)


def test_every_variant_is_logged_as_a_template_version_and_its_rows_carry_its_hash(home, tiny_model_dir, reviews_csv):
    run_id = evaluate(spec_for(reviews_csv, str(tiny_model_dir), strategies=["zero_shot", "few_shot"], k_shot=[2],
                               method="label_probs", batch_size=4, variants=VARIANTS))
    with connect() as db:
        run = get_run(db, run_id)
        hashes = run["options"]["variants"]
        assert list(sorted(hashes)) == ["label-only", "original", "terse"] and run["options"]["baseline"] == "original"
        assert hashes["original"] == run["template_hash"] and len(set(hashes.values())) == 3
        versions = {r["hash"]: r for r in db.query("select hash, name, content_yaml from template_versions")}
        assert set(hashes.values()) <= set(versions)
        terse = parse_template(versions[hashes["terse"]]["content_yaml"])
        assert terse.instruction == "Sentiment of this review?" and terse.content_hash == hashes["terse"]
        assert parse_template(versions[hashes["label-only"]]["content_yaml"]).output_format == VARIANTS[1][
            "output_format"]
        rows = list(db.query("select template_hash, template_name, strategy, k_shot, item_index, prompt "
                             "from generations where run_id = ?", [run_id]))
    assert len(rows) == 3 * 2 * 6
    by_hash = defaultdict(set)
    for r in rows:
        by_hash[r["template_hash"]].add((r["strategy"], r["k_shot"], r["item_index"]))
        assert r["template_name"] == "sentiment"
    assert set(by_hash) == set(hashes.values()) and all(len(v) == 12 for v in by_hash.values())
    terse_prompts = [r["prompt"] for r in rows if r["template_hash"] == hashes["terse"]]
    assert all("Sentiment of this review?" in p for p in terse_prompts)
    assert not any("Sentiment of this review?" in r["prompt"] for r in rows if r["template_hash"] != hashes["terse"])


def _correct_by_item(run_id, template_hash, strategy) -> dict[str, int]:
    """Right (1) or wrong (0) per item content hash, read from the log without the report's code."""
    with connect() as db:
        return {r["item_hash"]: r["correct"] for r in db.query(
            "select item_hash, correct from generations where run_id = ? and template_hash = ? and strategy = ?",
            [run_id, template_hash, strategy])}


def test_the_report_ranks_variants_with_cis_and_tests_each_against_the_baseline_on_the_same_items(
        home, tiny_model_dir, reviews_csv):
    run_id = evaluate(spec_for(reviews_csv, str(tiny_model_dir), strategies=["zero_shot", "few_shot"], k_shot=[2],
                               method="label_probs", batch_size=6, variants=VARIANTS, baseline="terse"))
    report = eval_report(run_id)
    model = str(tiny_model_dir)
    assert report.labels == [f"[{v}] {s} · {model}" for v in ("original", "terse", "label-only")
                             for s in ("zero_shot", "few_shot k=2")]
    assert report.baseline == "terse"
    with connect() as db:
        hashes = get_run(db, run_id)["options"]["variants"]
    settings = defaultdict(list)
    for rank in report.variants:
        settings[rank.setting].append(rank)
    assert list(settings) == [f"zero_shot · {model}", f"few_shot k=2 · {model}"]
    for setting, ranks in settings.items():
        assert sorted(r.variant for r in ranks) == ["label-only", "original", "terse"]
        values = [r.value for r in ranks]
        assert values == sorted(values, reverse=True)
        assert [r.rank for r in ranks] == [1 + sum(v > r.value for v in values) for r in ranks]
        strategy = "zero_shot" if setting.startswith("zero_shot") else "few_shot"
        baseline = _correct_by_item(run_id, hashes["terse"], strategy)
        for r in ranks:
            assert r.ci_low <= r.value <= r.ci_high
            assert r.value == pytest.approx(sum(_correct_by_item(run_id, hashes[r.variant], strategy).values()) / 6)
            assert r.baseline == (r.variant == "terse") and (r.test is None) == r.baseline
            if r.test is None:
                continue
            mine = _correct_by_item(run_id, hashes[r.variant], strategy)
            only_a = sum(mine[k] and not baseline[k] for k in mine)
            only_b = sum(baseline[k] and not mine[k] for k in mine)
            assert (r.test.n, r.test.only_a, r.test.only_b) == (6, only_a, only_b)
            assert r.test.p_value == pytest.approx(stats.mcnemar_exact(
                [bool(mine[k]) for k in mine], [bool(baseline[k]) for k in mine])["p_value"])
            assert r.test.a == r.condition and r.test.b == f"[terse] {setting}"
    # the run's paired tests: the baseline's strategies, then every variant against the baseline
    assert [(t.a, t.b) for t in report.paired] == [(f"[terse] zero_shot · {model}", f"[terse] few_shot k=2 · {model}")] + [
        (r.condition, f"[terse] {r.setting}") for r in report.variants if r.test is not None]
    text = "\n".join(report_lines(report))
    assert "variants ranked in each setting (baseline terse;" in text and "vs terse" in text
    data = json.loads(json.dumps(report_json(report), default=float))
    assert data["baseline"] == "terse" and len(data["variants"]) == 6
    assert {c["variant"] for c in data["conditions"]} == {"original", "terse", "label-only"}
    # a shareable report names each condition with its variant and samples every one of them
    shared = gather([run_id])
    assert sorted(shared.names[run_id]) == sorted(report.labels)
    assert all(name.startswith(("[original] ", "[terse] ", "[label-only] ")) for name in shared.names[run_id].values())
    assert {s.condition for s in shared.samples} == set(report.labels)
    markdown = report_markdown([run_id])
    assert len(shared.verdicts) == len(report.paired) and r"\[label-only\] zero_shot" in markdown


def test_a_run_without_variants_reports_as_before(home, tiny_model_dir, reviews_csv):
    run_id = evaluate(spec_for(reviews_csv, str(tiny_model_dir), strategies=["zero_shot", "few_shot"], k_shot=[2],
                               method="label_probs", batch_size=6))
    report = eval_report(run_id)
    assert report.labels == [f"zero_shot · {tiny_model_dir}", f"few_shot k=2 · {tiny_model_dir}"]
    assert report.variants == [] and report.baseline is None and len(report.paired) == 1
    with connect() as db:
        assert "variants" not in get_run(db, run_id)["options"]
    assert "variants ranked" not in "\n".join(report_lines(report))


def test_a_stopped_run_with_variants_resumes_without_redoing_anything(home, tiny_model_dir, reviews_csv):
    spec = spec_for(reviews_csv, str(tiny_model_dir), strategies=["zero_shot", "few_shot"], k_shot=[2],
                    method="label_probs", batch_size=4, variants=VARIANTS)
    batches = []

    class StopAfterBatches:
        def is_set(self):
            return len(batches) >= 5  # mid-way: the first variant done, the second begun

    def progress(fraction, message):
        if message.startswith("evaluating"):
            batches.append(message)

    with pytest.raises(CancelledError) as stopped:
        evaluate(spec, progress=progress, cancel=StopAfterBatches())
    run_id = stopped.value.run_id
    assert any(m.endswith("([terse] zero_shot, " + str(tiny_model_dir) + ", k=0)") for m in batches)
    with connect() as db:
        before = {r[0] for r in db.execute("select id from generations where run_id = ?", [run_id])}
    assert 0 < len(before) < 36
    resume(run_id)
    with connect() as db:
        rows = list(db.query("select id, template_hash, strategy, k_shot, item_index from generations "
                             "where run_id = ?", [run_id]))
        assert get_run(db, run_id)["status"] == "completed"
    keys = [(r["template_hash"], r["strategy"], r["k_shot"], r["item_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 3 * 2 * 6  # every variant, condition and item exactly once
    assert before <= {r["id"] for r in rows}  # nothing logged before the stop was redone
    assert len(eval_report(run_id).variants) == 6


# ------------------------------------------------------------------ the shipped experiment, end to end


@pytest.mark.integration
def test_the_shipped_variants_experiment_runs_on_the_default_model_through_the_cli(home, default_model_dir):
    spec = load_spec(ROOT / "experiments" / "sentiment_variants.yaml")
    assert [v["name"] for v in spec.variants] == ["terse", "label-only"] and spec.method == "label_probs"
    out = subprocess.run([sys.executable, "-m", "prompt_lab", "eval", "experiments/sentiment_variants.yaml", "--limit",
                          "12", "--json"], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout)
    assert data["status"] == "completed" and data["items"] == 12 and data["baseline"] == "original"
    assert [r["condition"] for r in data["rows"]] == [f"[{v}] {s} · default" for v in ("original", "terse", "label-only")
                                                      for s in ("zero_shot", "few_shot k=3")]
    ranks = data["variants"]
    assert len(ranks) == 6 and {r["setting"] for r in ranks} == {"zero_shot · default", "few_shot k=3 · default"}
    for r in ranks:
        assert 0 <= r["ci_low"] <= r["value"] <= r["ci_high"] <= 1
        if r["variant"] == "original":
            assert r["baseline"] and r["test"] is None
        else:
            assert r["test"]["n"] == 12 and r["test"]["b"] == f"[original] {r['setting']}"
    with connect() as db:
        run = get_run(db, data["run_id"])
        logged = {r[0] for r in db.execute("select distinct template_hash from generations where run_id = ?",
                                           [data["run_id"]])}
        texts = dict(db.execute("select hash, content_yaml from template_versions").fetchall())
    assert logged == set(run["options"]["variants"].values()) and logged <= set(texts)
    assert yaml.safe_load(texts[run["options"]["variants"]["terse"]])["instruction"] == "Sentiment of this review?"


# ------------------------------------------------------------------ the Evaluate tab


def test_the_evaluate_tab_carries_an_experiments_variants_and_runs_the_box(home, tiny_model_dir):
    import inspect

    from prompt_lab.ui import evaluate_tab

    filled = evaluate_tab.load_experiment("sentiment_variants.yaml")
    assert yaml.safe_load(filled[-4]) == load_spec(ROOT / "experiments" / "sentiment_variants.yaml").variants
    assert filled[-3:] == ("original", "random", "")  # the baseline, the example selection, the format (template's)
    run_eval = inspect.unwrap(evaluate_tab.run_eval)
    form = ("sentiment", "sentiment.csv", None, "review", None, None, None, "label", ["zero_shot"], str(tiny_model_dir),
            "label_probs", "3", 1, 0, 8, 4)
    with pytest.raises(TemplateError, match=r"^variants box, line 2: field 'variants': variant 'a', field "
                                            r"'instruction': uses 'tone'"):
        run_eval(*form, "- name: a\n  instruction: '{{ tone }}'\n", "", progress=lambda *a, **k: None)
    status, run_id = run_eval(*form, "- name: short\n  instruction: Sentiment?\n", "short",
                              progress=lambda *a, **k: None)
    assert status == f"Run **{run_id}** finished."
    report = eval_report(run_id)
    assert report.baseline == "short" and [r.variant for r in report.variants] != []
    assert report.labels == [f"[original] zero_shot · {tiny_model_dir}", f"[short] zero_shot · {tiny_model_dir}"]
    head = "\n".join(evaluate_tab.variant_notes(report))
    assert "**Prompt variants ranked** (baseline **short**" in head and "vs baseline" in head
    assert evaluate_tab.summary_rows(report)[1][0] == f"[short] zero_shot · {tiny_model_dir}"


def test_too_many_variants_are_refused_before_anything_runs(tmp_path):
    many = "".join(f"  - {{name: v{i}, instruction: 'Variant {i}: {{{{ choices|join(\", \") }}}}'}}\n" for i in range(17))
    with pytest.raises(ExperimentError, match=r"field 'variants': lists 17 variants; at most 16 run in one evaluation"):
        load_spec(experiment(tmp_path, "variants:\n" + many))
