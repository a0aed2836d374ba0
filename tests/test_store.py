"""The run log on real SQLite files: migrations, WAL, lifecycle, crash recovery."""
import json
import os
import sqlite3
import subprocess
import sys
import threading

from conftest import ROOT, kill_when_marked

from prompt_lab.runlog.store import (finish_run, get_run, list_runs, log_generations, migrations, open_db,
                              run_generations, start_run)


def test_open_db_migrates_once_and_uses_wal(home):
    db = open_db()
    assert {"runs", "generations", "template_versions"} <= set(db.table_names())
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    applied = [m.name for m in migrations.applied(db)]
    assert applied == ["m001_runs_and_generations", "m002_evaluation_columns", "m003_jobs",
                       "m004_token_source", "m005_item_identity", "m006_visitors", "m007_search_candidates"]
    open_db()  # idempotent
    assert [m.name for m in migrations.applied(open_db())] == applied
    # a plain sqlite3 connection (no app) reads it
    assert sqlite3.connect(home / "runs.db").execute("select count(*) from runs").fetchone() == (0,)


def test_run_lifecycle_and_queries(home):
    db = open_db()
    run_id = start_run(db, kind="compare", template_name="t", template_hash="abc", models=["m"],
                       strategies=["zero_shot"], params={"temperature": 0})
    assert get_run(db, run_id)["status"] == "running"
    log_generations(db, run_id, [{"strategy": "zero_shot", "output": "hi", "prompt": "p", "completion_tokens": 1}])
    finish_run(db, run_id)
    run = get_run(db, run_id)
    assert run["status"] == "completed" and run["duration_ms"] >= 0 and run["models"] == ["m"]
    assert run_generations(db, run_id)[0]["output"] == "hi"
    assert list_runs(db)[0]["generations"] == 1


def test_threads_write_with_their_own_connections(home):
    open_db()
    errors = []

    def work(i):
        try:
            db = open_db()
            rid = start_run(db, kind="compare", template_name=f"t{i}")
            log_generations(db, rid, [{"strategy": "cot", "output": str(j)} for j in range(20)])
            finish_run(db, rid)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = open_db()
    assert db.execute("select count(*) from generations").fetchone()[0] == 160
    assert {r["status"] for r in list_runs(db)} == {"completed"}


CRASH_SCRIPT = """
import sys, time, pathlib
from prompt_lab.compare import compare
from prompt_lab.models import GenerationParams
model, marker = sys.argv[1], pathlib.Path(sys.argv[2])
compare("sentiment", {"review": "first, finished"}, strategies=["zero_shot"], models=model,
        params=GenerationParams(max_new_tokens=4))
def hang(fraction, message):
    if message.startswith("generating"):
        marker.write_text("mid-run")
        time.sleep(600)
compare("sentiment", {"review": "second, killed"}, strategies=["zero_shot", "cot"], models=model,
        params=GenerationParams(max_new_tokens=16), progress=hang)
"""


def _runs_from_a_new_process(env):
    out = subprocess.run([sys.executable, "-m", "prompt_lab", "runs", "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return {r["id"]: r for r in json.loads(out.stdout)}


def test_killed_run_is_interrupted_and_committed_work_survives(home, tiny_model_dir, tmp_path):
    env = dict(os.environ)
    marker = tmp_path / "marker"

    def owner_alive():  # another process starting while the owner lives leaves the run alone
        assert _runs_from_a_new_process(env)[2]["status"] == "running"

    kill_when_marked(["-c", CRASH_SCRIPT, str(tiny_model_dir), str(marker)], marker, owner_alive)
    runs = _runs_from_a_new_process(env)
    assert runs[2]["status"] == "interrupted"
    assert runs[1]["status"] == "completed" and runs[1]["generations"] == 1
    db = open_db()
    assert run_generations(db, 1)[0]["variables"] == {"review": "first, finished"}
    assert run_generations(db, 2) == []


def test_a_cli_run_killed_while_the_app_runs_shows_interrupted_in_the_apps_history(home, tiny_model_dir, tmp_path):
    """The app opened the log before the CLI run started (its once-per-process check is spent): History's list and
    `runs` still see that the run's process died."""
    from prompt_lab.runlog.queries import RunFilter, runs_table
    from prompt_lab.runlog.store import list_runs

    db = open_db()  # the app's first open
    marker = tmp_path / "marker"

    def while_alive():
        assert {r["id"]: r["status"] for r in runs_table(db, RunFilter())}[2] == "running"

    kill_when_marked(["-c", CRASH_SCRIPT, str(tiny_model_dir), str(marker)], marker, while_alive)
    assert {r["id"]: r["status"] for r in runs_table(db, RunFilter())} == {1: "completed", 2: "interrupted"}
    assert list_runs(db)[0]["error"] == "the process running it ended before it finished"
