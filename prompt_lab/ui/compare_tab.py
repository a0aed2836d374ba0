"""Compare tab: one template, its strategies side by side on up to three models (a strategies x models grid),
streamed, logged."""
from __future__ import annotations

import html

import gradio as gr

from prompt_lab.models import GenerationParams, resolve
from prompt_lab.compare import check_batch, check_inputs, compare_events, logged_result, model_list
from prompt_lab.settings import get_settings
from prompt_lab.prompts.selection import SELECTIONS
from prompt_lab.prompts.strategies import STRATEGIES, STRATEGY_LABELS, fit_strategies
from prompt_lab.prompts.templates import template_from_request, template_names
from prompt_lab.errors import CancelledError
from prompt_lab.ui.common import FORMAT_CHOICES, FORMAT_INFO, error, friendly, in_line, model_event, on, \
    stop_switches, warn
from prompt_lab.ui.sharing import share_row

MAX_VARS = 4
MAX_MODELS = 3
N_EXAMPLES = 3
CELLS = MAX_MODELS * len(STRATEGIES)
HELP = ("Fill in the template's inputs, pick strategies and one to three models (local, or remote as "
        "`openai:<model>@<server>`) and press **Run**: each model gets every strategy's prompt, the answers "
        "stream in as a grid (a row per model, a column per strategy). Every run is saved in History.")


def variable_updates(template_name: str, example: int | None = 0) -> list:
    """Labels, visibility and (optionally) example values for the variable boxes, then the example buttons."""
    template = template_from_request(template_name)  # a name or YAML text, never a server path
    if len(template.variables) > MAX_VARS:
        raise error(f"template '{template.name}' has {len(template.variables)} variables; this form shows "
                       f"up to {MAX_VARS}. Use the CLI for it.")
    values = template.examples[example].inputs if example is not None and template.examples else {}
    boxes = []
    for i in range(MAX_VARS):
        if i < len(template.variables):
            name = template.variables[i]
            boxes.append(gr.update(label=name, visible=True, value=values.get(name, "")))
        else:
            boxes.append(gr.update(visible=False, value=""))
    buttons = [gr.update(visible=i < len(template.examples)) for i in range(N_EXAMPLES)]
    return boxes + buttons


ENDINGS = {  # finish_reason -> (what the stats line says, the tooltip that explains it)
    "eos": ("finished", "the model ended its answer itself"),
    "length": ("hit the token limit", "the answer reached Max new tokens (under Decoding) and was cut there"),
    "stop": ("stop sequence", "one of the stop sequences ended the answer"),
    "time": ("time limit", "the answer reached the server's time cap for one generation"),
    "cancelled": ("stopped", "you pressed Stop before this answer was finished"),
}


def ending(reason: str) -> str:
    said, why = ENDINGS.get(reason, (reason, reason))
    return f"<span title='{html.escape(why, quote=True)}'>ended: {html.escape(said)}</span>"


def stats_line(generation, answer) -> str:
    if generation.finish_reason == "cancelled":
        return (f"<b>Stopped</b> before it finished · {generation.completion_tokens} tokens so far · "
                f"{ending('cancelled')}")
    found = f"<mark>{html.escape(answer)}</mark>" if answer is not None else "<i>no answer found</i>"
    estimated = " (estimated)" if generation.token_source == "estimate" else ""
    return (f"Answer: {found} · {generation.prompt_tokens} → {generation.completion_tokens} tokens{estimated} · "
            f"{generation.latency_ms / 1000:.2f} s · {generation.tokens_per_s:.1f} tok/s · "
            f"{ending(generation.finish_reason)}")


def cell_id(kind: str, row: int, strategy: str) -> str:
    """Element ids: the first model's cells keep the short `out-cot` form; later rows are `out-m1-cot`."""
    return f"{kind}-{strategy}" if row == 0 else f"{kind}-m{row}-{strategy}"


def _cells(fill) -> list:
    """One value per grid cell, model-major: fill(row, strategy)."""
    return [fill(r, s) for r in range(MAX_MODELS) for s in STRATEGIES]


def _keep(count: int) -> list:
    return [gr.update() for _ in range(count)]


@in_line("compare")
def run_compare(template_name, v0, v1, v2, v3, strategies, k, model, temperature, top_p, max_new_tokens, seed,
                stop, selection="random", prompt_format="", request: gr.Request = None, progress=gr.Progress()):
    """Stream one compare run into the grid: a row per model, a column per strategy."""
    template = template_from_request(template_name)  # a name or YAML text, never a server path
    strategies = [s for s in STRATEGIES if s in (strategies or [])]
    if not strategies:
        raise error("Pick at least one strategy.")
    strategies, left_out = fit_strategies(template, strategies)  # the grid shows only the columns that will run
    for note in left_out:
        warn(note)
    models = model_list(model)
    if len(models) > MAX_MODELS:
        raise error(f"Pick at most {MAX_MODELS} models here ({len(models)} chosen); the CLI takes more.")
    variables = dict(zip(template.variables, [v0, v1, v2, v3]))
    check_inputs(template, variables)
    check_batch(len(strategies))
    for spec in models:  # a mistyped spec is reported before the grid changes
        resolve(spec)
    cap = get_settings().max_new_tokens_cap
    params = GenerationParams(temperature=float(temperature), top_p=float(top_p),
                              max_new_tokens=min(int(max_new_tokens), cap), seed=int(seed),
                              stop=[s.strip() for s in (stop or "").split(",") if s.strip()])
    cancel = stop_switches.fresh(request)
    used = lambda r, s: r < len(models) and s in strategies  # noqa: E731
    layout = ([gr.update(visible=r < len(models)) for r in range(MAX_MODELS)]
              + _cells(lambda r, s: gr.update(visible=s in strategies)))
    headers = [gr.update(value=f"#### {html.escape(models[r])}" if r < len(models) else "") for r in range(MAX_MODELS)]
    waiting = _cells(lambda r, s: gr.update(value="generating…" if used(r, s) else ""))
    yield (layout + _cells(lambda r, s: gr.update(value="")) + waiting + _cells(lambda r, s: gr.update(value=""))
           + headers + ["", "Loading the model…" if len(models) == 1 else "Loading the models…", None,
                        inputs_block(variables)])
    index = {s: i for i, s in enumerate(strategies)}
    events = compare_events(template, variables, strategies=strategies, models=models, params=params, k=int(k),
                            selection=selection or "random", prompt_format=prompt_format or None, cancel=cancel)
    try:
        yield from _stream(events, models, index, progress)
    except CancelledError:  # stopped before any model produced a row (while loading, say)
        warn("Stopped.")
        stopped = _cells(lambda r, s: gr.update(value="stopped" if used(r, s) else ""))
        yield (_keep(MAX_MODELS + CELLS) + _keep(CELLS) + stopped + _keep(CELLS) + _keep(MAX_MODELS)
               + [gr.update(), "Stopped before any answer was written; the run is logged as cancelled."]
               + _keep(2))


def _stream(events, models, index, progress):
    layout = _keep(MAX_MODELS + CELLS)
    for event in events:
        if event.kind == "progress":
            progress(event.fraction, desc=event.message)
        elif event.kind == "partial":
            grid = event.texts
            texts = _cells(lambda r, s: gr.update(value=grid[r][index[s]].lstrip())
                           if r < len(grid) and s in index else gr.update())
            yield layout + texts + _keep(CELLS * 2 + MAX_MODELS) + [gr.update(), "Generating…"] + _keep(2)
        else:
            for warning in event.result.warnings:
                warn(warning)
            yield layout + result_cells(event.result, models, index)


def result_cells(result, models: list[str], index: dict[str, int]) -> list:
    """A finished run's cells: texts, stats, prompts (model-major), model headers, CLI line, status, run id."""
    def text(r, s):
        out = result.output(models[r], s) if r < len(models) else None
        return gr.update(value=out.generations[0].text.lstrip()) if out else gr.update()

    def stats(r, s):
        if r >= len(models) or s not in index:
            return ""
        if models[r] in result.errors:
            return f"<b>Error:</b> {html.escape(result.errors[models[r]])}"
        out = result.output(models[r], s)
        return stats_line(out.generations[0], out.answers[0]) if out else ""

    def prompt(r, s):
        out = result.output(models[r], s) if r < len(models) else None
        return gr.update(value=out.prompt) if out else gr.update()

    def header(r):
        if r >= len(models):
            return ""
        revision = result.revisions.get(models[r], "")
        used = result.format_of(models[r])
        shown = " · ".join(part for part in (revision, f"{used} format" if used else "") if part)
        return f"#### {html.escape(models[r])}\n<span class='stats'>{html.escape(shown)}</span>"

    return (_cells(text) + _cells(stats) + _cells(prompt) + [header(r) for r in range(MAX_MODELS)]
            + [result.command, status_line(result, models), result.run_id, inputs_block(result.variables)])


def inputs_block(variables: dict) -> str:
    """What the run was asked, for the presenter view (where the form is hidden): each input, quoted."""
    lines = []
    for name, value in variables.items():
        text = html.escape(str(value)).replace("\n", "<br>")
        lines.append(f"<div class='input-name'>{html.escape(str(name))}</div><blockquote>{text}</blockquote>")
    return "".join(lines)


def show_logged(run_id) -> list:
    """A logged compare run as it finished, the controls set to what it ran (the template where this visitor has
    it): what a link to the run opens. Outputs: template, variable boxes, strategies, k, models, the decoding
    controls, then the grid's outputs."""
    result = logged_result(int(run_id))
    models, p = result.models[:MAX_MODELS], result.params
    strategies = [s for s in STRATEGIES if any(o.strategy == s for o in result.outputs)]
    names = list(result.variables)[:MAX_VARS]
    boxes = [gr.update(label=names[i], value=str(result.variables[names[i]]), visible=True) if i < len(names)
             else gr.update(value="", visible=False) for i in range(MAX_VARS)]
    layout = ([gr.update(visible=r < len(models)) for r in range(MAX_MODELS)]
              + _cells(lambda r, s: gr.update(visible=s in strategies)))
    template = result.template if result.template in template_names() else gr.update()
    return ([template] + boxes + [strategies, result.k, gr.update(value=models), p.temperature, p.top_p,
                                  p.max_new_tokens, p.seed, ", ".join(p.stop), result.example_selection,
                                  result.prompt_format or ""]
            + layout + result_cells(result, models, {s: i for i, s in enumerate(strategies)}))


def status_line(result, models) -> str:
    """The run's one-line summary under the controls."""
    if result.cancelled:
        outputs = [o for o in result.outputs]
        done = sum(o.generations[0].finish_reason != "cancelled" for o in outputs)
        return (f"Stopped: run **{result.run_id}** is logged as cancelled · {done} of {len(outputs)} answers had "
                "finished and are kept; the others show their text so far.")
    failed = f" · **{len(result.errors)} of {len(models)} models failed** (see their row)" if result.errors else ""
    return (f"Run **{result.run_id}** saved · template `{result.template}` version `{result.template_hash}` · "
            f"{len(models)} model{'s' if len(models) > 1 else ''}{failed}")


SCROLL_TO_RESULTS = """() => {
  // On a phone the grid sits below every control: bring the status line (and the results under it) into view.
  if (window.innerWidth < 700) {
    const status = document.getElementById("cmp-status");
    if (status) setTimeout(() => status.scrollIntoView({behavior: "smooth", block: "start"}), 200);
  }
}"""


def build(model_choices: list[str]) -> dict:
    settings = get_settings()
    with gr.Tab("Compare", id="compare") as tab:
        gr.Markdown(HELP, elem_classes="help")
        with gr.Row(elem_classes="edit-only"):  # the presenter view hides the controls
            with gr.Column(scale=3):
                template = gr.Dropdown(template_names(), value="sentiment", label="Template", elem_id="cmp-template")
                var_boxes = [gr.Textbox(label=f"variable {i + 1}", lines=3, elem_id=f"var-{i}", visible=i == 0)
                             for i in range(MAX_VARS)]
                with gr.Row():
                    example_buttons = [gr.Button(f"Example {i + 1}", size="sm", elem_id=f"example-{i}")
                                       for i in range(N_EXAMPLES)]
            with gr.Column(scale=2):
                strategies = gr.CheckboxGroup([(STRATEGY_LABELS[s], s) for s in STRATEGIES],
                                              value=["zero_shot", "few_shot", "cot"], label="Strategies",
                                              elem_id="cmp-strategies")
                k = gr.Slider(1, 8, value=3, step=1, label="Few-shot examples (k)")
                selection = gr.Radio(list(SELECTIONS), value="random", label="Which examples", elem_id="cmp-selection",
                                     info="random (seeded), fixed (the first k) or similar to the input (BM25); "
                                          "never the input itself")
                prompt_format = gr.Radio(FORMAT_CHOICES, value="", label="Prompt format", elem_id="cmp-format",
                                         info=FORMAT_INFO)
                model = gr.Dropdown(model_choices, value=["default"], multiselect=True, allow_custom_value=True,
                                    max_choices=MAX_MODELS, label="Models",
                                    info="default = SmolLM2-135M-Instruct; a folder, .gguf or Hub id; or a remote "
                                         "model: openai:<model>@<base_url or endpoint name>. Up to three: one row "
                                         "each.", elem_id="cmp-model")
                with gr.Accordion("Decoding", open=False):
                    temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature", info="0 = greedy")
                    top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p")
                    max_new_tokens = gr.Slider(1, settings.max_new_tokens_cap, value=min(96, settings.max_new_tokens_cap),
                                               step=1, label="Max new tokens")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    stop = gr.Textbox(label="Stop sequences", info="comma-separated", value="")
                with gr.Row():
                    run = gr.Button("Run", variant="primary", elem_id="cmp-run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="cmp-stop")
        with gr.Row():
            status = gr.Markdown(elem_id="cmp-status")
            run_id = gr.Number(visible=False, precision=0, elem_id="cmp-run-id")
            share = share_row("cmp")
        inputs_shown = gr.HTML(elem_id="cmp-inputs", elem_classes="present-only")
        rows, headers, columns, outputs, stats, prompts = [], [], [], [], [], []
        for r in range(MAX_MODELS):
            with gr.Column(visible=r == 0, elem_id=f"cmp-row-{r}") as row:
                headers.append(gr.Markdown(elem_id=f"cmp-model-{r}"))
                with gr.Row(equal_height=True):
                    for s in STRATEGIES:
                        with gr.Column(visible=s != "few_shot_cot", elem_classes="output-col",
                                       min_width=220) as column:
                            gr.Markdown(f"### {STRATEGY_LABELS[s]}", elem_classes="cell-title")
                            # A fixed height (lines == max_lines) keeps the stats and Show prompt rows of the
                            # columns level however long each answer is; longer text scrolls inside its box.
                            height = 9 if r == 0 else 6
                            outputs.append(gr.Textbox(show_label=False, lines=height, max_lines=height,
                                                      elem_id=cell_id("out", r, s), interactive=False))
                            stats.append(gr.Markdown(elem_id=cell_id("stats", r, s), elem_classes="stats"))
                            with gr.Accordion("Show prompt", open=False, elem_classes="edit-only"):
                                prompts.append(gr.Textbox(show_label=False, lines=10, max_lines=30,
                                                          elem_id=cell_id("prompt", r, s), buttons=["copy"]))
                        columns.append(column)
            rows.append(row)
        command = gr.Textbox(label="Copy as CLI command", buttons=["copy"], elem_id="cmp-cli", interactive=False,
                             elem_classes="edit-only")

    inputs = [template] + var_boxes + [strategies, k, model, temperature, top_p, max_new_tokens, seed, stop, selection,
                                       prompt_format]
    # Layout first (not part of the API's answer), then 12 texts, 12 stats, 12 prompts (model-major), the
    # 3 model headers, the CLI line, the status, the run id and the inputs (shown in the presenter view).
    outputs_all = rows + columns + outputs + stats + prompts + headers + [command, status, run_id, inputs_shown]
    share([run_id])
    # .input: a person picking a template gets its first example; a link setting it keeps the run's own values
    on(template.input, variable_updates, template, var_boxes + example_buttons, api_visibility="private")
    for i, button in enumerate(example_buttons):
        on(button.click, lambda name, i=i: variable_updates(name, i)[:MAX_VARS], template, var_boxes,
           api_visibility="private")
    not_run = "Not run: see the message at the top right."
    run_event = on(run.click, run_compare, inputs, outputs_all, api_visibility="private", **model_event(),
                   failed={status: not_run, **{c: "" for c in stats}})
    run.click(None, None, None, js=SCROLL_TO_RESULTS, api_visibility="private", queue=False)
    stop_btn.click(stop_switches.stop, None, None, api_visibility="private", queue=False)
    return {"tab": tab, "template": template, "var_boxes": var_boxes, "example_buttons": example_buttons,
            "model": model, "strategies": strategies, "run_event": run_event, "show_vars": friendly(variable_updates),
            "logged": (show_logged, [template] + var_boxes + [strategies, k, model, temperature, top_p, max_new_tokens,
                                                              seed, stop, selection, prompt_format] + outputs_all)}
