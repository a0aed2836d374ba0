"""Charts a stakeholder can read: titles, axis titles with units, legends clear of the plot, values on bars,
baselines on accuracy charts, and no chart where it means nothing."""
from prompt_lab.reporting import plots
from prompt_lab.reporting.report import baselines


def condition(label, accuracy, ci, model="default", tokens=0.0, chance=1 / 3, majority=0.42, k=0):
    return {"label": f"{label} · {model}", "model": model, "strategy": label.split(" ")[0], "k": k,
            "accuracy": accuracy, "accuracy_ci": ci, "chance": chance, "majority": majority,
            "completion_tokens": tokens}


def test_accuracy_bars_carry_values_ci_and_baselines():
    fig = plots.accuracy_bars([condition("zero_shot", 0.0, (0.0, 0.0)), condition("few_shot k=3", 0.25, (0.1, 0.45))])
    assert fig.layout.title.text == "Accuracy by condition"
    assert fig.layout.yaxis.title.text == "accuracy (% of items, 95% CI)" and fig.layout.yaxis.tickformat == ".0%"
    assert fig.layout.xaxis.title.text == "condition (strategy, k)"
    (bars,) = [t for t in fig.data if t.type == "bar"]
    assert list(bars.y) == [0.0, 0.25] and list(bars.error_y.array) == [0.0, 0.2]
    (labels,) = [t for t in fig.data if t.type == "scatter"]
    assert list(labels.text) == ["0%", "25%"]  # a 0% bar still says so
    assert list(labels.y) == [0.0, 0.45]  # written above the whisker, not across it
    lines = {round(s.y0, 3) for s in fig.layout.shapes}
    assert lines == {0.333, 0.42}
    notes = {a.text for a in fig.layout.annotations}
    assert notes == {"chance 33%", "majority class 42%"}
    assert fig.layout.legend.y < 0  # the legend sits under the plot, clear of the axis titles


def test_score_metrics_get_their_own_axis_and_no_baselines():
    bleu = {"label": "zero_shot · default", "model": "default", "strategy": "zero_shot", "k": 0, "score": 31.5,
            "score_ci": (20.0, 40.0), "completion_tokens": 12.0}
    fig = plots.accuracy_bars([bleu], metric="bleu")
    assert fig.layout.yaxis.title.text == "BLEU per item (0-100, 95% CI)" and fig.layout.yaxis.tickformat is None
    assert [t.text for t in fig.data if t.type == "scatter"] == [("31.5",)]
    assert fig.layout.shapes == ()
    assert plots.accuracy_bars([{**bleu, "score": 0.41, "score_ci": (0.3, 0.5)}], metric="rouge") \
        .layout.yaxis.title.text == "ROUGE-L F1 per item (0-1, 95% CI)"


def test_cost_chart_only_where_answers_cost_tokens():
    label_probs = [condition("zero_shot", 0.5, (0.3, 0.7))]
    assert not plots.has_cost(label_probs)
    empty = plots.accuracy_vs_tokens(label_probs)
    assert empty.data == () and "label probabilities" in empty.layout.annotations[0].text
    generated = [condition("zero_shot", 0.5, (0.3, 0.7), tokens=3.0), condition("cot", 0.6, (0.4, 0.8), tokens=80.0)]
    fig = plots.accuracy_vs_tokens(generated)
    assert fig.layout.xaxis.title.text == "mean completion tokens per answer"
    assert fig.layout.xaxis.range[1] > 80 * 1.2  # room for the point labels on the right


def test_calibration_and_loss_charts_name_their_axes():
    fig = plots.calibration([{"label": "zero_shot · default",
                              "calibration": [{"confidence": 0.5, "accuracy": 0.4, "count": 3}]}])
    assert fig.layout.xaxis.title.text == "confidence (probability of the chosen answer)"
    assert fig.layout.yaxis.title.text.startswith("accuracy") and fig.layout.legend.y < 0
    loss = plots.loss_curve([{"step": 1, "loss": 2.5}], [{"step": 1, "val_loss": 2.7}], "Job 1: loss by step")
    assert loss.layout.xaxis.title.text == "training step" and "loss" in loss.layout.yaxis.title.text


def test_strategy_bars_label_each_bar():
    stats = [{"model": "default", "strategy": "cot", "latency_s": 1.234, "latency_sd_s": 0.2, "generations": 3},
             {"model": "default", "strategy": "zero_shot", "latency_s": 0.1, "latency_sd_s": 0.0, "generations": 3}]
    fig = plots.strategy_bars(stats, "latency_s", "Latency", "seconds per answer", error="latency_sd_s", fmt=".2f")
    (labels,) = [t for t in fig.data if t.type == "scatter"]
    assert list(labels.x) == ["Zero-shot", "Chain-of-thought"] and list(labels.text) == ["0.10", "1.23"]
    assert fig.layout.yaxis.title.text == "seconds per answer"


def test_baselines_of_a_set_of_items():
    gold = ["Positive", "negative", "Negative", "Neutral", "Negative"]
    three = ["Positive", "Negative", "Neutral"]
    assert baselines(gold, [three] * 5) == {"chance": 1 / 3, "majority": 3 / 5, "majority_label": "negative"}
    # per-item choices: the chance of a 2-way item is 1/2, of a 4-way item 1/4
    assert baselines(["a", "b"], [["a", "b"], ["a", "b", "c", "d"]])["chance"] == (1 / 2 + 1 / 4) / 2
    assert baselines(["12", "7"], [None, None])["chance"] is None  # free answers: no chance rate
    assert baselines([], []) == {"chance": None, "majority": None, "majority_label": None}
