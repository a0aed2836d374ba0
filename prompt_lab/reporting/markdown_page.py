"""A Report as a Markdown summary that pastes into an issue or a pull request: what was run, the headline table with
95% CIs and baselines, the verdicts, the run ids and the CLI lines. No charts and no samples (the HTML report has
them). The figures are formatted as `eval` prints them (reporting.text), so the two always agree."""
from __future__ import annotations

import re

from prompt_lab.reporting.facts import Report, RunFacts, pair_command
from prompt_lab.reporting.summary import EvalReport
from prompt_lab.reporting.text import pct

SPECIAL = re.compile(r"([\\`*\[\]|~])")  # `_` stays: intraword underscores are not emphasis


def md(value) -> str:
    """Text safe in a Markdown line or table cell: no HTML, links, emphasis or cell breaks from visitor input."""
    text = " ".join(str("" if value is None else value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return SPECIAL.sub(r"\\\1", text)


def code(value) -> str:
    """An inline code span that holds any text (a fence longer than its longest run of backticks)."""
    text = " ".join(str("" if value is None else value).split())
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(headers: list[str], rows: list[list[str]], right: int = 1) -> list[str]:
    lines = [_row(headers), _row(["---"] * right + ["---:"] * (len(headers) - right))]
    return lines + [_row(r) for r in rows]


def _run_lines(run: RunFacts) -> list[str]:
    models = ", ".join(code(m.spec) + (f" (revision {code(m.revision)})" if m.revision else "") for m in run.models)
    lines = [f"- **Run {run.run_id}** ({md(run.kind)}, {md(run.status)}): template {code(run.template)} version "
             f"{code(run.template_hash)}; strategies {md(', '.join(run.strategies))}; models {models}"]
    if run.kind == "eval":
        lines.append(f"  - dataset {code(run.dataset)}, {md(run.dataset_items)} items, hash {code(run.dataset_hash)}; "
                     f"{md(run.method)}, metric {md(run.metric)}")
    lines.append(f"  - decoding: {md(' · '.join(f'{k} {v}' for k, v in run.decoding.items()))}")
    lines += [f"  - input {md(k)}: {md(v[:200] if isinstance(v, str) else v)}" for k, v in run.variables.items()]
    return lines


def headline(ev: EvalReport) -> list[str]:
    """The rows `eval` prints (reporting.text.report_lines), as a Markdown table with the same labels and figures."""
    if not ev.rows:
        return [f"Run {ev.run_id} has no scored items yet ({md(ev.status)})."]
    if ev.rows[0].kind == "accuracy":
        rows = [[md(r.condition), f"{pct(r.value).strip()} [{pct(r.ci_low).strip()}, "
                 f"{pct(r.ci_high).strip()}]", pct(r.strict).strip(), pct(r.chance).strip(), pct(r.majority).strip(),
                 str(r.no_answer), str(r.wrong), f"{r.tokens:.1f}", f"{r.latency_s:.2f}s"] for r in ev.rows]
        return _table(["condition", "accuracy [95% CI]", "strict", "chance", "majority", "no answer", "wrong",
                       "tokens", "latency"], rows)
    rows = [[md(r.condition), f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]",
             md(", ".join(f"{k} {v:.3f}" if v <= 1 else f"{k} {v:.1f}" for k, v in (r.corpus or {}).items())),
             f"{r.tokens:.1f}"] for r in ev.rows]
    return _table(["condition", f"mean item {md(ev.metric)} [95% CI]", "corpus", "tokens"], rows)


def _pairs(report: Report) -> list[str]:
    lines = []
    for p in report.pairs.pairs:
        t = p.test
        lines.append(f"- A: {md(p.a.describe())}; B: {md(p.b.describe())}")
        if t is None:
            lines.append(f"  - {md(p.note)}")
            continue
        lines += [f"  - paired items: {t.n}; accuracy A {pct(t.accuracy_a).strip()} [{pct(t.ci_a[0]).strip()}, "
                  f"{pct(t.ci_a[1]).strip()}] · B {pct(t.accuracy_b).strip()} [{pct(t.ci_b[0]).strip()}, "
                  f"{pct(t.ci_b[1]).strip()}]",
                  f"  - difference A - B {100 * t.difference:+.1f} points [{100 * t.difference_ci[0]:+.1f}, "
                  f"{100 * t.difference_ci[1]:+.1f}] · exact McNemar p = {t.p_value:.3g}"]
    return lines


def _compare(report: Report) -> list[str]:
    rows = [[md(report.names.get(s.run_id, {}).get(s.condition, s.condition)),
             code(s.answer) if s.answer is not None else "(no answer)", md(s.output[:120]) + ("…" if len(s.output) > 120
                                                                                             else ""),
             str(s.tokens), f"{(s.latency_ms or 0) / 1000:.2f}s"] for s in report.samples]
    return _table(["strategy · model", "answer", "output (start)", "tokens", "latency"], rows, right=3)


def summary(report: Report) -> str:
    """The Markdown text of a report."""
    lines = [f"### {md(report.title)}", ""]
    if report.kind == "compare":
        lines += _compare(report) + [""]
    for ev in report.evals:
        if len(report.evals) > 1:
            lines += [f"**Run {ev.run_id}**", ""]
        lines += headline(ev) + [""]
    if report.pairs is not None:
        lines += [f"**Runs {report.pairs.run_a} and {report.pairs.run_b}**: {report.pairs.paired} items with the same "
                  "inputs and gold answer in both (paired by content, not position)", ""] + _pairs(report) + [""]
    if report.verdicts:
        lines += ["**Verdict**", ""] + [f"- {md(str(v))}" for v in report.verdicts] + [""]
    if report.notes:
        lines += ["**Notes**", ""] + [f"- {md(n)}" for n in report.notes] + [""]
    if report.tune is not None:
        t = report.tune
        metrics = ", ".join(f"{md(k)} {v:.4g}" if isinstance(v, float) else f"{md(k)} {md(v)}"
                            for k, v in t.metrics.items())
        lines += [f"**Training**: job {t.job_id} {code(t.name)} ({md(t.status)}), {md(t.spec.get('method'))} on "
                  f"{code(t.spec.get('model'))}; {metrics}", ""]
    lines += ["**What was run**", ""]
    for run in report.runs:
        lines += _run_lines(run)
    lines += ["", f"**Run ids**: {', '.join(map(str, report.run_ids))}", ""]
    lines += [f"- repeat run {r.run_id}: {code(r.repeat)}" + (f" ({md(r.spec_file_name)} is in the HTML report)"
                                                              if r.spec_file and r.repeat.endswith(r.spec_file_name)
                                                              else "") for r in report.runs if r.repeat]
    if report.kind == "pair":
        lines.append(f"- the paired tests: {code(pair_command(report))}")
    lines.append(f"- this report: {code(report.report_command)} (or `--format md`)")
    return "\n".join(lines) + "\n"
