"""Ensembles of evaluation conditions: several conditions of one run combined on the items they all answered
(matched by content, as paired tests match them), reported beside the best single member with the exact McNemar
test between the two.

The rules, in one place:
- A member's answer to an item is the answer the run's report scores for it: its one answer, or, when it drew
  several samples (self-consistency), its own majority vote over them. So a member's accuracy here is its report
  accuracy on the shared items.
- `vote`: a majority vote over the members' extracted answers, grouped by scoring.answer_key (as self-consistency
  votes are: '10' and '10.0' are one vote). An invalid extraction (None) never votes. A tie goes to the tied answer
  with the highest probability summed over the members when every member logged label probabilities, else (or if
  still tied) to the tied answer of the earliest member in member order (the report's condition order, or the order
  given). An item no member answered has no ensemble answer and counts as wrong.
- `probs` (label_probs runs only): each label's probability averaged over the members; the highest mean wins, a tie
  going to the label the first member lists first.
- Right and wrong are judged by scoring.is_correct, the rule every report uses.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from prompt_lab.answers.scoring import CORRECTNESS_METRICS, answer_key, is_correct
from prompt_lab.errors import PromptLabError
from prompt_lab.evaluation import stats
from prompt_lab.prompts.templates import Template
from prompt_lab.reporting.report import (CONDITION_COLUMNS, baselines, gold_of, item_choices, item_keys, paired_test,
                                         run_report)
from prompt_lab.reporting.summary import majority_verdict
from prompt_lab.reporting.text import pct
from prompt_lab.runlog import Database
from prompt_lab.runlog.queries import eval_generations
from prompt_lab.runlog.store import connect, get_run, run_template

HOWS = {"vote": "majority vote over extracted answers", "probs": "mean label probabilities"}
# run_report's names for the logged condition columns (the others keep the column's name)
_REPORT_FIELD = {"model_spec": "model", "k_shot": "k"}


class EnsembleError(PromptLabError):
    """An ensemble that cannot be built; the message says why in plain words."""


@dataclass
class Member:
    """One condition's answers per item (by item key, in the run's item order)."""
    label: str
    answers: dict[str, str | None]  # the answer the report scores (None: no valid answer)
    gold: dict[str, object]  # every acceptable gold answer, or the one target
    target: dict[str, str | None]  # the primary gold answer (for the majority-class baseline)
    choices: dict[str, list[str] | None] = field(default_factory=dict)  # each item's answer choices, if any
    probs: dict[str, dict[str, float]] | None = None  # label probabilities; None when not every item has them


@dataclass
class Ensemble:
    run_id: int
    how: str  # vote or probs
    members: list[str]  # member labels, in member order (the vote's tie order)
    item_key: list[str]  # the items every member answered, by content
    answers: list[str | None]  # the ensemble's answer per item (None: no member answered it)
    correct: list[int]
    accuracy: float
    ci: list[float]
    no_answer: int  # items no member answered (counted wrong)
    ties: int  # items where the vote was tied (see ties_by_probs for what broke the ties)
    member_scores: list[dict]  # per member: label, accuracy, ci, correct (on the shared items)
    best: dict  # the member with the highest accuracy (the first of equals)
    test: dict  # report.paired_test(ensemble, best)
    baseline: dict = field(default_factory=dict)  # chance, majority, majority_label, note
    mean_probs: list[dict[str, float]] | None = None  # probs: the averaged probabilities per item
    ties_by_probs: bool = False  # vote: ties went to the highest summed probability (else to member order)

    @property
    def name(self) -> str:
        return ensemble_name(self.how, len(self.members))


def ensemble_name(how: str, size: int) -> str:
    return f"ensemble ({'vote' if how == 'vote' else 'mean probabilities'} of {size})"


def _check_how(how: str) -> None:
    if how not in HOWS:
        raise EnsembleError(f"unknown ensemble method '{how}': use vote (majority of extracted answers) or probs "
                            "(mean label probabilities)")


def member_from_rows(label: str, rows: list[dict], template: Template) -> Member:
    """A condition's logged rows (item then sample order) as a Member: per item the report's answer (the vote of its
    samples; one sample is its own vote), gold, choices and label probabilities."""
    by_item: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_item[row["item_index"]].append(row)
    groups = [by_item[i] for i in sorted(by_item)]
    keys = item_keys([g[0] for g in groups])
    key = lambda answer: answer_key(template, answer)  # noqa: E731
    member = Member(label, {}, {}, {})
    probs = {}
    for k, group in zip(keys, groups):
        first = group[0]
        member.answers[k] = stats.majority_vote([r["answer"] for r in group], key)[0]
        member.gold[k], member.target[k] = gold_of(first), first["target"]
        member.choices[k] = item_choices(first, template.choices)
        if first.get("label_probs_json"):
            probs[k] = json.loads(first["label_probs_json"])
    member.probs = probs if len(probs) == len(keys) else None
    return member


def vote(answers: list[str | None], template: Template,
         probs: list[dict[str, float]] | None = None) -> tuple[str | None, bool]:
    """The majority of the valid answers (None never votes) and whether the top was tied. A tie goes to the tied
    answer with the highest summed probability when `probs` (each member's label probabilities) are given, else (or
    if still tied) to the earliest member's answer. (None, False) when no member answered."""
    key = lambda answer: answer_key(template, answer)  # noqa: E731
    counts = Counter(key(a) for a in answers if a is not None)  # in member order: the first of equals is earliest
    most = max(counts.values(), default=0)
    tied = [k for k, c in counts.items() if c == most]
    if len(tied) > 1 and probs is not None:
        summed = {k: sum(float(p) for member in probs for label, p in member.items() if key(label) == k) for k in tied}
        top = max(summed.values())
        winner = next(k for k in tied if summed[k] == top)
        return next(a for a in answers if a is not None and key(a) == winner), True
    return stats.majority_vote(answers, key)[0], len(tied) > 1


def mean_probs(probs: list[dict[str, float]], template: Template) -> tuple[str, dict[str, float]]:
    """Each label's probability averaged over the members (a label one member lacks counts 0 there), labels
    grouped by answer_key and named by their first spelling; the top label (the first listed of equals)."""
    totals: dict = {}
    spelling: dict = {}
    for member in probs:
        for label, p in member.items():
            k = answer_key(template, label)
            spelling.setdefault(k, label)
            totals[k] = totals.get(k, 0.0) + float(p)
    mean = {spelling[k]: total / len(probs) for k, total in totals.items()}
    return max(mean, key=mean.__getitem__), mean


def _scored(label: str, correct: list[int], keys: list[str]) -> dict:
    accuracy = sum(correct) / len(correct)
    return {"label": label, "accuracy": accuracy, "ci": list(stats.bootstrap_ci(correct)), "correct": correct,
            "item_key": keys}


def combine(run_id: int, members: list[Member], template: Template, metric: str, how: str = "vote") -> Ensemble:
    """Combine members on the items all of them answered (the first member's item order)."""
    _check_how(how)
    if len(members) < 2:
        raise EnsembleError(f"an ensemble needs at least 2 conditions, got {len(members)}")
    if metric not in CORRECTNESS_METRICS:
        raise EnsembleError(f"run {run_id} is scored by {metric}, which has no right or wrong answer per item to "
                            f"vote on; ensembles need one of {', '.join(CORRECTNESS_METRICS)}")
    keys = [k for k in members[0].answers if all(k in m.answers for m in members[1:])]
    if not keys:
        sizes = ", ".join(f"{m.label} ({len(m.answers)})" for m in members)
        raise EnsembleError(f"the members share no items (matched by inputs and gold answer): {sizes}; combine "
                            "conditions that answered the same items")
    without = [m.label for m in members if m.probs is None]
    if how == "probs" and without:
        raise EnsembleError(f"averaging label probabilities needs them for every item of every member, and "
                            f"{', '.join(without)} ha{'s' if len(without) == 1 else 've'} none (method generate "
                            "logs none; evaluate with method label_probs, or use --how vote)")
    gold = members[0].gold
    averaged = None
    if how == "vote":
        have_probs = all(m.probs is not None for m in members)  # then they break ties
        votes = [vote([m.answers[k] for m in members], template, [m.probs[k] for m in members] if have_probs else None)
                 for k in keys]
        answers, ties = [v[0] for v in votes], sum(v[1] for v in votes)
    else:
        tops = [mean_probs([m.probs[k] for m in members], template) for k in keys]
        answers, averaged, ties = [t[0] for t in tops], [t[1] for t in tops], 0
    correct = [int(is_correct(template, metric, a, gold[k])) for a, k in zip(answers, keys)]
    scores = [_scored(m.label, [int(is_correct(template, metric, m.answers[k], gold[k])) for k in keys], keys)
              for m in members]
    best = max(scores, key=lambda s: s["accuracy"])  # max() keeps the first of equals: member order
    ours = _scored(ensemble_name(how, len(members)), correct, keys)
    test = paired_test(ours, best)
    return Ensemble(run_id, how, [m.label for m in members], keys, answers, correct, ours["accuracy"], ours["ci"],
                    sum(a is None for a in answers), ties, scores, best, test,
                    _baseline(members[0], keys, metric, ours), averaged,
                    how == "vote" and all(m.probs is not None for m in members))


def _baseline(first: Member, keys: list[str], metric: str, ours: dict) -> dict:
    """Chance and majority-class rates of the shared items (accuracy metric: a gold answer is a class)."""
    if metric != "accuracy":
        return {"chance": None, "majority": None, "majority_label": None, "note": ""}
    rates = baselines([first.target[k] for k in keys], [first.choices.get(k) for k in keys])
    _, note = majority_verdict(ours["accuracy"], *ours["ci"], rates["majority"], rates["majority_label"])
    return {**rates, "note": note}


def _members_of(report: dict, rows: list[dict], chosen: list[dict], template: Template) -> list[Member]:
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[tuple(row.get(c) for c in CONDITION_COLUMNS)].append(row)
    members = []
    for condition in chosen:
        mine = grouped.get(tuple(condition.get(_REPORT_FIELD.get(c, c)) for c in CONDITION_COLUMNS), [])
        if condition.get("template_hash"):  # a run with prompt variants: a condition is also a template version
            mine = [r for r in mine if r.get("template_hash") == condition["template_hash"]]
        if len(mine) != condition["generations"]:  # the report grouped rows another way: never mix conditions
            raise PromptLabError(f"run {report['run_id']}: the rows of '{condition['label']}' could not be told "
                                 "apart from other conditions' (reporting.report grouped them by other columns)")
        members.append(member_from_rows(condition["label"], mine, template))
    return members


def choose(report: dict, members: list[str] | None = None, strategies: list[str] | None = None,
           models: list[str] | None = None, variants: list[str] | None = None) -> list[dict]:
    """The report's conditions to combine: those labelled `members` (in that order), else those matching the
    strategy, model and prompt-variant filters, else all of them. Refuses unknown labels and fewer than two members
    in words."""
    conditions = report["conditions"]
    labels = [c["label"] for c in conditions]
    allowed = "; ".join(f"'{label}'" for label in labels)
    if members:
        unknown = [m for m in members if m not in labels]
        if unknown:
            raise EnsembleError(f"run {report['run_id']} has no condition {', '.join(repr(u) for u in unknown)}; its "
                                f"conditions are {allowed}")
        repeated = sorted({m for m in members if members.count(m) > 1})
        if repeated:
            raise EnsembleError(f"{', '.join(repr(r) for r in repeated)} listed twice: a member votes once")
        chosen = [conditions[labels.index(m)] for m in members]
    else:
        chosen = [c for c in conditions if (not strategies or c["strategy"] in strategies)
                  and (not models or c["model"] in models) and (not variants or c.get("variant") in variants)]
    if len(chosen) < 2:
        which = "you named" if members else ("match the filters" if strategies or models or variants else
                                             "the run has")
        raise EnsembleError(f"an ensemble needs at least 2 conditions, and {len(chosen)} {which} (run "
                            f"{report['run_id']}'s conditions: {allowed})")
    return chosen


def ensemble(run_id: int, how: str = "vote", members: list[str] | None = None, *, strategies: list[str] | None = None,
             models: list[str] | None = None, variants: list[str] | None = None, db: Database | None = None,
             db_path: str | Path | None = None) -> Ensemble:
    """The ensemble of conditions of one evaluation run (all of them by default; or the labelled `members`, or
    those of the given strategies/models/prompt variants), beside its best single member, with the paired test
    between them."""
    _check_how(how)
    if db is None:
        with connect(db_path) as own:
            return ensemble(run_id, how, members, strategies=strategies, models=models, variants=variants, db=own)
    report = run_report(db, int(run_id))
    chosen = choose(report, members, strategies, models, variants)
    template = run_template(db, get_run(db, int(run_id)))
    found = _members_of(report, eval_generations(db, int(run_id)), chosen, template)
    return combine(int(run_id), found, template, report["metric"], how)


def ensemble_json(result: Ensemble) -> dict:
    """`ensemble --json`: the ensemble, the best single member and the paired test between them."""
    t = result.test
    return {"run_id": result.run_id, "how": result.how, "members": result.members,
            "ensemble": {"label": result.name, "accuracy": result.accuracy, "ci": result.ci,
                         "n": len(result.item_key), "no_answer": result.no_answer, "ties": result.ties,
                         "ties_by": ("summed probability" if result.ties_by_probs else "member order")
                         if result.how == "vote" else None,
                         **result.baseline},
            "best_single": {k: result.best[k] for k in ("label", "accuracy", "ci")},
            "member_scores": [{k: s[k] for k in ("label", "accuracy", "ci")} for s in result.member_scores],
            "test": {"p_value": t["p_value"], "verdict": t["verdict"], "n": t["n"], "only_ensemble": t["only_a"],
                     "only_best": t["only_b"], "both": t["both"], "neither": t["neither"],
                     "difference": t["difference"], "difference_ci": t["difference_ci"]},
            "note": SELECTION_NOTE}


SELECTION_NOTE = ("the best single condition is picked on these same items, so its accuracy is optimistic: "
                  "a win for the ensemble is conservative, a loss may be overstated")


def ensemble_lines(result: Ensemble) -> list[str]:
    """The lines `ensemble` prints: the ensemble row, each member's row (the best marked), the verdict."""
    t = result.test
    row = lambda name, acc, ci: f"{name:<40} {pct(acc)} [{pct(ci[0])}, {pct(ci[1])}]"  # noqa: E731
    broken = "summed probability" if result.ties_by_probs else "member order"
    counts = f"  no answer {result.no_answer}, ties {result.ties} (broken by {broken})" if result.how == "vote" else ""
    lines = [f"run {result.run_id} · ensemble of {len(result.members)} conditions by {HOWS[result.how]} · "
             f"{len(result.item_key)} items all of them answered (matched by content)",
             f"{'condition':<40} accuracy [95% CI]", row(result.name, result.accuracy, result.ci) + counts]
    if result.baseline.get("note"):
        lines.append(f"    baseline: {result.baseline['note']}")
    for s in result.member_scores:
        lines.append(row(s["label"], s["accuracy"], s["ci"]) + ("  best single" if s is result.best else ""))
    lines += [f"paired test: {t['verdict']} (exact McNemar on {t['n']} items, {t['only_a']} right only with the "
              f"ensemble, {t['only_b']} only with {result.best['label']})", f"note: {SELECTION_NOTE}"]
    return lines


def print_ensemble(run_id: int, how: str = "vote", members: list[str] | None = None, as_json: bool = False) -> int:
    """`python -m prompt_lab ensemble`: print the lines, or the JSON, of a run's ensemble (here rather than in
    cli.py, which is at its size limit); returns the exit status."""
    result = ensemble(run_id, how, members)
    print(json.dumps(ensemble_json(result), indent=2, ensure_ascii=False) if as_json else
          "\n".join(ensemble_lines(result)))
    return 0
