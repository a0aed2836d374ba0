"""Every output channel, grepped for the API key in all its forms (any case, URL-encoded, hex, base64 at every
alignment, any 12 characters of one of them in a row), after a hostile loopback server answered every path:
GET /v1/models 404 echoing the request headers, a 401 whose body has the key at the 300-character cut, a 200 that
is not a chat completion, every encoding in one error body, and a completion (plain and streamed) that writes the
key into its answer and its model name. Channels: the CLI's stdout and stderr (compare, eval, endpoints --check,
runs), the core compare (with its streamed partial grids) and evaluate, the app's API answers and errors,
runs.db (every text column of runs and generations, and the raw files) and the logs at DEBUG.
Model-free: the server is test_remote_errors' EchoServer."""
import json
import logging
import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import ROOT
from test_remote_errors import KEY, EchoServer, leaks

from prompt_lab.errors import PromptLabError

DATA = ROOT / "experiments" / "data"
FAILING = ("401_boundary", "200_not_chat_echo", "400_encoded", "404")  # 404: then GET /models, a 404 with headers


@pytest.fixture
def server(home, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_API_KEY", KEY)
    monkeypatch.setenv("ECHO_KEY", KEY)
    monkeypatch.setenv("PROMPT_LAB_RENDER_SECONDS", "30")  # a busy machine must not turn this into a render test
    echo = EchoServer()
    echo.get_mode = "404"
    yield echo
    echo.server.shutdown()


def specs(server, *modes) -> list[str]:
    return [f"openai:{mode}@{server.url}" for mode in modes]


def run_log_text(home) -> str:
    """Every text value of every column of runs and generations, then the raw database files."""
    db = sqlite3.connect(home / "runs.db")
    values = []
    for table in ("runs", "generations"):
        columns = [row[1] for row in db.execute(f"pragma table_info({table})")]
        assert columns, table
        for row in db.execute(f"select {', '.join(columns)} from {table}"):
            values += [str(v) for v in row if v is not None]
    db.close()
    raw = [p.read_bytes().decode("utf-8", "replace") for p in home.glob("runs.db*")]
    return "\n".join(values + raw)


# `python -m prompt_lab ARGS` with every logger (httpx, httpcore, prompt_lab) writing DEBUG records to stderr
LOGGED = ("import logging, runpy, sys; logging.basicConfig(level=logging.DEBUG); "
          "sys.argv = ['prompt_lab', *sys.argv[1:]]; runpy.run_module('prompt_lab', run_name='__main__')")


def cli(*args: str, logged: bool = True) -> str:
    command = [sys.executable, "-c", LOGGED, *args] if logged else [sys.executable, "-m", "prompt_lab", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ), timeout=120)
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def test_the_core_the_app_the_run_log_and_the_logs_never_hold_the_key(server, home, caplog, capfd):
    from prompt_lab.compare import compare
    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import EvalSpec

    caplog.set_level(logging.DEBUG)
    seen = []  # what the Compare tab shows while tokens stream in
    models = specs(server, "ok_echo", *FAILING)
    result = compare("sentiment", {"review": "fine"}, strategies=["zero_shot", "cot"], models=models,
                     on_update=lambda grid: seen.append(json.dumps(grid)))
    assert sorted(result.errors) == sorted(models[1:]) and len(seen) > 10
    answer = result.outputs[0].generations[0].text
    assert answer.startswith("key [key] / [key] / [key]") and result.revisions[models[0]].startswith("m-[key]@")
    channels = {"compare result": json.dumps(result.to_dict()), "streamed grids": "\n".join(seen)}

    run_id = evaluate(EvalSpec(template="sentiment", dataset=str(DATA / "sentiment.csv"), models=models[:1],
                               strategies=["zero_shot"], limit=2, max_new_tokens=8))
    assert run_id > result.run_id
    errors = []
    for model in models[1:]:
        with pytest.raises(PromptLabError) as failed:
            evaluate(EvalSpec(template="sentiment", dataset=str(DATA / "sentiment.csv"), models=[model],
                              strategies=["zero_shot"], limit=2, max_new_tokens=8))
        errors.append(str(failed.value))
    assert "[key]" in " ".join(errors)  # the server did echo the key: it was masked, not missing
    channels["evaluate errors"] = "\n".join(errors)

    from prompt_lab.ui import api
    from prompt_lab.ui.common import friendly

    answered = friendly(api.compare)("sentiment", {"review": "fine"}, ["zero_shot"], models)
    assert sorted(answered["errors"]) == sorted(models[1:])
    refusals = []
    for model in models[1:]:
        with pytest.raises(Exception) as refused:  # gr.Error: the message the page and the API client see
            friendly(api.compare)("sentiment", {"review": "fine"}, ["zero_shot"], [model])
        refusals.append(str(refused.value))
    channels["app answers"] = json.dumps(answered) + "\n".join(refusals) + json.dumps(api.runs())
    channels["app run views"] = "\n".join(json.dumps(api.run_generations(r["id"]), default=str)
                                          for r in api.runs()["runs"])

    channels["run log"] = run_log_text(home)
    assert "[key]" in channels["run log"] and "refused the API key" in channels["run log"]
    channels["logs"] = caplog.text + "\n".join(str(r.exc_info) for r in caplog.records)
    out, err = capfd.readouterr()
    channels["stdout/stderr"] = out + err
    assert {name: leaks(text) for name, text in channels.items()} == {name: [] for name in channels}


def test_the_cli_never_prints_or_logs_the_key(server, home):
    models = specs(server, "ok_echo", *FAILING)
    (home / "endpoints.yaml").write_text(f"echo:\n  base_url: {server.url}\n  api_key_env: ECHO_KEY\n"
                                         "  models: [ok_echo]\n")
    experiment = home / "leak.yaml"
    experiment.write_text(f"template: sentiment\ndataset: {DATA / 'sentiment.csv'}\nstrategies: [zero_shot]\n"
                          f"models: [{models[0]}, {models[1]}]\nmax_new_tokens: 8\nlimit: 2\n")
    model_args = [arg for m in models for arg in ("-m", m)]
    outputs = {
        "compare": cli("compare", "-t", "sentiment", "--var", "review=ok", "--strategies", "zero_shot", *model_args,
                       logged=False),
        "compare --json": cli("compare", "-t", "sentiment", "--var", "review=ok", "--strategies", "zero_shot",
                              *model_args, "--json"),
        "compare named": cli("compare", "-t", "sentiment", "--var", "review=ok", "--strategies", "zero_shot",
                             "-m", "openai:ok_echo@echo", "-m", "openai:401_boundary@echo"),
        "eval": cli("eval", str(experiment)),
        "endpoints --check (404)": cli("endpoints", "--check"),
    }
    server.get_mode = "list"  # the model list names the key in an id
    outputs["endpoints --check (list)"] = cli("endpoints", "--check", "--json")
    outputs["runs"] = cli("runs", "--json")
    assert "exit 1" in outputs["compare"] and "refused the API key" in outputs["compare"]
    assert "DEBUG:httpcore" in outputs["compare --json"]  # the logs were on
    assert "[key]" in outputs["compare"] and "[key]" in outputs["eval"]
    assert "model-of Bearer [key]" in outputs["endpoints --check (list)"]
    assert {name: leaks(text) for name, text in outputs.items()} == {name: [] for name in outputs}
    assert leaks(run_log_text(home)) == []
