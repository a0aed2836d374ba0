"""Prompt Lab: write prompt templates, run them as zero-shot / few-shot / CoT prompts on local models,
and keep every run in SQLite. The UI (prompt_lab.ui) and the CLI are thin layers over this API."""
from .errors import PromptLabError
from .models import GenerationParams, get_backend
from .runner import compare, render
from .strategies import STRATEGIES, build_prompts
from .templates import Template, get_template, list_templates, load_template, parse_template

__all__ = ["GenerationParams", "PromptLabError", "STRATEGIES", "Template", "build_prompts", "compare",
           "get_backend", "get_template", "list_templates", "load_template", "parse_template", "render"]
