"""Shareable reports (issue 16): real runs in a real run log (evaluations with label_probs and generate on the shipped
sentiment data, a compare, a tune, a hostile run, a synthetic run of 20,000 items) exported as HTML and Markdown.

Each HTML report is opened in headless Chromium with every non-file request aborted: its plotly charts must draw,
its screenshot must not be blank, nothing may run that the report did not write, and it must hold the figures the
CLI's report (reporting.text.report_lines) prints for the same run. Screenshots and reports are kept under
test-artifacts/reports/ to look at; measurements.json there holds the sizes and export times.
"""
import json
import os
import random
import re
import time
from pathlib import Path

import pytest

from conftest import ARTIFACTS, ROOT
from test_browser import browser  # noqa: F401 - the module's headless Chromium

from prompt_lab.access import visitors
from prompt_lab.compare import compare
from prompt_lab.errors import PromptLabError
from prompt_lab.evaluation.evaluate import evaluate
from prompt_lab.evaluation.experiments import EvalSpec
from prompt_lab.models import GenerationParams
from prompt_lab.prompts.templates import get_template, parse_template
from prompt_lab.reporting.export import (export_report, gather, job_run_id, report_filename, report_html,
                                         report_markdown, write_report)
from prompt_lab.reporting.html_page import plotly_script
from prompt_lab.reporting.pairs import UnpairableError, compare_runs
from prompt_lab.reporting.summary import eval_report
from prompt_lab.reporting.text import pair_lines, report_lines
from prompt_lab.runlog.store import (connect, finish_run, log_generations, save_template_version, start_run)

OUT = ARTIFACTS / "reports"
SENTIMENT = ROOT / "experiments/data/sentiment.csv"
COLUMNS = {"variables": {"review": "review"}, "target": "label"}
FIVE_MB = 5_000_000  # decimal: stricter than 5 MiB
MEASURED: dict = {}


def measure(key: str, value) -> None:
    MEASURED[key] = value
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "measurements.json").write_text(json.dumps(MEASURED, indent=2))


@pytest.fixture(scope="module")
def lab(tiny_model_dir, tmp_path_factory):
    """One run log for the module, with an evaluation by label probabilities (100 items, zero_shot and few_shot), one
    by generation (the first 40 items, same conditions) and a compare."""
    home = tmp_path_factory.mktemp("report-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPT_LAB_HOME", str(home))
        session_home = Path(os.environ["PROMPT_LAB_HOME"])  # conftest's session home: its converted model cache
        (home / "models").symlink_to(session_home / "models", target_is_directory=True)
        model = str(tiny_model_dir)
        probs = evaluate(EvalSpec(template="sentiment", dataset=str(SENTIMENT), columns=COLUMNS, models=[model],
                                  strategies=["zero_shot", "few_shot"], method="label_probs", k_shot=[3]),
                         command="python -m prompt_lab eval experiments/sentiment_label_probs.yaml")
        generated = evaluate(EvalSpec(template="sentiment", dataset=str(SENTIMENT), columns=COLUMNS, models=[model],
                                      strategies=["zero_shot", "few_shot"], k_shot=[3], max_new_tokens=6, limit=40,
                                      batch_size=20))
        compared = compare("sentiment", {"review": "The soup was cold, the bread was warm."}, models=[model],
                           strategies=["zero_shot", "few_shot", "cot"], params=GenerationParams(max_new_tokens=8)).run_id
        yield {"home": home, "model": model, "probs": probs, "generated": generated, "compare": compared}


def open_offline(browser, html: str, name: str, width: int = 1280) -> dict:
    """Save the report, open it from disk with every other request aborted, and return what the page shows: its
    plots (SVG marks drawn in each), text, console errors, dialogs, blocked requests, screenshot colours."""
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.html"
    path.write_text(html, encoding="utf-8")
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    seen = {"errors": [], "dialogs": [], "blocked": []}
    page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
               else (seen["blocked"].append(r.request.url), r.abort()))
    page.goto(path.as_uri())
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0 && "
                           "[...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('svg.main-svg'))",
                           timeout=20_000)
    page.wait_for_timeout(300)
    seen["marks"] = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(p =>
        p.querySelectorAll('.bars path, .scatterlayer .trace path, .scatterlayer .point, .scatterlayer text').length)""")
    seen["text"] = page.evaluate("() => document.body.textContent")
    seen["visible"] = page.inner_text("body")
    seen["legends"] = page.locator(".legendtext").all_text_contents()
    seen["overflow"] = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    seen["pwned"] = page.evaluate("() => [typeof window.__pwned, document.scripts.length, "
                                  "document.querySelectorAll('[onerror], [onload], [onmouseover], img, iframe').length]")
    shot = OUT / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    seen["colours"] = len(Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 24) or [])
    context.close()
    return seen


def assert_renders(seen: dict, charts: int) -> None:
    assert len(seen["marks"]) >= charts and all(n > 0 for n in seen["marks"]), seen["marks"]
    assert seen["colours"] > 200  # text, bars, lines and tables: not a blank page
    assert seen["errors"] == [] and seen["dialogs"] == [] and seen["blocked"] == []


CI = re.compile(r"(\d+\.\d%) \[\s*(\d+\.\d%),\s*(\d+\.\d%)\]")
FIGURE = re.compile(r"-?\d+(?:\.\d+)?%?")


def cli_rows(run_id: int) -> list[tuple[str, list[str], str]]:
    """(condition label, every figure, "acc [lo, hi]") of each row of the CLI's `eval` report."""
    report = eval_report(run_id)
    lines = report_lines(report)
    out = []
    for row in report.rows:
        line = next(line for line in lines if line.startswith(row.condition))
        acc, low, high = CI.search(line).groups()
        out.append((row.condition, FIGURE.findall(line[len(row.condition):]), f"{acc} [{low}, {high}]"))
    return out


def assert_markdown_matches_cli(markdown: str, run_id: int) -> None:
    """Each row of the run's table (in a pair report: the table under **Run N**) has the CLI row's figures."""
    section = markdown[max(markdown.find(f"\n**Run {run_id}**\n"), 0):]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    for label, figures, _ in cli_rows(run_id):
        row = next(line for line in table if line.startswith(f"| {label} |"))
        assert FIGURE.findall(row[len(label) + 4:]) == figures, (row, figures)


# ------------------------------------------------------------------ the four kinds


def test_an_evaluation_report_opens_offline_with_its_charts_and_the_logged_numbers(lab, browser):
    for key in ("probs", "generated"):
        run_id = lab[key]
        started = time.perf_counter()
        html = report_html([run_id])
        measure(f"export_s_eval_{key}", round(time.perf_counter() - started, 3))
        measure(f"html_bytes_eval_{key}", len(html.encode()))
        assert html.count("<script") == 3 and html.count(plotly_script()[0]) == 1  # plotly.js once, data, render
        seen = open_offline(browser, html, f"eval-{key}")
        assert_renders(seen, 2)
        for label, _, figures in cli_rows(run_id):
            assert figures in seen["visible"], (label, figures)  # accuracy [95% CI] as `eval` prints it
        items = 100 if key == "probs" else 40
        assert f"Evaluation run {run_id}: template sentiment on sentiment.csv ({items} items)" in seen["visible"]
        assert f"python -m prompt_lab report {run_id} -o report.html" in seen["visible"]
        assert "chance" in seen["visible"] and "majority" in seen["visible"] and "Per-class scores" in seen["visible"]
        assert "No clear difference between" in seen["visible"] or " is better than " in seen["visible"]
        phone = open_offline(browser, html, f"eval-{key}-phone", width=390)
        assert_renders(phone, 2)
        assert phone["overflow"] <= 0  # wide tables scroll inside their own box; the page does not
    probs = gather([lab["probs"]])
    assert probs.runs[0].repeat == "python -m prompt_lab eval experiments/sentiment_label_probs.yaml"
    assert "template: sentiment" in probs.runs[0].spec_file and "label_probs" in probs.runs[0].spec_file
    assert probs.runs[0].template_text == get_template("sentiment").to_yaml()  # the exact version it used
    assert probs.runs[0].models[0].revision.startswith("files:")
    generated = gather([lab["generated"]])  # run from the app (no command logged): repeated from its experiment file
    assert generated.runs[0].repeat == "python -m prompt_lab eval experiment.yaml"
    assert generated.runs[0].dataset_items == 40 and generated.runs[0].decoding["max_new_tokens"] == "6"
    for report in (probs, generated):
        per_condition = {}
        for s in report.samples:
            per_condition.setdefault(s.condition, []).append(s.correct)
        assert len(per_condition) == 2 and all(0 < len(v) <= 30 for v in per_condition.values())
        for verdicts in per_condition.values():  # wrong ones first
            assert verdicts == sorted(verdicts, key=lambda c: c is not False)


def test_a_compare_report_shows_every_answer_with_token_and_latency_charts(lab, browser):
    run_id = lab["compare"]
    html = report_html([run_id])
    seen = open_offline(browser, html, "compare")
    assert_renders(seen, 2)
    report = gather([run_id])
    assert report.kind == "compare" and len(report.samples) == 3 and report.evals == []
    assert report.runs[0].repeat.startswith("python -m prompt_lab compare --template sentiment --var ")
    assert report.runs[0].repeat in seen["visible"]
    assert "The soup was cold, the bread was warm." in seen["visible"]
    assert "Completion tokens by strategy and model" in seen["text"] and "Latency by strategy and model" in seen["text"]
    markdown = report_markdown([run_id])
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" · ")[0] for r in rows[1:]] == ["| zero_shot", "| few_shot", "| cot"]


def test_a_pair_report_pairs_by_content_and_says_the_verdicts_in_words(lab, browser):
    a, b = lab["probs"], lab["generated"]
    html = report_html([a, b])
    seen = open_offline(browser, html, "pair")
    assert_renders(seen, 1)
    report = gather([a, b])
    pairs = compare_runs(a, b)
    assert report.kind == "pair" and report.pairs.paired == pairs.paired == 40
    assert f"Evaluation runs {a} and {b} compared on the same 40 items" in seen["visible"]
    for line in pair_lines(pairs):  # each side's accuracy and CI on the paired items, as `pair` prints them
        for acc, low, high in CI.findall(line):
            assert f"{acc} [{low}, {high}]" in seen["visible"]
    assert len(report.verdicts) == 2 and all("on the same 40 items" in v.detail for v in report.verdicts)
    assert f"python -m prompt_lab pair {a} {b}" in seen["visible"]
    markdown = report_markdown([a, b])
    for run_id in (a, b):
        assert_markdown_matches_cli(markdown, run_id)
    for line in pair_lines(pairs):
        if "difference A - B" in line:
            assert line.split("·")[0].strip() in markdown  # "difference A - B +x.x points [lo, hi]"


def test_a_tune_report_shows_base_vs_tuned_and_the_loss_curve(lab, browser):
    from prompt_lab.tuning import jobs
    from prompt_lab.tuning.spec import TuneSpec

    started = time.perf_counter()
    spec = TuneSpec(template="sentiment-codes", dataset=str(ROOT / "experiments/data/sentiment_codes.csv"),
                    columns={"variables": {"review": "review"}, "target": "code"}, model=lab["model"], max_steps=4,
                    batch_size=4, eval_steps=2, save_steps=2, limit=24, max_seq_len=128)
    job = jobs.wait(jobs.submit(spec), timeout_s=300)
    measure("tune_job_s", round(time.perf_counter() - started, 1))
    assert job["status"] == "completed", job["error"]
    run_id = job_run_id(job["id"])
    assert run_id == job["eval_run_id"]
    report = gather([run_id])
    assert report.kind == "tune" and report.tune.job_id == job["id"] and report.tune.losses
    assert report.runs[0].repeat == "python -m prompt_lab tune tune.yaml" and "sentiment-codes" in report.runs[0].spec_file
    assert report.verdicts[0].detail.startswith("tuned · zero_shot minus base · zero_shot")
    seen = open_offline(browser, report_html([run_id]), "tune")
    assert_renders(seen, 2)
    assert f"Job {job['id']}: loss by step" in seen["text"] and "Base vs tuned on the validation split" in seen["text"]
    assert {"training loss", "validation loss"} <= set(seen["legends"])
    markdown = report_markdown([run_id])
    assert_markdown_matches_cli(markdown, run_id)
    assert f"job {job['id']}" in markdown and "train_loss" in markdown


def test_the_markdown_report_has_the_cli_reports_figures(lab):
    for key in ("probs", "generated"):
        run_id = lab[key]
        markdown = report_markdown([run_id])
        assert_markdown_matches_cli(markdown, run_id)
        assert f"**Run ids**: {run_id}" in markdown and f"`python -m prompt_lab report {run_id} -o report.html`" in markdown
        assert "<" not in markdown.replace("&lt;", "")  # nothing a renderer would take for HTML
    OUT.mkdir(parents=True, exist_ok=True)
    written = write_report([lab["probs"]], OUT / "eval-probs.md")
    assert written.read_text().startswith("### Evaluation run")
    assert report_filename([3, 7], "md") == "prompt-lab-runs-3-7.md"
    text, name = export_report([lab["probs"]], "html")
    assert name == f"prompt-lab-run-{lab['probs']}.html" and text.startswith("<!DOCTYPE html>")


# ------------------------------------------------------------------ hostile input and size


HOSTILE_TEMPLATE = """
name: hostile
description: "</script><script>alert('description')</script>"
instruction: "</script><script>window.__pwned = 1; alert('instruction')</script> Pick one of: {{ choices|join(', ') }}."
variables: [review]
input: "Review: {{ review }} <img src=x onerror=\\"alert('input')\\">"
choices: [Positive, Negative, "<b onmouseover=alert('choice')>Neutral</b>"]
answer: {type: choice}
examples:
  - inputs: {review: "</textarea></title><script>alert('example')</script>"}
    output: Positive
"""
PAYLOADS = ["</script><script>window.__pwned = 2; alert('review')</script>",
            "\"quoted\" 'single' & <!-- not a comment --> ]]> {{ 7 * 7 }}",
            "line one\nline two <img src=x onerror=\"window.__pwned = 3; alert('newline')\">",
            "<svg onload=alert('svg')></svg> `code` | pipe | [link](javascript:alert(1))"]


def rendered_markdown(text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def test_a_hostile_run_exports_without_running_anything(lab, browser, tmp_path):
    import csv

    template = parse_template(HOSTILE_TEMPLATE)
    hostile_model = tmp_path / "<img src=x onerror=alert('model')>\"'"  # a folder name is the model's legend name
    hostile_model.symlink_to(lab["model"], target_is_directory=True)
    dataset = tmp_path / "<svg onload=alert('dataset')>.csv"
    labels = ["Positive", "Negative", "<b onmouseover=alert('choice')>Neutral</b>"]
    with open(dataset, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "label"])
        for i in range(12):
            writer.writerow([PAYLOADS[i % len(PAYLOADS)] + f" #{i}", labels[i % 3]])
    run_id = evaluate(EvalSpec(template="hostile", dataset=str(dataset), columns=COLUMNS, models=[str(hostile_model)],
                               strategies=["zero_shot", "few_shot"], k_shot=[1], max_new_tokens=4),
                      template=template)
    compared = compare(template, {"review": PAYLOADS[0] + "\n" + PAYLOADS[2]}, models=[str(hostile_model)],
                       strategies=["zero_shot", "cot"], params=GenerationParams(max_new_tokens=4)).run_id
    for name, ids in (("hostile-eval", [run_id]), ("hostile-compare", [compared])):
        html = report_html(ids)
        assert "</script><script>window.__pwned" not in html and "<img src=x" not in html
        seen = open_offline(browser, html, name)
        assert_renders(seen, 1)
        assert seen["pwned"] == ["undefined", 3, 0]  # our three scripts, no handler attributes, no image
        assert PAYLOADS[0] in seen["text"]  # shown as text, not run
        assert "</script><script>window.__pwned = 1; alert('instruction')</script>" in seen["text"]
        assert any("<img src=x onerror=alert('model')>" in t for t in seen["legends"])  # in the chart, as text
        rendered = rendered_markdown(report_markdown(ids))  # as GitHub would (HTML allowed), before its sanitizer
        assert not re.search(r"<(script|img|svg|b |iframe)", rendered) and "href=" not in rendered, rendered
    assert "<svg onload=alert('dataset')>.csv" in open_offline(browser, report_html([run_id]), "hostile-eval")["text"]


def log_synthetic_run(name: str, conditions: list[tuple[str, int, str, float]], items: int, text: int = 120) -> int:
    """An evaluation run logged directly (no model): each condition (strategy, k, model, skill) answers `items` items
    right at the rate `skill`, with reviews and outputs of about `text` characters."""
    template = get_template("sentiment")
    rng = random.Random(0)
    spec = EvalSpec(template="sentiment", dataset=f"{name}.csv", columns=COLUMNS,
                    strategies=list(dict.fromkeys(c[0] for c in conditions)),
                    models=list(dict.fromkeys(c[2] for c in conditions)), k_shot=[3])
    with connect() as db:
        save_template_version(db, template.name, template.content_hash, template.to_yaml())
        run_id = start_run(db, kind="eval", template_name=template.name, template_hash=template.content_hash,
                           models=spec.models, strategies=spec.strategies, params=spec.to_dict(),
                           options={"dataset": f"{name}.csv", "dataset_hash": "0123456789abcdef", "items": items,
                                    "metric": "accuracy", "warnings": []},
                           command=f"python -m prompt_lab eval experiments/{name}.yaml")
        rows = []
        for strategy, k, model, skill in conditions:
            for i in range(items):
                gold = ("Positive", "Negative", "Neutral")[i % 3]
                answer = gold if rng.random() < skill else ("Negative" if gold == "Positive" else "Positive")
                review = (f"Review {i}: it did what the box said, more or less, for a while. " * 40)[:text]
                rows.append({"strategy": strategy, "model_spec": model, "model_revision": "files:0123456789ab",
                             "k_shot": k, "seed": 0, "item_index": i, "sample_index": 0, "target": gold,
                             "variables_json": json.dumps({"review": review}), "item_hash": f"{i:016x}",
                             "prompt": "Read the review and decide the writer's overall feeling. " * 8 + review,
                             "output": (f"Thinking <it> over & over. " * 200)[:text] + f" The answer is {answer}.",
                             "answer": answer, "strict_answer": answer, "correct": int(answer == gold),
                             "correct_strict": int(answer == gold), "score": float(answer == gold),
                             "completion_tokens": 6, "latency_ms": 120.0, "template_name": template.name,
                             "template_hash": template.content_hash})
        log_generations(db, run_id, rows)
        finish_run(db, run_id)
    return run_id


def test_a_report_of_twenty_thousand_items_stays_small(lab, browser):
    """Two conditions x 20,000 items: the report samples, it never lists every row."""
    run_id = log_synthetic_run("big_reviews", [("zero_shot", 0, "default", 0.62), ("few_shot", 3, "default", 0.70)],
                               20_000)
    started = time.perf_counter()
    html = report_html([run_id])
    measure("export_s_20000_items", round(time.perf_counter() - started, 2))
    size, plotly_js = len(html.encode()), len(plotly_script()[0].encode())
    measure("html_bytes_20000_items", size)
    measure("html_bytes_plotly_js", plotly_js)
    assert size < FIVE_MB
    assert size - plotly_js < 200_000  # the report's own part does not grow with the items
    report = gather([run_id])
    assert len(report.samples) == 60 and sum(s.correct is False for s in report.samples) == 60  # wrong ones first
    seen = open_offline(browser, html, "eval-20000-items")
    assert_renders(seen, 1)
    for _, _, figures in cli_rows(run_id):
        assert figures in seen["visible"]
    markdown = report_markdown([run_id])
    assert_markdown_matches_cli(markdown, run_id)
    measure("markdown_bytes_20000_items", len(markdown.encode()))


def test_many_conditions_with_long_texts_stay_small_too(lab, browser):
    """12 conditions (3 strategies x 2 k x 2 models) with 2,000-character outputs full of `<` and `&`: the sample
    shrinks to fit, every condition keeps at least one item."""
    conditions = [(strategy, k, model, 0.5) for model in ("default", "other-model") for strategy, k in
                  (("zero_shot", 0), ("cot", 0), ("few_shot", 1), ("few_shot", 3), ("few_shot_cot", 1),
                   ("few_shot_cot", 3))]
    run_id = log_synthetic_run("long_outputs", conditions, 400, text=2_000)
    html = report_html([run_id])
    size = len(html.encode())
    measure("html_bytes_12_conditions_long_texts", size)
    assert size < FIVE_MB and size - len(plotly_script()[0].encode()) < 200_000
    seen = open_offline(browser, html, "eval-12-conditions")
    assert_renders(seen, 1)
    assert seen["text"].count("items shown,") == 12 and "left out to keep this file small" in seen["text"]


# ------------------------------------------------------------------ refusals


def test_reports_refuse_what_they_cannot_report_in_words(lab, tmp_path):
    with pytest.raises(PromptLabError, match=r"^there is no run 999999 in the run log$"):
        gather([999999])
    with visitors.acting_as(visitors.Visitor("anon:someone", "someone else")):  # another visitor's run: the same words
        with pytest.raises(PromptLabError, match=rf"^there is no run {lab['probs']} in the run log$"):
            report_html([lab["probs"]])
        with pytest.raises(PromptLabError, match=r"there is no job"):
            job_run_id(1)
    with pytest.raises(PromptLabError, match=r"got 3 run ids \(1, 2, 3\)"):
        gather([1, 2, 3])
    with pytest.raises(PromptLabError, match=r"name a run id"):
        gather([])
    with pytest.raises(PromptLabError, match=rf"got run {lab['probs']} twice"):
        gather([lab["probs"], lab["probs"]])
    with pytest.raises(PromptLabError, match=rf"run {lab['compare']} is a compare run and run {lab['probs']} is an "
                                             r"evaluation run: a report of two runs pairs two evaluation runs"):
        report_markdown([lab["compare"], lab["probs"]])
    with pytest.raises(PromptLabError, match=r"report format 'pdf' is not one of: html, md"):
        export_report([lab["probs"]], "pdf")
    other = tmp_path / "other.csv"
    other.write_text("review,label\n" + "".join(f"Other review {i},Positive\n" for i in range(12)))
    unrelated = evaluate(EvalSpec(template="sentiment", dataset=str(other), columns=COLUMNS, models=[lab["model"]],
                                  method="label_probs"))
    with pytest.raises(UnpairableError, match=rf"runs {lab['probs']} and {unrelated} cannot be paired"):
        report_html([lab["probs"], unrelated])


def test_scored_and_unfinished_runs_export_too(lab, browser):
    """A BLEU-scored run (no right or wrong per item: lowest scores first, no paired test) and a run with no rows yet."""
    scored = evaluate(EvalSpec(template="translate_fr", dataset=str(ROOT / "experiments/data/translate_fr.jsonl"),
                               models=[lab["model"]], strategies=["zero_shot", "few_shot"], k_shot=[1], limit=6,
                               max_new_tokens=6))
    report = gather([scored])
    assert report.evals[0].metric == "bleu" and report.verdicts == [] and all(s.correct is None for s in report.samples)
    seen = open_offline(browser, report_html([scored]), "eval-bleu")
    assert_renders(seen, 1)
    assert "BLEU by condition" in seen["text"] and "lowest scores first" in seen["text"]
    row = report.evals[0].rows[0]
    assert f"{row.value:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]" in seen["visible"]
    template = get_template("sentiment")
    with connect() as db:
        empty = start_run(db, kind="eval", template_name=template.name, template_hash=template.content_hash,
                          models=["default"], strategies=["zero_shot"], params={"method": "generate"},
                          options={"dataset": "later.csv", "items": 10, "metric": "accuracy"})
    html = report_html([empty])
    assert f"Run {empty} has no scored items yet (running)" in html and "No results yet" in html
    assert f"Evaluation run {empty}" in report_markdown([empty])


def test_the_cli_writes_a_report_file_and_prints_markdown(lab, tmp_path, capsys):
    """`python -m prompt_lab report RUN_ID [RUN_ID2] -o file.html [--format md]`, and `--job` for a tune."""
    from prompt_lab.cli import main

    out = tmp_path / "shared" / "report.html"
    out.parent.mkdir()
    assert main(["report", str(lab["probs"]), str(lab["generated"]), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and f"runs {lab['probs']} and {lab['generated']}" in page.lower()
    assert main(["report", str(lab["probs"]), "--format", "md"]) == 0
    printed = capsys.readouterr().out
    assert printed == report_markdown([lab["probs"]]) and "<!DOCTYPE" not in printed
    assert main(["report", "999999"]) == 2
    assert "there is no run 999999" in capsys.readouterr().err


def test_a_difference_that_rounds_to_zero_reads_plus_zero():
    from prompt_lab.reporting.facts import points

    assert [points(x) for x in (-0.0, -0.00001, 0.125, -0.085)] == ["+0.0", "+0.0", "+12.5", "-8.5"]
