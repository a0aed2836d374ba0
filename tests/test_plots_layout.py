"""Charts stay readable on a projector and on a ~390 px phone: baseline labels never overlap (rates within a point
share one label), point names on the cost chart never pile up, score axes start at 0 with no tick above the
scale's top, axis titles push the margins instead of being cut off, and the legend sits clear of the x title.

Sizes are judged on the smallest view the charts are drawn for: a plot of about 260 x 170 px (a phone; the app
keeps 100 px above a titled plot)."""
import math

from prompt_lab.reporting import plots
from prompt_lab.reporting.report import baselines, condition_label

PLOT_W, PLOT_H, APP_TOP = 260, 170, 100
LABEL_PX, CHAR_PX = 18, 6.6  # a 12 px label with its padding; a 12-13 px character
SENTIMENT = ["Positive", "Negative", "Neutral"]
MODEL = "openai:Qwen2.5-0.5B-Instruct@http://10.0.0.5:8000/v1"


def condition(strategy, accuracy, ci, model="default", k=0, tokens=0.0, gold=None, choices=SENTIMENT, **extra):
    """A condition as run_report builds it (label, baselines of its gold answers, accuracy and its CI)."""
    gold = gold or ["Positive"] * 3 + ["Negative"] * 3 + ["Neutral"] * 2  # chance 1/3, majority 3/8
    return {"label": condition_label(strategy, model, k, 0), "strategy": strategy, "model": model, "k": k, "seed": 0,
            "items": len(gold), "accuracy": accuracy, "accuracy_ci": ci, "strict_accuracy": accuracy,
            "completion_tokens": tokens, "latency_ms": 120.0, **baselines(gold, [choices] * len(gold)), **extra}


def bleu(strategy, score, ci, k=0, tokens=14.0):
    return {"label": condition_label(strategy, "default", k, 0), "strategy": strategy, "model": "default", "k": k,
            "seed": 0, "items": 8, "score": score, "score_ci": ci, "completion_tokens": tokens, "latency_ms": 300.0,
            "chance": None, "majority": None, "majority_label": None}


def label_boxes(fig):
    """(x0, x1, y0, y1) of each annotation on a phone's plot: x in pixels, y in axis units."""
    height = LABEL_PX / PLOT_H * fig.layout.yaxis.range[1]
    boxes = []
    for a in fig.layout.annotations:
        width = CHAR_PX * len(a.text) + 8
        x0 = a.x * PLOT_W - {"right": width, "center": width / 2}.get(a.xanchor, 0)
        y0 = a.y - {"top": height, "middle": height / 2}.get(a.yanchor, 0)
        boxes.append((x0, x0 + width, y0, y0 + height))
    return boxes


def assert_apart(fig):
    boxes = label_boxes(fig)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]), (
                [x.text for x in fig.layout.annotations], boxes)


def test_close_baselines_get_labels_that_do_not_overlap():
    # chance 33% and majority 37.5%, either way round (majority under chance when the gold is near-uniform over
    # items with more choices than labels)
    run = [condition("zero_shot", 0.55, (0.4, 0.7)), condition("few_shot", 0.6, (0.45, 0.75), k=3)]
    fig = plots.accuracy_bars(run)
    assert {a.text for a in fig.layout.annotations} == {"chance 33%", "majority class 38%"}
    assert_apart(fig)
    fig = plots.accuracy_bars([{**c, "chance": 0.375, "majority": 0.34} for c in run])
    assert {a.text for a in fig.layout.annotations} == {"chance 38%", "majority class 34%"}
    assert_apart(fig)
    # two runs on different data in one pair chart: four close rates, still four readable labels
    other = ["Positive"] * 4 + ["Negative"] * 3 + ["Neutral"] * 3
    pair = [condition("zero_shot", 0.5, (0.4, 0.6)), {**condition("zero_shot", 0.6, (0.5, 0.7), gold=other),
                                                      "chance": 0.35}]
    fig = plots.accuracy_bars(pair, name=lambda c: c["label"])
    assert len(fig.layout.annotations) == 4
    assert_apart(fig)
    # the same on the k sweep and the self-consistency chart
    sweep = [condition("few_shot", 0.5 + k / 50, (0.4, 0.7), k=k, chance=0.375, majority=0.34) for k in (1, 3, 6)]
    assert_apart(plots.k_sweep(sweep))
    voted = [condition("cot", 0.6, (0.4, 0.8), chance=0.375, majority=0.34,
                       self_consistency={"curve": [{"k": k, "accuracy": 0.5 + k / 30} for k in range(1, 6)]})]
    assert_apart(plots.self_consistency(voted))


def test_equal_baselines_share_one_label():
    balanced = ["Positive", "Negative"] * 4  # two labels, half each: chance = majority = 50%
    fig = plots.accuracy_bars([condition("zero_shot", 0.62, (0.5, 0.75), gold=balanced,
                                         choices=["Positive", "Negative"])])
    assert [a.text for a in fig.layout.annotations] == ["chance = majority class 50%"]
    assert {round(s.y0, 3) for s in fig.layout.shapes} == {0.5}
    near = [{**condition("zero_shot", 0.62, (0.5, 0.75)), "chance": 0.5, "majority": 0.505}]  # within a point
    assert [a.text for a in plots.accuracy_bars(near).layout.annotations] == ["chance = majority class 50%"]


def top_tick(axis) -> float:
    """The highest tick plotly draws on a linear axis with pinned ticks."""
    if axis.tickvals:
        return max(axis.tickvals)
    assert axis.dtick is not None, "ticks are not pinned: autoticks may draw one above the scale's top"
    start = axis.tick0 or 0
    return start + math.floor((axis.range[1] - start) / axis.dtick + 1e-9) * axis.dtick


def test_score_axes_start_at_zero_and_rates_stop_at_the_top():
    zeros = [bleu("zero_shot", 0.0, (0.0, 0.0)), bleu("few_shot", 0.0, (0.0, 0.0), k=1),
             bleu("few_shot", 0.0, (0.0, 0.0), k=3, tokens=13.0)]
    for fig in (plots.accuracy_bars(zeros, "BLEU by condition", metric="bleu"),
                plots.accuracy_vs_tokens(zeros, "bleu"), plots.k_sweep(zeros, "bleu")):
        low, high = fig.layout.yaxis.range
        assert low == 0 and high > 0, fig.layout.title.text  # never -1..1 around an all-zero score
    assert plots.k_sweep(zeros, "bleu").layout.title.text == "BLEU by number of examples"
    high_bleu = plots.accuracy_bars([bleu("zero_shot", 95.0, (90.0, 99.5))], metric="bleu").layout.yaxis
    assert high_bleu.range[0] == 0 and 99.5 < high_bleu.range[1] <= 115 and top_tick(high_bleu) <= 100
    rouge = [{**bleu("zero_shot", 0.0, (0.0, 0.0))}]
    rates = [condition("zero_shot", 1.0, (1.0, 1.0), tokens=5.0), condition("cot", 0.9, (0.8, 1.0), tokens=60.0)]
    calibrated = [{**rates[0], "calibration": [{"confidence": 0.95, "accuracy": 1.0, "count": 8}]}]
    voted = [{**rates[1], "self_consistency": {"curve": [{"k": 1, "accuracy": 0.9}, {"k": 3, "accuracy": 1.0}]}}]
    for fig in (plots.accuracy_bars(rates), plots.accuracy_vs_tokens(rates), plots.accuracy_bars(rouge, metric="rouge"),
                plots.calibration(calibrated), plots.self_consistency(voted)):
        axis = fig.layout.yaxis
        assert axis.range[0] == 0 and axis.range[1] >= 1 and top_tick(axis) <= 1 + 1e-9, fig.layout.title.text


def figures():
    many = [condition(s, 0.4 + i / 20, (0.3, 0.6), model=m, k=k)
            for m in ("default", MODEL) for i, (s, k) in enumerate((("zero_shot", 0), ("few_shot", 1), ("few_shot", 3),
                                                                     ("few_shot", 6), ("cot", 0), ("cot", 3)))]
    costly = [condition("zero_shot", 0.5, (0.4, 0.6), tokens=4.0), condition("cot", 0.7, (0.6, 0.8), tokens=90.0)]
    calibrated = [condition("zero_shot", 0.5, (0.3, 0.7), calibration=[
        {"confidence": c / 10 + 0.05, "accuracy": c / 12, "count": 4} for c in range(3, 10)]),
        condition("few_shot", 0.6, (0.4, 0.8), k=3, calibration=[
            {"confidence": c / 10 + 0.03, "accuracy": c / 10, "count": 3} for c in range(4, 10)])]
    voted = [condition("cot", 0.6, (0.4, 0.8), self_consistency={"curve": [{"k": 1, "accuracy": 0.5},
                                                                           {"k": 3, "accuracy": 0.6}]})]
    stats = [{"model": m, "strategy": s, "latency_s": 0.4, "latency_sd_s": 0.1, "completion_tokens": 9.0,
              "generations": 8} for m in ("default", MODEL) for s in ("zero_shot", "few_shot", "cot")]
    return {"bars": plots.accuracy_bars(many[:3]), "many bars": plots.accuracy_bars(many),
            "cost": plots.accuracy_vs_tokens(costly), "sweep": plots.k_sweep(many[1:4]),
            "calibration": plots.calibration(calibrated), "self-consistency": plots.self_consistency(voted),
            "latency": plots.strategy_bars(stats, "latency_s", "Latency", "seconds per answer", error="latency_sd_s"),
            "loss": plots.loss_curve([{"step": s, "loss": 3 / s} for s in range(1, 9)],
                                     [{"step": 4, "val_loss": 1.0}], "Job 1: loss by step")}


def test_axis_titles_push_the_margins_and_the_legend_clears_the_x_title():
    for name, fig in figures().items():
        layout = fig.layout
        assert layout.xaxis.automargin and layout.yaxis.automargin, name  # tick labels and titles never cut off
        plot = layout.height - APP_TOP - layout.margin.b  # the plot's height in the app
        assert plot >= 150, name  # the chart grows for what it needs below the plot, the plot keeps its size
        below = -layout.legend.y * plot  # where the legend starts under the plot, in pixels
        assert below >= 60, name  # under the tick labels (~22 px) and the x title with its standoff (~35 px)
        assert layout.margin.b >= below + 21, name  # and the bottom margin holds at least one legend row
        assert layout.xaxis.title.font.size <= 14 and layout.yaxis.title.font.size <= 14, name
    # on a phone 6 conditions' names turn (30°): the legend goes lower, the margin holds two legend rows
    many = figures()["many bars"].layout
    plot = many.height - APP_TOP - many.margin.b
    assert -many.legend.y * plot >= 90 and many.margin.b >= -many.legend.y * plot + 2 * 21
    calibration = figures()["calibration"].layout
    assert calibration.xaxis.title.text == "confidence (probability of the chosen answer)"
    assert calibration.margin.b >= -calibration.legend.y * (calibration.height - APP_TOP - calibration.margin.b) + 42


def test_cost_chart_names_do_not_pile_up():
    # two cheap conditions close together and one costly one: names written beside their points, not all above
    near = [condition("zero_shot", 0.5, (0.4, 0.6), tokens=3.0), condition("few_shot", 0.56, (0.4, 0.7), k=3,
                                                                           tokens=5.0),
            condition("cot", 0.6, (0.5, 0.7), tokens=80.0)]
    fig = plots.accuracy_vs_tokens(near)
    (points,) = fig.data
    assert list(points.text) == ["zero_shot", "few_shot k=3", "cot"]
    positions = points.textposition
    assert not isinstance(positions, str) and len(set(positions)) > 1  # the two close names go different ways
    # six conditions of two models in a cluster: no room beside the points, so each condition is a legend entry
    # (colour: model, symbol: condition) and its name is in the hover text
    crowd = [condition(s, acc, (0.4, 0.7), model=m, k=k, tokens=t) for m, shift in (("default", 0), (MODEL, -0.02))
             for s, k, acc, t in (("zero_shot", 0, 0.55 + shift, 4.0), ("few_shot", 3, 0.6 + shift, 4.5),
                                  ("cot", 0, 0.7 + shift, 120.0))]
    fig = plots.accuracy_vs_tokens(crowd)
    names = [t.name for t in fig.data]
    for c in crowd:
        assert any(n.startswith(c["label"].split(" · ")[0] + " · ") for n in names), (c["label"], names)
    assert all("text" not in t.mode for t in fig.data) and len(names) == 6
    assert len({t.marker.symbol for t in fig.data}) == 3 and len({t.marker.color for t in fig.data}) == 2
    assert all(t.customdata[0] in t.name and "%{customdata}" in t.hovertemplate for t in fig.data)
    assert fig.layout.xaxis.range[1] > 120 * 1.2
