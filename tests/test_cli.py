"""The CLI as a user runs it: a real subprocess, real SQLite file, the tiny model for plumbing."""
import json
import os
import subprocess
import sys


from conftest import ROOT


def cli(*args, env_extra=None, check=True):
    env = dict(os.environ, **(env_extra or {}))
    out = subprocess.run([sys.executable, "-m", "prompt_lab", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_templates_lists_the_shipped_ones(home):
    names = {t["name"] for t in json.loads(cli("templates", "--json").stdout)}
    assert {"sentiment", "arithmetic", "plausibility", "translate_fr", "summarize", "extract_json"} <= names
    assert "sentiment" in cli("templates").stdout


def test_render_shows_every_strategy_prompt(home, tiny_model_dir):
    out = cli("render", "-t", "sentiment", "--var", "review=Lovely {{7*7}} day", "--model", str(tiny_model_dir)).stdout
    for strategy in ("zero_shot", "few_shot", "cot", "few_shot_cot"):
        assert f"===== {strategy} (" in out
    assert "Review: Lovely {{7*7}} day" in out
    assert "<|im_start|>assistant\nLet's think step by step." in out


def test_compare_logs_a_run_that_runs_lists(home, tiny_model_dir):
    result = json.loads(cli("compare", "-t", "sentiment", "--var", "review=Great", "--model", str(tiny_model_dir),
                            "--max-new-tokens", "5", "--json").stdout)
    assert [o["strategy"] for o in result["outputs"]] == ["zero_shot", "few_shot", "cot", "few_shot_cot"]
    for output in result["outputs"]:
        gen = output["generations"][0]
        assert gen["completion_tokens"] <= 5 and gen["latency_ms"] > 0 and "tokens_per_s" in gen
    assert result["command"].startswith("python -m prompt_lab compare --template sentiment --var review=Great")
    runs = json.loads(cli("runs", "--json").stdout)
    assert runs[0]["id"] == result["run_id"] and runs[0]["status"] == "completed" and runs[0]["generations"] == 4
    text = cli("compare", "-t", "sentiment", "--var", "review=Great", "--model", str(tiny_model_dir),
               "--strategies", "zero_shot", "--max-new-tokens", "3").stdout
    assert "===== zero_shot =====" in text and "tok/s" in text and "-- answer:" in text


def test_generation_rows_hold_what_reproduces_them(home, tiny_model_dir):
    import sqlite3

    cli("compare", "-t", "sentiment", "--var", "review=Fine", "--model", str(tiny_model_dir), "--strategies", "cot",
        "--max-new-tokens", "4", "--seed", "7")
    row = sqlite3.connect(home / "runs.db").execute(
        "select template_name, template_hash, strategy, model_spec, model_revision, prompt, params_json, seed, "
        "prompt_tokens, completion_tokens, latency_ms from generations").fetchone()
    name, thash, strategy, spec, revision, prompt, params, seed, ptok, ctok, latency = row
    assert (name, strategy, spec, seed) == ("sentiment", "cot", str(tiny_model_dir), 7)
    assert len(thash) == 16 and revision.startswith("files:") and prompt.endswith("Let's think step by step.")
    assert json.loads(params)["max_new_tokens"] == 4 and ptok > 0 and ctok > 0 and latency > 0
    version = sqlite3.connect(home / "runs.db").execute(
        "select content_yaml from template_versions where hash = ?", [thash]).fetchone()
    assert "name: sentiment" in version[0]


def test_bad_input_gets_clear_messages(home, tiny_model_dir, tmp_path):
    out = cli("render", "-t", "nope", "--var", "x=1", check=False)
    assert out.returncode == 2 and "unknown template 'nope'; available:" in out.stderr and "Traceback" not in out.stderr
    out = cli("render", "-t", "sentiment", "--var", "review=x", "--strategies", "magic", check=False)
    assert out.returncode == 2 and "valid strategies: zero_shot, few_shot, cot, few_shot_cot" in out.stderr
    out = cli("compare", "-t", "sentiment", "--var", "review=x", "--model", "nowhere/model", check=False)
    assert out.returncode == 2 and "could not load Hub model 'nowhere/model'" in out.stderr
    bad = tmp_path / "vars.yaml"
    bad.write_text("review: fine\nother: [unclosed\n")
    out = cli("render", "-t", "sentiment", "--vars-file", str(bad), check=False)
    assert out.returncode == 2 and "vars.yaml, line 3: not valid YAML" in out.stderr
    out = cli("compare", "-t", "sentiment", "--var", "review=x", "--model", str(tiny_model_dir), "--strategies",
              "zero_shot", "--max-new-tokens", "100000", env_extra={"PROMPT_LAB_MAX_NEW_TOKENS": "4"})
    assert "warning: max_new_tokens 100000 is above the cap; clamped to 4" in out.stderr


def test_spec_lists_every_field_with_type_default_and_help(home):
    from dataclasses import fields

    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.tuning.spec import TuneSpec

    for kind, cls in (("eval", EvalSpec), ("tune", TuneSpec)):
        listed = json.loads(cli("spec", kind, "--json").stdout)
        assert [f["name"] for f in listed] == [f.name for f in fields(cls)]
        assert all(f["help"] and f["type"] for f in listed), kind
    text = cli("spec", "params").stdout
    assert "temperature  (number, default 0.0)" in text
    assert "settings" in cli("spec", "nonsense", check=False).stderr
