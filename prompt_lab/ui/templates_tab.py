"""Templates tab: pick, edit (form and YAML, kept in sync), preview every strategy, save."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from prompt_lab.errors import PromptLabError
from prompt_lab.compare import render
from prompt_lab.runlog.store import connect, save_template_version
from prompt_lab.prompts.strategies import STRATEGIES, STRATEGY_LABELS, supported_strategies
from prompt_lab.prompts.templates import (ANSWER_TYPES, FORMATS, parse_template, save_user_template, template_names,
                                          template_path)
from prompt_lab.yamlfiles import read_text_file
from prompt_lab.ui.common import as_text, error, friendly, info, on
from prompt_lab.prompts.form import EXAMPLE_HEADERS, STARTER, fields_to_yaml, stored_state, yaml_to_fields

HELP = ("Edit a template in the form or as YAML; both stay in sync. The preview shows the exact prompt each "
        "strategy sends to the model, filled with one of the template's examples. Shipped templates are "
        "read-only: save your changes under a new name.")


# The status line says whether what is on screen is what a Compare or an Evaluation of this name would use.
STORED_NOTE = {"saved": " · **Saved** as `{name}.yaml`", "shipped": " · shipped",
               "changed": " · unsaved changes (Compare and Evaluate use the saved `{name}`)",
               "new": " · not saved yet"}


def template_text(name: str) -> str:
    """The YAML of a shipped or saved template, by name (never a path a visitor sends)."""
    return read_text_file(template_path(name), "template file")


def save_template_text(text: str):
    """Save a template to the user templates and log its version; returns the Template. The text is bounded before
    it is read (size, nesting, aliases), and the logged version is the template written out, within the same cap."""
    template = save_user_template(text)
    with connect() as db:
        save_template_version(db, template.name, template.content_hash, template.to_yaml())
    return template


def preview(text: str, model: str, k: int, example: int):
    """Validation message plus one textbox update per strategy."""
    try:
        template = parse_template(text, source="YAML")
    except PromptLabError as exc:
        return [f"**Not valid:** {as_text(exc)}"] + [gr.update() for _ in STRATEGIES]
    if len(template.examples) > 1:  # an example as the query; the others are the demonstrations
        values = template.examples[max(0, min(int(example or 1), len(template.examples)) - 1)].inputs
    else:  # a lone example is never its own demonstration: the query is a placeholder, so few-shot shows it
        values = {v: f"<{v}>" for v in template.variables}
    usable = supported_strategies(template)
    try:
        items = {i["strategy"]: i for i in render(template, values, strategies=usable, model=model or "default",
                                                  k=int(k))}
    except PromptLabError as exc:
        return [f"**Error:** {as_text(exc)}"] + [gr.update() for _ in STRATEGIES]
    updates = []
    for strategy in STRATEGIES:
        item = items.get(strategy)
        if item is None:
            updates.append(gr.update(value="(needs examples with rationales)" if strategy == "few_shot_cot"
                                     else "(needs examples)", label=STRATEGY_LABELS[strategy]))
        else:
            updates.append(gr.update(value=item["prompt"],
                                     label=f"{STRATEGY_LABELS[strategy]} · {item['tokens']} tokens · "
                                           f"{item['format']} format"))
    status = f"**Valid** · version `{template.content_hash}` · {len(template.examples)} example{'' if len(template.examples) == 1 else 's'}"
    return [status + STORED_NOTE[stored_state(template)].format(name=template.name)] + updates


def build(model_choices: list[str]) -> dict:
    with gr.Tab("Templates", id="templates") as tab:
        gr.Markdown(HELP, elem_classes="help")
        with gr.Row():
            pick = gr.Dropdown(template_names(), value="sentiment", label="Template", elem_id="tpl-pick", scale=4)
            new_btn = gr.Button("New template", scale=1)
            save_btn = gr.Button("Save to my templates", variant="primary", scale=1, elem_id="tpl-save")
        status = gr.Markdown(elem_id="tpl-status")
        with gr.Row():
            with gr.Column(scale=5):
                with gr.Tabs():
                    with gr.Tab("Form"):
                        with gr.Row():
                            name = gr.Textbox(label="Name", info="lowercase, digits, - and _", elem_id="tpl-name")
                            variables = gr.Textbox(label="Input variables", info="comma-separated")
                        description = gr.Textbox(label="Description")
                        instruction = gr.Textbox(label="Task instruction", lines=3, elem_id="tpl-instruction",
                                                 info="Jinja; {{ choices|join(', ') }} lists the answer choices. "
                                                      "Empty (and no output format): no system turn, so the "
                                                      "model's own default system line applies")
                        input_ = gr.Textbox(label="Input layout", lines=2, info="Jinja, e.g. Review: {{ review }}")
                        output_format = gr.Textbox(label="Output format hint")
                        with gr.Row():
                            choices = gr.Textbox(label="Answer choices", info="comma-separated; empty if free text")
                            answer_type = gr.Dropdown(list(ANSWER_TYPES), label="Answer type")
                            answer_pattern = gr.Textbox(label="Answer regex (optional)")
                        with gr.Row():
                            cot_trigger = gr.Textbox(label="CoT trigger")
                            answer_prefix = gr.Textbox(label="Answer prefix (CoT)")
                        with gr.Row():
                            prompt_format = gr.Radio(list(FORMATS), label="Prompt format", elem_id="tpl-format",
                                                     info="chat: the model's chat template; raw: plain text, as "
                                                          "lm-eval's default prompts")
                            separator = gr.Textbox(label="Separator (raw)", elem_id="tpl-separator",
                                                   info="between blocks; \\n is a newline")
                            answer_label = gr.Textbox(label="Answer label (raw)", elem_id="tpl-answer-label",
                                                      info="ends each input; the answer follows after a space")
                        # Three visible columns at any width: inputs, output and rationale share the row.
                        examples = gr.Dataframe(headers=EXAMPLE_HEADERS, label="Few-shot examples",
                                                interactive=True, wrap=True, column_count=(3, "fixed"),
                                                column_widths=["40%", "20%", "40%"], elem_id="tpl-examples")
                    with gr.Tab("YAML"):
                        yaml_box = gr.Code(language="yaml", lines=26, label="Template YAML", elem_id="tpl-yaml",
                                           interactive=True)
            with gr.Column(scale=6):
                with gr.Row():
                    model = gr.Dropdown(model_choices, value="default", allow_custom_value=True,
                                        label="Count tokens for model")
                    k = gr.Slider(1, 8, value=3, step=1, label="Few-shot k")
                    example = gr.Number(value=1, precision=0, minimum=1, label="Preview with example #")
                previews = [gr.Textbox(label=STRATEGY_LABELS[s], lines=7, max_lines=18, elem_id=f"preview-{s}",
                                       buttons=["copy"]) for s in STRATEGIES]

    form = [name, description, instruction, variables, input_, output_format, choices, cot_trigger, answer_prefix,
            answer_type, answer_pattern, prompt_format, separator, answer_label, examples]
    preview_inputs = [yaml_box, model, k, example]
    preview_outputs = [status] + previews

    @friendly
    def load(template_name):
        text = template_text(template_name)
        return [text] + yaml_to_fields(text)

    def from_form(*values):
        try:
            return fields_to_yaml(*values)
        except ValueError as exc:
            raise error(str(exc)) from None

    def from_yaml(text):
        try:
            return yaml_to_fields(text)
        except PromptLabError:
            return [gr.update() for _ in form]  # keep the form; the status line shows the problem

    def save(text):
        template = save_template_text(text)
        info(f"Saved '{template.name}' (version {template.content_hash}). It is in every template list now.")
        return (f"**Saved** as `{Path(str(template.source)).name}` · version `{template.content_hash}`",
                gr.update(choices=template_names(), value=template.name))

    safe_preview = friendly(preview)
    pick.change(load, pick, [yaml_box] + form, api_visibility="private").then(
        safe_preview, preview_inputs, preview_outputs, api_visibility="private")
    on(new_btn.click, lambda: [STARTER] + yaml_to_fields(STARTER), None, [yaml_box] + form,
       api_visibility="private").success(safe_preview, preview_inputs, preview_outputs, api_visibility="private")
    for field in form:
        on(field.input, from_form, form, yaml_box, api_visibility="private", trigger_mode="always_last").then(
            safe_preview, preview_inputs, preview_outputs, api_visibility="private")
    yaml_box.input(from_yaml, yaml_box, form, api_visibility="private", trigger_mode="always_last").then(
        safe_preview, preview_inputs, preview_outputs, api_visibility="private")
    for control in (model, k, example):
        on(control.change, preview, preview_inputs, preview_outputs, api_visibility="private")
    saved = on(save_btn.click, save, yaml_box, [status, pick], api_visibility="private",
               failed={status: "**Not saved:** see the message at the top right."})
    return {"tab": tab, "pick": pick, "yaml": yaml_box, "form": form, "load": load, "preview_inputs": preview_inputs,
            "preview_outputs": preview_outputs, "preview": safe_preview, "model": model, "saved": saved}
