"""How a result leaves the app in one click: a self-contained report file of runs (reporting.export), written to a
fresh temp folder and downloaded at once, and a link that opens the runs (access.links), copied to the clipboard
and shown for copying by hand where the clipboard is blocked (a Space's iframe may be)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from prompt_lab.errors import PromptLabError
from prompt_lab.reporting.export import export_report, share_query
from prompt_lab.ui.common import on


def _ids(run_ids) -> list[int]:
    return [int(i) for i in run_ids if i not in (None, "", 0)]


def report_file(*run_ids) -> dict:
    """A self-contained HTML report of the given runs (empty ids left out) as a file update for a hidden gr.File."""
    ids = _ids(run_ids)
    if not ids:
        raise PromptLabError("Select a run first (or fill in both evaluation runs to report them paired).")
    return file_update(*export_report(ids, "html"))


def file_update(text: str, name: str) -> dict:
    """`text` written as `name` in a fresh temp folder, as the update of a hidden gr.File whose link click_link
    clicks (every visitor's download gets its own folder)."""
    path = Path(tempfile.mkdtemp(prefix="prompt-lab-download-")) / name
    path.write_text(text, encoding="utf-8")
    return gr.update(value=str(path), visible=True)


def share_link(*run_ids) -> dict:
    """The query string of a link to the given runs (with its key on a public Space); the page makes it a whole
    address (COPY_LINK)."""
    return gr.update(value=share_query(_ids(run_ids)), visible=True)


def click_link(elem_id: str) -> str:
    """The JavaScript that clicks the link of the file just written into #elem_id, so the browser downloads it."""
    return ("() => { const link = document.querySelector('#%s a[download], #%s a[href]'); if (link) link.click(); }"
            % (elem_id, elem_id))


# The query string becomes this page's address with it (the presenter view kept), goes to the clipboard when the
# browser allows, and stays in the box for copying by hand.
COPY_LINK = """(query) => {
  if (!query || query.startsWith("http")) return query;
  const url = new URL(query, window.location.href);
  url.hash = "";
  if (document.body.classList.contains("present")) url.searchParams.set("present", "1");
  const text = url.href;
  try { navigator.clipboard.writeText(text).catch(() => {}); } catch (e) {}
  return text;
}"""


def share_row(prefix: str):
    """Download report and Copy link buttons (#<prefix>-report, #<prefix>-link), placed where it is called (inside a
    layout block), with the hidden file and the link box. Returns wire(ids, runs_of=None), to call once the
    components naming the runs exist: runs_of(*values) picks the run ids from their values (default: all)."""
    report_btn = gr.Button("Download report", elem_id=f"{prefix}-report", scale=0, min_width=160)
    link_btn = gr.Button("Copy link", elem_id=f"{prefix}-link", scale=0, min_width=110)
    link_box = gr.Textbox(label="Link to this result", elem_id=f"{prefix}-link-url", visible=False, interactive=False,
                          buttons=["copy"], scale=2)
    report_out = gr.File(elem_id=f"{prefix}-report-file", interactive=False, visible=False)

    def wire(ids: list, runs_of=None) -> None:
        pick = runs_of or (lambda *values: values)
        report = on(report_btn.click, lambda *values: report_file(*pick(*values)), ids, report_out,
                    api_visibility="private")
        report.success(None, None, None, js=click_link(f"{prefix}-report-file"), api_visibility="private", queue=False)
        link = on(link_btn.click, lambda *values: share_link(*pick(*values)), ids, link_box, api_visibility="private")
        link.success(None, link_box, link_box, js=COPY_LINK, api_visibility="private", queue=False)

    return wire
