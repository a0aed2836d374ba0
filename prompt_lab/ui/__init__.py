"""The Gradio app: the only package that imports gradio. build_demo() assembles the tabs."""
from prompt_lab.ui.app import build_demo, launch

__all__ = ["build_demo", "launch"]
