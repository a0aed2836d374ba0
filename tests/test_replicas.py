"""An endpoint with several servers of one model (base_urls, replicas): requests spread over them, each within its own
limit, and a replica that goes down has its requests answered by the others. Model-free: the replicas are small
OpenAI-compatible servers (http.server) that answer every chat completion with a label, after a delay, and count."""
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ROOT, free_port

from prompt_lab.errors import PromptLabError
from prompt_lab.models import GenerationParams, get_backend

KEY = "sk-replica-5c4b3a2d1e0f9a8b7c6d"
DATA = ROOT / "experiments" / "data"


class FakeReplica:
    """A chat-completions server answering 'positive' after `delay` seconds. It counts the requests it answered and
    the most it held at once (also across every FakeReplica, in `together`); with `die_after`, the request after that
    many is dropped without an answer and the server stops listening, as a killed process does; with `status`, every
    request gets that HTTP error."""

    together = {"in_flight": 0, "max": 0}
    lock = threading.Lock()

    def __init__(self, delay: float = 0.0, die_after: int | None = None, status: int | None = None):
        self.delay, self.die_after, self.status = delay, die_after, status
        self.calls = self.answered = self.in_flight = self.max_in_flight = 0
        self.auth = set()
        replica = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def send(self, code: int, data: dict):
                body = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.send(200, {"data": [{"id": "m"}]})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with FakeReplica.lock:
                    replica.calls += 1
                    replica.auth.add(self.headers.get("Authorization"))
                    number = replica.calls
                    replica.in_flight += 1
                    replica.max_in_flight = max(replica.max_in_flight, replica.in_flight)
                    FakeReplica.together["in_flight"] += 1
                    FakeReplica.together["max"] = max(FakeReplica.together["max"], FakeReplica.together["in_flight"])
                try:
                    if replica.die_after is not None and number > replica.die_after:
                        replica.stop()
                        self.close_connection = True
                        return  # no answer: the client sees the connection drop
                    time.sleep(replica.delay)
                    if replica.status:
                        return self.send(replica.status, {"error": {"message": f"HTTP {replica.status} here"}})
                    self.send(200, {"model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": "positive"}}], "usage": {"prompt_tokens": 5,
                                                                                 "completion_tokens": 1}})
                    with FakeReplica.lock:
                        replica.answered += 1
                finally:
                    with FakeReplica.lock:
                        replica.in_flight -= 1
                        FakeReplica.together["in_flight"] -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.stopped = threading.Event()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        """Stop answering and close the listening socket (later connections are refused)."""
        if not self.stopped.is_set():
            self.stopped.set()
            threading.Thread(target=lambda: (self.server.shutdown(), self.server.server_close()), daemon=True).start()


@pytest.fixture
def replicas(home, monkeypatch):
    """A factory of FakeReplica servers, stopped after the test; the key is in REPLICA_KEY."""
    monkeypatch.setenv("REPLICA_KEY", KEY)
    FakeReplica.together.update(in_flight=0, max=0)
    made = []

    def make(**kwargs) -> FakeReplica:
        made.append(FakeReplica(**kwargs))
        return made[-1]

    yield make
    for replica in made:
        replica.stop()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: connections are refused


def endpoint(home, *urls: str, concurrency: int = 2, timeout: float = 10, extra: str = "") -> str:
    """Write the endpoints file with one endpoint 'pool' over these servers; returns its spec."""
    listed = "".join(f"    - {url}\n" for url in urls)
    (home / "endpoints.yaml").write_text(f"pool:\n  base_urls:\n{listed}  api_key_env: REPLICA_KEY\n"
                                         f"  max_concurrency: {concurrency}\n  max_retries: 0\n  timeout_s: {timeout}\n"
                                         f"{extra}")
    return "openai:m@pool"


def prompts(n: int) -> list[str]:
    return [json.dumps([{"role": "user", "content": f"Review {i}: fine."}]) for i in range(n)]


def test_requests_are_spread_over_both_replicas(replicas, home):
    a, b = replicas(), replicas()
    spec = endpoint(home, a.url, b.url)
    for _ in range(4):  # one at a time: they take turns
        [[gen]] = get_backend(spec).generate(prompts(1), GenerationParams(max_new_tokens=4))
        assert gen.text == "positive"
    assert (a.calls, b.calls) == (2, 2)
    results = get_backend(spec).generate(prompts(10), GenerationParams(max_new_tokens=4))
    assert all(r[0].text == "positive" for r in results)
    assert a.calls + b.calls == 14 and a.calls >= 5 and b.calls >= 5
    assert a.auth == b.auth == {f"Bearer {KEY}"}  # every replica gets the endpoint's key
    # The run log names where the model was served: every replica, in the file's order.
    backend = get_backend(spec)
    backend.generate(prompts(1), GenerationParams(max_new_tokens=4))
    assert backend.revision == f"m@{a.url},{b.url}"


def test_each_replica_holds_at_most_max_concurrency_requests(replicas, home):
    a, b = replicas(delay=0.3), replicas(delay=0.3)
    spec = endpoint(home, a.url, b.url, concurrency=2)
    results = get_backend(spec).generate(prompts(12), GenerationParams(max_new_tokens=4))
    assert len(results) == 12 and all(r[0].text for r in results)
    assert (a.max_in_flight, b.max_in_flight) == (2, 2)  # each its own limit, never more
    assert FakeReplica.together["max"] == 4  # the pool is the sum over the replicas
    assert a.calls == b.calls == 6
    # One replica down: its share of the pool waits for the survivor's slots instead of crowding it.
    survivor = replicas(delay=0.3)
    spec = endpoint(home, dead_url(), survivor.url, concurrency=2)
    results = get_backend(spec).generate(prompts(8), GenerationParams(max_new_tokens=4))
    assert all(r[0].text == "positive" for r in results)
    assert survivor.max_in_flight == 2 and survivor.answered == 8


def run_rows(home, run_id: int):
    db = sqlite3.connect(home / "runs.db")
    status, error = db.execute("select status, error from runs where id = ?", [run_id]).fetchone()
    outputs = [r[0] for r in db.execute("select output from generations where run_id = ?", [run_id])]
    return status, error, outputs


def test_an_evaluation_survives_a_replica_that_is_down_or_dies(replicas, home, caplog):
    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.models.remote import replicas as replica_module

    caplog.set_level(logging.INFO, logger=replica_module.__name__)
    items = 12

    def run(spec: str) -> int:
        return evaluate(EvalSpec(template="sentiment", dataset=str(DATA / "sentiment.csv"), models=[spec],
                                 strategies=["zero_shot"], limit=items, max_new_tokens=4, batch_size=items))

    # Down before the run: its address refuses connections.
    live, down = replicas(delay=0.05), dead_url()
    status, error, outputs = run_rows(home, run(endpoint(home, down, live.url)))
    assert (status, error) == ("completed", None)
    assert outputs == ["positive"] * items and live.answered == items
    assert f"endpoint 'pool': replica {down} is down (could not reach {down} " in caplog.text
    assert [r.levelname for r in caplog.records if "is down" in r.getMessage()] == ["WARNING"]  # once, not per request

    # Dies during the run: it answers three requests, drops the fourth and stops listening.
    caplog.clear()
    live, dying = replicas(delay=0.1), replicas(delay=0.1, die_after=3)
    status, error, outputs = run_rows(home, run(endpoint(home, dying.url, live.url)))
    assert (status, error) == ("completed", None)
    assert outputs == ["positive"] * items  # every item answered: the dropped ones by the live replica
    assert dying.answered == 3 and live.answered == items - 3 and dying.calls > 3
    assert f"endpoint 'pool': replica {dying.url} is down" in caplog.text
    assert len([r for r in caplog.records if "is down" in r.getMessage()]) == 1


def test_a_failed_replica_is_passed_over_for_its_cool_off_then_tried_again(replicas, home, caplog, monkeypatch):
    from prompt_lab.models.remote import replicas as replica_module

    bad, good = replicas(status=503), replicas()
    spec = endpoint(home, bad.url, good.url)
    monkeypatch.setattr(replica_module, "COOL_OFF_S", 1.0)
    for _ in range(4):
        [[gen]] = get_backend(spec).generate(prompts(1), GenerationParams(max_new_tokens=4))
        assert gen.text == "positive"
    assert (bad.calls, good.calls) == (1, 4)  # the 503 sent its request to the other, then it was left alone
    bad.status = None  # back in shape: after its cool-off it gets its turns again
    time.sleep(1.1)
    for _ in range(4):
        get_backend(spec).generate(prompts(1), GenerationParams(max_new_tokens=4))
    assert (bad.answered, good.answered) == (2, 6)
    assert f"endpoint 'pool': replica {bad.url} answers again" in caplog.text
    slow, fast = replicas(delay=2.0), replicas()
    spec = endpoint(home, slow.url, fast.url, timeout=0.5)
    for _ in range(2):
        [[gen]] = get_backend(spec).generate(prompts(1), GenerationParams(max_new_tokens=4))
        assert gen.text == "positive"
    assert (slow.calls, fast.answered) == (1, 2)  # a timeout is a failure too


def test_a_replica_going_down_is_logged_once_and_taken_back_when_it_answers(caplog, monkeypatch):
    from prompt_lab.models.remote import replicas as replica_module

    caplog.set_level(logging.INFO, logger=replica_module.__name__)
    monkeypatch.setattr(replica_module, "COOL_OFF_S", 0.2)
    pool = replica_module.ReplicaSet("e", ("http://a/v1", "http://b/v1"), 1)
    a, b = pool.replicas

    def take(tried=()):
        replica = pool.acquire(set(tried))
        pool.release(replica)
        return replica

    assert take() is a  # a tie: the file's order
    sent = time.monotonic()
    pool.mark_down(a, "refused")
    pool.mark_down(a, "refused")  # a second request that was on it fails too: no second warning
    assert take() is b and take() is b  # a is down
    assert take(["http://b/v1"]) is a  # a request that failed on every other server tries the one back soonest
    time.sleep(0.25)
    pool.mark_down(a, "refused")  # tried after its cool-off and failed again: a note, not a warning
    pool.mark_up(a, sent)  # an answer to a request sent before it failed says nothing about it now
    assert take() is b
    pool.mark_up(a, time.monotonic())
    assert take() is a
    said = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert said == [("WARNING", "endpoint 'e': replica http://a/v1 is down"),
                    ("INFO", "endpoint 'e': replica http://a/v1 is still down"),
                    ("WARNING", "endpoint 'e': replica http://a/v1 answers again")]


def test_a_request_at_fault_is_not_retried_on_another_replica(replicas, home):
    first, second = replicas(status=400), replicas(status=400)
    spec = endpoint(home, first.url, second.url)
    with pytest.raises(PromptLabError, match=r"rejected the request \(HTTP 400\): HTTP 400 here"):
        get_backend(spec).generate(prompts(1), GenerationParams(max_new_tokens=4))
    assert first.calls + second.calls == 1  # a bad request is bad everywhere


def test_all_replicas_down_is_one_clear_error_without_key_or_traceback(replicas, home, caplog):
    spec = endpoint(home, dead_url(), dead_url(), extra="  models: [m]\n")
    with pytest.raises(PromptLabError) as info:
        get_backend(spec).generate(prompts(3), GenerationParams(max_new_tokens=4))
    message = str(info.value)
    assert message.startswith("endpoint 'pool' (model 'm'): all 2 replicas failed: (1) could not reach http://127.0.0.1:")
    assert "(2) could not reach" in message and KEY not in message
    cli = subprocess.run([sys.executable, "-m", "prompt_lab", "compare", "-t", "sentiment", "--var", "review=ok",
                          "--strategies", "zero_shot", "--model", spec], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, REPLICA_KEY=KEY), timeout=120)
    said = cli.stdout + cli.stderr
    assert cli.returncode != 0 and "endpoint 'pool' (model 'm'): all 2 replicas failed" in said, said
    assert "Traceback" not in said and KEY not in said


def test_one_url_endpoints_and_ad_hoc_specs_keep_their_location(home):
    from prompt_lab.models.registry import resolve

    (home / "endpoints.yaml").write_text("one:\n  base_url: http://localhost:8000\n"
                                         "two:\n  base_urls: [http://a:8000/v1, 'http://b:8000']\n")
    assert resolve("openai:m@one").location == "http://localhost:8000/v1"
    assert resolve("openai:m@two").location == "http://a:8000/v1,http://b:8000/v1"
    assert resolve("openai:m@http://h:1/v1").location == "http://h:1/v1"
    assert get_backend("openai:m@one").revision == "m@http://localhost:8000/v1"
    assert get_backend("openai:m@two").revision == "m@http://a:8000/v1,http://b:8000/v1"
    env = dict(os.environ, PROMPT_LAB_HOME=str(home))
    listed = subprocess.run([sys.executable, "-m", "prompt_lab", "endpoints", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    rows = {r["name"]: r for r in json.loads(listed.stdout)["endpoints"]}
    assert rows["two"]["base_urls"] == ["http://a:8000/v1", "http://b:8000/v1"]
    assert rows["one"]["base_urls"] == [rows["one"]["base_url"]] == ["http://localhost:8000/v1"]
    text = subprocess.run([sys.executable, "-m", "prompt_lab", "endpoints"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120).stdout
    assert "two: http://a:8000/v1, http://b:8000/v1 · no key · up to 4 requests in flight per replica" in text, text


SECRET_ELSEWHERE = "hunter2-not-a-key"


@pytest.mark.parametrize("entry, says", [
    ("  base_url: http://a:8000/v1\n  base_urls: [http://b:8000/v1]\n",
     r"line 3: field 'base_urls': give either base_url \(one server\) or base_urls \(a list of replicas\), not both"),
    ("  base_urls: []\n", r"line 2: field 'base_urls': must list at least one server address"),
    ("  base_urls: http://a:8000/v1\n", r"line 2: field 'base_urls': must be a list of server addresses .*got str"),
    ("  base_urls:\n    - http://a:8000/v1\n    - http://b:8000/v1\n    - http://a:8000\n",
     r"line 5: field 'base_urls', item 3: the same server as item 1; list each replica once"),
    (f"  base_urls:\n    - http://a:8000/v1\n    - http://user:{SECRET_ELSEWHERE}@b:8000/v1\n",
     r"line 4: field 'base_urls', item 2: must not carry credentials \(user:password@\)"),
    (f"  base_urls: [http://a:8000/v1, 'http://b:8000/v1?api_key={SECRET_ELSEWHERE}']\n",
     r"line 2: field 'base_urls', item 2: must not carry credentials \(a query string or fragment\)"),
    (f"  base_urls: [http://a:8000/v1, http://b:8000/{KEY}]\n",
     r"line 2: field 'base_urls', item 2: must not carry credentials \(an API key in the path\)"),
    ("  base_urls: [http://a:8000/v1, 7]\n", r"line 2: field 'base_urls', item 2: must be a server address"),
    ("  models: [m]\n", r"endpoint 'gw', line 1: base_url is missing .*or base_urls"),
])
def test_endpoints_file_refuses_bad_replica_lists_with_file_line_and_field(entry, says, home, monkeypatch):
    from prompt_lab.models.remote.endpoints import load_endpoints

    monkeypatch.setenv("PROMPT_LAB_API_KEY", KEY)
    (home / "endpoints.yaml").write_text(f"gw:\n{entry}")
    with pytest.raises(PromptLabError, match=r"endpoints.yaml: endpoint 'gw'(, line \d+)?: ") as info:
        load_endpoints()
    message = str(info.value)
    assert __import__("re").search(says, message), message
    assert KEY not in message and SECRET_ELSEWHERE not in message


def test_max_concurrency_help_says_per_replica():
    from prompt_lab.models.remote.endpoints import FILE_FIELDS

    assert "each" in FILE_FIELDS["max_concurrency"] and "base_urls" in FILE_FIELDS
