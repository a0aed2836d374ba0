"""Files the app hands to the browser in one click: a report of runs (reporting.export), written to a fresh temp
folder and downloaded at once by clicking the hidden file's link."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from prompt_lab.errors import PromptLabError
from prompt_lab.reporting.export import export_report


def report_file(*run_ids) -> dict:
    """A self-contained HTML report of the given runs (empty ids left out) as a file update for a hidden gr.File."""
    ids = [int(i) for i in run_ids if i not in (None, "", 0)]
    if not ids:
        raise PromptLabError("Select a run first (or fill in both evaluation runs to report them paired).")
    text, name = export_report(ids, "html")
    path = Path(tempfile.mkdtemp(prefix="prompt-lab-report-")) / name
    path.write_text(text, encoding="utf-8")
    return gr.update(value=str(path), visible=True)


def click_link(elem_id: str) -> str:
    """The JavaScript that clicks the link of the file just written into #elem_id, so the browser downloads it."""
    return ("() => { const link = document.querySelector('#%s a[download], #%s a[href]'); if (link) link.click(); }"
            % (elem_id, elem_id))
