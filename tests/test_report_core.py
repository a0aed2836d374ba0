"""The core behind the thin views (no model): one report dataclass with the rows every view shows, the run
pairing of History's side-by-side, the CLI printing those same rows, the compare batch cap, and no connection
left open by the handlers that read the log."""
import json

import pytest

from prompt_lab.errors import PromptLabError
from prompt_lab.reporting.pairs import compare_runs, pair_conditions
from prompt_lab.reporting.summary import EvalReport, condition_rows, eval_report
from prompt_lab.runlog.store import open_db

from test_report import eval_run, item


def two_runs(db):
    a = eval_run(db, [item(i, "Positive", "Positive" if i < 8 else "Negative") for i in range(10)]
                 + [item(i, "Positive", "Positive" if i % 2 else "Negative", strategy="few_shot", k_shot=3)
                    for i in range(10)], items=10)
    b = eval_run(db, [item(i, "Positive", "Positive" if i % 2 else "Negative") for i in range(10)], items=10)
    return a, b


def test_eval_report_rows_labels_and_baseline_tests(home):
    db = open_db()
    a, _ = two_runs(db)
    report = eval_report(a, db)
    assert isinstance(report, EvalReport)
    assert report.labels == ["zero_shot · default", "few_shot k=3 · default"]
    zero, few = report.rows
    assert (zero.condition, zero.kind, zero.value, zero.no_answer, zero.wrong) == ("zero_shot · default",
                                                                                   "accuracy", 0.8, 0, 2)
    assert zero.ci_low <= 0.8 <= zero.ci_high and zero.strict == 0.8 and zero.latency_s == pytest.approx(0.01)
    assert few.value == 0.5
    (test,) = report.paired
    assert (test.a, test.b, test.n) == ("zero_shot · default", "few_shot k=3 · default", 10)
    assert report.condition("few_shot k=3 · default")["k"] == 3 and report.condition("nope") is None
    data = json.loads(json.dumps(report.to_dict()))
    assert {"run_id", "status", "template", "dataset", "items", "metric", "rows", "labels", "paired",
            "conditions"} <= set(data)
    # opened and closed its own connection when given none
    assert eval_report(a).rows == report.rows


def test_score_metrics_have_score_rows_and_no_paired_tests(home):
    db = open_db()
    run = eval_run(db, [item(i, "a b c", "a b", score=0.5) for i in range(3)], metric="rouge")
    report = eval_report(run, db)
    (row,) = report.rows
    assert row.kind == "score" and row.value == 0.5 and row.strict is None and set(row.corpus) >= {"rouge1"}
    assert report.paired == []


def test_two_runs_pair_by_strategy_k_and_seed_else_first_with_first(home):
    db = open_db()
    a, b = two_runs(db)
    pairs = compare_runs(a, b)
    assert (pairs.run_a, pairs.run_b) == (a, b)
    (pair,) = pairs.pairs  # only zero_shot k=0 seed 0 is in both
    assert (pair.a.label, pair.b.label) == ("zero_shot · default", "zero_shot · default") and pair.test.n == 10
    (line,) = pairs.verdict_lines()
    assert line.startswith(f"- No clear difference between run {a} (sentiment@h, zero_shot, default, generate, "
                           f"accuracy) and run {b} (sentiment@h, zero_shot, default, generate, accuracy) (80% vs 50%")
    c = eval_run(db, [item(i, "Positive", "Positive", strategy="cot") for i in range(10)])
    fallback = pair_conditions(eval_report(b, db), eval_report(c, db))
    assert [(x["strategy"], y["strategy"]) for x, y in fallback] == [("zero_shot", "cot")]
    assert json.loads(json.dumps(pairs.to_dict()))["pairs"][0]["test"]["verdict"] == pair.test.verdict
    with pytest.raises(PromptLabError, match="enter two evaluation run ids"):
        compare_runs(a, 0)


def test_history_side_by_side_shows_the_core_rows(home):
    from prompt_lab.ui.evaluate_tab import summary_rows
    from prompt_lab.ui.history_tab import compare_runs as view

    db = open_db()
    a, b = two_runs(db)
    table_a, table_b, verdicts = view(a, b)
    assert table_a == summary_rows(eval_report(a, db)) and table_a[0][:3] == [
        "zero_shot · default", "80.0%", table_a[0][2]] and " – " in table_a[0][2]
    assert verdicts.startswith("10 items have the same inputs and gold answer in both runs (paired by content).\n"
                               f"- No clear difference between run {a} (sentiment@h, zero_shot, default, generate, ")


def test_cli_prints_the_report_rows(home, capsys):
    from prompt_lab.cli import print_report
    from prompt_lab.reporting.text import report_json

    db = open_db()
    a, _ = two_runs(db)
    report = eval_report(a, db)
    print_report(report)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"run {a} (running) · template sentiment · dataset reviews.csv (10 items) · metric accuracy · "
                      "method generate · examples random")  # how few-shot chose its examples (k=3 here)
    assert out[2].startswith("zero_shot · default") and " 80.0% [" in out[2]
    assert out[-1].startswith("paired test: ") and "exact McNemar" in out[-1]
    data = report_json(report)
    assert data["conditions"][0]["accuracy"] == 0.8 and data["rows"][0]["value"] == 0.8


def test_the_report_gives_wall_time_and_items_per_second_and_a_resume_counts_run_time_not_the_pause(home):
    """eval --json, the CLI's first line and the Evaluate head give the run's wall time and throughput; a run
    stopped and resumed counts the time it ran in each session, not the pause between them."""
    from prompt_lab.reporting.text import report_json, report_lines
    from prompt_lab.runlog.store import finish_run, reopen_run, update_run_options

    db = open_db()
    a, _ = two_runs(db)
    running = eval_report(a, db)  # still running: no wall time yet, and no line claims one
    assert (running.wall_s, running.items_per_s, running.scored) == (None, None, 20)
    assert "items/s" not in report_lines(running)[0] and report_json(running)["wall_s"] is None
    db.conn.execute("update runs set created_utc = ? where id = ?", [ago(4), a])  # it ran for 4 s, then stopped
    finish_run(db, a, "cancelled")
    first = db.execute("select duration_ms from runs where id = ?", [a]).fetchone()[0]
    assert 4000 <= first < 6000
    db.conn.execute("update runs set created_utc = ? where id = ?", [ago(3600), a])  # an hour's pause, then...
    reopen_run(db, a)  # ...the resume, which runs 2 s more
    update_run_options(db, a, resumed_utc=ago(2))
    finish_run(db, a)
    total = db.execute("select duration_ms from runs where id = ?", [a]).fetchone()[0]
    assert first + 2000 <= total < first + 4000  # the hour it sat stopped (created_utc) is not counted
    report = eval_report(a, db)
    assert report.wall_s == pytest.approx(total / 1000, abs=0.01) and report.scored == 20
    assert report.items_per_s == pytest.approx(20 / report.wall_s, rel=0.01)
    data = report_json(report)
    assert (data["wall_s"], data["scored"], data["items_per_s"]) == (report.wall_s, 20, report.items_per_s)
    assert report_lines(report)[0].endswith(f" · 20 items in {report.wall_s:.1f} s, {report.items_per_s:.1f} items/s")


def ago(seconds: float) -> str:
    from datetime import datetime, timedelta, timezone

    when = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_compare_refuses_more_prompts_than_the_batch_cap_before_loading_a_model(home, monkeypatch):
    import sys

    runner = sys.modules["prompt_lab.compare"]
    monkeypatch.setenv("PROMPT_LAB_MAX_BATCH", "2")
    monkeypatch.setattr(runner, "get_backend", lambda *a, **k: pytest.fail("no model is loaded for a refusal"))
    with pytest.raises(PromptLabError, match=r"asks each model for 3 answers in one batch \(3 prompts x 1 sample\), "
                                             r"more than the server's max_batch_prompts of 2 \(PROMPT_LAB_MAX_BATCH\)"):
        runner.compare("sentiment", {"review": "fine"}, strategies=["zero_shot", "few_shot", "cot"])
    from prompt_lab.models import GenerationParams

    with pytest.raises(PromptLabError, match=r"4 answers in one batch \(2 prompts x 2 samples\)"):
        runner.compare("sentiment", {"review": "fine"}, strategies=["zero_shot", "cot"],
                       params=GenerationParams(n=2, temperature=0.7))
    runner.check_batch(2, 1)  # at the cap is fine
    assert not list(open_db().query("select id from runs"))  # nothing was logged


def test_the_log_readers_leave_no_connection_open(home, monkeypatch):
    """Every reader in the views and the CLI closes what it opens (tune's 1-second poll among them)."""
    from prompt_lab.runlog import store

    opened, closed = [], []
    real = store.open_db

    def tracking(path=None):
        db = real(path)
        opened.append(db)
        close = db.close
        db.close = lambda: (closed.append(db), close())[1]
        return db

    monkeypatch.setattr(store, "open_db", tracking)
    db = real()
    a, b = two_runs(db)
    from prompt_lab.cli import main
    from prompt_lab.ui import evaluate_tab, history_tab, tune_tab

    evaluate_tab.show_results(a)
    evaluate_tab.paired(a, "zero_shot · default", b, "zero_shot · default")
    evaluate_tab.extraction_html(a, "zero_shot · default")
    history_tab.refresh("(any)", "(any)", "(any)", "(any)", "any time")
    history_tab.show_run(a)
    history_tab.compare_runs(a, b)
    tune_tab.poll(None, 0)
    assert main(["runs", "--json"]) == 0
    assert opened and len(closed) == len(opened)


def test_model_pickers_list_the_adapters_of_finished_jobs(home):
    from prompt_lab.runlog.queries import adapter_jobs, finished_job_count
    from prompt_lab.ui.app import model_choices

    db = open_db()
    for i, adapter in enumerate([None, "/tmp/adapters/job-2"]):
        db.execute("insert into jobs (kind, name, status, spec_json, created_utc, step, adapter_path) values "
                   "('tune', ?, 'completed', ?, '2026-01-01T00:00:00Z', 0, ?)",
                   [f"job{i}", json.dumps({"model": "default"}), adapter])
    db.conn.commit()
    assert finished_job_count(db) == 1 and [j["adapter_path"] for j in adapter_jobs(db)] == ["/tmp/adapters/job-2"]
    assert model_choices()[0] == "default" and "default+/tmp/adapters/job-2" in model_choices()


def test_a_condition_that_does_not_beat_the_majority_class_says_so(home, capsys):
    """The issue's case: every review called Positive scores 25% on 12 items while always answering the most common
    gold (Negative) scores 42%: the table, the CLI and `eval --json` all say so."""
    from prompt_lab.cli import print_report
    from prompt_lab.reporting.summary import majority_verdict
    from prompt_lab.reporting.text import report_json

    from test_report import eval_run, item

    gold = ["Positive"] * 3 + ["Negative"] * 5 + ["Neutral"] * 4
    db = open_db()
    run = eval_run(db, [item(i, g, "Positive") for i, g in enumerate(gold)], items=12)
    report = eval_report(run, db)
    (row,) = report.rows
    assert (row.value, row.chance, row.majority, row.majority_label) == (0.25, pytest.approx(1 / 3), 5 / 12,
                                                                         "Negative")
    assert row.beats_majority is False
    assert row.baseline_note == (f"does not beat always answering 'Negative' (42%): 25%, and its 95% CI "
                                 f"{row.ci_low:.0%}-{row.ci_high:.0%} includes 42%")
    print_report(report)
    out = capsys.readouterr().out
    assert f"    baseline: {row.baseline_note}" in out and " 33.3%    41.7%" in out
    data = json.loads(json.dumps(report_json(report)))
    assert (data["conditions"][0]["chance"], data["conditions"][0]["majority"]) == (pytest.approx(1 / 3), 5 / 12)
    assert data["rows"][0]["beats_majority"] is False and data["method"] == "generate"
    # the rule itself: beaten only when the whole CI lies above the majority rate
    assert majority_verdict(0.9, 0.8, 0.95, 0.5, "No") == (True, "")
    assert majority_verdict(0.2, 0.1, 0.3, 0.5, "No") == (False, "worse than always answering 'No' (50%): 20%, "
                                                                 "95% CI 10%-30%")
    assert majority_verdict(0.6, 0.5, 0.7, 0.5, None)[1].startswith("does not beat always giving the most common")
    assert majority_verdict(0.6, 0.5, 0.7, None, None) == (None, "")
