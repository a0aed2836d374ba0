"""The app in headless Chromium, clicked through as a person would; screenshots go to test-artifacts/."""
import re
import shutil

import pytest

from conftest import ARTIFACTS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium is not installed "
                                 "(make test installs it)")]


@pytest.fixture(scope="module")
def page(app_url, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            viewport={"width": 1500, "height": 1000},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = context.new_page()
        page.goto(app_url)
        yield page
        context.close()


def test_compare_three_strategies_side_by_side_then_history(page):
    from playwright.sync_api import expect

    review = page.locator("#var-0 textarea")
    expect(review).to_have_value(re.compile(r"\w+"), timeout=30_000)  # filled with example 1 on load
    review.fill("The pasta was cold and the waiter ignored us for an hour.")
    page.locator("#cmp-run").click()
    strategies = ["zero_shot", "few_shot", "cot"]
    for s in strategies:
        expect(page.locator(f"#stats-{s}")).to_contain_text("tok/s", timeout=180_000)
    boxes = [page.locator(f"#out-{s} textarea") for s in strategies]
    for box in boxes:
        expect(box).not_to_have_value("")
    frames = [box.bounding_box() for box in boxes]
    assert frames[0]["x"] < frames[1]["x"] < frames[2]["x"]  # side by side, in strategy order
    assert abs(frames[0]["y"] - frames[2]["y"]) < 5
    assert not page.locator("#out-few_shot_cot").is_visible()  # not selected, so no column
    expect(page.locator("#stats-few_shot mark")).to_be_visible()  # the extracted answer is highlighted
    status = page.locator("#cmp-status").inner_text()
    run_id = re.search(r"Run (\d+) saved", status).group(1)
    expect(page.locator("#cmp-cli textarea")).to_have_value(re.compile("^python -m prompt_lab compare"))
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

    page.get_by_role("tab", name="Templates").click()
    expect(page.locator("#preview-cot textarea")).to_have_value(re.compile("Let's think step by step"),
                                                                timeout=60_000)
    expect(page.locator("#tpl-status")).to_contain_text("Valid")
    page.screenshot(path=str(ARTIFACTS / "templates.png"), full_page=True)

    page.get_by_role("tab", name="History").click()
    cell = page.locator("#hist-runs").get_by_role("gridcell", name=run_id, exact=True).first
    expect(cell).to_be_visible(timeout=30_000)
    cell.click()
    expect(page.locator("#hist-run-info")).to_contain_text(f"Run {run_id}: 3 generations", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "history.png"), full_page=True)


def test_template_editor_shows_errors_with_the_line(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Templates").click()
    page.get_by_role("tab", name="YAML").click()
    editor = page.locator("#tpl-yaml .cm-content")
    expect(editor).to_contain_text("name: sentiment", timeout=30_000)
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\nbogus_field: 1")
    expect(page.locator("#tpl-status")).to_contain_text("Not valid", timeout=30_000)
    expect(page.locator("#tpl-status")).to_contain_text(re.compile(r"line \d+: .*bogus_field"))
    page.screenshot(path=str(ARTIFACTS / "templates-error.png"), full_page=True)


def test_stop_ends_a_running_compare(page):
    import os
    import sqlite3

    from playwright.sync_api import expect

    page.get_by_role("tab", name="Compare").click()
    page.locator("#cmp-strategies").get_by_text("Few-shot CoT").click()  # four strategies: a longer batch
    page.locator("#cmp-run").click()
    expect(page.locator("#cmp-status")).to_contain_text("Generating", timeout=60_000)
    page.locator("#cmp-stop").click()
    expect(page.locator("#cmp-status")).to_contain_text("Stopped: the run is logged as cancelled", timeout=30_000)
    expect(page.locator("#stats-cot")).to_have_text("stopped")
    db = sqlite3.connect(os.path.join(os.environ["PROMPT_LAB_HOME"], "runs.db"))
    status, error = db.execute("select status, error from runs order by id desc limit 1").fetchone()
    assert (status, error) == ("cancelled", "stopped by the user")
    page.screenshot(path=str(ARTIFACTS / "compare-stopped.png"), full_page=True)


def test_evaluate_tab_runs_and_shows_the_evidence(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Evaluate").click()
    expect(page.locator("#eval-dataset-info")).to_contain_text("sentiment.csv: 100 rows", timeout=30_000)
    limit = page.locator("#eval-limit input")
    limit.fill("12")
    limit.press("Enter")
    page.locator("#eval-run").click()
    expect(page.locator("#eval-head")).to_contain_text("12 items", timeout=180_000)
    summary = page.locator("#eval-summary")
    expect(summary.get_by_role("gridcell", name="zero_shot · default", exact=True)).to_be_visible()
    expect(summary.get_by_role("gridcell", name="few_shot k=3 · default", exact=True)).to_be_visible()
    expect(page.locator("#eval-bars .js-plotly-plot")).to_be_visible()
    expect(page.locator("#eval-calibration .js-plotly-plot")).to_be_visible()
    page.locator("#eval-test").click()
    expect(page.locator("#eval-verdict")).to_contain_text("Exact McNemar test on 12 shared items", timeout=30_000)
    expect(page.locator("#eval-extraction table.extract")).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "evaluate.png"), full_page=True)


def test_tune_tab_runs_a_job_and_hands_the_adapter_to_compare(page, tiny_model_dir):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Tune").click()
    model = page.get_by_label("Base model")
    model.fill(str(tiny_model_dir))
    steps = page.locator("#tune-steps input")
    steps.fill("6")
    steps.press("Enter")
    page.get_by_text("Equivalent CLI").click()
    expect(page.locator("#tune-cli")).to_contain_text("max_steps: 6", timeout=30_000)
    page.locator("#tune-start").click()
    expect(page.locator("#tune-status")).to_contain_text("completed", timeout=240_000)
    expect(page.locator("#tune-status")).to_contain_text("before/after: evaluation run", timeout=30_000)
    expect(page.locator("#tune-loss .js-plotly-plot")).to_be_visible()
    expect(page.locator("#tune-after .js-plotly-plot")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "tune.png"), full_page=True)
    page.locator("#tune-to-compare").click()
    expect(page.locator("#cmp-model")).to_contain_text(re.compile(r"\+.*jobs/\d+/adapter"), timeout=30_000)


def test_compare_grid_runs_the_local_and_a_served_model_in_rows(page, served_model):
    from playwright.sync_api import expect

    page.reload()
    page.get_by_role("tab", name="Compare").click()
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
    page.screenshot(path=str(ARTIFACTS / "compare-grid.png"), full_page=True)
