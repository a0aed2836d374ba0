"""Grids of tune settings: expansion of a tune file with lists, the queue of jobs it makes, and their ranking (the
real runs use the tiny random model: plumbing, not quality)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

from prompt_lab.errors import PromptLabError
from prompt_lab.runlog import jobs as table
from prompt_lab.runlog.store import connect
from prompt_lab.tuning import jobs
from prompt_lab.tuning.grid import (GRID_FIELDS, TuneGrid, grid_from_text, grid_ranking, job_grid_ranking,
                                    load_tune_file, submit)
from prompt_lab.tuning.spec import TuneError, TuneSpec, load_tune_spec

DATA = ROOT / "experiments/data/sentiment_codes.csv"
HEAD = f"""template: sentiment-codes
dataset: {DATA}
columns: {{variables: {{review: review}}, target: code}}
"""


def tune_file(tmp_path, body: str, name: str = "grid.yaml"):
    path = tmp_path / name
    path.write_text(HEAD + body)
    return path


def refusal(path) -> str:
    with pytest.raises(TuneError) as info:
        load_tune_file(path)
    return str(info.value)


def test_lists_expand_to_the_cross_product_each_job_named_by_what_it_varies(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "codes.csv").write_text(DATA.read_text())
    path = tmp_path / "tune_grid_codes.yaml"
    path.write_text(HEAD.replace(str(DATA), "data/codes.csv") + "name: sentiment_lora\nlearning_rate: [0.001, 0.003]\n"
                    "alpha: 32\nr: [4, 8]\ntarget_modules: [q_proj, v_proj]\nmax_steps: 5\n")
    grid = load_tune_file(path)
    assert isinstance(grid, TuneGrid) and grid.name == "sentiment_lora"
    assert grid.varied == {"learning_rate": [0.001, 0.003], "r": [4, 8]}  # target_modules' list is its value
    assert [j.spec.name for j in grid.jobs] == ["sentiment_lora lr=0.001 r=4", "sentiment_lora lr=0.001 r=8",
                                                "sentiment_lora lr=0.003 r=4", "sentiment_lora lr=0.003 r=8"]
    assert [j.settings for j in grid.jobs][1] == {"learning_rate": 0.001, "r": 8}
    for job in grid.jobs:
        assert (job.spec.learning_rate, job.spec.r) == tuple(job.settings.values())
        assert job.spec.alpha == 32 and job.spec.max_steps == 5 and job.spec.target_modules == ["q_proj", "v_proj"]
        assert job.spec.dataset == str(tmp_path / "data" / "codes.csv")  # resolved against the file, as for one spec
    unnamed = tune_file(tmp_path, "seed: [1, 2]\n", "tune_grid_seeds.yaml")
    assert [j.spec.name for j in load_tune_file(unnamed).jobs] == ["tune_grid_seeds seed=1", "tune_grid_seeds seed=2"]


def test_a_file_without_lists_is_one_spec_as_before():
    path = ROOT / "experiments/tune_sentiment_codes.yaml"
    spec = load_tune_file(path)
    assert isinstance(spec, TuneSpec) and spec.to_dict() == load_tune_spec(path).to_dict()


def test_the_shipped_grid_is_two_by_two_on_the_default_model():
    grid = load_tune_file(ROOT / "experiments/tune_grid_sentiment.yaml")
    assert len(grid.jobs) == 4 and set(grid.varied) == {"learning_rate", "r"}
    assert all(j.spec.model == "default" and 0 < j.spec.max_steps <= 20 for j in grid.jobs)


def test_exponent_numbers_read_as_numbers_in_files_and_the_grid_box(tmp_path):
    grid = load_tune_file(tune_file(tmp_path, "learning_rate: [1e-3, 3E-3]\nweight_decay: 1e-2\n"))
    assert [j.settings["learning_rate"] for j in grid.jobs] == [0.001, 0.003]
    assert {j.spec.weight_decay for j in grid.jobs} == {0.01}
    assert load_tune_spec(tune_file(tmp_path, "learning_rate: 2e-3\n", "one.yaml")).learning_rate == 0.002
    base = load_tune_spec(tune_file(tmp_path, "", "base.yaml"))
    assert [j.spec.learning_rate for j in grid_from_text(base, "learning_rate: [1e-3, 5e-4]").jobs] == [0.001, 0.0005]
    assert "field 'r'" in refusal(tune_file(tmp_path, "r: [1e-3]\n", "r.yaml"))  # r is whole: still refused


def test_duplicate_values_are_tried_once(tmp_path):
    grid = load_tune_file(tune_file(tmp_path, "learning_rate: [0.001, 0.0010, 0.002]\nr: [4, 4]\nepochs: [1, 1.0]\n"))
    assert grid.varied == {"learning_rate": [0.001, 0.002], "r": [4], "epochs": [1]}
    assert [j.spec.name for j in grid.jobs] == ["grid lr=0.001 r=4 epochs=1", "grid lr=0.002 r=4 epochs=1"]


def test_at_most_sixteen_combinations(tmp_path):
    assert len(load_tune_file(tune_file(tmp_path, "r: [1, 2, 3, 4]\nseed: [1, 2, 3, 4]\n")).jobs) == 16
    path = tune_file(tmp_path, "\nr: [1, 2, 3, 4, 5]\nseed: [1, 2, 3, 4]\n")
    assert refusal(path) == (f"{path}, line 5: the lists make 20 combinations (5 r x 4 seed); a grid runs at most 16 "
                             "jobs, one after another: give fewer values")


@pytest.mark.parametrize("body, message", [
    ("r: [4, 8]\nlearning_rate: [0.001, -1]\n", "line 5: field 'learning_rate': must be above 0, got -1"),
    ("r:\n  - 4\n  - 0\n  - 8\n", "line 6: field 'r': must be at least 1, got 0"),  # the line of the bad value
    ("r: [4, eight]\n", "line 4: field 'r': must be a whole number, got 'eight'"),
    ("r: [4, [8]]\n", "line 4: field 'r': must be a whole number, got [8]"),
    ("seed: []\n", "line 4: field 'seed': is an empty list: give one or more values to try"),
    ("r: [4, 8]\nmethod: [lora, prompt_tuning]\n",
     "line 5: field 'method': takes one value, not a list; a list makes a grid only in " + ", ".join(GRID_FIELDS)),
    ("strategy: [zero_shot, cot]\n", "line 4: field 'strategy': takes one value, not a list"),
    ("r: [4, 8]\nmodel: openai:x@http://h\n", "line 5: field 'model': 'openai:x@http://h' is a remote model"),
])
def test_bad_lists_are_refused_naming_file_line_and_field(tmp_path, body, message):
    path = tune_file(tmp_path, body)
    assert refusal(path).startswith(f"{path}, {message}")


def test_the_tune_tabs_grid_box_takes_only_grid_settings():
    base = TuneSpec(dataset=str(DATA), template="sentiment-codes", name="codes")
    grid = grid_from_text(base, "r: [4, 8]\nalpha: 32\n")
    assert [(j.spec.name, j.spec.r, j.spec.alpha) for j in grid.jobs] == [("codes r=4", 4, 32), ("codes r=8", 8, 32)]
    for text, message in [("r: [4, 8]\ntemplate: [a, b]", "Grid, line 2: field 'template': is not a grid setting"),
                          ("r: 4", "Grid: no list of values to try"),
                          ("- 4\n- 8", "Grid: give each setting to try as a list"),
                          ("r: [4, 8]\ndropout: [0.1, 1.5]", "Grid, line 2: field 'dropout': must be at least 0 and "
                                                             "below 1, got 1.5")]:
        with pytest.raises(TuneError) as info:
            grid_from_text(base, text)
        assert str(info.value).startswith(message), str(info.value)


def insert_finished(db, job_id, status, val_losses):
    """A grid job as the job process leaves it: its status and the validation losses it logged."""
    db.execute("update jobs set status = ? where id = ?", [status, job_id])
    for step, loss in enumerate(val_losses, 1):
        db.execute("insert into job_events (job_id, created_utc, step, val_loss) values (?, '', ?, ?)",
                   [job_id, step, loss])
    db.conn.commit()


def test_the_ranking_puts_finished_jobs_by_best_validation_loss_first_then_the_rest(home):
    spec = TuneSpec(dataset=str(DATA), template="sentiment-codes", name="g")
    with connect() as db:
        ids = table.insert_grid_jobs(db, "tune", "g", [(f"g seed={s}", spec.to_dict(), {"seed": s})
                                                      for s in range(5)])
        table.insert_job(db, "tune", "alone", spec.to_dict())
        insert_finished(db, ids[0], "completed", [0.9, 0.7, 0.8])  # best 0.7, last 0.8
        insert_finished(db, ids[1], "failed", [0.1])
        insert_finished(db, ids[2], "completed", [0.6, 0.75])  # best 0.6
        insert_finished(db, ids[3], "cancelled", [])
        spec_json = json.loads(table.get_job(db, ids[2])["spec_json"])
    assert spec_json["grid"] == {"id": ids[0], "name": "g", "settings": {"seed": 2}, "jobs": 5}
    ranking = grid_ranking(ids[0])
    assert [(r.rank, r.job_id, r.status, r.val_loss) for r in ranking.jobs] == [
        (1, ids[2], "completed", 0.6), (2, ids[0], "completed", 0.7), (None, ids[1], "failed", 0.1),
        (None, ids[3], "cancelled", None), (None, ids[4], "queued", None)]
    assert ranking.varied == ["seed"] and job_grid_ranking(ids[4]).grid_id == ids[0]
    assert job_grid_ranking(ids[-1] + 1) is None  # a job of its own has no grid
    headers, rows = ranking.table()
    assert rows[0][:5] == ["1", ids[2], "seed=2", "completed", "0.6000"] and rows[4][3] == "queued"
    with connect() as db:  # the job process and a report's tune file see the settings without the grid
        assert table.job_spec(table.get_job(db, ids[2])) == spec.to_dict()
        assert table.own_job(db, ids[2])[0] == spec.to_dict()
    with pytest.raises(PromptLabError, match="there is no grid 999"):
        grid_ranking(999)


def test_a_public_space_counts_a_grid_as_one_submission_of_at_most_four_jobs(home, monkeypatch):
    from prompt_lab.access import visitors

    monkeypatch.setenv("SPACE_ID", "owner/space")
    monkeypatch.setenv("PROMPT_LAB_ALLOW_TRAINING", "1")
    monkeypatch.setenv("PROMPT_LAB_PUBLIC_MAX_STEPS", "7")
    monkeypatch.setenv("PROMPT_LAB_PUBLIC_MODELS", "default")
    base = TuneSpec(dataset=str(DATA), template="sentiment-codes", name="g", max_steps=100)
    with visitors.acting_as(visitors.Visitor("anon:a", "a")):
        with pytest.raises(PromptLabError, match="this grid has 5 combinations; on a public Space a grid queues at "
                                                 "most 4 jobs"):
            submit(grid_from_text(base, "seed: [1, 2, 3, 4, 5]"), start=False)
        ids = submit(grid_from_text(base, "seed: [1, 2]"), start=False)
        with connect() as db:
            assert [json.loads(table.get_job(db, i)["spec_json"])["max_steps"] for i in ids] == [7, 7]
        with pytest.raises(PromptLabError, match="you already have a tuning job queued or running"):
            submit(grid_from_text(base, "seed: [3, 4]"), start=False)


def test_the_tune_tab_queues_a_grid_and_shows_its_ranking(home, tiny_model_dir):
    from prompt_lab.ui import tune_tab

    form = ("sentiment-codes", "sentiment_codes.csv", "code", "review", "zero_shot", str(tiny_model_dir), "lora", 8,
            16, "q_proj, v_proj", 0.002, 3, 4, 128, 0)
    assert "r: [4, 8]" in tune_tab.cli_line(*form, "r: [4, 8]")
    assert "# the Grid box is not used: Grid, line 1: field 'r'" in tune_tab.cli_line(*form, "r: [4, 0]")
    first = tune_tab.start(*form, "r: [4, 8]")
    try:
        update = tune_tab.grid_table(first)
        assert update["visible"] and update["label"].startswith(f"Grid {first} (sentiment-codes-lora)")
        assert [row[1:3] for row in update["value"]["data"]] == [[first, "r=4"], [first + 1, "r=8"]]
    finally:
        jobs.cancel(first + 1)  # the queued one first, so stopping the first starts nothing
        jobs.cancel(first)
    single = tune_tab.start(*form, "  ")
    jobs.cancel(single)
    assert tune_tab.grid_table(single) == {"__type__": "update", "visible": False}


def test_the_cli_runs_a_grid_as_a_queue_and_prints_the_ranking_as_json(home, tiny_model_dir, tmp_path):
    path = tune_file(tmp_path, f"model: {tiny_model_dir}\nlearning_rate: [0.0001, 0.05]\nmax_steps: 4\nbatch_size: 4\n"
                               "eval_steps: 2\nsave_steps: 2\nlimit: 24\nmax_seq_len: 128\n", "tune_grid_tiny.yaml")
    out = subprocess.run([sys.executable, "-m", "prompt_lab", "tune", str(path), "--json"], cwd=ROOT,
                         env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    grid_id = result["grid"]["id"]
    assert result["grid"] == {"id": grid_id, "name": "tune_grid_tiny", "varied": ["learning_rate"]}
    ranked = result["jobs"]
    assert sorted(j["job_id"] for j in ranked) == [grid_id, grid_id + 1]
    assert {j["name"] for j in ranked} == {"tune_grid_tiny lr=0.0001", "tune_grid_tiny lr=0.05"}
    with connect() as db:
        rows = {j: table.get_job(db, j) for j in (grid_id, grid_id + 1)}
        best = {j: min(e["val_loss"] for e in table.job_events(db, j) if e["val_loss"] is not None) for j in rows}
    first, second = rows[grid_id], rows[grid_id + 1]
    assert first["finished_utc"] <= second["started_utc"]  # one after another, through the queue
    assert [j["rank"] for j in ranked] == [1, 2] and [j["val_loss"] for j in ranked] == sorted(best.values())
    assert best[grid_id] != best[grid_id + 1] and all(j["val_loss"] == best[j["job_id"]] for j in ranked)
    for job in ranked:
        assert job["status"] == "completed" and job["eval_run_id"] == rows[job["job_id"]]["eval_run_id"]
        assert job["settings"] == {"learning_rate": 0.0001 if job["name"].endswith("0.0001") else 0.05}
        for side in ("base", "tuned"):
            low, high = job[f"{side}_ci"]
            assert 0 <= low <= job[f"{side}_accuracy"] <= high <= 1
        assert job["metric"] == "accuracy" and 0 <= job["p_value"] <= 1
    from prompt_lab.cli.tuning import ranking_lines

    lines = ranking_lines(grid_ranking(grid_id))
    assert lines[1].split()[:3] == ["rank", "job", "settings"] and lines[2].split()[:2] == ["1", str(ranked[0]["job_id"])]
