"""What the page opens with: the run a link names (access.links) in the tab of its kind, and the presenter view.

`?run=42` shows a compare run in Compare (its grid as it finished, the controls set to what it ran), an
evaluation in Evaluate (its headline, table and charts) and a prompt search in Search (its candidates, chart and
verdict); `?compare=12,14` pairs two evaluation runs in History;
`present=1` turns the presenter view on. Runs with a valid key become readable for this page session
(ui.identity.share); without one another visitor's run reads as missing, in words, like any missing run.
"""
from __future__ import annotations

import gradio as gr

from prompt_lab.access import links, visitors
from prompt_lab.runlog.store import connect, get_run
from prompt_lab.ui.identity import share, visitor_for
from prompt_lab.ui.common import error

# The presenter view: the page body gets the class `present` (common.CSS hides the editing controls under it and
# enlarges the results). Toggling keeps the address in step, so a copied address keeps the view.
PRESENT_TOGGLE = """(on) => {
  document.body.classList.toggle("present", !!on);
  const url = new URL(window.location.href);
  if (on) url.searchParams.set("present", "1"); else url.searchParams.delete("present");
  window.history.replaceState(window.history.state, "", url);
}"""

# Run once when the page loads, before any server answer: no flash of the editing controls in a presenter link.
ON_LOAD = """() => {
  const on = new URLSearchParams(window.location.search).get("present");
  if (on === "1" || on === "true") document.body.classList.add("present");
}"""


def opener(tabs, present, compare: dict, evaluation: dict, searching: dict, history: dict):
    """(handler, outputs) for the page-load step that opens a link."""
    logged_fn, logged_outputs = compare["logged"]
    pair_outputs = history["pair_outputs"]  # run A, run B, table A, table B, verdict
    # a run of another kind opens in its tab by setting that tab's run id
    shown_in = {"eval": ("evaluate", evaluation["run_id"]), "search": ("search", searching["run_id"])}
    outputs = [tabs, present, evaluation["run_id"], searching["run_id"], history["selected"]] + logged_outputs + \
        pair_outputs

    def open_link(request: gr.Request):
        link = links.parse(dict(request.query_params) if request is not None else {})
        shown: dict = {present: True} if link.present else {}
        if not link.view:  # Gradio reads an empty dict as one value for all the outputs, so name one
            return shown or {present: gr.update()}
        if link.granted:
            share(request, link.run_ids)
        with visitors.acting_as(visitor_for(request)):  # now with the runs the link opened
            if link.view == "compare":
                a, b = link.run_ids
                tables = history["pair"](a, b)
                return {**shown, tabs: gr.Tabs(selected="history"), **dict(zip(pair_outputs, [a, b, *tables]))}
            run_id = link.run_ids[0]
            with connect() as db:
                run = get_run(db, run_id)
            if run is None:
                raise error(f"This link names run {run_id}, which is not in the run log (or not shared with you: "
                            "ask for the link again).")
            if run["kind"] == "compare":
                return {**shown, tabs: gr.Tabs(selected="compare"),
                        **dict(zip(logged_outputs, logged_fn(run_id)))}
            if run["kind"] in shown_in:
                tab, run_box = shown_in[run["kind"]]
                return {**shown, tabs: gr.Tabs(selected=tab), run_box: run_id}
            return {**shown, tabs: gr.Tabs(selected="history"), history["selected"]: run_id}

    return open_link, outputs
