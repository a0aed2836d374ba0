"""Prompt Lab: write prompt templates, run them as zero-shot / few-shot / CoT prompts on local models,
and keep every run in SQLite. The UI (prompt_lab.ui) and the CLI are thin layers over this API."""
from prompt_lab.errors import PromptLabError
from prompt_lab.models import GenerationParams, get_backend
from prompt_lab.compare import compare, render
from prompt_lab.prompts.strategies import STRATEGIES, build_prompts
from prompt_lab.prompts.templates import Template, get_template, list_templates, load_template, parse_template

__all__ = ["GenerationParams", "PromptLabError", "STRATEGIES", "Template", "build_prompts", "compare",
           "get_backend", "get_template", "list_templates", "load_template", "parse_template", "render"]
