"""Remote models through a real OpenAI-compatible server (`transformers serve` with the embedded model).

Key checks, retries and the per-endpoint limit go through a small forwarding gateway in front of that server
(it answers 401 / 429 / 503 the way hosted APIs do and counts requests in flight); every completion still
comes from the real server.
"""
import json
import os
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


from prompt_lab.errors import CancelledError, PromptLabError
from prompt_lab.evaluation.evaluate import evaluate
from prompt_lab.evaluation.experiments import EvalSpec
from prompt_lab.models import GenerationParams, get_backend
from prompt_lab.reporting.report import run_report
from prompt_lab.compare import compare
from prompt_lab.runlog.store import open_db

from conftest import ROOT, free_port

DATA = ROOT / "experiments" / "data"

SECRET = "sk-test-9f8e7d6c5b4a-never-stored"
REVIEW = "Great food, slow service but worth it"


@pytest.fixture
def remote(served_model):
    base_url, name = served_model
    return f"openai:{name}@{base_url}"


class Gateway:
    """Forwards /v1/* to the real server after checking the bearer key; can answer scripted errors first."""

    def __init__(self, upstream: str, key: str):
        import httpx

        self.upstream, self.key, self.script, self.seen, self.bodies = upstream, key, [], [], []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _json(self, code, data, headers=()):
                body = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._json(200, httpx.get(gateway.upstream + self.path[3:]).json())

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with gateway.lock:
                    gateway.seen.append(self.headers.get("Authorization"))
                    gateway.bodies.append(json.loads(body or b"{}"))
                    scripted = gateway.script.pop(0) if gateway.script else None
                    gateway.in_flight += 1
                    gateway.max_in_flight = max(gateway.max_in_flight, gateway.in_flight)
                try:
                    if self.headers.get("Authorization") != f"Bearer {gateway.key}":
                        given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                        return self._json(401, {"error": {"message": f"Incorrect API key provided: {given}"}})
                    if scripted is not None:
                        return self._json(scripted, {"error": {"message": "overloaded, try again"}},
                                          [("Retry-After", "0")] if scripted == 429 else [])
                    answer = httpx.post(gateway.upstream + self.path[3:], content=body, timeout=120,
                                        headers={"Content-Type": "application/json"})
                    self._json(answer.status_code, answer.json())
                finally:
                    with gateway.lock:
                        gateway.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def gateway(served_model):
    gw = Gateway(served_model[0], SECRET)
    yield gw
    gw.server.shutdown()


def test_grid_runs_local_and_served_model_side_by_side_and_logs_endpoint_not_key(home, remote, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_API_KEY", SECRET)  # sent to the server, never stored
    partial_rows = set()
    result = compare("sentiment", {"review": REVIEW}, strategies=["zero_shot", "few_shot", "cot"],
                     models=["default", remote], params=GenerationParams(max_new_tokens=24), db_path=None,
                     on_update=lambda grid: partial_rows.update(i for i, row in enumerate(grid) if any(row)))
    assert result.errors == {} and result.models == ["default", remote]
    local = {o.strategy: o for o in result.outputs if o.model == "default"}
    served = {o.strategy: o for o in result.outputs if o.model == remote}
    assert set(local) == set(served) == {"zero_shot", "few_shot", "cot"}
    # Same weights, same greedy decoding, same chat template: the label answers agree.
    for strategy in ("zero_shot", "few_shot"):
        assert served[strategy].answers == local[strategy].answers
        assert served[strategy].generations[0].prompt_tokens == local[strategy].generations[0].prompt_tokens
    assert all(o.generations[0].token_source == "server" for o in served.values())
    assert json.loads(served["cot"].prompt)[-1]["content"].endswith("Let's think step by step.")  # no prefill API
    assert partial_rows == {0, 1}  # both rows of the grid streamed text while generating
    assert SECRET not in result.command and "--model default --model openai:" in result.command

    db_file = home / "runs.db"
    db = sqlite3.connect(db_file)
    models, status = db.execute("select models_json, status from runs where id = ?", [result.run_id]).fetchone()
    assert json.loads(models) == ["default", remote] and status == "completed"
    revisions = {r[0] for r in db.execute("select model_revision from generations where model_spec = ?", [remote])}
    assert len(revisions) == 1 and revisions.pop().endswith("@" + remote.split("@", 1)[1])
    db.close()
    for path in home.glob("runs.db*"):  # the database and its WAL: the key is nowhere
        assert SECRET.encode() not in path.read_bytes()


def test_stream_yields_growing_text_then_the_generation(remote):
    backend = get_backend(remote)
    from prompt_lab.prompts.strategies import Prompt

    text = backend.format_prompt(Prompt("zero_shot", [{"role": "user", "content": "Count from one to ten."}]))
    events = list(backend.stream(text, GenerationParams(max_new_tokens=20)))
    partial = [e.text for e in events[:-1]]
    assert len(partial) >= 3 and all(b.startswith(a) for a, b in zip(partial, partial[1:]))
    final = events[-1].generation
    assert final is not None and final.text == events[-1].text and final.completion_tokens > 0
    assert final.finish_reason in ("eos", "length")


def test_samples_stop_strings_and_seeds(gateway, served_model, monkeypatch):
    """The server ignores `n`; the backend asks again per missing sample, each with its own seed."""
    monkeypatch.setenv("PROMPT_LAB_API_KEY", SECRET)
    backend = get_backend(f"openai:{served_model[1]}@{gateway.url}")
    text = json.dumps([{"role": "user", "content": "Write a short sentence about the sea."}])
    [gens] = backend.generate([text], GenerationParams(temperature=1.0, max_new_tokens=12, n=3, seed=7))
    assert [g.sample_index for g in gens] == [0, 1, 2] and all(g.text for g in gens)
    assert [(b.get("n"), b["seed"], b["temperature"]) for b in gateway.bodies] == [(3, 7, 1.0), (None, 8, 1.0),
                                                                                   (None, 9, 1.0)]
    [[cut]] = backend.generate([json.dumps([{"role": "user", "content": "List the numbers 1 to 9 with commas."}])],
                               GenerationParams(max_new_tokens=30, stop=["5"]))
    assert "5" not in cut.text and cut.finish_reason == "stop" and gateway.bodies[-1]["stop"] == ["5"]


def test_unreachable_server_is_a_plain_error_and_the_local_row_survives(home, default_model_dir):
    port = free_port()  # nothing listens there
    dead = f"openai:some-model@http://127.0.0.1:{port}/v1"
    started = time.monotonic()
    with pytest.raises(PromptLabError, match=rf"could not reach http://127.0.0.1:{port}/v1 .*Is the server running"):
        get_backend(dead).generate(["hi"], GenerationParams(max_new_tokens=4))
    assert time.monotonic() - started < 10

    result = compare("sentiment", {"review": REVIEW}, strategies=["zero_shot"], models=["default", dead],
                     params=GenerationParams(max_new_tokens=4))
    assert [o.model for o in result.outputs] == ["default"] and result.outputs[0].generations[0].text
    assert "could not reach" in result.errors[dead]
    status, error = sqlite3.connect(home / "runs.db").execute(
        "select status, error from runs where id = ?", [result.run_id]).fetchone()
    assert status == "failed" and "could not reach" in error


def test_unknown_model_names_the_model(served_model):
    base_url, _ = served_model
    with pytest.raises(PromptLabError, match="does not know this model"):
        get_backend(f"openai:no-such-model@{base_url}").generate(["hi"], GenerationParams(max_new_tokens=4))


def test_bad_key_is_refused_without_showing_it(home, gateway, served_model, monkeypatch):
    spec = f"openai:{served_model[1]}@{gateway.url}"
    monkeypatch.setenv("PROMPT_LAB_API_KEY", "sk-wrong-key-123")
    with pytest.raises(PromptLabError, match=r"refused the API key \(HTTP 401") as info:
        get_backend(spec).generate(["hi"], GenerationParams(max_new_tokens=4))
    message = str(info.value)
    assert "refused the API key (HTTP 401" in message and "PROMPT_LAB_API_KEY" in message
    assert "sk-wrong-key-123" not in message  # the server echoed it; the message does not
    monkeypatch.setenv("PROMPT_LAB_API_KEY", SECRET)
    [[gen]] = get_backend(spec).generate(["hi"], GenerationParams(max_new_tokens=4))
    assert gen.text and gateway.seen[-1] == f"Bearer {SECRET}"


def test_429_and_503_are_retried_with_backoff_then_give_up(gateway, served_model, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_API_KEY", SECRET)
    spec = f"openai:{served_model[1]}@{gateway.url}"
    gateway.script = [503, 429]
    [[gen]] = get_backend(spec).generate(["hi"], GenerationParams(max_new_tokens=4))
    assert gen.text and len(gateway.seen) == 3  # two refusals, then the answer

    gateway.script = [503] * 10
    with pytest.raises(PromptLabError, match=r"answered HTTP 503 4 times \(retried with backoff, then gave up\)"):
        get_backend(spec).generate(["hi"], GenerationParams(max_new_tokens=4))
    assert len(gateway.seen) == 3 + 4  # max_retries 3: four tries in all


def test_named_endpoint_limits_requests_in_flight(home, gateway, served_model, monkeypatch):
    endpoints = home / "endpoints.yaml"
    endpoints.write_text(f"gw:\n  base_url: {gateway.url}\n  api_key_env: GW_KEY\n  max_concurrency: 2\n"
                         f"  models: ['{served_model[1]}']\n")
    spec = f"openai:{served_model[1]}@gw"
    with pytest.raises(PromptLabError, match="needs an API key in the environment variable GW_KEY"):
        get_backend(spec).generate(["hi"], GenerationParams(max_new_tokens=2))
    monkeypatch.setenv("GW_KEY", SECRET)
    texts = [json.dumps([{"role": "user", "content": f"Say the number {i}."}]) for i in range(6)]
    results = get_backend(spec).generate(texts, GenerationParams(max_new_tokens=6))
    assert len(results) == 6 and all(r[0].text for r in results)
    assert gateway.max_in_flight == 2  # six prompts, never more than the endpoint's limit at once

    from prompt_lab.ui.app import model_choices
    assert spec in model_choices()


def test_prompt_tokens_are_counted_with_the_endpoints_tokenizer_or_estimated(home, default_model_dir):
    from prompt_lab.prompts.strategies import build_prompts
    from prompt_lab.prompts.templates import get_template

    [prompt] = build_prompts(get_template("sentiment"), ["zero_shot"], {"review": REVIEW})
    local = get_backend("default")
    exact = local.count_tokens(local.format_prompt(prompt))
    (home / "endpoints.yaml").write_text(f"counted:\n  base_url: http://127.0.0.1:9/v1\n"
                                         f"  tokenizer: {default_model_dir}\nbare:\n  base_url: http://127.0.0.1:9/v1\n")
    counted, bare = get_backend("openai:m@counted"), get_backend("openai:m@bare")
    assert counted.count_tokens(counted.format_prompt(prompt)) == exact
    assert counted._count("[1, 2, 3]", prompt=False) == (len(local.tokenizer("[1, 2, 3]", add_special_tokens=False)["input_ids"]), "local")
    estimate, source = bare._count(bare.format_prompt(prompt))
    assert source == "estimate" and 0.5 * exact < estimate < 1.5 * exact


def test_endpoints_file_errors_name_the_file_endpoint_and_field(home):
    from prompt_lab.models.remote.endpoints import load_endpoints

    path = home / "endpoints.yaml"
    path.write_text("gw:\n  base_url: http://localhost:8000/v1\n  max_concurency: 2\n")
    with pytest.raises(PromptLabError, match=r"endpoints.yaml: endpoint 'gw', line 3: field 'max_concurency': unknown "
                                             r"field; allowed: base_url, api_key_env"):
        load_endpoints()
    path.write_text("gw:\n  base_url: http://user:pw@localhost:8000/v1\n")
    with pytest.raises(PromptLabError, match="endpoint 'gw', line 2: field 'base_url': must not carry credentials"):
        load_endpoints()
    path.write_text("gw:\n  base_url: localhost:8000\n")
    with pytest.raises(PromptLabError, match="is not an http\\(s\\) URL"):
        load_endpoints()
    path.write_text("gw:\n  base_url: http://localhost:8000\n  timeout_s: soon\n")
    with pytest.raises(PromptLabError, match="endpoint 'gw', line 3: field 'timeout_s': must be a number, got 'soon'"):
        load_endpoints()
    path.write_text("ok:\n  base_url: http://localhost:8000\ngw:\n  base_url: http://localhost:8000\n"
                    "  models: [a]\n  max_concurrency: 0\n")
    with pytest.raises(PromptLabError, match="endpoint 'gw', line 6: field 'max_concurrency': must be at least 1"):
        load_endpoints()
    path.write_text("gw:\n  base_url: http://localhost:8000\n  api_key_env: 7\n")
    with pytest.raises(PromptLabError, match="endpoint 'gw', line 3: field 'api_key_env': must be text, got 7"):
        load_endpoints()
    path.write_text("gw:\n  models: [a]\n")
    with pytest.raises(PromptLabError, match="endpoint 'gw', line 1: base_url is missing"):
        load_endpoints()
    path.write_text("gw:\n  base_url: http://localhost:8000\n")
    assert load_endpoints()["gw"].base_url == "http://localhost:8000/v1"  # a bare host gets /v1
    with pytest.raises(PromptLabError, match="no endpoint named 'nope'.*\\(gw\\)"):
        get_backend("openai:m@nope")
    with pytest.raises(PromptLabError, match="written openai:<model>@<base_url>"):
        get_backend("openai:just-a-model")


def test_remote_models_cannot_be_tuned(home):
    from prompt_lab.tuning.spec import TuneSpec

    with pytest.raises(PromptLabError, match="field 'model': 'openai:m@http://x:1/v1' is a remote model; tuning "
                                             "needs local weights"):
        TuneSpec(template="sentiment", dataset="x.csv", model="openai:m@http://x:1/v1").validate()


def test_public_space_only_uses_configured_endpoints(home, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/prompt-lab")
    with pytest.raises(PromptLabError, match="only the endpoints its owner configured"):
        get_backend("openai:m@http://10.0.0.5:8000/v1")


def test_small_evaluation_runs_every_strategy_on_the_local_and_the_served_model(home, remote, served_model):
    from prompt_lab.reporting.plots import accuracy_bars

    spec = EvalSpec(template="sentiment", dataset=str(DATA / "sentiment.csv"), strategies=["zero_shot", "few_shot"],
                    models=["default", remote], limit=8, max_new_tokens=8, batch_size=8)
    run_id = evaluate(spec)
    report = run_report(open_db(), run_id)
    assert report["status"] == "completed"
    conditions = {(c["strategy"], c["model"]): c for c in report["conditions"]}
    assert set(conditions) == {(s, m) for s in ("zero_shot", "few_shot") for m in ("default", remote)}
    # Same weights and greedy decoding on both sides: the served model scores what the local one scores.
    for strategy in ("zero_shot", "few_shot"):
        assert conditions[(strategy, remote)]["accuracy"] == conditions[(strategy, "default")]["accuracy"]
    figure = accuracy_bars(report["conditions"])
    host = served_model[0].split("//")[1].split("/")[0]
    bars = [t for t in figure.data if t.type == "bar"]
    assert [t.name for t in bars] == ["default", f"{os.path.basename(served_model[1])} @ {host}"]
    assert [list(t.x) for t in bars] == [["zero_shot", "few_shot k=3"]] * 2  # one group of bars per model
    with pytest.raises(PromptLabError, match="remote model .* does not offer; use method generate"):
        evaluate(EvalSpec(template="sentiment", dataset=str(DATA / "sentiment.csv"), models=[remote],
                          method="label_probs", limit=4))


def test_stop_ends_a_streaming_remote_compare_and_keeps_the_text_so_far(home, remote):
    cancel = threading.Event()
    result = compare("sentiment", {"review": REVIEW}, strategies=["cot"], models=[remote],
                     params=GenerationParams(max_new_tokens=200), cancel=cancel,
                     on_update=lambda grid: cancel.set() if grid[0][0] else None)
    (gen,) = result.outputs[0].generations
    assert result.cancelled and gen.finish_reason == "cancelled" and gen.text and result.outputs[0].answers == [None]
    status, error, logged = sqlite3.connect(home / "runs.db").execute(
        "select r.status, r.error, g.output from runs r join generations g on g.run_id = r.id "
        "order by r.id desc limit 1").fetchone()
    assert (status, error, logged) == ("cancelled", "stopped by the user", gen.text)


def test_cli_compare_grid_and_endpoints(home, remote, served_model, monkeypatch):
    import subprocess
    import sys

    from conftest import ROOT

    (home / "endpoints.yaml").write_text(f"local-serve:\n  base_url: {served_model[0]}\n  models: ['{served_model[1]}']\n")
    env = dict(os.environ, PROMPT_LAB_HOME=str(home))
    out = subprocess.run([sys.executable, "-m", "prompt_lab", "endpoints", "--check"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"--model openai:{served_model[1]}@local-serve" in out.stdout and "no key" in out.stdout
    out = subprocess.run([sys.executable, "-m", "prompt_lab", "compare", "-t", "sentiment", "--var",
                          f"review={REVIEW}", "--strategies", "zero_shot", "-m", f"openai:{served_model[1]}@local-serve",
                          "--max-new-tokens", "4", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["models"] == [f"openai:{served_model[1]}@local-serve"] and data["outputs"][0]["answers"][0]
