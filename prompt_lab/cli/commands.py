"""The CLI's commands: each reads its arguments, calls one core function and prints what it returns."""
from __future__ import annotations

import json
import sys

from prompt_lab.errors import PromptLabError
from prompt_lab.terminal import TerminalProgress
from prompt_lab.yamlfiles import load_vars_file


def _parse_vars(pairs: list[str], vars_file: str | None) -> dict:
    variables: dict = {}
    if vars_file:
        variables.update(load_vars_file(vars_file))
    for pair in pairs or []:
        if "=" not in pair:
            raise PromptLabError(f"--var '{pair}' must look like name=value")
        key, value = pair.split("=", 1)
        variables[key.strip()] = value
    return variables


def _params(args):
    from prompt_lab.models import GenerationParams

    return GenerationParams(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                            stop=args.stop or [], seed=args.seed, n=args.n)


def cmd_templates(args) -> int:
    from prompt_lab.prompts.templates import list_templates

    templates = list_templates()
    if args.json:
        print(json.dumps([{"name": t.name, "description": t.description, "variables": t.variables,
                           "choices": t.choices, "examples": len(t.examples), "hash": t.content_hash,
                           "source": t.source} for t in templates], indent=2))
        return 0
    width = max(len(t.name) for t in templates)
    for t in templates:
        print(f"{t.name:<{width}}  vars: {', '.join(t.variables):<24} {t.description}")
    return 0


def cmd_render(args) -> int:
    from prompt_lab.compare import model_list, render
    from prompt_lab.prompts.strategies import strategy_notes, supported_strategies
    from prompt_lab.prompts.templates import get_template

    template = get_template(args.template)  # a name, or a path the user names (the CLI reads the user's files)
    strategies = args.strategies or supported_strategies(template)  # no --strategies: what the template supports
    for note in [] if args.strategies else strategy_notes(template):
        print(f"note: {note}", file=sys.stderr)
    progress = TerminalProgress()
    models = model_list(args.model)
    items = {m: render(template, _parse_vars(args.var, args.vars_file), strategies=strategies,
                       model=m, k=args.k, seed=args.seed, progress=progress, selection=args.examples,
                       prompt_format=args.prompt_format) for m in models}
    progress.close()
    if args.json:
        print(json.dumps(items[models[0]] if len(models) == 1 else items, indent=2, ensure_ascii=False))
        return 0
    for model, rendered in items.items():
        for item in rendered:
            where = f" for {model}" if len(models) > 1 else ""
            print(f"===== {item['strategy']}{where} ({item['tokens']} tokens, {item['format']} format) =====")
            print(item["prompt"])
            print()
    return 0


def cmd_compare(args) -> int:
    from prompt_lab.compare import compare

    progress = TerminalProgress()
    result = compare(args.template, _parse_vars(args.var, args.vars_file), strategies=args.strategies,
                     models=args.model, params=_params(args), k=args.k, progress=progress, selection=args.examples,
                     prompt_format=args.prompt_format)
    progress.close()
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 1 if result.errors else 0
    print(f"run {result.run_id} · template {result.template} ({result.template_hash})")
    for model in result.models:
        used = result.format_of(model)
        print(f"\n##### model {model} ({result.revisions.get(model, '')})" + (f" · {used} format" if used else ""))
        if model in result.errors:
            print(f"error: {result.errors[model]}")
            continue
        for output in (o for o in result.outputs if o.model == model):
            for gen, answer in zip(output.generations, output.answers):
                sample = f" sample {gen.sample_index + 1}" if len(output.generations) > 1 else ""
                print(f"\n===== {output.strategy}{sample} =====")
                if args.show_prompt:
                    print(output.prompt + "\n-----")
                print(gen.text.strip())
                counted = {"server": "", "local": "", "estimate": " (estimated)"}.get(gen.token_source, "")
                print(f"-- answer: {answer if answer is not None else '(none found)'} · {gen.prompt_tokens} prompt + "
                      f"{gen.completion_tokens} completion tokens{counted} · {gen.latency_ms:.0f} ms · "
                      f"{gen.tokens_per_s:.1f} tok/s · {gen.finish_reason}")
    return 1 if result.errors else 0


def cmd_endpoints(args) -> int:
    """Named endpoints from the endpoints file: address, key variable (set or not), models the server lists."""
    from prompt_lab.models.remote.client import OpenAIBackend
    from prompt_lab.models.remote.endpoints import endpoints_file, load_endpoints
    from prompt_lab.settings import secret_from_env

    endpoints = load_endpoints()
    rows = []
    for name, e in endpoints.items():
        key_set = bool(secret_from_env(e.api_key_env)) if e.api_key_env else None
        served: list[str] | str = []
        if args.check:
            try:  # a refusal (401, 404, ...) says why, in the server's scrubbed words
                listing = OpenAIBackend(f"openai:{(e.models or ('?',))[0]}@{name}").model_listing()
                served = f"error: {listing.problem}" if listing.problem else listing.ids
            except Exception as exc:  # reported per endpoint, never with the key
                served = f"error: {exc}"
        rows.append({"name": name, "base_url": e.replicas[0], "base_urls": list(e.replicas),
                     "api_key_env": e.api_key_env, "api_key_set": key_set,
                     "models": list(e.models), "max_concurrency": e.max_concurrency, "served": served})
    if args.json:
        print(json.dumps({"file": str(endpoints_file()), "endpoints": rows}, indent=2))
        return 0
    if not rows:
        print(f"no named endpoints ({endpoints_file()} does not exist or is empty); ad-hoc remote models work as "
              "--model openai:<model>@<base_url>")
        return 0
    print(f"endpoints from {endpoints_file()}:")
    for r in rows:
        key = "no key" if r["api_key_env"] is None else f"key in ${r['api_key_env']} ({'set' if r['api_key_set'] else 'NOT set'})"
        per = " per replica" if len(r["base_urls"]) > 1 else ""
        print(f"  {r['name']}: {', '.join(r['base_urls'])} · {key} · up to {r['max_concurrency']} requests in "
              f"flight{per}")
        for model in r["models"]:
            print(f"      --model openai:{model}@{r['name']}")
        if args.check:
            print(f"      server lists: {r['served'] if isinstance(r['served'], str) else ', '.join(r['served']) or '(none)'}")
    return 0


def cmd_runs(args) -> int:
    from prompt_lab.runlog.store import connect, list_runs

    with connect() as db:
        rows = list_runs(db, limit=args.limit, kind=args.kind, template=args.template, status=args.status)
    if args.json:
        for row in rows:
            for key in [k for k in row if k.endswith("_json")]:
                row.pop(key)
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no runs yet")
        return 0
    print(f"{'id':>5}  {'created (UTC)':<24} {'kind':<8} {'status':<11} {'template':<16} {'model':<14} "
          f"{'strategies':<36} gens")
    for r in rows:
        print(f"{r['id']:>5}  {r['created_utc']:<24} {r['kind']:<8} {r['status']:<11} {r['template_name'] or '':<16} "
              f"{','.join(r['models']):<14} {','.join(r['strategies']):<36} {r['generations']}")
    return 0


def print_report(report) -> None:
    """Print an EvalReport (reporting.summary): the same rows the Evaluate view shows."""
    from prompt_lab.reporting.text import report_lines

    print("\n".join(report_lines(report)))


def cmd_eval(args) -> int:
    from prompt_lab.evaluation.evaluate import evaluate, resume
    from prompt_lab.evaluation.experiments import load_spec
    from prompt_lab.reporting.summary import eval_report

    progress = TerminalProgress()
    if args.resume:
        if args.prompt_format:
            raise PromptLabError("--format cannot change a run being resumed: it goes on in the format it started in")
        run_id = resume(args.resume, progress=progress)
    else:
        spec = load_spec(args.experiment)
        if args.limit:
            spec.limit = args.limit
        if args.prompt_format:
            spec.format = args.prompt_format
        command = (f"python -m prompt_lab eval {args.experiment}" + (f" --limit {args.limit}" if args.limit else "")
                   + (f" --format {args.prompt_format}" if args.prompt_format else ""))
        run_id = evaluate(spec, progress=progress, command=command)
    progress.close()
    report = eval_report(run_id)
    if args.json:
        from prompt_lab.reporting.text import report_json

        print(json.dumps(report_json(report), indent=2, ensure_ascii=False, default=float))
    else:
        print_report(report)
    return 0


def cmd_pair(args) -> int:
    """The paired test between two evaluation runs on the items they share by content; exit 2 when unpairable."""
    from prompt_lab.reporting.pairs import compare_runs
    from prompt_lab.reporting.text import pair_json, pair_lines

    pairs = compare_runs(args.run_a, args.run_b, condition=args.condition)
    if args.json:
        print(json.dumps(pair_json(pairs), indent=2, ensure_ascii=False, default=float))
    else:
        print("\n".join(pair_lines(pairs)))
    if not any(p.test is not None for p in pairs.pairs):
        print("error: no pair of conditions has a paired test: " + "; ".join(p.note for p in pairs.pairs),
              file=sys.stderr)
        return 2
    return 0


def cmd_ensemble(args) -> int:
    from prompt_lab.reporting.ensembles import print_ensemble
    return print_ensemble(args.run_id, args.how, args.members, as_json=args.json)


def cmd_tune(args) -> int:
    from prompt_lab.cli.tuning import follow_job, run_grid
    from prompt_lab.tuning import jobs
    from prompt_lab.tuning.grid import TuneGrid, load_tune_file

    if args.resume:
        job_id = args.resume
        jobs.resume(job_id)
    else:
        spec = load_tune_file(args.spec)
        if isinstance(spec, TuneGrid):  # lists of values: a queue of jobs, then their ranking
            return run_grid(spec, args.max_steps, args.json)
        if args.max_steps:
            spec.max_steps = args.max_steps
        job_id = jobs.submit(spec)
    print(f"job {job_id} started; Ctrl-C stops it (it can be resumed with --resume {job_id})", file=sys.stderr)
    try:
        job = follow_job(job_id)
    except KeyboardInterrupt:
        jobs.cancel(job_id)
        print(f"job {job_id} stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(job, indent=2, default=str))
    else:
        print(f"job {job_id}: {job['status']}" + (f" ({job['error']})" if job["error"] else ""))
        if job["adapter_path"]:
            print(f"adapter: {job['adapter_path']}")
            print(f"use it: --model '{jobs.tuned_spec(job)}'")
        if job["eval_run_id"]:
            from prompt_lab.reporting.summary import eval_report

            print_report(eval_report(job["eval_run_id"]))
    return 0 if job["status"] == "completed" else 1


SPEC_KINDS = ("eval", "search", "tune", "endpoint", "params", "settings")


def cmd_report(args) -> int:
    from prompt_lab.reporting.export import export_report, job_run_id, write_report

    ids = ([job_run_id(args.job)] if args.job is not None else []) + list(args.run_ids)
    if args.output:
        print(f"wrote {write_report(ids, args.output, args.format)}")
    else:  # to the terminal: Markdown unless asked otherwise (an HTML page is ~5 MB of embedded plotly)
        sys.stdout.write(export_report(ids, args.format or "md")[0])
    return 0


def cmd_spec(args) -> int:
    """The fields of an experiment file, a tune file, an endpoint, decoding params or the settings, with help."""
    from dataclasses import asdict

    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.models import GenerationParams
    from prompt_lab.models.remote.endpoints import Endpoint
    from prompt_lab.search.spec import SearchSpec
    from prompt_lab.settings import Settings
    from prompt_lab.specs import spec_help
    from prompt_lab.tuning.spec import TuneSpec

    kind = {"eval": EvalSpec, "search": SearchSpec, "tune": TuneSpec, "endpoint": Endpoint, "params": GenerationParams,
            "settings": Settings}[args.kind]
    fields = spec_help(kind)
    if args.json:
        print(json.dumps([asdict(f) for f in fields], indent=2, default=str))
        return 0
    for f in fields:
        print(f"{f.name}  ({f.type}, default {f.default!r})\n    {f.help}")
    return 0
