"""Training jobs in the run log: the `jobs` and `job_events` tables, and every read and write of them.

The job lifecycle (spawning, stopping, resuming processes) lives in prompt_lab.tuning.jobs; this module only
stores what it decides. Each write is one short transaction.
"""
from __future__ import annotations

import json
import os
from typing import Callable

from sqlite_utils import Database

from prompt_lab.access import visitors
from prompt_lab.runlog.store import owner_alive, process_start, utc_now, visible

JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
GRID_KEY = "grid"  # in a grid job's spec_json: {"id": its first job's id, "name", "settings": what this job varies}


def insert_job(db: Database, kind: str, name: str, spec: dict) -> int:
    """Queue a job for the current visitor; returns its id."""
    with db.conn:
        return _insert(db, kind, name, spec)


def _insert(db: Database, kind: str, name: str, spec: dict) -> int:
    return db.conn.execute("insert into jobs (kind, name, status, spec_json, created_utc, step, visitor) values "
                           "(?, ?, 'queued', ?, ?, 0, ?)", (kind, name, json.dumps(spec), utc_now(),
                                                            visitors.current().key)).lastrowid


def insert_grid_jobs(db: Database, kind: str, grid_name: str, jobs: list[tuple[str, dict, dict]]) -> list[int]:
    """Queue a grid's jobs, each (name, spec, the settings it varies), in one transaction (all or none, in order);
    the grid's id is its first job's id, kept in each job's spec_json under GRID_KEY. Returns the job ids."""
    ids: list[int] = []
    with db.conn:
        for name, spec, settings in jobs:
            grid = {"id": ids[0] if ids else None, "name": grid_name, "settings": settings, "jobs": len(jobs)}
            ids.append(_insert(db, kind, name, {**spec, GRID_KEY: grid}))
        db.conn.execute("update jobs set spec_json = json_set(spec_json, '$.grid.id', ?) where id = ?",
                        [ids[0], ids[0]])
    return ids


def job_spec(job: dict) -> dict:
    """The tune settings a job runs with: its spec_json without the grid it belongs to."""
    spec = json.loads(job["spec_json"] or "{}")
    spec.pop(GRID_KEY, None)
    return spec


def job_grid(job: dict) -> dict | None:
    """The grid a job belongs to ({"id", "name", "settings", "jobs"}), or None for a job of its own."""
    return json.loads(job["spec_json"] or "{}").get(GRID_KEY)


def grid_jobs(db: Database, grid_id: int) -> list[dict]:
    """The jobs of a grid the current visitor may see, in queue order, each with its lowest validation loss so far
    (best_val_loss) beside the latest one."""
    where, args = visible("jobs")
    return list(db.query(
        "select jobs.*, (select min(e.val_loss) from job_events e where e.job_id = jobs.id) as best_val_loss "
        f"from jobs where json_extract(spec_json, '$.grid.id') = ? and {where} order by id", [int(grid_id)] + args))


def job_visitor(db: Database, job_id: int) -> str:
    """The key of the visitor who queued a job (where its files live), whoever asks."""
    row = db.execute("select visitor from jobs where id = ?", [job_id]).fetchone()
    return (row[0] or "") if row else ""


def queued_jobs(db: Database, visitor: str) -> int:
    """How many jobs a visitor has queued or running."""
    return db.execute("select count(*) from jobs where coalesce(visitor, '') = ? and status in ('queued', 'running')",
                      [visitor]).fetchone()[0]


def mark_interrupted_jobs(db: Database) -> list[int]:
    """Mark `running` jobs whose process is gone as `interrupted`; returns their ids."""
    stale = [r["id"] for r in db.query("select id, pid, owner_start from jobs where status = 'running'")
             if not owner_alive(r["pid"], r["owner_start"])]
    with db.conn:
        for job_id in stale:
            db.conn.execute("update jobs set status = 'interrupted', finished_utc = ?, error = ?, eta_s = null "
                            "where id = ? and status = 'running'", (utc_now(), "the job's process ended before it "
                                                                    "finished", job_id))
    return stale


def claim_next_job(db: Database, spawn: Callable[[int], int]) -> int | None:
    """In one transaction (so two starters cannot both pick a job): if no job runs, take the oldest queued one,
    call spawn(job_id) -> pid, and record it as `running` in that process. Returns the job id, or None."""
    with db.conn:
        db.conn.execute("begin immediate")
        if db.conn.execute("select 1 from jobs where status = 'running'").fetchone():
            return None
        row = db.conn.execute("select id from jobs where status = 'queued' order by id limit 1").fetchone()
        if row is None:
            return None
        job_id = row[0]
        pid = spawn(job_id)
        db.conn.execute("update jobs set status = 'running', started_utc = ?, pid = ?, owner_start = ?, "
                        "error = null where id = ?", (utc_now(), pid, process_start(pid), job_id))
    return job_id


def cancel_job(db: Database, job_id: int) -> tuple[str | None, int | None]:
    """Mark a queued, interrupted or running job `cancelled`; returns its status before and its pid
    ((None, None) when there is no such job, or it is another visitor's). Other statuses are left as they are."""
    where, args = visible("jobs")
    row = db.execute(f"select status, pid from jobs where id = ? and {where}", [job_id] + args).fetchone()
    if row is None:
        return None, None
    status, pid = row
    with db.conn:
        if status in ("queued", "interrupted"):
            db.conn.execute("update jobs set status = 'cancelled', finished_utc = ? where id = ?", (utc_now(), job_id))
        elif status == "running":
            db.conn.execute("update jobs set status = 'cancelled', finished_utc = ?, error = 'stopped by the user', "
                            "eta_s = null where id = ?", (utc_now(), job_id))
    return status, pid


def requeue_job(db: Database, job_id: int, step: int) -> None:
    """Queue a job again to resume from `step`; progress logged after that step is dropped."""
    with db.conn:
        db.conn.execute("delete from job_events where job_id = ? and step > ?", [job_id, step])
        db.conn.execute("update jobs set status = 'queued', resume = 1, finished_utc = null, error = null, "
                        "step = ?, eta_s = null where id = ?", [step, job_id])


def own_job(db: Database, job_id: int) -> tuple[dict, bool, str]:
    """Called by the job's own process: record it as the owner; returns the job's spec, whether it resumes and the
    visitor who queued it (whom the process acts as)."""
    row = db.execute("select spec_json, resume, visitor from jobs where id = ?", [job_id]).fetchone()
    pid = os.getpid()
    with db.conn:
        db.conn.execute("update jobs set pid = ?, owner_start = ? where id = ?", (pid, process_start(pid), job_id))
    return job_spec({"spec_json": row[0]}), bool(row[1]), row[2] or ""


def log_progress(db: Database, job_id: int, *, step: int, max_steps: int, loss: float | None,
                 val_loss: float | None, learning_rate: float | None, samples_per_s: float,
                 eta_s: float | None) -> None:
    """One progress event (the loss chart) and the job's latest numbers, in one transaction."""
    with db.conn:
        db.conn.execute("insert into job_events (job_id, created_utc, step, loss, val_loss, learning_rate) "
                        "values (?, ?, ?, ?, ?, ?)", (job_id, utc_now(), step, loss, val_loss, learning_rate))
        db.conn.execute(
            "update jobs set step = ?, max_steps = ?, loss = coalesce(?, loss), "
            "val_loss = coalesce(?, val_loss), learning_rate = coalesce(?, learning_rate), "
            "samples_per_s = ?, eta_s = ? where id = ?",
            (step, max_steps, loss, val_loss, learning_rate, samples_per_s, eta_s, job_id))


def finish_job(db: Database, job_id: int, status: str, *, error: str | None, adapter_path: str | None,
               eval_run_id: int | None, metrics: dict) -> None:
    """Record how a running job ended (a job already cancelled keeps that status)."""
    if status not in JOB_STATUSES:
        raise ValueError(f"unknown job status {status!r}")
    with db.conn:
        db.conn.execute("update jobs set status = ?, finished_utc = ?, error = ?, adapter_path = ?, eval_run_id = ?, "
                        "metrics_json = ?, eta_s = null where id = ? and status = 'running'",
                        (status, utc_now(), error, adapter_path, eval_run_id, json.dumps(metrics), job_id))


def get_job(db: Database, job_id: int) -> dict | None:
    """A job the current visitor may see (None for another visitor's job, as for a missing one)."""
    where, args = visible("jobs")
    rows = list(db.query(f"select * from jobs where id = ? and {where}", [job_id] + args))
    return rows[0] if rows else None


def latest_job(db: Database) -> int | None:
    """The job a returning visitor wants to see: their running one, else their newest."""
    where, args = visible("jobs")
    row = db.execute(f"select id from jobs where {where} order by status = 'running' desc, id desc limit 1",
                     args).fetchone()
    return row[0] if row else None


def list_jobs(db: Database, limit: int = 50) -> list[dict]:
    where, args = visible("jobs")
    return list(db.query("select id, name, status, step, max_steps, loss, val_loss, eta_s, created_utc, "
                         f"adapter_path, eval_run_id from jobs where {where} order by id desc limit ?", args + [limit]))


def job_events(db: Database, job_id: int) -> list[dict]:
    where, args = visible("jobs")
    return list(db.query("select step, loss, val_loss, learning_rate from job_events where job_id = ? and job_id in "
                         f"(select id from jobs where {where}) order by id", [job_id] + args))
