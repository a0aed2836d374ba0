"""Compare tab: one template, its strategies side by side on one model, streamed, logged."""
from __future__ import annotations

import html

import gradio as gr

from ..models import GenerationParams
from ..runner import compare_events
from ..settings import get_settings
from ..strategies import STRATEGIES, STRATEGY_LABELS
from ..templates import get_template, template_names
from ..errors import CancelledError
from .common import MODEL_QUEUE, friendly, gpu, stop_switches

MAX_VARS = 4
N_EXAMPLES = 3
HELP = ("Fill in the template's inputs, pick strategies and press **Run**: every strategy's prompt goes to the "
        "model in one batch and the answers stream in side by side. Every run is saved in History.")


def variable_updates(template_name: str, example: int | None = 0) -> list:
    """Labels, visibility and (optionally) example values for the variable boxes, then the example buttons."""
    template = get_template(template_name)
    if len(template.variables) > MAX_VARS:
        raise gr.Error(f"template '{template.name}' has {len(template.variables)} variables; this form shows "
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


def stats_line(generation, answer) -> str:
    found = f"<mark>{html.escape(answer)}</mark>" if answer is not None else "<i>no answer found</i>"
    return (f"Answer: {found} · {generation.prompt_tokens} → {generation.completion_tokens} tokens · "
            f"{generation.latency_ms / 1000:.2f} s · {generation.tokens_per_s:.1f} tok/s · {generation.finish_reason}")


@friendly
@gpu
def run_compare(template_name, v0, v1, v2, v3, strategies, k, model, temperature, top_p, max_new_tokens, seed,
                stop, request: gr.Request = None, progress=gr.Progress()):
    """Stream one compare run into the strategy columns."""
    template = get_template(template_name)
    strategies = [s for s in STRATEGIES if s in (strategies or [])]
    if not strategies:
        raise gr.Error("Pick at least one strategy.")
    variables = dict(zip(template.variables, [v0, v1, v2, v3]))
    cap = get_settings().max_new_tokens_cap
    params = GenerationParams(temperature=float(temperature), top_p=float(top_p),
                              max_new_tokens=min(int(max_new_tokens), cap), seed=int(seed),
                              stop=[s.strip() for s in (stop or "").split(",") if s.strip()])
    cancel = stop_switches.fresh(request)
    columns = [gr.update(visible=s in strategies) for s in STRATEGIES]
    blank = [gr.update(value="") for _ in STRATEGIES]
    waiting = [gr.update(value="generating…" if s in strategies else "") for s in STRATEGIES]
    yield columns + blank + waiting + [gr.update() for _ in STRATEGIES] + ["", "Loading the model…"]
    index = {s: i for i, s in enumerate(strategies)}
    events = compare_events(template, variables, strategies=strategies, model=model or "default", params=params,
                            k=int(k), cancel=cancel)
    try:
        yield from _stream(events, index, progress)
    except CancelledError:
        gr.Warning("Stopped.")
        stopped = [gr.update(value="stopped" if s in strategies else "") for s in STRATEGIES]
        yield ([gr.update() for _ in STRATEGIES] * 2 + stopped + [gr.update() for _ in STRATEGIES]
               + [gr.update(), "Stopped: the run is logged as cancelled; the partial text above was not saved."])


def _stream(events, index, progress):
    for event in events:
        if event.kind == "progress":
            progress(event.fraction, desc=event.message)
        elif event.kind == "partial":
            texts = [gr.update(value=event.texts[index[s]].lstrip()) if s in index else gr.update()
                     for s in STRATEGIES]
            yield ([gr.update() for _ in STRATEGIES] + texts + [gr.update() for _ in STRATEGIES] * 2
                   + [gr.update(), "Generating…"])
        else:
            result = event.result
            by_strategy = {o.strategy: o for o in result.outputs}
            texts, stats, prompts = [], [], []
            for s in STRATEGIES:
                output = by_strategy.get(s)
                texts.append(gr.update(value=output.generations[0].text.lstrip()) if output else gr.update())
                stats.append(stats_line(output.generations[0], output.answers[0]) if output else "")
                prompts.append(gr.update(value=output.prompt) if output else gr.update())
            for warning in result.warnings:
                gr.Warning(warning)
            status = (f"Run **{result.run_id}** saved · template `{result.template}` version "
                      f"`{result.template_hash}` · model `{result.model}` ({result.model_revision})")
            yield [gr.update() for _ in STRATEGIES] + texts + stats + prompts + [result.command, status]


def build(model_choices: list[str]) -> dict:
    settings = get_settings()
    with gr.Tab("Compare", id="compare"):
        gr.Markdown(HELP, elem_classes="help")
        with gr.Row():
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
                model = gr.Dropdown(model_choices, value="default", allow_custom_value=True, label="Model",
                                    info="default = SmolLM2-135M-Instruct; or a folder, .gguf or Hub id",
                                    elem_id="cmp-model")
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
        status = gr.Markdown(elem_id="cmp-status")
        columns, outputs, stats, prompts = [], [], [], []
        with gr.Row(equal_height=True):
            for s in STRATEGIES:
                with gr.Column(visible=s != "few_shot_cot", elem_classes="output-col", min_width=220) as column:
                    gr.Markdown(f"### {STRATEGY_LABELS[s]}")
                    outputs.append(gr.Textbox(show_label=False, lines=9, max_lines=24, elem_id=f"out-{s}",
                                              interactive=False))
                    stats.append(gr.Markdown(elem_id=f"stats-{s}", elem_classes="stats"))
                    with gr.Accordion("Show prompt", open=False):
                        prompts.append(gr.Textbox(show_label=False, lines=10, max_lines=30, elem_id=f"prompt-{s}",
                                                  buttons=["copy"]))
                columns.append(column)
        command = gr.Textbox(label="Copy as CLI command", buttons=["copy"], elem_id="cmp-cli", interactive=False)

    inputs = [template] + var_boxes + [strategies, k, model, temperature, top_p, max_new_tokens, seed, stop]
    outputs_all = columns + outputs + stats + prompts + [command, status]
    show_vars = friendly(variable_updates)
    template.change(show_vars, template, var_boxes + example_buttons, api_visibility="private")
    for i, button in enumerate(example_buttons):
        button.click(friendly(lambda name, i=i: variable_updates(name, i)[:MAX_VARS]), template, var_boxes,
                     api_visibility="private")
    run_event = run.click(run_compare, inputs, outputs_all, api_name="compare", concurrency_id=MODEL_QUEUE,
                          concurrency_limit=1)
    stop_btn.click(stop_switches.stop, None, None, api_visibility="private", queue=False)
    return {"template": template, "var_boxes": var_boxes, "example_buttons": example_buttons, "model": model,
            "strategies": strategies, "run_event": run_event, "show_vars": show_vars}
