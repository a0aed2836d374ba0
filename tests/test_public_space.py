"""The app as a public Hugging Face Space runs it (SPACE_ID, SYSTEM=spaces and OAuth variables set, its own process),
visited by several people at once: two browsers (two contexts: separate cookies and storage) are two anonymous
visitors, a forged Hugging Face session is a signed-in one, gradio_client callers are API visitors. Each sees and
changes only their own runs, templates and jobs; the Space's author sees all; model actions wait in a fair line
whose place is shown, and over the limits are refused with a time to retry.

Screenshots of each step: test-artifacts/flows/public_*/.
"""
import os
import re
import sqlite3
import threading
from unittest import mock

import pytest
from gradio_client import Client

from conftest import session_cookie
from prompt_lab.access import links
from test_browser import ARGS, CHROMIUM, Walk

pytestmark = pytest.mark.integration


def space_db(home) -> sqlite3.Connection:
    return sqlite3.connect(home / "runs.db")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield instance
        instance.close()


def visit(browser, url, flow: str, signed_in_as: str | None = None) -> Walk:
    """A new visitor: a fresh browser context (its own localStorage and cookies) on the Space."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    if signed_in_as:  # what Gradio's OAuth callback leaves in the browser after "Sign in with Hugging Face"
        context.add_cookies([{"name": "session", "value": session_cookie(signed_in_as), "url": url}])
    page = context.new_page()
    page.goto(url)
    return Walk(page, flow)


def run_compare(walk: Walk, review: str) -> int:
    """Type a review, run zero-shot only on the default model, return the run id the status line gives."""
    from playwright.sync_api import expect

    page = walk.page
    expect(page.locator("#var-0 textarea")).to_have_value(re.compile(r"\w+"), timeout=60_000)
    page.locator("#var-0 textarea").fill(review)
    for label in ("Few-shot", "Chain-of-thought"):
        page.locator("#cmp-strategies").get_by_text(label, exact=True).click()
    page.locator("#cmp-run").click()
    expect(page.locator("#cmp-status")).to_contain_text("saved", timeout=180_000)
    return int(re.search(r"Run (\d+) saved", page.locator("#cmp-status").inner_text()).group(1))


def history_ids(walk: Walk) -> set[int]:
    from playwright.sync_api import expect

    page = walk.page
    walk.tab("History")
    expect(page.locator("#hist-runs").get_by_role("columnheader", name="run")).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1500)  # the table refreshes on the tab switch
    cells = page.locator('#hist-runs [role="gridcell"][data-col="0"]').all_inner_texts()
    return {int(c) for c in cells if c.strip().isdigit()}


def test_two_visitors_see_only_their_own_runs_and_templates_and_the_author_sees_all(browser, public_app):
    from playwright.sync_api import expect

    url, home, _ = public_app
    alice = visit(browser, url, "public_alice")
    bob = visit(browser, url, "public_bob")
    for walk in (alice, bob):
        expect(walk.page.locator("#visitor")).to_contain_text("You are anonymous visitor", timeout=30_000)
        expect(walk.page.get_by_role("button", name=re.compile("Sign in with Hugging Face"))).to_be_visible()
    assert alice.page.locator("#visitor").inner_text() != bob.page.locator("#visitor").inner_text()
    alice.shot("who-am-i")

    alices_run = run_compare(alice, "Alice's secret review: the <b>battery</b> \"lasts\" two days.")
    alice.shot("compare")
    # Alice saves a template; it is hers alone
    alice.tab("Templates")
    expect(alice.page.locator("#tpl-status")).to_contain_text("Valid", timeout=60_000)
    alice.page.get_by_role("button", name="New template").click()
    expect(alice.page.locator("#tpl-status")).to_contain_text("· 1 example", timeout=60_000)  # the starter, valid
    alice.type_into(alice.page.locator("#tpl-name textarea, #tpl-name input").first, "alices-template")
    alice.page.get_by_role("tab", name="YAML").click()
    expect(alice.page.locator("#tpl-yaml .cm-content")).to_contain_text("name: alices-template", timeout=30_000)
    alice.page.locator("#tpl-save").click()
    assert "Saved 'alices-template'" in alice.toast()
    expect(alice.page.locator("#tpl-status")).to_contain_text("Saved as alices-template.yaml", timeout=30_000)
    assert "/visitors/" not in alice.page.locator("#tpl-status").inner_text()  # no server path shown
    alice.shot("template-saved")

    bobs_run = run_compare(bob, "Bob's review: decent screen.")
    assert alices_run in history_ids(alice) and bobs_run not in history_ids(alice)
    assert history_ids(bob) == {bobs_run}
    bob.shot("history-own-runs-only")
    bob.tab("Compare")
    bob.page.locator("#cmp-template input").click()
    options = [o.replace("✓", "").strip() for o in bob.page.get_by_role("option").all_inner_texts()]
    assert "sentiment" in options and "alices-template" not in options
    bob.page.keyboard.press("Escape")
    alice.tab("Compare")
    alice.page.locator("#cmp-template input").click()
    assert "alices-template" in [o.replace("✓", "").strip() for o in alice.page.get_by_role("option").all_inner_texts()]
    alice.page.keyboard.press("Escape")

    # Alice comes back later in the same browser: still herself
    alice.page.reload()
    expect(alice.page.locator("#visitor")).to_contain_text("You are anonymous visitor", timeout=30_000)
    assert alices_run in history_ids(alice)

    owner = visit(browser, url, "public_owner", signed_in_as="owner")
    expect(owner.page.locator("#visitor")).to_contain_text("Signed in as owner", timeout=30_000)
    expect(owner.page.locator("#visitor")).to_contain_text("you administer this Space")
    assert {alices_run, bobs_run} <= history_ids(owner)
    owner.shot("author-sees-all")
    mallory = visit(browser, url, "public_mallory", signed_in_as="mallory")
    expect(mallory.page.locator("#visitor")).to_contain_text("Signed in as mallory", timeout=30_000)
    assert not {alices_run, bobs_run} & history_ids(mallory)
    mallory.shot("signed-in-visitor-sees-own-only")

    rows = dict(space_db(home).execute("select id, visitor from runs").fetchall())
    assert rows[alices_run].startswith("anon:") and rows[bobs_run].startswith("anon:")
    assert rows[alices_run] != rows[bobs_run]
    assert list(home.glob("visitors/anon-*/templates/alices-template.yaml"))
    assert not (home / "templates" / "alices-template.yaml").exists()
    for walk in (alice, bob, owner, mallory):
        walk.no_error_badges()
        walk.page.context.close()


def test_api_visitors_are_isolated_and_cannot_reach_paths_or_ad_hoc_servers(public_app, tmp_path):
    url, home, _ = public_app
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    out = first.predict("sentiment", {"review": "Great value."}, ["zero_shot"], ["default"], {"max_new_tokens": 4},
                        3, api_name="/compare")
    run_id = out["run_id"]
    assert run_id in [r["id"] for r in first.predict(api_name="/runs")["runs"]]
    assert run_id not in [r["id"] for r in second.predict(api_name="/runs")["runs"]]
    missing = 10_000
    for client_call in (lambda: second.predict(run_id, api_name="/run_generations"),
                        lambda: second.predict(run_id, api_name="/run_again")):
        with pytest.raises(Exception, match=rf"there is no run {run_id} in the run log"):
            client_call()
    with pytest.raises(Exception, match=rf"there is no run {missing} in the run log"):
        second.predict(missing, api_name="/run_generations")  # the same words as for another visitor's run
    assert second.predict(api_name="/export_csv")["rows"] == 0
    assert first.predict(api_name="/export_csv")["rows"] == 1

    for model, words in (("openai:m@http://127.0.0.1:1/v1", "ad-hoc server addresses are refused"),
                         (str(tmp_path), "other folders, files and Hub ids are not loaded"),
                         ("HuggingFaceTB/SmolLM2-360M-Instruct", "other folders, files and Hub ids are not loaded"),
                         ("default+" + str(home / "visitors"), "an adapter is one of your own tuning jobs'")):
        with pytest.raises(Exception, match=re.escape(words)):
            second.predict("sentiment", {"review": "x"}, ["zero_shot"], [model], {"max_new_tokens": 2}, 3,
                           api_name="/compare")
    with pytest.raises(Exception, match="file paths are not read"):
        second.predict("/etc/passwd", {"review": "x"}, api_name="/render")
    with pytest.raises(Exception, match="training is switched off on this public Space"):
        second.predict({"dataset": "sentiment_codes.csv"}, api_name="/tune")
    assert "&lt;" not in str(pytest.raises(Exception, second.predict, "name: x\n", {}, api_name="/render").value)


def test_a_link_with_its_key_opens_one_visitors_run_for_another_and_nothing_more(browser, public_app):
    from playwright.sync_api import expect

    url, home, _ = public_app
    alice = visit(browser, url, "public_link_alice")
    run_id = run_compare(alice, "Alice shares this: the <b>screen</b> is \"dim\".")
    alice.page.locator("#cmp-link").click()
    box = alice.page.locator("#cmp-link-url textarea, #cmp-link-url input").first
    expect(box).to_have_value(re.compile(rf"\?run={run_id}&key=[A-Za-z0-9_-]{{22}}$"), timeout=30_000)
    link = box.input_value()
    alice.shot("copy-link")
    key = re.search(r"key=([A-Za-z0-9_-]+)", link).group(1)
    # the key comes from the secret kept in the data dir, not from this server process: a restart keeps links
    with mock.patch.dict(os.environ, {"PROMPT_LAB_HOME": str(home), "SPACE_ID": "someone/space"}):
        assert links.link_key([run_id]) == key

    # Carol, a stranger in a fresh browser, opens the link: Alice's run in Compare, as it ran
    carol = visit(browser, link, "public_link_carol")
    expect(carol.page.locator("#cmp-status")).to_contain_text(f"Run {run_id} saved", timeout=60_000)
    expect(carol.page.locator("#var-0 textarea")).to_have_value('Alice shares this: the <b>screen</b> is "dim".')
    expect(carol.page.locator("#out-zero_shot textarea")).not_to_have_value("")
    carol.shot("opened-with-key")
    with carol.page.expect_download() as download:  # the report of the shared run too
        carol.page.locator("#cmp-report").click()
    assert download.value.suggested_filename.endswith(".html")
    assert run_id not in history_ids(visit(browser, url, "public_link_dave"))  # the link granted Carol, no one else

    # without the key, with the key of another run, or a key moved to another run: missing, in the same words
    for query in (f"?run={run_id}", f"?run={run_id}&key={'A' * 22}", f"?run={run_id + 1}&key={key}",
                  f"?compare={run_id},{run_id + 1}&key={key}"):
        eve = visit(browser, url + query, "public_link_eve")
        # (a pair is read as evaluation runs: Alice's compare run is "not an evaluation run", as a missing one is)
        assert re.search(r"not in the run log|no run \d+ in the run log|is not an evaluation run", eve.toast())
        expect(eve.page.locator("#cmp-status")).not_to_contain_text(f"Run {run_id} saved")
        expect(eve.page.get_by_role("tab", name="Compare", selected=True)).to_be_visible()  # nothing opened
        eve.page.context.close()
    eve = visit(browser, url + f"?run={run_id}&key={key}&present=1", "public_link_present")
    expect(eve.page.locator("#cmp-inputs")).to_contain_text("Alice shares this", timeout=60_000)
    expect(eve.page.locator("#cmp-run")).to_be_hidden()
    eve.shot("presenter")
    for walk in (alice, carol, eve):
        walk.page.context.close()


def test_fair_line_shows_the_place_and_refuses_a_third_action_from_one_visitor(browser, public_app):
    """While one visitor's compare runs, another's waits with its place and expected wait on screen; a visitor with
    two actions in line is refused a third with a time to retry."""
    from playwright.sync_api import expect

    url, home, _ = public_app
    first = visit(browser, url, "public_line_first")
    second = visit(browser, url, "public_line_second")
    for walk in (first, second):
        expect(walk.page.locator("#var-0 textarea")).to_have_value(re.compile(r"\w+"), timeout=60_000)
    first.page.locator("#cmp-run").click()  # three strategies on the default model: several seconds
    expect(first.page.locator("#cmp-status")).to_contain_text(re.compile("Loading|Generating"), timeout=60_000)
    second.page.locator("#cmp-run").click()
    waiting = second.page.get_by_text(re.compile(r"Waiting for the model: 1 action is ahead of yours, about \d+ s"))
    expect(waiting.first).to_be_visible(timeout=30_000)
    second.shot("waiting-in-line")
    expect(second.page.locator("#cmp-status")).to_contain_text("saved", timeout=240_000)
    second.shot("its-turn-came")
    for walk in (first, second):
        walk.no_error_badges()
        walk.page.context.close()

    client = Client(url, verbose=False)
    jobs = [client.submit("sentiment", {"review": f"Item {i}."}, ["zero_shot", "few_shot", "cot"], ["default"],
                          {"max_new_tokens": 32}, 3, api_name="/compare") for i in range(3)]
    outcomes = []
    for job in jobs:
        try:
            outcomes.append(("ok", job.result(timeout=300)["run_id"]))
        except Exception as exc:  # noqa: BLE001 - the refusal's words are what is checked
            outcomes.append(("refused", str(exc)))
    refused = [text for kind, text in outcomes if kind == "refused"]
    assert len(refused) == 1 and [k for k, _ in outcomes].count("ok") == 2
    assert re.search(r"you already have 2 model actions waiting or running, the most one visitor may; try again "
                     r"when one ends \(about \d+ s\)", refused[0])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1)) / 1024


def test_fifty_visitors_at_once_every_accepted_run_logged_the_rest_told_to_retry(public_app, tiny_model_dir):
    """A bounded loopback load test: 50 API visitors submit a compare at the same moment. Those the line takes are
    all logged as completed runs; the others are refused at once with a time to retry; memory stays bounded."""
    url, home, proc = public_app
    clients = [Client(url, verbose=False) for _ in range(50)]
    warm = clients[0].predict("sentiment", {"review": "warm up"}, ["zero_shot"], [str(tiny_model_dir)],
                              {"max_new_tokens": 2}, 3, api_name="/compare")  # the tiny model is loaded once
    before_runs = space_db(home).execute("select count(*) from runs").fetchone()[0]
    before_mb = rss_mb(proc.pid)
    start = threading.Barrier(50)
    outcomes: list = [None] * 50

    def visitor(i: int) -> None:
        start.wait()
        try:
            out = clients[i].predict("sentiment", {"review": f"Visitor {i} says it is fine."}, ["zero_shot", "cot"],
                                     [str(tiny_model_dir)], {"max_new_tokens": 8}, 3, api_name="/compare")
            outcomes[i] = ("accepted", out["run_id"])
        except Exception as exc:  # noqa: BLE001
            outcomes[i] = ("refused", str(exc))

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert all(o is not None for o in outcomes)
    accepted = [run for kind, run in outcomes if kind == "accepted"]
    refused = [text for kind, text in outcomes if kind == "refused"]
    assert len(accepted) >= 17 and refused  # the line holds 1 running + 16 waiting; a crowd of 50 overflows it
    other = [text for text in refused if not re.search(r"the app is busy: \d+ model actions are waiting, the most it "
                                                       r"queues; try again in about \d+ s", text)]
    assert other == []
    logged = dict(space_db(home).execute("select id, status from runs where id > ?", [warm["run_id"]]).fetchall())
    assert sorted(logged) == sorted(accepted) and set(logged.values()) == {"completed"}
    assert space_db(home).execute("select count(*) from runs").fetchone()[0] == before_runs + len(accepted)
    grown = rss_mb(proc.pid) - before_mb
    print(f"50 visitors: {len(accepted)} accepted and logged, {len(refused)} told to retry; "
          f"app RSS {before_mb:.0f} -> {before_mb + grown:.0f} MB")
    assert grown < 300, f"the app grew by {grown:.0f} MB serving 50 visitors"
