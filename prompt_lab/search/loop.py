"""search(): propose instructions, score them on dev, keep the best few, repeat; then test the winner once.

The dataset is split (seeded, by content) into dev and test. Round 0 scores the template's own instruction on dev.
Each later round asks the proposer for new instructions, each written from one of the best few so far and shown
some dev items that one got wrong; every candidate is scored on dev (label probabilities where the task has
choices). When the rounds or a budget (model calls, wall time) run out, the best candidate and the original are
scored once on the test split, which no choice was made on: only that comparison may claim a gain.

Every proposal (the proposer's prompt and reply as a generation row, the candidate with its parent and reason) and
every scored item is logged as it happens, so Stop loses at most a batch and resume_search() continues the run.
"""
from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from prompt_lab.errors import CancelledError, PromptLabError, TemplateError
from prompt_lab.evaluation.datasets import Item
from prompt_lab.evaluation.evaluate import Plan, plan, score_batch
from prompt_lab.models import GenerationParams, get_backend, resolve
from prompt_lab.models.base import ProgressFn
from prompt_lab.models.registry import is_local_spec
from prompt_lab.prompts.templates import Template, get_template
from prompt_lab.prompts.variants import build_variants
from prompt_lab.runlog.candidates import add_candidate, run_candidates, score_candidate, test_candidate, version_rows
from prompt_lab.runlog.store import (connect, finishing, log_generations, reopen_run, resumable_run, run_template,
                                     save_template_version, start_run, update_run_options)
from prompt_lab.search.proposals import Failure, clean_proposal, proposal_prompt
from prompt_lab.search.spec import SearchError, SearchSpec, split_items
from prompt_lab.settings import get_settings

ATTEMPTS_PER_CANDIDATE = 3  # a refused proposal (a repeat, no instruction) is asked again, up to this many times


def search_method(spec: SearchSpec, template: Template) -> str:
    """label_probs when the task has answer choices and the scored model is local (fast, no parsing), else
    generate; the spec's own method when it names one."""
    if spec.method:
        return spec.method
    return "label_probs" if template.choices and is_local_spec(spec.model) else "generate"


@dataclass
class _Search:
    run_id: int
    spec: SearchSpec
    plan: Plan
    dev: list[Item]
    test: list[Item]
    db_path: str | Path | None
    progress: ProgressFn | None
    cancel: threading.Event | None
    done: int = 0  # items scored in this session, for the progress bar

    @property
    def condition(self) -> tuple[str, str, int, int]:
        k = self.spec.k_shot if self.spec.strategy == "few_shot" else 0
        return self.spec.strategy, self.spec.model, k, 0

    def say(self, message: str) -> None:
        if self.progress:
            total = (1 + self.spec.rounds * self.spec.candidates) * len(self.dev) + 2 * len(self.test)
            self.progress(min(0.99, self.done / max(total, 1)), message)

    def stopped(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise CancelledError("search stopped")


def search(spec: SearchSpec, *, template: Template | None = None, db_path: str | Path | None = None,
           progress: ProgressFn | None = None, cancel: threading.Event | None = None, command: str = "") -> int:
    """Run a prompt search; returns its run id (kind `search`). `template`: the template already loaded (the app's),
    instead of spec.template looked up by name or path."""
    spec.validate()
    template = template or get_template(spec.template)
    method = search_method(spec, template)
    p = plan(spec.eval_spec(method), template)
    dev, test = split_items(p.items, spec.dev_fraction, spec.seed)
    resolve(spec.proposer)  # a bad proposer spec fails now, before a run row is written
    options = {"dataset": Path(spec.dataset).name, "dataset_hash": p.dataset_hash, "items": len(p.items),
               "metric": p.metric, "method": method, "spec_hash": spec.spec_hash, "warnings": p.warnings,
               "dev": [i.index for i in dev], "test": [i.index for i in test]}
    with connect(db_path) as db:
        save_template_version(db, template.name, template.content_hash, template.to_yaml())
        run_id = start_run(db, kind="search", template_name=template.name, template_hash=template.content_hash,
                           models=[spec.model], strategies=[spec.strategy], params=spec.to_dict(), options=options,
                           command=command)
    return _execute(_Search(run_id, spec, p, dev, test, db_path, progress, cancel))


def resume_search(run_id: int, *, db_path: str | Path | None = None, progress: ProgressFn | None = None,
                  cancel: threading.Event | None = None) -> int:
    """Continue a search that was stopped or interrupted: logged candidates and scored items are kept, a round
    cut short gets its remaining proposals, and the test runs at the end as it would have."""
    with connect(db_path) as db:
        run = resumable_run(db, run_id, "search", "search")
        spec = SearchSpec(**run["params"])
        template = run_template(db, run)
        p = plan(spec.eval_spec(run["options"]["method"]), template)
        if p.dataset_hash != run["options"].get("dataset_hash"):
            raise PromptLabError(f"{Path(spec.dataset).name} changed since run {run_id} started; resuming would "
                                 "mix two datasets. Start a new search instead.")
        by_index = {i.index: i for i in p.items}
        dev = [by_index[i] for i in run["options"]["dev"]]
        test = [by_index[i] for i in run["options"]["test"]]
        reopen_run(db, int(run_id))
    return _execute(_Search(int(run_id), spec, p, dev, test, db_path, progress, cancel))


def _version(db, s: _Search, candidate: dict) -> Template:
    return run_template(db, {"id": s.run_id, "template_hash": candidate["template_hash"]})


def _score(db, s: _Search, candidate: dict, items: list[Item], scorer) -> tuple[float, int, int]:
    """Score a candidate's template on items (those not logged yet); (mean score, items, items scored now)."""
    version = replace(s.plan, template=_version(db, s, candidate))
    logged = version_rows(db, s.run_id, candidate["template_hash"], [i.index for i in items])
    pending = [i for i in items if i.index not in logged]
    for start in range(0, len(pending), s.spec.batch_size):
        s.stopped()
        batch = pending[start:start + s.spec.batch_size]
        log_generations(db, s.run_id, score_batch(version, scorer, s.condition, batch, s.cancel))
        s.done += len(batch)
        s.say(f"round {candidate['round']}: scoring candidate {candidate['id']} "
              f"({len(logged) + start + len(batch)}/{len(items)} items)")
    rows = version_rows(db, s.run_id, candidate["template_hash"], [i.index for i in items])
    return sum(float(r["score"] or 0) for r in rows.values()) / max(len(rows), 1), len(rows), len(pending)


def _spent(candidates: list[dict]) -> tuple[int, float]:
    return sum(c["calls"] or 0 for c in candidates), sum(c["seconds"] or 0 for c in candidates)


def _over_budget(s: _Search, candidates: list[dict], calls_needed: int) -> str | None:
    calls, seconds = _spent(candidates)
    if calls + calls_needed > s.spec.max_calls:
        return f"model calls: {calls} used, the next step needs {calls_needed} of the {s.spec.max_calls} allowed"
    if seconds >= s.spec.max_minutes * 60:
        return f"wall time: {seconds / 60:.1f} of {s.spec.max_minutes:g} minutes used"
    return None


def _parents(candidates: list[dict], before_round: int, keep: int) -> list[dict]:
    """The best `keep` scored candidates of the rounds before (dev score, then the earlier first)."""
    scored = [c for c in candidates if c["round"] < before_round and c["status"] == "scored"]
    return sorted(scored, key=lambda c: (-c["dev_score"], c["id"]))[:keep]


def _failures(db, s: _Search, parent: dict, seed: int) -> list[Failure]:
    rows = version_rows(db, s.run_id, parent["template_hash"], [i.index for i in s.dev])
    wrong = [i for i in s.dev if i.index in rows and not (rows[i.index]["score"] or 0) >= 1]
    picked = random.Random(seed).sample(wrong, min(len(wrong), s.spec.failures_shown))
    return [Failure(i.variables, i.target or "", rows[i.index]["answer"]) for i in sorted(picked, key=lambda i: i.index)]


def _propose(db, s: _Search, proposer, parent: dict, in_round: int, attempt: int, taken: list[str]) -> int:
    """Ask the proposer for one instruction written from `parent`; log its reply and the candidate (or the
    refusal); returns the candidate's id."""
    seed = int(hashlib.sha256(f"{s.spec.seed}:{in_round}:{attempt}".encode()).hexdigest()[:8], 16)
    parent_template = _version(db, s, parent)
    item = s.dev[0]
    shown = parent_template.render("instruction", item.variables, item.choices)
    prompt = proposal_prompt(s.plan.template.description or s.plan.template.name, shown, parent["dev_score"],
                             parent["dev_n"], _failures(db, s, parent, seed), s.plan.template.choices)
    text = proposer.format_prompt(prompt)
    params, _ = GenerationParams(temperature=s.spec.proposer_temperature, top_p=0.95,
                                 max_new_tokens=s.spec.proposer_max_new_tokens, seed=seed).clamped(get_settings())
    started = time.perf_counter()
    generation = proposer.generate([text], params, cancel=s.cancel)[0][0]
    s.stopped()
    seconds = time.perf_counter() - started
    log_generations(db, s.run_id, [{"template_name": parent_template.name, "template_hash": parent["template_hash"],
                                    "strategy": "proposal", "model_spec": s.spec.proposer,
                                    "model_revision": proposer.revision, "prompt": text, "seed": seed,
                                    "params_json": json.dumps(params.to_dict()),
                                    **generation.log_fields()}])
    instruction, reason = clean_proposal(generation.text, taken)
    template_hash = ""
    if reason is None:
        try:
            built = build_variants(s.plan.template, [{"name": "candidate", "instruction": instruction}],
                                   source="proposal")[1].template
        except TemplateError as exc:
            reason = f"not a valid template instruction: {exc}"
        else:
            template_hash = built.content_hash
            save_template_version(db, built.name, template_hash, built.to_yaml())
    return add_candidate(db, s.run_id, in_round=in_round, text=instruction or generation.text.strip(),
                         parent_id=parent["id"], template_hash=template_hash,
                         status="invalid" if reason else "proposed", reason=reason, calls=1, seconds=seconds)


def _taken(db, s: _Search, candidates: list[dict]) -> list[str]:
    """The instructions a proposal must not repeat: the original as the proposer read it (rendered) first, then
    every candidate's."""
    item = s.dev[0]
    return [s.plan.template.render("instruction", item.variables, item.choices)] + [
        c["text"] for c in candidates if c["status"] != "invalid"]


def _execute(s: _Search) -> int:
    with connect(s.db_path) as db, finishing(db, s.run_id):
        scorer = get_backend(s.spec.model, s.progress)
        proposer = None
        candidates = run_candidates(db, s.run_id)
        if not candidates:
            add_candidate(db, s.run_id, in_round=0, text=s.plan.template.instruction, parent_id=None,
                          template_hash=s.plan.template.content_hash)
        stop_reason = None
        for in_round in range(0, s.spec.rounds + 1):
            while True:
                candidates = run_candidates(db, s.run_id)
                this_round = [c for c in candidates if c["round"] == in_round]
                unscored = [c for c in this_round if c["status"] == "proposed"]
                if unscored:  # a proposal is scored before the next is asked for
                    candidate = unscored[0]
                    stop_reason = _over_budget(s, candidates, len(s.dev))
                    if stop_reason:
                        break
                    started = time.perf_counter()
                    score, n, calls = _score(db, s, candidate, s.dev, scorer)
                    score_candidate(db, candidate["id"], dev_score=score, dev_n=n, calls=calls,
                                    seconds=time.perf_counter() - started)
                    best = max(c["dev_score"] or 0 for c in run_candidates(db, s.run_id) if c["status"] == "scored")
                    s.say(f"round {in_round}: candidate {candidate['id']} scored {score:.0%} on dev (best {best:.0%})")
                    continue
                valid = [c for c in this_round if c["status"] != "invalid"]
                if in_round == 0 or len(valid) >= s.spec.candidates or \
                        len(this_round) >= s.spec.candidates * ATTEMPTS_PER_CANDIDATE:
                    break
                stop_reason = _over_budget(s, candidates, 1)
                if stop_reason:
                    break
                parents = _parents(candidates, in_round, s.spec.keep)
                if not parents:
                    stop_reason = "no candidate could be scored"
                    break
                proposer = proposer or get_backend(s.spec.proposer, s.progress)
                s.say(f"round {in_round}: asking {s.spec.proposer} for candidate {len(valid) + 1}/{s.spec.candidates}")
                _propose(db, s, proposer, parents[len(this_round) % len(parents)], in_round, len(this_round),
                         _taken(db, s, candidates))
            if stop_reason:
                break
        _test(db, s, scorer, stop_reason)
    return s.run_id


def _test(db, s: _Search, scorer, stop_reason: str | None) -> None:
    """Score the best candidate (by dev) and the original once on the test split; log who the winner was."""
    candidates = run_candidates(db, s.run_id)
    original = next(c for c in candidates if c["round"] == 0)
    if original["status"] != "scored":
        raise SearchError(f"the search stopped before the original instruction was scored on dev ({stop_reason}); "
                          f"raise the budget (the dev split has {len(s.dev)} items, one model call each)")
    scored = [c for c in candidates if c["round"] > 0 and c["status"] == "scored"]
    winner = min(scored, key=lambda c: (-c["dev_score"], c["id"])) if scored else None
    update_run_options(db, s.run_id, winner=winner["id"] if winner else None, stopped_by=stop_reason)
    for candidate in [original] + ([winner] if winner else []):
        score, n, _ = _score(db, s, candidate, s.test, scorer)
        test_candidate(db, candidate["id"], test_score=score, test_n=n)
