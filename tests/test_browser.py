"""Every user flow of the app walked end to end in headless Chromium, as a person does it: clicks, typing,
uploads, downloads and reloads, asserting what the person sees. Each step leaves a screenshot under
test-artifacts/flows/<flow>/ to look at.

`make test` installs Debian's chromium; a missing browser fails these tests instead of skipping them.
"""
import csv
import json
import os
import re
import sqlite3

import pytest

from conftest import ARTIFACTS, ROOT

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.integration


def db() -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(os.environ["PROMPT_LAB_HOME"], "runs.db"))


class Walk:
    """A page plus numbered screenshots of each step of one flow."""

    def __init__(self, page, flow: str):
        self.page, self.folder, self.step = page, ARTIFACTS / "flows" / flow, 0
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(self.folder / f"{self.step:02d}-{name}.png"), full_page=True)

    def shot_toast(self, name: str) -> None:
        """A screenshot of the newest pop-up (a page screenshot does not show the fixed toast layer)."""
        self.step += 1
        self.page.wait_for_timeout(800)  # the pop-up fades in
        self.page.locator(".toast-body").last.screenshot(path=str(self.folder / f"{self.step:02d}-{name}.png"))

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()

    def choose(self, elem_id: str, option: str) -> None:
        """Pick an option of a Gradio dropdown the way a person does: open it, click the option."""
        self.page.locator(f"#{elem_id} input").click()
        self.page.get_by_role("option", name=option, exact=True).click()

    def type_into(self, box, text: str) -> None:
        """Replace a field's text by typing it, as a person does (fill() skips Gradio's input event)."""
        box.click()
        box.press("Control+a")
        self.page.keyboard.type(text)

    def toast(self, text=None) -> str:
        """The newest pop-up's text; with `text` (a string or regex), the newest pop-up that says it."""
        from playwright.sync_api import expect

        toasts = self.page.locator(".toast-body")
        toast = (toasts if text is None else toasts.filter(has_text=text)).last
        expect(toast).to_be_visible(timeout=30_000)
        return toast.inner_text()

    def close_toasts(self) -> None:
        """Close every pop-up and wait until they are gone, so the next toast() cannot read a closing one."""
        from playwright.sync_api import expect

        for close in self.page.locator(".toast-close").all():
            if close.is_visible():
                close.click()
        expect(self.page.locator(".toast-body")).to_have_count(0, timeout=15_000)

    def no_error_badges(self) -> None:
        """No component shows Gradio's red "Error" state (left by a failed event that was not settled)."""
        badges = self.page.evaluate("""() => [...document.querySelectorAll('span.error')]
            .filter(e => !e.closest('.toast-body') && e.offsetParent !== null)
            .map(e => e.closest('[id]') ? e.closest('[id]').id : e.parentElement.className)""")
        assert badges == []


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian chromium is missing: `make test` installs it (make browser)"
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture
def walk(browser, app_url, request):
    """A fresh browser context (its own cookies and storage: a new visitor) on the app."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(app_url)
    yield Walk(page, request.node.name.removeprefix("test_"))
    context.close()


def test_first_visit(walk):
    from playwright.sync_api import expect

    page = walk.page
    for name in ("Compare", "Evaluate", "Tune", "Templates", "History"):
        expect(page.get_by_role("tab", name=name)).to_be_visible()
    expect(page.locator("#var-0 textarea")).to_have_value(re.compile(r"\w+"), timeout=30_000)  # example 1
    expect(page.locator("#cmp-run")).to_be_enabled()
    walk.shot("compare")
    for name in ("Evaluate", "Tune", "Templates", "History"):
        walk.tab(name)
        page.wait_for_timeout(800)
        walk.no_error_badges()
        walk.shot(name.lower())
    assert page.locator(".toast-body").count() == 0  # nothing went wrong on the way


def test_compare_three_strategies_then_stop_mid_run(walk):
    from playwright.sync_api import expect

    page = walk.page
    review = page.locator("#var-0 textarea")
    expect(review).to_have_value(re.compile(r"\w+"), timeout=30_000)
    review.fill("")
    page.locator("#cmp-run").click()
    assert "fill in 'review' first" in walk.toast()  # an empty input is refused with a reason, not run
    expect(page.locator("#cmp-status")).to_have_text("Not run: see the message at the top right.")
    walk.no_error_badges()
    walk.shot("empty-input-refused")
    walk.close_toasts()

    review.fill("The pasta was cold and the waiter ignored us for an hour.")
    page.locator("#cmp-run").click()
    strategies = ["zero_shot", "few_shot", "cot"]
    for s in strategies:
        expect(page.locator(f"#stats-{s}")).to_contain_text("tok/s", timeout=180_000)
    walk.shot("three-strategies")
    boxes = [page.locator(f"#out-{s} textarea").bounding_box() for s in strategies]
    assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]  # side by side, in strategy order
    # the columns line up: output boxes, then the stats lines, then the Show prompt rows
    assert len({round(b["y"]) for b in boxes}) == 1 and len({round(b["height"]) for b in boxes}) == 1
    prompts = [page.locator(f"#out-{s}").locator("xpath=../..").get_by_text("Show prompt").bounding_box()
               for s in strategies]
    assert max(p["y"] for p in prompts) - min(p["y"] for p in prompts) < 3
    assert not page.locator("#out-few_shot_cot").is_visible()  # not selected, so no column
    expect(page.locator("#stats-few_shot mark")).to_be_visible()  # the extracted answer is highlighted
    ended = page.locator("#stats-zero_shot span[title]")
    expect(ended).to_contain_text("ended: ")  # eos / length are explained in words, with a tooltip
    assert ended.get_attribute("title")
    status = page.locator("#cmp-status").inner_text()
    run_id = int(re.search(r"Run (\d+) saved", status).group(1))
    expect(page.locator("#cmp-cli textarea")).to_have_value(re.compile("^python -m prompt_lab compare"))

    # Stop mid-run: zero-shot (a one-word label) finishes first; CoT is still writing when Stop is pressed
    page.locator("#cmp-strategies").get_by_text("Few-shot", exact=True).click()  # zero-shot and CoT only
    page.locator("#cmp-run").click()
    expect(page.locator("#cmp-status")).to_contain_text("Generating", timeout=60_000)  # this run's text, not the last
    expect(page.locator("#out-cot textarea")).to_have_value(re.compile(r"[\s\S]{40,}"), timeout=60_000)
    page.locator("#cmp-stop").click()
    expect(page.locator("#cmp-status")).to_contain_text("Stopped: run", timeout=30_000)
    walk.shot("stopped")
    expect(page.locator("#stats-zero_shot")).to_contain_text("Answer:")  # finished before Stop: kept
    expect(page.locator("#stats-cot")).to_contain_text("Stopped before it finished")
    assert page.locator("#out-cot textarea").input_value()  # the text so far stays on screen
    stopped = int(re.search(r"run (\d+)", page.locator("#cmp-status").inner_text()).group(1))
    assert stopped > run_id
    rows = db().execute("select strategy, finish_reason from generations where run_id = ? order by id",
                        [stopped]).fetchall()
    assert rows[0] == ("zero_shot", "eos") and rows[1] == ("cot", "cancelled")
    assert db().execute("select status from runs where id = ?", [stopped]).fetchone() == ("cancelled",)
    walk.no_error_badges()


def test_new_template_saved_and_used_in_compare_and_evaluate_without_a_restart(walk, tmp_path):
    from playwright.sync_api import expect

    page = walk.page
    walk.tab("Templates")
    expect(page.locator("#tpl-status")).to_contain_text("Valid", timeout=60_000)
    page.get_by_role("button", name="New template").click()
    # the starter is a valid template (its one example is the few-shot demonstration, the query a placeholder)
    expect(page.locator("#tpl-status")).to_contain_text("Valid · version", timeout=60_000)
    expect(page.locator("#tpl-status")).to_contain_text("· 1 example", timeout=60_000)
    expect(page.locator("#preview-few_shot textarea")).to_have_value(re.compile("clear daytime sky[\\s\\S]*<question>"))
    walk.no_error_badges()
    name = page.locator("#tpl-name textarea, #tpl-name input").first
    expect(name).to_have_value("my-template")
    walk.shot("starter")
    # the examples table shows all three columns at this width
    table = page.locator("#tpl-examples")
    for header in ("inputs (JSON)", "output", "rationale"):
        cell = table.get_by_role("columnheader", name=header)
        box = cell.bounding_box()
        assert box and box["x"] + box["width"] <= table.bounding_box()["x"] + table.bounding_box()["width"] + 1
    walk.type_into(name, "trivia-quiz")
    walk.type_into(page.locator("#tpl-instruction textarea"),
                   'Answer the trivia question in a few words. Quote marks "like these" & <angle> brackets stay.')
    page.get_by_role("tab", name="YAML").click()
    expect(page.locator("#tpl-yaml .cm-content")).to_contain_text("name: trivia-quiz", timeout=30_000)
    page.locator("#tpl-save").click()
    assert "Saved 'trivia-quiz'" in walk.toast()
    expect(page.locator("#tpl-status")).to_contain_text("Saved as trivia-quiz.yaml", timeout=30_000)
    walk.shot("saved")
    walk.close_toasts()

    walk.tab("Compare")  # no reload, no restart: the new template is in the list
    walk.choose("cmp-template", "trivia-quiz")
    expect(page.locator("#var-0")).to_contain_text("question")
    page.locator("#var-0 textarea").fill("What is the largest planet?")
    page.locator("#cmp-strategies").get_by_text("Few-shot", exact=True).click()
    page.locator("#cmp-run").click()
    expect(page.locator("#stats-zero_shot")).to_contain_text("tok/s", timeout=120_000)
    expect(page.locator("#cmp-status")).to_contain_text("template trivia-quiz")
    page.locator("#out-zero_shot").locator("xpath=../..").get_by_text("Show prompt").click()
    expect(page.locator("#prompt-zero_shot textarea")).to_have_value(re.compile('"like these" & <angle> brackets'))
    walk.shot("used-in-compare")

    walk.tab("Evaluate")
    walk.choose("eval-template", "trivia-quiz")
    data = tmp_path / "trivia.csv"
    data.write_text("question,answer\nWhat is the capital of France?,Paris\nHow many legs has a spider?,8\n"
                    "What colour is grass?,green\nWhat is frozen water called?,ice\n")
    page.locator("#eval-upload input[type=file]").set_input_files(str(data))
    expect(page.locator("#eval-dataset-info")).to_contain_text("trivia.csv: 4 rows", timeout=30_000)
    page.locator("#eval-method").get_by_label("generate").check()
    page.locator("#eval-strategies").get_by_text("Few-shot", exact=True).click()
    page.locator("#eval-run").click()
    expect(page.locator("#eval-head")).to_contain_text("trivia-quiz on trivia.csv · 4 items", timeout=180_000)
    expect(page.locator("#eval-status")).to_contain_text("finished")
    walk.shot("used-in-evaluate")
    with page.expect_download() as download:  # the run just shown, as a self-contained report, in one click
        page.locator("#eval-report").click()
    with open(download.value.path(), encoding="utf-8") as fh:
        report = fh.read()
    assert report.startswith("<!DOCTYPE html>") and "template trivia-quiz on trivia.csv (4 items)" in report
    walk.no_error_badges()


def test_yaml_errors_are_shown_whole_with_their_line(walk):
    from playwright.sync_api import expect

    page = walk.page
    walk.tab("Templates")
    page.get_by_role("tab", name="YAML").click()
    editor = page.locator("#tpl-yaml .cm-content")
    expect(editor).to_contain_text("name: sentiment", timeout=30_000)
    editor.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("bogus_field: <b>1</b>\n")
    status = page.locator("#tpl-status")
    expect(status).to_contain_text("Not valid", timeout=30_000)
    expect(status).to_contain_text(re.compile(r"YAML, line \d+: field 'bogus_field': unknown field"))
    walk.shot("unknown-field")
    page.locator("#tpl-save").click()  # the save error starts with "<editor>", which HTML would swallow
    text = walk.toast()
    assert re.search(r"<editor>, line \d+: field 'bogus_field': unknown field; allowed fields: ", text), text
    expect(status).to_contain_text("Not saved")
    walk.no_error_badges()
    walk.shot("save-refused")


def test_evaluate_a_shipped_experiment_and_an_uploaded_csv_with_a_paired_test(walk, tmp_path):
    from playwright.sync_api import expect

    page = walk.page
    walk.tab("Evaluate")
    expect(page.locator("#eval-dataset-info")).to_contain_text("sentiment.csv: 100 rows", timeout=30_000)
    walk.choose("eval-experiment", "sentiment_label_probs.yaml")
    limit = page.locator("#eval-limit input")
    expect(limit).to_have_value("100")  # every row of its dataset, said as a number
    limit.fill("12")
    limit.press("Enter")
    page.locator("#eval-k textarea, #eval-k input").first.fill("3")
    walk.shot("experiment-loaded")
    page.locator("#eval-run").click()
    run_box, status_box = (page.locator(f"#eval-{e}").bounding_box() for e in ("run", "status"))
    assert 0 <= status_box["y"] - (run_box["y"] + run_box["height"]) < 80  # progress shows just under Run
    expect(page.locator("#eval-head")).to_contain_text("12 items", timeout=180_000)
    summary = page.locator("#eval-summary")
    expect(summary.get_by_role("gridcell", name="zero_shot · default", exact=True)).to_be_visible()
    for header in ("chance", "majority"):
        expect(summary.get_by_role("columnheader", name=header)).to_be_visible()
    expect(summary.get_by_role("gridcell", name="33%", exact=True).first).to_be_visible()  # 3 labels: chance 1/3
    bars = page.locator("#eval-bars")
    expect(bars.locator(".js-plotly-plot")).to_be_visible()
    expect(bars).to_contain_text("majority class")  # baselines drawn on the accuracy chart
    expect(bars).to_contain_text("accuracy (% of items, 95% CI)")
    expect(page.locator("#eval-scatter")).to_be_hidden()  # no tokens are generated with label_probs
    walk.shot("label-probs-results")
    page.locator("#eval-test").click()
    verdict = page.locator("#eval-verdict")
    expect(verdict).to_contain_text("Exact McNemar test on 12 items paired by content", timeout=30_000)
    expect(page.locator("#eval-head")).to_contain_text("does not beat always answering")  # baseline verdict
    walk.shot("paired-test")
    page.locator("#eval-ensemble-how").get_by_text("mean probabilities", exact=True).click()
    page.locator("#eval-ensemble").click()  # the run's two conditions combined, beside the better one
    expect(page.locator("#eval-ensemble-verdict")).to_contain_text("Exact McNemar test on 12 items", timeout=30_000)
    table = page.locator("#eval-ensemble-table")
    expect(table.get_by_role("gridcell", name="ensemble (mean probabilities of 2)", exact=True)).to_be_visible()
    expect(table).to_contain_text("(best single)")
    walk.shot("ensemble")

    # an uploaded file whose columns are named differently from the template's variable
    data = tmp_path / "shop reviews.csv"
    data.write_text("review_text,gold_label\n" + "".join(
        f'"{text}",{label}\n' for text, label in [("Love it, works perfectly.", "Positive"),
                                                   ("Broke after a day.", "Negative"),
                                                   ("It is a box.", "Neutral"), ("Fantastic value!", "Positive"),
                                                   ("Terrible support, never again.", "Negative"),
                                                   ("Arrived on Tuesday.", "Neutral")]))
    page.locator("#eval-upload input[type=file]").set_input_files(str(data))
    expect(page.locator("#eval-dataset-info")).to_contain_text("shop reviews.csv: 6 rows", timeout=30_000)
    expect(page.locator("#eval-col-0 input")).to_have_value("review_text")  # auto-mapped to {{ review }}
    expect(page.locator("#eval-target input")).to_have_value("gold_label")
    limit.fill("0")
    limit.press("Enter")
    page.locator("#eval-method").get_by_label("generate").check()
    page.locator("#eval-run").click()
    expect(page.locator("#eval-head")).to_contain_text("shop reviews.csv · 6 items", timeout=180_000)
    expect(verdict).to_have_text("")  # the last run's verdict does not outlive it
    expect(page.locator("#eval-scatter .js-plotly-plot")).to_be_visible()  # generated answers cost tokens
    page.locator("#eval-test").click()
    expect(verdict).to_contain_text("6 items paired by content", timeout=30_000)
    walk.shot("uploaded-csv")
    walk.no_error_badges()

    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"review": "fine", "label": "Positive"}\n{"review": "bad",\n')
    page.locator("#eval-upload").get_by_label("Clear").click()
    page.locator("#eval-upload input[type=file]").set_input_files(str(bad))
    assert "broken.jsonl, line 2: not valid JSON" in walk.toast()
    expect(page.locator("#eval-dataset-info")).to_contain_text("cannot be used")
    walk.no_error_badges()  # the mapping controls are not left in an error state
    walk.shot("bad-upload")


def test_tune_watch_reload_stop_resume_then_compare(walk, tiny_model_dir):
    from playwright.sync_api import expect

    page = walk.page
    walk.tab("Tune")
    page.locator("#tune-model textarea, #tune-model input").first.fill(str(tiny_model_dir))
    steps = page.locator("#tune-steps input")
    steps.fill("150")  # checkpoints every 50 steps
    steps.press("Enter")
    page.locator("#tune-start").click()
    assert re.search(r"Job \d+ started", walk.toast())
    walk.close_toasts()
    job_id = int(page.locator("#tune-job input").input_value())
    status = page.locator("#tune-status")
    expect(status).to_contain_text(re.compile(r"running · step (6\d|[7-9]\d|1\d\d)/150"), timeout=120_000)
    expect(page.locator("#tune-loss .js-plotly-plot")).to_be_visible()
    walk.shot("live-loss")

    page.reload()  # the job lives on; the page finds it again
    walk.tab("Tune")
    expect(page.locator("#tune-job input")).to_have_value(str(job_id), timeout=30_000)
    expect(page.locator("#tune-loss")).to_contain_text("training step", timeout=30_000)
    walk.shot("after-reload")
    page.locator("#tune-stop").click()
    assert f"Job {job_id}: cancelled" in walk.toast()
    walk.close_toasts()
    expect(status).to_contain_text("cancelled", timeout=30_000)
    expect(status).not_to_contain_text("left")  # no stale ETA
    walk.shot("stopped")
    stopped_at = int(re.search(r"step (\d+)/", status.inner_text()).group(1))
    assert 50 <= stopped_at < 150

    page.locator("#tune-resume").click()
    said = walk.toast(re.compile(rf"Job {job_id} (resumes|had no)"))
    assert "resumes from step" in said, said
    checkpoint = int(re.search(rf"Job {job_id} resumes from step (\d+), its last complete checkpoint", said).group(1))
    assert checkpoint in (50, 100) and checkpoint <= stopped_at  # its last complete checkpoint
    expect(status).to_contain_text("completed", timeout=240_000)
    expect(status).to_contain_text(f"resumed from step {checkpoint}")
    expect(status).to_contain_text("before/after: evaluation run", timeout=60_000)
    steps_logged = [r[0] for r in db().execute("select step from job_events where job_id = ? and loss is not null "
                                                "order by id", [job_id])]
    assert steps_logged == sorted(steps_logged) and steps_logged[-1] == 150  # one continuous curve
    after = page.locator("#tune-after")
    expect(after.locator(".js-plotly-plot")).to_be_visible()
    expect(after).to_contain_text("%")  # bars carry their value, so a 0% bar still reads "0%"
    table = page.locator("#tune-jobs")
    loss_cell = table.get_by_role("row").nth(1).get_by_role("gridcell").nth(5).inner_text()
    assert len(loss_cell.split(".")[-1]) <= 4  # losses to 4 digits, not 16
    walk.shot("completed")
    with page.expect_download() as download:  # base vs tuned with the loss curve, one click
        page.locator("#tune-report").click()
    with open(download.value.path(), encoding="utf-8") as fh:
        assert f"Tune job {job_id}: base vs tuned model" in fh.read()

    page.locator("#tune-to-compare").click()
    expect(page.locator("#cmp-model")).to_contain_text(re.compile(rf"\+.*jobs/{job_id}/adapter"), timeout=30_000)
    walk.shot("in-compare")


def id_cell(table, run_id: int):
    """The cell of a run in the first (run id) column of the History table."""
    return table.locator('[role="gridcell"][data-col="0"]').filter(has_text=re.compile(rf"^\s*{run_id}\s*$"))


def test_history_filter_open_export_run_again_and_compare_two_runs(walk, tiny_model_dir):
    from playwright.sync_api import expect

    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import EvalSpec
    from prompt_lab.models import GenerationParams
    from prompt_lab.compare import compare

    page = walk.page
    spec = dict(template="sentiment", dataset=str(ROOT / "experiments/data/sentiment.csv"),
                models=[str(tiny_model_dir)], limit=12)
    eval_a = evaluate(EvalSpec(**spec, method="label_probs"))
    eval_b = evaluate(EvalSpec(**spec, method="generate", max_new_tokens=3))
    eval_other = evaluate(EvalSpec(template="plausibility", dataset=str(ROOT / "experiments/data/plausibility.csv"),
                                   models=[str(tiny_model_dir)], limit=12, method="label_probs"))
    run = compare("sentiment", {"review": "Solid and cheap."}, strategies=["zero_shot", "cot"],
                  models=str(tiny_model_dir), params=GenerationParams(max_new_tokens=4))
    walk.tab("History")
    runs = page.locator("#hist-runs")
    for header in ("run", "started (UTC)", "template", "best accuracy"):
        expect(runs.get_by_role("columnheader", name=header)).to_be_visible(timeout=30_000)
    header_box = runs.get_by_role("columnheader", name="template").bounding_box()
    assert header_box["height"] < 60  # a header line, not a 140 px block of wrapped names
    expect(runs.get_by_role("gridcell", name=re.compile(r"^\d+% zero_shot$")).first).to_be_visible()
    walk.shot("runs")

    walk.choose("hist-kind", "compare")
    expect(runs.get_by_role("gridcell", name="eval", exact=True)).to_have_count(0, timeout=30_000)
    walk.shot("filtered")
    id_cell(runs, run.run_id).click()
    expect(page.locator("#hist-run-info")).to_contain_text(f"Run {run.run_id} (compare, completed): 2 outputs")
    expect(page.locator("#hist-again")).to_be_enabled()
    with page.expect_download() as download:  # one click downloads the CSV of what is shown
        page.locator("#hist-export").click()
    with open(download.value.path(), newline="", encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    compare_outputs = db().execute("select count(*) from generations g join runs r on r.id = g.run_id "
                                   "where r.kind = 'compare'").fetchone()[0]
    assert len(exported) == compare_outputs and {row["run_id"] for row in exported} >= {str(run.run_id)}
    walk.shot("exported")

    page.locator("#hist-again").click()
    expect(page.locator("#hist-run-info")).to_contain_text(re.compile(rf"Run {run.run_id} ran again as run \d+"),
                                                           timeout=120_000)
    # the id as the message gave it (the line is rewritten when the new run is selected a moment later)
    again = db().execute("select max(id) from runs where kind = 'compare'").fetchone()[0]
    assert db().execute("select kind, status from runs where id = ?", [again]).fetchone() == ("compare", "completed")
    walk.shot("ran-again")

    walk.choose("hist-kind", "eval")
    id_cell(runs, eval_a).click()
    expect(page.locator("#hist-run-info")).to_contain_text(f"Run {eval_a} (eval, completed): 12 outputs")
    expect(page.locator("#hist-again")).to_be_disabled()  # not offered for an evaluation
    generations = page.locator("#hist-generations")
    for header in ("gold", "correct"):
        expect(generations.get_by_role("columnheader", name=header)).to_be_visible()
    walk.shot("evaluation-outputs")
    with page.expect_download() as download:  # one click: a self-contained report of the selected run
        page.locator("#hist-report").click()
    assert download.value.suggested_filename == f"prompt-lab-run-{eval_a}.html"
    with open(download.value.path(), encoding="utf-8") as fh:
        report = fh.read()
    assert report.startswith("<!DOCTYPE html>") and f"Evaluation run {eval_a}: template sentiment" in report
    page.locator("#hist-eval-a input").fill(str(eval_a))
    page.locator("#hist-eval-b input").fill(str(eval_b))
    page.locator("#hist-pair").click()
    verdict = page.locator("#hist-pair-verdict")
    expect(verdict).to_contain_text("12 items have the same inputs and gold answer in both runs", timeout=30_000)
    expect(verdict).to_contain_text(f"run {eval_a} (sentiment@")  # each side named in full
    expect(verdict).to_contain_text(f"label_probs, accuracy) and run {eval_b} (sentiment@")
    walk.shot("two-runs")
    with page.expect_download() as download:  # both runs filled in: the paired report
        page.locator("#hist-report").click()
    with open(download.value.path(), encoding="utf-8") as fh:
        assert f"Evaluation runs {eval_a} and {eval_b} compared on the same 12 items" in fh.read()
    walk.close_toasts()
    page.locator("#hist-eval-b input").fill(str(eval_other))
    page.locator("#hist-pair").click()
    assert f"runs {eval_a} and {eval_other} cannot be paired: only 0 item(s)" in walk.toast()
    walk.shot_toast("two-runs-refused")
    walk.no_error_badges()


def test_few_shot_examples_chosen_by_similarity_in_evaluate_and_fixed_in_compare(walk):
    """The example-selection control of both tabs reaches the run: logged with it, and its prompts show the
    examples the policy picks (never the input itself)."""
    from playwright.sync_api import expect

    from prompt_lab.prompts.selection import select_examples
    from prompt_lab.prompts.templates import get_template

    page = walk.page
    walk.tab("Evaluate")
    expect(page.locator("#eval-dataset-info")).to_contain_text("sentiment.csv: 100 rows", timeout=30_000)
    page.locator("#eval-strategies").get_by_text("Zero-shot", exact=True).click()  # few-shot only
    page.locator("#eval-selection").get_by_text("similar", exact=True).click()
    limit = page.locator("#eval-limit input")
    limit.fill("4")
    limit.press("Enter")
    page.locator("#eval-k textarea, #eval-k input").first.fill("2")
    walk.shot("evaluate-similar")
    page.locator("#eval-run").click()
    expect(page.locator("#eval-head")).to_contain_text("4 items", timeout=180_000)
    run_id = int(page.locator("#eval-run-id input").input_value())
    with db() as conn:
        params = conn.execute("select params_json from runs where id = ?", [run_id]).fetchone()[0]
        rows = conn.execute("select variables_json, prompt from generations where run_id = ?", [run_id]).fetchall()
    assert '"example_selection": "similar"' in params and len(rows) == 4
    template = get_template("sentiment")
    for variables, prompt in rows:
        review = json.loads(variables)["review"]
        chosen = select_examples(template, {"review": review}, 2, "similar", 0, False)
        assert all(e.inputs["review"] in prompt for e in chosen)
        assert prompt.count(review) == 1  # the item itself is the query, never a demonstration
    walk.shot("evaluate-similar-done")

    walk.tab("Compare")
    expect(page.locator("#var-0 textarea")).to_have_value(re.compile(r"\w+"), timeout=30_000)
    page.locator("#cmp-selection").get_by_text("fixed", exact=True).click()
    for label in ("Zero-shot", "Chain-of-thought"):
        page.locator("#cmp-strategies").get_by_text(label, exact=True).click()
    page.locator("#cmp-run").click()
    expect(page.locator("#cmp-status")).to_contain_text("saved", timeout=180_000)
    expect(page.locator("#cmp-cli textarea, #cmp-cli input").first).to_have_value(re.compile("--examples fixed"))
    compare_id = int(re.search(r"Run (\d+) saved", page.locator("#cmp-status").inner_text()).group(1))
    with db() as conn:
        options = conn.execute("select options_json from runs where id = ?", [compare_id]).fetchone()[0]
    assert json.loads(options)["example_selection"] == "fixed"
    walk.shot("compare-fixed")
    walk.no_error_badges()


def test_phone_width(browser, app_url):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(app_url)
    walk = Walk(page, "phone_width")
    try:
        expect(page.locator("#var-0 textarea")).to_have_value(re.compile(r"\w+"), timeout=30_000)
        walk.shot("compare")
        page.locator("#cmp-strategies").get_by_text("Few-shot", exact=True).click()
        page.locator("#cmp-run").scroll_into_view_if_needed()
        page.locator("#cmp-run").click()
        expect(page.locator("#stats-zero_shot")).to_contain_text("tok/s", timeout=120_000)
        expect(page.locator("#cmp-status")).to_be_in_viewport()  # the results are brought into view
        walk.shot("compare-results")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400  # nothing wider than the phone
        page.evaluate("window.scrollTo(0, 0)")
        for name in ("Evaluate", "History"):
            tab = page.get_by_role("tab", name=name)
            if tab.count():
                tab.click()
            else:  # a phone folds the last tabs into a "More tabs" menu
                page.get_by_label("More tabs").click()
                page.locator(".overflow-dropdown button", has_text=name).click()
            page.wait_for_timeout(800)
            walk.no_error_badges()
            walk.shot(name.lower())
    finally:
        context.close()


def test_compare_grid_runs_the_local_and_a_served_model_in_rows(walk, served_model):
    from playwright.sync_api import expect

    page = walk.page
    expect(page.locator("#var-0 textarea")).to_have_value(re.compile(r"\w+"), timeout=30_000)
    remote = f"openai:{served_model[1]}@{served_model[0]}"
    picker = page.locator("#cmp-model input")
    picker.click()
    picker.fill(remote)
    picker.press("Enter")
    expect(page.locator("#cmp-model")).to_contain_text(served_model[0])
    page.locator("#cmp-run").click()
    for cell in ("stats-zero_shot", "stats-cot", "stats-m1-zero_shot", "stats-m1-cot"):
        expect(page.locator(f"#{cell}")).to_contain_text("tok/s", timeout=180_000)
    expect(page.locator("#cmp-model-1")).to_contain_text(served_model[0])  # the row names its model
    local = page.locator("#out-few_shot textarea").bounding_box()
    served = page.locator("#out-m1-few_shot textarea").bounding_box()
    assert served["y"] > local["y"] + local["height"] and abs(served["x"] - local["x"]) < 5  # a row below
    assert page.locator("#out-m1-few_shot textarea").input_value()
    assert not page.locator("#out-m2-few_shot").is_visible()  # two models: the third row stays hidden
    expect(page.locator("#cmp-status")).to_contain_text("2 models")
    expect(page.locator("#cmp-cli textarea")).to_have_value(re.compile(r"--model default --model openai:"))
    page.locator("#cmp-row-1").scroll_into_view_if_needed()
    walk.shot("grid")
    page.screenshot(path=str(ARTIFACTS / "compare-grid.png"), full_page=True)
