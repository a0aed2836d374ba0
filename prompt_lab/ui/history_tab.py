"""History tab: every run from the run log, filters, a run's generations, charts, CSV export, run again."""
from __future__ import annotations

import gradio as gr

from prompt_lab.reporting.plots import strategy_bars
from prompt_lab.runlog.queries import GENERATION_COLUMNS, GENERATION_HEADERS, PERIODS, RUN_COLUMNS, RUN_HEADERS, RunFilter, \
    export_csv, filter_choices, generations_table, runs_table, strategy_stats
from prompt_lab.compare import rerun
from prompt_lab.reporting.pairs import compare_runs as pair_runs
from prompt_lab.runlog.store import connect, get_run
from prompt_lab.prompts.strategies import STRATEGIES
from prompt_lab.ui.sharing import click_link, file_update, share_row
from prompt_lab.ui.common import as_text, error, friendly, in_line, info, model_event, on
from prompt_lab.ui.evaluate_tab import SUMMARY_HEADERS, summary_rows

ANY = "(any)"
HELP = ("Every run is here (on a public Space: every run of yours), newest first. Filter, click a row to see its "
        "generations, export what you see as CSV, or run a compare again with its exact template version and "
        "settings.")


def _filters(template, strategy, model, kind, period) -> RunFilter:
    pick = lambda v: None if v in (None, "", ANY) else v
    return RunFilter(kind=pick(kind), template=pick(template), strategy=pick(strategy), model=pick(model),
                     period=period or "any time")


def refresh(template, strategy, model, kind, period):
    """Runs table, charts and fresh filter choices for the current filters."""
    filters = _filters(template, strategy, model, kind, period)
    with connect() as db:
        runs = runs_table(db, filters)
        stats = strategy_stats(db, filters)
        choices = filter_choices(db)
    rows = [[r[c] for c in RUN_COLUMNS] for r in runs]
    latency = strategy_bars([{**s, "latency_s": s["latency_ms"] / 1000, "latency_sd_s": s["latency_sd"] / 1000}
                             for s in stats], "latency_s", "Latency by strategy and model",
                            "seconds per answer (mean ± SD)", error="latency_sd_s", fmt=".2f")
    tokens = strategy_bars(stats, "completion_tokens", "Completion tokens by strategy and model",
                           "tokens per answer (mean)", fmt=".0f")
    return (rows, latency, tokens,
            gr.update(choices=[ANY] + choices["template"]), gr.update(choices=[ANY] + choices["model"]),
            gr.update(choices=[ANY] + choices["kind"]),
            f"{len(rows)} run{'' if len(rows) == 1 else 's'} shown (newest first, at most 200)")


NOTES = {"eval": "; continue an evaluation with Resume run in Evaluate",
         "search": "; a prompt search: *Open in Search* shows its candidates, chart and verdict (and resumes it)"}


def show_run(run_id):
    """A run's outputs, a line about it, Run again offered only where it applies (compare runs), and Open in Search
    only for a prompt search."""
    if run_id in (None, "", 0):
        return gr.update(value=[]), "Select a run in the table.", gr.update(interactive=False), gr.update(visible=False)
    with connect() as db:
        run = get_run(db, int(run_id))
        rows = generations_table(db, int(run_id))
    if run is None:
        raise error(f"There is no run {int(run_id)} in the run log.")
    again = run["kind"] == "compare"
    note = "" if again else " · Run again repeats compare runs" + NOTES.get(run["kind"], NOTES["eval"])
    return ([[r[c] for c in GENERATION_COLUMNS] for r in rows],
            f"Run **{int(run_id)}** ({run['kind']}, {run['status']}): {len(rows)} outputs{note}",
            gr.update(interactive=again), gr.update(visible=run["kind"] == "search"))


def pick_row(evt: gr.SelectData, table):
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    values = table.values.tolist() if hasattr(table, "values") else table
    return int(values[row][0])


def export(template, strategy, model, kind, period):
    """The filtered runs' generations as a CSV file (the browser downloads it straight away)."""
    with connect() as db:
        text, count = export_csv(db, _filters(template, strategy, model, kind, period))
    info(f"Exported {count} generations of the runs shown.")
    return file_update(text, "prompt-lab-generations.csv")


def compare_runs(run_a, run_b):
    """Two evaluation runs side by side, with a paired test for each condition they share."""
    if not run_a or not run_b:
        raise error("Enter two evaluation run ids.")
    pairs = pair_runs(int(run_a), int(run_b))
    lines = [f"{pairs.paired} items have the same inputs and gold answer in both runs (paired by content)."]
    return (summary_rows(pairs.report_a), summary_rows(pairs.report_b),
            as_text("\n".join(lines + pairs.verdict_lines())))


@in_line("run_again")
def run_again(run_id, progress=gr.Progress()):
    if run_id in (None, "", 0):
        raise error("Select a run first.")
    progress(0, desc=f"Running run {int(run_id)} again")
    result = rerun(int(run_id), progress=lambda f, m: progress(f, desc=m))
    return result.run_id, f"Run {int(run_id)} ran again as run **{result.run_id}**."


def build() -> dict:
    with gr.Tab("History", id="history") as tab:
        gr.Markdown(HELP, elem_classes="help")
        with gr.Row(elem_classes="edit-only"):
            template = gr.Dropdown([ANY], value=ANY, label="Template", allow_custom_value=True,
                                   elem_id="hist-template")
            strategy = gr.Dropdown([ANY] + list(STRATEGIES), value=ANY, label="Strategy", elem_id="hist-strategy")
            model = gr.Dropdown([ANY], value=ANY, label="Model", allow_custom_value=True, elem_id="hist-model")
            kind = gr.Dropdown([ANY], value=ANY, label="Kind", allow_custom_value=True, elem_id="hist-kind")
            period = gr.Dropdown(list(PERIODS), value="any time", label="Date", elem_id="hist-period")
            refresh_btn = gr.Button("Refresh", size="sm")
        summary = gr.Markdown(elem_id="hist-summary", elem_classes="edit-only")
        runs = gr.Dataframe(headers=RUN_HEADERS, interactive=False, elem_id="hist-runs", max_height=360,
                            elem_classes="edit-only",
                            column_widths=[55, 165, 85, 105, 130, 150, 185, 80, 155, 85])
        with gr.Row():
            selected = gr.Number(label="Selected run", precision=0, elem_id="hist-selected", elem_classes="edit-only")
            again_btn = gr.Button("Run again", elem_id="hist-again", interactive=False, elem_classes="edit-only")
            open_search = gr.Button("Open in Search", elem_id="hist-open-search", visible=False,
                                    elem_classes="edit-only")
            export_btn = gr.Button("Export CSV", elem_id="hist-export", elem_classes="edit-only")
            share = share_row("hist")
            export_file = gr.File(label="Last export", elem_id="hist-export-file", interactive=False, height=60,
                                  visible=False)
        run_info = gr.Markdown(elem_id="hist-run-info", elem_classes="edit-only")
        generations = gr.Dataframe(headers=GENERATION_HEADERS, interactive=False, wrap=True, max_height=420,
                                   elem_id="hist-generations", elem_classes="edit-only",
                                   column_widths=[60, 55, 95, 140, 65, 100, 100, 70, 420, 75, 90, 80, 90])
        with gr.Row(elem_classes="edit-only"):  # the presenter view shows the pair below
            latency_plot = gr.Plot(label="Latency", elem_id="hist-latency")
            tokens_plot = gr.Plot(label="Tokens", elem_id="hist-tokens")
        gr.Markdown("### Two evaluation runs side by side")
        with gr.Row():
            run_a = gr.Number(label="Evaluation run A", precision=0, elem_id="hist-eval-a")
            run_b = gr.Number(label="Evaluation run B", precision=0, elem_id="hist-eval-b")
            pair_btn = gr.Button("Compare runs", elem_id="hist-pair")
        with gr.Row():
            table_a = gr.Dataframe(headers=SUMMARY_HEADERS, label="A", interactive=False, elem_id="hist-table-a")
            table_b = gr.Dataframe(headers=SUMMARY_HEADERS, label="B", interactive=False, elem_id="hist-table-b")
        pair_verdict = gr.Markdown(elem_id="hist-pair-verdict")

    filters = [template, strategy, model, kind, period]
    outs = [runs, latency_plot, tokens_plot, template, model, kind, summary]
    safe_refresh = friendly(refresh)
    for control in filters:
        on(control.change, refresh, filters, outs, api_visibility="private")
    on(refresh_btn.click, refresh, filters, outs, api_visibility="private")
    on(tab.select, refresh, filters, outs, api_visibility="private")
    runs.select(pick_row, runs, selected, api_visibility="private")
    on(selected.change, show_run, selected, [generations, run_info, again_btn, open_search],
       api_visibility="private")
    on(export_btn.click, export, filters, export_file, api_visibility="private").success(
        None, None, None, js=click_link("hist-export-file"), api_visibility="private", queue=False)
    on(again_btn.click, run_again, selected, [selected, run_info], api_visibility="private", **model_event(),
       failed={run_info: "Not run again: see the message at the top right."}).then(
        safe_refresh, filters, outs, api_visibility="private")
    on(pair_btn.click, compare_runs, [run_a, run_b], [table_a, table_b, pair_verdict], api_visibility="private")
    # the two evaluation runs when both are filled in (paired), else the selected run
    share([selected, run_a, run_b], lambda sel, a, b: (a, b) if a and b else (sel,))
    return {"tab": tab, "refresh": safe_refresh, "filters": filters, "outs": outs, "selected": selected,
            "open_search": open_search,
            "pair": compare_runs, "pair_outputs": [run_a, run_b, table_a, table_b, pair_verdict]}
