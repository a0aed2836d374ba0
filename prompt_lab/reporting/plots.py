"""Plotly figures for the History, Evaluate and Tune views; pure functions of query rows.

Every chart a stakeholder may see is titled, has both axes named with their unit, keeps its legend below the
plot (clear of the axis titles), labels bars with their values (so a 0% bar still reads "0%"), and marks the
chance and majority-class rates on accuracy charts.
"""
from __future__ import annotations

import plotly.graph_objects as go

from prompt_lab.models.naming import short_model
from prompt_lab.prompts.strategies import STRATEGY_LABELS

LAYOUT = dict(template="plotly_white", height=380, margin=dict(l=70, r=30, t=60, b=110),
              font=dict(family="Source Sans Pro, sans-serif", size=13),
              title=dict(x=0.02, xanchor="left", font=dict(size=16)),
              legend=dict(orientation="h", x=0, xanchor="left", y=-0.3, yanchor="top"))
BASELINE_COLORS = {"chance": "#b45309", "majority": "#be123c"}


def _layout(fig: go.Figure, title: str, xaxis: dict, yaxis: dict, **extra) -> go.Figure:
    fig.update_layout(**{**LAYOUT, **extra, "title": {**LAYOUT["title"], "text": title}}, xaxis=xaxis, yaxis=yaxis)
    return fig


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=15, color="#666"))
    fig.update_layout(**{**LAYOUT, "margin": dict(l=20, r=20, t=20, b=20)}, xaxis=dict(visible=False),
                      yaxis=dict(visible=False))
    return fig


def _value_labels(fig: go.Figure, x: list, tops: list[float], texts: list[str], group: str) -> None:
    """Each bar's value written just above its error bar (above the bar where it has none), in the bar's own
    slot of the group, so no whisker crosses the number and a 0% bar still says "0%"."""
    fig.add_scatter(x=x, y=tops, text=texts, mode="text", textposition="top center", offsetgroup=group,
                    showlegend=False, hoverinfo="skip", cliponaxis=False, textfont=dict(size=13, color="#222"))


def strategy_bars(stats: list[dict], metric: str, title: str, axis: str, error: str | None = None,
                  fmt: str = ".1f") -> go.Figure:
    """Grouped bars: one group per strategy, one bar per model, each bar labelled with its value."""
    if not stats:
        return empty_figure("No runs match the filters yet")
    fig = go.Figure()
    order = {s: i for i, s in enumerate(STRATEGY_LABELS)}
    for i, model in enumerate(sorted({row["model"] for row in stats})):
        rows = sorted((r for r in stats if r["model"] == model), key=lambda r: order.get(r["strategy"], 99))
        values = [r[metric] or 0 for r in rows]
        spread = [(r[error] or 0) if error else 0 for r in rows]
        x = [STRATEGY_LABELS.get(r["strategy"], r["strategy"]) for r in rows]
        fig.add_bar(
            name=short_model(model), x=x, y=values, offsetgroup=str(i),
            error_y=dict(type="data", array=spread, color="#555") if error else None,
            customdata=[r["generations"] for r in rows],
            hovertemplate="%{x}<br>%{y:" + fmt + "}<br>%{customdata} generations<extra>" + short_model(model)
                          + "</extra>",
        )
        _value_labels(fig, x, [v + d for v, d in zip(values, spread)], [format(v, fmt) for v in values], str(i))
    top = max((r[metric] or 0) + ((r[error] or 0) if error else 0) for r in stats)
    return _layout(fig, title, dict(title="strategy"), dict(title=axis, range=[0, top * 1.18 or 1]),
                   barmode="group", scattermode="group")


def _metric(c: dict) -> tuple[float, tuple[float, float]]:
    return (c["accuracy"], c["accuracy_ci"]) if "accuracy" in c else (c["score"], c["score_ci"])


def _score_axis(conditions: list[dict], metric: str | None) -> tuple[dict, str, str]:
    """(y axis, bar text format, hover format) for an accuracy (0-1, shown as %) or a score metric."""
    if not conditions or "accuracy" in conditions[0]:
        return dict(title="accuracy (% of items, 95% CI)", tickformat=".0%", range=[0, 1.15]), ".0%", ".1%"
    if metric == "bleu":
        return dict(title="BLEU per item (0-100, 95% CI)"), ".1f", ".1f"
    return dict(title="ROUGE-L F1 per item (0-1, 95% CI)", range=[0, 1.15]), ".2f", ".3f"


def _baseline_lines(fig: go.Figure, conditions: list[dict]) -> None:
    """Dashed horizontal lines at the chance and majority-class rates (once per distinct rate)."""
    for kind, label in (("chance", "chance"), ("majority", "majority class")):
        rates = sorted({round(c[kind], 4) for c in conditions if c.get(kind) is not None})
        for rate in rates:
            fig.add_hline(y=rate, line=dict(dash="dash", color=BASELINE_COLORS[kind], width=1.5),
                          annotation=dict(text=f"{label} {rate:.0%}", font=dict(color=BASELINE_COLORS[kind], size=12),
                                          bgcolor="rgba(255,255,255,0.8)"),
                          annotation_position="top right" if kind == "majority" else "bottom right")


def accuracy_bars(conditions: list[dict], title: str = "Accuracy by condition", metric: str | None = None,
                  name=lambda c: c["label"].split(" · ")[0], xaxis_title: str = "condition (strategy, k)") -> go.Figure:
    """One bar per condition, grouped by model, labelled with its value, with 95% CI error bars and the
    chance and majority-class rates as dashed lines."""
    if not conditions:
        return empty_figure("No results yet")
    fig = go.Figure()
    yaxis, text_fmt, hover_fmt = _score_axis(conditions, metric)
    for i, model in enumerate(dict.fromkeys(c["model"] for c in conditions)):
        rows = [c for c in conditions if c["model"] == model]
        values = [_metric(c) for c in rows]
        x = [name(c) for c in rows]
        fig.add_bar(name=short_model(model), x=x, y=[v for v, _ in values], offsetgroup=str(i),
                    error_y=dict(type="data", symmetric=False, array=[hi - v for v, (lo, hi) in values],
                                 arrayminus=[v - lo for v, (lo, hi) in values], color="#555"),
                    hovertemplate="%{x}: %{y:" + hover_fmt + "}<extra>" + short_model(model) + "</extra>")
        _value_labels(fig, x, [hi for _, (lo, hi) in values], [format(v, text_fmt) for v, _ in values], str(i))
    if "accuracy" in conditions[0]:
        _baseline_lines(fig, conditions)
    if "range" not in yaxis:
        yaxis["range"] = [0, max(hi for _, (lo, hi) in map(_metric, conditions)) * 1.18 or 1]
    return _layout(fig, title, dict(title=xaxis_title), yaxis, barmode="group", scattermode="group")


def has_cost(conditions: list[dict]) -> bool:
    """Whether a cost-vs-quality chart means anything: label probabilities generate no tokens."""
    return any((c.get("completion_tokens") or 0) > 0 for c in conditions)


def accuracy_vs_tokens(conditions: list[dict], metric: str | None = None) -> go.Figure:
    """Cost vs quality: mean completion tokens per answer against accuracy, one point per condition."""
    if not conditions or not has_cost(conditions):
        return empty_figure("No generated tokens: label probabilities score choices without writing")
    fig = go.Figure()
    yaxis, _, hover_fmt = _score_axis(conditions, metric)
    for model in dict.fromkeys(c["model"] for c in conditions):
        rows = [c for c in conditions if c["model"] == model]
        fig.add_scatter(name=short_model(model), mode="markers+text", x=[c["completion_tokens"] for c in rows],
                        y=[_metric(c)[0] for c in rows], text=[c["label"].split(" · ")[0] for c in rows],
                        textposition="top center", cliponaxis=False, marker=dict(size=12),
                        hovertemplate="%{text}: %{y:" + hover_fmt + "} at %{x:.1f} tokens<extra></extra>")
    top = max(c["completion_tokens"] for c in conditions)
    return _layout(fig, "Cost vs quality", dict(title="mean completion tokens per answer", range=[0, top * 1.25 + 1]),
                   yaxis)


def k_sweep(conditions: list[dict], metric: str | None = None) -> go.Figure:
    """Accuracy against the number of few-shot examples, one line per strategy and model."""
    swept = [c for c in conditions if c["k"]]
    if len({c["k"] for c in swept}) < 2:
        return empty_figure("Sweep k (e.g. k_shot: [1, 3, 6]) to see this curve")
    fig = go.Figure()
    yaxis, _, hover_fmt = _score_axis(conditions, metric)
    for key in dict.fromkeys((c["strategy"], c["model"]) for c in swept):
        rows = sorted((c for c in swept if (c["strategy"], c["model"]) == key), key=lambda c: c["k"])
        fig.add_scatter(name=f"{key[0]} · {short_model(key[1])}", mode="lines+markers", x=[c["k"] for c in rows],
                        y=[_metric(c)[0] for c in rows], hovertemplate="k=%{x}: %{y:" + hover_fmt + "}<extra></extra>")
    if "accuracy" in conditions[0]:
        _baseline_lines(fig, conditions)
    return _layout(fig, "Accuracy by number of examples", dict(title="k (examples in the prompt)", dtick=1), yaxis)


def self_consistency(conditions: list[dict]) -> go.Figure:
    """Majority-vote accuracy as a function of the number of samples voted over."""
    rows = [c for c in conditions if "self_consistency" in c]
    if not rows:
        return empty_figure("Run with samples > 1 and temperature > 0 to see self-consistency")
    fig = go.Figure()
    for c in rows:
        curve = c["self_consistency"]["curve"]
        fig.add_scatter(name=c["label"], mode="lines+markers", x=[p["k"] for p in curve],
                        y=[p["accuracy"] for p in curve])
    _baseline_lines(fig, rows)
    return _layout(fig, "Self-consistency: accuracy by samples voted", dict(title="samples voted per item", dtick=1),
                   dict(title="accuracy (% of items)", tickformat=".0%", range=[0, 1.12]))


def calibration(conditions: list[dict]) -> go.Figure:
    """Reliability diagram for label-probability runs: confidence against accuracy per bin."""
    rows = [c for c in conditions if c.get("calibration")]
    if not rows:
        return empty_figure("Use method label_probs to see calibration")
    fig = go.Figure()
    fig.add_scatter(name="perfectly calibrated", x=[0, 1], y=[0, 1], mode="lines",
                    line=dict(dash="dash", color="#999"), hoverinfo="skip")
    for c in rows:
        bins = c["calibration"]
        fig.add_scatter(name=c["label"], mode="lines+markers", x=[b["confidence"] for b in bins],
                        y=[b["accuracy"] for b in bins], customdata=[b["count"] for b in bins],
                        hovertemplate="confidence %{x:.0%}: accuracy %{y:.0%} (%{customdata} items)<extra></extra>")
    return _layout(fig, "Calibration: is the model as sure as it is right?",
                   dict(title="confidence (probability of the chosen answer)", tickformat=".0%", range=[0, 1]),
                   dict(title="accuracy (% of items in the bin)", tickformat=".0%", range=[0, 1.05]))


def loss_curve(train: list[dict], val: list[dict], title: str) -> go.Figure:
    """Training and validation loss by step (job_events rows)."""
    if not train:
        return empty_figure("Waiting for the first step…")
    fig = go.Figure()
    fig.add_scatter(name="training loss", x=[e["step"] for e in train], y=[e["loss"] for e in train], mode="lines",
                    hovertemplate="step %{x}: %{y:.4f}<extra>training</extra>")
    fig.add_scatter(name="validation loss", x=[e["step"] for e in val], y=[e["val_loss"] for e in val],
                    mode="lines+markers", hovertemplate="step %{x}: %{y:.4f}<extra>validation</extra>")
    return _layout(fig, title, dict(title="training step"), dict(title="loss (cross-entropy per token)",
                                                                 rangemode="tozero"))
