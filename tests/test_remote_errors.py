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
from urllib.parse import quote, quote_plus

import pytest

from conftest import ROOT, free_port

from prompt_lab.errors import PromptLabError
from prompt_lab.models import GenerationParams, get_backend

KEY = "sk-echo-3b1f9c2d7e6a5b4c3d2e1f0a"


def key_forms(key: str = KEY) -> dict[str, str]:
    """Every encoding of the key a server might echo (worked out here, independently of the scrubber): as is,
    URL-encoded (also as a Bearer header), hex, and the key-only characters of its base64 at each byte alignment."""
    forms = {"verbatim": key, "url": quote(key, safe=""), "url-bearer": quote(f"Bearer {key}"),
             "hex": key.encode().hex()}
    for offset in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            forms[f"{name}@{offset}"] = encode(b"\0" * offset + key.encode()).decode()[4:-4]
    return forms


def leaks(text: str, window: int = 12) -> list[str]:
    """The forms of the key found in `text`, in any case: any `window` characters in a row of one of them (so a
    long prefix, such as all but the last character, counts as a leak)."""
    found, lower = [], text.lower()
    for name, form in key_forms().items():
        form = form.lower()
        if any(form[i:i + window] in lower for i in range(len(form) - window + 1)):
            found.append(name)
    return found


MODES = {"401_long", "401_boundary", "403_text", "404", "400_model", "422_other", "503", "200_not_chat",
         "200_not_chat_echo", "200_garbage", "400_encoded", "ok_echo", "slow", "ok"}


class EchoServer:
    """Answers each request by `mode`, always echoing the Authorization header it received."""

    def __init__(self):
        server = self
        self.mode, self.calls, self.get_mode = "ok", 0, "list"

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
                if server.get_mode == "404":  # GET /models unknown here: the 404 echoes every request header
                    return self.send(404, json.dumps({"detail": f"no route {self.path}",
                                                      "headers": dict(self.headers)}))
                if server.get_mode == "401":  # the model list refused: the message names the key it got
                    return self.send(401, json.dumps({"error": {"message": f"invalid API key {auth}, try again"}}))
                # the model list names the key too (a server that logs the caller into its ids)
                self.send(200, json.dumps({"data": [{"id": "served-model"}, {"id": f"model-of {auth}"}]}))

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.calls += 1
                auth = self.headers.get("Authorization", "")
                key = auth.removeprefix("Bearer ")
                # the model name picks the answer, so one compare over several models walks every path at once
                mode = body.get("model") if body.get("model") in MODES else server.mode
                if mode == "401_boundary":  # the key ends at character 301: a cut at 300 keeps all but its last
                    return self.send(401, json.dumps({"error": {"message": "x" * (301 - len(key)) + key + "y" * 40}}))
                if mode == "200_not_chat_echo":
                    return self.send(200, json.dumps({"object": "list", "echo": auth, "lower": key.lower(),
                                                      "hex": key.encode().hex().upper()}))
                if mode == "400_encoded":  # every encoding, base64 at each alignment, in one error body
                    return self.send(400, json.dumps({"error": {"message": " ".join(
                        [key.lower(), key.upper(), key.encode().hex(), quote(auth), quote_plus(auth)]
                        + [base64.b64encode(pad + auth.encode()).decode() for pad in (b"", b"a", b"ab")]
                        + [base64.urlsafe_b64encode(pad + key.encode()).decode() for pad in (b"", b"a", b"ab")])}}))
                if mode == "ok_echo":  # a completion that writes the key into its answer and its model name
                    text = f"key {key} / {key.lower()} / {base64.b64encode(key.encode()).decode()} / cut {key[:-1]}"
                    if body.get("stream"):
                        return self.send(200, "".join(
                            "data: " + json.dumps({"model": f"m-{key}", "choices": [
                                {"index": 0, "delta": {"content": text[i:i + 5]}, "finish_reason": None}]}) + "\n\n"
                            for i in range(0, len(text), 5)) + "data: [DONE]\n\n", "text/event-stream")
                    return self.send(200, json.dumps({"model": f"m-{key}", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 9}}))
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
        self.server.handle_error = lambda request, address: None  # a client that timed out is not news
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
    # the key ends at character 301: scrubbed first, then cut at 300 (cut first, all but its last character leaked)
    ("401_boundary", r"refused the API key \(HTTP 401: x{%d}\[key\]y+…\)" % (301 - len(KEY))),
    ("200_not_chat_echo", r"not a chat completion \('\{\"object\": \"list\", \"echo\": \"Bearer \[key\]\", "
                          r"\"lower\": \"\[key\]\", \"hex\": \"\[key\]\"\}'\)"),
    ("400_encoded", r"rejected the request \(HTTP 400\): \[key\] \[key\] \[key\] \[key\] \[key\] "),
])
def test_no_error_path_lets_the_key_out(echo, mode, says, home, monkeypatch):
    (home / "endpoints.yaml").write_text(f"echo:\n  base_url: {echo.url}\n  api_key_env: ECHO_KEY\n  max_retries: 1\n")
    monkeypatch.setenv("ECHO_KEY", KEY)
    echo.mode = mode
    for spec in (f"openai:m@{echo.url}", "openai:m@echo"):  # ad-hoc address and named endpoint
        message = failure(spec)
        assert leaks(message) == [], message
        assert re.search(says, message), message


def test_a_404_model_list_that_echoes_the_headers_is_not_quoted(echo, home):
    """The attack: POST answers 404, so the backend asks GET /models for the served models, which answers 404 with
    every request header, the key included; the message says the server did not list its models."""
    echo.mode, echo.get_mode = "404", "404"
    message = failure(f"openai:m@{echo.url}")
    assert leaks(message) == [], message
    assert message.endswith("(HTTP 404: no such model for [key]); it did not list its models"), message


def test_endpoints_check_says_why_a_server_lists_no_models_without_the_key(echo, home, monkeypatch):
    """`endpoints --check` against servers whose GET /models answers 401 (the message repeats the key it got) and 404:
    each line gives the status and the server's own words, scrubbed, instead of "(none)"."""
    monkeypatch.setenv("ECHO_KEY", KEY)
    (home / "endpoints.yaml").write_text(f"echo:\n  base_url: {echo.url}\n  api_key_env: ECHO_KEY\n  models: [m]\n")
    said = {}
    for mode in ("401", "404", "list"):
        echo.get_mode = mode
        for flag in ([], ["--json"]):
            done = subprocess.run([sys.executable, "-m", "prompt_lab", "endpoints", "--check", *flag], cwd=ROOT,
                                  capture_output=True, text=True, env=dict(os.environ), timeout=120)
            assert done.returncode == 0, done.stderr
            assert leaks(done.stdout + done.stderr) == [], done.stdout + done.stderr
            said[mode, bool(flag)] = done.stdout
    assert "server lists: error: 401 Unauthorized: invalid API key Bearer [key], try again" in said["401", False]
    assert "server lists: error: 404 Not Found: no route /v1/models" in said["404", False]
    assert "server lists: served-model, model-of Bearer [key]" in said["list", False]
    served = {mode: json.loads(said[mode, True])["endpoints"][0]["served"] for mode in ("401", "404", "list")}
    assert served == {"401": "error: 401 Unauthorized: invalid API key Bearer [key], try again",
                      "404": "error: 404 Not Found: no route /v1/models",
                      "list": ["served-model", "model-of Bearer [key]"]}


ELSEWHERE = "hunter2-not-the-key"  # a password that is not a configured key: refused all the same, never repeated


@pytest.mark.parametrize("address, says", [
    (f"http://user:{ELSEWHERE}@127.0.0.1:9/v1", r"credentials \(user:password@\)"),
    (f"http://:{KEY}@127.0.0.1:9/v1", r"credentials \(user:password@\)"),
    (f"http://127.0.0.1:9/v1;key={ELSEWHERE}", r"credentials \(path parameters such as ;key=\)"),
    (f"http://127.0.0.1:9/v1;{KEY}", r"credentials \(path parameters such as ;key=\)"),
    (f"http://127.0.0.1:9/{KEY}/v1", r"credentials \(an API key in the path\)"),
    (f"http://127.0.0.1:9/v1/{KEY.upper()}", r"credentials \(an API key in the path\)"),
    (f"http://127.0.0.1:9/v1/{quote(base64.b64encode(KEY.encode()).decode(), safe='')}", r"credentials \(an API key"),
    (f"http://127.0.0.1:9/v1/{KEY.encode().hex()}", r"credentials \(an API key in the path\)"),
    (f"http://127.0.0.1:9/sk-{ELSEWHERE}/v1", r"credentials \(an API key in the path\)"),  # shaped like a key
    (f"http://127.0.0.1:9/v1?api_key={ELSEWHERE}", r"credentials \(a query string or fragment\)"),
    (f"http://127.0.0.1:9/v1#{ELSEWHERE}", r"credentials \(a query string or fragment\)"),
    (f"http://127.0.0.1:9/v1?{KEY}", r"credentials \(a query string or fragment\)"),
    (f"http://127.0.0.1:{ELSEWHERE}/v1", r"is not an http\(s\) URL"),  # the password where the port goes
    (f"ftp://u:{ELSEWHERE}@127.0.0.1/v1", r"is not an http\(s\) URL"),
])
def test_addresses_with_credentials_are_refused_without_repeating_them(address, says, home, monkeypatch):
    """Ad-hoc specs, named endpoints and the CLI refuse an address that holds a credential anywhere; no message,
    run row or output repeats it (the key in the environment, or any other password)."""
    from prompt_lab.compare import compare
    from prompt_lab.models.remote.endpoints import load_endpoints

    monkeypatch.setenv("PROMPT_LAB_API_KEY", KEY)
    secrets = lambda text: leaks(text) + [ELSEWHERE] * (ELSEWHERE in text)  # noqa: E731
    with pytest.raises(PromptLabError, match=says) as ad_hoc:
        compare("sentiment", {"review": "fine"}, strategies=["zero_shot"], models=[f"openai:m@{address}"])
    assert secrets(str(ad_hoc.value)) == [] and "openai:m@…" in str(ad_hoc.value)
    assert not (home / "runs.db").exists() or sqlite3.connect(home / "runs.db").execute(
        "select count(*) from runs").fetchone() == (0,)
    (home / "endpoints.yaml").write_text(f"gw:\n  base_url: '{address}'\n")
    with pytest.raises(PromptLabError, match=r"endpoint 'gw', line 2: field 'base_url': .*" + says) as named:
        load_endpoints()
    assert secrets(str(named.value)) == []


def test_a_spec_that_is_neither_an_address_nor_an_endpoint_name_is_not_repeated(home, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_API_KEY", KEY)
    for where in (f"user:{ELSEWHERE}@127.0.0.1:9/v1", KEY, f"x/{KEY}"):
        with pytest.raises(PromptLabError, match="this is neither, so it is not repeated here") as info:
            get_backend(f"openai:m@{where}")
        assert leaks(str(info.value)) == [] and ELSEWHERE not in str(info.value)
    with pytest.raises(PromptLabError, match=r"model 'openai:\[key\]@…'") as info:  # the key typed as the model
        get_backend(f"openai:{KEY}@http://127.0.0.1:9/v1;x")
    assert leaks(str(info.value)) == []


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


def test_an_error_that_forgot_to_scrub_is_scrubbed_on_its_way_out(echo, home, monkeypatch):
    """The last filter: whatever a request path raises leaves generate() and stream() without the key."""
    from prompt_lab.models.remote.client import OpenAIBackend

    backend = OpenAIBackend(f"openai:m@{echo.url}")

    def unscrubbed(*args, **kwargs):
        raise RuntimeError(f"boom: {KEY} / {base64.b64encode(KEY.encode()).decode()}")

    monkeypatch.setattr(backend, "_generations", unscrubbed)
    with pytest.raises(PromptLabError, match=r"^boom: \[key\] / \[key\]") as info:
        backend.generate(["hi"], GenerationParams(max_new_tokens=2))
    assert info.value.__suppress_context__ and leaks(str(info.value)) == []
    with pytest.raises(PromptLabError, match=r"^boom: \[key\]"):
        list(backend.stream("hi", GenerationParams(max_new_tokens=2)))
