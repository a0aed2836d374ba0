"""Prompt templates: the Template model, YAML load/save with line-numbered errors, lookup by name."""
from __future__ import annotations

import hashlib
import os
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from prompt_lab.access import fair_use, visitors
from prompt_lab.errors import PromptLabError, TemplateError, UnknownChoiceError
from prompt_lab.prompts.rendering import RenderFailure, check_syntax, render_strings, template_variables
from prompt_lab.settings import get_settings
from prompt_lab.yamlfiles import SIZE_SETTING, mapping_node, parse_yaml, read_text_file

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "templates"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # always fullmatch: `$` would let a final newline through
VARIABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # fullmatch too; `_names` are Jinja's and Python's own
# Names a variable cannot take: Jinja's context and globals (a variable `self` broke every render), its literal and
# operator words, and `choices`, which a template's answer choices fill.
RESERVED_VARIABLES = frozenset({
    "self", "loop", "caller", "varargs", "kwargs", "super", "range", "dict", "lipsum", "cycler", "joiner",
    "namespace", "true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else",
    "choices"})
VARIABLE_RULE = ("use a letter, then letters, digits or '_' (1-64 chars), and none of: "
                 + ", ".join(sorted(RESERVED_VARIABLES)))
ANSWER_TYPES = ("choice", "number", "text", "json")
MATCH_MODES = ("first", "last")
JINJA_FIELDS = ("instruction", "input", "output_format")
DEFAULT_COT_TRIGGER = "Let's think step by step."
FORMATS = ("chat", "raw")  # chat: the model's chat template; raw: plain text (prompts.strategies.Prompt.as_raw_text)
RAW_DEFAULTS = {"format": "chat", "separator": "\n\n", "answer_label": "Answer:"}


@dataclass
class Example:
    inputs: dict[str, str]
    output: str
    rationale: str | None = None


@dataclass
class AnswerSpec:
    """How the answer is pulled out of a completion."""

    type: str = "text"  # one of ANSWER_TYPES
    pattern: str | None = None  # regex; `group` selects the capture
    group: int = 1
    match: str = "last"  # which regex match counts when there are several


@dataclass
class Template:
    name: str
    instruction: str  # empty: no system turn (the model's chat template then applies its own default, if any)
    variables: list[str]
    description: str = ""
    input: str = ""
    output_format: str = ""
    choices: list[str] | None = None
    examples: list[Example] = field(default_factory=list)
    cot_trigger: str = DEFAULT_COT_TRIGGER
    answer_prefix: str = "The answer is"
    answer: AnswerSpec = field(default_factory=AnswerSpec)
    format: str = "chat"  # one of FORMATS; an experiment, a compare or the CLI's --format may override it
    separator: str = "\n\n"  # raw format: what joins the system text, each demonstration and the query
    answer_label: str = "Answer:"  # raw format: the line after each input that the answer follows ("" for none)
    source: str = field(default="", compare=False, repr=False)  # file it came from, for messages

    def __post_init__(self) -> None:
        if not self.input:
            self.input = "\n".join(f"{{{{ {v} }}}}" for v in self.variables)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("source")
        if not data["choices"]:
            data.pop("choices")
        for key, default in RAW_DEFAULTS.items():  # left out at their defaults: older templates keep their hash
            if data[key] == default:
                data.pop(key)
        for example in data["examples"]:
            if not example.get("rationale"):
                example.pop("rationale", None)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)

    @property
    def content_hash(self) -> str:
        """Short hash of the template's content: runs point at the exact version they used."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def render(self, field_name: str, variables: dict, choices: list[str] | None = None) -> str:
        """Render one Jinja field with the given values (plus `choices`: the given list, else the template's) in
        the sandbox."""
        return self.render_many([(field_name, variables, choices)])[0]

    def render_many(self, requests: list[tuple]) -> list[str]:
        """Render several (field, values) or (field, values, choices) requests in one round trip to the sandbox;
        `{{ choices }}` is a request's own choices when it has them (an item's), else the template's."""
        items = []
        for field_name, variables, *own in requests:
            self._check_missing(field_name, variables)
            choices = own[0] if own and own[0] else self.choices
            context = {"choices": [_as_text(c) for c in choices or []],
                       **{k: _as_text(v) for k, v in variables.items()}}
            items.append((getattr(self, field_name), context))
        results = render_strings(items)
        for (field_name, *_), result in zip(requests, results):
            if isinstance(result, RenderFailure):
                raise TemplateError(self._render_message(field_name, result))
        return results

    def _check_missing(self, field_name: str, variables: dict) -> None:
        needed = template_variables(getattr(self, field_name)) - {"choices"}
        missing = sorted(needed - set(variables))
        if missing:
            raise TemplateError(
                f"template '{self.name}': missing variable {', '.join(repr(m) for m in missing)} "
                f"for field '{field_name}' (this template takes: {', '.join(self.variables)})"
            )

    def _render_message(self, field_name: str, failure: RenderFailure) -> str:
        where = f"template '{self.name}', field '{field_name}'"
        if failure.line:
            where += f", line {failure.line}"
        labels = {"undefined": "undefined value", "security": "unsafe operation blocked",
                  "too_large": "output too large, cut off", "timeout": "too slow, cut off",
                  "too_deep": "nested or recursive too deeply, cut off", "syntax": "syntax error", "runtime": "error"}
        return f"{where}: {labels.get(failure.kind, failure.kind)}: {failure.message}"


def _shown(value: str) -> str:
    """A name as a message quotes it: control characters (a newline, a tab) escaped, and long ones cut."""
    value = value if len(value) <= 200 else value[:200] + "..."
    return f"'{value}'" if value.isprintable() else repr(value)


def _as_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------- parsing


def _key_lines(text: str) -> dict:
    """Map of top-level key -> (line of the key, line where its value starts[, a folded block's source lines])."""
    node = mapping_node(text)
    lines = {}
    if node is not None:
        for key, value in node.value:
            block = isinstance(value, yaml.ScalarNode) and value.style in ("|", ">")
            lines[key.value] = (key.start_mark.line + 1, value.start_mark.line + 1 + (1 if block else 0))
            if block and value.style == ">":  # folding joins lines: keep them to find a mistake's own line
                raw = text.splitlines()[value.start_mark.line + 1:value.end_mark.line]
                lines[key.value] += ("\n".join(raw),)
            if key.value == "examples" and isinstance(value, yaml.SequenceNode):
                for i, item in enumerate(value.value, 1):
                    lines[f"examples.{i}"] = (item.start_mark.line + 1, item.start_mark.line + 1)
    return lines


def parse_template(text: str, source: str = "<template>") -> Template:
    """Parse and validate template YAML; errors name the source, the line and the field. Bounded: the YAML reader
    refuses oversized text, deep nesting and alias bombs, and the template written out in full (as the run log
    keeps it) must fit the same size limit."""
    try:
        template = _parse_template(text, source)
    except RecursionError:  # the bounds should prevent it; a person never sees it as a traceback
        raise TemplateError(f"{source}: nested too deeply to read") from None
    limit = get_settings().max_template_bytes
    size = len(template.to_yaml().encode("utf-8"))
    if size > limit:
        raise TemplateError(f"{source}: written out in full (aliases expanded) this template is {size:,} bytes; "
                            f"the limit is {limit:,} ({SIZE_SETTING})")
    return template


def _parse_template(text: str, source: str) -> Template:
    data = parse_yaml(text, source, TemplateError)
    lines = _key_lines(text)

    def fail(key: str | None, problem: str, item: int | None = None):
        at = f"{key}.{item}" if item is not None and f"{key}.{item}" in lines else key
        line = f", line {lines[at][0]}" if at in lines else ""
        label = f" field '{key}':" if key else ""
        raise TemplateError(f"{source}{line}:{label} {problem}")

    if not isinstance(data, dict):
        fail(None, "a template must be a YAML mapping (name:, instruction:, variables:, ...)")
    allowed = {f for f in Template.__dataclass_fields__ if f != "source"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        fail(unknown[0], f"unknown field; allowed fields: {', '.join(sorted(allowed))}")
    for key in ("name", "variables"):  # no instruction, or an empty one: the prompt has no system turn
        if key not in data or data[key] in (None, "", []):
            fail(None, f"missing required field '{key}'")
    for key in ("name", "description", "instruction", "input", "output_format", "cot_trigger", "answer_prefix",
                "format", "separator", "answer_label"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            fail(key, f"must be text, got {type(data[key]).__name__}")
    name = data["name"]
    if not NAME_RE.fullmatch(name):
        fail("name", f"{_shown(name)} is not a valid name: use lowercase letters, digits, '-' and '_' (1-64 chars)")
    variables = data["variables"]
    if not isinstance(variables, list) or not all(isinstance(v, str) for v in variables):
        fail("variables", "must be a list of identifiers such as [review] or [question, context]")
    for v in variables:
        if v in RESERVED_VARIABLES:
            fail("variables", f"{_shown(v)} is a reserved name; {VARIABLE_RULE}")
        if not VARIABLE_RE.fullmatch(v):
            fail("variables", f"{_shown(v)} is not a valid variable name: {VARIABLE_RULE}")
    if len(set(variables)) != len(variables):
        fail("variables", "lists a variable twice")
    if (data.get("format") or "chat") not in FORMATS:
        fail("format", f"{_shown(data['format'])} is not a prompt format; use one of: {', '.join(FORMATS)} (chat: "
                       "the model's chat template; raw: plain text, as lm-eval's default prompts)")
    if data.get("separator") == "":
        fail("separator", "is empty: demonstrations and the query would run together; leave it out for the "
                          "default, a blank line (\"\\n\\n\")")
    choices = data.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or not choices or not all(isinstance(c, (str, int)) for c in choices):
            fail("choices", "must be a non-empty list of labels such as [Positive, Negative]")
        if any(isinstance(c, bool) for c in choices):
            fail("choices", "true/false read as booleans: quote them (\"true\", \"false\") so each label keeps "
                            "its spelling")
        choices = [str(c) for c in choices]
    answer = data.get("answer") or {}
    if not isinstance(answer, dict):
        fail("answer", "must be a mapping with type, pattern, group, match")
    bad = sorted(set(answer) - set(AnswerSpec.__dataclass_fields__))
    if bad:
        fail("answer", f"unknown key '{bad[0]}'; allowed: {', '.join(AnswerSpec.__dataclass_fields__)}")
    spec = AnswerSpec(**answer)
    if spec.type not in ANSWER_TYPES:
        fail("answer", f"type '{spec.type}' is not one of: {', '.join(ANSWER_TYPES)}")
    if spec.match not in MATCH_MODES:
        fail("answer", f"match '{spec.match}' is not one of: {', '.join(MATCH_MODES)}")
    if spec.type == "choice" and not choices:
        fail("answer", "type 'choice' needs a 'choices' list")
    if spec.pattern is not None:
        try:
            compiled = re.compile(spec.pattern)
        except re.error as exc:
            fail("answer", f"pattern is not a valid regular expression: {exc}")
        if not isinstance(spec.group, int) or isinstance(spec.group, bool):
            fail("answer", f"group must be a whole number, not {spec.group!r}")
        if spec.group < 0 or spec.group > compiled.groups:
            fail("answer", f"group {spec.group} does not exist in the pattern ({compiled.groups} groups)")
    examples = []
    raw_examples = data.get("examples") or []
    if not isinstance(raw_examples, list):
        fail("examples", "must be a list of {inputs: {...}, output: ..., rationale: ...}")
    for i, ex in enumerate(raw_examples, 1):
        if not isinstance(ex, dict) or "inputs" not in ex or "output" not in ex:
            fail("examples", f"example {i} needs 'inputs' and 'output'", i)
        extra = sorted(set(ex) - {"inputs", "output", "rationale"})
        if extra:
            fail("examples", f"example {i}: unknown key '{extra[0]}'; allowed: inputs, output, rationale", i)
        if not isinstance(ex["inputs"], dict):
            fail("examples", f"example {i}: 'inputs' must map variable names to values", i)
        missing = [v for v in variables if v not in ex["inputs"]]
        if missing:
            fail("examples", f"example {i}: inputs lack {', '.join(repr(m) for m in missing)}", i)
        examples.append(Example(
            inputs={k: _as_text(v) for k, v in ex["inputs"].items()},
            output=_as_text(ex["output"]),
            rationale=None if ex.get("rationale") in (None, "") else _as_text(ex["rationale"]),
        ))
    template = Template(
        name=name,
        instruction=data.get("instruction") or "",
        variables=list(variables),
        description=data.get("description") or "",
        input=data.get("input") or "",
        output_format=data.get("output_format") or "",
        choices=choices,
        examples=examples,
        cot_trigger=data.get("cot_trigger") or DEFAULT_COT_TRIGGER,
        answer_prefix=data.get("answer_prefix") or "The answer is",
        answer=spec,
        format=data.get("format") or "chat", separator=data.get("separator") or RAW_DEFAULTS["separator"],
        # the answer always follows its label after one space, so a label's own trailing spaces would double it
        answer_label=RAW_DEFAULTS["answer_label"] if data.get("answer_label") is None else data["answer_label"].rstrip(),
        source=source,
    )
    for key in JINJA_FIELDS:
        error = check_syntax(getattr(template, key))
        if error is not None:
            if len(lines.get(key, ())) > 2:
                error = check_syntax(lines[key][2]) or error
            base = lines.get(key, (None, None))[1]
            line = (base + (error.lineno or 1) - 1) if base else error.lineno
            raise TemplateError(f"{source}, line {line}: field '{key}': template syntax error: {error.message}")
        unknown_vars = sorted(template_variables(getattr(template, key)) - set(variables) - {"choices"})
        if unknown_vars:
            fail(key, f"uses {', '.join(repr(u) for u in unknown_vars)}, which is not in variables "
                      f"({', '.join(variables)}); add it to 'variables' or fix the name")
    return template


def load_template(path: str | Path) -> Template:
    """Load a template file; errors name the file."""
    return parse_template(read_text_file(path, "template file", TemplateError), source=str(path))


def template_files() -> dict[str, Path]:
    """Every template file by name: the shipped ones, then the user's (which shadow a shipped one of their name)."""
    files: dict[str, Path] = {}
    for folder in (SHIPPED_DIR, visitors.templates_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                files[path.stem] = path  # a user template of the same name shadows the shipped one
    return files


def template_names() -> list[str]:
    return sorted(template_files())


def list_templates() -> list[Template]:
    """All shipped and user templates, by name."""
    return [load_template(path) for _, path in sorted(template_files().items())]


def template_path(name: str) -> Path:
    """The file of a shipped or saved template, found by name only; a saved file that links outside its folder
    is not read."""
    files = template_files()
    if name not in files:
        raise UnknownChoiceError(f"unknown template {_shown(name)}; available: {', '.join(sorted(files)) or '(none)'}")
    path = files[name]
    if path.resolve().parent != path.parent.resolve():
        raise TemplateError(f"template '{name}' links outside the templates folder and is not read")
    return path


def template_from_request(value) -> Template:
    """The template a visitor (the app, the API) asks for: a shipped or saved template's name, or the template's own
    YAML text; never a file path, so a request can neither read a server file nor learn whether one exists (the
    CLI's get_template still reads the paths its user names)."""
    value = value if isinstance(value, str) else ""
    if NAME_RE.fullmatch(value):
        return load_template(template_path(value))
    if "\n" in value or ":" in value:
        return parse_template(value, source="<template text>")
    raise TemplateError(f"{_shown(value)} is not a template name or template YAML: give the name of a shipped or "
                        "saved template (see the template list) or the template's own YAML text; file paths are not "
                        "read")


def get_template(name_or_path: str) -> Template:
    """A template by name, or by path to a .yaml file; unknown names list the valid ones."""
    files = template_files()
    if name_or_path in files:
        return load_template(files[name_or_path])
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        return load_template(name_or_path)
    raise UnknownChoiceError(
        f"unknown template '{name_or_path}'; available: {', '.join(sorted(files)) or '(none)'}"
    )


def shipped_names() -> set[str]:
    return {p.stem for p in SHIPPED_DIR.glob("*.yaml")} if SHIPPED_DIR.is_dir() else set()


def save_user_template(text: str) -> Template:
    """Validate template YAML and save it as <user templates>/<name>.yaml (atomically): the data dir's templates
    folder locally, the visitor's own on a public Space (within saves_per_minute and max_templates_per_visitor).

    Shipped templates are never overwritten: their names are refused. The name is checked against
    NAME_RE, so the path cannot leave the folder.
    """
    if get_settings().public_mode:
        if visitors.current() == visitors.NOBODY:
            raise TemplateError("open the page first: a request that names no visitor cannot save a template here")
        fair_use.check_save(visitors.current().key)
    template = parse_template(text, source="<editor>")
    if template.name in shipped_names():
        raise TemplateError(f"'{template.name}' is a shipped template and is never overwritten; "
                            f"save your version under a new name, e.g. '{template.name}-v2'")
    folder = visitors.templates_dir()
    if get_settings().public_mode:
        cap = get_settings().max_templates_per_visitor
        if not (folder / f"{template.name}.yaml").exists() and len(list(folder.glob("*.yaml"))) >= cap:
            raise TemplateError(f"you have {cap} saved templates, the most one visitor may keep on this Space; "
                                "save over one of yours instead")
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    path = (folder / f"{template.name}.yaml").resolve()
    if path.parent != folder:  # unreachable with NAME_RE; kept as the last line of defence
        raise TemplateError(f"template name '{template.name}' would leave the templates folder")
    staging = path.with_name(f".{template.name}.yaml.tmp")
    staging.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")  # the author's own layout
    os.replace(staging, path)
    template.source = str(path)
    return template
