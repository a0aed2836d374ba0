"""The parts of a report's HTML page: its stylesheet, the headline and per-class tables, the paired tests and the
sample of items. Every value a visitor controls goes through esc(); numbers use the CLI report's formats
(reporting.text.pct), so the page and `eval` print the same figures."""
from __future__ import annotations

import html

from prompt_lab.reporting.facts import Report, SampleItem
from prompt_lab.reporting.summary import EvalReport
from prompt_lab.reporting.text import pct

# What keeps a report small whatever the run: plotly.js is 4.8 MB, so the rest of the page has about 150 KB.
OUTPUT_CHARS = 800  # of each output shown in the sample
INPUT_CHARS = 400  # of each input value shown in the sample
PROMPT_CHARS = 6_000  # of each prompt shown
PROMPT_BUDGET = 30_000  # characters of prompts shown in a sample, shared by its conditions (the rest: in the log)
SAMPLE_BYTES = 90_000  # characters of sample items (HTML) in all, shared by the conditions

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--accent:#0969da;--good:#1a7f37;--bad:#cf222e}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:var(--fg);font:16px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;-webkit-text-size-adjust:100%}
main{max-width:1120px;margin:0 auto;padding:28px 24px 56px}
header{border-bottom:3px solid var(--accent);padding-bottom:14px}
.kicker{margin:0;color:var(--muted);font-size:13px;letter-spacing:.06em;text-transform:uppercase}
h1{margin:6px 0 0;font-size:28px;line-height:1.25;overflow-wrap:anywhere}
h2{margin:36px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line);font-size:21px}
h3{margin:22px 0 8px;font-size:17px;overflow-wrap:anywhere}
ul.verdicts{padding-left:22px}ul.verdicts li{margin:8px 0;overflow-wrap:anywhere}
li.verdict{font-size:17px}li.verdict .meta{display:block;font-size:14px;margin-top:2px}
.meta{color:var(--muted);font-size:14px;overflow-wrap:anywhere}
.table-wrap{overflow-x:auto;margin:10px 0;border:1px solid var(--line);border-radius:8px}
table{width:100%;border-collapse:collapse;font-size:14px}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
tr:last-child td{border-bottom:0}
th{background:var(--soft);font-weight:600;white-space:nowrap}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.name{min-width:160px;overflow-wrap:anywhere}
.chart{width:100%;height:420px;margin:14px 0;border:1px solid var(--line);border-radius:8px;overflow:hidden}
pre{margin:6px 0;padding:10px 12px;max-height:360px;overflow:auto;background:var(--soft);border:1px solid var(--line);
border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere;font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,
Consolas,monospace}
code{padding:1px 5px;background:var(--soft);border-radius:4px;overflow-wrap:anywhere;
font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:6px 18px;margin:8px 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,440px),1fr));gap:0 24px}
details{margin:8px 0}summary{cursor:pointer;color:var(--accent)}
.ok{color:var(--good);font-weight:600}.no{color:var(--bad);font-weight:600}
.item{margin:12px 0;padding:10px 14px;border:1px solid var(--line);border-left:5px solid var(--line);border-radius:8px}
.item.wrong{border-left-color:var(--bad)}.item.right{border-left-color:var(--good)}
.item .head{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 18px;font-size:14px}
.item .label{color:var(--muted);font-size:13px;margin-top:6px}
.item .cols{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:0 16px}
details.group>summary h3{display:inline;margin:0}
details.group>summary{margin:18px 0 6px}
@media (max-width:640px){main{padding:18px 14px 40px}h1{font-size:22px}h2{font-size:19px}
dl.facts{grid-template-columns:minmax(0,1fr)}dl.facts dt{margin-top:8px}
.item .cols{grid-template-columns:minmax(0,1fr)}.chart{height:470px}li.verdict{font-size:16px}}
@media print{.chart{break-inside:avoid}details>*{display:block}}
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def clip(text: str | None, size: int) -> str:
    text = text or ""
    return text if len(text) <= size else text[:size] + f"… ({len(text) - size:,} more characters in the run log)"


def table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """Cells are HTML already (escaped by the caller); the first column is a name."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if i in numeric else "name" if i == 0 else ""}">{cell}</td>' for i, cell in enumerate(row))
        + "</tr>" for row in rows)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def ci(value: float | None, low: float | None, high: float | None) -> str:
    """`45.0% [35.0%, 55.0%]`: as `eval` prints it."""
    return f"{pct(value).strip()} [{pct(low).strip()}, {pct(high).strip()}]"


def _name(report: Report, run_id: int, label: str) -> str:
    name = report.names.get(run_id, {}).get(label, label)
    return f'<span title="{esc(label)}">{esc(name)}</span>'


def headline_table(report: Report, ev: EvalReport | None = None) -> str:
    """A compare's answers, or an evaluation's rows: accuracy with its 95% CI and the baselines."""
    if ev is None:
        rows = [[_name(report, s.run_id, s.condition), esc(s.answer if s.answer is not None else "(no answer)"),
                 esc(clip(" ".join(s.output.split()), 140)), esc(s.tokens), f"{(s.latency_ms or 0) / 1000:.2f}s"]
                for s in report.samples]
        return table(["strategy · model", "answer", "output (start)", "tokens", "latency"], rows, {3, 4})
    if not ev.rows:
        return f"<p>Run {ev.run_id} has no scored items yet ({esc(ev.status)}).</p>"
    if ev.rows[0].kind == "accuracy":
        rows = [[_name(report, ev.run_id, r.condition), ci(r.value, r.ci_low, r.ci_high), pct(r.strict).strip(),
                 pct(r.chance).strip(), pct(r.majority).strip(), esc(r.no_answer), esc(r.wrong), f"{r.tokens:.1f}",
                 f"{r.latency_s:.2f}s" + (f" (vote of {r.samples})" if r.samples > 1 else "")] for r in ev.rows]
        return table(["condition", "accuracy [95% CI]", "strict", "chance", "majority", "no answer", "wrong",
                      "tokens", "latency"], rows, set(range(1, 9)))
    rows = [[_name(report, ev.run_id, r.condition), f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]",
             esc(", ".join(f"{k} {v:.3f}" if v <= 1 else f"{k} {v:.1f}" for k, v in (r.corpus or {}).items())),
             f"{r.tokens:.1f}"] for r in ev.rows]
    return table(["condition", f"mean item {esc(ev.metric)} [95% CI]", "corpus", "tokens"], rows, {1, 3})


def pair_table(report: Report) -> str:
    """Each pair of conditions of two runs: both accuracies on the shared items, the difference and p."""
    rows = []
    for p in report.pairs.pairs:
        t = p.test
        a, b = _name(report, p.a.run_id, p.a.label), _name(report, p.b.run_id, p.b.label)
        if t is None:
            rows.append([a, b, esc(p.paired), esc(p.note), "", "", ""])
            continue
        rows.append([a, b, esc(t.n), ci(t.accuracy_a, *t.ci_a), ci(t.accuracy_b, *t.ci_b),
                     f"{100 * t.difference:+.1f} points [{100 * t.difference_ci[0]:+.1f}, "
                     f"{100 * t.difference_ci[1]:+.1f}]", f"{t.p_value:.3g}"])
    return ("<h3>Paired tests (items matched by content)</h3>"
            + table(["A", "B", "paired items", "accuracy A [95% CI]", "accuracy B [95% CI]", "A - B [95% CI]",
                     "exact McNemar p"], rows, {2, 3, 4, 5, 6}))


def class_tables(report: Report) -> str:
    parts = []
    for ev in report.evals:
        for c in ev.conditions:
            classes = c.get("classes")
            if not classes:
                continue
            rows = [[esc(label), pct(s["precision"]).strip(), pct(s["recall"]).strip(), pct(s["f1"]).strip(),
                     esc(s["support"])] for label, s in classes["per_class"].items()]
            parts.append(f"<div><h3>{_name(report, ev.run_id, c['label'])} · macro F1 "
                         f"{pct(classes['macro_f1']).strip()}</h3>"
                         + table(["gold class", "precision", "recall", "F1", "items"], rows, {1, 2, 3, 4}) + "</div>")
    return f'<h2 id="classes">Per-class scores</h2><div class="grid2">{"".join(parts)}</div>' if parts else ""


def when(utc: str | None) -> str:
    """`2026-01-31T09:15:02.123Z` as `2026-01-31 09:15 UTC`."""
    return f"{(utc or '').replace('T', ' ')[:16]} UTC" if utc else ""


def _output(text: str) -> str:
    if text and not text.strip():
        return f'<div class="label">output: only whitespace ({len(text)} characters)</div>'
    return f'<div class="label">output</div><pre>{esc(clip(text, OUTPUT_CHARS)) or "(empty)"}</pre>'


def _item(s: SampleItem, show_prompt: bool, compare: bool) -> str:
    state = "" if s.correct is None else ("right" if s.correct else "wrong")
    head = [f"<strong>{esc(s.strategy) if compare else f'item {esc(s.item)}'}</strong>",
            {"right": '<span class="ok">✓ right</span>', "wrong": '<span class="no">✗ wrong</span>'}.get(state, ""),
            f"<span>extracted answer <code>{esc(s.answer) if s.answer is not None else '(none)'}</code></span>"]
    if s.gold is not None:
        head.append(f"<span>gold <code>{esc(s.gold)}</code></span>")
    if s.score is not None and s.correct is None and not compare:
        head.append(f"<span>score {s.score:.3f}</span>")
    inputs = "".join(f'<div class="label">{esc(k)}</div><pre>{esc(clip(str(v), INPUT_CHARS))}</pre>'
                     for k, v in s.inputs.items())
    cols = _output(s.output) if compare else f'<div class="cols"><div>{inputs}</div><div>{_output(s.output)}</div></div>'
    if show_prompt:
        prompt = (f"<details><summary>prompt ({len(s.prompt):,} characters)</summary>"
                  f"<pre>{esc(clip(s.prompt, PROMPT_CHARS))}</pre></details>")
    else:
        prompt = '<div class="label">prompt left out to keep this file small (the run log has it)</div>'
    return f'<div class="item {state}"><div class="head">{"".join(h for h in head if h)}</div>{cols}{prompt}</div>'


def sample_section(report: Report, budget: int = SAMPLE_BYTES) -> str:
    """The answers of a compare; for an evaluation, a bounded sample per condition (wrong ones first), each condition
    folded but the first. At most `budget` characters of items in all, shared by the conditions (each shows at least
    one item), whatever the number of conditions or the length of the texts."""
    groups: dict[tuple[int, str], list[SampleItem]] = {}
    for s in report.samples:
        groups.setdefault((s.run_id, s.condition), []).append(s)
    compare = report.kind == "compare"
    share, prompts = budget // max(1, len(groups)), PROMPT_BUDGET // max(1, len(groups))
    parts = []
    for n, ((run_id, label), items) in enumerate(groups.items()):
        spent = prompt_spent = 0
        shown: list[str] = []
        for s in items:
            show_prompt = compare or not shown or prompt_spent + len(s.prompt) <= prompts
            card = _item(s, show_prompt, compare)
            if shown and spent + len(card) > share:
                break
            shown.append(card)
            spent += len(card)
            prompt_spent += len(s.prompt) if show_prompt else 0
        wrong = sum(1 for s in items[:len(shown)] if s.correct is False)
        scored = any(s.correct is not None for s in items)
        count = "" if compare else f" · {len(shown)} items shown, " + (f"{wrong} of them wrong" if scored else
                                                                        "lowest scores first")
        left = (f'<p class="meta">{len(items) - len(shown)} more sampled items of this condition left out to keep '
                "this file small.</p>" if len(shown) < len(items) else "")
        parts.append(f'<details class="group"{" open" if compare or n == 0 else ""}><summary><h3>'
                     f'{_name(report, run_id, label)}{count}</h3></summary>{"".join(shown)}{left}</details>')
    title = "Answers" if compare else "Sample of items"
    return f'<h2 id="samples">{title}</h2><p class="meta">{esc(report.sample_note)}</p>' + "".join(parts)
