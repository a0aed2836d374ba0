"""Evaluation runs on real SQLite files: scoring, label probabilities, resume after a kill, experiment files."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, kill_when_marked

from prompt_lab.evaluation.evaluate import evaluate, plan, resume
from prompt_lab.evaluation.experiments import EvalSpec, ExperimentError, load_spec
from prompt_lab.reporting.report import paired_test, run_report
from prompt_lab.runlog.store import connect, get_run, open_db, run_generations

REVIEWS = [("Wonderful, I love it.", "Positive"), ("Broke in a day, awful.", "Negative"),
           ("It is a cable. It arrived.", "Neutral"), ("Best meal of my life!", "Positive"),
           ("Rude staff and cold food.", "Negative"), ("The room had a bed and a desk.", "Neutral")]


@pytest.fixture
def reviews_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,gold\n" + "".join(f'"{r}",{label}\n' for r, label in REVIEWS))
    return path


def spec_for(path, model, **kwargs):
    return EvalSpec(template="sentiment", dataset=str(path), columns={"variables": {"review": "text"}, "target": "gold"},
                    models=[model], **kwargs)


def test_generate_evaluation_logs_every_generation_with_its_score(home, tiny_model_dir, reviews_csv):
    run_id = evaluate(spec_for(reviews_csv, str(tiny_model_dir), strategies=["zero_shot", "few_shot"], k_shot=[1, 2],
                               max_new_tokens=4, batch_size=4))
    db = open_db()
    assert get_run(db, run_id)["status"] == "completed"
    rows = list(db.query("select strategy, k_shot, item_index, correct, correct_strict, target, score "
                         "from generations where run_id = ?", [run_id]))
    assert len(rows) == 6 * 3  # zero_shot + few_shot at k=1 and k=2
    assert all(r["correct"] in (0, 1) and r["target"] for r in rows)
    report = run_report(db, run_id)
    labels = [c["label"] for c in report["conditions"]]
    assert labels == [f"zero_shot · {tiny_model_dir}", f"few_shot k=1 · {tiny_model_dir}",
                      f"few_shot k=2 · {tiny_model_dir}"]
    first = report["conditions"][0]
    assert first["items"] == 6 and 0 <= first["accuracy_ci"][0] <= first["accuracy"] <= first["accuracy_ci"][1]
    assert set(first["classes"]["per_class"]) == {"Positive", "Negative", "Neutral"}
    test = paired_test(report["conditions"][0], report["conditions"][1])
    assert test["n"] == 6 and 0 < test["p_value"] <= 1 and test["verdict"]


def test_label_probabilities_sum_to_one(home, tiny_model_dir, reviews_csv):
    run_id = evaluate(spec_for(reviews_csv, str(tiny_model_dir), method="label_probs", batch_size=3))
    rows = list(open_db().query("select label_probs_json, answer from generations where run_id = ?", [run_id]))
    assert len(rows) == 6
    for row in rows:
        probs = json.loads(row["label_probs_json"])
        assert set(probs) == {"Positive", "Negative", "Neutral"}
        assert abs(sum(probs.values()) - 1) < 1e-6 and row["answer"] == max(probs, key=probs.get)
    assert run_report(open_db(), run_id)["conditions"][0]["calibration"]


def test_bad_specs_say_what_is_wrong(home, tmp_path, reviews_csv):
    with pytest.raises(ExperimentError, match="field 'strategies': 'magic' is not one of"):
        EvalSpec(template="sentiment", dataset="x.csv", strategies=["magic"]).validate()
    with pytest.raises(ExperimentError, match="several samples need temperature > 0"):
        EvalSpec(template="sentiment", dataset="x.csv", samples=3).validate()
    bad = tmp_path / "bad.yaml"
    bad.write_text("template: sentiment\ndataset: data.csv\ncolour: red\n")
    with pytest.raises(ExperimentError, match="unknown field 'colour'"):
        load_spec(bad)
    with pytest.raises(Exception, match="no column 'review'"):
        plan(EvalSpec(template="sentiment", dataset=str(reviews_csv), columns={"variables": {"review": "review"},
                                                                              "target": "gold"}))
    assert open_db().execute("select count(*) from runs").fetchone() == (0,)  # nothing was written


def test_shipped_experiments_load_and_map_their_datasets(home):
    files = sorted(p for p in (ROOT / "experiments").glob("*.yaml") if not p.name.startswith(("tune_", "search_")))
    assert len(files) >= 3
    for path in files:
        p = plan(load_spec(path))
        assert len(p.items) >= 20 and all(i.target for i in p.items), path.name


def test_shipped_datasets_have_enough_checked_rows(home):
    """Each shipped dataset fills its template: every variable and the gold answer on 50 rows or more, and gold
    answers a choice template can give (one of its choices)."""
    from prompt_lab.evaluation.datasets import load_dataset, mapping_for, to_items
    from prompt_lab.prompts.templates import get_template

    for name, template_name in [("sentiment.csv", "sentiment"), ("plausibility.csv", "plausibility"),
                                ("arithmetic.jsonl", "arithmetic"), ("extract_json.jsonl", "extract_json"),
                                ("translate_fr.jsonl", "translate_fr"), ("summarize.jsonl", "summarize")]:
        template = get_template(template_name)
        dataset = load_dataset(ROOT / "experiments/data" / name)
        items = to_items(dataset, mapping_for(dataset, template.variables, None))
        assert len(items) >= 50, name
        assert all(set(i.variables) == set(template.variables) and i.target for i in items), name
        if template.choices:
            assert {i.target for i in items} <= set(template.choices), name


KILL_SCRIPT = """
import sys, time, pathlib
from prompt_lab.evaluation.evaluate import evaluate
from prompt_lab.evaluation.experiments import EvalSpec
path, model, marker = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
seen = []
def progress(fraction, message):
    if message.startswith("evaluating"):
        seen.append(message)
        if len(seen) == 2:  # two batches are logged: stop here until killed
            marker.write_text("2 batches")
            time.sleep(600)
evaluate(EvalSpec(template="sentiment", dataset=path, columns={"variables": {"review": "text"}, "target": "gold"},
                  models=[model], strategies=["zero_shot", "cot"], max_new_tokens=4, batch_size=2), progress=progress)
"""


def test_killed_evaluation_resumes_without_redoing_finished_items(home, tiny_model_dir, reviews_csv, tmp_path):
    marker = tmp_path / "marker"
    kill_when_marked(["-c", KILL_SCRIPT, str(reviews_csv), str(tiny_model_dir), str(marker)], marker)
    out = subprocess.run([sys.executable, "-m", "prompt_lab", "runs", "--json"], cwd=ROOT, env=dict(os.environ),
                         capture_output=True, text=True, check=True)
    run = json.loads(out.stdout)[0]
    assert run["status"] == "interrupted" and run["generations"] == 4  # two batches of two items
    db = open_db()
    before = list(db.query("select id, strategy, item_index from generations where run_id = ? order by id", [run["id"]]))
    resume(run["id"])
    after = list(db.query("select id, strategy, item_index from generations where run_id = ? order by id", [run["id"]]))
    assert get_run(db, run["id"])["status"] == "completed"
    assert len(after) == 12  # 6 items x 2 strategies, each exactly once
    assert len({(r["strategy"], r["item_index"]) for r in after}) == 12
    assert after[:4] == before  # the finished items were kept, not redone


def test_history_puts_two_evaluation_runs_side_by_side(home, tiny_model_dir, reviews_csv, tmp_path):
    """Two real evaluations pair by item content: the same twelve reviews in another order and another file
    format pair on all twelve; the six-review file shares too few items and is refused."""
    from prompt_lab.reporting.pairs import UnpairableError, compare_runs

    twelve = [(f"{review} (copy {n})", label) for n in range(2) for review, label in REVIEWS]
    csv_path = tmp_path / "twelve.csv"
    csv_path.write_text("text,gold\n" + "".join(f'"{r}",{label}\n' for r, label in twelve))
    jsonl_path = tmp_path / "twelve_reversed.jsonl"
    jsonl_path.write_text("".join(json.dumps({"text": r, "gold": label}) + "\n" for r, label in reversed(twelve)))
    first = evaluate(spec_for(csv_path, str(tiny_model_dir), method="label_probs", batch_size=6))
    second = evaluate(spec_for(jsonl_path, str(tiny_model_dir), strategies=["zero_shot"], max_new_tokens=3))
    pairs = compare_runs(first, second)
    assert pairs.paired == 12 and pairs.pairs[0].test.n == 12
    verdicts = "\n".join(pairs.verdict_lines())
    assert pairs.report_a.rows[0].condition == pairs.report_b.rows[0].condition == f"zero_shot · {tiny_model_dir}"
    assert f"run {first} (sentiment@" in verdicts and f", zero_shot, {tiny_model_dir}, label_probs, accuracy)" in verdicts
    assert f"run {second} (sentiment@" in verdicts and ", generate, accuracy)" in verdicts
    assert "could be chance" in verdicts or "unlikely to be chance" in verdicts
    six = evaluate(spec_for(reviews_csv, str(tiny_model_dir), method="label_probs", strategies=["zero_shot"]))
    with pytest.raises(UnpairableError, match=rf"runs {first} and {six} cannot be paired: only 0 item\(s\)"):
        compare_runs(first, six)


class StopAfter:
    """A cancel switch that turns on after `calls` checks: Stop pressed at a known point inside a batch."""

    def __init__(self, calls: int):
        self.calls, self.left = calls, calls

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0

    def set(self) -> None:
        self.left = -1


def test_stop_inside_a_batch_logs_nothing_of_it_and_resume_runs_it_whole(home, tiny_model_dir, reviews_csv):
    from prompt_lab.errors import CancelledError

    spec = spec_for(reviews_csv, str(tiny_model_dir), max_new_tokens=30, batch_size=3)
    with pytest.raises(CancelledError, match="^evaluation stopped$") as stopped:
        evaluate(spec, cancel=StopAfter(5))  # the batch loop checks once, generation then stops mid-answer
    run_id = stopped.value.run_id
    db = open_db()
    assert get_run(db, run_id)["status"] == "cancelled"
    assert db.execute("select count(*) from generations where run_id = ?", [run_id]).fetchone() == (0,)
    resume(run_id)
    rows = list(db.query("select item_index, finish_reason from generations where run_id = ?", [run_id]))
    assert sorted(r["item_index"] for r in rows) == list(range(6))
    assert "cancelled" not in {r["finish_reason"] for r in rows}


def test_every_accuracy_carries_its_chance_and_majority_rates(home, tiny_model_dir, tmp_path):
    skewed = tmp_path / "skewed.csv"
    skewed.write_text("text,gold\n" + "".join(f'"review {i}",{label}\n' for i, label in
                                             enumerate(["Positive"] * 5 + ["Negative"] * 2 + ["Neutral"])))
    run_id = evaluate(spec_for(skewed, str(tiny_model_dir), method="label_probs", batch_size=4))
    (condition,) = run_report(open_db(), run_id)["conditions"]
    assert condition["chance"] == 1 / 3 and condition["majority"] == 5 / 8
    assert condition["majority_label"] == "Positive"


def test_a_blank_input_is_refused_before_anything_runs(home, tiny_model_dir):
    from prompt_lab.errors import PromptLabError
    from prompt_lab.compare import compare

    with pytest.raises(PromptLabError, match=r"fill in 'review' first: template 'sentiment' needs a value for "
                                             r"'review'"):
        compare("sentiment", {"review": "  \n "}, models=str(tiny_model_dir))
    assert open_db().execute("select count(*) from runs").fetchone() == (0,)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stop_after=st.integers(min_value=1, max_value=9))
def test_an_interrupted_sweep_resumes_to_every_condition_seed_and_item_exactly_once(home, tiny_model_dir, reviews_csv,
                                                                                   stop_after):
    """Stopped after any number of batches of a sweep over strategies, k and seeds, then resumed: every
    (strategy, k, seed, item) is in the run exactly once, and nothing logged before the stop is redone."""
    from prompt_lab.errors import CancelledError

    spec = spec_for(reviews_csv, str(tiny_model_dir), strategies=["zero_shot", "few_shot"], k_shot=[1, 2],
                    seeds=[0, 1], max_new_tokens=2, batch_size=4)
    batches = []

    class StopAfterBatches:
        def is_set(self):  # checked before each batch and inside generation
            return len(batches) >= stop_after

    def progress(fraction, message):
        if message.startswith("evaluating"):
            batches.append(message)

    with pytest.raises(CancelledError, match="^evaluation stopped$") as stopped:
        evaluate(spec, progress=progress, cancel=StopAfterBatches())
    run_id = stopped.value.run_id
    db = open_db()
    before = {r[0] for r in db.execute("select id from generations where run_id = ?", [run_id])}
    resume(run_id)
    rows = list(db.query("select id, strategy, k_shot, seed, item_index from generations where run_id = ?", [run_id]))
    keys = [(r["strategy"], r["k_shot"], r["seed"], r["item_index"]) for r in rows]
    expected = {(s, k, seed, i) for s, ks in (("zero_shot", [0]), ("few_shot", [1, 2])) for k in ks
                for seed in (0, 1) for i in range(6)}
    assert sorted(keys) == sorted(expected)  # each exactly once
    assert before <= {r["id"] for r in rows}  # the rows logged before the stop were kept
    assert get_run(db, run_id)["status"] == "completed"


def test_gold_labels_in_other_cases_and_with_punctuation_score_like_the_canonical_ones(home, tiny_model_dir,
                                                                                       tmp_path):
    """Datasets written by people: "positive.", " NEGATIVE", "Neutral!" are the labels Positive, Negative,
    Neutral. Correctness, per-class scores and baselines are the same as with the canonical spelling."""
    canonical, odd = tmp_path / "canonical.csv", tmp_path / "odd.csv"
    spellings = {"Positive": "positive.", "Negative": " NEGATIVE", "Neutral": "Neutral!"}
    canonical.write_text("text,gold\n" + "".join(f'"{r}",{label}\n' for r, label in REVIEWS))
    odd.write_text("text,gold\n" + "".join(f'"{r}",{spellings[label]}\n' for r, label in REVIEWS))
    reports = []
    for path in (canonical, odd):
        run_id = evaluate(spec_for(path, str(tiny_model_dir), method="label_probs", batch_size=3))
        reports.append(run_report(open_db(), run_id)["conditions"][0])
    same, spelled = reports
    assert spelled["correct"] == same["correct"] and spelled["accuracy"] == same["accuracy"]
    assert spelled["classes"]["confusion"]["matrix"] == same["classes"]["confusion"]["matrix"]
    assert spelled["majority"] == same["majority"] == 1 / 3


class CountingBackend:
    """A stand-in model that answers 'Positive' and records how many prompts each generate call got."""

    revision = "stand-in"

    def __init__(self):
        self.calls = []

    def format_prompt(self, prompt):
        return prompt.as_raw_text()

    def generate(self, texts, params, cancel=None):
        from prompt_lab.models.base import Generation

        self.calls.append(len(texts))
        return [[Generation("Positive", 1, 1, 1.0, "eos")] for _ in texts]


@pytest.mark.parametrize("cap, calls", [(None, [4, 2]), ("4", [4, 2]), ("3", [3, 3]), ("1", [1] * 6)])
def test_the_server_cap_on_prompts_per_call_bounds_the_batch_size(home, reviews_csv, monkeypatch, caplog, cap,
                                                                  calls):
    """PROMPT_LAB_MAX_BATCH (Settings.max_batch_prompts) clamps a larger batch_size, with a warning; the run and
    its logged spec are otherwise the same."""
    import prompt_lab.evaluation.evaluate as evaluate_module

    if cap is None:
        monkeypatch.delenv("PROMPT_LAB_MAX_BATCH", raising=False)
    else:
        monkeypatch.setenv("PROMPT_LAB_MAX_BATCH", cap)
    backend = CountingBackend()
    monkeypatch.setattr(evaluate_module, "get_backend", lambda spec, progress=None: backend)
    monkeypatch.setattr(evaluate_module, "resolve", lambda spec: None)
    with caplog.at_level("WARNING", logger="prompt_lab.evaluation.evaluate"):
        run_id = evaluate(spec_for(reviews_csv, "stand-in", batch_size=4))
    assert backend.calls == calls
    clamped = cap is not None and int(cap) < 4
    assert ("batch_size 4 is above the cap" in caplog.text) == clamped
    with connect() as db:
        run = get_run(db, run_id)
        assert run["status"] == "completed" and run["params"]["batch_size"] == 4
        assert len(run_generations(db, run_id)) == 6


def test_capped_batch_size_reads_the_setting():
    from prompt_lab.evaluation.evaluate import capped_batch_size
    from prompt_lab.settings import get_settings

    settings = get_settings()
    spec = EvalSpec(template="t", dataset="d.csv", batch_size=64)
    assert capped_batch_size(spec, dataclasses.replace(settings, max_batch_prompts=16)) == 16
    assert capped_batch_size(spec, dataclasses.replace(settings, max_batch_prompts=64)) == 64
    assert capped_batch_size(spec, dataclasses.replace(settings, max_batch_prompts=0)) == 1  # never below one


def test_an_evaluation_names_dataset_items_that_repeat_template_examples(home, tiny_model_dir, tmp_path, capsys):
    """The dataset holds two of the sentiment template's examples (spelled with other case and spacing): the
    evaluation warns, naming their lines, and the warning reaches the report, `eval` and `eval --json`."""
    from prompt_lab.cli import print_report
    from prompt_lab.evaluation.evaluate import plan
    from prompt_lab.reporting.summary import eval_report
    from prompt_lab.reporting.text import report_json

    rows = [("Wonderful, I love it.", "Positive"),
            ("the plot made no sense and I checked my watch   every ten minutes.", "Negative"),
            ("Rude staff and cold food.", "Negative"),
            ("The zipper broke on the second day and customer service never answered my emails.", "Negative")]
    path = tmp_path / "leaky.csv"
    path.write_text("text,gold\n" + "".join(f'"{r}",{label}\n' for r, label in rows))
    spec = spec_for(path, str(tiny_model_dir), method="label_probs", strategies=["zero_shot"])
    (warning,) = plan(spec).warnings
    assert warning == ("leaky.csv: 2 item(s) repeat an example of template 'sentiment' (line 3: 'the plot made no "
                       "sense and I checked my…'; line 5: 'The zipper broke on the second day and…'); few-shot "
                       "never shows an item its own example, but these items are not unseen data: drop them from the "
                       "dataset or from the template's examples for a clean measure")
    clean = tmp_path / "clean.csv"
    clean.write_text("text,gold\n" + "".join(f'"{r}",{label}\n' for r, label in rows[::2]))
    assert plan(spec_for(clean, str(tiny_model_dir))).warnings == []
    report = eval_report(evaluate(spec))
    assert report.warnings == [warning] and report_json(report)["warnings"] == [warning]
    print_report(report)
    assert capsys.readouterr().out.splitlines()[1] == f"warning: {warning}"


def test_items_with_their_own_choices_and_several_gold_answers(home, tiny_model_dir, tmp_path):
    """BIG-bench style JSONL: each item lists its choices and its acceptable answers. The prompt shows the item's own
    choices, label probabilities score exactly those, any acceptable answer counts as right, and the run log keeps
    the item's hash, targets and choices."""
    from prompt_lab.evaluation.datasets import item_hash
    from prompt_lab.reporting.report import run_report

    items = [{"text": "Loved every minute.", "choices": ["Great", "Awful"], "gold": "Great", "aliases": ["Awful"]},
             {"text": "Never again.", "choices": ["Good", "Bad", "Meh"], "gold": "Bad", "aliases": []},
             {"text": "It was fine.", "choices": ["Yes", "No"], "gold": ["No", "Yes"]}]
    path = tmp_path / "own_choices.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    spec = EvalSpec(template="sentiment", dataset=str(path), models=[str(tiny_model_dir)], method="label_probs",
                    strategies=["zero_shot"], columns={"variables": {"review": "text"}, "target": "gold",
                                                       "choices": "choices", "aliases": "aliases"})
    run_id = evaluate(spec)
    rows = list(open_db().query("select * from generations where run_id = ? order by item_index", [run_id]))
    assert [json.loads(r["choices_json"]) for r in rows] == [i["choices"] for i in items]
    assert [list(json.loads(r["label_probs_json"])) for r in rows] == [i["choices"] for i in items]
    assert "Choose one of: Great, Awful." in rows[0]["prompt"] and "Choose one of: Good, Bad, Meh." in rows[1]["prompt"]
    assert [r["target"] for r in rows] == ["Great", "Bad", "No"]
    assert [r["targets_json"] and json.loads(r["targets_json"]) for r in rows] == [["Great", "Awful"], None,
                                                                                  ["No", "Yes"]]
    assert rows[0]["item_hash"] == item_hash({"review": "Loved every minute."}, ["Great", "Awful"])
    # items 0 and 2 accept every choice they offer, so whichever the model picks is right; item 1 only "Bad"
    assert [r["correct"] for r in rows] == [1, int(rows[1]["answer"] == "Bad"), 1]
    (condition,) = run_report(open_db(), run_id)["conditions"]
    assert condition["correct"] == [r["correct"] for r in rows]
    assert condition["chance"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)


def test_a_gold_label_outside_the_choices_is_refused_before_anything_runs(home, tmp_path, monkeypatch):
    import prompt_lab.evaluation.evaluate as module
    from prompt_lab.errors import PromptLabError

    monkeypatch.setattr(module, "get_backend", lambda *a, **k: pytest.fail("nothing is generated for a refusal"))
    path = tmp_path / "typo.csv"
    path.write_text('text,gold\n"Great",Positive\n"Awful",Negatve\n"Meh",neutral.\n"Fine",Good\n')
    with pytest.raises(PromptLabError, match=r"^typo.csv: 2 item\(s\) have a gold answer that is not one of the answer "
                                             r"choices \(line 3: 'Negatve' not in Positive, Negative, Neutral; line 5: "
                                             r"'Good' not in Positive, Negative, Neutral\); fix the gold labels or the "
                                             r"template's choices$"):
        evaluate(spec_for(path, "default"))
    assert not list(open_db().query("select id from runs"))  # no run row for a refused evaluation


def test_label_probs_with_a_text_metric_is_refused_before_anything_runs(home, tmp_path):
    """A template whose answers are text defaults to ROUGE; label probabilities pick a choice, right or wrong, so the
    pair is refused in words before a run row is written (it used to fail mid-run with a traceback)."""
    from prompt_lab.errors import PromptLabError
    from prompt_lab.runlog.store import list_runs, open_db

    template = tmp_path / "mc.yaml"
    template.write_text("name: mc\ninstruction: Pick one.\nvariables: [q]\nchoices: [yes, no]\nanswer: {type: text}\n")
    data = tmp_path / "mc.csv"
    data.write_text("q,answer\nIs water wet?,yes\nIs fire cold?,no\n")
    spec = EvalSpec(template=str(template), dataset=str(data), method="label_probs")
    with pytest.raises(PromptLabError, match="metric 'rouge' \\(the default for this template\\) scores text"):
        evaluate(spec)
    assert list_runs(open_db()) == []
    spec.metric = "accuracy"
    from prompt_lab.evaluation.evaluate import plan

    assert plan(spec).metric == "accuracy"
