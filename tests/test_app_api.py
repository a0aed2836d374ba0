"""The launched app through its named API endpoints (gradio_client), as another program would use it: each
endpoint takes plain values and returns a documented dict (README, "API endpoints")."""
import json
import os
import sqlite3

import pytest
from gradio_client import Client

from conftest import ROOT

pytestmark = pytest.mark.integration

ENDPOINTS = {"/render", "/compare", "/runs", "/run_generations", "/run_report", "/evaluate", "/paired_test",
             "/compare_runs", "/run_again", "/resume_evaluation", "/export_csv", "/save_template", "/jobs", "/job",
             "/tune", "/stop_job", "/resume_job"}
COMPARE_KEYS = {"run_id", "template", "template_hash", "models", "revisions", "params", "warnings", "errors",
                "cancelled", "command", "outputs"}
OUTPUT_KEYS = {"run_id", "model", "strategy", "format", "prompt", "output", "answer", "prompt_tokens",
               "completion_tokens", "latency_ms", "finish_reason", "samples"}
REPORT_KEYS = {"run_id", "status", "template", "dataset", "items", "metric", "rows", "labels", "paired", "conditions",
               "template_hash", "method", "dataset_hash", "warnings", "example_selection", "variants", "baseline",
               "wall_s", "scored", "items_per_s", "format"}
ROW_KEYS = {"condition", "kind", "value", "ci_low", "ci_high", "strict", "chance", "majority", "no_answer", "wrong",
            "tokens", "latency_s", "samples", "self_consistency", "agreement", "corpus", "majority_label",
            "beats_majority", "baseline_note"}
TEST_KEYS = {"a", "b", "verdict", "n", "both", "only_a", "only_b", "neither", "p_value", "accuracy_a", "accuracy_b",
             "ci_a", "ci_b", "difference", "difference_ci"}
SIDE_KEYS = {"run_id", "label", "variant", "template", "template_version", "strategy", "k", "model", "method",
             "metric", "dataset"}


def runs_db():
    return sqlite3.connect(os.path.join(os.environ["PROMPT_LAB_HOME"], "runs.db"))


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_the_named_endpoints_are_exactly_the_documented_ones(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == ENDPOINTS  # the page's own events are private
    readme = (os.path.join(os.path.dirname(__file__), "..", "README.md"))
    with open(readme, encoding="utf-8") as f:
        section = f.read().split("## API endpoints", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{name}`" in section for name in ENDPOINTS)


def test_render_returns_every_strategy_with_token_counts(client):
    out = client.predict("sentiment", {"review": "{{7*7}} stars"}, "default", 2, api_name="/render")
    assert set(out) == {"template", "model", "prompts", "notes"} and out["notes"] == []
    items = out["prompts"]
    assert [i["strategy"] for i in items] == ["zero_shot", "few_shot", "cot", "few_shot_cot"]
    assert all(i["tokens"] > 20 for i in items)
    assert "Review: {{7*7}} stars" in items[0]["prompt"]
    as_text = client.predict("sentiment", json.dumps({"review": "{{7*7}} stars"}), "default", 2, api_name="/render")
    assert as_text == out


def test_compare_returns_each_strategy_and_logs_the_run(client):
    out = client.predict("sentiment", {"review": "I love this phone, the camera is superb."},
                         ["zero_shot", "few_shot", "cot"], ["default"], {"max_new_tokens": 24}, 3, api_name="/compare")
    assert set(out) == COMPARE_KEYS and out["models"] == ["default"] and not out["errors"]
    assert [o["strategy"] for o in out["outputs"]] == ["zero_shot", "few_shot", "cot"]
    for o in out["outputs"]:
        assert set(o) == OUTPUT_KEYS and o["run_id"] == out["run_id"] and o["output"] and o["prompt"]
        assert o["completion_tokens"] > 0 and o["latency_ms"] > 0 and len(o["samples"]) == 1
    assert out["command"].startswith("python -m prompt_lab compare --template sentiment")
    assert "--max-new-tokens 24" in out["command"]
    run_id = out["run_id"]
    db = runs_db()
    assert db.execute("select status from runs where id = ?", [run_id]).fetchone() == ("completed",)
    assert db.execute("select count(*) from generations where run_id = ?", [run_id]).fetchone() == (3,)
    listed = client.predict("", "", "", "", "any time", 200, api_name="/runs")
    assert run_id in [row["id"] for row in listed["runs"]] and listed["count"] == len(listed["runs"])
    again = client.predict(run_id, api_name="/run_again")
    assert again["run_id"] > run_id and again["command"] == out["command"]


def test_compare_grid_over_the_api_one_entry_per_model_and_strategy(client, served_model):
    remote = f"openai:{served_model[1]}@{served_model[0]}"
    out = client.predict("sentiment", {"review": "Terrible battery, great screen."}, ["zero_shot", "cot"],
                         ["default", remote], {"max_new_tokens": 12}, 3, api_name="/compare")
    assert out["models"] == ["default", remote] and not out["errors"]
    assert [(o["model"], o["strategy"]) for o in out["outputs"]] == [
        ("default", "zero_shot"), ("default", "cot"), (remote, "zero_shot"), (remote, "cot")]
    assert all(o["output"] for o in out["outputs"])


def test_max_new_tokens_above_the_cap_is_clamped_server_side(client):
    out = client.predict("sentiment", {"review": "fine"}, ["zero_shot"], ["default"], {"max_new_tokens": 100000},
                         3, api_name="/compare")
    assert out["params"]["max_new_tokens"] == 64
    assert out["warnings"] == ["max_new_tokens 100000 is above the cap; clamped to 64"]


def test_bad_input_is_a_plain_message(client):
    with pytest.raises(Exception, match="variables must be a JSON object: Expecting property name"):
        client.predict("sentiment", "{not json", "default", 2, api_name="/render")
    with pytest.raises(Exception, match="unknown template 'nope'"):
        client.predict("nope", {}, "default", 2, api_name="/render")
    with pytest.raises(Exception, match="'sentiment' is a shipped template and is never overwritten"):
        client.predict("name: sentiment\ninstruction: x\nvariables: [a]\n", api_name="/save_template")
    with pytest.raises(Exception, match="unknown params temprature; known: "):
        client.predict("sentiment", {"review": "x"}, ["zero_shot"], ["default"], {"temprature": 1}, 3,
                       api_name="/compare")


def test_every_named_endpoint_returns_its_documented_keys(client):
    """One call of each endpoint through gradio_client against the real app."""
    seen = set()

    def call(name, *args):
        seen.add(name)
        out = client.predict(*args, api_name=name)
        assert isinstance(out, dict), name
        return out

    saved = call("/save_template", "name: api-probe\ninstruction: Is it positive?\nvariables: [text]\n"
                                   "choices: [yes, no]\nanswer: {type: choice}\nexamples:\n"
                                   "  - inputs: {text: great}\n    output: 'yes'\n    rationale: It praises.\n")
    assert set(saved) == {"name", "version", "source"} and saved["name"] == "api-probe"
    assert saved["source"] == "api-probe.yaml"  # the file's name, not where the server keeps it
    assert set(call("/render", "api-probe", {"text": "good"}, "default", 1)) == {"template", "model", "prompts",
                                                                                 "notes"}
    compared = call("/compare", "api-probe", {"text": "good"}, ["zero_shot"], ["default"], {"max_new_tokens": 2}, 1)
    assert set(compared) == COMPARE_KEYS and set(compared["outputs"][0]) == OUTPUT_KEYS
    assert set(call("/run_again", compared["run_id"])) == COMPARE_KEYS
    runs = call("/runs", "api-probe", "", "", "", "any time", 10)
    assert set(runs) == {"count", "runs"} and runs["count"] == 2
    assert {"id", "created_utc", "kind", "status", "template_name", "models", "strategies", "generations",
            "accuracy", "duration_s"} <= set(runs["runs"][0])
    generations = call("/run_generations", compared["run_id"])
    assert set(generations) == {"run", "generations"}
    assert set(generations["run"]) == {"id", "kind", "status", "template", "models", "strategies", "created_utc",
                                       "command"}
    assert {"strategy", "output", "answer", "latency_ms"} <= set(generations["generations"][0])
    exported = call("/export_csv", "api-probe", "", "", "", "any time")
    assert set(exported) == {"rows", "csv"} and exported["rows"] == 2 and exported["csv"].startswith("run_id,")

    report = call("/evaluate", "sentiment_label_probs", 10)
    assert set(report) == REPORT_KEYS and report["items"] == 10 and report["status"] == "completed"
    assert report["wall_s"] > 0 and report["items_per_s"] == pytest.approx(report["scored"] / report["wall_s"], rel=0.01)
    assert set(report["rows"][0]) == ROW_KEYS and len(report["labels"]) == len(report["rows"]) > 1
    assert set(report["paired"][0]) == TEST_KEYS
    run_id = report["run_id"]
    assert call("/run_report", run_id) == report
    test = call("/paired_test", run_id, report["labels"][0], run_id, report["labels"][-1])
    assert set(test) == TEST_KEYS and test["n"] == 10
    pairs = call("/compare_runs", run_id, run_id)
    assert set(pairs) == {"run_a", "run_b", "report_a", "report_b", "paired", "pairs"} and pairs["paired"] == 10
    assert set(pairs["report_a"]) == REPORT_KEYS and set(pairs["pairs"][0]) == {"a", "b", "paired", "test", "note"}
    assert set(pairs["pairs"][0]["a"]) == SIDE_KEYS and pairs["pairs"][0]["a"]["method"] == "label_probs"
    with pytest.raises(Exception, match=r"cannot be paired: only 0 item\(s\) have the same inputs and gold"):
        call("/compare_runs", run_id, call("/evaluate", "plausibility_zero_vs_few", 10)["run_id"])
    with runs_db() as db:  # as if it had been stopped: resuming finds nothing left to do
        db.execute("update runs set status = 'cancelled' where id = ?", [run_id])
    resumed = call("/resume_evaluation", run_id)
    assert set(resumed) == REPORT_KEYS and resumed["status"] == "completed"

    assert set(call("/jobs", 10)) == {"jobs"}
    started = call("/tune", {"dataset": "sentiment_codes.csv", "template": "sentiment-codes", "max_steps": 2,
                             "columns": {"variables": {"review": "review"}, "target": "code"}})
    assert set(started) == {"job_id", "message"}
    job_id = started["job_id"]
    stopped = call("/stop_job", job_id)
    assert set(stopped) == {"job_id", "message"} and stopped["job_id"] == job_id
    job = call("/job", job_id)
    assert set(job) == {"job", "events"} and job["job"]["id"] == job_id
    assert job["job"]["status"] == "cancelled" and "model_spec" in job["job"]
    resumed_job = call("/resume_job", job_id)
    assert set(resumed_job) == {"job_id", "from_step"} and resumed_job["from_step"] == 0
    call("/stop_job", job_id)
    assert job_id in [j["id"] for j in call("/jobs", 10)["jobs"]]
    assert seen == ENDPOINTS


def sentiment_rows(count: int) -> list[str]:
    """The first `count` rows of the shipped sentiment data (header excluded)."""
    return (ROOT / "experiments" / "data" / "sentiment.csv").read_text(encoding="utf-8").splitlines()[1:count + 1]


def test_evaluate_runs_a_template_on_an_uploaded_dataset_and_logs_it(client, tmp_path):
    from gradio_client import handle_file

    upload = tmp_path / "reviews.csv"
    upload.write_text("review,label\n" + "\n".join(sentiment_rows(12)) + "\n", encoding="utf-8")
    report = client.predict(template="sentiment", dataset=handle_file(str(upload)),
                            strategies=["zero_shot", "few_shot"], models=["default"], method="label_probs", k_shot=[1],
                            api_name="/evaluate")
    assert set(report) == REPORT_KEYS and report["status"] == "completed"
    assert (report["items"], report["dataset"], report["template"], report["method"]) == (
        12, "reviews.csv", "sentiment", "label_probs")
    assert len(report["rows"]) == 2  # zero_shot and few_shot k=1, on the default model
    with runs_db() as db:
        assert db.execute("select kind, status, template_name from runs where id = ?", [report["run_id"]]).fetchone() \
            == ("eval", "completed", "sentiment")
        assert db.execute("select count(*) from generations where run_id = ?", [report["run_id"]]).fetchone() == (24,)
    assert client.predict(report["run_id"], api_name="/run_report") == report

    # other column names, mapped as JSON text; a template given as its YAML text; the first 5 items
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text("".join(json.dumps({"text": r.rsplit(",", 1)[0].strip('"'), "gold": r.rsplit(",", 1)[1]}) + "\n"
                               for r in sentiment_rows(12)), encoding="utf-8")
    template = (ROOT / "templates" / "sentiment.yaml").read_text().replace("name: sentiment", "name: sentiment-x", 1)
    report = client.predict(template=template, dataset=handle_file(str(renamed)),
                            columns=json.dumps({"variables": {"review": "text"}, "target": "gold"}), limit=5,
                            method="label_probs", api_name="/evaluate")
    assert (report["items"], report["dataset"], report["template"]) == (5, "renamed.jsonl", "sentiment-x")
    assert [r["condition"] for r in report["rows"]] == ["zero_shot · default"]  # the default strategy and model


def test_the_prompt_format_reaches_render_compare_and_evaluate(client):
    statement = {"statement": 'A cat "sat" <on> the mat.'}
    out = client.predict("plausibility", statement, "default", 2, "raw", api_name="/render")
    assert {p["format"] for p in out["prompts"]} == {"raw"}
    assert out["prompts"][0]["prompt"].endswith('\n\nStatement: A cat "sat" <on> the mat.\nAnswer:')
    assert client.predict("plausibility", statement, api_name="/render")["prompts"][0]["format"] == "chat"
    run = client.predict("plausibility", statement, ["zero_shot"], ["default"], {"max_new_tokens": 4}, 3, "raw",
                         api_name="/compare")
    assert run["outputs"][0]["format"] == "raw" and "--format raw" in run["command"]
    report = client.predict(experiment="plausibility_zero_vs_few", limit=4, prompt_format="raw", api_name="/evaluate")
    assert report["format"] == "raw" and {c["format"] for c in report["conditions"]} == {"raw"}
    with pytest.raises(Exception, match="unknown prompt format 'text'; use one of: chat, raw"):
        client.predict("plausibility", statement, "default", 2, "text", api_name="/render")


def test_evaluate_refuses_a_bad_upload_or_request_with_a_plain_message(client, tmp_path):
    from gradio_client import handle_file

    with runs_db() as db:
        before = db.execute("select count(*) from runs").fetchone()
    no_review = tmp_path / "texts.csv"
    no_review.write_text("text,label\n" + "\n".join(sentiment_rows(3)) + "\n", encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("review,label\nfine,Positive\n", encoding="utf-8")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"review": "fine", "label": "Positive"}\n{not json\n', encoding="utf-8")
    refusals = [  # (what is sent, the message)
        (dict(template="sentiment", dataset=handle_file(str(no_review))),
         "texts.csv: no column for the template variable 'review' (columns: text, label)"),
        (dict(template="sentiment", dataset=handle_file(str(no_review)),
              columns={"variables": {"review": "body"}, "target": "label"}),
         "texts.csv: no column 'body' (columns: text, label)"),
        (dict(template="sentiment", dataset=handle_file(str(no_review)), columns={"variables": {"review": "text"},
                                                                                   "target": "gold"}),
         "texts.csv: no column 'gold' (columns: text, label)"),
        (dict(template="sentiment", dataset=handle_file(str(notes))), "notes.txt: file type '.txt'; use a .csv"),
        (dict(template="sentiment", dataset=handle_file(str(broken))), "broken.jsonl, line 2: "),
        (dict(template="sentiment", dataset="/etc/passwd"), "dataset must be a file uploaded with gradio_client's "
                                                             "handle_file(path)"),
        (dict(template="sentiment", dataset={"path": "/etc/passwd"}), "dataset must be a file uploaded with "),
        (dict(template="/etc/passwd", dataset=handle_file(str(no_review))), "file paths are not read"),
        (dict(template="sentiment", dataset=handle_file(str(no_review)), columns="{review: text"),
         "columns must be a JSON object: Expecting property name enclosed in double quotes at character 1"),
        (dict(template="sentiment", dataset=handle_file(str(no_review)), columns=["text"]),
         "columns must be a JSON object such as "),
        (dict(template="sentiment", dataset=handle_file(str(no_review)), columns={"input": "text"}),
         "/evaluate: field 'columns': unknown key 'input'; allowed: variables, target, choices, aliases"),
        (dict(template="sentiment", dataset=handle_file(str(no_review)), strategies=["magic"]),
         "/evaluate: field 'strategies': 'magic' is not one of: zero_shot, few_shot, cot, few_shot_cot"),
        (dict(template="sentiment"), "give a dataset too: a file uploaded with gradio_client's handle_file(path)"),
        (dict(dataset=handle_file(str(no_review))), "give a template too"),
        (dict(experiment="sentiment_label_probs", template="sentiment"),
         "an experiment file brings its own template, dataset and settings"),
        (dict(), "give an experiment file's name, or a template and an uploaded dataset"),
    ]
    for sent, says in refusals:
        with pytest.raises(Exception) as refused:
            client.predict(**sent, api_name="/evaluate")
        assert says in str(refused.value), (sent, str(refused.value))
        assert "Traceback" not in str(refused.value) and "/tmp/" not in str(refused.value), str(refused.value)
    with runs_db() as db:
        assert db.execute("select count(*) from runs").fetchone() == before  # nothing ran
