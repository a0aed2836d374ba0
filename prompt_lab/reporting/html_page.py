"""A Report as one self-contained HTML file: inline CSS, plotly's JavaScript embedded once, the charts' data as an
inert JSON block, so it opens offline from a mail attachment or a file share, on a laptop or a phone.

Every string a visitor controls (template text, inputs, outputs, names, paths) is HTML-escaped where it is shown
and inside the charts' data (plotly renders a little HTML in labels); the JSON block escapes `<`, `>` and `&`, so
no value can close it. A Content-Security-Policy lets only this page's own two scripts run and nothing load.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import html
import json

import plotly.io as pio
from plotly.offline import get_plotlyjs

from prompt_lab.reporting import plots
from prompt_lab.reporting.facts import Report, RunFacts, pair_command
from prompt_lab.reporting.page_parts import (CSS, SAMPLE_BYTES, class_tables, clip, esc, headline_table,
                                             pair_table, sample_section, when)
from prompt_lab.reporting.summary import EvalReport

SHOWN_VERDICTS = 4  # paired-test verdicts in sight; the others are folded
RENDER_JS = """(function () {
  var spec = JSON.parse(document.getElementById("report-figures").textContent);
  var narrow = window.innerWidth < 640;
  spec.figures.forEach(function (f) {
    f.layout.template = spec.templates[f.template];
    if (narrow) { f.layout.margin = {l: 58, r: 14, t: 56, b: 150}; }
    Plotly.newPlot(f.id, f.data, f.layout, {responsive: true, displaylogo: false});
  });
})();"""


def script_json(data) -> str:
    """JSON that is safe inside a <script> element: no `<`, `>` or `&` can end it or start markup."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                       ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text


def _digest(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


@functools.lru_cache(maxsize=1)
def plotly_script() -> tuple[str, str]:
    """plotly.js (about 4.8 MB) and its CSP hash, computed once per process."""
    script = get_plotlyjs()
    return script, _digest(script)


# ------------------------------------------------------------------ charts


def plot_text(value) -> str:
    """Text for a chart: plotly reads a little HTML in labels, legends and hover text (<b>, <br>, <a href>), so
    `<`, `>` and `&` are escaped; quotes are plain text there (JSON carries them)."""
    return html.escape(str(value), quote=False)


def _shown(condition: dict, name: str) -> dict:
    """A condition for a chart, its visitor-controlled names escaped."""
    return {**condition, "label": plot_text(name), "model": plot_text(condition["model"]),
            "strategy": plot_text(condition["strategy"])}


def _eval_figures(report: Report, ev: EvalReport) -> list:
    names = report.names.get(ev.run_id, {})
    conditions = [_shown(c, names.get(c["label"], c["label"])) for c in ev.conditions]
    if report.kind == "tune":
        for c in conditions:
            c["model"] = "base vs tuned"  # one group: a bar each, side by side (as the Tune tab draws it)
        return [plots.accuracy_bars(conditions, "Base vs tuned on the validation split", metric=ev.metric,
                                    name=lambda c: c["label"], xaxis_title="model · prompt strategy")]
    title = "Accuracy by condition" if ev.metric in ("accuracy", "contains", "regex") else \
        f"{ev.metric.upper() if ev.metric == 'bleu' else 'ROUGE-L'} by condition"
    figures = [plots.accuracy_bars(conditions, title, metric=ev.metric)]
    if plots.has_cost(conditions) and len(conditions) > 1:
        figures.append(plots.accuracy_vs_tokens(conditions, ev.metric))
    if len({c["k"] for c in conditions if c["k"]}) > 1:
        figures.append(plots.k_sweep(conditions, ev.metric))
    if any("self_consistency" in c for c in conditions):
        figures.append(plots.self_consistency(conditions))
    if any(c.get("calibration") for c in conditions):
        figures.append(plots.calibration(conditions))
    return figures


def _pair_figures(report: Report) -> list:
    conditions = []
    for ev in report.evals:
        names = report.names.get(ev.run_id, {})
        conditions += [_shown(c, names.get(c["label"], c["label"])) for c in ev.conditions]
    return [plots.accuracy_bars(conditions, f"Accuracy of runs {report.run_ids[0]} and {report.run_ids[1]}",
                                metric=report.evals[0].metric, name=lambda c: c["label"],
                                xaxis_title="run · condition")]


def _compare_figures(report: Report) -> list:
    groups: dict[tuple, list] = {}
    for s in report.samples:
        groups.setdefault((s.strategy, s.model), []).append(s)
    stats = []
    for (strategy, model), rows in groups.items():
        latency = [(r.latency_ms or 0) / 1000 for r in rows]
        mean = sum(latency) / len(latency)
        stats.append({"strategy": plot_text(strategy), "model": plot_text(model), "generations": len(rows),
                      "latency_s": mean, "latency_sd_s": (sum((x - mean) ** 2 for x in latency) / len(latency)) ** .5,
                      "completion_tokens": sum(r.tokens or 0 for r in rows) / len(rows)})
    return [plots.strategy_bars(stats, "completion_tokens", "Completion tokens by strategy and model",
                                "tokens per answer (mean)", fmt=".0f"),
            plots.strategy_bars(stats, "latency_s", "Latency by strategy and model", "seconds per answer (mean ± SD)",
                                error="latency_sd_s", fmt=".2f")]


def _loss_figure(report: Report):
    events = report.tune.losses
    return plots.loss_curve([e for e in events if e["loss"] is not None],
                            [e for e in events if e["val_loss"] is not None], f"Job {report.tune.job_id}: loss by step")


def _figures_json(figures: dict[str, object]) -> str:
    """Each figure's data and layout, its template stored once (every chart shares plotly_white)."""
    templates: list = []
    out = []
    for div_id, fig in figures.items():
        data = json.loads(pio.to_json(fig, validate=False))
        template = data["layout"].pop("template", {})
        data["layout"].pop("height", None)  # the page sets each chart's height (taller on a phone)
        if template not in templates:
            templates.append(template)
        out.append({"id": div_id, "data": data["data"], "layout": data["layout"],
                    "template": templates.index(template)})
    return script_json({"templates": templates, "figures": out})


# ------------------------------------------------------------------ the page


def _chart(div_id: str) -> str:
    return f'<div class="chart" id="{div_id}"></div>'


def _facts(run: RunFacts) -> str:
    rows = [("template", f"<code>{esc(run.template)}</code> version <code>{esc(run.template_hash)}</code>"),
            ("strategies", esc(", ".join(run.strategies))),
            ("models", "<br>".join(f"<code>{esc(m.spec)}</code>" + (f" · revision <code>{esc(m.revision)}</code>"
                                                                     if m.revision else "") for m in run.models))]
    if run.kind == "eval":
        rows += [("dataset", f"<code>{esc(run.dataset)}</code> · {esc(run.dataset_items)} items · hash "
                             f"<code>{esc(run.dataset_hash)}</code>"),
                 ("scoring", f"{esc(run.method)}, metric {esc(run.metric)}")]
    rows.append(("decoding", esc(" · ".join(f"{k} {v}" for k, v in run.decoding.items()))))
    for name, value in run.variables.items():
        rows.append((f"input: {esc(name)}", f"<pre>{esc(value)}</pre>"))
    duration = f" · {run.duration_s:g} s" if run.duration_s is not None else ""
    rows.append(("status", f"{esc(run.status)} · started {esc(when(run.created_utc))}{duration}"))
    if run.error:
        rows.append(("error", esc(run.error)))
    if run.command:
        rows.append(("logged command", f"<code>{esc(run.command)}</code>"))
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    spec = (f"<details><summary>{esc(run.spec_file_name)}: the file the repeat line reads</summary>"
            f"<pre>{esc(run.spec_file)}</pre></details>" if run.spec_file else "")
    return (f"<h3>Run {run.run_id} ({esc(run.kind)})</h3><dl class=\"facts\">{body}</dl>"
            f"<details><summary>Template version text ({esc(run.template)}@{esc(run.template_hash[:8])})</summary>"
            f"<pre>{esc(run.template_text)}</pre></details>{spec}")


def _repeat(report: Report) -> str:
    lines = [f"<li>run {r.run_id}: <code>{esc(r.repeat)}</code></li>" for r in report.runs if r.repeat]
    if report.kind == "pair":
        lines.append(f"<li>the paired tests: <code>{esc(pair_command(report))}</code></li>")
    lines.append(f"<li>this report: <code>{esc(report.report_command)}</code> (add <code>--format md</code> for a "
                 "Markdown summary)</li>")
    ids = ", ".join(map(str, report.run_ids))
    return (f"<h2 id=\"repeat\">Run ids and how to repeat</h2><p>Run log ids: <strong>{ids}</strong>. "
            f"Every number above is read from these runs.</p><ul>{''.join(lines)}</ul>")


def _tune_section(report: Report) -> str:
    tune = report.tune
    metrics = " · ".join(f"{esc(k)} {v:.4g}" if isinstance(v, float) else f"{esc(k)} {esc(v)}"
                         for k, v in tune.metrics.items())
    spec = tune.spec
    setup = (f"{esc(spec.get('method', 'lora'))} on <code>{esc(spec.get('model'))}</code>, template "
             f"<code>{esc(spec.get('template'))}</code>, strategy {esc(spec.get('strategy'))}, dataset "
             f"<code>{esc(spec.get('dataset'))}</code>")
    return (f"<h2 id=\"training\">Training</h2><p>Job {tune.job_id} <strong>{esc(tune.name)}</strong> "
            f"({esc(tune.status)}): {setup}.</p><p class=\"meta\">{metrics}</p>{_chart('fig-loss')}"
            f"<p class=\"meta\">Adapter: <code>{esc(tune.adapter_path)}</code></p>")


def page(report: Report) -> str:
    """The report as one HTML document (a few hundred KB plus plotly.js)."""
    figures: dict[str, object] = {}
    body = []
    verdicts = [f'<li class="verdict"><strong>{esc(v.text)}</strong> <span class="meta">{esc(v.detail)}</span></li>'
                for v in report.verdicts]
    summary = verdicts[:SHOWN_VERDICTS] + [f"<li>{esc(n)}</li>" for n in report.notes]
    if len(verdicts) > SHOWN_VERDICTS:  # many conditions: the clear differences stay in sight (they come first)
        summary.insert(SHOWN_VERDICTS, f"<li><details><summary>{len(verdicts) - SHOWN_VERDICTS} more paired tests"
                                       f"</summary><ul>{''.join(verdicts[SHOWN_VERDICTS:])}</ul></details></li>")
    if report.kind == "compare":
        run = report.runs[0]
        inputs = "; ".join(f"{k} “{clip(' '.join(str(v).split()), 200)}”" for k, v in run.variables.items())
        summary.insert(0, f"<li>Template <code>{esc(run.template)}</code> on {esc(inputs)}, "
                          f"{esc(', '.join(run.strategies))} on {esc(', '.join(m.name for m in run.models))}. A compare "
                          "has no gold answer: the answers are side by side below.</li>")
    if summary:
        heading = "Summary" if report.kind == "compare" else "Verdict"
        body.append(f"<h2 id=\"verdict\">{heading}</h2><ul class=\"verdicts\">{''.join(summary)}</ul>")
    body.append('<h2 id="results">Results</h2>')
    if report.kind == "compare":
        body.append(headline_table(report))
        for i, fig in enumerate(_compare_figures(report)):
            figures[f"fig-compare-{i}"] = fig
            body.append(_chart(f"fig-compare-{i}"))
    else:
        for ev in report.evals:
            if len(report.evals) > 1:
                body.append(f"<h3>Run {ev.run_id}: {esc(ev.method)}, {ev.items or 0:,} items, metric "
                            f"{esc(ev.metric)}</h3>")
            body.append(headline_table(report, ev))
        if report.pairs is not None:
            body.append(pair_table(report))
        shown = _pair_figures(report) if report.kind == "pair" else _eval_figures(report, report.evals[0])
        for i, fig in enumerate(shown):
            figures[f"fig-eval-{i}"] = fig
            body.append(_chart(f"fig-eval-{i}"))
    if report.tune is not None:
        figures["fig-loss"] = _loss_figure(report)
        body.append(_tune_section(report))
    body.append(class_tables(report))
    long_texts = sum(len(t) for t in {r.template_hash: r.template_text + r.spec_file for r in report.runs}.values())
    body.append(sample_section(report, max(SAMPLE_BYTES // 3, SAMPLE_BYTES - long_texts)))  # a 64 KB template too
    body.append('<h2 id="setup">What was run</h2>' + "".join(_facts(r) for r in report.runs))
    body.append(_repeat(report))
    plotly_js, plotly_hash = plotly_script()
    policy = (f"default-src 'none'; script-src {plotly_hash} {_digest(RENDER_JS)}; style-src 'unsafe-inline'; "
              "img-src data: blob:; font-src data:")
    ids = ", ".join(map(str, report.run_ids))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
        '<meta name="generator" content="Prompt Lab">',
        f"<title>{esc(report.title)}</title>", f"<style>{CSS}</style></head><body><main>",
        f'<header><p class="kicker">Prompt Lab report · run{"s" if len(report.run_ids) > 1 else ""} {ids} · '
        f"generated {esc(when(report.generated_utc))}</p><h1>{esc(report.title)}</h1></header>",
        *body, "</main>",
        f'<script type="application/json" id="report-figures">{_figures_json(figures)}</script>',
        f"<script>{plotly_js}</script>", f"<script>{RENDER_JS}</script>", "</body></html>"])
