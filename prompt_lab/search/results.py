"""What a logged search found: its candidates by round with their dev scores and parents, and the one claim it may
make, the winner against the original on the held-out test split (paired, on the same items, with CIs and the
chance and majority baselines). Also: save the winner as a template of the visitor's own."""
from __future__ import annotations

from pathlib import Path

import yaml

from prompt_lab.errors import PromptLabError
from prompt_lab.evaluation.stats import bootstrap_ci, mcnemar_exact, verdict
from prompt_lab.prompts.templates import NAME_RE, Template, save_user_template
from prompt_lab.reporting.report import baselines, gold_of, item_choices
from prompt_lab.runlog.candidates import run_candidates, version_rows
from prompt_lab.runlog.store import connect, get_run, run_template

ALPHA = 0.05


def _side(name: str, rows: dict[int, dict], indexes: list[int]) -> dict:
    scores = [float(rows[i]["score"] or 0) for i in indexes]
    low, high = bootstrap_ci(scores)
    return {"name": name, "score": sum(scores) / len(scores) if scores else None, "ci": [low, high],
            "n": len(scores), "correct": sum(1 for s in scores if s >= 1)}


def _test_result(db, run: dict, original: dict, winner: dict | None, number: int | None,
                 template: Template) -> dict | None:
    """The test split's comparison: both sides on the items both were scored on (by item, never by position)."""
    indexes = run["options"].get("test") or []
    orig_rows = version_rows(db, run["id"], original["template_hash"], indexes)
    if not orig_rows:
        return None
    win_rows = version_rows(db, run["id"], winner["template_hash"], indexes) if winner else {}
    shared = [i for i in indexes if i in orig_rows and (not winner or i in win_rows)]
    first = [orig_rows[i] for i in shared]
    out = {"items": len(shared), "original": _side("original", orig_rows, shared),
           "baselines": baselines([gold_of(r) for r in first], [item_choices(r, template.choices) for r in first])}
    if winner is None:
        out.update(winner=None, paired=None, p_value=None)
        return out
    out["winner"] = {**_side(f"candidate {number}", win_rows, shared), "candidate": number}
    paired = mcnemar_exact([float(win_rows[i]["score"] or 0) >= 1 for i in shared],
                           [float(orig_rows[i]["score"] or 0) >= 1 for i in shared])
    out.update(paired={"winner_only": paired["only_a"], "original_only": paired["only_b"], "both": paired["both"],
                       "neither": paired["neither"]}, p_value=paired["p_value"])
    return out


def verdict_words(result: dict) -> str:
    """The search's conclusion in words, from the test split alone (dev only says what was tried)."""
    test, original, winner = result["test"], result["original"], result["winner"]
    if test is None:
        return "Not tested yet: the search stopped before its test split was scored (resume it to finish)."
    n = test["items"]
    if winner is None:
        return (f"No candidate could be scored on dev (see the reasons), so nothing was tested against the original; "
                f"the original scores {test['original']['score']:.0%} on the {n} held-out test items.")
    w, o, p = test["winner"]["score"], test["original"]["score"], test["p_value"]
    gain = (winner["dev_score"] or 0) - (original["dev_score"] or 0)
    dev = (f"On dev, candidate {winner['id']} scored {winner['dev_score']:.0%} against the original's "
           f"{original['dev_score']:.0%}" + ("" if gain > 0 else " (no candidate beat the original on dev)") + ". ")
    words = verdict(f"candidate {winner['id']}", "the original", w, o, p, ALPHA)
    test_words = words[0].lower() + words[1:]
    if p < ALPHA and w > o:
        ending = f"On the {n} held-out test items no choice was made on, {test_words}"
    elif p < ALPHA:
        ending = f"On the {n} held-out test items it is worse: {test_words} Keep the original."
    else:
        ending = (f"On the {n} held-out test items it does not beat the original: {test_words} The search found no "
                  "prompt shown to be better; a dev gain alone is not evidence.")
    return dev + ending


def search_result(run_id: int, db_path: str | Path | None = None) -> dict:
    """A search run as plain data: the `candidates` (id, round, text, parent, status, reason, dev score), the
    `winner`, the budget used, and `test`: the winner against the original on the held-out split, with `verdict`."""
    with connect(db_path) as db:
        run = get_run(db, int(run_id))
        if run is None or run["kind"] != "search":
            raise PromptLabError(f"run {run_id} is not a search run in the run log")
        rows = run_candidates(db, run["id"])
        if not rows:
            raise PromptLabError(f"search run {run_id} has no candidates logged yet")
        template = run_template(db, run)
        options, spec = run["options"], run["params"]
        original = next(c for c in rows if c["round"] == 0)
        by_id = {c["id"]: c for c in rows}
        winner = by_id.get(options.get("winner"))
        number = {c["id"]: n for n, c in enumerate(rows, 1)}  # a search's candidates are numbered 1, 2, ... in its run
        test = _test_result(db, run, original, winner, number[winner["id"]] if winner else None, template)
    candidates = [{"id": number[c["id"]], "round": c["round"], "text": c["text"], "parent": number.get(c["parent_id"]),
                   "status": c["status"], "reason": c["reason"], "dev_score": c["dev_score"], "dev_n": c["dev_n"],
                   "test_score": c["test_score"], "calls": c["calls"], "seconds": c["seconds"],
                   "template_hash": c["template_hash"]} for c in rows]
    calls = sum(c["calls"] or 0 for c in rows)
    seconds = sum(c["seconds"] or 0 for c in rows)
    result = {"run_id": run["id"], "name": spec.get("name"), "status": run["status"], "template": run["template_name"],
              "dataset": options.get("dataset"), "model": spec.get("model"), "proposer": spec.get("proposer"),
              "method": options.get("method"), "metric": options.get("metric"), "strategy": spec.get("strategy"),
              "split": {"seed": spec.get("seed"), "dev": len(options.get("dev") or []),
                        "test": len(options.get("test") or [])},
              "budget": {"rounds": spec.get("rounds"), "candidates": spec.get("candidates"),
                         "max_calls": spec.get("max_calls"), "max_minutes": spec.get("max_minutes"),
                         "calls_used": calls, "minutes_used": round(seconds / 60, 2),
                         "stopped_by": options.get("stopped_by")},
              "candidates": candidates, "original": next(c for c in candidates if c["round"] == 0),
              "winner": next((c for c in candidates if winner and c["id"] == number[winner["id"]]), None),
              "test": test}
    result["verdict"] = verdict_words(result)
    return result


def default_winner_name(result: dict) -> str:
    return f"{result['template']}-search-{result['run_id']}"[:64]


def save_winner(run_id: int, name: str | None = None, db_path: str | Path | None = None) -> Template:
    """Save the search's winner as a template of the visitor's own (the original with the winning instruction),
    under `name` (default: <template>-search-<run id>); the run log keeps its exact version already."""
    result = search_result(run_id, db_path)
    winner = result["winner"]
    if winner is None:
        raise PromptLabError(f"search run {run_id} has no winner to save: no candidate was scored")
    name = (name or default_winner_name(result)).strip()
    if not NAME_RE.fullmatch(name):
        raise PromptLabError(f"The template name {name!r} is not allowed: use 1-64 lowercase letters, digits, - and _ "
                             "(e.g. sentiment-v2)")
    with connect(db_path) as db:
        template = run_template(db, {"id": run_id, "template_hash": winner["template_hash"]})
    data = template.to_dict()
    test = result["test"]
    found = (f" (test: {test['winner']['score']:.0%} vs the original's {test['original']['score']:.0%} on "
             f"{test['items']} held-out items, p = {test['p_value']:.2g})") if test and test.get("winner") else ""
    data.update(name=name, description=(f"{template.description} " if template.description else "") +
                f"Instruction found by prompt search run {run_id}{found}.")
    return save_user_template(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))


def _pct(value) -> str:
    return "  -  " if value is None else f"{value:4.0%}"


def search_lines(result: dict) -> list[str]:
    """A search as the CLI prints it: what ran, every candidate by round, the budget, the test and the verdict."""
    split, budget = result["split"], result["budget"]
    lines = [f"search run {result['run_id']} ({result['status']}): template {result['template']} on "
             f"{result['dataset']}, model {result['model']}, proposer {result['proposer']}, {result['method']}; "
             f"dev {split['dev']} / test {split['test']} items (seed {split['seed']})", "",
             " round     #  dev   from  instruction"]
    for c in result["candidates"]:
        origin = "orig" if c["parent"] is None else f"#{c['parent']}"
        flat = " ".join(c["text"].split())
        shown = flat if len(flat) <= 90 else flat[:89] + "…"
        note = f"  [{c['status']}: {c['reason']}]" if c["reason"] else ""
        mark = " <- winner" if result["winner"] and c["id"] == result["winner"]["id"] else ""
        lines.append(f" {c['round']:>5} {c['id']:>5} {_pct(c['dev_score'])} {origin:>6}  {shown}{note}{mark}")
    stop = f"; stopped by {budget['stopped_by']}" if budget["stopped_by"] else ""
    lines += ["", f"budget: {budget['calls_used']} of {budget['max_calls']} model calls, {budget['minutes_used']:.1f} "
                  f"of {budget['max_minutes']:g} minutes{stop}"]
    test = result["test"]
    if test:
        o = test["original"]
        sides = [f"original {o['score']:.0%} [{o['ci'][0]:.0%}, {o['ci'][1]:.0%}]"]
        if test.get("winner"):
            w = test["winner"]
            sides.insert(0, f"{w['name']} {w['score']:.0%} [{w['ci'][0]:.0%}, {w['ci'][1]:.0%}]")
        lines.append(f"test ({test['items']} held-out items): {' vs '.join(sides)}" + (
            f"; only the winner right on {test['paired']['winner_only']}, only the original on "
            f"{test['paired']['original_only']}, p = {test['p_value']:.2g} (exact McNemar)" if test.get("paired") else ""))
        base = test["baselines"]
        if base.get("majority") is not None:
            lines.append(f"baselines on the test items: majority class ({base['majority_label']}) "
                         f"{base['majority']:.0%}" + (f", chance {base['chance']:.0%}" if base.get("chance") else ""))
    lines += ["", result["verdict"]]
    return lines
