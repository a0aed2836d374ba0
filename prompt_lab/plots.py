"""Plotly figures for the History and Evaluate views; pure functions of query rows."""
from __future__ import annotations

import plotly.graph_objects as go

from .strategies import STRATEGY_LABELS

LAYOUT = dict(template="plotly_white", height=340, margin=dict(l=50, r=20, t=50, b=40),
              font=dict(family="Source Sans Pro, sans-serif", size=13), legend=dict(orientation="h", y=-0.18))


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
            name=model, x=[STRATEGY_LABELS.get(r["strategy"], r["strategy"]) for r in rows],
            y=[r[metric] for r in rows],
            error_y=dict(type="data", array=[r[error] for r in rows]) if error else None,
            customdata=[r["generations"] for r in rows],
            hovertemplate="%{x}<br>%{y:.1f}<br>%{customdata} generations<extra>" + model + "</extra>",
        )
    fig.update_layout(**LAYOUT, title=title, barmode="group", yaxis_title=axis)
    return fig
