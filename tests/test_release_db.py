"""A run log written by the released code (tests/data/release_runs.db, see tests/data/README.md) opens with the
current code, gets every newer migration, and reads back what a user saw: runs, answers, accuracy, jobs."""
import json
import shutil

import pytest

from conftest import ROOT

from prompt_lab.reporting.report import run_report
from prompt_lab.runlog.store import connect, get_run, list_runs, migrations, run_generations, run_template
from prompt_lab.tuning import jobs

RELEASE_DB = ROOT / "tests/data/release_runs.db"
RELEASE_MIGRATIONS = ["m001_runs_and_generations", "m002_evaluation_columns", "m003_jobs", "m004_token_source"]


@pytest.fixture
def release_db(home):
    """A copy of the release's file as the user's run log (the committed file itself is never opened)."""
    path = home / "runs.db"
    shutil.copy(RELEASE_DB, path)
    return path


def test_the_release_file_gets_every_migration_and_keeps_its_history(release_db):
    with connect(release_db) as db:
        applied = [m.name for m in migrations.applied(db)]
        assert applied[:len(RELEASE_MIGRATIONS)] == RELEASE_MIGRATIONS  # released ones are kept, in order
        assert migrations.pending(db) == []  # and any added since are applied
        assert [(r["id"], r["kind"], r["status"], r["generations"]) for r in list_runs(db)] == [
            (2, "eval", "completed", 3), (1, "compare", "completed", 2)]


def test_a_release_compare_run_reads_back(release_db):
    with connect(release_db) as db:
        run = get_run(db, 1)
        assert (run["kind"], run["template_name"], run["status"]) == ("compare", "sentiment", "completed")
        assert run["variables"] == {"review": "Wonderful, I love it."} and run["models"] == ["stand-in"]
        assert run["strategies"] == ["zero_shot", "cot"] and run["command"]
        rows = run_generations(db, 1)
        assert [(g["strategy"], g["answer"], g["model_spec"]) for g in rows] == [
            ("zero_shot", "Positive", "stand-in"), ("cot", "Positive", "stand-in")]
        assert rows[1]["output"] == "The reviewer loves it. Answer: Positive."
        assert run_template(db, run).name == "sentiment"  # the exact template version it used


def test_a_release_evaluation_reads_back_with_its_accuracy(release_db):
    with connect(release_db) as db:
        run = get_run(db, 2)
        assert (run["kind"], run["template_name"], run["status"]) == ("eval", "sentiment", "completed")
        assert run["params"]["name"] == "release eval" and run["options"]["items"] == 3
        (condition,) = run_report(db, 2)["conditions"]
        assert (condition["label"], condition["items"]) == ("zero_shot · stand-in", 3)
        assert condition["accuracy"] == pytest.approx(1 / 3)  # "Positive" is right for 1 of the 3 reviews
        gold = [(g["item_index"], g["target"], g["correct"]) for g in run_generations(db, 2)]
        assert gold == [(0, "Positive", 1), (1, "Negative", 0), (2, "Neutral", 0)]


def test_a_release_job_reads_back_with_its_progress(release_db):
    with connect(release_db) as db:
        jobs.mark_interrupted_jobs(db)  # what every look at the Tune tab does first
        job = jobs.get_job(db, 1)
        assert (job["name"], job["status"], job["step"], job["max_steps"]) == ("release tune", "completed", 2, 2)
        assert (job["loss"], job["val_loss"], job["eval_run_id"]) == (1.5, 1.75, 2)
        assert json.loads(job["spec_json"])["template"] == "sentiment"
        assert jobs.tuned_spec(job) == "default+/adapters/release/adapter"
        assert [(e["step"], e["loss"], e["val_loss"]) for e in jobs.job_events(db, 1)] == [
            (1, 2.5, None), (2, 1.5, None), (2, None, 1.75)]
        assert [j["id"] for j in jobs.list_jobs(db)] == [1] and jobs.latest_job(db) == 1


def test_the_committed_file_is_the_release_one():
    """Guards against rewriting the fixture with newer code: the release's file has exactly its 4 migrations."""
    import sqlite3

    conn = sqlite3.connect(f"file:{RELEASE_DB}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute("select name from _sqlite_migrations order by id")]
    finally:
        conn.close()
    assert names == RELEASE_MIGRATIONS
