"""Bounded, sandboxed Jinja rendering through a long-lived worker process.

Templates are user input. They render in Jinja2's ImmutableSandboxedEnvironment with StrictUndefined
inside a small separate process (see render_worker.py) that the parent kills when a render passes its
time bound, and that has its own memory limit. Values are passed as JSON data, so a value holding
`{{7*7}}` is inserted literally and never rendered again.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from prompt_lab.settings import get_settings

_WORKER_SCRIPT = Path(__file__).with_name("render_worker.py")


@dataclass
class RenderFailure:
    kind: str  # syntax | undefined | security | too_large | runtime | timeout
    message: str
    line: int | None = None


SANDBOX_GLOBALS = {"range", "dict"}  # what render_worker leaves of Jinja's globals
# Jinja's parser spends about 13 Python frames per bracket and the worker runs under a recursion limit of 400, so
# brackets are bounded well below what either process can parse; the parsed tree is bounded apart (`a + 1 + 1 ...`
# and `x|f|f...` nest without brackets), and whatever still recurses too deep reads as a message, never a crash.
MAX_BRACKETS = 20
MAX_TREE_DEPTH = 50
_OPEN, _CLOSE = set("([{"), set(")]}")


def _parse(source: str):
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    depth, too_deep = 0, None
    try:
        for lineno, kind, value in env.lex(source):  # the lexer loops; the parser recurses
            if kind == "operator" and value in _OPEN:
                depth += 1
                if depth > MAX_BRACKETS:
                    too_deep = lineno
                    break
            elif kind == "operator" and value in _CLOSE:
                depth = max(0, depth - 1)
    except TemplateSyntaxError:
        pass  # the parser reports it, at the first error it meets
    if too_deep is not None:
        raise TemplateSyntaxError(f"brackets nested more than {MAX_BRACKETS} deep (the limit)", too_deep)
    try:
        tree = env.parse(source)
    except RecursionError:
        raise TemplateSyntaxError("nested too deeply to read", None) from None
    stack = [(tree, 1)]
    while stack:  # a loop, not a walk that recurses as deep as the tree
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            raise TemplateSyntaxError(f"expression nested more than {MAX_TREE_DEPTH} levels deep (the limit)",
                                      getattr(node, "lineno", None))
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return tree


def check_syntax(source: str) -> TemplateSyntaxError | None:
    """Parse (never compile or run) a template string; returns the syntax error, if any (nesting past the bounds
    above is one)."""
    try:
        _parse(source)
    except TemplateSyntaxError as exc:
        return exc
    return None


def template_variables(source: str) -> set[str]:
    """Names a template string reads that it does not set itself.

    Walks the parsed tree instead of using jinja2.meta: meta runs the code generator, which folds
    constant expressions (`'a' * 10**9`, `'x'|center(10**9)`) in this process, outside the sandbox's bounds.
    """
    from jinja2 import nodes

    tree = _parse(source)
    loaded = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    stored = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    stored |= {n.name for n in tree.find_all(nodes.Macro)} | {"loop", "caller", "varargs", "kwargs"}
    return loaded - stored - SANDBOX_GLOBALS


class _Worker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._pending = b""  # what the worker wrote past the last line read

    def _start(self) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-I", str(_WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        return proc

    def _kill(self) -> None:
        if self._proc is not None:
            try:
                self._proc.kill()
                self._proc.wait(timeout=5)
            except Exception:
                pass
            self._proc = None

    def render(self, items: list[dict], max_chars: int, seconds: float) -> list:
        """One result per item; the worker answers each item on its own line, so a render cut off by the clock or
        by memory fails on the item it was rendering (and the ones after it), and an error names that field."""
        request = json.dumps({"items": items, "max_chars": max_chars}) + "\n"
        with self._lock:
            for attempt in range(2):
                if self._proc is None or self._proc.poll() is not None:
                    self._proc, self._pending = self._start(), b""
                try:
                    self._proc.stdin.write(request)
                    self._proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    self._kill()
                    continue
                deadline = time.monotonic() + seconds
                results = []
                while len(results) < len(items):
                    line = self._read_line(deadline)
                    if line is None:  # timed out: the worker is stuck in the template, so end it
                        self._kill()
                        failure = RenderFailure("timeout", f"rendering took longer than {seconds:g} s and was cut off")
                        return results + [failure] * (len(items) - len(results))
                    if line == "":  # the worker died (memory limit, signal): start a fresh one next time
                        self._kill()
                        failure = RenderFailure("too_large", "rendering ran out of its memory limit and was cut off")
                        return results + [failure] * (len(items) - len(results))
                    results.append(self._decode(json.loads(line)))
                return results
            return [RenderFailure("runtime", "the rendering process could not be started") for _ in items]

    def _read_line(self, deadline: float) -> str | None:
        """The worker's next line; None when the deadline passes first, "" when the worker is gone. Reads the pipe
        itself (os.read after select): a buffered readline could pull several answers at once and leave select
        waiting for data that was already read."""
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return ""
                self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode("utf-8") + "\n"

    @staticmethod
    def _decode(answer: dict):
        if "text" in answer:
            return answer["text"]
        return RenderFailure(answer["error"], answer["message"], answer.get("line"))

    def close(self) -> None:
        with self._lock:
            self._kill()


_worker = _Worker()
atexit.register(_worker.close)


def render_strings(items: list[tuple[str, dict]], *, seconds: float | None = None,
                   max_chars: int | None = None) -> list:
    """Render (source, variables) pairs in the sandbox; each result is a str or a RenderFailure."""
    if not items:
        return []
    settings = get_settings()
    payload = [{"source": source, "variables": variables} for source, variables in items]
    return _worker.render(payload, max_chars or settings.render_max_chars, seconds or settings.render_seconds)
