"""Visitors on a public Space, at the core level (no gradio, no browser): each visitor sees and changes only their own
runs, templates, jobs and adapters; the Space's author and PROMPT_LAB_ADMINS see every visitor's runs and jobs;
NOBODY sees none; locally the one user sees everything, rows logged before visitors included. Real SQLite files
(`home`), real compare runs on the tiny model. Each isolation check also shows the thing IS there for its owner (or
an admin), so none passes because nothing was logged."""
import csv
import io
import os
import stat
import threading

import pytest

from prompt_lab.access import fair_use, visitors
from prompt_lab.access.fair_use import BusyError
from prompt_lab.compare import compare, compare_events
from prompt_lab.errors import ModelLoadError, PromptLabError, TemplateError, UnknownChoiceError
from prompt_lab.models import GenerationParams
from prompt_lab.runlog.queries import (RunFilter, adapter_jobs, eval_generations, export_csv, extraction_rows,
                                       filter_choices, finished_job_count, generations_table, runs_table,
                                       strategy_stats)
from prompt_lab.runlog.store import connect, get_run, list_runs, run_generations

TOKEN_A, TOKEN_B, TOKEN_C = "a" * 32, "B" * 31 + "-", "c_" * 16
A, B, C = visitors.anonymous(TOKEN_A), visitors.anonymous(TOKEN_B), visitors.anonymous(TOKEN_C)


@pytest.fixture(autouse=True)
def _fresh_line():
    fair_use.reset()
    yield
    fair_use.reset()


@pytest.fixture
def space(home, monkeypatch, tiny_model_dir):
    """Public mode: author `owner`, extra admin `helper`, visitors may run the tiny model."""
    monkeypatch.setenv("SPACE_ID", "owner/space")
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")
    monkeypatch.setenv("PROMPT_LAB_ADMINS", "helper")
    monkeypatch.setenv("PROMPT_LAB_PUBLIC_MODELS", str(tiny_model_dir))
    return home


def run_compare(visitor, tiny_model_dir, template="sentiment", variables=None, strategy="zero_shot") -> int:
    with visitors.acting_as(visitor):
        return compare(template, variables or {"review": "Lovely."}, strategies=[strategy],
                       models=[str(tiny_model_dir)], params=GenerationParams(max_new_tokens=4)).run_id


def view(run_ids: dict[int, str]) -> dict[str, set]:
    """What the current visitor sees of the given runs (id -> template), through every read of the log, as sets
    of templates (one template per run)."""
    with connect() as db:
        csv_text, _ = export_csv(db, RunFilter())
        return {
            "list_runs": {run_ids[r["id"]] for r in list_runs(db)},
            "runs_table": {run_ids[r["id"]] for r in runs_table(db, RunFilter())},
            "get_run": {t for i, t in run_ids.items() if get_run(db, i) is not None},
            "run_generations": {t for i, t in run_ids.items() if run_generations(db, i)},
            "generations_table": {t for i, t in run_ids.items() if generations_table(db, i)},
            "eval_generations": {t for i, t in run_ids.items() if eval_generations(db, i)},
            "extraction_rows": {t for i, t in run_ids.items() if extraction_rows(db, i, 10)},
            "export_csv": {r["template_name"] for r in csv.DictReader(io.StringIO(csv_text))},
            "filter_choices": set(filter_choices(db)["template"]),
            # one strategy per template below, so the strategies seen say whose generations were counted
            "strategy_stats": {{"zero_shot": "sentiment", "cot": "arithmetic"}[s["strategy"]]
                               for s in strategy_stats(db, RunFilter())},
        }


def test_each_visitor_sees_only_their_own_runs_admins_all_and_nobody_none(space, tiny_model_dir, monkeypatch):
    run_a = run_compare(A, tiny_model_dir)
    run_b = run_compare(B, tiny_model_dir, "arithmetic", {"question": "What is 2 + 2?"}, "cot")
    runs = {run_a: "sentiment", run_b: "arithmetic"}
    with connect() as db:  # stored with the hashed key of the visitor who made it
        stored = dict(db.execute("select id, visitor from runs").fetchall())
    assert stored == {run_a: A.key, run_b: B.key}

    def sees(visitor):
        with visitors.acting_as(visitor):
            return view(runs)

    for what, seen in sees(A).items():
        assert seen == {"sentiment"}, what
    for what, seen in sees(B).items():
        assert seen == {"arithmetic"}, what
    for admin in (visitors.signed_in("owner"), visitors.signed_in("helper")):
        assert admin.sees_all
        for what, seen in sees(admin).items():
            assert seen == {"sentiment", "arithmetic"}, (admin, what)
    for outsider in (C, visitors.signed_in("someone"), visitors.api_client("session-1"), visitors.NOBODY):
        for what, seen in sees(outsider).items():
            assert seen == set(), (outsider, what)
    assert visitors.current() is visitors.NOBODY  # a Space's request that names nobody
    for what, seen in view(runs).items():
        assert seen == set(), what

    with connect() as db, visitors.acting_as(B):
        assert get_run(db, run_a) is None and get_run(db, 99_999) is None  # another's run reads as a missing one
        assert run_generations(db, run_a) == [] and generations_table(db, run_a) == []
        assert runs_table(db, RunFilter(template="sentiment")) == []  # a filter does not widen what one sees
        text, count = export_csv(db, RunFilter(template="sentiment"))
        assert count == 0 and text.count("\n") == 1  # the header only
        assert strategy_stats(db, RunFilter(strategy="zero_shot")) == []

    monkeypatch.delenv("SPACE_ID")  # the same log opened locally: the one user sees every visitor's runs
    assert visitors.current() is visitors.LOCAL
    for what, seen in view(runs).items():
        assert seen == {"sentiment", "arithmetic"}, what


def test_rows_logged_before_visitors_stay_visible_locally_and_count_as_the_local_users(home, monkeypatch):
    import sqlite_utils

    from prompt_lab.runlog import jobs as table
    from prompt_lab.runlog.store import migrations, start_run
    from prompt_lab.tuning import jobs

    old = sqlite_utils.Database(home / "runs.db")  # a log written by the release before m006_visitors
    migrations.apply(old, stop_before="m006_visitors")
    assert "visitor" not in old["runs"].columns_dict
    old["runs"].insert({"id": 1, "kind": "compare", "status": "completed", "created_utc": "2025-01-01T00:00:00.000Z",
                        "template_name": "old", "models_json": '["default"]', "strategies_json": '["zero_shot"]',
                        "params_json": "{}", "options_json": "{}", "variables_json": "{}"})
    old["generations"].insert({"run_id": 1, "created_utc": "2025-01-01T00:00:00.000Z", "strategy": "zero_shot",
                               "model_spec": "default", "output": "yes", "answer": "yes", "template_name": "old"})
    old["jobs"].insert({"id": 1, "kind": "tune", "name": "old-job", "status": "queued", "spec_json": "{}",
                        "created_utc": "2025-01-01T00:00:00.000Z", "step": 0})
    old.close()

    with connect() as db:
        assert db.execute("select visitor from runs where id = 1").fetchone() == (None,)  # migrated, left NULL
        with visitors.acting_as(A):
            a_run = start_run(db, kind="compare", template_name="a-run")
        local_run = start_run(db, kind="compare", template_name="new")  # locally: the local user, stored as ""
        assert db.execute("select visitor from runs where id = ?", [local_run]).fetchone() == ("",)
        assert {r["id"] for r in list_runs(db)} == {1, a_run, local_run}  # LOCAL sees all
        assert get_run(db, 1)["template_name"] == "old" and [g["output"] for g in run_generations(db, 1)] == ["yes"]
        assert table.get_job(db, 1)["name"] == "old-job"
        # the NULL rows are the local user's (key ""), not everyone's: a visitor keyed "" who does not see all
        with visitors.acting_as(visitors.Visitor("", "local, scoped", sees_all=False)):
            assert {r["id"] for r in list_runs(db)} == {1, local_run}
            assert set(filter_choices(db)["template"]) == {"old", "new"}
        assert table.queued_jobs(db, "") == 1 and table.job_visitor(db, 1) == ""
    assert jobs.job_folder(1) == home / "jobs" / "1"  # its files where they always were

    monkeypatch.setenv("SPACE_ID", "owner/space")
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")
    with connect() as db:
        with visitors.acting_as(A):  # on a Space the old rows are nobody's to see but the admins'
            assert get_run(db, 1) is None and table.get_job(db, 1) is None
            assert {r["id"] for r in list_runs(db)} == {a_run}
        with visitors.acting_as(visitors.signed_in("owner")):
            assert {r["id"] for r in list_runs(db)} == {1, a_run, local_run}
            assert table.get_job(db, 1) is not None


def test_compare_threads_log_and_generate_as_the_calling_visitor(space, tiny_model_dir, monkeypatch):
    from prompt_lab.models.local.generation import HFBackend

    seen = []
    original = HFBackend.generate

    def recording(self, *args, **kwargs):
        seen.append((threading.current_thread().name, visitors.current()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HFBackend, "generate", recording)
    run_id = run_compare(A, tiny_model_dir)  # one worker thread per model
    assert seen and all(name.startswith("compare-") and who == A for name, who in seen)
    seen.clear()
    with visitors.acting_as(B):  # the app's path: compare itself in a worker thread, as a stream of events
        events = list(compare_events("sentiment", {"review": "Fine."}, strategies=["zero_shot"],
                                     models=[str(tiny_model_dir)], params=GenerationParams(max_new_tokens=4)))
    streamed = events[-1].result.run_id
    assert seen and all(who == B for _, who in seen)
    with connect() as db:
        assert db.execute("select visitor from runs where id = ?", [run_id]).fetchone() == (A.key,)
        assert db.execute("select visitor from runs where id = ?", [streamed]).fetchone() == (B.key,)
        with visitors.acting_as(B):
            assert get_run(db, streamed) is not None and get_run(db, run_id) is None


def test_in_thread_carries_the_visitor_a_plain_thread_does_not(space):
    seen = {}
    with visitors.acting_as(A):
        carried = threading.Thread(target=visitors.in_thread(lambda: seen.update(carried=visitors.current())))
        plain = threading.Thread(target=lambda: seen.update(plain=visitors.current()))
    for thread in (carried, plain):
        thread.start()
        thread.join()
    assert seen == {"carried": A, "plain": visitors.NOBODY}


# ---------------------------------------------------------------- templates

def template_text(name: str, word: str) -> str:
    return f'name: {name}\ninstruction: "{word} {{{{ x }}}}"\nvariables: [x]\n'


def test_a_visitors_templates_are_theirs_alone(space):
    from prompt_lab.prompts.templates import (get_template, list_templates, save_user_template, template_from_request,
                                              template_names, template_path)

    with visitors.acting_as(A):
        saved = save_user_template(template_text("mine", "Alpha"))
        assert "mine" in template_names() and template_from_request("mine").instruction == "Alpha {{ x }}"
    a_file = space / "visitors" / A.folder / "templates" / "mine.yaml"
    assert saved.source == str(a_file) and a_file.is_file()
    assert not (space / "templates").exists()  # not the shared (local) folder

    with visitors.acting_as(B):
        assert "mine" not in template_names() and "mine" not in {t.name for t in list_templates()}
        assert "sentiment" in template_names()  # the shipped ones are everyone's
        errors = {}
        for name in ("mine", "never-made"):  # A's template reads exactly like one that does not exist
            for lookup in (template_path, template_from_request, get_template):
                with pytest.raises(UnknownChoiceError) as caught:
                    lookup(name)
                errors.setdefault(lookup.__name__, []).append(str(caught.value).replace(name, "NAME"))
        for lookup, (for_a, for_none) in errors.items():
            assert for_a == for_none and "unknown template 'NAME'" in for_a, lookup
        save_user_template(template_text("mine", "Bravo"))  # B's own, same name
        assert template_from_request("mine").instruction == "Bravo {{ x }}"
    assert "Alpha" in a_file.read_text()  # A's file is untouched
    assert "Bravo" in (space / "visitors" / B.folder / "templates" / "mine.yaml").read_text()
    with visitors.acting_as(A):
        assert template_from_request("mine").instruction == "Alpha {{ x }}"
    with visitors.acting_as(visitors.signed_in("owner")):  # admins see all runs, but templates stay personal
        assert "mine" not in template_names()


def test_locally_templates_live_in_the_data_dirs_folder_without_caps(home, monkeypatch):
    from prompt_lab.prompts.templates import save_user_template, template_names

    monkeypatch.setenv("PROMPT_LAB_MAX_TEMPLATES_PER_VISITOR", "1")
    monkeypatch.setenv("PROMPT_LAB_SAVES_PER_MINUTE", "1")
    for name in ("one", "two", "three"):  # neither cap applies to the local user
        assert save_user_template(template_text(name, "Hi")).source == str(home / "templates" / f"{name}.yaml")
    assert {"one", "two", "three"} <= set(template_names())
    assert visitors.templates_dir() == home / "templates" == visitors.templates_dir(visitors.LOCAL)
    assert not (home / "visitors").exists()


def test_the_template_cap_per_visitor_refuses_a_new_name_and_names_the_limit(space, monkeypatch):
    from prompt_lab.prompts.templates import save_user_template, template_names

    monkeypatch.setenv("PROMPT_LAB_MAX_TEMPLATES_PER_VISITOR", "2")
    with visitors.acting_as(A):
        save_user_template(template_text("one", "Hi"))
        save_user_template(template_text("two", "Hi"))
        with pytest.raises(TemplateError, match="you have 2 saved templates, the most one visitor may keep on this "
                                                "Space; save over one of yours instead"):
            save_user_template(template_text("three", "Hi"))
        save_user_template(template_text("one", "Changed"))  # saving over one of yours is allowed
        assert "three" not in template_names()
    assert "Changed" in (space / "visitors" / A.folder / "templates" / "one.yaml").read_text()
    with visitors.acting_as(B):  # the cap is per visitor
        save_user_template(template_text("three", "Hi"))


def test_the_save_rate_limit_refuses_with_the_limit_and_a_retry_time(space, monkeypatch):
    from functools import partial

    from prompt_lab.prompts.templates import save_user_template

    now = [0.0]
    monkeypatch.setattr(fair_use, "RateWindow", partial(fair_use.RateWindow, clock=lambda: now[0]))
    monkeypatch.setenv("PROMPT_LAB_SAVES_PER_MINUTE", "2")
    with visitors.acting_as(A):
        save_user_template(template_text("one", "Hi"))
        now[0] = 15.0
        save_user_template(template_text("two", "Hi"))
        with pytest.raises(BusyError, match=r"you made 2 saves in the last minute, the most one visitor may; try "
                                            r"again in 45 s") as caught:
            save_user_template(template_text("three", "Hi"))
        assert caught.value.retry_after_s == 45.0
    assert not (space / "visitors" / A.folder / "templates" / "three.yaml").exists()
    with visitors.acting_as(B):
        save_user_template(template_text("three", "Hi"))  # another visitor's saves are counted apart
    now[0] = 60.0
    with visitors.acting_as(A):
        save_user_template(template_text("three", "Hi"))  # the first save is a minute old


# ---------------------------------------------------------------- jobs

@pytest.fixture
def training_space(space, monkeypatch):
    from prompt_lab.tuning import jobs

    monkeypatch.setenv("PROMPT_LAB_ALLOW_TRAINING", "1")
    monkeypatch.setenv("PROMPT_LAB_PUBLIC_MODELS", "default")  # the tune specs here train the default model
    started = []
    monkeypatch.setattr(jobs, "start_next", lambda: started.append(1))  # no job process in these tests
    return space


def test_a_visitors_job_is_invisible_and_untouchable_to_others(training_space):
    from prompt_lab.runlog import jobs as table
    from prompt_lab.tuning import jobs
    from prompt_lab.tuning.spec import TuneSpec

    with visitors.acting_as(A):
        job_id = jobs.submit(TuneSpec(dataset="d.csv", name="a-job"))
        with connect() as db:
            assert table.get_job(db, job_id)["name"] == "a-job" and table.latest_job(db) == job_id
            assert [j["id"] for j in table.list_jobs(db)] == [job_id]
            table.log_progress(db, job_id, step=1, max_steps=5, loss=2.0, val_loss=None, learning_rate=0.1,
                               samples_per_s=1.0, eta_s=4.0)
            assert len(table.job_events(db, job_id)) == 1
    folder = training_space / "visitors" / A.folder / "jobs" / str(job_id)
    for asker in (A, B, visitors.NOBODY):  # where its files are does not depend on who asks
        with visitors.acting_as(asker):
            assert jobs.job_folder(job_id) == folder

    with visitors.acting_as(B):
        with connect() as db:
            assert table.get_job(db, job_id) is None and table.list_jobs(db) == []
            assert table.latest_job(db) is None and table.job_events(db, job_id) == []
        with pytest.raises(PromptLabError, match=f"^there is no job {job_id}$"):
            jobs.cancel(job_id)
        with pytest.raises(PromptLabError, match=f"^there is no job {job_id}$"):
            jobs.resume(job_id)
        other = jobs.submit(TuneSpec(dataset="d.csv", name="b-job"))  # A's job does not hold B back
    with connect() as db:
        assert db.execute("select status from jobs where id = ?", [job_id]).fetchone() == ("queued",)  # B's did nothing
    with visitors.acting_as(visitors.signed_in("owner")), connect() as db:
        assert {j["id"] for j in table.list_jobs(db)} == {job_id, other}
    with visitors.acting_as(A):
        assert jobs.cancel(job_id) == "cancelled"  # its owner can
        assert jobs.resume(job_id) == 0


def test_one_tuning_job_at_a_time_per_visitor_on_a_space(training_space):
    from prompt_lab.tuning import jobs
    from prompt_lab.tuning.spec import TuneSpec

    with visitors.acting_as(A):
        first = jobs.submit(TuneSpec(dataset="d.csv"))
        with pytest.raises(PromptLabError, match="you already have a tuning job queued or running; on a public Space "
                                                 "each visitor has one at a time"):
            jobs.submit(TuneSpec(dataset="d.csv"))
        jobs.cancel(first)
        jobs.submit(TuneSpec(dataset="d.csv"))  # once it has ended, another


def test_tuned_adapters_are_offered_only_to_their_owner(training_space):
    from prompt_lab.runlog import jobs as table

    with connect() as db:
        with visitors.acting_as(A):
            job_id = table.insert_job(db, "tune", "a", {"model": "default"})
        table.claim_next_job(db, lambda _: os.getpid())
        table.finish_job(db, job_id, "completed", error=None, adapter_path="/x/adapter", eval_run_id=None, metrics={})
        with visitors.acting_as(A):
            assert [j["adapter_path"] for j in adapter_jobs(db)] == ["/x/adapter"] and finished_job_count(db) == 1
        with visitors.acting_as(B):
            assert adapter_jobs(db) == [] and finished_job_count(db) == 0


# ---------------------------------------------------------------- the model registry on a Space

@pytest.fixture
def registry_space(home, monkeypatch):
    """Public mode with the default public models, and resolve_local replaced by a tripwire: a refused spec must be
    refused before anything is looked up."""
    from prompt_lab.models import registry

    monkeypatch.setenv("SPACE_ID", "owner/space")
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")
    looked_up = []

    def tripwire(spec, *args):
        looked_up.append(spec)
        raise AssertionError(f"{spec} was looked up")

    monkeypatch.setattr(registry, "resolve_local", tripwire)
    return looked_up


def refusal(spec: str) -> str:
    from prompt_lab.models import registry

    with pytest.raises(ModelLoadError) as caught:
        registry.resolve(spec)
    return str(caught.value)


def test_a_space_refuses_other_models_and_others_adapters_without_reading_them(registry_space, home, tiny_model_dir,
                                                                              tmp_path_factory):
    from prompt_lab.models import registry

    elsewhere = tmp_path_factory.mktemp("elsewhere")
    b_adapter = home / "visitors" / B.folder / "jobs" / "1" / "adapter"
    b_adapter.mkdir(parents=True)
    (b_adapter / "adapter_config.json").write_text("{}")
    with visitors.acting_as(A):
        a_home = visitors.home()
        base_refusals = {refusal(s) for s in (str(tiny_model_dir), str(elsewhere / "missing"), "org/model",
                                              "/etc", "model.gguf", " ../../etc ")}
        assert len(base_refusals) == 1  # the same words whether the folder exists or not
        assert "this public Space runs the local model default" in base_refusals.pop()
        adapter_refusals = {refusal(s) for s in (
            f"default+{b_adapter}", f"default+{b_adapter.parent / 'missing'}", "default+../../etc", "default+/etc",
            f"default+{a_home}/../{B.folder}/jobs/1/adapter", f"default+{a_home}", "default+jobs/1/adapter")}
        assert len(adapter_refusals) == 1
        assert "an adapter is one of your own tuning jobs'" in adapter_refusals.pop()
        link = a_home / "jobs" / "2" / "adapter"  # a link in one's own folder to another's adapter
        link.parent.mkdir(parents=True)
        link.symlink_to(b_adapter, target_is_directory=True)
        assert "one of your own" in refusal(f"default+{link}")
        with pytest.raises(ModelLoadError, match="this public Space runs"):  # training reads no other base either
            registry.base_location(str(tiny_model_dir))
        # an own job's adapter passes the policy (whether or not it is there yet)
        registry.check_public_model(f"default+{a_home}/jobs/1/adapter")
        registry.check_public_model(f" default + {a_home}/jobs/1/adapter/ ")
    assert registry_space == []  # nothing was looked up
    with visitors.acting_as(B):
        registry.check_public_model(f"default+{b_adapter}")  # B's own
    prefix = visitors.Visitor("anon:abc", "x")  # a folder name that is a prefix of another's is not that folder
    other = home / "visitors" / visitors.Visitor("anon:abcdef", "y").folder / "jobs" / "1" / "adapter"
    with visitors.acting_as(prefix), pytest.raises(ModelLoadError, match="one of your own"):
        registry.check_public_model(f"default+{other}")


def test_an_adapter_spelled_with_a_tilde_is_checked_where_it_is_loaded_from(registry_space, home, monkeypatch):
    """check_adapter expands `~`; the policy must judge that same folder, not `<cwd>/~/...`."""
    from prompt_lab.models import registry

    b_home = home / "visitors" / B.folder
    (b_home / "jobs" / "1" / "adapter").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(b_home))
    with visitors.acting_as(A):
        visitors.home().mkdir(parents=True)
        monkeypatch.chdir(visitors.home())
        with pytest.raises(ModelLoadError, match="one of your own"):
            registry.check_public_model("default+~/jobs/1/adapter")


def test_an_own_tuned_adapter_runs_on_a_space_and_anothers_does_not(space, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from prompt_lab.models import get_backend

    with visitors.acting_as(A):
        adapter = visitors.home() / "jobs" / "1" / "adapter"
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(adapter)
    spec = f"{tiny_model_dir}+{adapter}"
    with visitors.acting_as(A):
        (generations,) = get_backend(spec).generate(["hi"], GenerationParams(max_new_tokens=2))
        assert generations[0].completion_tokens >= 1
    with visitors.acting_as(B), pytest.raises(ModelLoadError, match="one of your own"):
        get_backend(spec)  # even with A's adapter already loaded in this process


def test_locally_the_registry_policy_changes_nothing(home, tiny_model_dir, tmp_path):
    from prompt_lab.models import registry

    for spec in (str(tiny_model_dir), "org/model", f"default+{tmp_path}", "default+../../etc"):
        registry.check_public_model(spec)
    assert registry.resolve(str(tiny_model_dir)).kind == "folder"
    assert registry.resolve("org/model").kind == "hub"


# ---------------------------------------------------------------- identity helpers

def test_anonymous_identities_come_from_well_formed_tokens_and_never_hold_them():
    for bad in ("", "short", "a" * 31, "a" * 33, "a" * 31 + "/", "a" * 31 + "+", "a" * 31 + "\n", "a" * 32 + "\n",
                " " + "a" * 31, None, 12345, b"a" * 32):
        with pytest.raises(ValueError, match="not a browser token"):
            visitors.anonymous(bad)
    first, second = visitors.new_browser_token(), visitors.new_browser_token()
    assert first != second and visitors.TOKEN_RE.fullmatch(first) and len(first) == 32
    one, two = visitors.anonymous(first), visitors.anonymous(second)
    assert one.key != two.key and one.folder != two.folder
    assert one == visitors.anonymous(first)  # the same browser is the same visitor
    for token, visitor in ((first, one), (second, two), (TOKEN_A, A)):
        assert visitor.key.startswith("anon:") and not visitor.sees_all
        for part in (visitor.key, visitor.label, visitor.folder):
            assert token not in part and token[:12] not in part


def test_signed_in_names_are_checked_and_admins_see_all(monkeypatch):
    for bad in ("", "a b", "a\nb", "name\n", "a/b", "../x", "a\\b", "-x", ".x", "a:b", "x" * 97, None):
        with pytest.raises(ValueError, match="not a Hugging Face user name"):
            visitors.signed_in(bad)
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")
    monkeypatch.setenv("PROMPT_LAB_ADMINS", "helper, second")
    assert [visitors.signed_in(n).sees_all for n in ("owner", "helper", "second", "other")] == \
        [True, True, True, False]
    alice = visitors.signed_in("alice.b-c_1")
    assert (alice.key, alice.label, alice.folder) == ("hf:alice.b-c_1", "alice.b-c_1", "hf-alice.b-c_1")


def test_stored_keys_name_the_same_visitor_again(monkeypatch):
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")
    for visitor in (A, B, visitors.signed_in("alice"), visitors.signed_in("owner"), visitors.api_client("s1"),
                    visitors.LOCAL):
        assert visitors.from_key(visitor.key) == visitor
    assert visitors.from_key(None) is visitors.LOCAL and visitors.from_key("hf:owner").sees_all
    assert visitors.api_client("s1") != visitors.api_client("s2")
    assert visitors.from_key(A.key).folder == A.folder


def test_home_is_the_data_dir_locally_and_a_folder_per_visitor_on_a_space(home, monkeypatch):
    assert visitors.home() == home == visitors.home(visitors.LOCAL)
    monkeypatch.setenv("SPACE_ID", "owner/space")
    assert visitors.home() == home / "visitors" / "nobody"
    assert visitors.home(A) == home / "visitors" / A.folder and A.folder.startswith("anon-")
    assert visitors.home(visitors.signed_in("bob")) == home / "visitors" / "hf-bob"
    assert len({visitors.home(v) for v in (A, B, C, visitors.signed_in("bob"), visitors.LOCAL)}) == 5


def test_can_see(monkeypatch):
    monkeypatch.setenv("SPACE_ID", "owner/space")
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "owner")
    assert visitors.can_see(A.key, A) and not visitors.can_see(A.key, B) and not visitors.can_see(None, A)
    assert visitors.can_see(A.key, visitors.signed_in("owner")) and visitors.can_see(None, visitors.LOCAL)
    assert not visitors.can_see(A.key)  # the current visitor on a Space is NOBODY
    with visitors.acting_as(A):
        assert visitors.can_see(A.key)


def test_the_browser_secret_is_made_once_and_readable_by_this_user_only(home):
    first = visitors.browser_secret()
    path = home / ".browser_secret"
    assert len(first) >= 16 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert visitors.browser_secret() == first == path.read_text().strip()
    results = []
    threads = [threading.Thread(target=lambda: results.append(visitors.browser_secret())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) == {first}


def test_an_empty_browser_secret_file_is_not_used_as_the_secret(home):
    (home / ".browser_secret").touch(mode=0o600)
    secret = visitors.browser_secret()
    assert len(secret) >= 16 and visitors.browser_secret() == secret


def test_requests_that_name_no_visitor_see_nothing_not_even_each_others(space, tiny_model_dir):
    """NOBODY (a request with no visitor on a Space) is not a shared workspace: what one such request logged, the
    next cannot see, and it can neither save templates nor queue jobs."""
    from prompt_lab.prompts.templates import save_user_template
    from prompt_lab.tuning import jobs
    from prompt_lab.tuning.spec import TuneSpec

    with visitors.acting_as(visitors.NOBODY):
        run = compare("sentiment", {"review": "Fine."}, strategies=["zero_shot"], models=str(tiny_model_dir),
                      params=GenerationParams(max_new_tokens=2))
        with connect() as db:
            assert get_run(db, run.run_id) is None and list_runs(db) == []
        with pytest.raises(TemplateError, match="a request that names no visitor cannot save a template"):
            save_user_template(template_text("mine", "Alpha"))
        os.environ["PROMPT_LAB_ALLOW_TRAINING"] = "1"
        try:
            with pytest.raises(PromptLabError, match="a request that names no visitor cannot queue a job"):
                jobs.submit(TuneSpec(dataset="d.csv"), start=False)
        finally:
            del os.environ["PROMPT_LAB_ALLOW_TRAINING"]
    with visitors.acting_as(visitors.signed_in("owner")), connect() as db:
        assert get_run(db, run.run_id)["visitor"] == "nobody"  # logged, and the author can see it


def test_a_tune_of_a_model_visitors_may_not_run_is_refused_when_queued(training_space):
    from prompt_lab.tuning import jobs
    from prompt_lab.tuning.spec import TuneSpec

    with visitors.acting_as(visitors.anonymous(visitors.new_browser_token())):
        with pytest.raises(ModelLoadError, match="other folders, files and Hub ids are not loaded"):
            jobs.submit(TuneSpec(dataset="d.csv", model="HuggingFaceTB/SmolLM2-1.7B-Instruct"), start=False)
        with connect() as db:
            assert jobs.list_jobs(db) == []
