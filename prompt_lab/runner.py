"""compare(): one template, several strategies, one model, one batched call, every generation logged."""
from __future__ import annotations

import json
import queue
import shlex
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .models import GenerationParams, get_backend
from .models.base import Generation, ProgressFn
from .scoring import extract_for
from .settings import get_settings
from .store import finishing, log_generations, open_db, save_template_version, start_run
from .strategies import STRATEGIES, build_prompts, check_strategies
from .templates import Template, get_template


@dataclass
class StrategyOutput:
    strategy: str
    prompt: str  # the exact text the model saw
    generations: list[Generation]
    answers: list[str | None]

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "prompt": self.prompt, "answers": self.answers,
                "generations": [g.to_dict() for g in self.generations]}


@dataclass
class CompareResult:
    run_id: int
    template: str
    template_hash: str
    model: str
    model_revision: str
    params: GenerationParams
    outputs: list[StrategyOutput]
    warnings: list[str] = field(default_factory=list)
    command: str = ""

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "template": self.template, "template_hash": self.template_hash,
                "model": self.model, "model_revision": self.model_revision, "params": self.params.to_dict(),
                "warnings": self.warnings, "command": self.command, "outputs": [o.to_dict() for o in self.outputs]}


def cli_command(template: str, variables: dict, strategies, model: str, params: GenerationParams, k: int) -> str:
    """The `python -m prompt_lab compare ...` line that repeats a run."""
    parts = ["python", "-m", "prompt_lab", "compare", "--template", template]
    for key, value in variables.items():
        parts += ["--var", f"{key}={value}"]
    parts += ["--strategies", *strategies, "--model", model, "--k", str(k),
              "--temperature", f"{params.temperature:g}", "--top-p", f"{params.top_p:g}",
              "--max-new-tokens", str(params.max_new_tokens), "--seed", str(params.seed), "--n", str(params.n)]
    for stop in params.stop:
        parts += ["--stop", stop]
    return shlex.join(parts)


def compare(template: str | Template, variables: dict, *, strategies=STRATEGIES, model: str = "default",
            params: GenerationParams | None = None, k: int = 3, db_path: str | Path | None = None,
            progress: ProgressFn | None = None, cancel: threading.Event | None = None,
            on_update: Callable[[list[str]], None] | None = None) -> CompareResult:
    """Render the template with each strategy, run all prompts as one batch, extract answers, log the run.

    on_update(texts) receives the text generated so far for each strategy (first sample) as tokens arrive.
    """
    template = get_template(template) if isinstance(template, str) else template
    strategies = check_strategies(strategies)
    params, warnings = (params or GenerationParams()).clamped(get_settings())
    prompts = build_prompts(template, strategies, variables, k=k, seed=params.seed)
    backend = get_backend(model, progress)
    texts = [backend.format_prompt(p) for p in prompts]
    values = {v: variables[v] for v in template.variables}
    command = cli_command(template.name, values, strategies, model, params, k)
    db = open_db(db_path)
    save_template_version(db, template.name, template.content_hash, template.to_yaml())
    run_id = start_run(db, kind="compare", template_name=template.name, template_hash=template.content_hash,
                       models=[model], strategies=strategies, params=params.to_dict(), options={"k": k},
                       variables=values, command=command)
    try:
        with finishing(db, run_id):
            results = backend.generate(texts, params, progress=progress, cancel=cancel,
                                       on_tokens=_partial_texts(backend, len(texts), params.n, on_update))
            outputs, rows = [], []
            for prompt, text, gens in zip(prompts, texts, results):
                answers = [extract_for(template, g.text).answer for g in gens]
                outputs.append(StrategyOutput(prompt.strategy, text, gens, answers))
                for gen, answer in zip(gens, answers):
                    rows.append({
                        "template_name": template.name, "template_hash": template.content_hash,
                        "strategy": prompt.strategy, "model_spec": model, "model_revision": backend.revision,
                        "variables_json": json.dumps(values, ensure_ascii=False), "prompt": text,
                        "params_json": json.dumps(params.to_dict()), "seed": params.seed,
                        "sample_index": gen.sample_index, "output": gen.text, "answer": answer,
                        "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                        "latency_ms": round(gen.latency_ms, 1), "tokens_per_s": round(gen.tokens_per_s, 2),
                        "finish_reason": gen.finish_reason,
                    })
            log_generations(db, run_id, rows)
    finally:
        db.conn.close()
    return CompareResult(run_id, template.name, template.content_hash, model, backend.revision, params, outputs,
                         warnings, command)


def _partial_texts(backend, prompts: int, n: int, on_update):
    """Turn per-step tokens of the batch into the text so far of each prompt's first sample."""
    if on_update is None:
        return None
    tokens: list[list[int]] = [[] for _ in range(prompts)]
    end_ids = getattr(backend, "_end_ids", set())

    def on_tokens(rows: list[int], new: list[int]) -> None:
        for row, token in zip(rows, new):
            if row % n == 0 and token not in end_ids:
                tokens[row // n].append(token)
        on_update([backend.tokenizer.decode(t, skip_special_tokens=True) for t in tokens])

    return on_tokens


@dataclass
class CompareEvent:
    kind: str  # progress | partial | done
    texts: list[str] | None = None
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

    threading.Thread(target=work, daemon=True, name="compare").start()
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
           k: int = 3, seed: int = 0, progress: ProgressFn | None = None) -> list[dict]:
    """The final prompt text of each strategy as the model would see it, with its token count."""
    template = get_template(template) if isinstance(template, str) else template
    prompts = build_prompts(template, strategies, variables, k=k, seed=seed)
    backend = get_backend(model, progress)
    out = []
    for prompt in prompts:
        text = backend.format_prompt(prompt)
        out.append({"strategy": prompt.strategy, "prompt": text, "tokens": backend.count_tokens(text),
                    "messages": prompt.messages, "prefill": prompt.prefill})
    return out


def rerun(run_id: int, *, db_path: str | Path | None = None, **kwargs) -> CompareResult:
    """Run a logged compare again with its exact template version and settings (a new run)."""
    from .errors import PromptLabError
    from .store import get_run, run_template

    db = open_db(db_path)
    try:
        run = get_run(db, int(run_id))
        if run is None:
            raise PromptLabError(f"there is no run {run_id} in the run log")
        if run["kind"] != "compare":
            raise PromptLabError(f"run {run_id} is a '{run['kind']}' run; only compare runs can be run again here")
        template = run_template(db, run)
    finally:
        db.conn.close()
    return compare(template, run["variables"], strategies=run["strategies"], model=run["models"][0],
                   params=GenerationParams(**run["params"]), k=int(run["options"].get("k", 3)), db_path=db_path,
                   **kwargs)
