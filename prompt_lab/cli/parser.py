"""The CLI's arguments: one subcommand per feature, each pointing at its command function."""
from __future__ import annotations

import argparse

from prompt_lab.cli.commands import (SPEC_KINDS, cmd_compare, cmd_endpoints, cmd_ensemble, cmd_eval, cmd_pair,
                                     cmd_render, cmd_report, cmd_runs, cmd_spec, cmd_templates, cmd_tune)
from prompt_lab.cli.search import add_search_parser
from prompt_lab.prompts.selection import SELECTIONS
from prompt_lab.prompts.strategies import STRATEGIES as STRATEGY_CHOICES
from prompt_lab.prompts.templates import FORMATS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m prompt_lab", description="Prompt Lab: prompt engineering "
                                     "workbench for local and open models.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, json_help="print JSON instead of text"):
        p.add_argument("--json", action="store_true", help=json_help)

    p = sub.add_parser("templates", help="list shipped and user templates")
    common(p)
    p.set_defaults(func=cmd_templates)

    def format_arg(p):
        p.add_argument("--format", choices=FORMATS, dest="prompt_format",
                       help="prompt format: chat (the model's chat template) or raw (plain text, as lm-eval's "
                            "default prompts: separator between blocks, answer label before each answer); "
                            "default: the template's (the experiment's for eval)")

    def prompt_args(p):
        p.add_argument("--template", "-t", required=True, help="template name (see `templates`) or a .yaml path")
        p.add_argument("--var", action="append", metavar="NAME=VALUE", help="a template variable (repeatable)")
        p.add_argument("--vars-file", help="YAML/JSON file with the variables")
        p.add_argument("--strategies", nargs="+", default=list(STRATEGY_CHOICES), metavar="S",
                       help=f"strategies to use: {', '.join(STRATEGY_CHOICES)} (default: all)")
        p.add_argument("--model", "-m", action="append",
                       help="model spec (repeat for a strategies x models grid): default, a folder, a .gguf, a Hub "
                            "id, <base>+<adapter dir>, or openai:<model>@<base_url or endpoint name>")
        p.add_argument("--k", type=int, default=3, help="examples in few-shot prompts (default 3)")
        p.add_argument("--examples", choices=SELECTIONS, default="random", help="few-shot: random, fixed, similar (BM25)")
        p.add_argument("--seed", type=int, default=0, help="seed for example choice and sampling")
        format_arg(p)
        common(p)

    p = sub.add_parser("render", help="show the final prompt of each strategy")
    prompt_args(p)
    p.set_defaults(func=cmd_render, strategies=None)  # default: every strategy the template supports

    p = sub.add_parser("compare", help="run the strategies side by side on a model and log the run")
    prompt_args(p)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--stop", action="append", help="stop sequence (repeatable)")
    p.add_argument("--n", type=int, default=1, help="samples per strategy")
    p.add_argument("--show-prompt", action="store_true", help="print each final prompt above its output")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("eval", help="run an experiment file: dataset x strategies x models, scored and logged")
    p.add_argument("experiment", nargs="?", help="experiments/NAME.yaml")
    p.add_argument("--limit", type=int, help="evaluate only the first N items")
    p.add_argument("--resume", type=int, metavar="RUN_ID", help="continue an interrupted evaluation run")
    format_arg(p)
    common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("pair", help="paired test between two evaluation runs on the items they share by content")
    p.add_argument("run_a", type=int, metavar="RUN_A", help="an evaluation run id (see `runs --kind eval`)")
    p.add_argument("run_b", type=int, metavar="RUN_B", help="another evaluation run id")
    p.add_argument("--condition", metavar="LABEL", help="only this condition of RUN_A (e.g. 'few_shot k=3 · "
                                                        "default'), against its match in RUN_B")
    common(p, "print JSON (with a `paired` count) instead of text")
    p.set_defaults(func=cmd_pair)

    p = sub.add_parser("ensemble", help="combine conditions of an evaluation run by vote or mean label probabilities")
    p.add_argument("run_id", type=int, metavar="RUN_ID", help="an evaluation run id (see `runs --kind eval`)")
    p.add_argument("--how", choices=("vote", "probs"), default="vote", help="vote (default) or probs (label_probs runs)")
    p.add_argument("--members", nargs="+", metavar="LABEL", help="condition labels as reports print them (default: all)")
    common(p)
    p.set_defaults(func=cmd_ensemble)
    from prompt_lab.tuning.grid import GRID_HELP

    p = sub.add_parser("tune", help="run a short LoRA / prompt-tuning job and compare base against tuned; a tune "
                                    "file with lists of values runs a grid of jobs and ranks them")
    p.add_argument("spec", nargs="?", help=f"experiments/tune_NAME.yaml. {GRID_HELP}")
    p.add_argument("--max-steps", type=int, help="override the spec's max_steps (every job of a grid)")
    p.add_argument("--resume", type=int, metavar="JOB_ID", help="continue a stopped or interrupted job")
    common(p, "print JSON instead of text (a grid: {grid, jobs} with the jobs ranked)")
    p.set_defaults(func=cmd_tune)

    add_search_parser(sub)

    p = sub.add_parser("endpoints", help="list the named remote endpoints (OpenAI-compatible servers)")
    p.add_argument("--check", action="store_true", help="also ask each server which models it serves")
    common(p)
    p.set_defaults(func=cmd_endpoints)

    p = sub.add_parser("runs", help="recent runs from the run log")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--kind")
    p.add_argument("--template")
    p.add_argument("--status")
    common(p)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("report", help="a shareable report of one run, two evaluation runs or a tune: one "
                                      "self-contained HTML file (charts included) or a Markdown summary")
    p.add_argument("run_ids", nargs="*", type=int, metavar="RUN_ID", help="a run, or two evaluation runs to pair")
    p.add_argument("--job", type=int, help="a tuning job: report its base-vs-tuned evaluation with the loss curve")
    p.add_argument("-o", "--output", help="write to this file (.md: Markdown); without it Markdown is printed")
    p.add_argument("--format", choices=("html", "md"), help="html or md (default: from -o's suffix, else html)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("spec", help="list the fields of a spec with type, default and help")
    p.add_argument("kind", choices=SPEC_KINDS, help="eval (experiment file), search, tune, endpoint, params, settings")
    common(p)
    p.set_defaults(func=cmd_spec)
    return parser
