"""Tune tab: start, watch, stop and resume short LoRA / prompt-tuning jobs; compare base against tuned."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from .. import jobs
from ..plots import LAYOUT, accuracy_bars, empty_figure
from ..report import run_report
from ..settings import get_settings
from ..store import open_db
from ..strategies import STRATEGIES
from ..templates import template_names
from ..tuning import METHODS, TuneSpec
from .common import friendly
from .evaluate_tab import DATA_DIR, shipped_datasets

HELP = ("Tune when no prompt is good enough. Defaults finish in a few minutes on this CPU with the default "
        "model. The job runs in its own process: closing or reloading the page changes nothing, and the chart "
        "follows it from the run log.")
JOB_HEADERS = ["id", "name", "status", "step", "max_steps", "loss", "val_loss", "eta_s", "created_utc"]


def _spec(template, dataset, target, variable_column, strategy, model, method, r, alpha, target_modules, lr,
          max_steps, batch_size, max_seq_len, seed) -> TuneSpec:
    modules = "all-linear" if target_modules == "all-linear" else [m.strip() for m in target_modules.split(",")]
    from ..templates import get_template

    variables = get_template(template).variables
    return TuneSpec(template=template, dataset=str(DATA_DIR / Path(dataset).name), name=f"{template}-{method}",
                    columns={"variables": {variables[0]: variable_column or variables[0]}, "target": target},
                    strategy=strategy, model=model or "default", method=method, r=int(r), alpha=int(alpha),
                    target_modules=modules, learning_rate=float(lr), max_steps=int(max_steps),
                    batch_size=int(batch_size), max_seq_len=int(max_seq_len), seed=int(seed),
                    eval_steps=max(1, int(max_steps) // 3), save_steps=max(1, int(max_steps) // 3))


def cli_line(*values) -> str:
    spec = _spec(*values)
    return ("# save as experiments/my_tune.yaml, then: python -m prompt_lab tune experiments/my_tune.yaml\n"
            + "\n".join(f"{k}: {json.dumps(v)}" for k, v in spec.to_dict().items()))


def start(*values):
    job_id = jobs.submit(_spec(*values))
    return job_id, f"Job **{job_id}** started (or queued behind the running one)."


def loss_figure(job_id) -> go.Figure:
    if not job_id:
        return empty_figure("Start a job to see its loss")
    events = jobs.job_events(open_db(), int(job_id))
    train = [e for e in events if e["loss"] is not None]
    val = [e for e in events if e["val_loss"] is not None]
    if not train:
        return empty_figure("Waiting for the first step…")
    fig = go.Figure()
    fig.add_scatter(name="training loss", x=[e["step"] for e in train], y=[e["loss"] for e in train], mode="lines")
    fig.add_scatter(name="validation loss", x=[e["step"] for e in val], y=[e["val_loss"] for e in val],
                    mode="lines+markers")
    fig.update_layout(**LAYOUT, title=f"Job {int(job_id)}: loss", xaxis_title="step", yaxis_title="loss")
    return fig


def poll(job_id):
    """Job table, status line, loss chart and (once done) the before/after chart."""
    db = open_db()
    try:
        jobs.mark_interrupted_jobs(db)
        rows = [[r[h] for h in JOB_HEADERS] for r in jobs.list_jobs(db)]
        job = jobs.get_job(db, int(job_id)) if job_id else None
    finally:
        db.conn.close()
    if job is None:
        return rows, "", loss_figure(None), gr.update(), gr.update(visible=False)
    eta = f" · ETA {job['eta_s']:.0f} s" if job["eta_s"] and job["status"] == "running" else ""
    status = (f"Job **{job['id']}** {job['status']} · step {job['step'] or 0}/{job['max_steps'] or '?'}{eta}"
              + (f" · {job['error']}" if job["error"] else ""))
    after = gr.update()
    if job["eval_run_id"]:
        after = before_after_figure(job["eval_run_id"])
        status += f" · before/after: evaluation run {job['eval_run_id']}"
    return rows, status, loss_figure(job_id), after, gr.update(visible=bool(job["adapter_path"]))


def before_after_figure(eval_run_id: int) -> go.Figure:
    """Base vs tuned accuracy; cached because the page polls every second and a finished run never changes
    (the job records the run id only after the evaluation completed)."""
    return _before_after(str(get_settings().db_path), int(eval_run_id))


@functools.lru_cache(maxsize=32)
def _before_after(db_path: str, eval_run_id: int) -> go.Figure:
    report = run_report(open_db(db_path), eval_run_id)
    for c in report["conditions"]:
        c["label"] = ("tuned" if "+" in c["model"] else "base") + " · " + c["strategy"]
        c["model"] = "tuned" if "+" in c["model"] else "base"
    return accuracy_bars(report["conditions"], "Base vs tuned on the validation split (95% CI)")


def adapter_spec(job_id) -> str:
    job = jobs.get_job(open_db(), int(job_id))
    if not job or not job["adapter_path"]:
        raise gr.Error("This job has no adapter yet.")
    return jobs.tuned_spec(job)


def pick_job(evt: gr.SelectData):
    return int(evt.row_value[0])


def build() -> dict:
    with gr.Tab("Tune", id="tune"):
        gr.Markdown(HELP, elem_classes="help")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    method = gr.Radio(list(METHODS), value="lora", label="Method")
                    template = gr.Dropdown(template_names(), value="sentiment-codes", label="Template",
                                           elem_id="tune-template")
                    strategy = gr.Dropdown(list(STRATEGIES), value="zero_shot", label="Prompt strategy")
                with gr.Row():
                    dataset = gr.Dropdown(shipped_datasets(), value="sentiment_codes.csv", label="Dataset")
                    variable_column = gr.Textbox(value="review", label="Input column")
                    target = gr.Textbox(value="code", label="Target column")
                    model = gr.Textbox(value="default", label="Base model")
            with gr.Column(scale=2):
                with gr.Row():
                    r = gr.Slider(1, 64, value=8, step=1, label="LoRA r")
                    alpha = gr.Slider(1, 128, value=16, step=1, label="LoRA alpha")
                target_modules = gr.Textbox(value="q_proj, v_proj", label="Target modules",
                                            info="comma-separated, or all-linear")
                with gr.Row():
                    lr = gr.Number(value=0.002, label="Learning rate")
                    max_steps = gr.Number(value=30, precision=0, label="Steps", elem_id="tune-steps")
                    batch_size = gr.Number(value=8, precision=0, label="Batch size")
                    max_seq_len = gr.Number(value=160, precision=0, label="Max tokens")
                    seed = gr.Number(value=0, precision=0, label="Seed")
        with gr.Row():
            start_btn = gr.Button("Start", variant="primary", elem_id="tune-start")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="tune-stop")
            resume_btn = gr.Button("Resume", elem_id="tune-resume")
            job_id = gr.Number(label="Job", precision=0, elem_id="tune-job")
        status = gr.Markdown(elem_id="tune-status")
        with gr.Row():
            loss = gr.Plot(elem_id="tune-loss")
            after = gr.Plot(elem_id="tune-after")
        to_compare = gr.Button("Open the tuned model in Compare", visible=False, elem_id="tune-to-compare")
        job_table = gr.Dataframe(headers=JOB_HEADERS, interactive=False, elem_id="tune-jobs")
        with gr.Accordion("Equivalent CLI", open=False):
            cli = gr.Code(language="yaml", elem_id="tune-cli")
        timer = gr.Timer(1.0)

    values = [template, dataset, target, variable_column, strategy, model, method, r, alpha, target_modules, lr,
              max_steps, batch_size, max_seq_len, seed]
    start_btn.click(friendly(start), values, [job_id, status], api_name="tune")
    stop_btn.click(friendly(lambda j: f"Job {int(j)}: {jobs.cancel(int(j))}"), job_id, status, api_name="stop_job")
    resume_btn.click(friendly(lambda j: (jobs.resume(int(j)), f"Job {int(j)} resumed from its last checkpoint.")[1]),
                     job_id, status, api_name="resume_job")
    outputs = [job_table, status, loss, after, to_compare]
    timer.tick(friendly(poll), job_id, outputs, api_visibility="private", queue=False)
    job_table.select(pick_job, None, job_id, api_visibility="private")
    for control in values:
        control.change(friendly(cli_line), values, cli, api_visibility="private")
    return {"to_compare": to_compare, "job_id": job_id, "adapter_spec": adapter_spec, "cli": (cli_line, values, cli)}
