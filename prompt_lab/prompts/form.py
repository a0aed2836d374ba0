"""Form fields <-> template YAML, for the editor's two views (no gradio here: plain data in, data out)."""
from __future__ import annotations

import json

import yaml

from prompt_lab.prompts.templates import ANSWER_TYPES, parse_template

FORM_FIELDS = ("name", "description", "instruction", "variables", "input", "output_format", "choices",
               "cot_trigger", "answer_prefix", "answer_type", "answer_pattern", "examples")
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


def yaml_to_fields(text: str) -> list:
    """Parse (and validate) template YAML into the form's values, in FORM_FIELDS order."""
    t = parse_template(text, source="YAML")
    examples = [[json.dumps(e.inputs, ensure_ascii=False), e.output, e.rationale or ""] for e in t.examples]
    return [t.name, t.description, t.instruction, ", ".join(t.variables), t.input, t.output_format,
            ", ".join(t.choices or []), t.cot_trigger, t.answer_prefix, t.answer.type, t.answer.pattern or "",
            examples or [["", "", ""]]]


def fields_to_yaml(name, description, instruction, variables, input_, output_format, choices, cot_trigger,
                   answer_prefix, answer_type, answer_pattern, examples) -> str:
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
