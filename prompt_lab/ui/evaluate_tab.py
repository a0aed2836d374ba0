"""Evaluate tab: a dataset x strategies x models run with progress and Stop, then the evidence: accuracy
with CIs, cost vs quality, k sweep, self-consistency, calibration, paired tests and the extraction view."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from prompt_lab.evaluation.datasets import guess_mapping, load_dataset
from prompt_lab.errors import CancelledError
from prompt_lab.evaluation.evaluate import evaluate, resume
from prompt_lab.evaluation.experiments import METHODS, EvalSpec, load_spec
from prompt_lab.reporting.plots import accuracy_bars, accuracy_vs_tokens, calibration, has_cost, k_sweep, self_consistency
from prompt_lab.reporting.ensembles import ensemble, ensemble_json
from prompt_lab.reporting.pairs import pair_labels
from prompt_lab.reporting.report import extraction_view
from prompt_lab.reporting.summary import EvalReport, eval_report
from prompt_lab.runlog.store import connect
from prompt_lab.prompts.selection import SELECTIONS
from prompt_lab.prompts.strategies import STRATEGIES, STRATEGY_LABELS
from prompt_lab.prompts.templates import template_from_request
from prompt_lab.prompts.variants import variants_from_text, variants_text
from prompt_lab.ui.sharing import share_row
from prompt_lab.ui.common import (FORMAT_CHOICES, FORMAT_INFO, as_text, error, friendly, in_line, model_event, on,
                                  stop_switches, stoppable, warn)
from prompt_lab.ui.pickers import DATA_DIR, EXPERIMENTS, dataset_line, dataset_path, form_head

MAX_VARS = 4
NONE = "(none)"
HELP = ("Score strategies over a dataset. Pick an experiment file or a template and a dataset (shipped or "
        "uploaded CSV/JSONL), map its columns, and run. Results show accuracy with 95% bootstrap intervals, "
        "and a paired test says whether two strategies really differ.")
SUMMARY_HEADERS = ["condition", "accuracy", "95% CI", "strict", "chance", "majority", "no answer", "wrong",
                   "tokens", "latency s"]


def experiment_files() -> list[str]:
    """Evaluation experiment files (tune_*.yaml are tuning specs, for the Tune tab and `tune`; search_*.yaml are
    prompt searches, for the Search tab and `search`)."""
    return sorted(p.name for p in EXPERIMENTS.glob("*.yaml") if not p.name.startswith(("tune_", "search_")))


def columns_for(template_name: str, choice: str, upload):
    """Column dropdowns for the template's variables and the target, guessed from the dataset."""
    template = template_from_request(template_name)  # a name or YAML text, never a server path
    dataset = load_dataset(dataset_path(choice, upload))
    guess = guess_mapping(dataset, template.variables)
    options = [NONE] + dataset.columns
    boxes = []
    for i in range(MAX_VARS):
        if i < len(template.variables):
            var = template.variables[i]
            boxes.append(gr.update(choices=dataset.columns, value=guess.variables.get(var), visible=True,
                                   label=f"column for {{{{ {var} }}}}"))
        else:
            boxes.append(gr.update(visible=False, value=None))
    return boxes + [gr.update(choices=options, value=guess.target or NONE), dataset_line(dataset)]


def load_experiment(name: str):
    """The form filled from an experiment file; Items shows how many items it runs (its limit, else all rows)."""
    spec = load_spec(EXPERIMENTS / Path(name).name)
    dataset = Path(spec.dataset)
    rows = len(load_dataset(dataset).rows)
    return (gr.update(value=Path(spec.template).stem if spec.template.endswith(".yaml") else spec.template),
            dataset.name if dataset.parent == DATA_DIR else None, spec.strategies, ", ".join(spec.models),
            spec.method, ", ".join(str(k) for k in spec.k_shot), spec.samples, spec.temperature,
            spec.max_new_tokens, min(spec.limit or rows, rows), variants_text(spec.variants), spec.baseline or "",
            spec.example_selection, spec.format or "")


def _rate(value) -> str:
    return "" if value is None else f"{value:.0%}"


def summary_rows(report: EvalReport) -> list[list]:
    """The summary table's cells: the report's rows as a person reads them."""
    rows = []
    for r in report.rows:
        if r.kind == "accuracy":
            rows.append([r.condition, f"{r.value:.1%}", f"{r.ci_low:.1%} – {r.ci_high:.1%}", f"{r.strict:.1%}",
                         _rate(r.chance), _rate(r.majority), r.no_answer, r.wrong,
                         round(r.tokens, 1), round(r.latency_s, 2)])
        else:
            rows.append([r.condition, f"{r.value:.3f}", f"{r.ci_low:.3f} – {r.ci_high:.3f}", "", "", "", "", "",
                         round(r.tokens, 1), round(r.latency_s, 2)])
    return rows


def variant_notes(report: EvalReport) -> list[str]:
    """The variants ranked in each setting, as Markdown lines: figure, 95% CI and the paired test against the
    baseline (empty for a run without variants)."""
    if not report.variants:
        return []
    lines = ["", f"**Prompt variants ranked** (baseline **{as_text(report.baseline)}**; exact McNemar test on the "
             "same items):"]  # the blank line makes it a paragraph, not part of the list above
    for r in report.variants:
        figure = (f"{r.value:.0%} (95% CI {r.ci_low:.0%}-{r.ci_high:.0%})" if r.value <= 1 and report.metric in
                  ("accuracy", "contains", "regex") else f"{r.value:.3f} ({r.ci_low:.3f}-{r.ci_high:.3f})")
        test = "baseline" if r.baseline else ""
        if r.test is not None:
            test = f"vs baseline {100 * r.test.difference:+.1f} points, p = {r.test.p_value:.3g}"
        lines.append(f"- {as_text(r.setting)} · {r.rank}. **{as_text(r.variant)}** {figure}"
                     + (f" · {test}" if test else ""))
    return lines


def _report(shown: EvalReport | None, run_id) -> EvalReport:
    """The report on the page when it is the one asked for, else a fresh one."""
    if isinstance(shown, EvalReport) and shown.run_id == int(run_id) and shown.status != "running":
        return shown
    return eval_report(int(run_id))


def show_results(run_id):
    """Summary table, the charts (the cost chart only where answers cost tokens), the condition pickers, the
    headline, an empty verdict (a verdict belongs to the run it was computed for) and the report itself, which
    the paired test, class table and extraction view reuse."""
    if run_id in (None, "", 0):
        return [[], None, gr.update(value=None, visible=True), None, None, None, gr.update(), gr.update(),
                gr.update(), "", "", None]
    report = eval_report(int(run_id))
    conditions, labels, metric = report.conditions, report.labels, report.metric
    head = (f"Run **{report.run_id}** ({report.status}) · {as_text(report.template)} on "
            f"{as_text(report.dataset)} · {report.items} items · metric {metric} · method {report.method}"
            + (f" · format {as_text(report.format)}" if report.format else "")
            + (f" · {report.speed()}" if report.speed() else ""))
    notes = [f"- ⚠ {as_text(w)}" for w in report.warnings]
    notes += [f"- **{as_text(r.condition)}** {as_text(r.baseline_note)}" for r in report.rows if r.baseline_note]
    notes += variant_notes(report)
    if notes:
        head += "\n\n" + "\n".join(notes)
    return [summary_rows(report), accuracy_bars(conditions, metric=metric),
            gr.update(value=accuracy_vs_tokens(conditions, metric), visible=has_cost(conditions)),
            k_sweep(conditions, metric), self_consistency(conditions), calibration(conditions),
            gr.update(choices=labels, value=labels[0] if labels else None),
            gr.update(choices=labels, value=labels[1] if len(labels) > 1 else (labels[0] if labels else None)),
            gr.update(choices=labels, value=labels[0] if labels else None), head, "", report]


def condition_choices(run_id, other_run, shown=None):
    """The B picker's conditions: those of the other run when one is given, else of this run."""
    target = other_run if other_run not in (None, 0, "") else run_id
    if target in (None, 0, ""):
        return gr.update()
    return gr.update(choices=_report(shown, target).labels)


def paired(run_a, label_a, run_b, label_b, shown=None) -> str:
    """Plain-words verdict of an exact McNemar test between two conditions (of one run or two)."""
    a = _report(shown, run_a)
    b = a if int(run_b) == a.run_id else _report(shown, run_b)
    if a.condition(label_a) is None or b.condition(label_b) is None:
        raise error("Pick a condition from each run.")
    t = pair_labels(a, label_a, b, label_b).test
    return (f"**{as_text(t.verdict)}**\n\nExact McNemar test on {t.n} items paired by content: {t.only_a} right "
            f"only with A, {t.only_b} right only with B, {t.both} right with both, {t.neither} with neither; "
            f"p = {t.p_value:.4g}. Difference A - B {100 * t.difference:+.1f} points (95% CI "
            f"{100 * t.difference_ci[0]:+.1f} to {100 * t.difference_ci[1]:+.1f}).")


def ensemble_table(run_id, how):
    """The run's conditions combined (reporting.ensembles) beside the best single one, with the paired test."""
    if run_id in (None, "", 0):
        raise error("Run or pick an evaluation first.")
    result = ensemble_json(ensemble(int(run_id), how or "vote"))
    e, best, t = result["ensemble"], result["best_single"], result["test"]
    rows = [[e["label"], f"{e['accuracy']:.1%}", f"{e['ci'][0]:.1%} – {e['ci'][1]:.1%}"]]
    rows += [[s["label"] + (" (best single)" if s["label"] == best["label"] else ""), f"{s['accuracy']:.1%}",
              f"{s['ci'][0]:.1%} – {s['ci'][1]:.1%}"] for s in result["member_scores"]]
    note = f"\n\n{as_text(e['note'])}" if e.get("note") else ""
    words = (f"**{as_text(t['verdict'])}**\n\nExact McNemar test on {t['n']} items paired by content: "
             f"{t['only_ensemble']} right only with the ensemble, {t['only_best']} only with the best single."
             f"{note}\n\n_{as_text(result['note'])}._")
    return rows, words


def class_table(run_id, label, shown=None):
    """Per-class precision, recall and F1, and the confusion-matrix row of each gold class."""
    empty = gr.update(value=[], headers=["class"])
    if not run_id or not label:
        return empty
    classes = (_report(shown, run_id).condition(label) or {}).get("classes")
    if not classes:
        return empty
    confusion = classes["confusion"]
    rows = []
    for gold, counts in zip(confusion["rows"], confusion["matrix"]):
        scores = classes["per_class"][gold]
        rows.append([gold, f"{scores['precision']:.2f}", f"{scores['recall']:.2f}", f"{scores['f1']:.2f}",
                     scores["support"]] + counts)
    return gr.update(value=rows, headers=["class", "precision", "recall", "F1", "support"]
                     + [f"→ {c}" for c in confusion["columns"]])


def extraction_html(run_id, label) -> str:
    if not run_id or not label:
        return ""
    with connect() as db:
        rows = extraction_view(db, int(run_id), label, limit=60)
    lines = ["<table class='extract'><tr><th>#</th><th>output (matched span marked)</th><th>strict</th>"
             "<th>flexible</th><th>gold</th><th></th></tr>"]
    for r in rows:
        text, span = r["output"] or "", r["span"]
        if span:
            shown = (html.escape(text[:span[0]]) + "<mark>" + html.escape(text[span[0]:span[1]]) + "</mark>"
                     + html.escape(text[span[1]:]))
        else:
            shown = html.escape(text)
        mark = "✓" if r["correct"] else ("–" if r["answer"] is None else "✗")
        lines.append(f"<tr><td>{r['item_index'] + 1}</td><td class='out'>{shown}</td>"
                     f"<td>{html.escape(str(r['strict_answer'] or '—'))}</td>"
                     f"<td>{html.escape(str(r['answer'] or '—'))}</td><td>{html.escape(str(r['target']))}</td>"
                     f"<td>{mark}</td></tr>")
    lines.append("</table>")
    return "".join(lines)


@in_line("evaluate")
def run_eval(template_name, dataset_choice, upload, c0, c1, c2, c3, target, strategies, models, method, k_values,
             samples, temperature, max_new_tokens, limit, variants="", baseline="", selection="random",
             prompt_format="", request: gr.Request = None, progress=gr.Progress()):
    """Run an evaluation; returns (status line, run id)."""
    template = template_from_request(template_name)  # a name or YAML text, never a server path
    chosen = variants_from_text(variants, template)  # checked as an experiment file's, lines of the box named
    columns = {"variables": {v: c for v, c in zip(template.variables, [c0, c1, c2, c3]) if c},
               "target": None if target in (None, "", NONE) else target}
    try:
        k_shot = [int(k) for k in str(k_values).replace(" ", "").split(",") if k]
    except ValueError:
        raise error(f"k values must be whole numbers separated by commas, got '{k_values}'") from None
    spec = EvalSpec(template=template.name, dataset=dataset_path(dataset_choice, upload), columns=columns,
                    strategies=[s for s in STRATEGIES if s in (strategies or [])],
                    models=[m.strip() for m in (models or "default").split(",") if m.strip()], method=method,
                    k_shot=k_shot or [3], samples=int(samples), temperature=float(temperature),
                    max_new_tokens=int(max_new_tokens), limit=int(limit or 0) or None,
                    batch_size=16 if method == "label_probs" else 8, variants=chosen,
                    example_selection=selection or "random", format=prompt_format or None,
                    baseline=(baseline or "").strip() or None)
    try:
        run_id = evaluate(spec, template=template, **stoppable(request, progress))
    except CancelledError as exc:
        warn("Stopped. Finished items are saved: 'Resume run' continues it.")
        run_id = getattr(exc, "run_id", None)
        return (f"Stopped: run **{run_id}** keeps the items it finished; **Resume run** continues it.",
                run_id if run_id else gr.update())
    return f"Run **{run_id}** finished.", run_id


@in_line("resume_evaluation")
def resume_eval(run_id, request: gr.Request = None, progress=gr.Progress()):
    if not run_id:
        raise error("Enter the id of the evaluation run to resume.")
    try:
        resumed = resume(int(run_id), **stoppable(request, progress, start=None))
    except CancelledError:
        warn("Stopped again; finished items are saved.")
        return f"Stopped again: run **{int(run_id)}** keeps the items it finished.", gr.update()
    return f"Run **{resumed}** finished.", resumed


def build() -> dict:
    with gr.Tab("Evaluate", id="evaluate") as tab:
        gr.Markdown(HELP, elem_classes="help")
        with gr.Row(elem_classes="edit-only"):  # the presenter view hides the form
            with gr.Column(scale=3):
                experiment, template, dataset, upload, dataset_info = form_head(
                    "eval", experiment_files(), "Start from an experiment file", "eval-experiment")
                with gr.Row():
                    column_boxes = [gr.Dropdown([], label=f"column {i + 1}", visible=i == 0, elem_id=f"eval-col-{i}")
                                    for i in range(MAX_VARS)]
                    target = gr.Dropdown([NONE], value=NONE, label="gold answer column", elem_id="eval-target")
            with gr.Column(scale=2):
                strategies = gr.CheckboxGroup([(STRATEGY_LABELS[s], s) for s in STRATEGIES],
                                              value=["zero_shot", "few_shot"], label="Strategies",
                                              elem_id="eval-strategies")
                with gr.Accordion("Prompt variants", open=False):
                    variants = gr.Code(language="yaml", label="Variants (YAML list, optional)", lines=4,
                                       elem_id="eval-variants")
                    gr.Markdown("Each `- name: terse` entry replaces any of instruction, output_format, input, "
                                "examples, cot_trigger, answer_prefix (or names another `template:`); the template "
                                "itself is `original`.", elem_classes="help")
                    baseline = gr.Textbox(label="Baseline variant", placeholder="original", elem_id="eval-baseline")
                models = gr.Textbox(value="default", label="Models",
                                    info="comma-separated specs; every strategy runs on every model, charts group "
                                         "by model. Local (default, a folder, .gguf) or remote "
                                         "(openai:<model>@<base_url or endpoint>)")
                method = gr.Radio(list(METHODS), value="label_probs", label="Scoring", elem_id="eval-method",
                                  info="label_probs: score each answer choice; generate: write, then extract")
                with gr.Row():
                    k_values = gr.Textbox(value="3", label="k (few-shot)", info="e.g. 1, 3, 6 sweeps k", elem_id="eval-k")
                    limit = gr.Number(value=20, precision=0, minimum=0, label="Items", info="0 = every row",
                                      elem_id="eval-limit")
                selection = gr.Radio(list(SELECTIONS), value="random", label="Which few-shot examples",
                                     elem_id="eval-selection", info="random (seeded), fixed (the first k) or similar "
                                                                    "to each item (BM25); never the item itself")
                prompt_format = gr.Radio(FORMAT_CHOICES, value="", label="Prompt format", elem_id="eval-format",
                                         info=FORMAT_INFO)
                with gr.Accordion("Sampling", open=False):
                    samples = gr.Slider(1, 16, value=1, step=1, label="Samples per item (self-consistency)")
                    temperature = gr.Slider(0, 1.5, value=0, step=0.05, label="Temperature")
                    max_new_tokens = gr.Slider(1, 256, value=48, step=1, label="Max new tokens")
                with gr.Row():
                    run = gr.Button("Run evaluation", variant="primary", elem_id="eval-run")
                    stop = gr.Button("Stop", variant="stop", elem_id="eval-stop")
                    resume_btn = gr.Button("Resume run", elem_id="eval-resume")
                run_status = gr.Markdown(elem_id="eval-status", elem_classes="status-line")
        with gr.Row():
            run_id = gr.Number(label="Evaluation run", precision=0, elem_id="eval-run-id", scale=3,
                               elem_classes="edit-only")
            share_row("eval")([run_id])
        head = gr.Markdown(elem_id="eval-head")
        summary = gr.Dataframe(headers=SUMMARY_HEADERS, interactive=False, elem_id="eval-summary", wrap=True)
        with gr.Row():
            bars = gr.Plot(label="Accuracy by condition", elem_id="eval-bars")
            scatter = gr.Plot(label="Cost vs quality", elem_id="eval-scatter")
        with gr.Row():
            sweep = gr.Plot(label="Accuracy by k", elem_id="eval-sweep")
            consistency = gr.Plot(label="Self-consistency", elem_id="eval-consistency")
            reliability = gr.Plot(label="Calibration", elem_id="eval-calibration")
        gr.Markdown("### Paired test\nDo two conditions differ on the same items? Another run's id compares "
                    "across runs.", elem_classes="edit-only")
        with gr.Row(elem_classes="edit-only"):
            cond_a = gr.Dropdown([], label="A", elem_id="eval-cond-a")
            other_run = gr.Number(label="B from run (empty = this run)", precision=0)
            cond_b = gr.Dropdown([], label="B", elem_id="eval-cond-b")
            test_btn = gr.Button("Test", elem_id="eval-test")
        verdict = gr.Markdown(elem_id="eval-verdict")
        gr.Markdown("### Ensemble\nCombine every condition of the run on the same items: a majority vote over the "
                    "extracted answers (no answer never votes), or the mean of the label probabilities.",
                    elem_classes="edit-only")
        with gr.Row(elem_classes="edit-only"):
            how = gr.Radio([("majority vote", "vote"), ("mean probabilities", "probs")], value="vote",
                           label="Combine by", elem_id="eval-ensemble-how")
            combine_btn = gr.Button("Combine", elem_id="eval-ensemble")
        ensemble_rows = gr.Dataframe(headers=["condition", "accuracy", "95% CI"], interactive=False,
                                     elem_id="eval-ensemble-table")
        ensemble_words = gr.Markdown(elem_id="eval-ensemble-verdict")
        gr.Markdown("### Per class and extraction view")
        view_cond = gr.Dropdown([], label="Condition", elem_id="eval-view-cond")
        classes = gr.Dataframe(label="Per-class scores; right: confusion matrix (rows gold, columns predicted)",
                               interactive=False, elem_id="eval-classes")
        extraction = gr.HTML(elem_id="eval-extraction", elem_classes="edit-only")
        shown = gr.State(None)  # the EvalReport on the page, reused by the paired test and the views

    inputs = [template, dataset, upload] + column_boxes + [target, strategies, models, method, k_values, samples,
                                                           temperature, max_new_tokens, limit, variants, baseline,
                                                           selection, prompt_format]
    mapping_outputs = column_boxes + [target, dataset_info]
    for control in (template, dataset, upload):
        on(control.change, columns_for, [template, dataset, upload], mapping_outputs, api_visibility="private",
           failed={dataset_info: "**This dataset cannot be used:** see the message at the top right."})
    on(experiment.change, load_experiment, experiment,
       [template, dataset, strategies, models, method, k_values, samples, temperature, max_new_tokens, limit,
        variants, baseline, selection, prompt_format], api_visibility="private")
    results = [summary, bars, scatter, sweep, consistency, reliability, cond_a, cond_b, view_cond, head, verdict,
               shown]
    not_run = {run_status: "Not run: see the message at the top right."}
    on(run.click, run_eval, inputs, [run_status, run_id], api_visibility="private", **model_event(),
       failed=not_run)
    stop.click(stop_switches.stop, None, None, api_visibility="private", queue=False)
    on(resume_btn.click, resume_eval, run_id, [run_status, run_id], api_visibility="private",
       **model_event(), failed=not_run).then(
        friendly(show_results), run_id, results, api_visibility="private")
    on(run_id.change, show_results, run_id, results, api_visibility="private")
    b_from = lambda a, b: b if b not in (None, 0, "") else a  # noqa: E731
    on(test_btn.click, lambda a, la, b, lb, rep: paired(a, la, b_from(a, b), lb, rep),
       [run_id, cond_a, other_run, cond_b, shown], verdict, api_visibility="private")
    on(combine_btn.click, ensemble_table, [run_id, how], [ensemble_rows, ensemble_words], api_visibility="private")
    on(other_run.change, condition_choices, [run_id, other_run, shown], cond_b, api_visibility="private")
    on(view_cond.change, extraction_html, [run_id, view_cond], extraction, api_visibility="private")
    on(view_cond.change, class_table, [run_id, view_cond, shown], classes, api_visibility="private")
    return {"tab": tab, "template": template, "dataset": dataset, "experiment": experiment, "run_id": run_id,
            "init": (friendly(columns_for), [template, dataset, upload], mapping_outputs)}
