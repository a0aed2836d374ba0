import time

import pytest

from prompt_lab.errors import TemplateError, UnknownChoiceError
from prompt_lab.templates import get_template, list_templates, load_template, parse_template, template_names

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
    with pytest.raises(TemplateError) as info:
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
    with pytest.raises(TemplateError) as info:
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
    from prompt_lab.templates import save_user_template

    text = BASE.replace("name: probe", "name: my-probe") + "# the author's comment stays\n"
    saved = save_user_template(text)
    assert saved.source == str((home / "templates" / "my-probe.yaml").resolve())
    assert (home / "templates" / "my-probe.yaml").read_text().endswith("# the author's comment stays\n")
    assert get_template("my-probe").content_hash == saved.content_hash
    assert "my-probe" in template_names()
    with pytest.raises(TemplateError, match="shipped template and is never overwritten"):
        save_user_template(BASE.replace("name: probe", "name: sentiment"))
    for bad in ("../escape", "a/b", "UPPER", ""):
        with pytest.raises(TemplateError):
            save_user_template(BASE.replace("name: probe", f"name: '{bad}'"))
    assert sorted(p.name for p in (home / "templates").iterdir()) == ["my-probe.yaml"]


def test_the_editor_starter_is_a_valid_template_for_every_strategy(home):
    """Templates -> New template loads this text: it must parse and render all four strategies."""
    from prompt_lab.strategies import STRATEGIES, build_prompts
    from prompt_lab.template_form import STARTER, fields_to_yaml, yaml_to_fields

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
