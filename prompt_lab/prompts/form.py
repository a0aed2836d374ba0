"""The template editor's data: form fields <-> template YAML for its two views, and how the text on screen stands
against the stored file (no gradio here: plain data in, data out)."""
from __future__ import annotations

import json

import yaml

from prompt_lab.errors import PromptLabError
from prompt_lab.prompts.templates import (ANSWER_TYPES, FORMATS, RAW_DEFAULTS, SHIPPED_DIR, Template, load_template,
                                          parse_template, template_files)

FORM_FIELDS = ("name", "description", "instruction", "variables", "input", "output_format", "choices",
               "cot_trigger", "answer_prefix", "answer_type", "answer_pattern", "format", "separator", "answer_label",
               "examples")
EXAMPLE_HEADERS = ["inputs (JSON)", "output", "rationale"]

STARTER = """\
name: my-template
description: What this prompt does, in one line.
instruction: Answer the question in one short sentence.
variables: [question]
input: "Question: {{ question }}"
output_format: Give only the answer.
answer:
  type: text
examples:
  - inputs: {question: "What colour is a clear daytime sky?"}
    output: Blue
    rationale: Air scatters blue light more than red light, so the sky looks blue.
"""


def _split(text: str) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def shown_separator(separator: str) -> str:
    """A separator as the form's one-line box shows it: a newline as \\n, a tab as \\t."""
    return json.dumps(separator, ensure_ascii=False)[1:-1]


def read_separator(text: str) -> str:
    """The form's separator box back to text: escapes (\\n, \\t) read as JSON reads them; empty: the default."""
    if not text:
        return RAW_DEFAULTS["separator"]
    try:
        return json.loads(f'"{text}"')
    except json.JSONDecodeError:
        return text


def yaml_to_fields(text: str) -> list:
    """Parse (and validate) template YAML into the form's values, in FORM_FIELDS order."""
    t = parse_template(text, source="YAML")
    examples = [[json.dumps(e.inputs, ensure_ascii=False), e.output, e.rationale or ""] for e in t.examples]
    return [t.name, t.description, t.instruction, ", ".join(t.variables), t.input, t.output_format,
            ", ".join(t.choices or []), t.cot_trigger, t.answer_prefix, t.answer.type, t.answer.pattern or "",
            t.format, shown_separator(t.separator), t.answer_label, examples or [["", "", ""]]]


def fields_to_yaml(name, description, instruction, variables, input_, output_format, choices, cot_trigger,
                   answer_prefix, answer_type, answer_pattern, prompt_format, separator, answer_label, examples) -> str:
    """Build template YAML from the form (not validated here: the editor validates the YAML it shows)."""
    data: dict = {"name": name.strip(), "description": description, "instruction": instruction,
                  "variables": _split(variables), "input": input_, "output_format": output_format}
    if _split(choices):
        data["choices"] = _split(choices)
    data["cot_trigger"] = cot_trigger
    data["answer_prefix"] = answer_prefix
    answer = {"type": answer_type if answer_type in ANSWER_TYPES else "text"}
    if answer_pattern:
        answer["pattern"] = answer_pattern
    data["answer"] = answer
    layout = {"format": prompt_format if prompt_format in FORMATS else "chat", "separator": read_separator(separator),
              "answer_label": answer_label if answer_label is not None else RAW_DEFAULTS["answer_label"]}
    data.update({k: v for k, v in layout.items() if v != RAW_DEFAULTS[k]})  # the defaults stay out of the YAML
    rows = examples.values.tolist() if hasattr(examples, "values") else (examples or [])
    parsed = []
    for i, row in enumerate(rows, 1):
        inputs, output, rationale = (list(row) + ["", "", ""])[:3]
        if not str(inputs or "").strip() and not str(output or "").strip():
            continue
        try:
            values = json.loads(inputs) if str(inputs).strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"example {i}: 'inputs' is not JSON ({exc.msg}); write e.g. {{\"review\": \"...\"}}")
        example = {"inputs": values, "output": str(output or "")}
        if str(rationale or "").strip():
            example["rationale"] = str(rationale)
        parsed.append(example)
    data["examples"] = parsed
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def stored_state(template: Template) -> str:
    """How a template being edited stands against the file of the same name: 'shipped' or 'saved' (same content as
    that file), 'changed' (a file of that name differs), or 'new' (no file of that name)."""
    path = template_files().get(template.name)
    if path is None:
        return "new"
    try:
        stored = load_template(path)
    except PromptLabError:
        return "changed"
    if stored.content_hash != template.content_hash:
        return "changed"
    return "shipped" if path.parent.resolve() == SHIPPED_DIR.resolve() else "saved"
