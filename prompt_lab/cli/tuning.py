"""The tune command's terminal side: following a job with a progress bar, and running a grid of tune settings as a
queue of jobs, then printing its ranking (prompt_lab.tuning.grid)."""
from __future__ import annotations

import json
import sys

from prompt_lab.tuning import jobs
from prompt_lab.tuning.grid import TuneGrid, grid_ranking, submit
from prompt_lab.tuning.spec import TuneError


def follow_job(job_id: int, label: str | None = None) -> dict:
    """Wait for a job with a progress bar (step, loss, validation loss, ETA) on stderr; returns its row once it
    ended. KeyboardInterrupt passes through, the bar closed."""
    from tqdm import tqdm

    bar = tqdm(total=1, desc=label or f"job {job_id}", file=sys.stderr, disable=None, unit="step")

    def update(job):
        if job["max_steps"]:
            bar.total = job["max_steps"]
        bar.n = job["step"] or 0
        post = {k: round(job[k], 4) for k in ("loss", "val_loss") if job[k] is not None}
        if job["eta_s"] is not None:
            post["eta_s"] = job["eta_s"]
        bar.set_postfix(post, refresh=True)

    try:
        return jobs.wait(job_id, on_update=update)
    finally:
        bar.close()


def run_grid(grid: TuneGrid, max_steps: int | None, as_json: bool) -> int:
    """Queue a grid's jobs, follow each in turn, and print the ranking (exit 0 when every job completed). Ctrl-C
    stops the grid: the jobs still queued are cancelled first (so none starts), then the running one."""
    if max_steps:
        if "max_steps" in grid.varied:
            raise TuneError("--max-steps would replace max_steps, which this grid varies; drop one of them")
        for job in grid.jobs:
            job.spec.max_steps = max_steps
    ids = submit(grid)
    print(f"grid {ids[0]} ({grid.name}): {len(ids)} jobs queued ({', '.join(map(str, ids))}), run one after "
          "another; Ctrl-C stops the grid (each job can be resumed with --resume JOB_ID)", file=sys.stderr)
    try:
        for n, (job_id, job) in enumerate(zip(ids, grid.jobs), 1):
            follow_job(job_id, f"{n}/{len(ids)} job {job_id} {job.spec.name}")
    except KeyboardInterrupt:
        for job_id in reversed(ids):  # queued ones first: stopping the running one starts the next queued
            jobs.cancel(job_id)
        print(f"grid {ids[0]} stopped", file=sys.stderr)
        return 130
    ranking = grid_ranking(ids[0])
    if as_json:
        print(json.dumps(ranking.to_dict(), indent=2, default=float))
    else:
        print("\n".join(ranking_lines(ranking)))
    return 0 if all(row.status == "completed" for row in ranking.jobs) else 1


def ranking_lines(ranking) -> list[str]:
    """A grid ranking as an aligned text table, with a line per job that failed."""
    headers, rows = ranking.table()
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [f"grid {ranking.grid_id} ({ranking.name}): {len(rows)} jobs varying {', '.join(ranking.varied)}, "
             "ranked by best validation loss (lower first); accuracy of base and tuned model on the validation split"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines += [f"job {row.job_id}: {row.error}" for row in ranking.jobs if row.error]
    return lines
