"""Prompt variants: one template with some of its fields replaced (instruction, output format, input layout,
examples, CoT trigger, answer prefix), or another template, each under a short name, so an evaluation can cross
wordings of one task with strategies and models.

The template itself is always the variant named `original`. Each variant is built through the template parser, so
it is checked like any template and has its own content hash; every error names the source (an experiment file, the
Evaluate tab's box), the line, the variant and the field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from prompt_lab.errors import PromptLabError, TemplateError
from prompt_lab.prompts.templates import Template, load_template, parse_template, template_path
from prompt_lab.yamlfiles import list_item_lines, parse_yaml

ORIGINAL = "original"
VARIANT_FIELDS = ("instruction", "output_format", "input", "examples", "cot_trigger", "answer_prefix")
VARIANT_KEYS = ("name", "template") + VARIANT_FIELDS
TEXT_KEYS = ("template", "instruction", "output_format", "input", "cot_trigger", "answer_prefix")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # short: it labels every condition of a report
MAX_VARIANTS = 16  # each multiplies the evaluation's work (strategies x models x k x seeds x items)
_MARK = "<variant>"  # the source the parser names in its errors, replaced by the variant's own place
_PARSER_ERROR = re.compile(re.escape(_MARK) + r"(?:, line \d+)?:(?: field '([^']+)':)? (.*)", re.S)


@dataclass(frozen=True)
class Variant:
    """A named version of an experiment's template (`original`: the template itself)."""
    name: str
    template: Template


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _failer(source: str, lines: dict[str, int] | None, error: type[Exception]):
    """fail(index, name, key, problem) raising '<source>, line N: field 'variants': variant 'x', field 'y': problem'
    (the key's own line when known, else the variant's, else the list's)."""
    lines = lines or {}

    def fail(index: int | None, name: str | None, key: str | None, problem: str):
        line = (lines.get(f"variants.{index}.{key}") if index and key else None) or (
            lines.get(f"variants.{index}") if index else None) or lines.get("variants")
        where = f", line {line}" if line else ""
        who = f" variant '{name}'," if name else (f" variant {index}," if index else "")
        field = f" field '{key}':" if key else ""
        raise error(f"{source}{where}: field 'variants':{who}{field} {problem}")
    return fail


def check_variants(variants, *, source: str = "experiment", lines: dict[str, int] | None = None,
                   error: type[Exception] = TemplateError) -> list[str]:
    """Check the shape of a variants list without any template (names, keys, types); returns the names in order."""
    fail = _failer(source, lines, error)
    if variants is None:
        return []
    if not isinstance(variants, list):
        fail(None, None, None, f"must be a list of variants (name: ..., instruction: ...), got {_shown(variants)}")
    if len(variants) > MAX_VARIANTS:
        fail(None, None, None, f"lists {len(variants)} variants; at most {MAX_VARIANTS} run in one evaluation (each "
                               "one runs every strategy, model, k and seed again)")
    names: list[str] = []
    for i, raw in enumerate(variants, 1):
        if not isinstance(raw, dict):
            fail(i, None, None, f"must be a mapping such as {{name: terse, instruction: ...}}, got {_shown(raw)}")
        name = raw.get("name")
        if name in (None, ""):
            fail(i, None, "name", "is required: a short name such as terse")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            fail(i, None, "name", f"{_shown(name)} is not a valid name: lowercase letters, digits, '-' and '_', "
                                  "1-32 characters")
        if name == ORIGINAL:
            fail(i, name, "name", f"'{ORIGINAL}' is the experiment's template itself; give the variant another name")
        if name in names:
            fail(i, name, "name", f"variant {names.index(name) + 1} has this name too; each variant needs its own")
        names.append(name)
        unknown = [str(k) for k in raw if k not in VARIANT_KEYS]
        if unknown:
            fail(i, name, unknown[0], f"unknown field; a variant may set: {', '.join(VARIANT_KEYS)}")
        for key in TEXT_KEYS:
            if key in raw and not isinstance(raw[key], str):
                fail(i, name, key, f"must be text, got {_shown(raw[key])}")
        if "examples" in raw and not isinstance(raw["examples"], list):
            fail(i, name, "examples", "must be a list of {inputs: {...}, output: ..., rationale: ...}, as in a "
                                      "template (it replaces the template's examples)")
        if len(raw) == 1:
            fail(i, name, None, f"changes nothing: give a template or at least one of {', '.join(VARIANT_FIELDS)}")
    return names


def _named_template(name: str) -> Template:
    """A shipped or saved template by name only: a variant never reads a file path (it may come from a visitor)."""
    return load_template(template_path(name))


def _same_scoring(template: Template, other: Template) -> str | None:
    """Why `other` cannot stand as a variant of `template` (answers filled or scored differently), or None."""
    if other.variables != template.variables:
        return (f"template '{other.name}' takes {', '.join(other.variables)} but '{template.name}' takes "
                f"{', '.join(template.variables)}; a variant must fill the same variables from the dataset")
    if other.choices != template.choices or other.answer != template.answer:
        return (f"template '{other.name}' has other answer choices or answer rules than '{template.name}'; a "
                "variant's answers must be scored by the same rule to be compared")
    return None


def build_variants(template: Template, variants: list[dict] | None, *, source: str = "experiment",
                   lines: dict[str, int] | None = None, error: type[Exception] = TemplateError) -> list[Variant]:
    """`original` (the template) and each variant, built through the template parser: a variant is the template (or
    the template it names) with its fields replaced. Refused, naming the variant and field: a variant that makes the
    template invalid, names another template with other variables or answer rules, or repeats another's text."""
    check_variants(variants, source=source, lines=lines, error=error)
    fail = _failer(source, lines, error)
    out = [Variant(ORIGINAL, template)]
    seen = {template.content_hash: ORIGINAL}
    for i, raw in enumerate(variants or [], 1):
        name, base = raw["name"], template
        if "template" in raw:
            try:
                base = _named_template(raw["template"])
            except PromptLabError as exc:
                fail(i, name, "template", str(exc))
            mismatch = _same_scoring(template, base)
            if mismatch:
                fail(i, name, "template", mismatch)
        data = base.to_dict()
        data.update({key: raw[key] for key in VARIANT_FIELDS if key in raw})
        try:
            built = parse_template(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), _MARK)
        except TemplateError as exc:
            found = _PARSER_ERROR.fullmatch(str(exc))
            key, problem = (found.group(1), found.group(2)) if found else (None, str(exc))
            fail(i, name, key, problem)
        if built.content_hash in seen:
            same = "the template itself" if seen[built.content_hash] == ORIGINAL else \
                f"variant '{seen[built.content_hash]}'"
            fail(i, name, None, f"gives the same text as {same}; a variant must change something")
        seen[built.content_hash] = name
        built.source = f"{source}, variant '{name}'"
        out.append(Variant(name, built))
    return out


def variants_from_text(text: str | None, template: Template, source: str = "variants box") -> list[dict] | None:
    """The variants a person typed as a YAML list (the Evaluate tab), checked and built over `template` as an
    experiment file's are, errors naming the box's line; None when the text is empty."""
    if not text or not text.strip():
        return None
    data = parse_yaml(text, source, TemplateError)
    if data is None:
        return None
    lines = {f"variants.{key}": line for key, line in list_item_lines(text).items()}
    build_variants(template, data, source=source, lines=lines)
    return data


def variants_text(variants: list[dict] | None) -> str:
    """A variants list as the YAML the Evaluate tab's box shows (empty for none)."""
    return yaml.safe_dump(variants, sort_keys=False, allow_unicode=True, width=100) if variants else ""
