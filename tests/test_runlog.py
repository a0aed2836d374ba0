"""The run log's own rules, checked on real SQLite files without a model: what a run row holds from start to
finish, who owns a running run, how dead owners are found, template versions, listing and filtering."""
import json
import os
import re
import sqlite3
import subprocess
import sys
import time

import pytest

from prompt_lab.errors import PromptLabError
from prompt_lab.runlog.store import (RUN_STATUSES, owner_alive, process_start, finish_run, get_run, list_runs,
                              log_generations, mark_interrupted, open_db, reopen_run, run_generations, run_template,
                              save_template_version, start_run, utc_now)

UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SENTIMENT = "name: sentiment\ninstruction: Classify.\nvariables: [review]\nchoices: [Positive, Negative]\n"


def dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_timestamps_are_utc_with_milliseconds():
    stamp = utc_now()
    assert UTC.match(stamp), stamp
    assert abs(time.time() - time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + time.timezone) < 5


def test_a_started_run_holds_everything_that_repeats_it(home):
    db = open_db()
    run_id = start_run(db, kind="eval", template_name="sentiment", template_hash="abc123", models=["default", "m2"],
                       strategies=["zero_shot", "cot"], params={"émoji": "✓", "temperature": 0.7},
                       options={"k": 3}, variables={"review": "très bon"}, command="python -m prompt_lab eval x.yaml")
    run = get_run(db, run_id)
    assert {k: run[k] for k in ("kind", "status", "template_name", "template_hash", "models", "strategies", "params",
                                "options", "variables", "command", "error", "finished_utc", "duration_ms")} == {
        "kind": "eval", "status": "running", "template_name": "sentiment", "template_hash": "abc123",
        "models": ["default", "m2"], "strategies": ["zero_shot", "cot"], "params": {"temperature": 0.7, "émoji": "✓"},
        "options": {"k": 3}, "variables": {"review": "très bon"}, "command": "python -m prompt_lab eval x.yaml",
        "error": None, "finished_utc": None, "duration_ms": None}
    assert run["owner_pid"] == os.getpid() and run["owner_start"] == process_start(os.getpid()) != ""
    assert UTC.match(run["created_utc"])
    # JSON columns are readable as written (UTF-8, sorted keys) by any SQLite tool
    raw = sqlite3.connect(home / "runs.db").execute("select params_json, variables_json from runs").fetchone()
    assert raw == ('{"temperature": 0.7, "émoji": "✓"}', '{"review": "très bon"}')
    bare = get_run(db, start_run(db, kind="compare"))
    assert (bare["models"], bare["strategies"], bare["params"], bare["options"], bare["variables"]) == \
        ([], [], {}, {}, {})
    assert (bare["template_name"], bare["template_hash"], bare["command"]) == ("", "", "")
    assert get_run(db, 999) is None


@pytest.mark.parametrize("status, error", [("completed", None), ("failed", "ValueError: boom"),
                                           ("cancelled", "stopped by the user"), ("interrupted", "gone")])
def test_finishing_a_run_records_status_time_and_reason(home, status, error):
    db = open_db()
    run_id = start_run(db, kind="compare")
    started = time.time() - 1000  # the run began 1000 s ago
    db.conn.execute("update runs set created_utc = ? where id = ?",
                    [time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)) + f".{int(started % 1 * 1000):03d}Z",
                     run_id])
    finish_run(db, run_id, status, error)
    run = get_run(db, run_id)
    assert (run["status"], run["error"]) == (status, error)
    assert UTC.match(run["finished_utc"]) and run["finished_utc"] >= run["created_utc"]
    assert 1_000_000 <= run["duration_ms"] < 1_000_500 and run["duration_ms"] == round(run["duration_ms"], 1)
    assert get_run(db, run_id)["owner_pid"] == os.getpid()


def test_an_unknown_status_is_refused(home):
    db = open_db()
    run_id = start_run(db, kind="compare")
    with pytest.raises(ValueError, match="unknown run status 'done'"):
        finish_run(db, run_id, "done")
    assert get_run(db, run_id)["status"] == "running"
    assert RUN_STATUSES == ("running", "completed", "failed", "cancelled", "interrupted")


def test_reopening_takes_over_a_stopped_run(home):
    db = open_db()
    run_id = start_run(db, kind="eval")
    db.conn.execute("update runs set owner_pid = 1, owner_start = 'x' where id = ?", [run_id])
    finish_run(db, run_id, "cancelled", "stopped by the user")
    reopen_run(db, run_id)
    run = get_run(db, run_id)
    assert (run["status"], run["finished_utc"], run["error"]) == ("running", None, None)
    assert (run["owner_pid"], run["owner_start"]) == (os.getpid(), process_start(os.getpid()))
    other = start_run(db, kind="eval")
    finish_run(db, other, "failed", "x")
    assert get_run(db, other)["status"] == "failed"  # only the run asked for is taken over


def test_who_owns_a_running_run(home):
    me = os.getpid()
    assert owner_alive(me, process_start(me))
    assert owner_alive(me, None) and owner_alive(me, "")  # no start token recorded: the pid decides
    assert not owner_alive(me, "12345")  # the pid was reused by another process
    assert not owner_alive(None, None) and not owner_alive(0, "")
    assert not owner_alive(dead_pid(), None)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # ended, not reaped yet
    deadline = time.monotonic() + 10
    while open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not owner_alive(zombie.pid, None)
    zombie.wait()
    assert process_start(dead_pid()) == ""
    # the start token is the process's start time in clock ticks (field 22 of /proc/<pid>/stat)
    assert process_start(me) == open(f"/proc/{me}/stat").read().split()[21]


def test_a_process_named_like_a_zombie_is_still_alive(tmp_path):
    """/proc/<pid>/stat puts the program name in parentheses; a name holding ") Z" must not fool the parser."""
    odd = tmp_path / "srv) Z 1 (x"
    odd.symlink_to(sys.executable)
    proc = subprocess.Popen([str(odd), "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while ") Z 1 (x" not in open(f"/proc/{proc.pid}/stat").read():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stat = open(f"/proc/{proc.pid}/stat").read()
        start = process_start(proc.pid)
        assert start == stat[stat.rindex(")") + 2:].split()[19] and start.isdigit()
        assert owner_alive(proc.pid, start) and owner_alive(proc.pid, None)
    finally:
        proc.kill()
        proc.wait()


def test_runs_of_dead_owners_are_marked_interrupted_and_live_ones_left_alone(home):
    db = open_db()
    live = start_run(db, kind="compare")
    dead = start_run(db, kind="compare")
    reused = start_run(db, kind="compare")
    done = start_run(db, kind="compare")
    finish_run(db, done)
    db.conn.execute("update runs set owner_pid = ? where id = ?", [dead_pid(), dead])
    db.conn.execute("update runs set owner_start = 'another process' where id = ?", [reused])
    db.conn.commit()
    assert mark_interrupted(db) == 2
    status = {r["id"]: (r["status"], r["error"]) for r in db.query("select id, status, error from runs")}
    gone = ("interrupted", "the process running it ended before it finished")
    assert status == {live: ("running", None), dead: gone, reused: gone, done: ("completed", None)}
    assert UTC.match(get_run(db, dead)["finished_utc"])
    assert mark_interrupted(db) == 0  # nothing left to mark


def test_the_first_open_in_a_process_marks_dead_runs(home, tmp_path):
    path = tmp_path / "other" / "runs.db"
    first = open_db(path)
    run_id = start_run(first, kind="compare")
    first.conn.execute("update runs set owner_pid = ? where id = ?", [dead_pid(), run_id])
    first.conn.commit()
    script = (f"from prompt_lab.runlog.store import open_db, get_run; db = open_db({str(path)!r}); "
              f"print(get_run(db, {run_id})['status'])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.strip() == "interrupted"


def test_connections_use_wal_a_busy_timeout_and_foreign_keys(home, tmp_path):
    path = tmp_path / "deep" / "er" / "runs.db"
    db = open_db(path)  # parent folders are made, and the log is the file asked for
    start_run(db, kind="compare")
    assert path.is_file() and sqlite3.connect(path).execute("select count(*) from runs").fetchone() == (1,)
    pragmas = {name: db.execute(f"pragma {name}").fetchone()[0]
               for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")}
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1, "synchronous": 1}
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):  # a generation needs a run
        log_generations(db, 12345, [{"strategy": "zero_shot"}])


def test_generations_keep_every_column_in_order(home):
    db = open_db()
    run_id = start_run(db, kind="eval")
    ids = log_generations(db, run_id, [
        {"strategy": "zero_shot", "model_spec": "default", "prompt": "p1", "output": "Positive", "answer": "Positive",
         "item_index": 0, "k_shot": 0, "target": "Positive", "correct": 1, "score": 1.0, "seed": 7,
         "variables_json": json.dumps({"review": "good"}), "label_probs_json": json.dumps({"Positive": 0.9}),
         "token_source": "local", "latency_ms": 12.5, "finish_reason": "eos"},
        {"strategy": "cot", "output": "hmm"}])
    assert ids == sorted(ids) and len(ids) == 2
    first, second = run_generations(db, run_id)
    assert first["id"] == ids[0] and first["variables"] == {"review": "good"} and first["label_probs"] == {
        "Positive": 0.9}
    assert {k: first[k] for k in ("strategy", "model_spec", "prompt", "output", "answer", "item_index", "target",
                                  "correct", "score", "seed", "token_source", "latency_ms", "finish_reason")} == {
        "strategy": "zero_shot", "model_spec": "default", "prompt": "p1", "output": "Positive", "answer": "Positive",
        "item_index": 0, "target": "Positive", "correct": 1, "score": 1.0, "seed": 7, "token_source": "local",
        "latency_ms": 12.5, "finish_reason": "eos"}
    assert second["output"] == "hmm" and second["answer"] is None and UTC.match(second["created_utc"])
    assert run_generations(db, run_id + 1) == [] and log_generations(db, run_id, []) == []


def test_template_versions_are_kept_once_and_give_back_the_exact_template(home):
    db = open_db()
    save_template_version(db, "sentiment", "h1", SENTIMENT)
    save_template_version(db, "sentiment", "h1", "name: other\n")  # the same hash is never overwritten
    rows = list(db.query("select hash, name, content_yaml, created_utc from template_versions"))
    assert [(r["hash"], r["name"], r["content_yaml"]) for r in rows] == [("h1", "sentiment", SENTIMENT)]
    assert UTC.match(rows[0]["created_utc"])
    run_id = start_run(db, kind="compare", template_name="sentiment", template_hash="h1")
    template = run_template(db, get_run(db, run_id))
    assert (template.name, template.choices) == ("sentiment", ["Positive", "Negative"])
    assert template.source == "template version h1"
    lost = start_run(db, kind="compare", template_hash="gone")
    with pytest.raises(PromptLabError, match=f"run {lost}: its template version gone is not in the log"):
        run_template(db, get_run(db, lost))


def test_listing_runs_newest_first_with_filters_and_counts(home):
    db = open_db()
    made = [start_run(db, kind=kind, template_name=name) for kind, name in
            [("compare", "a"), ("eval", "a"), ("compare", "b"), ("eval", "b"), ("compare", "a")]]
    log_generations(db, made[0], [{"strategy": "cot"}] * 3)
    finish_run(db, made[1], "failed", "x")
    assert [r["id"] for r in list_runs(db)] == made[::-1]
    assert [r["id"] for r in list_runs(db, limit=2)] == made[:2:-1][:2] == [made[4], made[3]]
    assert [r["id"] for r in list_runs(db, kind="compare")] == [made[4], made[2], made[0]]
    assert [r["id"] for r in list_runs(db, template="a", kind="eval")] == [made[1]]
    assert [r["id"] for r in list_runs(db, status="failed")] == [made[1]]
    counts = {r["id"]: r["generations"] for r in list_runs(db)}
    assert counts[made[0]] == 3 and counts[made[2]] == 0
    assert list_runs(db, kind="tune") == []
    assert list_runs(db)[0]["models"] == []  # JSON columns decoded
    for _ in range(50):
        start_run(db, kind="compare")
    assert len(list_runs(db)) == 50  # one page by default


# ----------------------------------------------------------------------------------------- browsing (History)

def history_log(db):
    """Five runs of different kinds, templates, strategies, models and ages, with known outputs."""
    from prompt_lab.runlog.store import finish_run

    runs = {}
    for name, kind, template, strategies, models in [
            ("old", "compare", "sentiment", ["zero_shot"], ["default"]),
            ("grid", "compare", "sentiment", ["zero_shot", "cot"], ["default", "openai:llama@http://gpu:8000/v1"]),
            ("eval", "eval", "arithmetic", ["zero_shot", "few_shot"], ["/models/tiny-llama"]),
            ("failed", "compare", "arithmetic", ["cot"], ["default"]),
            ("tune", "eval", "sentiment-codes", ["zero_shot"], ["default", "default+/home/u/jobs/3/adapter"])]:
        runs[name] = start_run(db, kind=kind, template_name=template, strategies=strategies, models=models)
    db.conn.execute("update runs set created_utc = '2020-01-01T00:00:00.000Z' where id = ?", [runs["old"]])
    db.conn.commit()
    log_generations(db, runs["old"], [{"strategy": "zero_shot", "model_spec": "default", "latency_ms": 100.0,
                                       "completion_tokens": 2, "output": "Positive", "answer": "Positive"}])
    log_generations(db, runs["grid"], [
        {"strategy": "zero_shot", "model_spec": "default", "latency_ms": 200.0, "completion_tokens": 4},
        {"strategy": "zero_shot", "model_spec": "default", "latency_ms": 400.0, "completion_tokens": 8},
        {"strategy": "cot", "model_spec": "openai:llama@http://gpu:8000/v1", "latency_ms": 1000.0,
         "completion_tokens": 64, "tokens_per_s": 64.0}])
    log_generations(db, runs["eval"], [
        {"strategy": s, "k_shot": k, "seed": 0, "model_spec": "/models/tiny-llama", "item_index": i, "sample_index": 0,
         "target": "4", "answer": a, "correct": c, "output": f"out {i}"}
        for s, k, rows in (("zero_shot", 0, [("4", 1), ("5", 0), (None, 0), ("5", 0)]),
                           ("few_shot", 3, [("4", 1), ("4", 1), ("4", 1), ("5", 0)]))
        for i, (a, c) in enumerate(rows)])
    finish_run(db, runs["failed"], "failed", "boom")
    for run_id in (runs["old"], runs["grid"], runs["eval"]):
        finish_run(db, run_id)
    return runs


def test_every_history_filter_narrows_the_runs(home):
    from prompt_lab.runlog.queries import RunFilter, runs_table

    db = open_db()
    runs = history_log(db)
    shown = lambda **f: [r["id"] for r in runs_table(db, RunFilter(**f))]  # noqa: E731
    everything = [runs[n] for n in ("tune", "failed", "eval", "grid", "old")]
    assert shown() == everything
    assert shown(kind="eval") == [runs["tune"], runs["eval"]]
    assert shown(template="arithmetic") == [runs["failed"], runs["eval"]]
    assert shown(strategy="cot") == [runs["failed"], runs["grid"]]
    assert shown(model="openai:llama@http://gpu:8000/v1") == [runs["grid"]]
    assert shown(status="failed") == [runs["failed"]]
    assert shown(period="last hour") == everything[:-1]  # the 2020 run is older than an hour
    assert shown(period="any time") == everything
    assert shown(kind="compare", template="sentiment", strategy="zero_shot") == [runs["grid"], runs["old"]]
    assert shown(model="nobody") == []
    assert [r["id"] for r in runs_table(db, RunFilter(), limit=2)] == everything[:2]


def test_the_runs_table_reads_like_a_person_expects(home):
    from prompt_lab.runlog.queries import RUN_COLUMNS, RUN_HEADERS, RunFilter, runs_table

    db = open_db()
    runs = history_log(db)
    rows = {r["id"]: r for r in runs_table(db, RunFilter())}
    assert len(RUN_COLUMNS) == len(RUN_HEADERS) and set(RUN_COLUMNS) <= set(rows[runs["eval"]])
    assert rows[runs["eval"]]["accuracy"] == "75% few_shot k=3"  # the best condition, first sample of each item
    assert rows[runs["tune"]]["accuracy"] == "" and rows[runs["grid"]]["accuracy"] == ""
    assert rows[runs["grid"]]["models"] == "default, llama @ gpu:8000"
    assert rows[runs["tune"]]["models"] == "default, default + 3/adapter"
    assert rows[runs["grid"]]["strategies"] == "zero_shot, cot" and rows[runs["grid"]]["generations"] == 3
    assert rows[runs["old"]]["created_utc"] == "2020-01-01 00:00"
    assert rows[runs["failed"]]["status"] == "failed" and rows[runs["old"]]["duration_s"] >= 0


def test_the_outputs_of_a_run_show_item_gold_and_a_mark(home):
    from prompt_lab.runlog.queries import GENERATION_COLUMNS, GENERATION_HEADERS, generations_table

    db = open_db()
    runs = history_log(db)
    rows = generations_table(db, runs["eval"])
    assert len(GENERATION_COLUMNS) == len(GENERATION_HEADERS)
    assert [(r["item_index"], r["answer"], r["target"], r["correct"]) for r in rows[:4]] == [
        (1, "4", "4", "✓"), (2, "5", "4", "✗"), (3, "", "4", "✗"), (4, "5", "4", "✗")]
    assert {r["model_spec"] for r in rows} == {"tiny-llama"}
    compare_rows = generations_table(db, runs["grid"])
    assert [(r["item_index"], r["target"], r["correct"]) for r in compare_rows] == [("", "", "")] * 3
    assert [r["model_spec"] for r in compare_rows] == ["default", "default", "llama @ gpu:8000"]
    assert len(generations_table(db, runs["eval"], limit=3)) == 3


def test_latency_and_token_statistics_per_strategy_and_model(home):
    from prompt_lab.runlog.queries import RunFilter, strategy_stats

    db = open_db()
    history_log(db)
    stats = {(s["strategy"], s["model"]): s for s in strategy_stats(db, RunFilter(kind="compare"))}
    zero = stats[("zero_shot", "default")]  # 100, 200 and 400 ms
    assert zero["generations"] == 3 and zero["latency_ms"] == pytest.approx(700 / 3)
    assert zero["latency_sd"] == pytest.approx(((100**2 + 200**2 + 400**2) / 3 - (700 / 3) ** 2) ** 0.5)
    assert zero["completion_tokens"] == pytest.approx(14 / 3)
    cot = stats[("cot", "openai:llama@http://gpu:8000/v1")]
    assert (cot["generations"], cot["latency_ms"], cot["latency_sd"], cot["tokens_per_s"]) == (1, 1000.0, 0.0, 64.0)
    assert [(s["model"], s["strategy"]) for s in strategy_stats(db, RunFilter(kind="compare"))] == [
        ("default", "zero_shot"), ("openai:llama@http://gpu:8000/v1", "cot")]  # by model, then strategy
    assert strategy_stats(db, RunFilter(template="nothing")) == []


def test_filter_choices_are_the_values_in_the_log(home):
    from prompt_lab.runlog.queries import filter_choices

    db = open_db()
    history_log(db)
    assert filter_choices(db) == {
        "template": ["arithmetic", "sentiment", "sentiment-codes"], "kind": ["compare", "eval"],
        "status": ["completed", "failed", "running"],
        "model": ["/models/tiny-llama", "default", "default+/home/u/jobs/3/adapter", "openai:llama@http://gpu:8000/v1"]}


def test_the_csv_export_holds_the_filtered_outputs_with_gold_and_correct(home):
    import csv
    import io

    from prompt_lab.runlog.queries import EXPORT_COLUMNS, RunFilter, export_csv

    db = open_db()
    runs = history_log(db)
    text, count = export_csv(db, RunFilter(kind="eval"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert count == len(rows) == 8 and list(rows[0]) == EXPORT_COLUMNS
    assert {r["run_id"] for r in rows} == {str(runs["eval"])}
    assert [(r["item_index"], r["answer"], r["target"], r["correct"]) for r in rows[:2]] == [
        ("0", "4", "4", "1"), ("1", "5", "4", "0")]
    text, count = export_csv(db, RunFilter(), limit=2)
    assert count == 2 and len(list(csv.DictReader(io.StringIO(text)))) == 2
    assert export_csv(db, RunFilter(template="none")) == (",".join(EXPORT_COLUMNS) + "\r\n", 0)


def test_pages_and_blank_values_in_the_history_tables(home):
    from prompt_lab.runlog.queries import RunFilter, export_csv, generations_table, runs_table

    db = open_db()
    bare = start_run(db, kind="compare")  # no models, no template
    log_generations(db, bare, [{"strategy": "zero_shot"}] * 501)
    shown = generations_table(db, bare)
    assert len(shown) == 500 and shown[0]["model_spec"] == "" and shown[0]["answer"] == ""
    (row,) = runs_table(db, RunFilter())
    assert (row["models"], row["template_name"], row["accuracy"]) == ("", "", "")
    winner = start_run(db, kind="eval")
    log_generations(db, winner, [{"strategy": "zero_shot", "k_shot": 0, "seed": 0, "model_spec": "m", "sample_index": 0,
                                  "item_index": 0, "correct": 1}])
    assert runs_table(db, RunFilter(kind="eval"))[0]["accuracy"] == "100% zero_shot"  # no "k=" without examples
    db.conn.executemany("insert into generations (run_id, strategy) values (?, 'cot')", [(bare,)] * 199_500)
    db.conn.commit()
    assert export_csv(db, RunFilter())[1] == 200_000  # one export holds at most 200,000 outputs


def test_the_date_filter_counts_in_utc_wherever_the_server_is(home, monkeypatch):
    from prompt_lab.runlog.queries import RunFilter, runs_table

    db = open_db()
    recent, older = start_run(db, kind="compare"), start_run(db, kind="compare")
    two_hours_ago = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 7200))
    db.conn.execute("update runs set created_utc = ? where id = ?", [two_hours_ago, older])
    db.conn.commit()
    monkeypatch.setenv("TZ", "America/New_York")  # a server five hours behind UTC
    time.tzset()
    try:
        assert [r["id"] for r in runs_table(db, RunFilter(period="last hour"))] == [recent]
        assert [r["id"] for r in runs_table(db, RunFilter(period="last 24 hours"))] == [older, recent]  # newest id first
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_asking_whether_an_owner_is_alive_does_not_signal_it():
    """The liveness probe is signal 0: a live owner (here a sleeping child) is found alive and left running."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.2)
        assert owner_alive(child.pid, process_start(child.pid))
        time.sleep(0.2)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
