"""Background training jobs: one process per job, one running at a time, state in the run log.

A job row is `queued` until started; the starter spawns `python -m prompt_lab.tuning.jobs <id>` in its own
process group (so Stop can end it and any children at once) and records its pid. The job writes its
progress to the run log, and when it ends it starts the next queued job. A `running` job whose process is
gone is marked `interrupted` by the next process that looks. The tables themselves: prompt_lab.runlog.jobs.
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
from prompt_lab.runlog import jobs as table
from prompt_lab.runlog.jobs import JOB_STATUSES, get_job, job_events, latest_job, list_jobs  # noqa: F401 - the API
from prompt_lab.access import fair_use, visitors
from prompt_lab.models.registry import check_public_model
from prompt_lab.runlog.store import connect
from prompt_lab.settings import get_settings
from prompt_lab.tuning.checkpoints import resume_step
from prompt_lab.tuning.spec import TuneSpec

_children: dict[int, subprocess.Popen] = {}  # jobs this process started, reaped when they end


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            _children.pop(pid, None)


def jobs_dir(visitor: visitors.Visitor | None = None) -> Path:
    """A visitor's job folders: <home>/jobs locally, under the visitor's own folder on a public Space."""
    return visitors.home(visitor) / "jobs"


def mark_interrupted_jobs(db) -> None:
    """Mark `running` jobs whose process is gone as `interrupted` (our own ended children are reaped first)."""
    _reap()
    table.mark_interrupted_jobs(db)


PUBLIC_GRID_JOBS = 4  # on a public Space, the most jobs one grid may queue (each capped like a single job)


def submit(spec: TuneSpec, kind: str = "tune", start: bool = True) -> int:
    """Queue a job (its spec is validated first); starts it at once when nothing else is running."""
    _admit([spec])
    with connect() as db:
        job_id = table.insert_job(db, kind, spec.name, spec.to_dict())
    if start:
        start_next()
    return job_id


def submit_grid(grid_name: str, specs: list[TuneSpec], settings: list[dict], kind: str = "tune",
                start: bool = True) -> list[int]:
    """Queue a grid's jobs together (each spec validated first; settings: what each one varies), to run one after
    another; the first starts at once when nothing else is running. A grid is one submission: on a public Space it
    counts once against the visitor's limits (one submission queued or running at a time, saves per minute) and
    holds at most PUBLIC_GRID_JOBS jobs."""
    _admit(specs)
    with connect() as db:
        ids = table.insert_grid_jobs(db, kind, grid_name, [(spec.name, spec.to_dict(), changed)
                                                           for spec, changed in zip(specs, settings)])
    if start:
        start_next()
    return ids


def _admit(specs: list[TuneSpec]) -> None:
    """Check one submission (a job, or a grid's jobs) before it is queued; on a public Space, also the visitor's
    limits, and cap each job's steps."""
    settings = get_settings()
    if settings.public_mode:
        if not settings.allow_training:
            raise PromptLabError("training is switched off on this public Space (set PROMPT_LAB_ALLOW_TRAINING=1 "
                                 "to allow short tunes)")
        if visitors.current() == visitors.NOBODY:
            raise PromptLabError("open the page first: a request that names no visitor cannot queue a job here")
        if len(specs) > PUBLIC_GRID_JOBS:
            raise PromptLabError(f"this grid has {len(specs)} combinations; on a public Space a grid queues at most "
                                 f"{PUBLIC_GRID_JOBS} jobs (give fewer values to try)")
        fair_use.check_save(visitors.current().key)
        for spec in specs:  # a model a visitor may not run is refused now, not in the job
            check_public_model(spec.model or "default")
        with connect() as db:
            if table.queued_jobs(db, visitors.current().key):
                raise PromptLabError("you already have a tuning job queued or running; on a public Space each "
                                     "visitor has one at a time, a job or a grid (stop it, or wait until it ends)")
        cap = settings.public_max_steps
        for spec in specs:
            spec.validate()  # before the cap compares max_steps
            spec.max_steps = cap if spec.max_steps <= 0 else min(spec.max_steps, cap)
    for spec in specs:
        spec.validate()


def start_next() -> int | None:
    """Start the oldest queued job if none is running; returns its id."""
    _reap()
    with connect() as db:
        mark_interrupted_jobs(db)
        return table.claim_next_job(db, lambda job_id: _spawn(job_id).pid)


def _spawn(job_id: int) -> subprocess.Popen:
    folder = job_folder(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[2]
    # `python -m` run in the project folder puts that folder first on sys.path; the environment is inherited
    with open(folder / "job.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "prompt_lab.tuning.jobs", str(job_id)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=root)
    _children[proc.pid] = proc
    return proc


def cancel(job_id: int, grace_s: float = 5.0) -> str:
    """Stop a job: a queued one never starts; a running one's process group gets SIGTERM, then SIGKILL."""
    with connect() as db:
        status, pid = table.cancel_job(db, job_id)
    if status is None:
        raise PromptLabError(f"there is no job {job_id}")
    if status in ("queued", "interrupted"):
        return "cancelled"
    if status != "running":
        return status
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


def job_folder(job_id: int) -> Path:
    """Where a job keeps its log, checkpoints, validation split and adapter: in the folder of the visitor who
    queued it, whichever process asks (the next job is started by whoever finishes the last)."""
    with connect() as db:
        owner = table.job_visitor(db, job_id)
    return jobs_dir(visitors.from_key(owner)) / str(job_id)


def checkpoint_step(job_id: int) -> int:
    """The step a resumed job continues from: its last complete checkpoint's, or 0 when it has none."""
    return resume_step(job_folder(job_id) / "checkpoints")


def resume(job_id: int) -> int:
    """Queue an interrupted, cancelled or failed job again; it continues from its last complete checkpoint.

    Returns that checkpoint's step (0: there is none yet, so training starts over). Progress logged after the
    checkpoint is dropped, so the loss chart continues from where training really resumes.
    """
    with connect() as db:
        job = get_job(db, job_id)
        if job is None:
            raise PromptLabError(f"there is no job {job_id}")
        if job["status"] not in ("interrupted", "cancelled", "failed"):
            raise PromptLabError(f"job {job_id} is {job['status']}; only an interrupted, cancelled or failed job "
                                 "resumes")
        step = checkpoint_step(job_id)
        table.requeue_job(db, job_id, step)
    start_next()
    return step


def tuned_spec(job: dict) -> str:
    """The model spec of a finished job's tuned model: `<base spec>+<adapter dir>`."""
    return f"{json.loads(job['spec_json'])['model']}+{job['adapter_path']}"


def wait(job_id: int, on_update=None, poll_s: float = 0.5, timeout_s: float | None = None) -> dict:
    """Block until a job ends (for the CLI and tests); on_update(job_row) after each poll."""
    start = time.monotonic()
    while True:
        _reap()
        with connect() as db:
            mark_interrupted_jobs(db)
            job = get_job(db, job_id)
        if on_update:
            on_update(job)
        if job["status"] not in ("queued", "running"):
            return job
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s} s")
        time.sleep(poll_s)


def run_job(job_id: int) -> None:
    """The job's own process (python -m prompt_lab.tuning.jobs ID): train, evaluate base vs tuned, record how
    it ended, start the next queued job."""
    with connect() as db:
        spec_dict, resuming, owner = table.own_job(db, job_id)
    with visitors.acting_as(visitors.from_key(owner)):  # its runs and adapter belong to who queued it
        _run_job(job_id, TuneSpec(**spec_dict), resuming)


def _run_job(job_id: int, spec: TuneSpec, resuming: bool) -> None:
    from prompt_lab.tuning.train import base_vs_tuned, train

    folder = job_folder(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    status, error, meta, eval_run = "completed", None, {}, None
    try:
        meta = train(job_id, spec, folder, resuming)
        eval_run = base_vs_tuned(job_id, spec, folder)
    except Exception as exc:  # recorded for the user; the traceback is in the job log
        import traceback

        traceback.print_exc()
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    with connect() as db:
        table.finish_job(db, job_id, status, error=error,
                         adapter_path=str(folder / "adapter") if status == "completed" else None,
                         eval_run_id=eval_run, metrics=meta.get("metrics", {}))
    start_next()
    sys.exit(0 if status == "completed" else 1)


if __name__ == "__main__":
    run_job(int(sys.argv[1]))
