"""Read side of the run log for browsing: filtered runs, generations, per-strategy stats, CSV export.

Every query filters in SQL and returns at most a page of rows, so the History view stays fast on a log
with hundreds of thousands of generations.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlite_utils

from prompt_lab.access import visitors
from prompt_lab.models.naming import short_model
from prompt_lab.runlog.store import mark_interrupted, visible

# Every other package reads the log through these functions (and store.py's); only runlog/ speaks SQL.

PERIODS = {"any time": None, "last hour": timedelta(hours=1), "last 24 hours": timedelta(days=1),
           "last 7 days": timedelta(days=7), "last 30 days": timedelta(days=30)}


@dataclass
class RunFilter:
    kind: str | None = None
    template: str | None = None
    strategy: str | None = None
    model: str | None = None
    status: str | None = None
    period: str = "any time"  # one of PERIODS

    def where(self, alias: str = "r") -> tuple[str, list]:
        """The SQL condition for these filters, always within the runs the current visitor may see."""
        mine, args = visible(alias)
        clauses = [mine]
        for column, value in (("kind", self.kind), ("template_name", self.template), ("status", self.status)):
            if value:
                clauses.append(f"{alias}.{column} = ?")
                args.append(value)
        if self.strategy:
            clauses.append(f"exists (select 1 from json_each({alias}.strategies_json) where value = ?)")
            args.append(self.strategy)
        if self.model:
            clauses.append(f"exists (select 1 from json_each({alias}.models_json) where value = ?)")
            args.append(self.model)
        if PERIODS.get(self.period):
            since = datetime.now(timezone.utc) - PERIODS[self.period]
            clauses.append(f"{alias}.created_utc >= ?")
            args.append(since.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        return " where " + " and ".join(clauses), args


RUN_COLUMNS = ["id", "created_utc", "kind", "status", "template_name", "models", "strategies", "generations",
               "accuracy", "duration_s"]
RUN_HEADERS = ["run", "started (UTC)", "kind", "status", "template", "models", "strategies", "outputs",
               "best accuracy", "time (s)"]


def runs_table(db: sqlite_utils.Database, filters: RunFilter, limit: int = 200) -> list[dict]:
    """Newest matching runs (one page), with their output counts and, for evaluations, the best condition's
    accuracy (first sample of each item, e.g. "35% few_shot k=3"). Runs whose process died since the app opened
    the log (a CLI run killed while the app runs) are marked interrupted first."""
    mark_interrupted(db)
    where, args = filters.where()
    sql = (
        "select r.id, r.created_utc, r.kind, r.status, r.template_name, "
        "(select group_concat(value, ', ') from json_each(r.models_json)) as models, "
        "(select group_concat(value, ', ') from json_each(r.strategies_json)) as strategies, "
        "(select count(*) from generations g where g.run_id = r.id) as generations, "
        "round(r.duration_ms / 1000.0, 2) as duration_s "
        f"from runs r{where} order by r.id desc limit ?"
    )
    rows = list(db.query(sql, args + [int(limit)]))
    evals = [r["id"] for r in rows if r["kind"] == "eval"]
    best: dict[int, str] = {}
    if evals:
        marks = ", ".join("?" * len(evals))
        per_condition = db.query(
            "select run_id, strategy, k_shot, model_spec, avg(correct) as accuracy from generations "
            f"where run_id in ({marks}) and sample_index = 0 and correct is not null "
            "group by run_id, strategy, k_shot, model_spec, seed order by accuracy desc", evals)
        for row in per_condition:
            if row["run_id"] not in best:
                k = f" k={row['k_shot']}" if row["k_shot"] else ""
                best[row["run_id"]] = f"{row['accuracy']:.0%} {row['strategy']}{k}"
    for row in rows:
        row["created_utc"] = (row["created_utc"] or "").replace("T", " ")[:16]
        row["accuracy"] = best.get(row["id"], "")
        row["models"] = ", ".join(short_model(m.strip()) for m in (row["models"] or "").split(", ") if m.strip())
    return rows


GENERATION_COLUMNS = ["id", "item_index", "strategy", "model_spec", "sample_index", "answer", "target", "correct",
                      "output", "prompt_tokens", "completion_tokens", "latency_ms", "finish_reason"]
GENERATION_HEADERS = ["id", "item", "strategy", "model", "sample", "answer", "gold", "correct", "output",
                      "prompt tokens", "completion tokens", "latency (ms)", "ended by"]


def generations_table(db: sqlite_utils.Database, run_id: int, limit: int = 500) -> list[dict]:
    """A run's outputs (one page): answer, and for evaluations the item, gold answer and whether it was right."""
    where, args = visible()
    sql = (f"select {', '.join(GENERATION_COLUMNS)} from generations where run_id = ? and run_id in "
           f"(select id from runs where {where}) order by id limit ?")
    rows = list(db.query(sql, [int(run_id)] + args + [int(limit)]))
    for row in rows:
        row["model_spec"] = short_model(row["model_spec"] or "")
        row["item_index"] = "" if row["item_index"] is None else row["item_index"] + 1
        row["correct"] = {1: "✓", 0: "✗"}.get(row["correct"], "")
        row["target"] = row["target"] or ""
        row["answer"] = "" if row["answer"] is None else row["answer"]
    return rows


def strategy_stats(db: sqlite_utils.Database, filters: RunFilter) -> list[dict]:
    """Per strategy and model over the matching runs: count, mean and spread of latency and tokens."""
    where, args = filters.where()
    sql = (
        "select g.strategy, g.model_spec as model, count(*) as generations, "
        "avg(g.latency_ms) as latency_ms, "
        "sqrt(max(avg(g.latency_ms * g.latency_ms) - avg(g.latency_ms) * avg(g.latency_ms), 0)) as latency_sd, "
        "avg(g.completion_tokens) as completion_tokens, avg(g.prompt_tokens) as prompt_tokens, "
        "avg(g.tokens_per_s) as tokens_per_s "
        f"from generations g join runs r on r.id = g.run_id{where} group by g.strategy, g.model_spec "
        "order by g.model_spec, g.strategy"
    )
    return list(db.query(sql, args))


def filter_choices(db: sqlite_utils.Database) -> dict[str, list[str]]:
    """Values present in the log, for the History filters."""
    where, args = visible("r")

    def distinct(column):
        return [r[0] for r in db.execute(f"select distinct {column} from runs r where {where} order by 1",
                                         args).fetchall() if r[0]]

    return {
        "template": distinct("template_name"),
        "kind": distinct("kind"),
        "status": distinct("status"),
        "model": [r[0] for r in db.execute(f"select distinct j.value from runs r, json_each(r.models_json) j where "
                                           f"{where} order by 1", args).fetchall() if r[0]],
    }


EXPORT_COLUMNS = ["run_id", "created_utc", "template_name", "template_hash", "strategy", "model_spec",
                  "model_revision", "seed", "sample_index", "item_index", "variables_json", "params_json", "prompt",
                  "output", "answer", "target", "correct", "prompt_tokens", "completion_tokens", "latency_ms",
                  "tokens_per_s", "finish_reason"]


def export_csv(db: sqlite_utils.Database, filters: RunFilter, limit: int = 200_000) -> tuple[str, int]:
    """The generations of the matching runs as CSV text; returns (csv, rows)."""
    where, args = filters.where()
    columns = ", ".join(f"g.{c}" for c in EXPORT_COLUMNS)
    cursor = db.execute(f"select {columns} from generations g join runs r on r.id = g.run_id{where} "
                        "order by g.id limit ?", args + [int(limit)])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for row in cursor:
        writer.writerow(row)
        count += 1
    return out.getvalue(), count


EVAL_ROW_COLUMNS = ("strategy, model_spec, k_shot, seed, item_index, sample_index, answer, strict_answer, target, "
                    "correct, correct_strict, score, completion_tokens, latency_ms, label_probs_json, variables_json, "
                    "item_hash, targets_json, choices_json, template_hash, params_json")


def eval_generations(db: sqlite_utils.Database, run_id: int) -> list[dict]:
    """An evaluation run's scored generations, by item then sample (what a report is computed from)."""
    where, args = visible()
    return list(db.query(f"select {EVAL_ROW_COLUMNS} from generations where run_id = ? and run_id in "
                         f"(select id from runs where {where}) order by item_index, sample_index",
                         [int(run_id)] + args))


def extraction_rows(db: sqlite_utils.Database, run_id: int, limit: int) -> list[dict]:
    """Outputs with their strict and flexible answers, gold and verdict, by item then sample (at most `limit`)."""
    where, args = visible()
    return list(db.query("select strategy, model_spec, k_shot, seed, item_index, sample_index, output, answer, "
                         "strict_answer, target, correct, template_hash from generations where run_id = ? and "
                         "run_id in "
                         f"(select id from runs where {where}) order by item_index, sample_index limit ?",
                         [int(run_id)] + args + [int(limit)]))


SAMPLE_COLUMNS = ("id, strategy, model_spec, model_revision, k_shot, seed, item_index, variables_json, prompt, output, "
                  "answer, target, targets_json, correct, score, completion_tokens, latency_ms, finish_reason, "
                  "template_hash")


def sample_generations(db: sqlite_utils.Database, run_id: int, per_condition: int = 30) -> list[dict]:
    """At most `per_condition` first-sample rows of each condition (template version, strategy, model, k, seed) of a
    run: wrong ones first (then unscored ones, lowest score first, then right ones), by item within each group. A
    report's sample, never every row of a large run."""
    where, args = visible()
    return list(db.query(
        f"select * from (select {SAMPLE_COLUMNS}, row_number() over (partition by template_hash, strategy, model_spec, "
        "k_shot, seed "
        "order by case when correct = 0 then 0 when correct is null then 1 else 2 end, score, item_index, id) as rank "
        f"from generations where run_id = ? and coalesce(sample_index, 0) = 0 and run_id in (select id from runs where "
        f"{where})) where rank <= ? order by model_spec, strategy, k_shot, seed, rank",
        [int(run_id)] + args + [int(per_condition)]))


def adapter_jobs(db: sqlite_utils.Database, limit: int = 20) -> list[dict]:
    """The newest tuning jobs that left an adapter (spec_json, adapter_path), for the model pickers."""
    # the visitor's own only (an admin sees others' jobs, but a visitor's model may only use their own adapters)
    return list(db.query("select spec_json, adapter_path from jobs where adapter_path is not null and "
                         "coalesce(visitor, '') = ? order by id desc limit ?", [visitors.current().key, int(limit)]))


def finished_job_count(db: sqlite_utils.Database) -> int:
    """How many tuning jobs have left an adapter (its change means a new tuned model to offer)."""
    where, args = visible("jobs")
    return db.execute(f"select count(*) from jobs where adapter_path is not null and {where}", args).fetchone()[0]
