"""compare(): one template, several strategies on one or more models (a strategies x models grid), each
model's prompts in one batched call, the models side by side, every generation logged."""
from __future__ import annotations

import contextlib
import json
import queue
import shlex
import threading
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from prompt_lab.access import visitors
from prompt_lab.errors import CancelledError, PromptLabError
from prompt_lab.models import GenerationParams, get_backend, resolve
from prompt_lab.models.registry import using
from prompt_lab.models.base import Generation, ProgressFn, format_params, prompt_format as prompt_format_of
from prompt_lab.answers.scoring import extract_for
from prompt_lab.settings import get_settings
from prompt_lab.runlog.store import connect, finish_run, finishing, log_generations, save_template_version, start_run
from prompt_lab.prompts.strategies import STRATEGIES, build_prompts, fit_strategies
from prompt_lab.prompts.templates import Template, get_template


@dataclass
class StrategyOutput:
    strategy: str
    prompt: str  # the exact text (or, for a remote model, the JSON messages) the model saw
    generations: list[Generation]
    answers: list[str | None]
    model: str = ""
    format: str = "chat"  # the prompt format this model got: chat (its chat template) or raw (plain text)

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "model": self.model, "format": self.format, "prompt": self.prompt,
                "answers": self.answers,
                "generations": [g.to_dict() for g in self.generations]}


@dataclass
class CompareResult:
    run_id: int
    template: str
    template_hash: str
    models: list[str]
    revisions: dict[str, str]  # model spec -> what answered (weights fingerprint, or served model @ endpoint)
    params: GenerationParams
    outputs: list[StrategyOutput]  # model-major: every strategy of models[0], then of models[1], ...
    warnings: list[str] = field(default_factory=list)
    command: str = ""
    errors: dict[str, str] = field(default_factory=dict)  # model spec -> why it gave no answers
    cancelled: bool = False  # Stop was pressed: finished answers are kept, the rest end "cancelled"
    variables: dict = field(default_factory=dict)  # the template's inputs as filled in
    k: int = 3
    example_selection: str = "random"  # how the few-shot examples were chosen (prompts.selection)
    prompt_format: str | None = None  # the format asked for (None: the template's); each output says the one used

    @property
    def model(self) -> str:
        return self.models[0]

    @property
    def model_revision(self) -> str:
        return self.revisions.get(self.models[0], "")

    def output(self, model: str, strategy: str) -> StrategyOutput | None:
        return next((o for o in self.outputs if o.model == model and o.strategy == strategy), None)

    def format_of(self, model: str) -> str | None:
        """The prompt format this model got (raw or chat); None when it gave no output."""
        return next((o.format for o in self.outputs if o.model == model), None)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "template": self.template, "template_hash": self.template_hash,
                "models": self.models, "revisions": self.revisions, "params": self.params.to_dict(),
                "format": self.prompt_format,
                "warnings": self.warnings, "errors": self.errors, "command": self.command, "cancelled": self.cancelled,
                "outputs": [o.to_dict() for o in self.outputs]}


def model_list(models) -> list[str]:
    """One spec or several -> a list without repeats; empty entries mean the default model."""
    items = [models] if isinstance(models, str) else list(models or [])
    out: list[str] = []
    for spec in (str(m).strip() or "default" for m in items):
        if spec not in out:
            out.append(spec)
    return out or ["default"]


def cli_command(template: str, variables: dict, strategies, models, params: GenerationParams, k: int,
                selection: str = "random", prompt_format: str | None = None) -> str:
    """The `python -m prompt_lab compare ...` line that repeats a run (model specs hold no API keys)."""
    parts = ["python", "-m", "prompt_lab", "compare", "--template", template]
    for key, value in variables.items():
        parts += ["--var", f"{key}={value}"]
    parts += ["--strategies", *strategies]
    for model in model_list(models):
        parts += ["--model", model]
    parts += ["--k", str(k)] + (["--examples", selection] if selection != "random" else [])
    parts += ["--format", prompt_format] if prompt_format else []
    parts += ["--temperature", f"{params.temperature:g}", "--top-p", f"{params.top_p:g}",
              "--max-new-tokens", str(params.max_new_tokens), "--seed", str(params.seed), "--n", str(params.n)]
    for stop in params.stop:
        parts += ["--stop", stop]
    return shlex.join(parts)


def compare(template: str | Template, variables: dict, *, strategies=STRATEGIES, models="default",
            params: GenerationParams | None = None, k: int = 3, db_path: str | Path | None = None,
            progress: ProgressFn | None = None, cancel: threading.Event | None = None,
            on_update: Callable[[list[list[str]]], None] | None = None, selection: str = "random",
            prompt_format: str | None = None) -> CompareResult:
    """Render the template with each strategy, run the prompts on every model (each model's prompts as one
    batch, the models at the same time, adapted models at most settings.max_loaded_adapters at a time: each is
    loaded when its turn comes and let go when it is done), extract answers, log the run. `selection` chooses the
    few-shot examples (random, fixed or similar; prompts.selection). `prompt_format`: chat or raw (None: the
    template's); a model without a chat template gets raw, and a raw prompt's answer ends at the separator.

    on_update(grid) receives, as tokens arrive, the text so far of each model's strategies (first sample):
    grid[model_index][strategy_index]. A model that fails (an unreachable server, say) does not sink the
    others: its error is in result.errors, the others' answers are logged, and the run is marked failed
    with the reason. If every model fails, the first error is raised. When `cancel` is set mid-run, the
    answers that had finished are kept and logged, the others are logged with finish_reason "cancelled"
    and no answer, the run is marked cancelled and result.cancelled is True.
    """
    template = get_template(template) if isinstance(template, str) else template
    check_inputs(template, variables)
    strategies, left_out = fit_strategies(template, strategies)  # a template without examples: zero-shot and CoT
    models = model_list(models)
    params, warnings = (params or GenerationParams()).clamped(get_settings())
    warnings = left_out + warnings
    prompts = build_prompts(template, strategies, variables, k=k, seed=params.seed, selection=selection,
                            prompt_format=prompt_format)
    check_batch(len(prompts), params.n)
    adapted = {m for m in models if resolve(m).adapter}  # a mistyped spec fails here, before the run row
    values = {v: variables[v] for v in template.variables}
    command = cli_command(template.name, values, strategies, models, params, k, selection, prompt_format)
    with connect(db_path) as db:
        save_template_version(db, template.name, template.content_hash, template.to_yaml())
        run_id = start_run(db, kind="compare", template_name=template.name, template_hash=template.content_hash,
                           models=models, strategies=strategies, params=params.to_dict(),
                           options={"k": k, "example_selection": selection,
                                    **({"format": prompt_format} if prompt_format else {})},
                           variables=values, command=command)
        results: dict[str, list[list[Generation]]] = {}
        errors: dict[str, BaseException] = {}
        texts: dict[str, list[str]] = {}  # model -> the exact text of each prompt (its chat template applied)
        formats = dict.fromkeys(models, prompts[0].format)  # model -> the format it got (raw or chat)
        revisions = dict.fromkeys(models, "")
        grid = [[""] * len(prompts) for _ in models]
        grid_lock = threading.Lock()
        # Adapted models take turns, so no more are alive than the registry keeps (it frees the idle ones first).
        adapter_turns = threading.BoundedSemaphore(max(1, get_settings().max_loaded_adapters))

        def generate_on(index: int, model: str) -> None:  # the model is let go when this returns
            def partial(rows: list[int], row_texts: list[str]) -> None:
                with grid_lock:
                    for row, text in zip(rows, row_texts):
                        grid[index][row] = text
                    snapshot = [list(r) for r in grid]
                on_update(snapshot)

            with using(model, progress) as backend:
                try:
                    texts[model] = [backend.format_prompt(p) for p in prompts]
                    formats[model] = prompt_format_of(backend, prompts[0])
                    # one batch per set of decoding params: in raw, a CoT answer stops elsewhere than a direct one
                    batches: dict[tuple, list[int]] = {}
                    for i, prompt in enumerate(prompts):
                        batches.setdefault(tuple(format_params(params, prompt, formats[model]).stop), []).append(i)
                    answers: list = [None] * len(prompts)
                    for stops, rows in batches.items():
                        done = backend.generate([texts[model][i] for i in rows], replace(params, stop=list(stops)),
                                                progress=progress, cancel=cancel,
                                                on_partial=(lambda t, rows=rows: partial(rows, t)) if on_update
                                                else None)
                        for row, generations in zip(rows, done):
                            answers[row] = generations
                    results[model] = answers
                finally:
                    revisions[model] = backend.revision

        def run_model(index: int, model: str) -> None:
            with adapter_turns if model in adapted else contextlib.nullcontext():
                try:
                    generate_on(index, model)
                except BaseException as exc:  # reported per model below
                    traceback.clear_frames(exc.__traceback__)  # its frames would keep the model alive
                    errors[model] = exc

        with finishing(db, run_id):
            threads = [threading.Thread(target=visitors.in_thread(run_model), args=(i, m), daemon=True,
                                        name=f"compare-{i}")
                       for i, m in enumerate(models)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            cancelled = cancel is not None and cancel.is_set()
            if not results:
                if cancelled and all(isinstance(e, CancelledError) for e in errors.values()):
                    raise CancelledError("generation stopped")
                raise errors[models[0]]
            outputs, rows = [], []
            for model in models:
                for prompt, text, gens in zip(prompts, texts.get(model, []), results.get(model, [])):
                    # an answer cut off by Stop is unfinished: nothing is extracted from it
                    answers = [None if g.finish_reason == "cancelled" else extract_for(template, g.text).answer
                               for g in gens]
                    outputs.append(StrategyOutput(prompt.strategy, text, gens, answers, model, formats[model]))
                    rows += [_row(template, prompt.strategy, model, revisions[model], values, text,
                                  format_params(params, prompt, formats[model]), gen, answer, formats[model])
                             for gen, answer in zip(gens, answers)]
            log_generations(db, run_id, rows)
        if cancelled:
            finish_run(db, run_id, "cancelled", "stopped by the user")
        elif errors:
            finish_run(db, run_id, "failed", "; ".join(f"{m}: {e}" for m, e in errors.items()))
    return CompareResult(run_id, template.name, template.content_hash, models, revisions, params, outputs, warnings,
                         command, {m: _message(e) for m, e in errors.items()}, cancelled, values, k, selection,
                         prompt_format)


def check_batch(prompts: int, samples: int = 1) -> None:
    """A compare sends each model its prompts (one per strategy, each answered `samples` times) as one batch;
    a request above the max_batch_prompts setting is refused, not split, before any model is loaded."""
    cap = get_settings().max_batch_prompts
    if prompts * samples > cap:
        raise PromptLabError(f"this compare asks each model for {prompts * samples} answers in one batch "
                             f"({prompts} prompt{'s' if prompts != 1 else ''} x {samples} sample"
                             f"{'s' if samples != 1 else ''}), more than the server's max_batch_prompts of {cap} "
                             "(PROMPT_LAB_MAX_BATCH): ask for fewer strategies or samples")


def check_inputs(template: Template, variables: dict) -> None:
    """No variable of the template is blank (a blank input gives the model nothing to answer); a missing one is
    reported by build_prompts with the list of variables the template takes."""
    blank = [v for v in template.variables if v in variables and not str(variables[v] or "").strip()]
    if blank:
        names = ", ".join(f"'{v}'" for v in blank)
        raise PromptLabError(f"fill in {names} first: template '{template.name}' needs "
                             f"{'a value' if len(blank) == 1 else 'values'} for {names}")


def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, PromptLabError) else f"{type(exc).__name__}: {exc}"


def _row(template: Template, strategy: str, model: str, revision: str, values: dict, text: str,
         params: GenerationParams, gen: Generation, answer: str | None, used: str) -> dict:
    return {"template_name": template.name, "template_hash": template.content_hash, "strategy": strategy,
            "model_spec": model, "model_revision": revision,
            "variables_json": json.dumps(values, ensure_ascii=False), "prompt": text,
            "params_json": json.dumps({**params.to_dict(), "format": used}), "seed": params.seed, "answer": answer,
            **gen.log_fields()}


@dataclass
class CompareEvent:
    kind: str  # progress | partial | done
    texts: list[list[str]] | None = None  # partial: text so far, [model][strategy]
    fraction: float = 0.0
    message: str = ""
    result: CompareResult | None = None


def compare_events(template: str | Template, variables: dict, **kwargs) -> Iterator[CompareEvent]:
    """compare() run in a worker thread, as a stream of events for interactive callers (the web UI).

    Partial texts are coalesced: a slow consumer sees the latest texts, not a backlog. Errors raised by
    compare() (bad input, cancel) are raised here, in the consumer's thread.
    """
    events: queue.Queue = queue.Queue()

    def work():
        try:
            result = compare(template, variables, progress=lambda f, m: events.put(CompareEvent("progress", None, f, m)),
                             on_update=lambda texts: events.put(CompareEvent("partial", texts)), **kwargs)
            events.put(CompareEvent("done", result=result))
        except BaseException as exc:  # re-raised in the consumer
            events.put(exc)

    threading.Thread(target=visitors.in_thread(work), daemon=True, name="compare").start()  # as this visitor
    while True:
        event = events.get()
        while isinstance(event, CompareEvent) and event.kind == "partial" and not events.empty():
            following = events.queue[0]
            if not (isinstance(following, CompareEvent) and following.kind == "partial"):
                break
            event = events.get()
        if isinstance(event, BaseException):
            raise event
        yield event
        if event.kind == "done":
            return


def render(template: str | Template, variables: dict, *, strategies=STRATEGIES, model: str = "default",
           k: int = 3, seed: int = 0, progress: ProgressFn | None = None, selection: str = "random",
           prompt_format: str | None = None) -> list[dict]:
    """The final prompt text of each strategy as the model would see it, with its token count and format."""
    template = get_template(template) if isinstance(template, str) else template
    prompts = build_prompts(template, strategies, variables, k=k, seed=seed, selection=selection,
                            prompt_format=prompt_format)
    backend = get_backend(model, progress)
    out = []
    for prompt in prompts:
        text = backend.format_prompt(prompt)
        out.append({"strategy": prompt.strategy, "format": prompt_format_of(backend, prompt), "prompt": text,
                    "tokens": backend.count_tokens(text),
                    "messages": prompt.messages, "prefill": prompt.prefill})
    return out


def _compare_run(db, run_id: int, otherwise: str) -> dict:
    """The logged compare run `run_id` this visitor may see, or PromptLabError in words."""
    from prompt_lab.runlog.store import get_run

    run = get_run(db, int(run_id))
    if run is None:
        raise PromptLabError(f"there is no run {run_id} in the run log")
    if run["kind"] != "compare":
        raise PromptLabError(f"run {run_id} is a '{run['kind']}' run; {otherwise}")
    return run


def rerun(run_id: int, *, db_path: str | Path | None = None, **kwargs) -> CompareResult:
    """Run a logged compare again with its exact template version and settings (a new run)."""
    from prompt_lab.runlog.store import run_template

    with connect(db_path) as db:
        run = _compare_run(db, run_id, "only compare runs can be run again here")
        template = run_template(db, run)
    return compare(template, run["variables"], strategies=run["strategies"], models=run["models"],
                   params=GenerationParams(**run["params"]), k=int(run["options"].get("k", 3)), db_path=db_path,
                   selection=run["options"].get("example_selection", "random"),
                   prompt_format=run["options"].get("format"), **kwargs)


def logged_result(run_id: int, *, db_path: str | Path | None = None) -> CompareResult:
    """A logged compare run as it was shown when it finished (its grid, stats, prompts and CLI line), read back from
    the run log: what a link to the run opens."""
    from prompt_lab.runlog.store import run_generations

    with connect(db_path) as db:
        run = _compare_run(db, run_id, "not a compare run")
        rows = run_generations(db, int(run_id))
    models, outputs, revisions = list(run["models"]), [], {}
    for model in models:
        for strategy in run["strategies"]:
            mine = [r for r in rows if r["model_spec"] == model and r["strategy"] == strategy]
            if not mine:
                continue
            revisions[model] = mine[0]["model_revision"] or ""
            gens = [Generation(r["output"] or "", r["prompt_tokens"] or 0, r["completion_tokens"] or 0,
                               r["latency_ms"] or 0.0, r["finish_reason"] or "", r["sample_index"] or 0,
                               r["token_source"] or "local") for r in mine]
            used = json.loads(mine[0]["params_json"] or "{}").get("format") or "chat"
            outputs.append(StrategyOutput(strategy, mine[0]["prompt"] or "", gens, [r["answer"] for r in mine], model,
                                          used))
    answered = {o.model for o in outputs}
    reason = run.get("error") or "it gave no answers"
    errors = {m: reason for m in models if m not in answered and run["status"] != "cancelled"}
    return CompareResult(int(run_id), run["template_name"], run["template_hash"], models, revisions,
                         GenerationParams(**run["params"]), outputs, [], run.get("command") or "", errors,
                         run["status"] == "cancelled", dict(run["variables"] or {}),
                         int((run["options"] or {}).get("k", 3)),
                         (run["options"] or {}).get("example_selection", "random"),
                         (run["options"] or {}).get("format"))
