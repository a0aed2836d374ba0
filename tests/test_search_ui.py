"""The Search tab (prompt_lab/ui/search_tab.py): the form becomes a checked SearchSpec (a public Space caps its
minutes), a search run from the tab's handlers shows its candidates, chart and verdict and saves its winner, History
offers it to the Search tab, and in headless Chromium a person runs a small search on the embedded model, stops it
mid-search, resumes it to the end, saves the winner and finds it in Compare; a link and History's Open in Search
open the run in the Search tab.

Screenshots: test-artifacts/flows/search/.
"""
import inspect
import re

import pytest

from conftest import ROOT
from test_browser import Walk, browser, db, id_cell  # noqa: F401  (the module's Chromium)

from prompt_lab.errors import PromptLabError
from prompt_lab.prompts.templates import template_names
from prompt_lab.search.spec import SearchError

FORM = dict(template_name="sentiment", dataset_choice="sentiment.csv", upload=None, limit=12, model="default",
            proposer="default", rounds=1, candidates=1, keep=1, dev_fraction=0.5, seed=0, max_calls=500,
            max_minutes=5)


def form(**changes) -> tuple:
    return tuple({**FORM, **changes}.values())


def test_the_form_becomes_a_checked_search_spec_and_a_public_space_caps_its_minutes(home, monkeypatch):
    from prompt_lab.ui import search_tab
    from prompt_lab.ui.evaluate_tab import experiment_files

    spec, template = search_tab.search_spec(*form(dataset_choice="../../etc/passwd", limit=0, max_minutes=12))
    assert (spec.template, template.name, spec.name) == ("sentiment", "sentiment", "sentiment-search")
    assert spec.dataset == str(ROOT / "experiments" / "data" / "passwd")  # only ever a file in the shipped folder
    assert (spec.limit, spec.rounds, spec.candidates, spec.keep, spec.max_calls, spec.max_minutes) == \
        (None, 1, 1, 1, 500, 12.0)
    with pytest.raises(SearchError, match="the Search form: field 'rounds'"):
        search_tab.search_spec(*form(rounds=0))
    with pytest.raises(SearchError, match="field 'dev_fraction'"):
        search_tab.search_spec(*form(dev_fraction=1.0))
    with pytest.raises(PromptLabError, match="file paths are not read"):
        search_tab.search_spec(*form(template_name=str(ROOT / "templates" / "sentiment.yaml")))
    monkeypatch.setenv("SPACE_ID", "someone/prompt-lab")
    assert search_tab.search_spec(*form(max_minutes=12))[0].max_minutes == search_tab.PUBLIC_MAX_MINUTES == 3.0
    assert search_tab.search_spec(*form(max_minutes=2))[0].max_minutes == 2.0
    monkeypatch.delenv("SPACE_ID")

    assert search_tab.search_files() == ["search_sentiment.yaml"]
    assert not [f for f in experiment_files() if f.startswith("search_")]  # Evaluate cannot load a search file
    filled = search_tab.load_search_file("search_sentiment.yaml")
    assert filled == ("sentiment", "sentiment.csv", 0, "default", "default", 2, 3, 2, 0.5, 0, 1000, 15)
    line = search_tab.describe_dataset("sentiment", "sentiment.csv", None)
    assert line.startswith("sentiment.csv: 100 rows · columns: ") and "{{ review }} ← review, gold ← label" in line
    assert search_tab.show_search(None)[1] == []  # nothing selected: an empty table, no error


@pytest.mark.integration
def test_a_search_from_the_tab_shows_its_candidates_and_verdict_saves_the_winner_and_history_offers_it(
        home, default_model_dir):
    from prompt_lab.ui import history_tab, search_tab

    status, run_id = inspect.unwrap(search_tab.run_search)(*form(), progress=lambda *a, **k: None)
    assert status == f"Search run **{run_id}** finished."
    head, rows, chart, verdict, name_box, save_btn, saved = search_tab.show_search(run_id)
    assert head.startswith(f"Search run **{run_id}** (completed) · template sentiment on sentiment.csv · model "
                           "default, proposer default, label_probs · dev 6 / test 6 items (seed 0)")
    assert rows[0][:4] == [0, 1, rows[0][2], ""] and rows[0][5] in ("original · scored", "winner · original · scored")
    assert re.fullmatch(r"\d+%", rows[0][2])
    assert all(r[0] == 1 and r[3] == "#1" for r in rows[1:]) and len(rows) >= 2  # one round, written from #1
    assert sum("winner" in r[5] for r in rows) == 1
    assert [t.name for t in chart.data][-1] == "winner (test)"  # the test result marked at the right
    assert verdict.startswith("#### Verdict, from the held-out test\n\nOn dev, candidate ")
    assert "Held-out test, 6 items: candidate " in verdict and "(exact McNemar, paired by item)" in verdict
    assert "Baselines on the test items: always answering the majority class" in verdict
    assert name_box["placeholder"] == f"sentiment-search-{run_id}" and save_btn["interactive"] is True and saved == ""

    message = search_tab.save(run_id, "")
    assert f"template **sentiment-search-{run_id}** (`sentiment-search-{run_id}.yaml` in your templates" in message
    assert f"sentiment-search-{run_id}" in template_names()
    assert "my-winner" in search_tab.save(run_id, "  my-winner ") and "my-winner" in template_names()
    with pytest.raises(PromptLabError, match="The template name 'Not A Name' is not allowed"):
        search_tab.save(run_id, "Not A Name")

    outputs, info, again, open_search = history_tab.show_run(run_id)
    assert f"Run **{run_id}** (search, completed)" in info and "*Open in Search*" in info
    assert open_search["visible"] is True and again["interactive"] is False and outputs
    assert history_tab.show_run(None)[3]["visible"] is False


def _set(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(str(value))
    box.press("Enter")


@pytest.mark.integration
def test_run_stop_resume_save_and_open_a_search_in_the_browser(browser, app_url):  # noqa: F811
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(app_url)
    walk = Walk(page, "search")
    walk.tab("Search")
    expect(page.locator("#search-dataset-info")).to_contain_text("sentiment.csv: 100 rows", timeout=30_000)
    expect(page.locator("#search-dataset-info")).to_contain_text("{{ review }} ← review, gold ← label")
    for elem_id, value in (("search-limit", 12), ("search-rounds", 1), ("search-per-round", 2), ("search-keep", 1),
                           ("search-max-minutes", 5)):
        _set(page, elem_id, value)
    expect(page.locator("#search-save")).to_be_disabled()  # nothing to save before a search
    walk.shot("form")

    # Run, then Stop once the proposer is asked for round 1's candidates: the run keeps what it has
    page.locator("#search-run").click()
    expect(page.locator("#search-status")).to_contain_text("round 1: asking default", timeout=180_000)
    page.locator("#search-stop").click()
    status = page.locator("#search-status")
    expect(status).to_contain_text(re.compile(r"Stopped: search run \d+ keeps what it found so far"), timeout=60_000)
    run_id = int(re.search(r"search run (\d+)", status.inner_text()).group(1))
    assert db().execute("select kind, status from runs where id = ?", [run_id]).fetchone() == ("search", "cancelled")
    expect(page.locator("#search-head")).to_contain_text(f"Search run {run_id} (cancelled)", timeout=30_000)
    table = page.locator("#search-candidates")
    expect(table.get_by_role("gridcell", name="original · scored", exact=True)).to_be_visible()
    expect(page.locator("#search-verdict")).to_contain_text("Not tested yet")
    expect(page.locator("#search-chart .js-plotly-plot")).to_be_visible()  # the original's dev score, so far
    expect(page.locator("#search-save")).to_be_disabled()  # no winner yet
    walk.shot("stopped")
    walk.close_toasts()

    # Resume: the same run ends with its round, the chart and the held-out test
    page.locator("#search-resume").click()
    expect(status).to_contain_text(f"Search run {run_id} finished.", timeout=180_000)
    expect(page.locator("#search-head")).to_contain_text(f"Search run {run_id} (completed)", timeout=30_000)
    assert db().execute("select status from runs where id = ?", [run_id]).fetchone() == ("completed",)
    scored = db().execute("select count(*) from search_candidates where run_id = ? and round = 1 and "
                          "status = 'scored'", [run_id]).fetchone()[0]
    assert scored == 2  # both of round 1's candidates, after the stop
    expect(table.get_by_role("gridcell", name=re.compile(r"^winner · "))).to_have_count(1)
    expect(table.get_by_role("gridcell", name="#1", exact=True)).to_have_count(
        db().execute("select count(*) from search_candidates where run_id = ? and round = 1", [run_id]).fetchone()[0])
    chart = page.locator("#search-chart")
    expect(chart.locator(".js-plotly-plot")).to_be_visible()
    expect(chart).to_contain_text("winner (test)")
    expect(chart).to_contain_text("best so far (dev)")
    verdict = page.locator("#search-verdict")
    expect(verdict).to_contain_text("Held-out test, 6 items: candidate ")
    expect(verdict).to_contain_text("always answering the majority class")
    walk.shot("resumed")

    # Save winner: one click, under the default name; it is a template everywhere at once
    name = f"sentiment-search-{run_id}"
    expect(page.locator("#search-save-name textarea, #search-save-name input").first).to_have_attribute(
        "placeholder", name)
    page.locator("#search-save").click()
    assert f"Saved '{name}'" in walk.toast()
    expect(page.locator("#search-saved")).to_contain_text(f"Saved the winner as template {name} ({name}.yaml")
    walk.shot("saved")
    walk.close_toasts()
    walk.choose("search-template", name)  # this tab's own list has it without a tab switch (the saved refresh)
    walk.tab("Compare")
    walk.choose("cmp-template", name)
    expect(page.locator("#var-0")).to_contain_text("review")
    walk.no_error_badges()
    context.close()

    # A link to the run opens it in the Search tab of a fresh browser
    linked = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    linked.goto(f"{app_url}?run={run_id}")
    expect(linked.get_by_role("tab", name="Search", selected=True)).to_be_visible(timeout=30_000)
    expect(linked.locator("#search-head")).to_contain_text(f"Search run {run_id} (completed)", timeout=30_000)
    expect(linked.locator("#search-chart .js-plotly-plot")).to_be_visible()
    Walk(linked, "search_link").shot("opened")
    linked.context.close()

    # History lists it; selecting it offers Open in Search, which shows it there
    other = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    other.goto(app_url)
    history = Walk(other, "search_history")
    history.tab("History")
    runs = other.locator("#hist-runs")
    id_cell(runs, run_id).click()
    expect(other.locator("#hist-run-info")).to_contain_text(f"Run {run_id} (search, completed)", timeout=30_000)
    history.shot("selected")
    other.locator("#hist-open-search").click()
    expect(other.get_by_role("tab", name="Search", selected=True)).to_be_visible()
    expect(other.locator("#search-head")).to_contain_text(f"Search run {run_id} (completed)", timeout=30_000)
    history.no_error_badges()
    history.shot("open-in-search")
    other.context.close()
