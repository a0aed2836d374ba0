"""History queries and run-again on real SQLite files."""
import csv
import io
import sys

from conftest import ROOT

from prompt_lab.models import GenerationParams
from prompt_lab.queries import RunFilter, export_csv, filter_choices, runs_table, strategy_stats
from prompt_lab.runner import compare, rerun
from prompt_lab.store import get_run, open_db, run_generations

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
    from prompt_lab.templates import parse_template

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
