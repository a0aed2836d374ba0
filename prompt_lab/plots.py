"""Plotly figures for the History and Evaluate views; pure functions of query rows."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import plotly.graph_objects as go

from .strategies import STRATEGY_LABELS

LAYOUT = dict(template="plotly_white", height=340, margin=dict(l=50, r=20, t=50, b=40),
              font=dict(family="Source Sans Pro, sans-serif", size=13), legend=dict(orientation="h", y=-0.18))


def short_model(spec: str) -> str:
    """A legend-sized model name: `openai:org/name@http://host:8000/v1` -> `name @ host:8000`, a folder or
    file path -> its last part, `<base>+<adapter dir>` -> `base + <job>/adapter`."""
    if spec.startswith("openai:"):
        model, _, where = spec[len("openai:"):].partition("@")
        return f"{Path(model).name or model} @ {urlsplit(where).netloc or where}"
    base, plus, adapter = spec.partition("+")
    name = Path(base).name or base
    return name + (f" + {Path(adapter).parent.name}/{Path(adapter).name}" if plus else "")


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=15, color="#666"))
    fig.update_layout(**LAYOUT, xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def strategy_bars(stats: list[dict], metric: str, title: str, axis: str, error: str | None = None) -> go.Figure:
    """Grouped bars: one group per strategy, one bar per model."""
    if not stats:
        return empty_figure("No runs match the filters yet")
    fig = go.Figure()
    for model in sorted({row["model"] for row in stats}):
        order = {s: i for i, s in enumerate(STRATEGY_LABELS)}
        rows = sorted((r for r in stats if r["model"] == model), key=lambda r: order.get(r["strategy"], 99))
        fig.add_bar(
            name=short_model(model), x=[STRATEGY_LABELS.get(r["strategy"], r["strategy"]) for r in rows],
            y=[r[metric] for r in rows],
            error_y=dict(type="data", array=[r[error] for r in rows]) if error else None,
            customdata=[r["generations"] for r in rows],
            hovertemplate="%{x}<br>%{y:.1f}<br>%{customdata} generations<extra>" + short_model(model) + "</extra>",
        )
    fig.update_layout(**LAYOUT, title=title, barmode="group", yaxis_title=axis)
    return fig


def _metric(c: dict) -> tuple[float, tuple[float, float]]:
    return (c["accuracy"], c["accuracy_ci"]) if "accuracy" in c else (c["score"], c["score_ci"])


def accuracy_bars(conditions: list[dict], title: str = "Accuracy by strategy (95% bootstrap CI)") -> go.Figure:
    """One bar per condition, grouped by model, with CI error bars."""
    if not conditions:
        return empty_figure("No results yet")
    fig = go.Figure()
    for model in dict.fromkeys(c["model"] for c in conditions):
        rows = [c for c in conditions if c["model"] == model]
        values = [_metric(c) for c in rows]
        fig.add_bar(name=short_model(model), x=[c["label"].split(" · ")[0] for c in rows], y=[v for v, _ in values],
                    error_y=dict(type="data", symmetric=False, array=[hi - v for v, (lo, hi) in values],
                                 arrayminus=[v - lo for v, (lo, hi) in values]),
                    hovertemplate="%{x}: %{y:.1%}<extra>" + short_model(model) + "</extra>")
    fig.update_layout(**LAYOUT, title=title, barmode="group", yaxis=dict(tickformat=".0%", range=[0, 1.05]))
    return fig


def accuracy_vs_tokens(conditions: list[dict]) -> go.Figure:
    """Cost vs quality: mean completion tokens per generation against accuracy."""
    if not conditions:
        return empty_figure("No results yet")
    fig = go.Figure()
    for model in dict.fromkeys(c["model"] for c in conditions):
        rows = [c for c in conditions if c["model"] == model]
        fig.add_scatter(name=short_model(model), mode="markers+text", x=[c["completion_tokens"] for c in rows],
                        y=[_metric(c)[0] for c in rows], text=[c["label"].split(" · ")[0] for c in rows],
                        textposition="top center", marker=dict(size=12))
    fig.update_layout(**LAYOUT, title="Accuracy vs completion tokens (cost vs quality)",
                      xaxis_title="mean completion tokens", yaxis=dict(tickformat=".0%"))
    return fig


def k_sweep(conditions: list[dict]) -> go.Figure:
    """Accuracy against the number of few-shot examples, one line per strategy and model."""
    swept = [c for c in conditions if c["k"]]
    if len({c["k"] for c in swept}) < 2:
        return empty_figure("Sweep k (e.g. k_shot: [1, 3, 6]) to see this curve")
    fig = go.Figure()
    for key in dict.fromkeys((c["strategy"], c["model"]) for c in swept):
        rows = sorted((c for c in swept if (c["strategy"], c["model"]) == key), key=lambda c: c["k"])
        fig.add_scatter(name=f"{key[0]} · {short_model(key[1])}", mode="lines+markers", x=[c["k"] for c in rows],
                        y=[_metric(c)[0] for c in rows])
    fig.update_layout(**LAYOUT, title="Accuracy by number of examples (k)", xaxis_title="k",
                      yaxis=dict(tickformat=".0%"))
    return fig


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
    fig.update_layout(**LAYOUT, title="Self-consistency: accuracy by samples voted", xaxis_title="samples (k)",
                      yaxis=dict(tickformat=".0%"))
    return fig


def calibration(conditions: list[dict]) -> go.Figure:
    """Reliability diagram for label-probability runs: confidence against accuracy per bin."""
    rows = [c for c in conditions if c.get("calibration")]
    if not rows:
        return empty_figure("Use method label_probs to see calibration")
    fig = go.Figure()
    fig.add_scatter(name="perfect calibration", x=[0, 1], y=[0, 1], mode="lines",
                    line=dict(dash="dash", color="#999"))
    for c in rows:
        bins = c["calibration"]
        fig.add_scatter(name=c["label"], mode="lines+markers", x=[b["confidence"] for b in bins],
                        y=[b["accuracy"] for b in bins], text=[f"{b['count']} items" for b in bins])
    fig.update_layout(**LAYOUT, title="Calibration (reliability)", xaxis=dict(title="confidence", range=[0, 1]),
                      yaxis=dict(title="accuracy", range=[0, 1.05]))
    return fig
