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
from prompt_lab.runlog.store import open_db
from prompt_lab.tuning.train import TuneSpec, load_tune_spec


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
    events = jobs.job_events(open_db(), job_id)
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
    models = json.loads(open_db().execute("select models_json from runs where id = ?",
                                          [job["eval_run_id"]]).fetchone()[0])
    assert models == [str(tiny_model_dir), f"{tiny_model_dir}+{adapter}"]


def wait_for_step(job_id: int, step: int, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = jobs.get_job(open_db(), job_id)
        if (job["step"] or 0) >= step:
            return job
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.1)


def test_stop_ends_the_job_process_group_within_seconds(home, tiny_model_dir):
    job_id = jobs.submit(tiny_spec(tiny_model_dir, max_steps=5000, save_steps=1000, eval_steps=1000))
    pid = wait_for_step(job_id, 2)["pid"]
    assert jobs.latest_job(open_db()) == job_id
    start = time.monotonic()
    assert jobs.cancel(job_id) == "cancelled"
    assert time.monotonic() - start < 10
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no process of the job's group is left
    job = jobs.get_job(open_db(), job_id)
    assert job["status"] == "cancelled" and job["eta_s"] is None
    # no checkpoint was written yet: resuming says it starts over, and the chart starts over with it
    assert jobs.resume(job_id) == 0
    assert jobs.job_events(open_db(), job_id) == []
    jobs.cancel(job_id)
    newer = jobs.submit(tiny_spec(tiny_model_dir), start=False)
    assert jobs.latest_job(open_db()) == newer  # nothing runs: the newest job is the one to show


def test_a_killed_job_resumes_from_its_last_complete_checkpoint(home, tiny_model_dir):
    job_id = jobs.submit(tiny_spec(tiny_model_dir, max_steps=60, save_steps=5, eval_steps=100))
    job = wait_for_step(job_id, 12)
    os.killpg(job["pid"], signal.SIGKILL)  # a crash, not a Stop
    time.sleep(0.5)
    jobs.mark_interrupted_jobs(open_db())
    assert jobs.get_job(open_db(), job_id)["status"] == "interrupted"
    checkpoints = sorted(int(p.name.split("-")[1]) for p in (home / "jobs" / str(job_id) / "checkpoints").glob(
        "checkpoint-*") if (p / "prompt_lab_complete").exists())
    assert jobs.resume(job_id) == checkpoints[-1]  # the step it says it resumes from
    logged = [e["step"] for e in jobs.job_events(open_db(), job_id)]
    assert logged and max(logged) <= checkpoints[-1]  # progress past the checkpoint is dropped with it
    job = jobs.wait(job_id, timeout_s=300)
    assert job["status"] == "completed", job["error"]
    assert job["eta_s"] is None  # no ETA left behind once it ended
    metrics = json.loads(job["metrics_json"])
    assert metrics["resumed_from_step"] == checkpoints[-1] and metrics["steps"] == 60
    steps = [e["step"] for e in jobs.job_events(open_db(), job_id) if e["loss"] is not None]
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
    job_id = jobs.submit(tiny_spec(tiny_model_dir, max_steps=1000), start=False)
    spec = json.loads(jobs.get_job(open_db(), job_id)["spec_json"])
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
    base, tuned = run_report(open_db(), job["eval_run_id"])["conditions"]
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
    assert jobs.get_job(open_db(), second)["status"] == "queued"  # waits for the first
    assert jobs.wait(first, timeout_s=300)["status"] == "completed"
    job = jobs.wait(second, timeout_s=300)  # started by the first job as it ended
    assert job["status"] == "completed", job["error"]
    meta = json.loads(open(os.path.join(job["adapter_path"], "prompt_lab_adapter.json")).read())
    assert meta["template"] is None and meta["train_items"] + meta["validation_items"] == 12
    assert job["eval_run_id"] is None  # no template: no base-vs-tuned accuracy to compute
