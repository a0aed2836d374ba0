"""`python -m prompt_lab search`: run, resume or show a prompt search, and save its winner as a template."""
from __future__ import annotations

import json

from prompt_lab.terminal import TerminalProgress


def _command(args) -> str:
    """The command line that repeats this search (what the run log keeps)."""
    words = ["python -m prompt_lab search", args.search_file]
    words += [f"--rounds {args.rounds}"] * (args.rounds is not None)
    words += [f"--candidates {args.candidates}"] * (args.candidates is not None)
    return " ".join(words)


def cmd_search(args) -> int:
    from prompt_lab.search.loop import resume_search, search
    from prompt_lab.search.results import save_winner, search_lines, search_result
    from prompt_lab.search.spec import load_search_spec

    if args.show is not None:
        run_id = args.show
    else:
        progress = TerminalProgress()
        try:
            if args.resume is not None:
                run_id = resume_search(args.resume, progress=progress)
            else:
                spec = load_search_spec(args.search_file, rounds=args.rounds, candidates=args.candidates)
                run_id = search(spec, progress=progress, command=_command(args))
        finally:
            progress.close()
    result = search_result(run_id)
    saved = save_winner(run_id, args.save_as) if args.save_as else None
    if args.json:
        print(json.dumps({**result, "saved_template": saved.name if saved else None}, indent=2, ensure_ascii=False))
    else:
        print("\n".join(search_lines(result)))
        if saved:
            print(f"\nsaved the winner as template '{saved.name}' ({saved.source})")
    return 0


def add_search_parser(sub) -> None:
    p = sub.add_parser("search", help="let a proposer model rewrite a template's instruction, score candidates on a "
                                      "dev split and test the winner against the original on held-out items")
    p.add_argument("search_file", nargs="?", help="experiments/search_NAME.yaml")
    p.add_argument("--rounds", type=int, help="override the file's rounds")
    p.add_argument("--candidates", type=int, help="override the file's candidates per round")
    p.add_argument("--resume", type=int, metavar="RUN_ID", help="continue a stopped or interrupted search")
    p.add_argument("--show", type=int, metavar="RUN_ID", help="print a logged search instead of running one")
    p.add_argument("--save-as", metavar="NAME", help="save the winner as a template of this name")
    p.add_argument("--json", action="store_true", help="print JSON: candidates (text, parent, round, dev_score), "
                                                       "test (winner vs original on the test split), verdict")
    p.set_defaults(func=cmd_search)
