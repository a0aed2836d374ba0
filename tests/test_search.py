"""Automatic prompt search (prompt_lab/search): the spec and its refusals, the seeded dev/test split by content, how a
proposer's reply becomes a candidate, the verdict's rule (only the held-out test may claim a gain), and real searches
on the embedded default model (scorer and proposer): two rounds within budget with every candidate logged, a budget
that stops it, Stop then resume ending where an uninterrupted search ends, a remote proposer behind a real
OpenAI-compatible server, and a proposer that cannot beat the original, which the test split says."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ROOT, free_port

from prompt_lab.cli import main
from prompt_lab.errors import CancelledError, PromptLabError
from prompt_lab.evaluation.datasets import Item
from prompt_lab.prompts.templates import get_template
from prompt_lab.runlog.store import open_db
from prompt_lab.search.loop import resume_search, search
from prompt_lab.search.proposals import Failure, clean_proposal, proposal_prompt
from prompt_lab.search.results import save_winner, search_result
from prompt_lab.search.spec import SearchError, SearchSpec, load_search_spec, split_items

DATA = ROOT / "experiments" / "data"


def spec(**changes) -> SearchSpec:
    base = dict(template="sentiment", dataset=str(DATA / "sentiment.csv"), limit=12, rounds=2, candidates=1, keep=1,
                failures_shown=2, proposer_max_new_tokens=32, max_calls=500, batch_size=16)
    return SearchSpec(**{**base, **changes}).validate()


def items(n: int) -> list[Item]:
    return [Item(index=i, line=i + 2, variables={"review": f"review number {i}"}, target="Positive", choices=None)
            for i in range(n)]


# --- the spec, the split, the proposals: no model ------------------------------------------------------------------

def test_search_files_are_checked_field_by_field_with_the_line(home, tmp_path):
    cases = {"rounds: 0\n": "line 3: field 'rounds'", "rounds: 11\n": "field 'rounds'",
             "keep: 0\n": "field 'keep'",
             "dev_fraction: 1\n": "field 'dev_fraction'", "proposer: ''\n": "field 'proposer'",
             "max_calls: many\n": "field 'max_calls'", "strategy: cot\n": "field 'strategy'",
             "rounds: [1, 2]\n": "field 'rounds'", "bogus: 1\n": "bogus"}
    for extra, words in cases.items():
        path = tmp_path / "search_x.yaml"
        path.write_text("template: sentiment\ndataset: data.csv\n" + extra)
        with pytest.raises(PromptLabError) as err:
            load_search_spec(path)
        assert words in str(err.value) and str(path) in str(err.value), (extra, str(err.value))
    shipped = load_search_spec(ROOT / "experiments" / "search_sentiment.yaml", rounds=1, candidates=4)
    assert (shipped.rounds, shipped.candidates, shipped.name) == (1, 4, "search_sentiment")
    assert shipped.dataset == str(DATA / "sentiment.csv")
    with pytest.raises(SearchError, match="field 'candidates'"):
        load_search_spec(ROOT / "experiments" / "search_sentiment.yaml", candidates=0)


def test_the_split_is_seeded_by_content_disjoint_and_keeps_both_sides():
    pool = items(40)
    dev, test = split_items(pool, 0.5, seed=0)
    assert len(dev) == 20 and len(test) == 20
    assert not {i.index for i in dev} & {i.index for i in test}
    # the file's order does not move an item to the other side; another seed does move some
    again, _ = split_items(list(reversed(pool)), 0.5, seed=0)
    assert [i.index for i in again] == [i.index for i in dev]
    assert [i.index for i in split_items(pool, 0.5, seed=1)[0]] != [i.index for i in dev]
    assert split_items(items(4), 0.99, 0)[1] and split_items(items(4), 0.01, 0)[0]
    with pytest.raises(SearchError, match="at least 4 items"):
        split_items(items(3), 0.5, 0)


def test_a_proposers_reply_is_cleaned_or_refused_with_the_reason():
    original = "Read the review and decide the feeling."
    assert clean_proposal("Here is a better instruction:\n\n\"Decide the feeling. Say one word. Be brief. "
                          "Then more.\"\n\nI changed it because", [original]) == (
        "Decide the feeling. Say one word. Be brief.", None)
    assert clean_proposal("New instruction: Name the writer's mood in one word.", [original])[1] is None
    assert clean_proposal("Output: Name the mood of the review.", [original])[0] == "Name the mood of the review."
    assert "template syntax" in clean_proposal("Classify {{ review }} now please", [original])[1]
    assert "fewer than three words" in clean_proposal("Positive", [original])[1]
    assert "copies the request back" in clean_proposal("Choose Positive. It gets 20% of 50 practice inputs right.",
                                                       [original])[1]
    assert "copies the request back" in clean_proposal("review: it broke | correct answer: Negative", [original])[1]
    assert clean_proposal("read the review and decide the FEELING!", [original])[1] == \
        "repeats the original instruction"
    assert clean_proposal("Say it.  Now, in one word", [original, "say it. now, in one word"])[1] == \
        "repeats an instruction already tried"
    long = "Decide the feeling of the review carefully and " * 30
    assert len(clean_proposal(long, [original])[0]) <= 601


def test_the_proposer_is_shown_the_task_the_instruction_its_score_and_failures_escaped_to_plain_text():
    prompt = proposal_prompt("Classify reviews", "Read it.", 0.25, 8,
                             [Failure({"review": "line one\nline <two> \"quoted\""}, "Negative", None)],
                             ["Positive", "Negative"])
    user = prompt.messages[1]["content"]
    assert 'Current instruction: "Read it."' in user and "25% of 8" in user
    assert "Allowed answers: Positive, Negative" in user
    assert "review: line one line <two> \"quoted\" | correct answer: Negative | it answered: (no answer)" in user


def test_the_verdict_claims_a_gain_only_from_the_held_out_test():
    from prompt_lab.search.results import verdict_words as _words  # the rule itself, on hand-made results

    def result(dev_w, dev_o, test_w, test_o, p):
        side = lambda s: {"score": s, "ci": [0, 1], "n": 50}  # noqa: E731
        return {"original": {"id": 1, "dev_score": dev_o}, "winner": {"id": 3, "dev_score": dev_w},
                "test": {"items": 50, "original": side(test_o), "winner": side(test_w), "p_value": p}}

    big_dev_gain = _words(result(0.9, 0.3, 0.42, 0.38, 0.5))
    assert "does not beat the original" in big_dev_gain and "a dev gain alone is not evidence" in big_dev_gain
    assert "is better" not in big_dev_gain
    assert "held-out test items no choice was made on, candidate 3 is better than the original" in \
        _words(result(0.5, 0.3, 0.7, 0.4, 0.001))
    assert "Keep the original" in _words(result(0.6, 0.3, 0.2, 0.5, 0.01))
    assert "no candidate beat the original on dev" in _words(result(0.2, 0.3, 0.3, 0.3, 1.0))
    assert "Not tested yet" in _words({**result(0.5, 0.3, 0, 0, 1), "test": None})


# --- real searches on the embedded default model --------------------------------------------------------------------

def _generations(run_id):
    db = open_db()
    return [dict(r) for r in db.query("select * from generations where run_id = ? order by id", [run_id])]


def test_a_two_round_search_on_the_default_model_logs_every_candidate_and_tests_the_winner_once(home,
                                                                                                default_model_dir):
    seen = []
    run_id = search(spec(), progress=lambda f, m: seen.append((f, m)))
    result = search_result(run_id)
    candidates = result["candidates"]
    assert result["status"] == "completed" and result["split"] == {"seed": 0, "dev": 6, "test": 6}
    assert candidates[0]["round"] == 0 and candidates[0]["parent"] is None
    assert candidates[0]["text"] == get_template("sentiment").instruction
    valid = [c for c in candidates if c["status"] != "invalid"]
    assert [sum(c["round"] == r for c in valid) for r in (0, 1, 2)] == [1, 1, 1]
    ids = {c["id"]: c for c in candidates}
    for c in candidates[1:]:  # each written from a candidate of an earlier round; each scored on all of dev
        assert ids[c["parent"]]["round"] < c["round"], c
        if c["status"] == "scored":
            assert c["dev_n"] == 6 and 0 <= c["dev_score"] <= 1
        else:
            assert c["status"] == "invalid" and c["reason"]
    # the best so far seeds the next round (keep: 1)
    round_one = [c for c in valid if c["round"] <= 1]
    best = min(round_one, key=lambda c: (-c["dev_score"], c["id"]))
    assert {c["parent"] for c in candidates if c["round"] == 2} == {best["id"]}
    # the winner is the best non-original by dev; it and the original alone are scored on the test items
    winner = result["winner"]
    assert winner == min(valid[1:], key=lambda c: (-c["dev_score"], c["id"]))
    rows = _generations(run_id)
    dev_items, test_items = set(), set()
    for row in rows:
        if row["strategy"] == "proposal":
            continue
        tested = row["template_hash"] in (winner["template_hash"], candidates[0]["template_hash"])
        (dev_items if row["item_index"] in search_dev(run_id) else test_items).add(row["item_index"])
        if row["item_index"] not in search_dev(run_id):
            assert tested, "only the winner and the original may see a test item"
    assert len(test_items) == 6 and not dev_items & test_items
    assert sum(r["strategy"] == "proposal" for r in rows) == len(candidates) - 1  # every proposal's reply logged
    test = result["test"]
    assert test["items"] == 6 and test["winner"]["n"] == test["original"]["n"] == 6
    assert winner["test_score"] == test["winner"]["score"]
    assert 0 <= test["p_value"] <= 1 and test["baselines"]["chance"] == pytest.approx(1 / 3)
    assert result["budget"]["calls_used"] == sum(c["calls"] for c in candidates) <= 500
    assert result["budget"]["calls_used"] >= 6 * len([c for c in candidates if c["status"] == "scored"])
    assert seen and all(0 <= f <= 1 for f, _ in seen) and any("round 2" in m for _, m in seen)
    # the winner saved as a template of the user's own, in one call
    saved = save_winner(run_id)
    assert saved.name == f"sentiment-search-{run_id}" and get_template(saved.name).instruction == winner["text"]
    assert f"prompt search run {run_id}" in get_template(saved.name).description


def search_dev(run_id):
    db = open_db()
    options = json.loads(db.execute("select options_json from runs where id = ?", [run_id]).fetchone()[0])
    return set(options["dev"])


def test_the_model_call_budget_stops_the_search_and_it_still_tests_what_it_found(home, default_model_dir):
    run_id = search(spec(rounds=3, candidates=2, max_calls=6 + 1 + 6))  # the original, one proposal, its scoring
    result = search_result(run_id)
    assert result["status"] == "completed"
    assert "model calls" in result["budget"]["stopped_by"] and result["budget"]["calls_used"] <= 13
    assert len(result["candidates"]) == 2 and result["test"]["items"] == 6
    with pytest.raises(PromptLabError, match="before the original instruction was scored"):
        search(spec(max_calls=5))


def test_stop_mid_search_then_resume_ends_where_an_uninterrupted_search_ends(home, default_model_dir):
    whole = search_result(search(spec()))
    cancel = threading.Event()

    def progress(fraction, message):
        if message.startswith("round 1: candidate") and "scored" in message:
            cancel.set()  # stop after the first proposal of round 1 is scored

    with pytest.raises(CancelledError) as stopped:
        search(spec(), progress=progress, cancel=cancel)
    run_id = stopped.value.run_id
    partial = search_result(run_id)
    assert partial["status"] == "cancelled" and partial["test"] is None and "Not tested yet" in partial["verdict"]
    assert 2 <= len(partial["candidates"]) < len(whole["candidates"])
    with pytest.raises(PromptLabError, match="is completed"):
        resume_search(whole["run_id"])
    assert resume_search(run_id) == run_id
    resumed = search_result(run_id)
    assert resumed["status"] == "completed"
    key = lambda r: [(c["round"], c["parent"], c["text"], c["status"], c["dev_score"]) for c in r["candidates"]]  # noqa
    assert key(resumed) == key(whole)  # nothing asked twice, nothing lost, the same seeds
    assert resumed["test"] == whole["test"]


def test_the_cli_prints_candidates_and_the_test_as_json_and_text(home, default_model_dir, tmp_path, capsys):
    path = tmp_path / "search_small.yaml"
    path.write_text(f"template: sentiment\ndataset: {DATA / 'sentiment.csv'}\nlimit: 8\nrounds: 2\ncandidates: 2\n"
                    "proposer_max_new_tokens: 32\n")
    assert main(["search", str(path), "--rounds", "1", "--candidates", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["budget"]["rounds"] == 1 and data["split"] == {"seed": 0, "dev": 4, "test": 4}
    for c in data["candidates"]:
        assert {"text", "parent", "round", "dev_score"} <= set(c)
    assert set(data["test"]) >= {"original", "winner", "paired", "p_value", "items"}
    assert data["verdict"] and data["saved_template"] is None
    assert main(["search", "--show", str(data["run_id"]), "--save-as", "my-found"]) == 0
    out = capsys.readouterr().out
    assert "round     #  dev   from  instruction" in out and "test (4 held-out items)" in out
    assert "saved the winner as template 'my-found'" in out
    assert main(["search", "--show", "999"]) == 2 and "not a search run" in capsys.readouterr().err


class ScriptedProposer:
    """An OpenAI-compatible server that answers every chat request with one fixed instruction (a proposer that has
    nothing better to offer than the original reworded); it records the prompts it was sent."""

    def __init__(self, reply: str):
        self.prompts = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, data):
                body = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._json({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                server.prompts.append(request["messages"])
                self._json({"id": "x", "object": "chat.completion", "model": "scripted",
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                         "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_a_search_that_cannot_beat_the_original_says_so_on_the_test_split(home, default_model_dir):
    reworded = ("Please read the review and decide the writer's overall feeling. Choose one of: Positive, Negative, "
                "Neutral.")
    proposer = ScriptedProposer(reworded)
    try:
        run_id = search(spec(limit=24, rounds=1, candidates=1, proposer=f"openai:scripted@{proposer.url}"))
    finally:
        proposer.httpd.shutdown()
    result = search_result(run_id)
    sent = proposer.prompts[0][1]["content"]
    assert "Read the review and decide the writer's overall feeling. Choose one of: Positive, Negative, Neutral." \
        in sent  # the proposer reads the instruction as the model did, Jinja rendered
    assert result["winner"]["text"] == reworded and result["test"]["items"] == 12
    assert result["test"]["p_value"] >= 0.05
    assert "does not beat the original" in result["verdict"] and "is better than" not in result["verdict"]


def test_a_remote_proposer_through_a_real_server(home, default_model_dir, served_model):
    base_url, name = served_model
    run_id = search(spec(limit=8, rounds=1, candidates=1, proposer=f"openai:{name}@{base_url}"))
    result = search_result(run_id)
    rows = [r for r in _generations(run_id) if r["strategy"] == "proposal"]
    assert rows and all(r["model_spec"] == f"openai:{name}@{base_url}" for r in rows)
    assert result["status"] == "completed" and len(result["candidates"]) >= 2
