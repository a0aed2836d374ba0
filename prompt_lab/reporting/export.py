"""Shareable reports of logged runs: one self-contained HTML file (charts included, opens offline) or a Markdown
summary for an issue or a pull request. The CLI's `report` command and the app's Download report buttons call
export_report() (or report_html / report_markdown); gather() collects what a report says from the run log,
html_page and markdown_page lay it out.

A report covers one compare run, one evaluation run (a tuning job's base-vs-tuned run is recognised by its logged
command and gets the job's loss curve), or two evaluation runs paired by item content (reporting.pairs).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from prompt_lab.access import links
from prompt_lab.errors import PromptLabError
from prompt_lab.models.naming import short_model
from prompt_lab.reporting.facts import (SAMPLE_PER_CONDITION, Report, RunFacts, SampleItem, TuneFacts, Verdict,
                                        baseline_notes, condition_names, eval_samples, eval_verdicts, flipped,
                                        report_command, run_facts, sample_item, sample_note, side_name, spec_yaml,
                                        verdict_sentence)
from prompt_lab.reporting.html_page import page
from prompt_lab.reporting.markdown_page import summary
from prompt_lab.reporting.pairs import RunPairs, compare_runs
from prompt_lab.reporting.summary import EvalReport, eval_report
from prompt_lab.runlog.jobs import get_job, job_events, job_spec
from prompt_lab.runlog.store import connect, get_run, run_generations, utc_now

FORMATS = ("html", "md")
TUNE_COMMAND = re.compile(r"base vs tuned for job (\d+)")  # the command tuning.train.base_vs_tuned logs
KINDS = {"compare": "a compare run", "eval": "an evaluation run"}


def report_html(run_ids, db_path: str | Path | None = None) -> str:
    """One self-contained HTML page (plotly.js embedded once) reporting the runs."""
    return page(gather(run_ids, db_path))


def report_markdown(run_ids, db_path: str | Path | None = None) -> str:
    """A Markdown summary of the runs: what was run, the headline table, verdicts, run ids and CLI lines."""
    return summary(gather(run_ids, db_path))


def report_filename(run_ids, fmt: str = "html") -> str:
    """A file name that says what the report is: prompt-lab-run-12.html, prompt-lab-runs-12-15.md."""
    ids = [int(i) for i in run_ids]
    return f"prompt-lab-run{'s' if len(ids) > 1 else ''}-{'-'.join(map(str, ids))}.{fmt}"


def export_report(run_ids, fmt: str = "html", db_path: str | Path | None = None) -> tuple[str, str]:
    """(text, suggested file name) of a report in `fmt` (html or md): what the CLI writes and the app offers."""
    if fmt not in FORMATS:
        raise PromptLabError(f"report format '{fmt}' is not one of: {', '.join(FORMATS)}")
    report = gather(run_ids, db_path)
    return (page(report) if fmt == "html" else summary(report)), report_filename(report.run_ids, fmt)


def write_report(run_ids, path: str | Path, fmt: str | None = None, db_path: str | Path | None = None) -> Path:
    """Write a report to `path`: Markdown for `fmt` md (or, with no fmt, a .md path), HTML otherwise."""
    path = Path(path)
    fmt = fmt or ("md" if path.suffix.lower() in (".md", ".markdown") else "html")
    text, _ = export_report(run_ids, fmt, db_path)
    path.write_text(text, encoding="utf-8")
    return path


def check_run_ids(run_ids) -> list[int]:
    """One run id, or two different ones; anything else is refused in words."""
    ids = list(run_ids or [])
    if not ids:
        raise PromptLabError("name a run id to report (or two evaluation run ids to compare)")
    if len(ids) > 2:
        raise PromptLabError(f"a report covers one run, or two evaluation runs paired item by item; got {len(ids)} "
                             f"run ids ({', '.join(map(str, ids))})")
    try:
        out = [int(i) for i in ids]
    except (TypeError, ValueError):
        raise PromptLabError(f"run ids are whole numbers, got {', '.join(map(repr, ids))}") from None
    if len(out) == 2 and out[0] == out[1]:
        raise PromptLabError(f"name two different evaluation runs to compare (got run {out[0]} twice)")
    return out


def share_query(run_ids, present: bool = False, db_path: str | Path | None = None) -> str:
    """The query string of a link that opens these runs (access.links): one run, or two evaluation runs paired. Only
    runs the asker may see get a link (another visitor's run reads as missing)."""
    ids = [int(i) for i in run_ids if i not in (None, "", 0)]
    if not ids:
        raise PromptLabError("Select a run first: a link names a run.")
    ids = check_run_ids(ids)
    with connect(db_path) as db:
        for run_id in ids:
            run = get_run(db, run_id)
            if run is None:
                raise PromptLabError(f"There is no run {run_id} in the run log.")
            if len(ids) == 2 and run["kind"] != "eval":
                raise PromptLabError(f"Run {run_id} is {KINDS.get(run['kind'], run['kind'])}; a link to a pair needs "
                                     "two evaluation runs.")
    return links.query_string(ids, present)


def gather(run_ids, db_path: str | Path | None = None, *, per_condition: int = SAMPLE_PER_CONDITION) -> Report:
    """The facts of a report on one run (compare, evaluation, or a tuning job's base-vs-tuned evaluation) or on two
    evaluation runs paired by item content. Raises PromptLabError naming the problem (an unknown run, another
    visitor's run, a mix of kinds, runs that cannot be paired)."""
    ids = check_run_ids(run_ids)
    with connect(db_path) as db:
        runs = []
        for run_id in ids:
            run = get_run(db, run_id)
            if run is None:  # the same words for a run of another visitor
                raise PromptLabError(f"there is no run {run_id} in the run log")
            if run["kind"] not in KINDS:
                raise PromptLabError(f"run {run_id} is a '{run['kind']}' run; reports cover compare and evaluation "
                                     "runs")
            runs.append(run)
        if len(runs) == 2 and any(r["kind"] != "eval" for r in runs):
            kinds = " and ".join(f"run {r['id']} is {KINDS[r['kind']]}" for r in runs)
            raise PromptLabError(f"{kinds}: a report of two runs pairs two evaluation runs item by item; report a "
                                 "compare run on its own")
        if runs[0]["kind"] == "compare":
            return _compare_report(db, runs[0], per_condition)
        if len(runs) == 1:
            return _eval_report(db, runs[0], per_condition)
    pairs = compare_runs(ids[0], ids[1], db_path)  # raises UnpairableError in words
    with connect(db_path) as db:
        return _pair_report(db, runs, pairs, max(1, per_condition // 2))


# ------------------------------------------------------------------ the four kinds


def _compare_report(db, run: dict, per_condition: int) -> Report:
    rows = run_generations(db, run["id"])
    facts = run_facts(db, run, {r["model_spec"]: r["model_revision"] or "" for r in rows})
    seen: dict[str, int] = {}
    samples = []
    for row in rows:
        label = f"{row['strategy']} · {row['model_spec']}"
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= per_condition:
            samples.append(sample_item(run["id"], row, label))
    names = {run["id"]: {s.condition: f"{s.strategy} · {short_model(s.model)}" for s in samples}}
    models = ", ".join(m.name for m in facts.models)
    title = (f"Compare run {run['id']}: template {facts.template}, {len(facts.strategies)} "
             f"strateg{'y' if len(facts.strategies) == 1 else 'ies'} on {models}")
    return Report("compare", title, [run["id"]], [facts], [], None, [], facts.warnings, samples,
                  "Every answer of the run.", names, report_command=report_command([run["id"]]),
                  generated_utc=utc_now())


def _eval_report(db, run: dict, per_condition: int) -> Report:
    report = eval_report(run["id"], db)
    samples, revisions = eval_samples(db, report, per_condition)
    facts = run_facts(db, run, revisions)
    job = TUNE_COMMAND.fullmatch(facts.command)
    if job:
        return _tune_report(db, report, facts, samples, int(job.group(1)), per_condition)
    names = condition_names(report)
    title = (f"Evaluation run {run['id']}: template {facts.template} on {facts.dataset} "
             f"({facts.dataset_items or 0:,} items)")
    return Report("eval", title, [run["id"]], [facts], [report], None, eval_verdicts(report, names),
                  baseline_notes(report, names) + facts.warnings, samples,
                  sample_note(facts.dataset_items or 0, per_condition), {run["id"]: names},
                  report_command=report_command([run["id"]]), generated_utc=utc_now())


def _tune_report(db, report: EvalReport, facts: RunFacts, samples: list[SampleItem], job_id: int,
                 per_condition: int) -> Report:
    names = {c["label"]: f"{'tuned' if '+' in c['model'] else 'base'} · {c['strategy']}" for c in report.conditions}
    notes = baseline_notes(report, names) + facts.warnings
    job = get_job(db, job_id)
    tune = None
    if job is not None and job["eval_run_id"] in (None, report.run_id):
        spec = job_spec(job)  # the settings it ran with (a grid job: without its grid), as a tune file
        tune = TuneFacts(job_id, job["name"] or "", job["status"], spec, json.loads(job["metrics_json"] or "{}"),
                         job["adapter_path"], job_events(db, job_id))
        facts.spec_file, facts.spec_file_name = spec_yaml(spec), "tune.yaml"
        facts.repeat = f"python -m prompt_lab tune {facts.spec_file_name}"
    else:
        notes.append(f"Job {job_id} that wrote this run is not in the run log, so its loss curve and settings are "
                     "not shown.")
    title = f"Tune job {job_id}: base vs tuned model on the validation split (evaluation run {report.run_id})"
    verdicts = [verdict_sentence(flipped(t), names.get(t.b, t.b), names.get(t.a, t.a), better_first=False)
                for t in report.paired]  # tuned against base, whichever is better
    return Report("tune", title, [report.run_id], [facts], [report], None, verdicts, notes,
                  samples, sample_note(facts.dataset_items or 0, per_condition), {report.run_id: names}, tune,
                  report_command([report.run_id]), utc_now())


def _pair_report(db, runs: list[dict], pairs: RunPairs, per_condition: int) -> Report:
    facts, samples, names = [], [], {}
    for run, report in zip(runs, (pairs.report_a, pairs.report_b)):
        shown, revisions = eval_samples(db, report, per_condition)
        facts.append(run_facts(db, run, revisions))
        samples += shown
        names[report.run_id] = condition_names(report, f"run {report.run_id} ")
    verdicts = []
    for p in pairs.pairs:
        if p.test is None:
            verdicts.append(Verdict(p.note))
            continue
        same = p.a.model == p.b.model
        verdicts.append(verdict_sentence(p.test, side_name(p.a, same), side_name(p.b, same)))
    notes = []
    for report in (pairs.report_a, pairs.report_b):
        notes += baseline_notes(report, names[report.run_id])
    for f in facts:
        notes += [f"run {f.run_id}: {w}" for w in f.warnings]
    title = (f"Evaluation runs {pairs.run_a} and {pairs.run_b} compared on the same {pairs.paired:,} items "
             f"({facts[0].dataset})")
    ids = [pairs.run_a, pairs.run_b]
    return Report("pair", title, ids, facts, [pairs.report_a, pairs.report_b], pairs, verdicts, notes, samples,
                  sample_note(max(f.dataset_items or 0 for f in facts), per_condition), names,
                  report_command=report_command(ids), generated_utc=utc_now())


def job_run_id(job_id: int, db_path: str | Path | None = None) -> int:
    """The evaluation run (base vs tuned) a tuning job wrote: what its report covers."""
    with connect(db_path) as db:
        job = get_job(db, int(job_id))
    if job is None:
        raise PromptLabError(f"there is no job {job_id}")
    if not job["eval_run_id"]:
        raise PromptLabError(f"job {job_id} has no base-vs-tuned evaluation yet ({job['status']}); a job reports once "
                             "it has finished with a template")
    return int(job["eval_run_id"])
