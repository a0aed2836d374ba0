"""Command line (`python -m prompt_lab`): argument parsing and printing only; the work is done by the public API."""
from __future__ import annotations

import os
import sys

from prompt_lab.access import visitors
from prompt_lab.cli.commands import print_report
from prompt_lab.cli.parser import build_parser
from prompt_lab.errors import PromptLabError

__all__ = ["build_parser", "main", "print_report"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "eval" and not (args.experiment or args.resume):
        parser.error("eval needs an experiment file or --resume RUN_ID")
    if args.command == "search" and sum(x is not None for x in (args.search_file, args.resume, args.show)) != 1:
        parser.error("search needs a search file, --resume RUN_ID or --show RUN_ID (one of them)")
    if args.command == "tune" and not (args.spec or args.resume):
        parser.error("tune needs a tune file or --resume JOB_ID")
    try:
        with visitors.acting_as(visitors.LOCAL):  # whoever runs the CLI has the data dir: they see every run
            return args.func(args)
    except PromptLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head` closed the pipe: stop quietly, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
