"""The top of the Evaluate and Search forms: a shipped file to start from, the template, and the dataset (a shipped
file or an upload) with a line saying what it holds.

A dataset dropdown's value is only ever a file name inside experiments/data (a crafted request cannot name another
server path); an upload is the path Gradio stored it under.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from prompt_lab.prompts.templates import template_names
from prompt_lab.ui.common import error

ROOT = Path(__file__).resolve().parent.parent.parent
DATA_DIR = ROOT / "experiments" / "data"
EXPERIMENTS = ROOT / "experiments"
UPLOAD_TYPES = [".csv", ".jsonl", ".json", ".parquet", ".arrow"]


def shipped_datasets() -> list[str]:
    return sorted(p.name for p in DATA_DIR.glob("*") if p.suffix in (".csv", ".jsonl"))


def dataset_path(choice: str, upload) -> str:
    """The file to read: the upload when there is one, else the shipped file of that name."""
    if upload:
        return upload if isinstance(upload, str) else upload.name
    if not choice:
        raise error("Pick a shipped dataset or upload a CSV/JSONL file.")
    return str(DATA_DIR / Path(choice).name)


def dataset_line(dataset) -> str:
    """What a loaded dataset holds, in one line."""
    return f"{dataset.name}: {len(dataset.rows)} rows · columns: {', '.join(dataset.columns)}"


def form_head(prefix: str, files: list[str], file_label: str, file_id: str):
    """A dropdown of files to start from (#file_id) beside the template (#<prefix>-template), then the dataset picker.
    Returns (file dropdown, template, dataset dropdown, upload, info)."""
    with gr.Row():
        start_from = gr.Dropdown(files, value=None, label=file_label, elem_id=file_id)
        template = gr.Dropdown(template_names(), value="sentiment", label="Template", elem_id=f"{prefix}-template")
    return (start_from, template, *dataset_picker(prefix))


def dataset_picker(prefix: str, value: str = "sentiment.csv"):
    """The shipped-dataset dropdown and the upload box side by side (#<prefix>-dataset, #<prefix>-upload), with the
    line about the chosen file under them (#<prefix>-dataset-info). Returns (dropdown, upload, info)."""
    with gr.Row():
        dataset = gr.Dropdown(shipped_datasets(), value=value, label="Shipped dataset", elem_id=f"{prefix}-dataset")
        upload = gr.File(label="…or upload CSV / JSONL / Parquet / Arrow", file_types=UPLOAD_TYPES,
                         elem_id=f"{prefix}-upload", height=130)
    info = gr.Markdown(elem_id=f"{prefix}-dataset-info")
    return dataset, upload, info
