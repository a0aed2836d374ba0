"""Background training jobs: one process per job, one running at a time, state in SQLite.

A job row is `queued` until started; the starter spawns `python -m prompt_lab.tuning.jobs <id>` in its own
process group (so Stop can end it and any children at once) and records its pid. The job writes its
progress to SQLite, and when it ends it starts the next queued job. A `running` job whose process is
gone is marked `interrupted` by the next process that looks.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from prompt_lab.errors import PromptLabError
from prompt_lab.settings import get_settings
from prompt_lab.runlog.store import _owner_alive, _process_start, open_db, utc_now

_children: dict[int, subprocess.Popen] = {}  # jobs this process started, reaped when they end


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            _children.pop(pid, None)


JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")


def jobs_dir() -> Path:
    return get_settings().home / "jobs"


def adapters_dir() -> Path:
    return get_settings().home / "adapters"


def mark_interrupted_jobs(db) -> None:
    """Mark `running` jobs whose process is gone as `interrupted`."""
    _reap()
    stale = [r["id"] for r in db.query("select id, pid, owner_start from jobs where status = 'running'")
             if not _owner_alive(r["pid"], r["owner_start"])]
    with db.conn:
        for job_id in stale:
            db.conn.execute("update jobs set status = 'interrupted', finished_utc = ?, error = ?, eta_s = null "
                            "where id = ? and status = 'running'", (utc_now(), "the job's process ended before it "
                                                                    "finished", job_id))


def submit(spec, kind: str = "tune", start: bool = True) -> int:
    """Queue a job (its spec is validated first); starts it at once when nothing else is running."""
    if get_settings().public_mode:
        if os.environ.get("PROMPT_LAB_ALLOW_TRAINING") != "1":
            raise PromptLabError("training is switched off on this public Space (set PROMPT_LAB_ALLOW_TRAINING=1 "
                                 "to allow short tunes)")
        cap = int(os.environ.get("PROMPT_LAB_PUBLIC_MAX_STEPS", "50"))
        spec.max_steps = cap if spec.max_steps <= 0 else min(spec.max_steps, cap)
    spec.validate()
    db = open_db()
    with db.conn:
        job_id = db.conn.execute("insert into jobs (kind, name, status, spec_json, created_utc, step) values "
                                 "(?, ?, 'queued', ?, ?, 0)", (kind, spec.name, json.dumps(spec.to_dict()),
                                                               utc_now())).lastrowid
    db.conn.close()
    if start:
        start_next()
    return job_id


def start_next() -> int | None:
    """Start the oldest queued job if none is running; returns its id."""
    _reap()
    db = open_db()
    try:
        mark_interrupted_jobs(db)
        with db.conn:  # one transaction: two starters cannot both pick a job
            db.conn.execute("begin immediate")
            if db.conn.execute("select 1 from jobs where status = 'running'").fetchone():
                return None
            row = db.conn.execute("select id, resume from jobs where status = 'queued' order by id limit 1").fetchone()
            if row is None:
                return None
            job_id = row[0]
            proc = _spawn(job_id)
            db.conn.execute("update jobs set status = 'running', started_utc = ?, pid = ?, owner_start = ?, "
                            "error = null where id = ?", (utc_now(), proc.pid, _process_start(proc.pid), job_id))
        return job_id
    finally:
        db.conn.close()


def _spawn(job_id: int) -> subprocess.Popen:
    folder = jobs_dir() / str(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "job.log", "ab")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "prompt_lab.tuning.jobs", str(job_id)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                            cwd=root)
    _children[proc.pid] = proc
    return proc


def cancel(job_id: int, grace_s: float = 5.0) -> str:
    """Stop a job: a queued one never starts; a running one's process group gets SIGTERM, then SIGKILL."""
    db = open_db()
    try:
        row = db.execute("select status, pid from jobs where id = ?", [job_id]).fetchone()
        if row is None:
            raise PromptLabError(f"there is no job {job_id}")
        status, pid = row
        if status in ("queued", "interrupted"):
            with db.conn:
                db.conn.execute("update jobs set status = 'cancelled', finished_utc = ? where id = ?",
                                (utc_now(), job_id))
            return "cancelled"
        if status != "running":
            return status
        with db.conn:
            db.conn.execute("update jobs set status = 'cancelled', finished_utc = ?, error = 'stopped by the user', "
                            "eta_s = null where id = ?", (utc_now(), job_id))
    finally:
        db.conn.close()
    _end_group(pid, grace_s)
    start_next()
    return "cancelled"


def _end_group(pid: int, grace_s: float) -> None:
    """SIGTERM the job's process group, SIGKILL what is left after grace_s; reap it if it is our child."""
    def gone() -> bool:
        _reap()
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        return False

    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if gone():
                return
            time.sleep(0.05)


COMPLETE_MARKER = "prompt_lab_complete"


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint that Trainer finished writing (marked after its on_save event)."""
    done = [p for p in folder.glob("checkpoint-*") if (p / COMPLETE_MARKER).exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def checkpoint_step(job_id: int) -> int:
    """The step a resumed job continues from: its last complete checkpoint's, or 0 when it has none."""
    checkpoint = last_complete_checkpoint(jobs_dir() / str(job_id) / "checkpoints")
    return int(checkpoint.name.split("-")[1]) if checkpoint else 0


def resume(job_id: int) -> int:
    """Queue an interrupted, cancelled or failed job again; it continues from its last complete checkpoint.

    Returns that checkpoint's step (0: there is none yet, so training starts over). Progress logged after the
    checkpoint is dropped, so the loss chart continues from where training really resumes.
    """
    db = open_db()
    try:
        row = db.execute("select status from jobs where id = ?", [job_id]).fetchone()
        if row is None:
            raise PromptLabError(f"there is no job {job_id}")
        if row[0] not in ("interrupted", "cancelled", "failed"):
            raise PromptLabError(f"job {job_id} is {row[0]}; only an interrupted, cancelled or failed job resumes")
        step = checkpoint_step(job_id)
        with db.conn:
            db.conn.execute("delete from job_events where job_id = ? and step > ?", [job_id, step])
            db.conn.execute("update jobs set status = 'queued', resume = 1, finished_utc = null, error = null, "
                            "step = ?, eta_s = null where id = ?", [step, job_id])
    finally:
        db.conn.close()
    start_next()
    return step


def get_job(db, job_id: int) -> dict | None:
    rows = list(db.query("select * from jobs where id = ?", [job_id]))
    return rows[0] if rows else None


def tuned_spec(job: dict) -> str:
    """The model spec of a finished job's tuned model: `<base spec>+<adapter dir>`."""
    return f"{json.loads(job['spec_json'])['model']}+{job['adapter_path']}"


def latest_job(db) -> int | None:
    """The job a returning visitor wants to see: the running one, else the newest."""
    row = db.execute("select id from jobs order by status = 'running' desc, id desc limit 1").fetchone()
    return row[0] if row else None


def list_jobs(db, limit: int = 50) -> list[dict]:
    return list(db.query("select id, name, status, step, max_steps, loss, val_loss, eta_s, created_utc, "
                         "adapter_path, eval_run_id from jobs order by id desc limit ?", [limit]))


def job_events(db, job_id: int) -> list[dict]:
    return list(db.query("select step, loss, val_loss, learning_rate from job_events where job_id = ? "
                         "order by id", [job_id]))


def wait(job_id: int, on_update=None, poll_s: float = 0.5, timeout_s: float | None = None) -> dict:
    """Block until a job ends (for the CLI and tests); on_update(job_row) after each poll."""
    start = time.monotonic()
    while True:
        _reap()
        db = open_db()
        try:
            mark_interrupted_jobs(db)
            job = get_job(db, job_id)
        finally:
            db.conn.close()
        if on_update:
            on_update(job)
        if job["status"] not in ("queued", "running"):
            return job
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s} s")
        time.sleep(poll_s)


if __name__ == "__main__":
    from prompt_lab.tuning.train import run_job

    run_job(int(sys.argv[1]))
