"""build_demo(): the Blocks app; launch(): serve it with the server-side safety settings."""
from __future__ import annotations

from prompt_lab.settings import quiet_gradio

quiet_gradio()

import gradio as gr  # noqa: E402

from prompt_lab.models.remote.endpoints import remote_choices  # noqa: E402
from prompt_lab.models.registry import loaded_specs  # noqa: E402
from prompt_lab.settings import get_settings  # noqa: E402
import prompt_lab.ui.api as api  # noqa: E402
import prompt_lab.ui.compare_tab as compare_tab  # noqa: E402
import prompt_lab.ui.evaluate_tab as evaluate_tab  # noqa: E402
import prompt_lab.ui.history_tab as history_tab  # noqa: E402
import prompt_lab.ui.identity as identity  # noqa: E402
import prompt_lab.ui.opening as opening  # noqa: E402
import prompt_lab.ui.search_tab as search_tab  # noqa: E402
import prompt_lab.ui.templates_tab as templates_tab  # noqa: E402
import prompt_lab.ui.tune_tab as tune_tab  # noqa: E402
from prompt_lab.ui.common import CSS, friendly, on, theme  # noqa: E402
from prompt_lab.prompts.templates import template_names  # noqa: E402

TITLE = "Prompt Lab"
INTRO = ("# Prompt Lab\nWrite a prompt template, see it as zero-shot, few-shot and chain-of-thought prompts, "
         "and run them side by side on local models and on remote ones (any OpenAI-compatible server). Every run "
         "is kept in a SQLite run log.")
QUEUE_MAX = 64  # requests Gradio holds before its first handler step; model actions then meet the fair line at once
MAX_FILE_SIZE = "20mb"


def model_choices() -> list[str]:
    """default, models loaded in this process, the adapters of finished tuning jobs, and the models of the named
    remote endpoints."""
    from prompt_lab.runlog.queries import adapter_jobs
    from prompt_lab.runlog.store import connect
    from prompt_lab.tuning.jobs import tuned_spec

    with connect() as db:
        adapters = [tuned_spec(j) for j in adapter_jobs(db, 20)]  # this visitor's own, on a public Space
    settings = get_settings()
    loaded = [s for s in loaded_specs() if s != "default"
              and not (settings.public_mode and ("+" in s or s not in settings.public_models))]
    return list(dict.fromkeys(["default"] + loaded + adapters + remote_choices()))


def picker_choices() -> list:
    """Fresh choices for every picker that lists templates, models (with tuned adapters), datasets or experiment
    files: run on page load, on every tab switch and after a save or a finished job, so a new template or
    adapter shows up without a restart. Values are kept."""
    from prompt_lab.ui.pickers import shipped_datasets
    from prompt_lab.ui.evaluate_tab import experiment_files

    templates, models, datasets = template_names(), model_choices(), shipped_datasets()
    return ([gr.update(choices=templates)] * 5 + [gr.update(choices=models)] * 4
            + [gr.update(choices=datasets)] * 3 + [gr.update(choices=experiment_files())])


def build_demo() -> gr.Blocks:
    choices = model_choices()
    with gr.Blocks(title=TITLE) as demo:
        api.register()  # first, so the named endpoints keep their names (the page's own events are private)
        gr.Markdown(INTRO, elem_classes="edit-only")
        browser = identity.browser_state()
        with gr.Row(equal_height=True):
            who = gr.Markdown(visible=False, elem_id="visitor")
            present = gr.Checkbox(False, label="Presenter view", elem_id="present-toggle", scale=0, min_width=170,
                                  info="results large, editing hidden")
            if get_settings().oauth:
                gr.LoginButton(scale=0)
        with gr.Tabs(elem_id="tabs") as tabs:  # the id lets the presenter view's CSS outrank the scoped rules
            compare = compare_tab.build(choices)
            evaluation = evaluate_tab.build()
            searching = search_tab.build(choices)
            tune = tune_tab.build()
            editor = templates_tab.build(choices)
            history = history_tab.build()
        pickers = [compare["template"], evaluation["template"], searching["template"], tune["template"], editor["pick"],
                   compare["model"], editor["model"], searching["model"], searching["proposer"], evaluation["dataset"],
                   searching["dataset"], tune["dataset"], evaluation["experiment"]]
        refresh = dict(fn=friendly(picker_choices), inputs=None, outputs=pickers, api_visibility="private",
                       queue=False, show_progress="hidden")
        for tab in (compare["tab"], evaluation["tab"], searching["tab"], tune["tab"], editor["tab"], history["tab"]):
            tab.select(**refresh)
        editor["saved"].then(**refresh)
        searching["saved"].then(**refresh)  # the saved winner joins every template list
        on(history["open_search"].click, lambda run_id: (gr.Tabs(selected="search"), run_id), history["selected"],
           [tabs, searching["run_id"]], api_visibility="private")
        tune["finished"](**refresh)
        on(tune["to_compare"].click, lambda job: gr.update(choices=model_choices(), value=[tune["adapter_spec"](job)]),
           tune["job_id"], compare["model"],
           api_visibility="private").success(lambda: gr.Tabs(selected="compare"), None, tabs, api_visibility="private")
        # Who is asking comes first: everything the page loads is that visitor's own.
        loaded = demo.load(identity.bind, browser, [browser, who], api_visibility="private", queue=False)
        loaded.then(*tune["cli"], api_visibility="private")
        loaded.then(**refresh)
        loaded.then(*tune["reopen"], api_visibility="private")
        present.change(None, present, None, js=opening.PRESENT_TOGGLE, api_visibility="private", queue=False)
        # A link's run (?run=42, ?compare=12,14) opens after the Compare form has its first example, so its own
        # values stay.
        open_link, opened = opening.opener(tabs, present, compare, evaluation, searching, history)
        filled = loaded.then(compare["show_vars"], compare["template"],
                             compare["var_boxes"] + compare["example_buttons"], api_visibility="private")
        on(filled.then, open_link, None, opened, api_visibility="private")
        loaded.then(editor["load"], editor["pick"], [editor["yaml"]] + editor["form"], api_visibility="private").then(
            editor["preview"], editor["preview_inputs"], editor["preview_outputs"], api_visibility="private")
        loaded.then(*evaluation["init"], api_visibility="private")
        loaded.then(*searching["init"], api_visibility="private")
        loaded.then(history["refresh"], history["filters"], history["outs"], api_visibility="private")
    return demo


def launch(demo: gr.Blocks, **overrides) -> None:
    """Serve on 127.0.0.1:7860 unless PROMPT_LAB_HOST / PROMPT_LAB_PORT (or a Space's GRADIO_SERVER_NAME) say
    otherwise; the queue is bounded and uploads are capped."""
    settings = get_settings()
    host, port = settings.host, settings.port
    options = dict(server_name=host, server_port=port, max_file_size=MAX_FILE_SIZE, theme=theme(), css=CSS,
                   show_error=False, footer_links=[], js=opening.ON_LOAD)
    options.update(overrides)
    demo.queue(max_size=QUEUE_MAX, default_concurrency_limit=2)
    options.setdefault("max_threads", 40 + settings.max_waiting)  # model actions wait in the fair line in threads
    print(f"Prompt Lab: data in {settings.home}; serving on http://{host}:{port}", flush=True)
    demo.launch(**options)
