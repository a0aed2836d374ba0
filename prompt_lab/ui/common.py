"""Shared UI pieces: error translation, per-session Stop, the ZeroGPU decorator, the theme."""
from __future__ import annotations

import functools
import html
import importlib.util
import inspect
import logging
import threading

import gradio as gr

from prompt_lab.access import fair_use, visitors
from prompt_lab.errors import CancelledError, PromptLabError
from prompt_lab.settings import get_settings
from prompt_lab.ui.identity import visitor_for

log = logging.getLogger("prompt_lab.ui")
MODEL_QUEUE = "model"  # concurrency_id shared by every event that runs a model

# the prompt format control of Compare and Evaluate: "" is the template's (or the experiment file's) own
FORMAT_CHOICES = [("Template's", ""), ("Chat", "chat"), ("Raw text", "raw")]
FORMAT_INFO = ("chat: the model's chat template · raw: plain text as lm-eval's default prompts (blocks joined by the "
               "template's separator, each answer after its answer label; local models only) · a model without a "
               "chat template always gets raw")


def model_event() -> dict:
    """Event options of every model action: they share one Gradio concurrency group wide enough that each request
    reaches the fair line at once (which runs one at a time and says where each waits, or refuses with a time to
    retry), instead of waiting unseen in Gradio's queue."""
    return dict(concurrency_id=MODEL_QUEUE, concurrency_limit=max(1, get_settings().max_waiting) + 2)


def _message(exc: BaseException) -> str:
    if isinstance(exc, PromptLabError):
        return str(exc)
    log.exception("unexpected error in a UI handler")
    return f"Something went wrong ({type(exc).__name__}: {exc}). The details are in the server log."


def as_text(message: str) -> str:
    """A message for a toast or pop-up, which Gradio renders as HTML: escaped, so `openai:<model>@<url>` or a
    source named `<editor>` reads as written instead of being eaten as a tag."""
    return html.escape(str(message), quote=False)


def warn(message: str) -> None:
    gr.Warning(as_text(message))


def info(message: str) -> None:
    gr.Info(as_text(message))


def error(message: str) -> gr.Error:
    return gr.Error(as_text(message), print_exception=False)


def _request() -> gr.Request | None:
    """The request of the event being handled (Gradio keeps it in a context variable around each call and step)."""
    from gradio.context import LocalContext

    return LocalContext.request.get(None)


def friendly(fn, *, html_toast: bool = True):
    """Run fn as the visitor who sent the request (identity.visitor_for); core errors become gr.Error with the
    core's plain message, escaped for the page's HTML toast (html_toast) or as written for API callers; nothing
    shows a stack trace."""
    def fail(exc: Exception) -> gr.Error:
        message = _message(exc)
        return error(message) if html_toast else gr.Error(message, print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            visitor = visitor_for(_request())
            steps = fn(*args, **kwargs)
            try:
                while True:
                    with visitors.acting_as(visitor):  # set around every step: each may run in another thread
                        try:
                            item = next(steps)
                        except StopIteration:
                            return
                    yield item
            except gr.Error:
                raise
            except CancelledError:
                warn("Stopped.")
            except Exception as exc:
                raise fail(exc) from None
            finally:
                steps.close()
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with visitors.acting_as(visitor_for(_request())):
                return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise fail(exc) from None
    return wrapper


def in_line(action: str):
    """Wait for the model in the fair line (access.fair_use) before fn runs: refused at once when a fair-use limit
    is reached (the message says when to retry); while waiting, the place in line and the expected wait show in
    the progress bar; Stop gives the place up. The GPU (on ZeroGPU) is taken only once the turn has come."""
    def decorate(fn):
        run = gpu(action)(fn)

        def waited(args, kwargs):
            line = fair_use.model_line()
            ticket = line.admit(visitors.current().key, action)
            progress = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Progress)), None)
            try:
                for place in line.wait(ticket, cancel=stop_switches.fresh(_request())):
                    if progress is not None:
                        progress(0, desc=place.message())
            except BaseException:
                line.leave(ticket)
                raise
            return line, ticket

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen(*args, **kwargs):
                line, ticket = waited(args, kwargs)
                try:
                    yield from run(*args, **kwargs)
                finally:
                    line.leave(ticket)
            return gen

        @functools.wraps(fn)
        def plain(*args, **kwargs):
            line, ticket = waited(args, kwargs)
            try:
                return run(*args, **kwargs)
            finally:
                line.leave(ticket)
        return plain
    return decorate


def on(trigger, fn, inputs, outputs, *, failed: dict | None = None, **kwargs):
    """Wire `trigger(fn, inputs, outputs)` so that a failure leaves nothing broken on the page.

    Core errors reach the user as a plain-text pop-up (friendly), and when the event fails every output is
    settled: a no-op update clears the red "Error" badge Gradio puts on outputs of a failed event, and the
    components in `failed` get the given values (a status line says the run did not happen, say), so no
    "Loading…" outlives its run.
    """
    event = trigger(friendly(fn), inputs, outputs, **kwargs)
    outs = outputs if isinstance(outputs, (list, tuple)) else [outputs] if outputs is not None else []
    if outs:
        failed = failed or {}
        settle = lambda: [failed.get(o, gr.update()) for o in outs]  # noqa: E731
        event.failure(settle, None, list(outs), api_visibility="private", queue=False, show_progress="hidden")
    return event


class StopSwitches:
    """One cancel Event per browser session, so Stop ends that session's generation (and only it)."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def fresh(self, request: gr.Request | None) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._events[_session(request)] = event
        return event

    def stop(self, request: gr.Request | None) -> None:
        with self._lock:
            event = self._events.get(_session(request))
        if event is not None:
            event.set()


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "api"


stop_switches = StopSwitches()


def stoppable(request: gr.Request | None, progress, start: str | None = "Starting") -> dict:
    """The `progress` and `cancel` arguments of a core run started from the page: its messages go to the progress
    bar, and this session's Stop button (a fresh switch) ends it."""
    cancel = stop_switches.fresh(request)
    if start:
        progress(0, desc=start)
    return dict(progress=lambda fraction, message: progress(fraction, desc=message), cancel=cancel)


# ZeroGPU time asked for per action (seconds): a compare generates a few hundred tokens at most; an evaluation of
# the default model over a shipped dataset takes a few minutes (ZeroGPU queues longer requests behind shorter ones);
# a prompt search on a public Space has a wall-time budget that leaves room for its final test (ui/search_tab.py).
GPU_SECONDS = {"compare": 60, "run_again": 60, "evaluate": 300, "resume_evaluation": 300, "search": 300,
               "resume_search": 300}


def gpu(action: str):
    """spaces.GPU(duration=GPU_SECONDS[action]) on a ZeroGPU Space (the `spaces` package is present), the function
    itself elsewhere. The visitor is passed in, since ZeroGPU may run the function in another process."""
    def decorate(fn):
        if importlib.util.find_spec("spaces") is None:
            return fn
        import spaces

        if inspect.isgeneratorfunction(fn):
            def inner_gen(visitor, *args, **kwargs):
                with visitors.acting_as(visitor):
                    yield from fn(*args, **kwargs)
            on_gpu = spaces.GPU(duration=GPU_SECONDS[action])(inner_gen)

            @functools.wraps(fn)
            def outer_gen(*args, **kwargs):
                yield from on_gpu(visitors.current(), *args, **kwargs)
            return outer_gen

        def inner(visitor, *args, **kwargs):
            with visitors.acting_as(visitor):
                return fn(*args, **kwargs)
        on_gpu = spaces.GPU(duration=GPU_SECONDS[action])(inner)

        @functools.wraps(fn)
        def outer(*args, **kwargs):
            return on_gpu(visitors.current(), *args, **kwargs)
        return outer
    return decorate


def theme() -> gr.themes.Base:
    # The bundled bold font is a tiny subset: naming both weights keeps bold text in the same family.
    return gr.themes.Soft(
        primary_hue="indigo", secondary_hue="sky", neutral_hue="slate",
        font=(gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "ui-sans-serif", "sans-serif"),
        font_mono=(gr.themes.LocalFont("IBM Plex Mono", weights=(400, 600)), "ui-monospace", "monospace"),
    )


CSS = """
.output-col textarea { font-size: 15px !important; line-height: 1.45 !important; }
.stats { font-size: 13px; color: var(--body-text-color-subdued); min-height: 4.2em; }
.stats span[title] { text-decoration: underline dotted; cursor: help; }
.status-line { min-height: 1.5em; }
.stats mark { background: #fde68a; color: #111; padding: 1px 5px; border-radius: 4px; font-weight: 700; }
.help { font-size: 14px; color: var(--body-text-color-subdued); }
footer { display: none !important; }
table.extract { width: 100%; border-collapse: collapse; font-size: 14px; }
table.extract td, table.extract th { border-bottom: 1px solid var(--border-color-primary); padding: 4px 6px;
  vertical-align: top; text-align: left; }
table.extract td.out { white-space: pre-wrap; max-width: 640px; }
table.extract mark { background: #fde68a; color: #111; font-weight: 700; border-radius: 3px; padding: 0 2px; }
/* Presenter view (body.present, see ui/opening.py): editing hidden, results large enough for a projector. Gradio
   repeats each rule scoped under .gradio-container .contain; #tabs makes these outrank those copies. */
body:not(.present) .present-only { display: none !important; }
body.present .edit-only, body.present .help { display: none !important; }
#cmp-inputs .input-name { font-weight: 700; font-size: 15px; color: var(--body-text-color-subdued); }
#cmp-inputs blockquote { font-size: 22px; margin: 4px 0 10px; padding: 6px 14px;
  border-left: 4px solid var(--color-accent); }
body.present #tabs .output-col textarea { font-size: 21px !important; line-height: 1.4 !important;
  max-height: 215px !important; }
body.present #tabs .cell-title h3 { font-size: 24px !important; }
body.present #tabs .stats { font-size: 17px !important; }
body.present #tabs :is(#cmp-status, #eval-head, #hist-pair-verdict) :is(p, li) { font-size: 19px !important; }
body.present #tabs #eval-summary table { font-size: 18px !important; }
body.present .gradio-container { max-width: 100% !important; }
"""
