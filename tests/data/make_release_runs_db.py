"""Writes tests/data/release_runs.db with the code of the release (commit 3ad963f), not with the current code.

    git worktree add /tmp/rel 3ad963f
    PYTHONPATH=/tmp/rel .venv/bin/python tests/data/make_release_runs_db.py tests/data/release_runs.db
    git worktree remove --force /tmp/rel

The release's own compare(), evaluate(), jobs.submit() and training progress callback write the rows; only the
model is a stand-in (fixed answers, no weights), and the job's last update is the release's run_job statement.
"""
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

target = Path(sys.argv[1]).resolve()
home = Path(tempfile.mkdtemp(prefix="release-db-"))
os.environ["PROMPT_LAB_HOME"] = str(home)

import prompt_lab  # noqa: E402

assert "/tmp/rel" in prompt_lab.__file__, f"run with PYTHONPATH=/tmp/rel, not {prompt_lab.__file__}"

from prompt_lab import evaluate as evaluate_module, jobs, runner, tuning  # noqa: E402
from prompt_lab.experiments import EvalSpec  # noqa: E402
from prompt_lab.models.base import Generation  # noqa: E402
from prompt_lab.store import open_db, utc_now  # noqa: E402

ANSWERS = {"zero_shot": "Positive", "cot": "The reviewer loves it. Answer: Positive."}


class StandIn:
    """Answers every prompt the same way: 'Positive' (so accuracy is 1 on positive reviews, 0 otherwise)."""

    revision = "stand-in"

    def format_prompt(self, prompt):
        return "\n".join(m["content"] for m in prompt.messages)

    def count_tokens(self, text):
        return len(text.split())

    def generate(self, texts, params, progress=None, cancel=None, on_partial=None):
        out = []
        for text in texts:
            answer = ANSWERS["cot"] if "step by step" in text.lower() else ANSWERS["zero_shot"]
            out.append([Generation(answer, len(text.split()), 3, 12.5, "eos", i) for i in range(params.n)])
        return out


runner.get_backend = evaluate_module.get_backend = lambda spec, progress=None: StandIn()
evaluate_module.resolve = lambda spec: None

compared = runner.compare("sentiment", {"review": "Wonderful, I love it."}, strategies=["zero_shot", "cot"],
                          models="stand-in", db_path=home / "runs.db")

data = home / "reviews.csv"
data.write_text("text,gold\nWonderful,Positive\nAwful,Negative\nFine I guess,Neutral\n")
evaluated = evaluate_module.evaluate(EvalSpec(template="sentiment", dataset=str(data), name="release eval",
                                              columns={"variables": {"review": "text"}, "target": "gold"},
                                              models=["stand-in"], max_new_tokens=8, batch_size=2),
                                     db_path=home / "runs.db")

job_id = jobs.submit(tuning.TuneSpec(dataset="d.csv", template="sentiment", name="release tune", max_steps=2),
                     start=False)
db = open_db(home / "runs.db")
with db.conn:
    db.conn.execute("update jobs set status = 'running', started_utc = ? where id = ?", (utc_now(), job_id))
progress = tuning._progress_callback(job_id, time.monotonic())
args = SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=1)
for step, logs in ((1, {"loss": 2.5, "learning_rate": 0.002}), (2, {"loss": 1.5, "learning_rate": 0.001}),
                   (2, {"eval_loss": 1.75})):
    progress.on_log(args, SimpleNamespace(global_step=step, max_steps=2), None, logs=logs)
with db.conn:  # the last statement of the release's run_job, for a job that completed
    db.conn.execute("update jobs set status = ?, finished_utc = ?, error = ?, adapter_path = ?, eval_run_id = ?, "
                    "metrics_json = ?, eta_s = null where id = ? and status = 'running'",
                    ("completed", utc_now(), None, "/adapters/release/adapter", evaluated,
                     '{"eval_loss": 1.75, "steps": 2}', job_id))
db.conn.close()
plain = sqlite3.connect(home / "runs.db")  # one self-contained file: no -wal beside it
plain.execute("pragma journal_mode = delete")
plain.execute("vacuum")
plain.close()
print(f"compare run {compared.run_id}, eval run {evaluated}, job {job_id}")
target.unlink(missing_ok=True)
shutil.copy(home / "runs.db", target)
shutil.rmtree(home)
