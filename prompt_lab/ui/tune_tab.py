"""Tune tab: start, watch, stop and resume short LoRA / prompt-tuning jobs; compare base against tuned."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from prompt_lab.errors import PromptLabError
from prompt_lab.tuning import jobs
from prompt_lab.reporting.plots import accuracy_bars, empty_figure, loss_curve
from prompt_lab.reporting.summary import eval_report
from prompt_lab.runlog.queries import finished_job_count
from prompt_lab.settings import get_settings
from prompt_lab.runlog.store import connect
from prompt_lab.prompts.strategies import STRATEGIES
from prompt_lab.prompts.templates import NAME_RE, Template, template_from_request, template_names
from prompt_lab.tuning.grid import GRID_HELP, grid_file_fields, job_grid_ranking, submit_lists
from prompt_lab.tuning.spec import METHODS, TuneError, TuneSpec
from prompt_lab.reporting.export import job_run_id
from prompt_lab.ui.sharing import share_row
from prompt_lab.ui.common import as_text, error, friendly, info, on
from prompt_lab.ui.pickers import DATA_DIR, shipped_datasets

HELP = ("Tune when no prompt is good enough. Defaults finish in a few minutes on this CPU with the default "
        "model. The job runs in its own process: closing or reloading the page changes nothing, and the chart "
        "follows it from the run log.")
JOB_HEADERS = ["id", "name", "status", "step", "max_steps", "loss", "val_loss", "eta_s", "created_utc"]
JOB_LABELS = ["job", "name", "status", "step", "of steps", "loss", "validation loss", "seconds left", "created (UTC)"]
FORM_FIELDS = 15  # the form's values, as _spec takes them; the Grid box's text follows them


def tune_template(value) -> Template:
    """The template of a tuning job started from the app: a shipped or saved template's name (the job reads it by
    name in its own process), never a server path; YAML text is refused, to be saved first."""
    template = template_from_request(value)
    if not NAME_RE.fullmatch(value):
        raise PromptLabError("a tuning job takes its template by name: save this template first (Templates tab, or "
                             "the /save_template endpoint), then give its name")
    return template


def _spec(template, dataset, target, variable_column, strategy, model, method, r, alpha, target_modules, lr,
          max_steps, batch_size, max_seq_len, seed) -> TuneSpec:
    modules = "all-linear" if target_modules == "all-linear" else [m.strip() for m in target_modules.split(",")]
    variables = tune_template(template).variables
    return TuneSpec(template=template, dataset=str(DATA_DIR / Path(dataset).name), name=f"{template}-{method}",
                    columns={"variables": {variables[0]: variable_column or variables[0]}, "target": target},
                    strategy=strategy, model=model or "default", method=method, r=int(r), alpha=int(alpha),
                    target_modules=modules, learning_rate=float(lr), max_steps=int(max_steps),
                    batch_size=int(batch_size), max_seq_len=int(max_seq_len), seed=int(seed),
                    eval_steps=max(1, int(max_steps) // 3), save_steps=max(1, int(max_steps) // 3))


def _grid_text(values) -> str:
    return "".join(v or "" for v in values[FORM_FIELDS:]).strip()


def cli_line(*values) -> str:
    """The form (with the Grid box's lists, when given) as a tune file; a Grid box that cannot be read yet says why
    in a comment instead of a pop-up at every keystroke."""
    spec, lists, note = _spec(*values[:FORM_FIELDS]), _grid_text(values), ""
    fields, name = spec.to_dict(), "my_tune"
    if lists:
        try:
            fields, name = grid_file_fields(spec, lists), "tune_grid_my"
        except TuneError as exc:
            note = f"# the Grid box is not used: {exc}\n"
    return (f"# save as experiments/{name}.yaml, then: python -m prompt_lab tune experiments/{name}.yaml\n{note}"
            + "\n".join(f"{k}: {json.dumps(v)}" for k, v in fields.items()))


def start(*values):
    """Queue the form's job, or with lists in the Grid box the grid's jobs; returns the (first) job to show."""
    spec, lists = _spec(*values[:FORM_FIELDS]), _grid_text(values)
    if not lists:
        job_id = jobs.submit(spec)
        info(f"Job {job_id} started (or queued behind the running one).")
        return job_id
    ids = submit_lists(spec, lists)
    info(f"Grid {ids[0]}: {len(ids)} jobs queued (jobs {ids[0]}-{ids[-1]}), run one after another; the Grid table "
         "ranks them.")
    return ids[0]


def grid_table(job_id):
    """The ranking of the grid the shown job belongs to; hidden for a job of its own."""
    ranking = job_grid_ranking(job_id)
    if ranking is None:
        return gr.update(visible=False)
    headers, rows = ranking.table()
    return gr.update(value={"headers": headers, "data": rows}, visible=True,
                     label=f"Grid {ranking.grid_id} ({ranking.name}): finished jobs ranked by best validation loss, "
                           "with base vs tuned accuracy on the validation split (95% CI)")


def _with_db(fn, *args):
    """fn(db, *args) on a connection that is closed before this returns (the page polls every second)."""
    with connect() as db:
        return fn(db, *args)


def loss_figure(job_id) -> go.Figure:
    if not job_id:
        return empty_figure("Start a job to see its loss")
    events = _with_db(jobs.job_events, int(job_id))
    return loss_curve([e for e in events if e["loss"] is not None], [e for e in events if e["val_loss"] is not None],
                      f"Job {int(job_id)}: loss by step")


def _row(job: dict) -> list:
    """A jobs-table row as a person reads it: losses to 4 digits, an ETA only while the job runs."""
    out = []
    for h in JOB_HEADERS:
        value = job[h]
        if h in ("loss", "val_loss") and value is not None:
            value = round(value, 4)
        elif h == "eta_s":
            value = f"{value:.0f}" if value is not None and job["status"] == "running" else ""
        elif h == "created_utc":
            value = (value or "").replace("T", " ")[:16]
        out.append(value)
    return out


def poll(job_id, finished_before):
    """Job table, status line, loss chart, the before/after chart once done, the hand-over button, and the
    number of finished jobs (its change refreshes the model pickers, which list tuned adapters)."""
    def read(db):
        jobs.mark_interrupted_jobs(db)
        listing = jobs.list_jobs(db)
        done = finished_job_count(db)
        return listing, (jobs.get_job(db, int(job_id)) if job_id else None), done

    listing, job, finished = _with_db(read)
    rows = [_row(r) for r in listing]
    if job is None:
        return rows, "", loss_figure(None), gr.update(), gr.update(visible=False), finished
    status = f"Job **{job['id']}** {job['status']} · step {job['step'] or 0}/{job['max_steps'] or '?'}"
    if job["status"] == "running" and job["eta_s"]:
        status += f" · about {job['eta_s']:.0f} s left"
    if job["error"]:
        status += f" · {as_text(job['error'])}"
    metrics = json.loads(job["metrics_json"]) if job["metrics_json"] else {}
    if metrics.get("resumed_from_step"):
        status += f" · resumed from step {metrics['resumed_from_step']}"
    after = gr.update()
    if job["eval_run_id"]:
        after = before_after_figure(job["eval_run_id"])
        status += f" · before/after: evaluation run {job['eval_run_id']}"
    return rows, status, loss_figure(job_id), after, gr.update(visible=bool(job["adapter_path"])), finished


def before_after_figure(eval_run_id: int) -> go.Figure:
    """Base vs tuned accuracy; cached because the page polls every second and a finished run never changes
    (the job records the run id only after the evaluation completed)."""
    return _before_after(str(get_settings().db_path), int(eval_run_id))


@functools.lru_cache(maxsize=32)
def _before_after(db_path: str, eval_run_id: int) -> go.Figure:
    report = eval_report(eval_run_id, db_path=db_path)
    conditions = [dict(c) for c in report.conditions]
    for c in conditions:
        c["label"] = f"{'tuned' if '+' in c['model'] else 'base'} · {c['strategy']}"
        c["model"] = "base vs tuned"  # one group: a bar each, side by side
    return accuracy_bars(conditions, "Base vs tuned on the validation split", metric=report.metric,
                         name=lambda c: c["label"], xaxis_title="model · prompt strategy")


def adapter_spec(job_id) -> str:
    job = _with_db(jobs.get_job, int(job_id)) if job_id else None
    if not job or not job["adapter_path"]:
        raise error("This job has no adapter yet.")
    return jobs.tuned_spec(job)


def stop_job(job_id) -> None:
    if not job_id:
        raise error("Pick a job first (click it in the table).")
    info(f"Job {int(job_id)}: {jobs.cancel(int(job_id))}.")


def resume_job(job_id) -> None:
    """Queue the job again and say truthfully where it starts."""
    if not job_id:
        raise error("Pick a job first (click it in the table).")
    step = jobs.resume(int(job_id))
    if step:
        info(f"Job {int(job_id)} resumes from step {step}, its last complete checkpoint.")
    else:
        info(f"Job {int(job_id)} had no complete checkpoint yet, so it starts again from step 1 "
             "(a checkpoint is written every third of the steps).")


def reopen() -> int | None:
    """The job to show when the page opens: the running one, else the newest (so a reload loses nothing)."""
    return _with_db(jobs.latest_job)


def pick_job(evt: gr.SelectData):
    return int(evt.row_value[0])


def pick_grid_job(evt: gr.SelectData):
    return int(evt.row_value[1])


def build() -> dict:
    with gr.Tab("Tune", id="tune") as tab:
        gr.Markdown(HELP, elem_classes="help")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    method = gr.Radio(list(METHODS), value="lora", label="Method")
                    template = gr.Dropdown(template_names(), value="sentiment-codes", label="Template",
                                           elem_id="tune-template")
                    strategy = gr.Dropdown(list(STRATEGIES), value="zero_shot", label="Prompt strategy")
                with gr.Row():
                    dataset = gr.Dropdown(shipped_datasets(), value="sentiment_codes.csv", label="Dataset",
                                          elem_id="tune-dataset")
                    variable_column = gr.Textbox(value="review", label="Input column")
                    target = gr.Textbox(value="code", label="Target column")
                    model = gr.Textbox(value="default", label="Base model", elem_id="tune-model")
            with gr.Column(scale=2):
                with gr.Row():
                    r = gr.Slider(1, 64, value=8, step=1, label="LoRA r")
                    alpha = gr.Slider(1, 128, value=16, step=1, label="LoRA alpha")
                target_modules = gr.Textbox(value="q_proj, v_proj", label="Target modules",
                                            info="comma-separated, or all-linear")
                with gr.Row():
                    lr = gr.Number(value=0.002, label="Learning rate")
                    max_steps = gr.Number(value=30, precision=0, label="Steps", elem_id="tune-steps")
                    batch_size = gr.Number(value=8, precision=0, label="Batch size", elem_id="tune-batch")
                    max_seq_len = gr.Number(value=160, precision=0, label="Max tokens", elem_id="tune-max-tokens")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                grid_lists = gr.Textbox(label="Grid (optional)", lines=2, elem_id="tune-grid",
                                        placeholder="learning_rate: [0.001, 0.003]\nr: [4, 8]",
                                        info=f"{GRID_HELP} Its lists replace the form's values.")
        with gr.Row():
            start_btn = gr.Button("Start", variant="primary", elem_id="tune-start")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="tune-stop")
            resume_btn = gr.Button("Resume", elem_id="tune-resume")
            job_id = gr.Number(label="Job", precision=0, elem_id="tune-job")
        status = gr.Markdown(elem_id="tune-status")
        with gr.Row():
            loss = gr.Plot(label="Loss", elem_id="tune-loss")
            after = gr.Plot(label="Base vs tuned", elem_id="tune-after")
        with gr.Row():
            to_compare = gr.Button("Open the tuned model in Compare", visible=False, elem_id="tune-to-compare")
            # the job's base-vs-tuned evaluation with its loss curve (refused in words while the job has none yet)
            share_row("tune")([job_id], lambda job: (job_run_id(int(job or 0)),))
        grid_ranking = gr.Dataframe(interactive=False, visible=False, elem_id="tune-grid-ranking")
        job_table = gr.Dataframe(headers=JOB_LABELS, interactive=False, elem_id="tune-jobs")
        with gr.Accordion("Equivalent CLI", open=False):
            cli = gr.Code(language="yaml", elem_id="tune-cli")
        timer = gr.Timer(1.0)
        finished = gr.State(0)

    values = [template, dataset, target, variable_column, strategy, model, method, r, alpha, target_modules, lr,
              max_steps, batch_size, max_seq_len, seed, grid_lists]
    on(start_btn.click, start, values, job_id, api_visibility="private")
    on(stop_btn.click, stop_job, job_id, None, api_visibility="private")
    on(resume_btn.click, resume_job, job_id, None, api_visibility="private")
    outputs = [job_table, status, loss, after, to_compare, finished]
    timer.tick(friendly(poll), [job_id, finished], outputs, api_visibility="private", queue=False,
               show_progress="hidden")
    timer.tick(friendly(grid_table), job_id, grid_ranking, api_visibility="private", queue=False,
               show_progress="hidden")
    job_table.select(pick_job, None, job_id, api_visibility="private")
    grid_ranking.select(pick_grid_job, None, job_id, api_visibility="private")
    for control in values:
        on(control.change, cli_line, values, cli, api_visibility="private")
    return {"tab": tab, "template": template, "dataset": dataset, "to_compare": to_compare, "job_id": job_id,
            "adapter_spec": adapter_spec, "cli": (cli_line, values, cli), "finished": finished.change,
            "reopen": (friendly(reopen), None, job_id)}
