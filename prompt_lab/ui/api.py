"""The app's named API endpoints (gradio_client, HTTP): each takes plain values and returns a documented,
JSON-able dict built from the core's dataclasses, never the page's positional UI updates. The README's
"API endpoints" section lists them; the page's own events are private."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import gradio as gr

from prompt_lab.compare import CompareResult, compare as run_compare, render as render_prompts, rerun
from prompt_lab.errors import CancelledError, PromptLabError
from prompt_lab.models import GenerationParams
from prompt_lab.prompts.strategies import STRATEGIES, check_format, strategy_notes, supported_strategies
from prompt_lab.prompts.templates import template_from_request
from prompt_lab.reporting.pairs import compare_runs, pair_labels
from prompt_lab.reporting.summary import eval_report
from prompt_lab.runlog.queries import PERIODS, RunFilter, export_csv, generations_table, runs_table
from prompt_lab.runlog.store import connect, get_run
from prompt_lab.ui.common import friendly, in_line, model_event

PARAM_KEYS = ("temperature", "top_p", "max_new_tokens", "seed", "stop", "n")


def _variables(variables) -> dict:
    if isinstance(variables, str):
        try:
            variables = json.loads(variables or "{}")
        except json.JSONDecodeError as exc:
            raise PromptLabError(f"variables must be a JSON object: {exc.msg} at character {exc.pos}") from None
    if not isinstance(variables, dict):
        raise PromptLabError("variables must be a JSON object such as {\"review\": \"...\"}")
    return variables


def _run_id(value, what: str = "run") -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PromptLabError(f"{what} id must be a whole number, got {value!r}") from None


def compare_dict(result: CompareResult) -> dict:
    """A compare result for API users: the run, and per model and strategy the first sample's prompt, output,
    answer, tokens and latency (all samples under `samples`)."""
    outputs = []
    for o in result.outputs:
        first = o.generations[0] if o.generations else None
        outputs.append({
            "run_id": result.run_id, "model": o.model, "strategy": o.strategy, "format": o.format, "prompt": o.prompt,
            "output": first.text if first else "", "answer": o.answers[0] if o.answers else None,
            "prompt_tokens": first.prompt_tokens if first else 0,
            "completion_tokens": first.completion_tokens if first else 0,
            "latency_ms": first.latency_ms if first else 0.0, "finish_reason": first.finish_reason if first else "",
            "samples": [{"output": g.text, "answer": a, "completion_tokens": g.completion_tokens,
                         "latency_ms": g.latency_ms, "finish_reason": g.finish_reason}
                        for g, a in zip(o.generations, o.answers)]})
    return {"run_id": result.run_id, "template": result.template, "template_hash": result.template_hash,
            "models": result.models, "revisions": result.revisions, "params": result.params.to_dict(),
            "warnings": result.warnings, "errors": result.errors, "cancelled": result.cancelled,
            "command": result.command, "outputs": outputs}


def render(template: str, variables: dict | str, model: str = "default", k: int = 3, prompt_format: str = "") -> dict:
    """The final prompt of every strategy the template supports, for a template (a shipped or saved template's name,
    or its YAML text; never a server path) and its variables (a JSON object, or its text); prompt_format: chat or
    raw (empty: the template's). Returns {"template", "model", "prompts": [{"strategy", "format", "prompt",
    "tokens"}], "notes" (why a strategy is left out, e.g. few-shot without examples)}."""
    chosen = template_from_request(template)
    items = render_prompts(chosen, _variables(variables), strategies=supported_strategies(chosen),
                           model=model or "default", k=int(k), prompt_format=prompt_format or None)
    return {"template": chosen.name, "model": model or "default",
            "prompts": [{key: item[key] for key in ("strategy", "format", "prompt", "tokens")} for item in items],
            "notes": strategy_notes(chosen)}


def compare(template: str, variables: dict | str, strategies: list[str] | None = None,
            models: list[str] | str | None = None, params: dict | None = None, k: int = 3,
            prompt_format: str = "") -> dict:
    """Run the strategies on each model (one to many) and log the run. params: any of temperature, top_p,
    max_new_tokens, seed, stop (a list), n; above the server's caps they are clamped and `warnings` says so.
    prompt_format: chat or raw (empty: the template's). Returns {"run_id", "template", "template_hash", "models",
    "revisions", "params", "warnings", "errors", "cancelled", "command", "outputs": [{"run_id", "model",
    "strategy", "format" (the one the model got), "prompt", "output", "answer",
    "prompt_tokens", "completion_tokens", "latency_ms", "finish_reason", "samples"}]}."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(PARAM_KEYS))
    if unknown:
        raise PromptLabError(f"unknown params {', '.join(unknown)}; known: {', '.join(PARAM_KEYS)}")
    if isinstance(params.get("stop"), str):
        params["stop"] = [params["stop"]]
    result = run_compare(template_from_request(template), _variables(variables),
                         strategies=strategies or list(STRATEGIES), models=models or "default",
                         params=GenerationParams(**params), k=int(k), prompt_format=prompt_format or None)
    return compare_dict(result)


def runs(template: str = "", strategy: str = "", model: str = "", kind: str = "", period: str = "any time",
         limit: int = 200) -> dict:
    """The newest matching runs (empty filters match all; period is one of PERIODS). Returns {"count",
    "runs": [{"id", "created_utc", "kind", "status", "template_name", "models", "strategies", "generations",
    "accuracy", "duration_s"}]}."""
    if period and period not in PERIODS:
        raise PromptLabError(f"period must be one of: {', '.join(PERIODS)}")
    pick = lambda v: None if v in (None, "", "(any)") else v  # noqa: E731
    filters = RunFilter(kind=pick(kind), template=pick(template), strategy=pick(strategy), model=pick(model),
                        period=period or "any time")
    with connect() as db:
        rows = runs_table(db, filters, limit=max(1, min(int(limit), 200)))
    return {"count": len(rows), "runs": rows}


def run_generations(run_id: int) -> dict:
    """One run and its outputs (a page of 500). Returns {"run": {"id", "kind", "status", "template", "models",
    "strategies", "created_utc", "command"}, "generations": [{"id", "item_index", "strategy", "model_spec",
    "sample_index", "answer", "target", "correct", "output", "prompt_tokens", "completion_tokens", "latency_ms",
    "finish_reason"}]}."""
    run_id = _run_id(run_id)
    with connect() as db:
        run = get_run(db, run_id)
        if run is None:
            raise PromptLabError(f"there is no run {run_id} in the run log")
        rows = generations_table(db, run_id)
    return {"run": {"id": run["id"], "kind": run["kind"], "status": run["status"], "template": run["template_name"],
                    "models": run["models"], "strategies": run["strategies"], "created_utc": run["created_utc"],
                    "command": run.get("command")},
            "generations": rows}


def run_report(run_id: int) -> dict:
    """An evaluation run's report. Returns {"run_id", "status", "template", "dataset", "items", "metric",
    "wall_s", "scored", "items_per_s" (seconds the run ran, (condition, item) pairs scored, their rate), "labels",
    "rows": [{"condition", "kind", "value", "ci_low", "ci_high", "strict", "chance", "majority",
    "no_answer", "wrong", "tokens", "latency_s", "samples", ...}], "paired": [first condition vs each other],
    "conditions": [every number per condition]}."""
    return eval_report(_run_id(run_id)).to_dict()


def evaluate(experiment: str = "", limit: int = 0, template: str = "", dataset: gr.FileData | None = None,
             columns: dict | str | None = None, strategies: list[str] | str | None = None,
             models: list[str] | str | None = None, method: str = "", k_shot: list[int] | int | None = None,
             prompt_format: str = "") -> dict:
    """Run an evaluation, a shipped experiment file or a template on a dataset you upload; returns its report.
    The report is /run_report's. experiment: experiments/NAME.yaml (`limit` items, 0 = the file's own). Or template
    (a shipped or saved template's name, or its YAML text; never a server path) with dataset (a .csv, .jsonl, .json,
    .parquet or .arrow file sent with gradio_client's handle_file(path)), columns ({"variables": {var: column},
    "target": column}, or its JSON text; empty: each variable's own column and a column named like target, label or
    answer), strategies (default [zero_shot]), models (default [default]), method (generate, the default, or
    label_probs), k_shot (default [3]) and limit (the first N items; 0 = all). prompt_format: chat or raw (empty: the
    experiment's, else the template's); it applies to an experiment file too."""
    from prompt_lab.evaluation.evaluate import evaluate as run_evaluation

    asked = {"template": template, "dataset": dataset, "columns": columns, "strategies": strategies,
             "models": models, "method": method, "k_shot": k_shot}
    if experiment:
        if any(v not in (None, "", [], {}) for v in asked.values()):
            raise PromptLabError(f"an experiment file brings its own template, dataset and settings (only limit "
                                 f"applies to it); leave {', '.join(k for k, v in asked.items() if v)} empty, or "
                                 "leave experiment empty to run a template on an uploaded dataset")
        spec, chosen, command = _experiment_spec(experiment, limit)
    else:
        spec, chosen = _upload_spec(limit=limit, **asked)
        command = ""  # the dataset is the caller's upload: no command line here repeats it
    if prompt_format:
        spec.format = check_format(prompt_format)
        command += f" --format {spec.format}" if command else ""
    try:
        run_id = run_evaluation(spec, template=chosen, command=command)
    except CancelledError as exc:
        raise PromptLabError(f"the evaluation was stopped; run {getattr(exc, 'run_id', '?')} keeps its items") from None
    return eval_report(run_id).to_dict()


def _experiment_spec(experiment: str, limit: int):
    """(spec, None, command) of a shipped experiment file, found by name only."""
    from prompt_lab.evaluation.experiments import load_spec
    from prompt_lab.ui.pickers import EXPERIMENTS

    path = EXPERIMENTS / Path(str(experiment)).name
    if path.suffix != ".yaml":
        path = path.with_suffix(".yaml")
    if not path.is_file() or path.name.startswith("tune_"):
        raise PromptLabError(f"there is no evaluation experiment '{experiment}' in experiments/")
    spec = load_spec(path)
    if int(limit or 0) > 0:
        spec.limit = int(limit)
    return spec, None, (f"python -m prompt_lab eval experiments/{path.name}"
                        + (f" --limit {int(limit)}" if limit else ""))


def _upload_spec(*, template, dataset, columns, strategies, models, method, k_shot, limit):
    """(spec, template) for a template (name or YAML text) on an uploaded dataset; every field checked here, each
    error naming it, before anything is loaded or logged."""
    from prompt_lab.compare import model_list
    from prompt_lab.evaluation.experiments import EvalSpec

    if not template and not dataset:
        raise PromptLabError("give an experiment file's name, or a template and an uploaded dataset")
    if not dataset:
        raise PromptLabError("give a dataset too: a file uploaded with gradio_client's handle_file(path)")
    if not template:
        raise PromptLabError("give a template too: a shipped or saved template's name, or its YAML text")
    chosen = template_from_request(template)
    spec = EvalSpec(template=chosen.name, dataset=_uploaded(dataset), columns=_columns(columns),
                    strategies=[strategies] if isinstance(strategies, str) else list(strategies or ["zero_shot"]),
                    models=model_list(models), method=method or "generate",
                    k_shot=[k_shot] if isinstance(k_shot, int) else list(k_shot or [3]),
                    limit=limit or None)
    return spec.validate("/evaluate"), chosen


def _uploaded(dataset) -> str:
    """The server copy of a file the caller uploaded (gradio checked that it is one of its uploads); text, or a
    file object gradio did not check, is never taken as a path."""
    meta = dataset.get("meta") if isinstance(dataset, dict) else None
    if not (isinstance(meta, dict) and meta.get("_type") == "gradio.FileData" and dataset.get("path")):
        raise PromptLabError("dataset must be a file uploaded with gradio_client's handle_file(path) (a .csv, .jsonl, "
                             ".json, .parquet or .arrow file); server paths are not read")
    return str(dataset["path"])


def _columns(columns) -> dict | None:
    if columns in (None, "", {}):
        return None
    if isinstance(columns, str):
        try:
            columns = json.loads(columns)
        except json.JSONDecodeError as exc:
            raise PromptLabError(f"columns must be a JSON object: {exc.msg} at character {exc.pos}") from None
    if not isinstance(columns, dict):
        raise PromptLabError('columns must be a JSON object such as {"variables": {"review": "text"}, "target": '
                             '"label"}')
    return columns


def paired(run_a: int, label_a: str, run_b: int, label_b: str) -> dict:
    """Exact McNemar test between condition label_a of run_a and label_b of run_b (the same run or two), on the
    items both have by content. Returns {"a", "b" (each side named in full), "verdict", "n" (items paired), "both",
    "only_a", "only_b", "neither", "p_value", "accuracy_a", "accuracy_b", "ci_a", "ci_b", "difference",
    "difference_ci"}. Two runs over different datasets, or with fewer than 10 shared items, are refused."""
    a = eval_report(_run_id(run_a))
    b = a if _run_id(run_b) == a.run_id else eval_report(_run_id(run_b))
    return asdict(pair_labels(a, label_a, b, label_b).test)


def pair_runs(run_a: int, run_b: int) -> dict:
    """Two evaluation runs side by side, paired by item content. Returns {"run_a", "run_b", "report_a",
    "report_b" (as /run_report), "paired" (items shared by content), "pairs": [{"a", "b" (each side named: run_id,
    label, template, template_version, strategy, k, model, method, metric, dataset), "paired", "test" (as
    /paired_test, or null without right/wrong per item or with too few items), "note"}]}. Refused (an error) when
    the runs evaluated different datasets or fewer than 10 items pair."""
    return compare_runs(_run_id(run_a), _run_id(run_b)).to_dict()


def run_again(run_id: int) -> dict:
    """Run a logged compare again with its exact template version and settings; returns the new run as
    /compare does (its run_id is the new run's)."""
    return compare_dict(rerun(_run_id(run_id)))


def export(template: str = "", strategy: str = "", model: str = "", kind: str = "",
           period: str = "any time") -> dict:
    """The matching runs' generations as CSV text. Returns {"rows", "csv"}."""
    pick = lambda v: None if v in (None, "", "(any)") else v  # noqa: E731
    filters = RunFilter(kind=pick(kind), template=pick(template), strategy=pick(strategy), model=pick(model),
                        period=period or "any time")
    with connect() as db:
        text, count = export_csv(db, filters)
    return {"rows": count, "csv": text}


def save_template(yaml_text: str) -> dict:
    """Save a template (YAML text, within the max_template_bytes limit, aliases bounded) to the user templates and
    log its version. Returns {"name", "version", "source"} (source: the saved file's name among the user
    templates, never a server path)."""
    from prompt_lab.ui.templates_tab import save_template_text

    template = save_template_text(yaml_text)
    return {"name": template.name, "version": template.content_hash, "source": Path(str(template.source)).name}


def jobs_list(limit: int = 50) -> dict:
    """Tuning jobs, newest first. Returns {"jobs": [{"id", "name", "status", "step", "max_steps", "loss",
    "val_loss", "eta_s", "created_utc", "adapter_path", "eval_run_id"}]}."""
    from prompt_lab.tuning import jobs

    with connect() as db:
        jobs.mark_interrupted_jobs(db)
        return {"jobs": jobs.list_jobs(db, int(limit))}


def tune(spec: dict) -> dict:
    """Queue a tuning job from a tune spec (the fields of experiments/tune_*.yaml; dataset is a shipped dataset
    name, template a shipped or saved template's name). Returns {"job_id", "message"}."""
    from prompt_lab.tuning import jobs
    from prompt_lab.tuning.spec import TuneSpec as spec_class
    from prompt_lab.ui.pickers import DATA_DIR
    from prompt_lab.ui.tune_tab import tune_template

    fields = dict(spec or {})
    unknown = sorted(set(fields) - set(spec_class.__dataclass_fields__))
    if unknown:
        raise PromptLabError(f"unknown tune spec fields: {', '.join(unknown)}")
    if not fields.get("dataset"):
        raise PromptLabError("a tune spec needs a dataset (a shipped dataset name such as sentiment_codes.csv)")
    fields["dataset"] = str(DATA_DIR / Path(str(fields["dataset"])).name)
    if fields.get("template") is not None:  # a name, checked here: the job reads it by name, never a path
        tune_template(fields["template"])
    job_id = jobs.submit(spec_class(**fields))
    return {"job_id": job_id, "message": f"job {job_id} started (or queued behind the running one)"}


def job(job_id: int) -> dict:
    """One tuning job. Returns {"job": {"id", "name", "status", "step", "max_steps", "loss", "val_loss", "eta_s",
    "error", "adapter_path", "eval_run_id", "model_spec" (what to pass as a model once it has an adapter), ...},
    "events": [{"step", "loss", "val_loss", "learning_rate"}]}."""
    from prompt_lab.tuning import jobs

    job_id = _run_id(job_id, "job")
    with connect() as db:
        jobs.mark_interrupted_jobs(db)
        row = jobs.get_job(db, job_id)
        if row is None:
            raise PromptLabError(f"there is no job {job_id}")
        events = jobs.job_events(db, job_id)
    row = {k: v for k, v in row.items() if k not in ("pid", "owner_start")}
    row["model_spec"] = jobs.tuned_spec(row) if row.get("adapter_path") else None
    return {"job": row, "events": events}


def stop_job(job_id: int) -> dict:
    """Stop a queued or running job. Returns {"job_id", "message"}."""
    from prompt_lab.tuning import jobs

    job_id = _run_id(job_id, "job")
    return {"job_id": job_id, "message": f"job {job_id}: {jobs.cancel(job_id)}"}


def resume_job(job_id: int) -> dict:
    """Queue a stopped or interrupted job again. Returns {"job_id", "from_step" (0: from the start)}."""
    from prompt_lab.tuning import jobs

    job_id = _run_id(job_id, "job")
    return {"job_id": job_id, "from_step": int(jobs.resume(job_id) or 0)}


def resume_evaluation(run_id: int) -> dict:
    """Continue an interrupted or stopped evaluation run; returns its report as /run_report does."""
    from prompt_lab.evaluation.evaluate import resume

    return eval_report(resume(_run_id(run_id))).to_dict()


ENDPOINTS = [  # (function, api_name, runs a model)
    (render, "render", False), (compare, "compare", True), (runs, "runs", False),
    (run_generations, "run_generations", False), (run_report, "run_report", False), (evaluate, "evaluate", True),
    (paired, "paired_test", False), (pair_runs, "compare_runs", False), (run_again, "run_again", True),
    (resume_evaluation, "resume_evaluation", True), (export, "export_csv", False),
    (save_template, "save_template", False), (jobs_list, "jobs", False), (job, "job", False), (tune, "tune", False),
    (stop_job, "stop_job", False), (resume_job, "resume_job", False),
]


def register() -> None:
    """Publish every endpoint (inside a gr.Blocks context); model-running ones share the page's model queue."""
    for fn, name, model in ENDPOINTS:
        if model:  # waits its turn in the fair line (or is refused with a time to retry)
            fn, extra = in_line(name)(fn), model_event()
        else:
            extra = {}
        gr.api(friendly(fn, html_toast=False), api_name=name, api_description=(fn.__doc__ or "").split("\n")[0],
               **extra)
