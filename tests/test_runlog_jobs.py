"""The jobs tables of the run log without a model or a job process: queue, claim, progress, cancel, requeue, end."""
import os
import subprocess
import sys

import pytest

from prompt_lab.runlog import jobs as table
from prompt_lab.runlog.store import connect, owner_alive, process_start


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def db(home):
    with connect() as conn:
        yield conn


def test_a_queued_job_is_claimed_once_and_owned_by_the_spawned_process(db):
    first = table.insert_job(db, "tune", "one", {"model": "default"})
    second = table.insert_job(db, "tune", "two", {"model": "default"})
    spawned = []
    assert table.claim_next_job(db, lambda job_id: spawned.append(job_id) or os.getpid()) == first
    assert table.claim_next_job(db, lambda job_id: spawned.append(job_id) or os.getpid()) is None  # one at a time
    assert spawned == [first]
    job = table.get_job(db, first)
    assert (job["status"], job["pid"], job["owner_start"]) == ("running", os.getpid(), process_start(os.getpid()))
    assert table.get_job(db, second)["status"] == "queued" and table.latest_job(db) == first
    assert [j["name"] for j in table.list_jobs(db)] == ["two", "one"]


def test_a_failed_spawn_leaves_the_job_queued(db):
    job_id = table.insert_job(db, "tune", "x", {})

    def spawn(job_id):
        raise OSError("no python")

    with pytest.raises(OSError, match="^no python$"):
        table.claim_next_job(db, spawn)
    assert table.get_job(db, job_id)["status"] == "queued"


def test_progress_keeps_the_last_known_losses_and_finishing_clears_the_eta(db):
    job_id = table.insert_job(db, "tune", "x", {})
    table.claim_next_job(db, lambda j: os.getpid())
    table.log_progress(db, job_id, step=1, max_steps=4, loss=2.0, val_loss=None, learning_rate=0.1,
                       samples_per_s=3.0, eta_s=9.0)
    table.log_progress(db, job_id, step=2, max_steps=4, loss=None, val_loss=1.5, learning_rate=None,
                       samples_per_s=3.5, eta_s=4.0)
    job = table.get_job(db, job_id)
    assert (job["step"], job["loss"], job["val_loss"], job["learning_rate"], job["eta_s"]) == (2, 2.0, 1.5, 0.1, 4.0)
    assert table.job_events(db, job_id) == [{"step": 1, "loss": 2.0, "val_loss": None, "learning_rate": 0.1},
                                            {"step": 2, "loss": None, "val_loss": 1.5, "learning_rate": None}]
    table.finish_job(db, job_id, "completed", error=None, adapter_path="/a", eval_run_id=7, metrics={"steps": 2})
    job = table.get_job(db, job_id)
    assert (job["status"], job["adapter_path"], job["eval_run_id"], job["eta_s"]) == ("completed", "/a", 7, None)
    with pytest.raises(ValueError, match="unknown job status 'done'"):
        table.finish_job(db, job_id, "done", error=None, adapter_path=None, eval_run_id=None, metrics={})


def test_a_cancelled_job_keeps_its_status_when_its_process_ends(db):
    job_id = table.insert_job(db, "tune", "x", {})
    table.claim_next_job(db, lambda j: os.getpid())
    assert table.cancel_job(db, job_id) == ("running", os.getpid())
    table.finish_job(db, job_id, "failed", error="killed", adapter_path=None, eval_run_id=None, metrics={})
    job = table.get_job(db, job_id)
    assert (job["status"], job["error"]) == ("cancelled", "stopped by the user")
    assert table.cancel_job(db, job_id) == ("cancelled", os.getpid())  # nothing changes twice
    assert table.cancel_job(db, 999) == (None, None)
    queued = table.insert_job(db, "tune", "y", {})
    assert table.cancel_job(db, queued) == ("queued", None) and table.get_job(db, queued)["status"] == "cancelled"


def test_a_job_whose_process_is_gone_is_interrupted_and_requeues_from_its_checkpoint(db):
    job_id = table.insert_job(db, "tune", "x", {"model": "m"})
    table.claim_next_job(db, lambda j: dead_pid())
    for step in (1, 2, 3, 4):
        table.log_progress(db, job_id, step=step, max_steps=9, loss=1.0, val_loss=None, learning_rate=None,
                           samples_per_s=1.0, eta_s=1.0)
    assert table.mark_interrupted_jobs(db) == [job_id]
    job = table.get_job(db, job_id)
    assert job["status"] == "interrupted" and "ended before it finished" in job["error"]
    table.requeue_job(db, job_id, 2)
    job = table.get_job(db, job_id)
    assert (job["status"], job["resume"], job["step"], job["error"]) == ("queued", 1, 2, None)
    assert [e["step"] for e in table.job_events(db, job_id)] == [1, 2]  # progress after the checkpoint is dropped


def test_the_job_process_takes_ownership_and_reads_its_spec(db):
    job_id = table.insert_job(db, "tune", "x", {"model": "m", "r": 4})
    assert table.own_job(db, job_id) == ({"model": "m", "r": 4}, False, "")
    job = table.get_job(db, job_id)
    assert owner_alive(job["pid"], job["owner_start"])
