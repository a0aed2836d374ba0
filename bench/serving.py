"""`transformers serve` for the remote benchmarks (bench_remote.py, bench_replicas.py): one server process on a free
loopback port, started on a model folder and stopped (or killed mid-run, to measure failover) by its base URL."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

_processes: dict[str, subprocess.Popen] = {}  # base URL -> its server process, while served() runs


@contextmanager
def served(folder: Path, *extra: str, env: dict | None = None):
    """`transformers serve <folder>` on a free port; yields its base URL. `env`: extra environment variables."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, HF_HUB_CACHE=tempfile.mkdtemp(prefix="hub-"), HF_HUB_OFFLINE="1", **(env or {}))
    log = open(Path(tempfile.mkdtemp()) / "serve.log", "w+")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "transformers"), "serve", str(folder), "--host",
                             "127.0.0.1", "--port", str(port), "--device", "cpu", *extra], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"transformers serve did not start:\n{log.read()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        _processes[url] = proc
        yield url
    finally:
        _processes.pop(url, None)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:  # killed already (kill_server)
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def kill_server(url: str) -> None:
    """SIGKILL the server behind url (a crash: no goodbye to the requests it holds)."""
    proc = _processes[url]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)
