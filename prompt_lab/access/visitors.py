"""Who a request runs as, and what that visitor may see.

Locally there is one user, who sees everything (LOCAL): the app and the CLI behave as they always did. On a public
Space (SPACE_ID set) every request runs as a visitor: signed in with Hugging Face (`hf:<username>`) or anonymous,
known by a random token kept in that browser (`anon:<hash of the token>`; the token itself is never stored). Each
run, job, template and adapter belongs to the visitor who made it; the Space's author and PROMPT_LAB_ADMINS see
every visitor's runs and jobs. A request that names no visitor on a public Space runs as NOBODY, who sees nothing.

The front end says who is asking around each request (`acting_as`); the run log, the template folders, the job
queue and the model registry ask `current()`. Threads started for a request carry it (`in_thread`).
"""
from __future__ import annotations

import contextvars
import os
import hashlib
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from prompt_lab.settings import get_settings


@dataclass(frozen=True)
class Visitor:
    key: str  # stored with every run and job: "" is the local user (and everything logged before visitors)
    label: str  # how people see it
    sees_all: bool = False
    shared_runs: frozenset[int] = frozenset()  # other visitors' runs this page may read: links it was opened with

    @property
    def folder(self) -> str:
        """This visitor's folder name under <home>/visitors (letters, digits, '-', '_', '.')."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.key.replace(":", "-", 1))


LOCAL = Visitor("", "local user", sees_all=True)
NOBODY = Visitor("nobody", "nobody")
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32}")
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_current: contextvars.ContextVar[Visitor | None] = contextvars.ContextVar("prompt_lab_visitor", default=None)


def current() -> Visitor:
    """The visitor the running request acts as: set by acting_as; else the local user, or NOBODY on a Space."""
    visitor = _current.get()
    if visitor is not None:
        return visitor
    return NOBODY if get_settings().public_mode else LOCAL


@contextmanager
def acting_as(visitor: Visitor) -> Iterator[Visitor]:
    token = _current.set(visitor)
    try:
        yield visitor
    finally:
        _current.reset(token)


def in_thread(fn: Callable) -> Callable[[], object]:
    """fn, to run in another thread as the visitor (and with the context) of the thread that made it."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(fn, *args, **kwargs)


def new_browser_token() -> str:
    """A fresh anonymous identity for one browser: 32 URL-safe characters (192 random bits)."""
    return secrets.token_urlsafe(24)


def anonymous(token: str) -> Visitor:
    """The visitor a browser token names. Only a hash of the token is stored, so the run log and its folders do
    not hold what would let someone act as that visitor."""
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise ValueError("not a browser token")
    digest = hashlib.sha256(token.encode()).hexdigest()[:24]
    return Visitor(f"anon:{digest}", f"anonymous visitor {digest[:6]}")


def signed_in(username: str) -> Visitor:
    """A visitor signed in with Hugging Face; the Space's author and PROMPT_LAB_ADMINS see everything."""
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise ValueError("not a Hugging Face user name")
    return Visitor(f"hf:{username}", username, sees_all=username in get_settings().admins)


def api_client(session: str) -> Visitor:
    """A caller of the HTTP API (gradio_client) that did not load the page: its own visitor for its session."""
    digest = hashlib.sha256(f"api:{session}".encode()).hexdigest()[:24]
    return Visitor(f"api:{digest}", f"API client {digest[:6]}")


def from_key(key: str | None) -> Visitor:
    """The visitor a stored key names (a job's process runs as the visitor who queued the job)."""
    if not key:
        return LOCAL
    kind, _, name = key.partition(":")
    if kind == "hf":
        return signed_in(name)
    return Visitor(key, f"{'anonymous visitor' if kind == 'anon' else 'API client'} {name[:6]}")


def home(visitor: Visitor | None = None) -> Path:
    """Where a visitor's own files live: the data dir for the local user, <home>/visitors/<visitor> otherwise."""
    visitor = visitor or current()
    base = get_settings().home
    return base if visitor.key == "" else base / "visitors" / visitor.folder


def templates_dir(visitor: Visitor | None = None) -> Path:
    return home(visitor) / "templates"


def can_see(owner: str | None, visitor: Visitor | None = None) -> bool:
    """Whether a visitor may see (and act on) what `owner` made."""
    visitor = visitor or current()
    return visitor.sees_all or (owner or "") == visitor.key


def browser_secret() -> str:
    """A random secret made once and kept in <home>/.browser_secret (readable by this user only): what the app
    encrypts the browser's stored token with, the same after a restart so a returning browser stays itself. The file
    appears whole or not at all (written aside, then linked into place), and a damaged one is replaced."""
    path = get_settings().home / ".browser_secret"
    try:
        value = path.read_text(encoding="ascii").strip()
        if len(value) >= 16:
            return value
    except (FileNotFoundError, UnicodeDecodeError):
        value = None
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".browser_secret.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secrets.token_urlsafe(24))
    try:
        if value is None:
            try:
                os.link(staging, path)  # only if none exists: two processes starting at once agree on one
            except FileExistsError:
                pass
        else:
            os.replace(staging, path)  # a damaged (empty or short) secret is replaced whole
    finally:
        if staging.exists():
            staging.unlink()
    return path.read_text(encoding="ascii").strip()
