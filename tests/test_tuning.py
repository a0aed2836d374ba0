"""Training jobs on a tiny random model (plumbing): own process, SQLite state, stop, resume, adapters."""
import json
import os
import signal
import time

import pytest

from conftest import ROOT

from prompt_lab.tuning import jobs
from prompt_lab.errors import ModelLoadError, PromptLabError
from prompt_lab.models.registry import resolve
from prompt_lab.runlog.store import connect, get_run
from prompt_lab.tuning.spec import TuneSpec, load_tune_spec


def read(fn, *args):
    """fn(db, *args) on a connection that is closed again."""
    with connect() as db:
        return fn(db, *args)


def tiny_spec(model, **kwargs):
    base = dict(template="sentiment-codes", dataset=str(ROOT / "experiments/data/sentiment_codes.csv"),
                columns={"variables": {"review": "review"}, "target": "code"}, model=str(model), max_steps=6,
                batch_size=4, eval_steps=3, save_steps=3, limit=24, max_seq_len=128)
    base.update(kwargs)
    return TuneSpec(**base)


def test_a_tune_changes_only_adapter_weights_and_reloads_with_plain_peft(home, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    job_id = jobs.submit(tiny_spec(tiny_model_dir))
    job = jobs.wait(job_id, timeout_s=300)
    assert job["status"] == "completed", job["error"]
    events = read(jobs.job_events, job_id)
    assert [e["step"] for e in events if e["loss"] is not None][:3] == [1, 2, 3]
    assert any(e["val_loss"] is not None for e in events)
    adapter = job["adapter_path"]
    meta = json.loads(open(os.path.join(adapter, "prompt_lab_adapter.json")).read())
    assert meta["base_model"] == str(tiny_model_dir) and meta["data_hash"] and meta["template_hash"]
    assert {"adapter_config.json", "adapter_model.safetensors", "prompt_lab_adapter.json"} <= set(os.listdir(adapter))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = PeftModel.from_pretrained(base, adapter)
    changed = {n for n, p in tuned.named_parameters() if "lora_B" in n and p.abs().sum() > 0}
    assert changed  # lora_B starts at zero: training moved it
    for name, value in tuned.get_base_model().state_dict().items():
        key = name.replace(".base_layer", "")
        if "lora_" not in name and key in original:
            assert torch.equal(value, original[key]), name  # base weights untouched
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tuned.eval()
    for check in meta["greedy_check"]:
        ids = tokenizer(check["prompt"], return_tensors="pt", add_special_tokens=False)
        out = tuned.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert tokenizer.decode(out[0, ids["input_ids"].shape[1]:]) == check["output"]
    # base vs tuned on the validation split, as one evaluation run with both models
    assert job["eval_run_id"]
    models = read(get_run, job["eval_run_id"])["models"]
    assert models == [str(tiny_model_dir), f"{tiny_model_dir}+{adapter}"]


def wait_for_step(job_id: int, step: int, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = read(jobs.get_job, job_id)
        if (job["step"] or 0) >= step:
            return job
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.1)


def test_stop_ends_the_job_process_group_within_seconds(home, tiny_model_dir):
    job_id = jobs.submit(tiny_spec(tiny_model_dir, max_steps=5000, save_steps=1000, eval_steps=1000))
    pid = wait_for_step(job_id, 2)["pid"]
    assert read(jobs.latest_job) == job_id
    start = time.monotonic()
    assert jobs.cancel(job_id) == "cancelled"
    assert time.monotonic() - start < 10
    with pytest.raises(ProcessLookupError, match="No such process"):
        os.killpg(pid, 0)  # no process of the job's group is left
    job = read(jobs.get_job, job_id)
    assert job["status"] == "cancelled" and job["eta_s"] is None
    # no checkpoint was written yet: resuming says it starts over, and the chart starts over with it
    assert jobs.resume(job_id) == 0
    assert read(jobs.job_events, job_id) == []
    jobs.cancel(job_id)
    newer = jobs.submit(tiny_spec(tiny_model_dir), start=False)
    assert read(jobs.latest_job) == newer  # nothing runs: the newest job is the one to show


def test_a_killed_job_resumes_from_its_last_complete_checkpoint(home, tiny_model_dir):
    job_id = jobs.submit(tiny_spec(tiny_model_dir, max_steps=60, save_steps=5, eval_steps=100))
    job = wait_for_step(job_id, 12)
    os.killpg(job["pid"], signal.SIGKILL)  # a crash, not a Stop
    time.sleep(0.5)
    read(jobs.mark_interrupted_jobs)
    assert read(jobs.get_job, job_id)["status"] == "interrupted"
    checkpoints = sorted(int(p.name.split("-")[1]) for p in (home / "jobs" / str(job_id) / "checkpoints").glob(
        "checkpoint-*") if (p / "prompt_lab_complete").exists())
    assert jobs.resume(job_id) == checkpoints[-1]  # the step it says it resumes from
    logged = [e["step"] for e in read(jobs.job_events, job_id)]
    assert logged and max(logged) <= checkpoints[-1]  # progress past the checkpoint is dropped with it
    job = jobs.wait(job_id, timeout_s=300)
    assert job["status"] == "completed", job["error"]
    assert job["eta_s"] is None  # no ETA left behind once it ended
    metrics = json.loads(job["metrics_json"])
    assert metrics["resumed_from_step"] == checkpoints[-1] and metrics["steps"] == 60
    steps = [e["step"] for e in read(jobs.job_events, job_id) if e["loss"] is not None]
    assert checkpoints[-1] + 1 in steps  # training went on from the step after the checkpoint


def test_pickled_adapters_are_refused(tmp_path, tiny_model_dir):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelLoadError, match=r"only adapter_model.safetensors weights are loaded \(adapter_model.bin "
                                             r"is a pickle"):
        resolve(f"{tiny_model_dir}+{adapter}")


def test_public_space_mode_gates_training(home, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/prompt-lab")
    with pytest.raises(PromptLabError, match="training is switched off on this public Space"):
        jobs.submit(tiny_spec(tiny_model_dir), start=False)
    monkeypatch.setenv("PROMPT_LAB_ALLOW_TRAINING", "1")
    monkeypatch.setenv("PROMPT_LAB_PUBLIC_MAX_STEPS", "4")
    monkeypatch.setenv("PROMPT_LAB_PUBLIC_MODELS", str(tiny_model_dir))
    from prompt_lab.access import visitors

    with visitors.acting_as(visitors.anonymous(visitors.new_browser_token())):  # a visitor of the Space
        job_id = jobs.submit(tiny_spec(tiny_model_dir, max_steps=1000), start=False)
        spec = json.loads(read(jobs.get_job, job_id)["spec_json"])
    assert spec["max_steps"] == 4


def test_shipped_tune_file_loads(home):
    spec = load_tune_spec(ROOT / "experiments/tune_sentiment_codes.yaml")
    assert spec.template == "sentiment-codes" and spec.max_steps > 0


@pytest.mark.integration
def test_the_default_model_learns_made_up_codes(home, default_model_dir):
    """A task the base model cannot do (codes it has never seen): validation accuracy must rise, and the
    paired test must say so."""
    from prompt_lab.reporting.report import paired_test, run_report

    job_id = jobs.submit(load_tune_spec(ROOT / "experiments/tune_sentiment_codes.yaml"))
    job = jobs.wait(job_id, timeout_s=900)
    assert job["status"] == "completed", job["error"]
    base, tuned = read(run_report, job["eval_run_id"])["conditions"]
    assert "+" in tuned["model"] and "+" not in base["model"]
    assert base["accuracy"] <= 0.1 and tuned["accuracy"] >= 0.5
    assert paired_test(base, tuned)["p_value"] < 0.01


def test_prompt_tuning_trains_a_soft_prompt_that_compare_can_use(home, tiny_model_dir):
    from prompt_lab.models import GenerationParams, get_backend

    job = jobs.wait(jobs.submit(tiny_spec(tiny_model_dir, method="prompt_tuning", num_virtual_tokens=4,
                                          learning_rate=0.05)), timeout_s=300)
    assert job["status"] == "completed", job["error"]
    config = json.loads(open(os.path.join(job["adapter_path"], "adapter_config.json")).read())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 4
    backend = get_backend(f"{tiny_model_dir}+{job['adapter_path']}")
    (gen,), = backend.generate(["Review: fine"], GenerationParams(max_new_tokens=4))
    assert gen.completion_tokens > 0


def test_one_job_at_a_time_and_instruction_datasets(home, tiny_model_dir, tmp_path):
    data = tmp_path / "instructions.jsonl"
    data.write_text("".join(json.dumps({"instruction": "Name the colour.", "input": f"item {i}",
                                        "output": "blue" if i % 2 else "red"}) + "\n" for i in range(12)))
    first = jobs.submit(tiny_spec(tiny_model_dir, max_steps=40))
    second = jobs.submit(TuneSpec(dataset=str(data), template=None, model=str(tiny_model_dir), max_steps=4,
                                  batch_size=4, eval_steps=2, save_steps=2, max_seq_len=64))
    assert read(jobs.get_job, second)["status"] == "queued"  # waits for the first
    assert jobs.wait(first, timeout_s=300)["status"] == "completed"
    job = jobs.wait(second, timeout_s=300)  # started by the first job as it ended
    assert job["status"] == "completed", job["error"]
    meta = json.loads(open(os.path.join(job["adapter_path"], "prompt_lab_adapter.json")).read())
    assert meta["template"] is None and meta["train_items"] + meta["validation_items"] == 12
    assert job["eval_run_id"] is None  # no template: no base-vs-tuned accuracy to compute


def test_only_checkpoints_marked_complete_count(tmp_path):
    from prompt_lab.tuning.checkpoints import COMPLETE_MARKER, last_complete_checkpoint, mark_complete, resume_step

    folder = tmp_path / "checkpoints"
    assert last_complete_checkpoint(folder) is None and resume_step(folder) == 0
    for step in (5, 10, 15):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
    mark_complete(folder / "checkpoint-5", 5)
    mark_complete(folder / "checkpoint-10", 10)  # 15 was being written when the job died
    mark_complete(folder / "checkpoint-20", 20)  # not there: nothing is written
    assert (folder / "checkpoint-10" / COMPLETE_MARKER).read_text() == "10"
    assert not (folder / "checkpoint-20").exists()
    assert last_complete_checkpoint(folder).name == "checkpoint-10" and resume_step(folder) == 10
    (folder / "checkpoint-100").mkdir()
    mark_complete(folder / "checkpoint-100", 100)
    assert resume_step(folder) == 100  # by number, not by name


def test_public_space_caps_steps_from_settings(home, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/prompt-lab")
    monkeypatch.setenv("PROMPT_LAB_ALLOW_TRAINING", "1")
    monkeypatch.setenv("PROMPT_LAB_PUBLIC_MAX_STEPS", "7")
    from prompt_lab.access import visitors

    for i, (asked, kept) in enumerate(((-1, 7), (0, 7), (3, 3), (100, 7))):
        with visitors.acting_as(visitors.Visitor(f"anon:{i}", f"visitor {i}")):  # one job at a time per visitor
            job_id = jobs.submit(TuneSpec(dataset="d.csv", max_steps=asked), start=False)
            assert json.loads(read(jobs.get_job, job_id)["spec_json"])["max_steps"] == kept
    with visitors.acting_as(visitors.Visitor("anon:x", "x")), \
            pytest.raises(PromptLabError, match="field 'max_steps': must be a whole number"):
        jobs.submit(TuneSpec(dataset="d.csv", max_steps="lots"), start=False)


def test_an_instruction_dataset_with_a_list_cell_is_refused_by_line(home, tmp_path):
    from prompt_lab.tuning.spec import TuneError, TuneSpec
    from prompt_lab.tuning.train import training_pairs

    data = tmp_path / "inst.jsonl"
    data.write_text('\n{"instruction": ["a", "b"], "output": "x"}\n')
    with pytest.raises(TuneError, match=r"^inst.jsonl, line 2: column 'instruction' holds a list; an instruction "
                                        r"dataset needs text in instruction, input and output$"):
        training_pairs(TuneSpec(dataset=str(data), template=None), None)
