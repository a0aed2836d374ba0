import json
import re
import time
from pathlib import Path

import pytest

from prompt_lab.errors import TemplateError, UnknownChoiceError
from prompt_lab.prompts.templates import (get_template, list_templates, load_template, parse_template, shipped_names,
                                  template_names)

BASE = """\
name: probe
instruction: Answer the question.
variables: [question]
input: "Q: {{ question }}"
"""


def probe(input_field: str) -> str:
    return BASE.replace('input: "Q: {{ question }}"', f"input: {input_field!r}")


def test_ships_six_templates_that_parse(home):
    names = set(template_names())
    assert {"sentiment", "arithmetic", "plausibility", "translate_fr", "summarize", "extract_json"} <= names
    for template in list_templates():
        assert template.examples, template.name
        assert any(e.rationale for e in template.examples), template.name
        # saving and loading again gives the same content (and the same hash)
        assert parse_template(template.to_yaml()).content_hash == template.content_hash


def test_values_are_data_never_rendered_again(home):
    template = parse_template(BASE)
    assert template.render("input", {"question": "{{7*7}}"}) == "Q: {{7*7}}"
    assert template.render("input", {"question": "{% for x in range(3) %}x{% endfor %}"}).endswith("{% endfor %}")


def test_choices_are_available_in_the_instruction(home):
    template = get_template("sentiment")
    assert "Positive, Negative, Neutral" in template.render("instruction", {"review": "ok"})


def test_yaml_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ninstruction: x\nvariables: [a\nexamples: []\n")
    with pytest.raises(TemplateError, match=r"broken\.yaml, line \d+: not valid YAML"):
        load_template(path)


def test_jinja_syntax_error_names_field_and_file_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace('"Q: {{ question }}"', '"Q: {{ question }"'))
    with pytest.raises(TemplateError, match=r"bad\.yaml, line 4: field 'input': .*syntax error") as info:
        load_template(path)
    message = str(info.value)
    assert "bad.yaml, line 4" in message and "field 'input'" in message and "syntax error" in message


def test_block_scalar_syntax_error_points_at_the_right_line(tmp_path):
    path = tmp_path / "block.yaml"
    path.write_text("name: block\nvariables: [q]\ninstruction: |\n  Line one.\n  Line two {% if %}\n")
    with pytest.raises(TemplateError, match=r"block\.yaml, line 5: field 'instruction'"):
        load_template(path)


def test_unknown_variable_in_template_is_named(home):
    with pytest.raises(TemplateError, match=r"uses 'answer'.*not in variables"):
        parse_template(probe("Q: {{ question }} {{ answer }}"))


def test_missing_variable_at_render_names_it(home):
    template = parse_template(BASE)
    with pytest.raises(TemplateError, match=r"missing variable 'question'"):
        template.render("input", {})


def test_unknown_field_lists_allowed_fields(home):
    with pytest.raises(TemplateError, match=r"line 5: field 'colour': unknown field; allowed fields: .*instruction"):
        parse_template(BASE + "colour: blue\n")


def test_unknown_template_lists_the_valid_ones(home):
    with pytest.raises(UnknownChoiceError, match=r"unknown template 'nope'; available: .*sentiment"):
        get_template("nope")


@pytest.mark.parametrize("expression, kind", [
    ("{{ ''.__class__.__mro__ }}", "unsafe operation blocked"),
    ("{{ question.__class__.__mro__[1].__subclasses__() }}", "unsafe operation blocked"),
    ("{{ ('{0.__class__}'|attr('format'))(question) }}", "unsafe operation blocked"),
    ("{{ range(10**9)|list }}", "cut off"),
])
def test_sandbox_escapes_are_refused(home, expression, kind):
    template = parse_template(probe(expression))
    with pytest.raises(TemplateError, match=rf"template 'probe', field 'input'.*{kind}") as info:
        template.render("input", {"question": "x"})
    assert "template 'probe', field 'input'" in str(info.value)
    assert kind in str(info.value)


def test_jinja_helpers_outside_the_sandbox_are_unknown_names(home):
    with pytest.raises(TemplateError, match=r"uses 'cycler', which is not in variables"):
        parse_template(probe("{{ cycler.__init__.__globals__ }}"))


@pytest.mark.parametrize("expression", [
    "{{ 'a' * 10**9 }}",
    "{{ 'ab'|center(10**9) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{{ question * 1000 }}{% endfor %}",
    "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}{{ f(question, 60) }}",
    "{{ 10**100000 }}",
])
def test_huge_work_is_cut_off_within_seconds(home, expression, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_RENDER_SECONDS", "0.5")  # the bound is a setting; a short one keeps this fast
    template = parse_template(probe(expression))
    start = time.monotonic()
    with pytest.raises(TemplateError, match=r"cut off|blocked|too large") as refused:
        template.render("input", {"question": "xyz"})
    assert time.monotonic() - start < 3
    if "range(100000) %}{% for" in expression:  # pure looping: only the clock stops it
        assert "too slow, cut off: rendering took longer than 0.5 s and was cut off" in str(refused.value)
    # the sandbox recovers: the next render works
    assert parse_template(BASE).render("input", {"question": "fine"}) == "Q: fine"


def test_example_errors_point_at_the_example(tmp_path):
    path = tmp_path / "ex.yaml"
    path.write_text(BASE + "examples:\n  - inputs: {question: a}\n    output: b\n  - inputs: {other: a}\n    output: c\n")
    with pytest.raises(TemplateError, match=r"ex\.yaml, line 8: field 'examples': example 2: inputs lack 'question'"):
        load_template(path)


def test_user_templates_are_saved_apart_and_never_replace_shipped_ones(home):
    from prompt_lab.prompts.templates import save_user_template

    text = BASE.replace("name: probe", "name: my-probe") + "# the author's comment stays\n"
    saved = save_user_template(text)
    assert saved.source == str((home / "templates" / "my-probe.yaml").resolve())
    assert (home / "templates" / "my-probe.yaml").read_text().endswith("# the author's comment stays\n")
    assert get_template("my-probe").content_hash == saved.content_hash
    assert "my-probe" in template_names()
    with pytest.raises(TemplateError, match="shipped template and is never overwritten"):
        save_user_template(BASE.replace("name: probe", "name: sentiment"))
    for bad in ("../escape", "a/b", "UPPER", ""):
        with pytest.raises(TemplateError, match=rf"^<editor>(, line 1: field 'name': '{re.escape(bad)}' is not a valid "
                                                r"name|: missing required field 'name')"):
            save_user_template(BASE.replace("name: probe", f"name: '{bad}'"))
    assert sorted(p.name for p in (home / "templates").iterdir()) == ["my-probe.yaml"]


def test_the_editor_status_says_whether_the_text_on_screen_is_the_saved_one(home):
    """Save then re-load the saved template: the status line must keep saying Saved (it once said only Valid)."""
    from prompt_lab.prompts.form import stored_state
    from prompt_lab.prompts.templates import save_user_template

    text = BASE.replace("name: probe", "name: my-probe")
    assert stored_state(parse_template(text)) == "new"
    save_user_template(text)
    assert stored_state(parse_template(text)) == "saved"
    assert stored_state(parse_template(text.replace("name: my-probe", "name: my-probe\ndescription: edited"))) == "changed"
    assert stored_state(get_template("sentiment")) == "shipped"
    shipped = (Path(get_template("sentiment").source)).read_text()
    assert stored_state(parse_template(shipped.replace("overall feeling", "feeling"))) == "changed"


def test_the_editor_starter_is_a_valid_template_for_every_strategy(home):
    """Templates -> New template loads this text: it must parse and render all four strategies."""
    from prompt_lab.prompts.strategies import STRATEGIES, build_prompts
    from prompt_lab.prompts.form import STARTER, fields_to_yaml, yaml_to_fields

    template = parse_template(STARTER, source="<starter>")
    prompts = build_prompts(template, STRATEGIES, {"question": "What is 2 + 2?"}, k=1)
    assert [p.strategy for p in prompts] == list(STRATEGIES)
    assert "What colour is a clear daytime sky?" in prompts[1].messages[1]["content"]
    # the form round trip keeps it valid and the same template
    assert parse_template(fields_to_yaml(*yaml_to_fields(STARTER))).content_hash == template.content_hash


def test_yes_and_no_stay_labels_and_booleans_must_be_quoted(tmp_path):
    """YAML 1.1 reads yes/no as booleans; a template's labels keep the spelling the author wrote."""
    base = "name: yn\ninstruction: Answer.\nvariables: [q]\nanswer: {type: choice}\n"
    assert parse_template(base + "choices: [yes, no, On, off]\n").choices == ["yes", "no", "On", "off"]
    with pytest.raises(TemplateError, match=r"line 5: field 'choices': true/false read as booleans: quote them"):
        parse_template(base + "choices: [true, false]\n")
    assert parse_template(base + 'choices: ["true", "false"]\n').choices == ["true", "false"]


# ---------------------------------------------------------------- every validation message, as the author reads it

MINIMAL = "name: probe\ninstruction: Answer the question.\nvariables: [question]\n"
ALLOWED = ("answer, answer_label, answer_prefix, choices, cot_trigger, description, examples, format, input, "
           "instruction, name, output_format, separator, variables")


@pytest.mark.parametrize("text, message", [
    ("- name: probe\n", "<template>: a template must be a YAML mapping (name:, instruction:, variables:, ...)"),
    ("", "<template>: a template must be a YAML mapping (name:, instruction:, variables:, ...)"),
    (MINIMAL + "zeta: 1\ncolour: blue\n", f"<template>, line 5: field 'colour': unknown field; allowed fields: {ALLOWED}"),
    ("instruction: x\nvariables: [q]\n", "<template>: missing required field 'name'"),
    ("name: probe\ninstruction: x\nvariables: []\n", "<template>: missing required field 'variables'"),
    ("name: probe\ninstruction: x\nvariables:\n", "<template>: missing required field 'variables'"),
    ("name: 7\ninstruction: x\nvariables: [q]\n", "<template>, line 1: field 'name': must be text, got int"),
    (MINIMAL + "description: 42\n", "<template>, line 4: field 'description': must be text, got int"),
    ("name: probe\ninstruction: 42\nvariables: [q]\n", "<template>, line 2: field 'instruction': must be text, got int"),
    (MINIMAL + "input: [question]\n", "<template>, line 4: field 'input': must be text, got list"),
    (MINIMAL + "output_format: 7\n", "<template>, line 4: field 'output_format': must be text, got int"),
    (MINIMAL + "answer_prefix: [Verdict]\n", "<template>, line 4: field 'answer_prefix': must be text, got list"),
    (MINIMAL + "cot_trigger: {think: true}\n", "<template>, line 4: field 'cot_trigger': must be text, got dict"),
    (MINIMAL.replace("name: probe", "name: My Probe"),
     "<template>, line 1: field 'name': 'My Probe' is not a valid name: use lowercase letters, digits, '-' and '_' "
     "(1-64 chars)"),
    (MINIMAL.replace("name: probe", "name: " + "a" * 65),
     f"<template>, line 1: field 'name': '{'a' * 65}' is not a valid name: use lowercase letters, digits, '-' and '_' "
     "(1-64 chars)"),
    (MINIMAL.replace("[question]", "question"),
     "<template>, line 3: field 'variables': must be a list of identifiers such as [review] or [question, context]"),
    (MINIMAL.replace("[question]", "[question, 2]"),
     "<template>, line 3: field 'variables': must be a list of identifiers such as [review] or [question, context]"),
    (MINIMAL.replace("[question]", "[my question]"),
     "<template>, line 3: field 'variables': 'my question' is not a valid variable name: use a letter, then letters, "
     "digits or '_' (1-64 chars), and none of: False, None, True, and, caller, choices, cycler, dict, else, false, "
     "if, in, is, joiner, kwargs, lipsum, loop, namespace, none, not, or, range, self, super, true, varargs"),
    (MINIMAL.replace("[question]", "[question, context, question]"),
     "<template>, line 3: field 'variables': lists a variable twice"),
    # the line of the field, not of its first value
    ("name: probe\ninstruction: x\nvariables:\n  - question\n  - question\n",
     "<template>, line 3: field 'variables': lists a variable twice"),
    (MINIMAL + "choices: Positive\n",
     "<template>, line 4: field 'choices': must be a non-empty list of labels such as [Positive, Negative]"),
    (MINIMAL + "choices: []\n",
     "<template>, line 4: field 'choices': must be a non-empty list of labels such as [Positive, Negative]"),
    (MINIMAL + "choices: [Positive, [Negative]]\n",
     "<template>, line 4: field 'choices': must be a non-empty list of labels such as [Positive, Negative]"),
    (MINIMAL + "choices: [Positive, false]\n",
     "<template>, line 4: field 'choices': true/false read as booleans: quote them (\"true\", \"false\") so each "
     "label keeps its spelling"),
    (MINIMAL + "answer: choice\n", "<template>, line 4: field 'answer': must be a mapping with type, pattern, group, match"),
    (MINIMAL + "answer: {type: text, zone: x, regex: x}\n",
     "<template>, line 4: field 'answer': unknown key 'regex'; allowed: type, pattern, group, match"),
    (MINIMAL + "answer: {type: label}\n",
     "<template>, line 4: field 'answer': type 'label' is not one of: choice, number, text, json"),
    (MINIMAL + "answer: {match: all}\n", "<template>, line 4: field 'answer': match 'all' is not one of: first, last"),
    (MINIMAL + "answer: {type: choice}\n", "<template>, line 4: field 'answer': type 'choice' needs a 'choices' list"),
    (MINIMAL + "answer: {pattern: 'Answer: (\\d+'}\n",
     "<template>, line 4: field 'answer': pattern is not a valid regular expression: missing ), unterminated "
     "subpattern at position 8"),
    (MINIMAL + "answer: {pattern: 'Answer: (\\d+)', group: 2}\n",
     "<template>, line 4: field 'answer': group 2 does not exist in the pattern (1 groups)"),
    (MINIMAL + "answer: {pattern: 'Answer: (\\d+)', group: -1}\n",
     "<template>, line 4: field 'answer': group -1 does not exist in the pattern (1 groups)"),
    (MINIMAL + "answer: {pattern: 'Answer: \\d+', group: 1}\n",
     "<template>, line 4: field 'answer': group 1 does not exist in the pattern (0 groups)"),
    (MINIMAL + "examples: {inputs: {question: a}, output: b}\n",
     "<template>, line 4: field 'examples': must be a list of {inputs: {...}, output: ..., rationale: ...}"),
    (MINIMAL + "examples:\n  - inputs: {question: a}\n    output: b\n  - just text\n",
     "<template>, line 7: field 'examples': example 2 needs 'inputs' and 'output'"),
    (MINIMAL + "examples:\n  - output: b\n", "<template>, line 5: field 'examples': example 1 needs 'inputs' and 'output'"),
    (MINIMAL + "examples:\n  - inputs: {question: a}\n",
     "<template>, line 5: field 'examples': example 1 needs 'inputs' and 'output'"),
    (MINIMAL + "examples:\n  - {inputs: {question: a}, output: b, note: c, hint: d}\n",
     "<template>, line 5: field 'examples': example 1: unknown key 'hint'; allowed: inputs, output, rationale"),
    (MINIMAL + "examples:\n  - {inputs: a, output: b}\n",
     "<template>, line 5: field 'examples': example 1: 'inputs' must map variable names to values"),
    (MINIMAL.replace("[question]", "[question, context]") + "examples:\n  - {inputs: {}, output: b}\n",
     "<template>, line 5: field 'examples': example 1: inputs lack 'question', 'context'"),
    (MINIMAL + "input: 'Q: {{ question }} {{ context }} {{ answer }}'\n",
     "<template>, line 4: field 'input': uses 'answer', 'context', which is not in variables (question); add it to "
     "'variables' or fix the name"),
    (MINIMAL.replace("[question]", "[question, context]") + "output_format: 'Answer in {{ lang }}.'\n",
     "<template>, line 4: field 'output_format': uses 'lang', which is not in variables (question, context); add it "
     "to 'variables' or fix the name"),
])
def test_an_invalid_template_is_refused_with_the_line_the_field_and_what_is_allowed(text, message):
    with pytest.raises(TemplateError, match=f"^{re.escape(message)}$"):
        parse_template(text)


@pytest.mark.parametrize("field, block, body, line", [
    ("instruction", "|", "Line one.\n  Line two {{ question }\n", 5),
    ("output_format", "|", "Line one.\n  Line two {{ question }\n", 5),
    ("input", "|-", "Line one.\n  Line two {{ question }\n", 5),
    ("input", "|", "Line one {{ question }\n  Line two.\n", 4),
    ("output_format", ">", "Line one {{ question }\n  Line two.\n", 4),
])
def test_a_jinja_syntax_error_in_a_block_names_its_own_line(field, block, body, line):
    text = f"name: probe\nvariables: [question]\n{field}: {block}\n  {body}"
    if field != "instruction":
        text += "instruction: Answer.\n"
    with pytest.raises(TemplateError, match=f"^<template>, line {line}: field '{field}': template syntax error: "
                                            "unexpected '}'$"):
        parse_template(text)


def test_a_jinja_syntax_error_in_a_folded_block_names_its_own_line():
    text = MINIMAL + "output_format: >\n  Line one.\n  Line two {{ question }\n"
    with pytest.raises(TemplateError, match=r"^<template>, line 6: field 'output_format'"):
        parse_template(text)


def test_a_jinja_syntax_error_after_the_first_line_of_a_field_counts_from_the_field(tmp_path):
    path = tmp_path / "quoted.yaml"
    path.write_text(MINIMAL + 'input: "Q: {{ question }}\\n{% if question %}"\n')
    with pytest.raises(TemplateError, match=rf"^{re.escape(str(path))}, line 5: field 'input': template syntax error: "
                                            "Unexpected end of template"):
        load_template(path)


def test_a_quoted_group_number_is_not_reported_as_missing():
    with pytest.raises(TemplateError, match="field 'answer': group must be a whole number, not '1'") as refused:
        parse_template(MINIMAL + "answer: {pattern: 'Answer: (\\d+)', group: '1'}\n")
    assert "group 1 does not exist in the pattern (1 groups)" not in str(refused.value)


def test_the_editor_names_itself_in_errors(home):
    from prompt_lab.prompts.templates import save_user_template

    with pytest.raises(TemplateError, match=r"^<editor>, line 1: field 'name': 'Mine' is not a valid name"):
        save_user_template(MINIMAL.replace("name: probe", "name: Mine"))


# ---------------------------------------------------------------- what a valid template holds


def test_a_minimal_template_gets_the_documented_defaults():
    template = parse_template(MINIMAL.replace("[question]", "[question, context]") + "answer:\ncot_trigger: ''\n")
    assert (template.description, template.output_format, template.choices, template.examples) == ("", "", None, [])
    assert (template.cot_trigger, template.answer_prefix) == ("Let's think step by step.", "The answer is")
    assert (template.answer.type, template.answer.pattern, template.answer.group, template.answer.match) == (
        "text", None, 1, "last")
    # without an input field, each variable is shown on its own line
    assert template.render("input", {"question": "Why?", "context": "Sky"}) == "Why?\nSky"


def test_what_the_author_wrote_is_kept():
    template = parse_template(MINIMAL + """\
description: Checks claims.
output_format: One word.
cot_trigger: Think it over.
answer_prefix: "Final verdict:"
choices: [1, 2, 3]
answer: {type: choice, pattern: 'Rating: (\\d)', group: 1, match: first}
""")
    assert (template.description, template.output_format, template.cot_trigger, template.answer_prefix) == (
        "Checks claims.", "One word.", "Think it over.", "Final verdict:")
    assert template.choices == ["1", "2", "3"]  # numbers as labels become text
    assert (template.answer.type, template.answer.pattern, template.answer.group, template.answer.match) == (
        "choice", "Rating: (\\d)", 1, "first")


@pytest.mark.parametrize("group", [0, 1])
def test_every_group_the_pattern_has_can_be_chosen(group):
    assert parse_template(MINIMAL + f"answer: {{pattern: 'Answer: (\\d+)', group: {group}}}\n").answer.group == group


def test_example_values_become_text_as_they_will_be_shown():
    template = parse_template(MINIMAL.replace("[question]", "[question, tags]") + """\
examples:
  - inputs: {question: 12, tags: [café, "2"]}
    output: {name: Ana, age: 31}
    rationale: 42
  - inputs: {question: "Why?", tags: none}
    output: 3.5
    rationale: ""
  - inputs: {question: "Really?", tags: true}
    output: "yes"
""")
    first, second, third = template.examples
    assert (first.inputs, first.output, first.rationale) == (
        {"question": "12", "tags": '["café", "2"]'}, '{"name": "Ana", "age": 31}', "42")
    assert (second.inputs, second.output, second.rationale) == ({"question": "Why?", "tags": "none"}, "3.5", None)
    assert (third.inputs, third.output, third.rationale) == ({"question": "Really?", "tags": "True"}, "yes", None)


def test_saved_form_leaves_out_what_the_author_left_out():
    template = parse_template(MINIMAL + "examples:\n  - {inputs: {question: a}, output: b}\n"
                                        "  - {inputs: {question: c}, output: d, rationale: because}\n",
                              source="probe.yaml")
    data = template.to_dict()
    assert "choices" not in data and "source" not in data
    assert data["examples"] == [{"inputs": {"question": "a"}, "output": "b"},
                                {"inputs": {"question": "c"}, "output": "d", "rationale": "because"}]
    assert parse_template(MINIMAL + "choices: [yes, no]\n").to_dict()["choices"] == ["yes", "no"]


def test_saved_yaml_reads_like_the_author_wrote_it():
    long_instruction = "Lisez l'avis et décidez du sentiment général de l'auteur, puis répondez avec un seul mot."
    template = parse_template(MINIMAL.replace("Answer the question.", long_instruction))
    text = template.to_yaml()
    assert text.startswith("name: probe\ninstruction: ")
    assert f"instruction: {long_instruction}\n" in text  # accents as written, one line up to 100 characters
    assert parse_template(text) == template


def test_content_hash_depends_on_the_content_only():
    template = parse_template(MINIMAL.replace("[question]", "[question, context]")
                              + "examples:\n  - {inputs: {question: a, context: b}, output: c}\n", source="a.yaml")
    same = parse_template(MINIMAL.replace("[question]", "[question, context]")
                          + "examples:\n  - {inputs: {context: b, question: a}, output: c}\n", source="b.yaml")
    assert template.content_hash == same.content_hash
    assert re.fullmatch(r"[0-9a-f]{16}", template.content_hash)
    assert parse_template(MINIMAL).content_hash != parse_template(MINIMAL + "description: x\n").content_hash


def test_content_hash_is_stable_so_past_runs_keep_pointing_at_their_template():
    """Runs store this hash; a change in how it is computed would orphan every recorded run."""
    template = parse_template(MINIMAL.replace("Answer the question.", "Répondez à la question."))
    assert template.content_hash == "85f7f3889c1b7f1b"


# ---------------------------------------------------------------- rendering


def test_choices_and_values_of_any_type_render_as_text(home):
    template = parse_template(MINIMAL.replace("Answer the question.", "Pick {{ choices|join(' or ') }}.")
                              + "choices: [Yes, No]\ninput: 'Q: {{ question }}'\n")
    assert template.render_many([("instruction", {}), ("input", {"question": 12}), ("input", {"question": 2.5}),
                                 ("input", {"question": False}), ("input", {"question": {"city": "Zürich"}}),
                                 ("input", {"question": None})]) == [
        "Pick Yes or No.", "Q: 12", "Q: 2.5", "Q: False", 'Q: {"city": "Zürich"}', "Q: null"]
    # a template without choices sees an empty list
    assert parse_template(probe("{{ choices|length }} {{ question }}")).render("input", {"question": "x"}) == "0 x"


def test_missing_values_at_render_are_named_with_the_field(home):
    template = parse_template(MINIMAL.replace("[question]", "[question, context]")
                              + "input: '{{ question }} {{ context }}'\n")
    with pytest.raises(TemplateError, match=r"^template 'probe': missing variable 'context', 'question' for field "
                                            r"'input' \(this template takes: question, context\)$"):
        template.render("input", {"other": "x"})


@pytest.mark.parametrize("source, message", [
    ("Q:\n{{ question.missing }}",
     "template 'probe', field 'input', line 2: undefined value: 'str object' has no attribute 'missing'"),
    ("Q:\n\n{{ question.__class__ }}",
     "template 'probe', field 'input', line 3: unsafe operation blocked: access to attribute '__class__' of 'str' "
     "object is unsafe."),
    ("{{ question * 1000000 }}",
     "template 'probe', field 'input', line 1: output too large, cut off: repetition would make 2,000,000 items"),
    ("a\nb\n{{ 1 // 0 }}",
     "template 'probe', field 'input', line 3: error: ZeroDivisionError: integer division or modulo by zero"),
])
def test_render_errors_say_where_and_what_kind(home, source, message):
    template = parse_template(MINIMAL + f"input: {json.dumps(source)}\n")
    with pytest.raises(TemplateError, match=f"^{re.escape(message)}$"):
        template.render("input", {"question": "hi"})


def test_a_render_cut_off_by_the_clock_has_no_line(home, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_RENDER_SECONDS", "0.3")
    template = parse_template(probe("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"))
    with pytest.raises(TemplateError, match=r"^template 'probe', field 'input': too slow, cut off: rendering took "
                                            r"longer than 0\.3 s and was cut off$"):
        template.render("input", {"question": "x"})


# ---------------------------------------------------------------- finding templates


def test_a_user_template_of_a_shipped_name_shadows_it(home):
    (home / "templates").mkdir()
    path = home / "templates" / "sentiment.yaml"
    path.write_text(MINIMAL.replace("name: probe", "name: sentiment"))
    (home / "templates" / "notes.txt").write_text("not a template")
    template = get_template("sentiment")
    assert (template.instruction, template.source) == ("Answer the question.", str(path))
    assert template_names().count("sentiment") == 1 and "notes" not in template_names()
    assert [t.name for t in list_templates()] == template_names() == sorted(template_names())
    assert next(t for t in list_templates() if t.name == "sentiment").source == str(path)
    assert "sentiment" in shipped_names() and "probe" not in shipped_names()


def test_templates_are_found_without_a_user_folder(home):
    assert not (home / "templates").exists()
    assert set(template_names()) == shipped_names()


@pytest.mark.parametrize("name", ["mine.yaml", "mine.yml", "sub/mine"])
def test_a_template_can_be_given_by_path(home, monkeypatch, name):
    monkeypatch.chdir(home)
    (home / "sub").mkdir()
    (home / name).write_text(MINIMAL)
    template = get_template(name)
    assert (template.name, template.source) == ("probe", name)


def test_a_missing_template_file_is_named(home, monkeypatch):
    monkeypatch.chdir(home)
    with pytest.raises(TemplateError, match=r"^gone\.yaml: no such template file$"):
        get_template("gone.yaml")
    with pytest.raises(UnknownChoiceError, match=r"^unknown template 'gone'; available: arithmetic, extract_json, "):
        get_template("gone")


def test_without_any_template_the_error_says_none_are_available(home, monkeypatch):
    from prompt_lab.prompts import templates
    monkeypatch.setattr(templates, "SHIPPED_DIR", home / "no-shipped-templates")
    assert (template_names(), shipped_names()) == ([], set())
    with pytest.raises(UnknownChoiceError, match=r"^unknown template 'sentiment'; available: \(none\)$"):
        get_template("sentiment")


def test_the_first_save_creates_a_new_data_folder(home, monkeypatch):
    from prompt_lab.prompts.templates import save_user_template

    fresh = home / "new" / "data"
    monkeypatch.setenv("PROMPT_LAB_HOME", str(fresh))
    saved = save_user_template(MINIMAL)
    assert saved.source == str((fresh / "templates" / "probe.yaml").resolve())
    assert (fresh / "templates" / "probe.yaml").read_text() == MINIMAL


def test_saving_again_replaces_the_users_own_template(home):
    from prompt_lab.prompts.templates import save_user_template

    save_user_template(MINIMAL)
    saved = save_user_template(MINIMAL.replace("Answer the question.", "Answer briefly.").rstrip("\n"))
    path = home / "templates" / "probe.yaml"
    assert path.read_text() == MINIMAL.replace("Answer the question.", "Answer briefly.")
    assert (saved.source, get_template("probe").instruction) == (str(path.resolve()), "Answer briefly.")
    assert sorted(p.name for p in (home / "templates").iterdir()) == ["probe.yaml"]


def test_a_shipped_name_is_refused_with_a_new_name_to_use(home):
    from prompt_lab.prompts.templates import save_user_template

    with pytest.raises(TemplateError, match=r"^'arithmetic' is a shipped template and is never overwritten; save your "
                                            r"version under a new name, e.g\. 'arithmetic-v2'$"):
        save_user_template(MINIMAL.replace("name: probe", "name: arithmetic"))


def test_a_quoted_group_number_gets_a_message_on_the_answer_field():
    with pytest.raises(TemplateError,
                       match=r"^<template>, line 4: field 'answer': group must be a whole number") as refused:
        parse_template(MINIMAL + "answer: {pattern: 'Answer: (\\d+)', group: '1'}\n")
    assert str(refused.value) == "<template>, line 4: field 'answer': group must be a whole number, not '1'"
