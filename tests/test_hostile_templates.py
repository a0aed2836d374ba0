"""Hostile templates (issue 15): alias bombs, oversized and deeply nested YAML, deep Jinja, server paths sent as
templates, names and variables that break rendering, templates without examples. Each test reproduces an attack
or an input that broke the app before the fix."""
import json
import os
import re
import subprocess
import sys
import time
import tracemalloc

import pytest

from conftest import ROOT
from prompt_lab.errors import PromptLabError, TemplateError
from prompt_lab.prompts.templates import parse_template, save_user_template
from prompt_lab.yamlfiles import load_spec_file, load_vars_file, parse_yaml

MINIMAL = "name: probe\ninstruction: Answer.\nvariables: [question]\n"


def alias_bomb(levels: int) -> str:
    """The issue's bomb: nine laughs, each level nine aliases of the one before, inside an example's inputs (line
    8 holds &a0, line 8 + i holds &ai); written out, `levels` levels are 9**levels strings."""
    lines = ["name: bomb", "instruction: hi", "variables: [x]", "examples:", "  - output: ok", "    inputs:",
             "      x:", "        - &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"        - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def measured(fn, *args):
    """(the exception fn raised, seconds, peak traced bytes)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - returned for the caller to check
        raised = exc
    else:
        raised = None
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return raised, seconds, peak


# ---------------------------------------------------------------- YAML: aliases, size, nesting


@pytest.mark.parametrize("levels", [8, 11])
def test_an_alias_bomb_is_refused_at_once_with_little_memory(home, levels):
    # Before: 8 levels took 143 s, 1.2 GB and a 372 MB to_yaml(); 11 levels exhausted the machine. After: ~5 ms,
    # ~45 KiB traced, refused at the first alias past the budget (line 12).
    text = alias_bomb(levels)
    assert len(text) < 800
    raised, seconds, peak = measured(parse_template, text)
    assert isinstance(raised, TemplateError)
    assert str(raised) == ("<template>, line 12: the aliases (*name) up to here repeat 15,670 values written out; "
                           "the limit is 10,000")
    assert seconds < 0.5 and peak < 1_000_000, (seconds, peak)


def test_an_alias_bomb_is_never_saved_nor_logged(home):
    from prompt_lab.ui import templates_tab  # noqa: F401 - imported before measuring, as a running app has it
    from prompt_lab.ui.api import save_template

    raised, seconds, peak = measured(save_template, alias_bomb(8))
    assert isinstance(raised, TemplateError) and "the limit is 10,000" in str(raised)
    assert seconds < 0.5 and peak < 1_000_000, (seconds, peak)
    assert not (home / "templates" / "bomb.yaml").exists()
    if (home / "runs.db").exists():
        import sqlite3

        db = sqlite3.connect(home / "runs.db")
        tables = {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}
        if "template_versions" in tables:
            assert db.execute("select count(*) from template_versions where name = 'bomb'").fetchone() == (0,)


def test_alias_bombs_are_refused_in_every_yaml_file(tmp_path):
    bomb = "\n".join(["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
                     + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]) + "\n"
    with pytest.raises(PromptLabError, match=r"^bomb\.yaml, line 5: the aliases \(\*name\) up to here repeat 15,670 "
                                             r"values written out; the limit is 10,000$"):
        parse_yaml(bomb, "bomb.yaml")
    path = tmp_path / "vars.yaml"  # a variables file is written out with json.dumps: the expansion itself
    path.write_text(bomb)
    raised, seconds, peak = measured(load_vars_file, path)
    assert "the limit is 10,000" in str(raised) and seconds < 0.5 and peak < 1_000_000
    with pytest.raises(PromptLabError, match="the limit is 10,000"):
        load_spec_file(path, "tune file", {f"a{i}": 0 for i in range(9)})


def test_aliases_may_not_repeat_more_text_than_a_file_may_hold(home, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_MAX_TEMPLATE_BYTES", "4000")
    big = "x" * 1500
    text = (MINIMAL + f"description: &d {big}\nexamples:\n  - {{inputs: {{question: *d}}, output: *d}}\n"
            "  - {inputs: {question: *d}, output: ok}\n")
    with pytest.raises(TemplateError, match=r"^<template>, line 7: the aliases \(\*name\) up to here repeat 4,500 "
                                            r"characters of text written out; the limit is 4,000 "
                                            r"\(PROMPT_LAB_MAX_TEMPLATE_BYTES\)$"):
        parse_template(text)


def test_a_few_aliases_still_work_and_what_is_logged_stays_within_the_limit(home):
    text = (MINIMAL + "examples:\n  - inputs: &same {question: \"What is 2 + 2?\"}\n    output: '4'\n"
            "  - {inputs: *same, output: four}\n")
    template = parse_template(text)
    assert [e.inputs for e in template.examples] == [{"question": "What is 2 + 2?"}] * 2
    saved = save_user_template(text)
    assert (home / "templates" / "probe.yaml").read_text() == text  # the author's text, aliases and all
    assert len(saved.to_yaml()) < 1000


def test_written_out_a_template_must_fit_the_limit_too(home, monkeypatch):
    # within the alias budget, but the template as logged (aliases written out) passes the cap
    monkeypatch.setenv("PROMPT_LAB_MAX_TEMPLATE_BYTES", "3000")
    text = MINIMAL + f"description: &d {'y' * 1400}\nexamples:\n  - {{inputs: {{question: *d}}, output: ok}}\n"
    with pytest.raises(TemplateError, match=r"^<template>: written out in full \(aliases expanded\) this template "
                                            r"is 3,\d{3} bytes; the limit is 3,000 \(PROMPT_LAB_MAX_TEMPLATE_BYTES\)$"):
        parse_template(text)


def test_a_loop_of_aliases_is_refused():
    with pytest.raises(PromptLabError, match=r"^loop\.yaml, line 2: alias \*a is used inside the value it names "
                                             r"\(a loop\)$"):
        parse_yaml("a: &a\n  - *a\n", "loop.yaml")


def test_text_over_the_size_limit_is_refused_before_it_is_read(home, monkeypatch, tmp_path):
    # Before: /save_template stored 15 MB in 16.5 s.
    huge = MINIMAL + "description: " + "x" * (15 * 1024 * 1024) + "\n"
    raised, seconds, _ = measured(parse_template, huge)
    assert str(raised) == (f"<template>: {len(huge):,} bytes; the limit is 65,536 bytes for a template or YAML file "
                           "(PROMPT_LAB_MAX_TEMPLATE_BYTES)")
    assert seconds < 0.5
    monkeypatch.setenv("PROMPT_LAB_MAX_TEMPLATE_BYTES", "100")
    path = tmp_path / "big.yaml"
    path.write_text(MINIMAL + "#" * 60 + "\n")
    with pytest.raises(TemplateError, match=rf"^{re.escape(str(path))}: {len(MINIMAL) + 61} bytes; the limit is 100 "
                                            "bytes"):
        from prompt_lab.prompts.templates import load_template

        load_template(path)
    with pytest.raises(PromptLabError, match=r"^x: 101 bytes; the limit is 100 bytes"):
        parse_yaml("é" * 50 + "x", "x")  # bytes of UTF-8, not characters
    assert parse_yaml("a: " + "b" * 97, "x") == {"a": "b" * 97}  # the limit itself is allowed


def test_the_size_limit_is_a_setting(monkeypatch):
    from prompt_lab.settings import get_settings

    monkeypatch.delenv("PROMPT_LAB_MAX_TEMPLATE_BYTES", raising=False)
    assert get_settings().max_template_bytes == 64 * 1024
    monkeypatch.setenv("PROMPT_LAB_MAX_TEMPLATE_BYTES", "2048")
    assert get_settings().max_template_bytes == 2048


@pytest.mark.parametrize("text, line", [
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", 1),  # before: RecursionError
    ("a: " + "{b: " * 60 + "c" + "}" * 60 + "\n", 1),
    ("a:\n" + "".join("  " * i + "- \n" for i in range(1, 60)), 51),  # the 51st level starts on line 51
])
def test_yaml_nested_too_deeply_is_refused_with_its_line(text, line):
    with pytest.raises(PromptLabError, match=rf"^deep\.yaml, line {line}: nested more than 50 levels deep \(the "
                                             r"limit\)$"):
        parse_yaml(text, "deep.yaml")


def test_fifty_levels_are_allowed_and_aliases_count_their_own_depth():
    assert parse_yaml("[" * 50 + "]" * 50, "ok.yaml") is not None
    deep = "a: &a " + "[" * 30 + "x" + "]" * 30 + "\nb: " + "[" * 25 + "*a" + "]" * 25 + "\n"
    with pytest.raises(PromptLabError, match=r"^deep\.yaml, line 2: nested more than 50 levels deep \(the limit\)"):
        parse_yaml(deep, "deep.yaml")


def test_deep_yaml_in_a_template_is_a_template_error(home):
    with pytest.raises(TemplateError, match=r"^<template>, line 4: nested more than 50 levels deep"):
        parse_template(MINIMAL + "description: " + "[" * 5000 + "]" * 5000 + "\n")


# ---------------------------------------------------------------- Jinja nested too deeply


@pytest.mark.parametrize("expression, problem", [
    ("(" * 5000 + "question" + ")" * 5000, "brackets nested more than 20 deep (the limit)"),  # before: RecursionError
    ("[" * 300 + "question" + "]" * 300, "brackets nested more than 20 deep (the limit)"),
    ("question" + " + 1" * 100, "expression nested more than 50 levels deep (the limit)"),
    ("question" + "|string" * 100, "expression nested more than 50 levels deep (the limit)"),
    ("not " * 3000 + "question", "nested too deeply to read"),
])
def test_a_jinja_expression_nested_too_deeply_is_refused_with_a_message(home, expression, problem):
    text = MINIMAL + f"input: {json.dumps('{{ ' + expression + ' }}')}\n"
    with pytest.raises(TemplateError, match=rf"^<template>, line 4: field 'input': template syntax error: "
                                            rf"{re.escape(problem)}$"):
        parse_template(text)


def test_jinja_blocks_nested_too_deeply_are_refused(home):
    body = "{% if question %}" * 400 + "x" + "{% endif %}" * 400
    with pytest.raises(TemplateError, match=r"^<template>, line 4: field 'input': template syntax error: nested"):
        parse_template(MINIMAL + f"input: {json.dumps(body)}\n")
    ok = "{{ " + "(" * 20 + "question" + ")" * 20 + " }}" + "{% if question %}" * 10 + "y" + "{% endif %}" * 10
    assert parse_template(MINIMAL + f"input: {json.dumps(ok)}\n").render("input", {"question": "q"}) == "q" + "y"


# ---------------------------------------------------------------- names and variables


@pytest.mark.parametrize("name, shown", [
    ('"abc\\n"', "'abc\\n'"),  # before: accepted ($ matches before a final newline)
    ('"ab\\tc"', "'ab\\tc'"),
    ('"abc\\0"', "'abc\\x00'"),
    ('"abc\\r"', "'abc\\r'"),
])
def test_a_name_with_a_control_character_is_refused(home, name, shown):
    with pytest.raises(TemplateError, match=rf"^<template>, line 1: field 'name': {re.escape(shown)} is not a valid "
                                            r"name: use lowercase letters, digits, '-' and '_' \(1-64 chars\)$"):
        parse_template(MINIMAL.replace("name: probe", f"name: {name}"))
    with pytest.raises(TemplateError, match="is not a valid name"):
        save_user_template(MINIMAL.replace("name: probe", f"name: {name}"))
    assert not (home / "templates").exists() or not list((home / "templates").iterdir())


@pytest.mark.parametrize("variable", ["self", "loop", "range", "dict", "caller", "kwargs", "varargs", "super",
                                      "choices", "_private", "__class__", "none", "true", "namespace", "in"])
def test_a_variable_named_like_a_jinja_or_python_internal_is_refused(variable):
    # before: `self` passed and then broke every render ("got multiple values for argument 'self'")
    with pytest.raises(TemplateError, match=rf"^<template>, line 3: field 'variables': '{variable}' is a reserved "
                                            r"name|^<template>, line 3: field 'variables': "
                                            rf"'{variable}' is not a valid variable name"):
        parse_template(MINIMAL.replace("[question]", f'[question, "{variable}"]'))


def test_variable_errors_give_the_allowed_pattern():
    with pytest.raises(TemplateError, match=r"^<template>, line 3: field 'variables': '_x' is not a valid variable "
                                            r"name: use a letter, then letters, digits or '_' \(1-64 chars\), and none "
                                            r"of: .*\bself\b"):
        parse_template(MINIMAL.replace("[question]", "[_x]"))
    with pytest.raises(TemplateError, match=r"field 'variables': 'self' is a reserved name; use a "
                                            r"letter, then letters, digits or '_'"):
        parse_template(MINIMAL.replace("[question]", "[self]"))
    with pytest.raises(TemplateError, match=r"field 'variables': 'q\\n' is not a valid variable name"):
        parse_template(MINIMAL.replace("[question]", '["q\\n"]'))


def test_a_render_timeout_names_the_field_that_took_too_long(home, monkeypatch):
    # before: the timeout was reported on 'instruction', the first field of the batch
    slow = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ question }}"
    template = parse_template(MINIMAL + f"input: {json.dumps(slow)}\n")
    assert template.render("instruction", {"question": "q"}) == "Answer."  # a started worker: the clock is the render's
    monkeypatch.setenv("PROMPT_LAB_RENDER_SECONDS", "0.5")
    with pytest.raises(TemplateError, match=r"^template 'probe', field 'input': too slow, cut off: rendering took "
                                            r"longer than 0\.5 s and was cut off$"):
        template.render_many([("instruction", {"question": "q"}), ("output_format", {"question": "q"}),
                              ("input", {"question": "q"})])
    assert template.render("instruction", {"question": "q"}) == "Answer."  # a fresh worker serves the next render


# ---------------------------------------------------------------- the API: names or YAML text, never a path


def _refusal(value):
    from prompt_lab.ui.api import render

    with pytest.raises(PromptLabError) as info:
        render(value, {"question": "q"})
    return str(info.value)


def test_render_over_the_api_never_reads_a_server_path(home, tmp_path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("name: secret\ninstruction: the secret is swordfish\nvariables: [q\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(ROOT / "templates" / "sentiment.yaml")
    probes = [str(secret), str(tmp_path / "missing.yaml"), str(link), "/etc/passwd", "/etc/nope",
              "../templates/sentiment.yaml", "templates/sentiment.yaml", "//etc//passwd", "sentiment.yaml",
              f"{tmp_path}/../{tmp_path.name}/secret.yaml"]
    for probe in probes:
        message = _refusal(probe)
        assert "swordfish" not in message and "root:" not in message and "no such" not in message
        # the same words whether the file exists or not: nothing tells a caller what the server holds
        assert message.replace(repr(probe)[1:-1], "PATH") == (
            "'PATH' is not a template name or template YAML: give the name of a shipped or saved template "
            "(see the template list) or the template's own YAML text; file paths are not read"), probe


PATH_REFUSAL = ("'PATH' is not a template name or template YAML: give the name of a shipped or saved template (see "
                "the template list) or the template's own YAML text; file paths are not read")


def test_the_tabs_handlers_never_read_a_server_path(home, tmp_path):
    """The Compare, Evaluate and Tune tabs' handlers take the template dropdown's value, which a crafted request can
    set to anything: each refuses a path, with the same words whether the file exists or not."""
    import inspect

    from prompt_lab.ui import compare_tab, evaluate_tab, tune_tab

    secret = tmp_path / "secret.yaml"
    secret.write_text("name: secret\ninstruction: the secret is swordfish\nvariables: [q\n")
    tune_values = ("sentiment_codes.csv", "code", "review", "zero_shot", "default", "lora", 8, 16, "q_proj, v_proj",
                   0.002, 2, 8, 160, 0)
    handlers = {
        "compare form": lambda t: compare_tab.variable_updates(t),
        "compare run": lambda t: next(inspect.unwrap(compare_tab.run_compare)(
            t, "x", "", "", "", ["zero_shot"], 1, "default", 0, 1, 8, 0, "")),
        "evaluate columns": lambda t: evaluate_tab.columns_for(t, "sentiment.csv", None),
        "evaluate run": lambda t: inspect.unwrap(evaluate_tab.run_eval)(
            t, "sentiment.csv", None, "review", None, None, None, "label", ["zero_shot"], "default", "generate", "3",
            1, 0, 8, 2),
        "tune start": lambda t: tune_tab._spec(t, *tune_values),
        "tune CLI line": lambda t: tune_tab.cli_line(t, *tune_values),
    }
    for probe in (str(secret), str(tmp_path / "missing.yaml"), "/etc/passwd", "../../etc/passwd",
                  "../templates/sentiment.yaml"):
        for name, handler in handlers.items():
            with pytest.raises(PromptLabError) as info:
                handler(probe)
            assert str(info.value).replace(probe, "PATH") == PATH_REFUSAL, (name, probe, str(info.value))
    assert tune_tab._spec("sentiment-codes", *tune_values).template == "sentiment-codes"  # names still work
    with pytest.raises(PromptLabError, match="a tuning job takes its template by name"):
        tune_tab._spec(MINIMAL, *tune_values)


def test_a_saved_template_that_links_outside_its_folder_is_not_read(home, tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text(MINIMAL.replace("probe", "sneaky"))
    (home / "templates").mkdir()
    (home / "templates" / "sneaky.yaml").symlink_to(outside)
    assert _refusal("sneaky") == "template 'sneaky' links outside the templates folder and is not read"


def test_render_over_the_api_takes_a_name_or_yaml_text(home, tiny_model_dir):
    from prompt_lab.ui.api import render

    by_name = render("sentiment", {"review": "Fine"}, model=str(tiny_model_dir), k=1)
    assert by_name["template"] == "sentiment" and len(by_name["prompts"]) == 4 and by_name["notes"] == []
    text = MINIMAL + "input: 'Q: {{ question }}'\n"
    out = render(text, {"question": "Why?"}, model=str(tiny_model_dir))
    assert out["template"] == "probe" and "Q: Why?" in out["prompts"][0]["prompt"]


def test_render_of_a_template_without_examples_gives_the_strategies_it_supports(home, tiny_model_dir):
    # before: /render failed ("few_shot needs 'examples'; this template has none")
    from prompt_lab.ui.api import render

    out = render(MINIMAL, {"question": "Why?"}, model=str(tiny_model_dir))
    assert [p["strategy"] for p in out["prompts"]] == ["zero_shot", "cot"]
    assert out["notes"] == ["few_shot and few_shot_cot need examples: this template has none"]
    rationale_free = MINIMAL + "examples:\n  - {inputs: {question: a}, output: b}\n"
    out = render(rationale_free, {"question": "Why?"}, model=str(tiny_model_dir))
    assert [p["strategy"] for p in out["prompts"]] == ["zero_shot", "few_shot", "cot"]
    assert out["notes"] == ["few_shot_cot needs examples with a 'rationale': this template has none"]


def test_save_template_over_the_api_is_capped(home, monkeypatch):
    from prompt_lab.ui.api import save_template

    monkeypatch.setenv("PROMPT_LAB_MAX_TEMPLATE_BYTES", "1000")
    with pytest.raises(TemplateError, match=r"^<editor>: 1,\d{3} bytes; the limit is 1,000 bytes"):
        save_template(MINIMAL + "description: " + "x" * 1000 + "\n")
    assert not (home / "templates" / "probe.yaml").exists()
    assert save_template(MINIMAL)["name"] == "probe"


# ---------------------------------------------------------------- the CLI


def cli(*args):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "prompt_lab", *args], cwd=ROOT, env=dict(os.environ),
                         capture_output=True, text=True)
    return out, time.perf_counter() - start


def test_the_cli_refuses_a_bomb_file_quickly(home, tmp_path):
    # before: seven levels took 9.5 s and 764 MB, then failed on an unrelated check
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(7))
    out, _ = cli("render", "-t", str(path), "--var", "x=1", "--model", "nonexistent-model-dir")
    assert out.returncode == 2
    assert out.stderr.strip() == (f"error: {path}, line 12: the aliases (*name) up to here repeat 15,670 values "
                                  "written out; the limit is 10,000")


def test_the_cli_renders_a_template_without_examples(home, tiny_model_dir, tmp_path):
    path = tmp_path / "plain.yaml"  # the CLI may still read the paths its user names
    path.write_text(MINIMAL)
    out, _ = cli("render", "-t", str(path), "--var", "question=Why?", "--model", str(tiny_model_dir))
    assert out.returncode == 0, out.stderr
    assert "===== zero_shot (" in out.stdout and "===== cot (" in out.stdout and "few_shot" not in out.stdout
    assert out.stderr.strip() == "note: few_shot and few_shot_cot need examples: this template has none"
    out, _ = cli("render", "-t", str(path), "--var", "question=Why?", "--model", str(tiny_model_dir),
                 "--strategies", "few_shot")
    assert out.returncode == 2 and "few_shot needs 'examples'; this template has none" in out.stderr


def test_a_template_without_examples_compares_and_evaluates_with_the_strategies_it_supports(home, tiny_model_dir,
                                                                                            tmp_path):
    """Issue 19: asked for few-shot, a template without examples runs zero-shot and CoT and says few-shot was left
    out (it used to stop with "few_shot needs 'examples'"); asked only for what it cannot build, it says why."""
    from prompt_lab.compare import compare
    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.models import GenerationParams
    from prompt_lab.prompts.templates import parse_template
    from prompt_lab.reporting.summary import eval_report

    template = parse_template(MINIMAL)
    note = "few_shot, few_shot_cot left out: few_shot and few_shot_cot need examples: this template has none"
    result = compare(template, {"question": "Why?"}, models=str(tiny_model_dir),
                     params=GenerationParams(max_new_tokens=2))
    assert [o.strategy for o in result.outputs] == ["zero_shot", "cot"] and result.warnings[0] == note
    with pytest.raises(TemplateError, match=r"^template 'probe' cannot build few_shot: few_shot and few_shot_cot "
                                            r"need examples: this template has none; use zero_shot or cot$"):
        compare(template, {"question": "Why?"}, strategies=["few_shot"], models=str(tiny_model_dir))
    data = tmp_path / "questions.csv"
    data.write_text("question,answer\nWhy?,Because\nHow?,Thus\n")
    run_id = evaluate(EvalSpec(template="probe", dataset=str(data), models=[str(tiny_model_dir)],
                               strategies=["zero_shot", "few_shot"], max_new_tokens=2), template=template)
    report = eval_report(run_id)
    assert report.status == "completed" and report.labels == ["zero_shot · " + str(tiny_model_dir)]
    assert report.warnings == ["few_shot left out: few_shot and few_shot_cot need examples: this template has none"]
    (tmp_path / "probe.yaml").write_text(MINIMAL)  # as a user runs it: the CLI, default strategies (all four)
    out, _ = cli("compare", "-t", str(tmp_path / "probe.yaml"), "--var", "question=Why?", "--model",
                 str(tiny_model_dir), "--max-new-tokens", "2")
    assert out.returncode == 0, out.stderr
    assert f"warning: {note}" in out.stderr and "cot" in out.stdout


# ---------------------------------------------------------------- the running app


@pytest.mark.integration
def test_the_app_refuses_paths_and_bombs_over_http(app_url, tmp_path):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    secret = tmp_path / "secret.yaml"
    secret.write_text("api_key: swordfish\n")
    for probe in (str(secret), "/etc/passwd", "../templates/sentiment.yaml"):
        with pytest.raises(Exception, match="file paths are not read") as info:
            client.predict(probe, {}, "default", 1, api_name="/render")
        assert "swordfish" not in str(info.value)
    start = time.perf_counter()
    with pytest.raises(Exception, match="the limit is 10,000"):
        client.predict(alias_bomb(8), api_name="/save_template")
    assert time.perf_counter() - start < 5
    out = client.predict(MINIMAL, {"question": "Why?"}, "default", 1, api_name="/render")
    assert [p["strategy"] for p in out["prompts"]] == ["zero_shot", "cot"] and out["notes"]


@pytest.mark.integration
def test_tune_over_http_never_reads_a_server_path_and_queues_nothing(app_url, tmp_path):
    """/tune's template reaches a job that loads it in its own process: a path must be refused before any job is
    queued, in the same words whether the file exists or not."""
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    secret = tmp_path / "secret.yaml"
    secret.write_text("name: secret\ninstruction: the secret is swordfish\nvariables: [q\n")
    before = client.predict(50, api_name="/jobs")["jobs"]
    spec = {"dataset": "sentiment_codes.csv", "max_steps": 1, "columns": {"variables": {"review": "review"},
                                                                           "target": "code"}}
    for probe in (str(secret), str(tmp_path / "missing.yaml"), "/etc/passwd", "../../etc/passwd",
                  "../templates/sentiment-codes.yaml"):
        with pytest.raises(Exception) as refused:
            client.predict({**spec, "template": probe}, api_name="/tune")
        assert str(refused.value).replace(probe, "PATH") == PATH_REFUSAL, (probe, str(refused.value))
    with pytest.raises(Exception, match="a tuning job takes its template by name: save this template first"):
        client.predict({**spec, "template": MINIMAL}, api_name="/tune")
    assert client.predict(50, api_name="/jobs")["jobs"] == before  # nothing was queued
