"""Search tab: an automatic prompt search (prompt_lab.search) with progress, Stop and Resume, then what it found:
every candidate by round with its dev score and parent, the chart, the one test on held-out items, and Save winner."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from prompt_lab.errors import CancelledError
from prompt_lab.evaluation.datasets import guess_mapping, load_dataset
from prompt_lab.prompts.templates import template_from_request
from prompt_lab.reporting.plots import search_rounds
from prompt_lab.search.loop import resume_search, search
from prompt_lab.search.results import default_winner_name, save_winner, search_result
from prompt_lab.search.spec import MAX_CANDIDATES, MAX_ROUNDS, SearchSpec, load_search_spec
from prompt_lab.settings import get_settings
from prompt_lab.ui.common import (as_text, error, friendly, in_line, info, model_event, on, stop_switches, stoppable,
                                  warn)
from prompt_lab.ui.pickers import DATA_DIR, EXPERIMENTS, dataset_line, dataset_path, form_head

HELP = ("Let a model rewrite the template's instruction. The items are split (seeded) into a dev part, on which "
        "every candidate is scored and the best few seed the next round, and a held-out test part, on which only "
        "the winner and the original are scored, once: only that test may claim the search found a better prompt.")
# A public Space holds the GPU for GPU_SECONDS["search"] (300 s, ui/common.py): the search's own wall-time budget
# stays under it, leaving room for the final test, which the budget does not count.
PUBLIC_MAX_MINUTES = 3.0
CANDIDATE_HEADERS = ["round", "#", "dev score", "from #", "instruction", "status"]
RATES = ("accuracy", "contains", "regex")  # metrics read as a share of items


def search_files() -> list[str]:
    return sorted(p.name for p in EXPERIMENTS.glob("search_*.yaml"))


def describe_dataset(template_name, choice, upload) -> str:
    """The chosen dataset in one line, with the columns the search will read (guessed from their names)."""
    template = template_from_request(template_name)  # a name or YAML text, never a server path
    dataset = load_dataset(dataset_path(choice, upload))
    guess = guess_mapping(dataset, template.variables)
    mapped = [f"{{{{ {v} }}}} ← {as_text(guess.variables[v])}" for v in template.variables if v in guess.variables]
    missing = [v for v in template.variables if v not in guess.variables]
    line = f"{as_text(dataset_line(dataset))} · reads {', '.join(mapped) or 'no column'}"
    line += f", gold ← {as_text(guess.target)}" if guess.target else " · **no gold answer column found**"
    if missing:
        line += f" · **no column for {', '.join(missing)}**"
    return line


def load_search_file(name: str):
    """The form filled from a shipped search file (its columns are guessed again from the names, as the form does)."""
    spec = load_search_spec(EXPERIMENTS / Path(name).name)
    dataset = Path(spec.dataset)
    return (Path(spec.template).stem if spec.template.endswith((".yaml", ".yml")) else spec.template,
            dataset.name if dataset.parent == DATA_DIR else None, spec.limit or 0, spec.model, spec.proposer,
            spec.rounds, spec.candidates, spec.keep, spec.dev_fraction, spec.seed, spec.max_calls, spec.max_minutes)


def search_spec(template_name, dataset_choice, upload, limit, model, proposer, rounds, candidates, keep,
                dev_fraction, seed, max_calls, max_minutes):
    """(SearchSpec, Template) from the form; on a public Space the wall-time budget is capped (PUBLIC_MAX_MINUTES)."""
    template = template_from_request(template_name)  # a name or YAML text, never a server path
    minutes = float(max_minutes or 0)
    if get_settings().public_mode and minutes > PUBLIC_MAX_MINUTES:
        warn(f"On this public Space a search runs for at most {PUBLIC_MAX_MINUTES:g} minutes; the budget is "
             f"{PUBLIC_MAX_MINUTES:g}, not {minutes:g}.")
        minutes = PUBLIC_MAX_MINUTES
    spec = SearchSpec(template=template.name, dataset=dataset_path(dataset_choice, upload),
                      name=f"{template.name}-search", limit=int(limit or 0) or None,
                      model=(model or "default").strip(), proposer=(proposer or "default").strip(),
                      rounds=int(rounds or 0), candidates=int(candidates or 0), keep=int(keep or 0),
                      dev_fraction=float(dev_fraction), seed=int(seed or 0), max_calls=int(max_calls or 0),
                      max_minutes=minutes)
    return spec.validate("the Search form"), template


@in_line("search")
def run_search(template_name, dataset_choice, upload, limit, model, proposer, rounds, candidates, keep, dev_fraction,
               seed, max_calls, max_minutes, request: gr.Request = None, progress=gr.Progress()):
    """Run a search from the form; returns (status line, run id)."""
    spec, template = search_spec(template_name, dataset_choice, upload, limit, model, proposer, rounds, candidates,
                                 keep, dev_fraction, seed, max_calls, max_minutes)
    try:
        run_id = search(spec, template=template, **stoppable(request, progress))
    except CancelledError as exc:
        return _stopped(getattr(exc, "run_id", None))
    return f"Search run **{run_id}** finished.", run_id


@in_line("resume_search")
def resume(run_id, request: gr.Request = None, progress=gr.Progress()):
    """Continue the search run shown (stopped or interrupted); returns (status line, run id)."""
    if not run_id:
        raise error("Enter the id of the search run to resume.")
    try:
        resumed = resume_search(int(run_id), **stoppable(request, progress, f"Resuming search run {int(run_id)}"))
    except CancelledError:
        return _stopped(int(run_id))
    return f"Search run **{resumed}** finished.", resumed


def _stopped(run_id):
    warn("Stopped. Every candidate and scored item so far is saved: 'Resume' continues the search.")
    return (f"Stopped: search run **{run_id}** keeps what it found so far; **Resume** continues it.",
            run_id if run_id else gr.update())


def _score(value, metric) -> str:
    if value is None:
        return "–"
    return f"{value:.0%}" if metric in RATES else f"{value:.3f}"


def candidate_rows(result: dict) -> list[list]:
    """The candidates table: round, number, dev score, parent, instruction, and status (with a refusal's reason)."""
    winner = (result["winner"] or {}).get("id")
    rows = []
    for c in result["candidates"]:
        status = c["status"] + (f": {c['reason']}" if c["reason"] else "")
        if c["round"] == 0:
            status = f"original · {status}"
        if c["id"] == winner:
            status = f"winner · {status}"
        rows.append([c["round"], c["id"], _score(c["dev_score"], result["metric"]),
                     "" if c["parent"] is None else f"#{c['parent']}", c["text"], status])
    return rows


def head_text(result: dict) -> str:
    """What ran, on what split, and how much of the budget it used."""
    split, budget = result["split"], result["budget"]
    stopped = f" · stopped by {as_text(budget['stopped_by'])}" if budget["stopped_by"] else ""
    return (f"Search run **{result['run_id']}** ({result['status']}) · template {as_text(result['template'])} on "
            f"{as_text(result['dataset'])} · model {as_text(result['model'])}, proposer "
            f"{as_text(result['proposer'])}, {result['method']} · dev {split['dev']} / test {split['test']} items "
            f"(seed {split['seed']}) · {budget['calls_used']} of {budget['max_calls']} model calls, "
            f"{budget['minutes_used']:.1f} of {budget['max_minutes']:g} minutes{stopped}")


def verdict_text(result: dict) -> str:
    """The verdict in words, then the held-out test's figures: each side with its 95% CI, the paired test and the
    baselines of the test items."""
    test, metric = result["test"], result["metric"]
    parts = ["#### Verdict, from the held-out test", as_text(result["verdict"])]
    if test:
        sides = [s for s in (test.get("winner"), test["original"]) if s]
        figures = " vs ".join(f"{s['name']} **{_score(s['score'], metric)}** (95% CI {_score(s['ci'][0], metric)}–"
                              f"{_score(s['ci'][1], metric)})" for s in sides)
        line = f"Held-out test, {test['items']} items: {figures}"
        if test.get("paired"):
            pair = test["paired"]
            line += (f"; right only with the winner on {pair['winner_only']} items, only with the original on "
                     f"{pair['original_only']}; p = {test['p_value']:.2g} (exact McNemar, paired by item)")
        parts.append(line + ".")
        base = test["baselines"]
        if base.get("majority") is not None:
            parts.append(f"Baselines on the test items: always answering the majority class "
                         f"({as_text(base['majority_label'])}) scores {base['majority']:.0%}"
                         + (f", a random choice {base['chance']:.0%}" if base.get("chance") else "") + ".")
    return "\n\n".join(parts)


def show_search(run_id):
    """The run's headline, candidates table, chart, verdict, and the Save winner controls (offered with a winner)."""
    if run_id in (None, "", 0):
        return "", [], None, "", gr.update(placeholder="<template>-search-<run id>"), gr.update(interactive=False), ""
    result = search_result(int(run_id))
    return (head_text(result), candidate_rows(result), search_rounds(result), verdict_text(result),
            gr.update(placeholder=default_winner_name(result), value=""),
            gr.update(interactive=result["winner"] is not None), "")


def save(run_id, name):
    """Save the winner of the run shown as a template of the user's own; says under which name and file."""
    if not run_id:
        raise error("Run a search (or enter a search run) first.")
    template = save_winner(int(run_id), (name or "").strip() or None)
    info(f"Saved '{template.name}'. It is in every template list now.")
    return (f"**Saved** the winner as template **{as_text(template.name)}** (`{Path(str(template.source)).name}` in "
            f"your templates, version `{template.content_hash}`); it is in every template list now.")


def build(model_choices: list[str]) -> dict:
    with gr.Tab("Search", id="search") as tab:
        gr.Markdown(HELP, elem_classes="help")
        with gr.Row(elem_classes="edit-only"):  # the presenter view hides the form
            with gr.Column(scale=3):
                search_file, template, dataset, upload, dataset_info = form_head(
                    "search", search_files(), "Start from a search file", "search-file")
                with gr.Row():
                    limit = gr.Number(value=40, precision=0, minimum=0, label="Items", info="0 = every row",
                                      elem_id="search-limit")
                    dev_fraction = gr.Slider(0.1, 0.9, value=0.5, step=0.05, label="Dev share",
                                             info="the rest is held out for the test", elem_id="search-dev")
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", info="split and proposals",
                                     elem_id="search-seed")
            with gr.Column(scale=2):
                with gr.Row():
                    model = gr.Dropdown(model_choices, value="default", allow_custom_value=True,
                                        label="Model (answers the items)", elem_id="search-model")
                    proposer = gr.Dropdown(model_choices, value="default", allow_custom_value=True,
                                           label="Proposer (writes instructions)", elem_id="search-proposer")
                with gr.Row():
                    rounds = gr.Number(value=2, precision=0, minimum=1, maximum=MAX_ROUNDS, label="Rounds",
                                       elem_id="search-rounds")
                    candidates = gr.Number(value=3, precision=0, minimum=1, maximum=MAX_CANDIDATES,
                                           label="Candidates per round", elem_id="search-per-round")
                    keep = gr.Number(value=2, precision=0, minimum=1, maximum=MAX_CANDIDATES, label="Keep",
                                     info="best so far, parents of the next round", elem_id="search-keep")
                with gr.Row():
                    max_calls = gr.Number(value=2000, precision=0, minimum=1, label="Budget: model calls",
                                          elem_id="search-max-calls")
                    max_minutes = gr.Number(value=30, minimum=0.1, label="Budget: minutes",
                                            info="the final test is not counted", elem_id="search-max-minutes")
                with gr.Row():
                    run = gr.Button("Run search", variant="primary", elem_id="search-run")
                    stop = gr.Button("Stop", variant="stop", elem_id="search-stop")
                    resume_btn = gr.Button("Resume", elem_id="search-resume")
                status = gr.Markdown(elem_id="search-status", elem_classes="status-line")
        run_id = gr.Number(label="Search run", precision=0, elem_id="search-run-id", elem_classes="edit-only")
        head = gr.Markdown(elem_id="search-head")
        table = gr.Dataframe(headers=CANDIDATE_HEADERS, interactive=False, wrap=True, elem_id="search-candidates",
                             column_widths=["6%", "4%", "8%", "6%", "52%", "24%"], max_height=420)
        chart = gr.Plot(label="Dev score by round", elem_id="search-chart")
        verdict = gr.Markdown(elem_id="search-verdict")
        with gr.Row(elem_classes="edit-only", equal_height=True):
            save_name = gr.Textbox(label="Save the winner as (optional name)", elem_id="search-save-name", scale=3,
                                   placeholder="<template>-search-<run id>")
            save_btn = gr.Button("Save winner as template", elem_id="search-save", interactive=False, scale=1)
        saved_line = gr.Markdown(elem_id="search-saved")

    form = [template, dataset, upload, limit, model, proposer, rounds, candidates, keep, dev_fraction, seed, max_calls,
            max_minutes]
    for control in (template, dataset, upload):
        on(control.change, describe_dataset, [template, dataset, upload], dataset_info, api_visibility="private",
           failed={dataset_info: "**This dataset cannot be used:** see the message at the top right."})
    on(search_file.change, load_search_file, search_file,
       [template, dataset, limit, model, proposer, rounds, candidates, keep, dev_fraction, seed, max_calls,
        max_minutes], api_visibility="private")
    results = [head, table, chart, verdict, save_name, save_btn, saved_line]
    not_run = {status: "Not run: see the message at the top right."}
    on(run.click, run_search, form, [status, run_id], api_visibility="private", **model_event(), failed=not_run)
    stop.click(stop_switches.stop, None, None, api_visibility="private", queue=False)
    on(resume_btn.click, resume, run_id, [status, run_id], api_visibility="private", **model_event(),
       failed={status: "Not resumed: see the message at the top right."}).success(
        friendly(show_search), run_id, results, api_visibility="private")
    on(run_id.change, show_search, run_id, results, api_visibility="private")
    saved = on(save_btn.click, save, [run_id, save_name], saved_line, api_visibility="private",
               failed={saved_line: "**Not saved:** see the message at the top right."})
    return {"tab": tab, "template": template, "dataset": dataset, "model": model, "proposer": proposer,
            "run_id": run_id, "saved": saved,
            "init": (friendly(describe_dataset), [template, dataset, upload], dataset_info)}
