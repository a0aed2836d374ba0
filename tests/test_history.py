"""History queries and run-again on real SQLite files."""
import csv
import io
import sys

from conftest import ROOT

from prompt_lab.models import GenerationParams
from prompt_lab.runlog.queries import RunFilter, export_csv, filter_choices, runs_table, strategy_stats
from prompt_lab.compare import compare, rerun
from prompt_lab.runlog.store import get_run, open_db, run_generations

sys.path.insert(0, str(ROOT / "bench"))


def test_filters_stats_and_export_on_a_100k_generation_log(home):
    from bench_app import seed_generations

    seed_generations(home / "runs.db", runs=25_000, per_run=4)
    db = open_db()
    page = runs_table(db, RunFilter())
    assert len(page) == 200 and page[0]["id"] == 25_000 and page[0]["generations"] == 4
    only = runs_table(db, RunFilter(template="arithmetic", strategy="cot", period="last hour"))
    assert {r["template_name"] for r in only} == {"arithmetic"}
    stats = strategy_stats(db, RunFilter(template="sentiment"))
    assert {s["strategy"] for s in stats} == {"zero_shot", "few_shot", "cot", "few_shot_cot"}
    assert sum(s["generations"] for s in stats) == 25_000
    assert filter_choices(db)["template"] == ["arithmetic", "plausibility", "sentiment", "summarize"]
    text, count = export_csv(db, RunFilter(template="summarize"), limit=1000)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert count == len(rows) == 1000 and {r["template_name"] for r in rows} == {"summarize"}
    # the History queries use the indexes rather than scanning every generation per run
    plan = " ".join(str(r) for r in db.execute(
        "explain query plan select count(*) from generations g where g.run_id = 5").fetchall())
    assert "idx_generations_run_id" in plan


def test_run_again_uses_the_logged_template_version_and_settings(home, tiny_model_dir, tmp_path):
    from prompt_lab.prompts.templates import parse_template

    template = parse_template((ROOT / "tests/data/capital.yaml").read_text())
    first = compare(template, {"country": "Peru"}, strategies=["zero_shot", "cot"], models=str(tiny_model_dir),
                    params=GenerationParams(max_new_tokens=5, seed=3), k=1)
    again = rerun(first.run_id)
    assert again.run_id != first.run_id
    assert again.template_hash == first.template_hash and again.params == first.params
    db = open_db()
    old, new = get_run(db, first.run_id), get_run(db, again.run_id)
    for key in ("template_name", "template_hash", "models", "strategies", "params", "options", "variables"):
        assert old[key] == new[key], key
    # greedy on the same model: the same outputs
    assert [g["output"] for g in run_generations(db, first.run_id)] == \
        [g["output"] for g in run_generations(db, again.run_id)]


def test_history_tables_read_like_a_person_expects(home, tiny_model_dir):
    """Runs: short start time, short model names, the best condition's accuracy for an evaluation. Outputs of an
    evaluation: 1-based item, the gold answer and a right/wrong mark."""
    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.runlog.queries import generations_table

    run_id = evaluate(EvalSpec(template="sentiment", dataset=str(ROOT / "experiments/data/sentiment.csv"),
                               models=[str(tiny_model_dir)], method="label_probs", limit=8))
    db = open_db()
    rows = list(db.query("select item_index, answer, target, correct from generations where run_id = ? "
                         "order by id", [run_id]))
    accuracy = sum(r["correct"] for r in rows) / len(rows)
    (run,) = runs_table(db, RunFilter())
    assert run["accuracy"] == f"{accuracy:.0%} zero_shot"
    assert run["models"] == tiny_model_dir.name and len(run["created_utc"]) == 16 and "T" not in run["created_utc"]
    shown = generations_table(db, run_id)
    assert [(g["item_index"], g["answer"], g["target"], g["correct"]) for g in shown] == [
        (r["item_index"] + 1, r["answer"], r["target"], "✓" if r["correct"] else "✗") for r in rows]
    assert {g["model_spec"] for g in shown} == {tiny_model_dir.name}
