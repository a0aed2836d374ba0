"""build_demo(): the Blocks app; launch(): serve it with the server-side safety settings."""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from ..templates import list_templates  # noqa: E402


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Prompt Lab") as demo:
        gr.Markdown("# Prompt Lab\nPrompt-engineering workbench for local and open models.")
        rows = [[t.name, t.description, ", ".join(t.variables)] for t in list_templates()]
        gr.Dataframe(rows, headers=["template", "description", "variables"], label="Templates", interactive=False)
    return demo


def launch(demo: gr.Blocks) -> None:
    host = os.environ.get("PROMPT_LAB_HOST", "127.0.0.1")
    port = int(os.environ.get("PROMPT_LAB_PORT", "7860"))
    demo.queue(max_size=32).launch(server_name=host, server_port=port, max_file_size="20mb")
