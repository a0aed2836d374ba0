"""Links that open a run (access.links) and the presenter view: the query string parsed and refused in words, the
key of a public Space's link, runs a link opened readable (and only readable), a logged compare read back as it
ran, and in headless Chromium: a link opens the right run in the right tab of a fresh browser, Copy link gives an
address that does, and the presenter view hides the editing controls, light and dark, at 1280x720.

Screenshots: test-artifacts/flows/links_*/ and test-artifacts/flows/presenter/.
"""
import html
import re

import pytest

from prompt_lab.access import links, visitors
from prompt_lab.errors import PromptLabError
from prompt_lab.reporting.export import share_query
from conftest import ROOT
from test_browser import Walk, browser  # noqa: F401  (the module's Chromium)


@pytest.mark.parametrize("query, expected", [
    ({"run": "42"}, links.Link("run", (42,), "", False)),
    ({"compare": "12,14", "present": "1"}, links.Link("compare", (12, 14), "", True)),
    ({"run": " 7 ", "key": "abc-_9"}, links.Link("run", (7,), "abc-_9", False)),
    ({"present": "true"}, links.Link("", (), "", True)),
    ({}, links.Link("", (), "", False)),
])
def test_a_link_is_read_from_the_query(query, expected):
    assert links.parse(query) == expected


@pytest.mark.parametrize("query, words", [
    ({"run": "abc"}, r"run='abc' is not a run id, e\.g\. \?run=42"),
    ({"run": "0"}, r"run='0' is not a run id"),
    ({"run": "-3"}, r"run='-3' is not a run id"),
    ({"run": "../1"}, r"run='\.\./1' is not a run id"),
    ({"run": "1,2"}, r"run='1,2' is not a run id"),
    ({"compare": "3"}, r"compare='3' is not two evaluation run ids, e\.g\. \?compare=12,14"),
    ({"compare": "1,2,3"}, r"compare='1,2,3' is not two evaluation run ids"),
    ({"run": "9" * 200}, r"run='9{40}\.\.\.' is not a run id"),
    ({"run": "1", "compare": "1,2"}, r"names both a run and a pair"),
    ({"run": "1", "key": "<script>"}, r"key is damaged"),
])
def test_a_malformed_link_is_refused_in_words(query, words):
    with pytest.raises(PromptLabError, match=words):
        links.parse(query)


def _run(db_path, visitor: visitors.Visitor, kind: str = "eval") -> int:
    from prompt_lab.runlog.store import connect, finish_run, start_run

    with visitors.acting_as(visitor), connect(db_path) as db:
        run_id = start_run(db, kind=kind, template_name="sentiment", template_hash="h", models=["default"],
                           strategies=["zero_shot"], params={}, options={})
        finish_run(db, run_id, "interrupted")
    return run_id


def test_locally_a_link_needs_no_key(home):
    run_id = _run(None, visitors.LOCAL)
    assert share_query([run_id]) == f"?run={run_id}"
    assert share_query([run_id], present=True) == f"?run={run_id}&present=1"
    assert links.parse({"run": str(run_id)}).granted


def test_a_link_to_runs_that_cannot_be_shown_together_is_refused(home):
    compare_run, eval_run, other = _run(None, visitors.LOCAL, "compare"), _run(None, visitors.LOCAL), \
        _run(None, visitors.LOCAL)
    for ids, words in (([], "Select a run first"), ([compare_run, eval_run], f"Run {compare_run} is a compare run; "
                       "a link to a pair needs two evaluation runs"), ([eval_run, eval_run], "got run .* twice"),
                       ([eval_run, other, compare_run], "got 3 run ids"), ([10_000], "There is no run 10000")):
        with pytest.raises(PromptLabError, match=words):
            share_query(ids)
    assert share_query([eval_run, other]) == f"?compare={eval_run},{other}"


def test_on_a_space_a_link_carries_a_key_for_exactly_its_runs(home, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/prompt-lab")
    alice = visitors.anonymous(visitors.new_browser_token())
    bob = visitors.anonymous(visitors.new_browser_token())
    a1, a2, b1 = _run(None, alice), _run(None, alice), _run(None, bob)
    with visitors.acting_as(alice):
        query = share_query([a1])
        pair = share_query([a1, a2])
        with pytest.raises(PromptLabError, match=f"There is no run {b1} in the run log"):
            share_query([b1])  # bob's run: alice cannot make a link to it
    key = re.search(r"key=([A-Za-z0-9_-]+)", query).group(1)
    assert len(key) == links.KEY_LENGTH and query == f"?run={a1}&key={key}"
    assert links.parse({"run": str(a1), "key": key}).granted
    assert not links.parse({"run": str(a2), "key": key}).granted  # the key of another run
    assert not links.parse({"run": str(a1)}).granted  # no key
    assert not links.parse({"run": str(a1), "key": key[:-1] + ("A" if key[-1] != "A" else "B")}).granted
    pair_key = re.search(r"key=([A-Za-z0-9_-]+)", pair).group(1)
    assert links.parse({"compare": f"{a1},{a2}", "key": pair_key}).granted
    assert not links.parse({"compare": f"{a2},{a1}", "key": pair_key}).granted
    # the key is kept with the data dir: another process (a restarted server) makes the same one
    assert links.link_key([a1]) == key
    (home / ".browser_secret").unlink()
    assert links.link_key([a1]) != key  # a new secret: old links stop working (what deleting the secret means)


def test_a_shared_run_is_readable_by_that_page_only_and_cannot_be_resumed(home, monkeypatch):
    from prompt_lab.evaluation.evaluate import resume
    from prompt_lab.runlog.store import connect, get_run, list_runs

    monkeypatch.setenv("SPACE_ID", "someone/prompt-lab")
    alice = visitors.anonymous(visitors.new_browser_token())
    bob = visitors.anonymous(visitors.new_browser_token())
    a1, a2 = _run(None, alice), _run(None, alice)
    with connect() as db:
        with visitors.acting_as(bob):
            assert get_run(db, a1) is None
        shared = visitors.Visitor(bob.key, bob.label, shared_runs=frozenset({a1}))
        with visitors.acting_as(shared):
            assert get_run(db, a1)["id"] == a1 and get_run(db, a2) is None
            assert [r["id"] for r in list_runs(db)] == [a1]
            with pytest.raises(PromptLabError, match=f"run {a1} was shared with you to read; only the visitor who "
                                                     "started it can resume it"):
                resume(a1)


def test_a_logged_compare_reads_back_as_it_ran(home, tiny_model_dir):
    from prompt_lab.compare import compare, logged_result
    from prompt_lab.models import GenerationParams

    ran = compare("sentiment", {"review": "Great <b>value</b>, \"quiet\"\nand fast."}, strategies=["zero_shot", "cot"],
                  models=[str(tiny_model_dir)], params=GenerationParams(max_new_tokens=6), k=2)
    back = logged_result(ran.run_id)
    assert back.variables == {"review": "Great <b>value</b>, \"quiet\"\nand fast."} == ran.variables
    assert (back.k, back.template, back.template_hash, back.models, back.command) == \
        (2, ran.template, ran.template_hash, ran.models, ran.command)
    assert [(o.model, o.strategy, o.prompt, o.answers, [g.text for g in o.generations],
             [g.completion_tokens for g in o.generations]) for o in back.outputs] == \
        [(o.model, o.strategy, o.prompt, o.answers, [g.text for g in o.generations],
          [g.completion_tokens for g in o.generations]) for o in ran.outputs]
    assert back.revisions == ran.revisions and not back.errors and not back.cancelled


# ---- in the browser ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def logged_runs(app_url):
    """A compare run and two evaluation runs on the same 12 items, made on the embedded model in the app's data dir."""
    from prompt_lab.compare import compare
    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.evaluation.experiments import load_spec
    from prompt_lab.models import GenerationParams

    review = "The <i>soup</i> was \"cold\" but the staff were lovely."
    compared = compare("sentiment", {"review": review}, strategies=["zero_shot", "few_shot"],
                       params=GenerationParams(max_new_tokens=8), k=2)
    spec = load_spec(ROOT / "experiments" / "sentiment_label_probs.yaml")
    spec.limit, spec.k_shot = 12, [1]
    first = evaluate(spec)
    spec.strategies = ["zero_shot"]
    second = evaluate(spec)
    return {"compare": compared, "review": review, "eval": first, "eval2": second}


def fresh(browser, url: str, flow: str, size=(1440, 900)) -> Walk:  # noqa: F811
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    return Walk(page, flow)


def test_a_link_opens_the_compare_run_in_a_fresh_browser(browser, app_url, logged_runs):  # noqa: F811
    from playwright.sync_api import expect

    run = logged_runs["compare"]
    walk = fresh(browser, f"{app_url}?run={run.run_id}", "links_compare")
    page = walk.page
    expect(page.get_by_role("tab", name="Compare", selected=True)).to_be_visible()
    expect(page.locator("#cmp-status")).to_contain_text(f"Run {run.run_id} saved", timeout=60_000)
    expect(page.locator("#var-0 textarea")).to_have_value(logged_runs["review"])  # the run's input, not example 1
    for output in run.outputs:
        expect(page.locator(f"#out-{output.strategy} textarea")).to_have_value(output.generations[0].text.lstrip())
    expect(page.locator("#out-cot")).to_be_hidden()  # a strategy the run did not have
    walk.shot("opened")
    with page.expect_download() as download:  # Download report in Compare: the run shown, one click
        page.locator("#cmp-report").click()
    report = open(download.value.path(), encoding="utf-8").read()
    assert download.value.suggested_filename.endswith(".html") and "<html" in report
    shown = html.unescape(report)
    assert f"python -m prompt_lab report {run.run_id}" in shown
    assert logged_runs["review"] in shown and run.outputs[0].generations[0].text.strip()[:30] in shown
    # Copy link gives the address of this run; a second fresh browser opens it the same
    page.locator("#cmp-link").click()
    box = page.locator("#cmp-link-url textarea, #cmp-link-url input").first
    expect(box).to_have_value(re.compile(rf"^{re.escape(app_url)}\?run={run.run_id}$"), timeout=30_000)
    walk.shot("copy-link")
    again = fresh(browser, box.input_value(), "links_compare_again")
    expect(again.page.locator("#cmp-status")).to_contain_text(f"Run {run.run_id} saved", timeout=60_000)
    assert again.page.locator(".toast-body").count() == 0
    walk.page.context.close()
    again.page.context.close()


def test_a_link_opens_an_evaluation_and_a_pair(browser, app_url, logged_runs):  # noqa: F811
    from playwright.sync_api import expect

    first, second = logged_runs["eval"], logged_runs["eval2"]
    walk = fresh(browser, f"{app_url}?run={second}", "links_eval")
    page = walk.page
    expect(page.get_by_role("tab", name="Evaluate", selected=True)).to_be_visible()
    expect(page.locator("#eval-head")).to_contain_text(f"Run {second} (completed)", timeout=60_000)
    expect(page.locator("#eval-summary")).to_contain_text("zero_shot")
    expect(page.locator("#eval-bars .js-plotly-plot")).to_be_visible()
    walk.shot("opened")
    page.context.close()

    walk = fresh(browser, f"{app_url}?compare={first},{second}", "links_pair")
    page = walk.page
    expect(page.get_by_role("tab", name="History", selected=True)).to_be_visible()
    expect(page.locator("#hist-pair-verdict")).to_contain_text("12 items have the same inputs", timeout=60_000)
    expect(page.locator("#hist-table-a")).to_contain_text("few_shot k=1")
    expect(page.locator("#hist-eval-a input")).to_have_value(str(first))
    walk.shot("opened")
    page.locator("#hist-link").click()  # the pair's link, with both runs
    expect(page.locator("#hist-link-url textarea, #hist-link-url input").first).to_have_value(
        re.compile(rf"\?compare={first},{second}$"), timeout=30_000)
    page.context.close()

    walk = fresh(browser, f"{app_url}?run=99999", "links_missing")
    assert "This link names run 99999, which is not in the run log" in walk.toast()
    walk.shot_toast("refused")
    walk.no_error_badges()
    walk.page.context.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_presenter_view_hides_editing_and_shows_results_large(browser, app_url, logged_runs, theme):  # noqa: F811
    from playwright.sync_api import expect

    dark = "&__theme=dark" if theme == "dark" else ""
    run = logged_runs["compare"]
    walk = fresh(browser, f"{app_url}?run={run.run_id}&present=1{dark}", f"presenter_{theme}", size=(1280, 720))
    page = walk.page
    expect(page.locator("#cmp-status")).to_contain_text(f"Run {run.run_id} saved", timeout=60_000)
    assert page.evaluate("() => document.body.classList.contains('present')")
    for hidden in ("#cmp-run", "#cmp-template", "#var-0", "#cmp-cli"):
        expect(page.locator(hidden)).to_be_hidden()
    expect(page.locator("#cmp-inputs")).to_contain_text("cold")  # what was asked, in place of the form
    expect(page.locator("#out-zero_shot textarea")).to_be_visible()
    size = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('#out-zero_shot textarea')).fontSize)")
    assert size >= 20, size  # large enough for a projector (15 px when editing)
    box = page.locator("#out-few_shot textarea").bounding_box()
    assert box["x"] + box["width"] <= 1280 and box["y"] < 720  # the grid is on the first screen, not off to the side
    page.wait_for_timeout(500)
    walk.page.screenshot(path=str(walk.folder / f"compare-{theme}.png"))
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert (background != "rgb(255, 255, 255)") if theme == "dark" else True

    page.goto(f"{app_url}?run={logged_runs['eval']}&present=1{dark}")
    expect(page.locator("#eval-head")).to_contain_text(f"Run {logged_runs['eval']}", timeout=60_000)
    expect(page.locator("#eval-run")).to_be_hidden()
    expect(page.locator("#eval-summary")).to_be_visible()
    page.wait_for_timeout(1000)
    walk.page.screenshot(path=str(walk.folder / f"evaluate-{theme}.png"))

    # the toggle turns it off again: the controls come back and the address drops present=1
    page.locator("#present-toggle input").click()
    expect(page.locator("#eval-run")).to_be_visible()
    assert "present" not in page.url
    page.locator("#present-toggle input").click()
    expect(page.locator("#eval-run")).to_be_hidden()
    assert "present=1" in page.url
    page.context.close()
