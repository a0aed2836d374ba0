"""Who is asking, for the web app: a Hugging Face sign-in (Gradio's OAuth session) on a Space that offers it, else
an anonymous identity kept in this browser (a random token in its localStorage, through gr.BrowserState).

The page binds its Gradio session to a visitor when it loads (`bind`); every handler then runs as that visitor
(`visitor_for`, called by common.friendly). Callers of the HTTP API that never loaded the page are one visitor per
client session. Locally everything runs as the one local user.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict

import gradio as gr

from prompt_lab.access import visitors
from prompt_lab.settings import get_settings

MAX_SESSIONS = 20_000  # page sessions remembered (least recently used forgotten; a reload binds again)
STORAGE_KEY = "prompt_lab_visitor"
MAX_SHARED = 50  # runs one page session may have opened through links
_sessions: OrderedDict[str, visitors.Visitor] = OrderedDict()
_shared: OrderedDict[str, tuple[int, ...]] = OrderedDict()  # page session -> runs opened through a valid link
_lock = threading.Lock()


def browser_state() -> gr.BrowserState:
    """Where a browser keeps its anonymous token. The encryption secret stays the same across restarts (it is
    kept in the data dir), so a returning browser is the same visitor."""
    return gr.BrowserState(None, storage_key=STORAGE_KEY, secret=visitors.browser_secret())


def _signed_in(request: gr.Request | None) -> visitors.Visitor | None:
    """The visitor of a valid Hugging Face sign-in on this request's session, if any."""
    if request is None or not get_settings().oauth:
        return None
    try:
        session = request.request.session  # present when Gradio's OAuth (SessionMiddleware) is attached
    except (AttributeError, AssertionError):
        return None
    info = session.get("oauth_info") if hasattr(session, "get") else None
    if not isinstance(info, dict) or (info.get("expires_at") or 0) < time.time():
        return None
    try:
        return visitors.signed_in(str((info.get("userinfo") or {}).get("preferred_username") or ""))
    except ValueError:
        return None


def visitor_for(request: gr.Request | None) -> visitors.Visitor:
    """The visitor a request acts as, with the runs its page opened through links (access.links)."""
    if not get_settings().public_mode:
        return visitors.LOCAL
    session = getattr(request, "session_hash", None) or ""
    with _lock:
        shared = frozenset(_shared.get(session, ()))
    visitor = _own(request, session)
    return dataclasses.replace(visitor, shared_runs=shared) if shared and visitor != visitors.NOBODY else visitor


def _own(request: gr.Request | None, session: str) -> visitors.Visitor:
    signed = _signed_in(request)
    if signed is not None:
        return signed
    with _lock:
        visitor = _sessions.get(session)
        if visitor is not None:
            _sessions.move_to_end(session)
            return visitor
    return visitors.api_client(session) if session else visitors.NOBODY


def share(request: gr.Request | None, run_ids) -> None:
    """This page session may read these runs from now on: it was opened with a valid link to them. Only the newest
    MAX_SHARED are kept; a reload opens its link again."""
    session = getattr(request, "session_hash", None) or ""
    if not session or not get_settings().public_mode:
        return
    with _lock:
        new = [int(i) for i in run_ids]
        runs = [i for i in _shared.get(session, ()) if i not in new] + new
        _remember(_shared, session, tuple(runs[-MAX_SHARED:]))


def _remember(table: OrderedDict, session: str, value) -> None:
    """Keep `value` for a page session as the most recently used, forgetting the least recently used beyond
    MAX_SESSIONS. Called with _lock held."""
    table[session] = value
    table.move_to_end(session)
    while len(table) > MAX_SESSIONS:
        table.popitem(last=False)


def bind(token, request: gr.Request):
    """On page load: this page's session acts as the signed-in user, else as the browser's anonymous visitor (a new
    token is made and stored in the browser the first time). Returns (token to keep, who-am-I line)."""
    if not get_settings().public_mode:
        return token, gr.update(visible=False)
    if not (isinstance(token, str) and visitors.TOKEN_RE.fullmatch(token)):
        token = visitors.new_browser_token()
    visitor = _signed_in(request) or visitors.anonymous(token)
    session = getattr(request, "session_hash", None) or ""
    if session:
        with _lock:
            _remember(_sessions, session, visitor)
    return token, gr.update(value=who_line(visitor), visible=True)


def who_line(visitor: visitors.Visitor) -> str:
    if visitor.key.startswith("hf:"):
        scope = "every visitor's runs and jobs (you administer this Space)" if visitor.sees_all else \
            "your own runs, templates and jobs"
        return f"Signed in as **{visitor.label}** with Hugging Face: you see {scope}."
    signin = " Sign in with Hugging Face to keep them across browsers." if get_settings().oauth else ""
    return (f"You are **{visitor.label}**: your runs, templates and jobs are yours alone, kept for this browser."
            f"{signin}")
