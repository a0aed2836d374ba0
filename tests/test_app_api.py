"""The launched app through its named API endpoints (gradio_client), as another program would use it."""
import json
import sqlite3
import os

import pytest
from gradio_client import Client

pytestmark = pytest.mark.integration


def value(update):
    return update.get("value", update) if isinstance(update, dict) and update.get("__type__") == "update" else update


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_named_endpoints_are_published(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/render", "/compare", "/runs", "/run_generations", "/export_csv", "/run_again",
            "/save_template"} <= set(endpoints)


def test_render_returns_every_strategy_with_token_counts(client):
    items = client.predict("sentiment", json.dumps({"review": "{{7*7}} stars"}), "default", 2, api_name="/render")
    assert [i["strategy"] for i in items] == ["zero_shot", "few_shot", "cot", "few_shot_cot"]
    assert all(i["tokens"] > 20 for i in items)
    assert "Review: {{7*7}} stars" in items[0]["prompt"]


def test_compare_streams_into_columns_and_logs_the_run(client):
    out = client.predict("sentiment", "I love this phone, the camera is superb.", "", "", "",
                         ["zero_shot", "few_shot", "cot"], 3, "default", 0, 1, 24, 0, "", api_name="/compare")
    # Rows and columns are layout (not in the API); then 12 texts, 12 stats, 12 prompts (a row of 4 per model),
    # 3 model headers, the CLI line and the status.
    texts, stats, command, status = out[0:4], out[12:16], out[-2], out[-1]
    assert list(out[12 + 4:24]) == [""] * 8  # one model: the other two rows stay empty
    assert all(value(t) for t in texts[:3])
    assert all("tokens" in s and "tok/s" in s for s in stats[:3])
    assert stats[3] == ""  # few_shot_cot was not asked for
    assert command.startswith("python -m prompt_lab compare --template sentiment")
    assert "--max-new-tokens 24" in command
    run_id = int(status.split("**")[1])
    db = sqlite3.connect(os.path.join(os.environ["PROMPT_LAB_HOME"], "runs.db"))
    assert db.execute("select status from runs where id = ?", [run_id]).fetchone() == ("completed",)
    assert db.execute("select count(*) from generations where run_id = ?", [run_id]).fetchone() == (3,)
    runs = client.predict("(any)", "(any)", "(any)", "(any)", "any time", api_name="/runs")
    assert run_id in [row[0] for row in value(runs[0])["data"]]
    again = client.predict(run_id, api_name="/run_again")
    assert again[0] > run_id and f"ran again as run **{again[0]}**" in again[1]


def test_compare_grid_over_the_api_one_row_per_model(client, served_model):
    remote = f"openai:{served_model[1]}@{served_model[0]}"
    out = client.predict("sentiment", "Terrible battery, great screen.", "", "", "", ["zero_shot", "cot"], 3,
                         ["default", remote], 0, 1, 12, 0, "", api_name="/compare")
    texts, stats, headers, status = out[0:12], out[12:24], out[36:39], out[-1]
    for row in (0, 1):  # cells are model-major: a row of four strategies per model
        assert value(texts[row * 4]) and value(texts[row * 4 + 2])  # zero_shot and cot
        assert "tok/s" in stats[row * 4] and stats[row * 4 + 1] == ""  # few_shot was not asked for
    assert remote in headers[1] and served_model[0] + "/v1" not in headers[0]
    assert "2 models" in status


def test_max_new_tokens_above_the_cap_is_refused_server_side(client):
    with pytest.raises(Exception, match="greater than maximum value 64"):
        client.predict("sentiment", "fine", "", "", "", ["zero_shot"], 3, "default", 0, 1, 100000, 0, "",
                       api_name="/compare")


def test_bad_input_is_a_plain_message(client):
    with pytest.raises(Exception) as info:
        client.predict("sentiment", "{not json", "default", 2, api_name="/render")
    assert "variables must be a JSON object" in str(info.value)
    with pytest.raises(Exception) as info:
        client.predict("nope", "{}", "default", 2, api_name="/render")
    assert "unknown template 'nope'" in str(info.value)
    with pytest.raises(Exception) as info:
        client.predict("name: sentiment\ninstruction: x\nvariables: [a]\n", api_name="/save_template")
    assert "shipped template and is never overwritten" in str(info.value)
