"""Plotly figures for the History, Evaluate and Tune views; pure functions of query rows.

Every chart a stakeholder may see is titled, has both axes named with their unit, keeps its legend below the
plot (clear of the axis titles), labels bars with their values (so a 0% bar still reads "0%"), and marks the
chance and majority-class rates on accuracy charts. Charts are read on a projector and on phones, so labels are
placed for the smallest view (a ~390 px phone) and never overlap: baseline labels, point names, tick labels,
axis titles and the legend each get their own room, and score axes start at 0 with no tick above the scale's top.
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import qualitative

from prompt_lab.models.naming import short_model
from prompt_lab.prompts.strategies import STRATEGY_LABELS

LAYOUT = dict(template="plotly_white", height=380, margin=dict(l=60, r=20, t=60, b=110),
              font=dict(family="Source Sans Pro, sans-serif", size=13),
              title=dict(x=0.02, xanchor="left", font=dict(size=16)),
              legend=dict(orientation="h", x=0, xanchor="left", y=-0.3, yanchor="top"))
BASELINE_COLORS = {"chance": "#b45309", "majority": "#be123c"}
BASELINE_NAMES = {"chance": "chance", "majority": "majority class"}
RATE_TICKS = dict(tick0=0, dtick=0.2)  # 0 to 1 (100%) in fifths: no tick above the top, whatever the headroom
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "pentagon")
# The smallest view each chart must stay readable in: a ~390 px phone, where a chart is about 340 px wide, its plot
# about 260 x 170 px (Gradio keeps 100 px above a titled plot) and plotly turns category labels that crowd.
PHONE_WIDTH, PLOT_W, PLOT_H, APP_TOP = 340, 260, 170, 100
CHAR_PX, ROW_PX, AXIS_TITLE_PX = 6.6, 21, 42  # a 13 px character, a legend row, an x title with its standoff


def _axis(spec: dict) -> dict:
    """An axis whose tick labels and title push the margins (automargin) instead of being cut off."""
    spec = {**spec, "automargin": True}
    if "title" in spec:
        spec["title"] = dict(text=spec["title"], font=dict(size=14), standoff=10)
    return spec


def _tick_px(fig: go.Figure) -> float:
    """Height of the x tick labels on a phone: one line, or turned 30° (90° where very crowded) when the category
    labels are wider than their slot."""
    categories = list(dict.fromkeys(str(x) for t in fig.data if t.type == "bar" for x in (t.x or ())))
    if not categories:
        return 22
    slot, width = PLOT_W / len(categories), CHAR_PX * max(map(len, categories))
    if width + 8 <= slot:
        return 22
    return width / 2 + 16 if slot >= 34 else width + 10


def _legend_rows(fig: go.Figure) -> int:
    """Rows of the horizontal legend on a phone."""
    rows, used = 0, PHONE_WIDTH
    for name in dict.fromkeys(t.name for t in fig.data if t.name and t.showlegend is not False):
        width = 40 + CHAR_PX * len(name)
        rows, used = (rows + 1, width) if used + width > PHONE_WIDTH else (rows, used + width)
    return rows


def _layout(fig: go.Figure, title: str, xaxis: dict, yaxis: dict, **extra) -> go.Figure:
    """Title, axes and legend. Plotly places a legend below the plot by a fraction of the plot's height and never
    moves it for tall (turned) tick labels or the x title (plotly.js#7415), so the legend is put a phone's tick
    labels and x title below the plot, the bottom margin holds its rows, and the chart grows by what it needs."""
    offset = _tick_px(fig) + AXIS_TITLE_PX
    bottom = round(offset + ROW_PX * _legend_rows(fig) + 12)
    fig.update_layout(**{**LAYOUT, **extra, "title": {**LAYOUT["title"], "text": title},
                         "height": APP_TOP + PLOT_H + bottom, "margin": {**LAYOUT["margin"], "b": bottom},
                         "legend": {**LAYOUT["legend"], "y": round(-offset / PLOT_H, 3)}},
                      xaxis=_axis(xaxis), yaxis=_axis(yaxis))
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
    """(y axis, bar text format, hover format) for an accuracy (0-1, shown as %) or a score metric. The range is
    explicit: from 0 (an all-zero BLEU never autoscales to -1..1), with headroom for the value labels but no tick
    above the scale's top (100%, 1, or 100 for BLEU)."""
    if not conditions or "accuracy" in conditions[0]:
        return (dict(title="accuracy (% of items, 95% CI)", tickformat=".0%", range=[0, 1.15], **RATE_TICKS),
                ".0%", ".1%")
    if metric == "bleu":
        top = max(max(v, hi) for v, (lo, hi) in map(_metric, conditions)) * 1.18
        axis = dict(title="BLEU per item (0-100, 95% CI)", range=[0, min(max(top, 1), 115)])
        return (axis | dict(tick0=0, dtick=20) if top > 100 else axis), ".1f", ".1f"
    return dict(title="ROUGE-L F1 per item (0-1, 95% CI)", range=[0, 1.15], **RATE_TICKS), ".2f", ".3f"


def _overlaps(a: tuple, b: tuple) -> bool:
    """Whether two (x0, x1, y0, y1) boxes overlap."""
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _baseline_lines(fig: go.Figure, conditions: list[dict], top: float = 1.15) -> None:
    """Dashed lines at the chance and majority-class rates (once per distinct rate), each rate labelled once.
    Rates within a point share one label ("chance = majority class 50%"); every label takes the first free place
    (right or left of the plot, above or below its line) on a phone-sized plot, so no two labels overlap."""
    rates = sorted({(round(c[kind], 4), kind) for kind in BASELINE_NAMES for c in conditions
                    if c.get(kind) is not None}, reverse=True)
    groups: list[list[tuple[float, str]]] = []
    for rate, kind in rates:  # highest first: the top label sits above its line, the next below
        if groups and groups[-1][0][0] - rate < 0.01:
            groups[-1].append((rate, kind))
        else:
            groups.append([(rate, kind)])
    height = ROW_PX / PLOT_H * top  # a label's height in axis units; its width in pixels of a phone's plot
    taken: list[tuple] = []
    for group in groups:
        lines: dict[float, str] = {}
        for rate, kind in group:
            lines.setdefault(rate, kind)
        for rate, kind in lines.items():
            fig.add_hline(y=rate, line=dict(dash="dash", color=BASELINE_COLORS[kind], width=1.5))
        kinds = [kind for kind in BASELINE_NAMES if any(k == kind for _, k in group)]
        shown = list(dict.fromkeys(f"{rate:.0%}" for rate, _ in group))
        text = (" = ".join(BASELINE_NAMES[k] for k in kinds) + f" {shown[0]}" if len(shown) == 1 else
                " · ".join(f"{BASELINE_NAMES[k]} {rate:.0%}" for rate, k in group))
        width, rate = CHAR_PX * len(text) + 8, group[0][0]
        places = [(side, y0) for side in (1, 0) for y0 in (rate, group[-1][0] - height)]
        boxes = [((PLOT_W - width, PLOT_W) if side else (0, width)) + (y0, y0 + height) for side, y0 in places]
        free = [(p, b) for p, b in zip(places, boxes) if 0 <= b[2] and b[3] <= top
                and not any(_overlaps(b, t) for t in taken)]
        if free:
            (side, y0), box = free[0]
        else:  # no free place next to the line: nudged above every other label (or below, at the top)
            y0 = max((t[3] for t in taken), default=rate)
            y0 = y0 if y0 + height <= top else max(0.0, min((t[2] for t in taken), default=rate) - height)
            side, box = 1, (PLOT_W - width, PLOT_W, y0, y0 + height)
        taken.append(box)
        color = BASELINE_COLORS[kinds[0] if len(kinds) == 1 else "majority"]
        fig.add_annotation(text=text, x=side, xref="paper", xanchor="right" if side else "left", y=y0, yref="y",
                           yanchor="bottom", showarrow=False, font=dict(color=color, size=12),
                           bgcolor="rgba(255,255,255,0.8)", borderpad=1)


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
        _baseline_lines(fig, conditions, yaxis["range"][1])
    return _layout(fig, title, dict(title=xaxis_title), yaxis, barmode="group", scattermode="group")


def has_cost(conditions: list[dict]) -> bool:
    """Whether a cost-vs-quality chart means anything: label probabilities generate no tokens."""
    return any((c.get("completion_tokens") or 0) > 0 for c in conditions)


LABEL_PLACES = ("top center", "bottom center", "middle right", "middle left", "top right", "top left",
                "bottom right", "bottom left")


def _label_positions(points: list[tuple[float, float]], texts: list[str], xrange: list, yrange: list,
                     radius: float = 7, height: float = 16) -> list[str] | None:
    """A plotly textposition per point such that, on a phone-sized plot, no name covers another name or a marker
    and none leaves the plot (above, below, right, left of its point, then the corners); None where one finds no
    room. A larger screen only moves the points apart, so what fits on a phone fits everywhere."""
    px = [((x - xrange[0]) / (xrange[1] - xrange[0]) * PLOT_W, (y - yrange[0]) / (yrange[1] - yrange[0]) * PLOT_H)
          for x, y in points]
    taken = [(x - radius, x + radius, y - radius, y + radius) for x, y in px]  # every marker
    positions = []
    for (x, y), text in zip(px, texts):
        w, r = CHAR_PX * len(text), radius
        spans = {"top": (y + r, y + r + height), "bottom": (y - r - height, y - r),
                 "middle": (y - height / 2, y + height / 2)}
        across = {"center": (x - w / 2, x + w / 2), "right": (x + r, x + r + w), "left": (x - r - w, x - r)}
        for place in LABEL_PLACES:
            vertical, horizontal = place.split()
            box = across[horizontal] + spans[vertical]
            if -4 <= box[0] and box[1] <= PLOT_W + 16 and 0 <= box[2] and box[3] <= PLOT_H + 16 \
                    and not any(_overlaps(box, t) for t in taken):
                taken.append(box)
                positions.append(place)
                break
        else:
            return None
    return positions


def accuracy_vs_tokens(conditions: list[dict], metric: str | None = None) -> go.Figure:
    """Cost vs quality: mean completion tokens per answer against accuracy, one point per condition, each named
    beside its point where the names fit without overlapping; on a crowded chart each condition is a legend entry
    instead (colour: model, symbol: condition) and its name is in the hover text."""
    if not conditions or not has_cost(conditions):
        return empty_figure("No generated tokens: label probabilities score choices without writing")
    fig = go.Figure()
    yaxis, _, hover_fmt = _score_axis(conditions, metric)
    xaxis = dict(title="mean completion tokens per answer",
                 range=[0, max(c["completion_tokens"] for c in conditions) * 1.25 + 1])
    hover = ": %{y:" + hover_fmt + "} at %{x:.1f} tokens<extra></extra>"
    names = [c["label"].split(" · ")[0] for c in conditions]
    points = [(c["completion_tokens"], _metric(c)[0]) for c in conditions]
    positions = _label_positions(points, names, xaxis["range"], yaxis["range"])
    models = list(dict.fromkeys(c["model"] for c in conditions))
    if positions:
        for model in models:
            rows = [i for i, c in enumerate(conditions) if c["model"] == model]
            fig.add_scatter(name=short_model(model), mode="markers+text", x=[points[i][0] for i in rows],
                            y=[points[i][1] for i in rows], text=[names[i] for i in rows],
                            textposition=[positions[i] for i in rows], cliponaxis=False, marker=dict(size=12),
                            hovertemplate="%{text}" + hover)
    else:
        symbols = {name: SYMBOLS[i % len(SYMBOLS)] for i, name in enumerate(dict.fromkeys(names))}
        colors = qualitative.Plotly
        for c, name, (x, y) in zip(conditions, names, points):
            model = models.index(c["model"])
            fig.add_scatter(name=f"{name} · {short_model(c['model'])}", legendgroup=str(model), mode="markers",
                            x=[x], y=[y], customdata=[name], cliponaxis=False,
                            marker=dict(size=12, symbol=symbols[name], color=colors[model % len(colors)],
                                        opacity=0.85, line=dict(color="white", width=1)),
                            hovertemplate="%{customdata}" + hover)
    return _layout(fig, "Cost vs quality", xaxis, yaxis)


def k_sweep(conditions: list[dict], metric: str | None = None) -> go.Figure:
    """Accuracy against the number of few-shot examples, one line per strategy and model."""
    swept = [c for c in conditions if c["k"]]
    if len({c["k"] for c in swept}) < 2:
        return empty_figure("Sweep k (e.g. k_shot: [1, 3, 6]) to see this curve")
    fig = go.Figure()
    yaxis, _, hover_fmt = _score_axis(conditions, metric)
    line = lambda c: (c.get("variant"), c["strategy"], c["model"])  # noqa: E731  (variant: None without variants)
    for key in dict.fromkeys(line(c) for c in swept):
        rows = sorted((c for c in swept if line(c) == key), key=lambda c: c["k"])
        fig.add_scatter(name=f"{f'[{key[0]}] ' if key[0] else ''}{key[1]} · {short_model(key[2])}",
                        mode="lines+markers", x=[c["k"] for c in rows],
                        y=[_metric(c)[0] for c in rows], cliponaxis=False,
                        hovertemplate="k=%{x}: %{y:" + hover_fmt + "}<extra></extra>")
    if "accuracy" in conditions[0]:
        _baseline_lines(fig, conditions, yaxis["range"][1])
    what = "Accuracy" if "accuracy" in conditions[0] else yaxis["title"].split(" per item")[0]
    return _layout(fig, f"{what} by number of examples", dict(title="k (examples in the prompt)", dtick=1), yaxis)


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
    _baseline_lines(fig, rows, 1.12)
    return _layout(fig, "Self-consistency: accuracy by samples voted", dict(title="samples voted per item", dtick=1),
                   dict(title="accuracy (% of items)", tickformat=".0%", range=[0, 1.12], **RATE_TICKS))


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
                   dict(title="accuracy (% of items in the bin)", tickformat=".0%", range=[0, 1.05], **RATE_TICKS))


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


def search_rounds(result: dict) -> go.Figure:
    """A prompt search: each candidate's dev score by round (the best so far as a line), and at the right, apart
    from the rounds, the winner and the original on the held-out test split with their 95% CIs."""
    scored = [c for c in result["candidates"] if c["dev_score"] is not None]
    if not scored:
        return empty_figure("No candidate scored yet")
    rounds = max(result["budget"]["rounds"] or 0, max(c["round"] for c in scored))
    fig = go.Figure()
    fig.add_scatter(name="candidate (dev)", mode="markers", x=[c["round"] for c in scored],
                    y=[c["dev_score"] for c in scored], marker=dict(size=9, color="#2563eb", opacity=0.7),
                    customdata=[[c["id"], c["text"][:90] + ("…" if len(c["text"]) > 90 else "")] for c in scored],
                    hovertemplate="#%{customdata[0]}: %{y:.0%} on dev<br>%{customdata[1]}<extra></extra>")
    best, line = None, []
    for r in range(0, rounds + 1):
        here = [c["dev_score"] for c in scored if c["round"] == r]
        if here:
            best = max(here + ([best] if best is not None else []))
        if best is not None:
            line.append((r, best))
    fig.add_scatter(name="best so far (dev)", mode="lines", x=[r for r, _ in line], y=[b for _, b in line],
                    line=dict(color="#2563eb", shape="hv"), hoverinfo="skip")
    test = result.get("test")
    if test:
        sides = [(test["original"], "original (test)", "#6b7280", "square", 0.0)]
        if test.get("winner"):  # side by side, so equal scores do not hide one marker under the other
            sides = [(test["original"], "original (test)", "#6b7280", "square", -0.15),
                     (test["winner"], "winner (test)", "#dc2626", "star", 0.15)]
        for side, name, color, symbol, shift in sides:
            low, high = side["ci"]
            fig.add_scatter(name=name, mode="markers", x=[rounds + 1 + shift], y=[side["score"]],
                            marker=dict(size=13, color=color, symbol=symbol),
                            error_y=dict(type="data", symmetric=False, array=[high - side["score"]],
                                         arrayminus=[side["score"] - low], color=color),
                            hovertemplate=f"{name}: %{{y:.0%}} on {test['items']} held-out items "
                                          f"(95% CI {low:.0%}-{high:.0%})<extra></extra>")
        fig.add_vline(x=rounds + 0.5, line=dict(color="#9ca3af", dash="dot"))
    ticks = list(range(0, rounds + 2 if test else rounds + 1))
    labels = ["original"] + [f"round {r}" for r in range(1, rounds + 1)] + (["test"] if test else [])
    title = "Dev score by round; the winner judged on held-out test items" if test else "Dev score by round"
    return _layout(fig, title,
                   dict(title="round (dev split) · test (held out)", tickvals=ticks, ticktext=labels,
                        range=[-0.5, ticks[-1] + 0.5]),
                   dict(title="accuracy (% of items)" if result.get("metric") == "accuracy" else
                        f"{result.get('metric')} (mean per item)", tickformat=".0%", range=[0, 1.05], **RATE_TICKS))
