"""Every error path of the remote backend, against a hostile server that echoes the API key back in every way
it can (body, long bodies, model lists, non-chat answers, stream events, headers). No path may let the key
reach a message, the run log or the CLI. Model-free: the server is a few lines of http.server."""
import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from conftest import ROOT, free_port

from prompt_lab.errors import PromptLabError
from prompt_lab.models import GenerationParams, get_backend

KEY = "sk-echo-3b1f9c2d7e6a5b4c3d2e1f0a"


def leaks(text: str) -> list[str]:
    """The forms of the key found in `text`: verbatim, a long prefix, case-changed, base64, URL-encoded."""
    forms = {"verbatim": KEY, "prefix": KEY[:-1], "upper": KEY.upper(),
             "base64": base64.b64encode(KEY.encode()).decode().rstrip("="), "url": quote(f"Bearer {KEY}")}
    return [name for name, form in forms.items() if form in text or form.lower() in text.lower()]


class EchoServer:
    """Answers each request by `mode`, always echoing the Authorization header it received."""

    def __init__(self):
        server = self
        self.mode, self.calls = "ok", 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def send(self, code, body, kind="application/json", headers=()):
                data = body if isinstance(body, bytes) else body.encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                # the model list names the key too (a server that logs the caller into its ids)
                self.send(200, json.dumps({"data": [{"id": "served-model"}, {"id": f"model-of {auth}"}]}))

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.calls += 1
                auth = self.headers.get("Authorization", "")
                key = auth.removeprefix("Bearer ")
                mode = server.mode
                if mode == "401_long":  # the key near the 300th character, where a cut would fall
                    return self.send(401, json.dumps({"error": {"message": "x" * 290 + f" bad key: {key}"}}))
                if mode == "403_text":
                    return self.send(403, f"forbidden for {auth}", "text/plain")
                if mode == "404":
                    return self.send(404, json.dumps({"detail": f"no such model for {key}"}))
                if mode == "400_model":
                    return self.send(400, json.dumps({"error": {"message": f"model not allowed for key {key}"}}))
                if mode == "422_other":
                    return self.send(422, json.dumps({"error": {"code": 1, "echo": auth}}))
                if mode == "503":
                    return self.send(503, json.dumps({"error": f"overloaded ({key.upper()})"}),
                                     headers=[("Retry-After", "0")])
                if mode == "200_not_chat":
                    return self.send(200, json.dumps({"hello": base64.b64encode(key.encode()).decode()}))
                if mode == "200_garbage":
                    return self.send(200, f"<html>{quote(auth)}</html>", "text/html")
                if mode == "slow":
                    time.sleep(3)
                return self.send(200, json.dumps({"model": "served-model", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1}}))

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def echo(home, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_API_KEY", KEY)
    server = EchoServer()
    yield server
    server.server.shutdown()


def failure(spec: str) -> str:
    # every failure names the server it talked to (and never the key: the callers check that)
    with pytest.raises(PromptLabError, match=r"http://127\.0\.0\.1:\d+/v1") as info:
        get_backend(spec).generate(["hi"], GenerationParams(max_new_tokens=2))
    return str(info.value)


@pytest.mark.parametrize("mode, says", [
    ("401_long", r"refused the API key \(HTTP 401: x+"),
    ("403_text", r"refused the API key \(HTTP 403: forbidden for Bearer \[key\]\)"),
    ("404", r"the server does not know this model \(HTTP 404: no such model for \[key\]\); it serves: served-model, "
            r"model-of Bearer \[key\]"),
    ("400_model", r"does not know this model \(HTTP 400: model not allowed for key \[key\]\)"),
    ("422_other", r"rejected the request \(HTTP 422\): "),
    ("503", r"answered HTTP 503 [24] times \(retried with backoff, then gave up\): overloaded \(\[key\]\)"),
    ("200_not_chat", r"the answer is not a chat completion"),
    ("200_garbage", r"the answer is not a chat completion"),
])
def test_no_error_path_lets_the_key_out(echo, mode, says, home, monkeypatch):
    (home / "endpoints.yaml").write_text(f"echo:\n  base_url: {echo.url}\n  api_key_env: ECHO_KEY\n  max_retries: 1\n")
    monkeypatch.setenv("ECHO_KEY", KEY)
    echo.mode = mode
    for spec in (f"openai:m@{echo.url}", "openai:m@echo"):  # ad-hoc address and named endpoint
        message = failure(spec)
        assert leaks(message) == [], message
        assert re.search(says, message), message


def test_a_timeout_and_an_unreachable_server_name_the_problem_not_the_key(echo, home):
    (home / "endpoints.yaml").write_text(f"slow:\n  base_url: {echo.url}\n  timeout_s: 0.5\n  max_retries: 0\n")
    echo.mode = "slow"
    message = failure("openai:m@slow")
    assert "did not answer within 0.5 s" in message and leaks(message) == []
    dead = failure(f"openai:m@http://127.0.0.1:{free_port()}/v1")
    assert "could not reach" in dead and leaks(dead) == []


def test_the_run_log_and_the_cli_never_hold_the_key(echo, home):
    """A failed remote model in a compare: the run's error column, the generations and the CLI's output."""
    from prompt_lab.compare import compare

    echo.mode = "404"
    with pytest.raises(PromptLabError, match="the server does not know this model"):
        compare("sentiment", {"review": "fine"}, strategies=["zero_shot"], models=[f"openai:m@{echo.url}"])
    error = sqlite3.connect(home / "runs.db").execute("select error from runs").fetchone()[0]
    assert "does not know this model" in error and leaks(error) == []
    cli = subprocess.run([sys.executable, "-m", "prompt_lab", "compare", "-t", "sentiment", "--var", "review=ok",
                          "--strategies", "zero_shot", "--model", f"openai:m@{echo.url}"], cwd=ROOT,
                         capture_output=True, text=True, env=dict(os.environ))
    assert cli.returncode != 0 and "does not know this model" in cli.stderr
    assert leaks(cli.stdout + cli.stderr) == []
    for path in home.glob("runs.db*"):
        assert leaks(path.read_bytes().decode("utf-8", "replace")) == []


def test_answers_and_model_names_a_server_echoes_are_scrubbed(echo, home, monkeypatch):
    """A server that writes the key into the answer or the model name it reports: neither reaches the log."""
    from prompt_lab.models.remote.client import OpenAIBackend

    backend = OpenAIBackend(f"openai:m@{echo.url}")
    response = type("R", (), {"json": lambda self: {"model": f"m-{KEY}", "choices": [
        {"message": {"content": f"your key is {KEY.upper()}"}, "finish_reason": "stop"}]}, "text": ""})()
    (choices, usage, served) = backend._read_json(response)
    assert choices == [("your key is [key]", "stop")] and served == "m-[key]"


def test_the_scrubber_catches_the_obvious_encodings():
    from prompt_lab.models.secrets import scrub

    for prefix in ("", "a", "ab", "Bearer "):  # every base64 alignment of the key inside a longer value
        encoded = base64.b64encode(f"{prefix}{KEY} trailing".encode()).decode()
        assert leaks(scrub(encoded, [KEY])) == []
        url_safe = base64.urlsafe_b64encode(f"{prefix}{KEY}".encode()).decode()
        assert leaks(scrub(url_safe, [KEY])) == []
    assert scrub(f"a {quote(KEY, safe='')} b {KEY.lower()} c", [KEY]) == "a [key] b [key] c"
    assert scrub("nothing to hide", [KEY, None, ""]) == "nothing to hide"
    assert scrub("the word token stays", ["token"[:5]]) == "the word token stays"  # too short to be a key
