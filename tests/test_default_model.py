"""Integration tests on the embedded SmolLM2-135M-Instruct (real weights, CPU)."""
import pytest

from conftest import ROOT

from prompt_lab.models import GenerationParams, get_backend, resolve
from prompt_lab.models.local.loading import CACHE_META, gguf_cache_dir
from prompt_lab.compare import compare
from prompt_lab.runlog.store import open_db, run_generations

pytestmark = pytest.mark.integration


def test_default_is_the_embedded_gguf_with_a_safetensors_copy(default_model_dir, home):
    ref = resolve("default")
    assert ref.kind == "gguf" and ref.location.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    from pathlib import Path

    cache = gguf_cache_dir(Path(ref.location))
    assert cache.resolve() == default_model_dir.resolve()
    assert {"model.safetensors", "tokenizer.json", "config.json", CACHE_META} <= {p.name for p in cache.iterdir()}
    backend = get_backend("default")
    assert Path(backend.location).resolve() == cache.resolve()  # loaded from the copy, not the GGUF
    assert backend.revision.startswith("gguf-sha256:")


def test_capital_of_france_is_paris(default_model_dir, home):
    result = compare(str(ROOT / "tests/data/capital.yaml"), {"country": "France"},
                     strategies=["zero_shot", "few_shot", "cot"], params=GenerationParams(max_new_tokens=48))
    texts = {o.strategy: o.generations[0].text for o in result.outputs}
    assert "Paris" in texts["zero_shot"]
    assert "Paris" in texts["few_shot"]
    rows = run_generations(open_db(), result.run_id)
    assert [r["strategy"] for r in rows] == ["zero_shot", "few_shot", "cot"]
    assert all(r["model_revision"] == result.model_revision for r in rows)


def test_streaming_on_the_real_model(default_model_dir, home):
    from prompt_lab import build_prompts, get_template
    backend = get_backend("default")
    prompt = build_prompts(get_template(str(ROOT / "tests/data/capital.yaml")), ["zero_shot"], {"country": "France"})
    text = backend.format_prompt(prompt[0])
    params = GenerationParams(max_new_tokens=24)
    events = list(backend.stream(text, params))
    assert "Paris" in events[-1].text and len(events) > 3
    assert events[-1].generation.finish_reason == "eos"
    (batched,), = backend.generate([text], params)
    assert batched.text == events[-1].text


def test_batched_compare_matches_prompts_run_one_by_one(default_model_dir, home):
    """Rows finish at different steps (a label vs a CoT paragraph) and are dropped from the batch; the
    greedy outputs must not change because of it."""
    from prompt_lab import build_prompts, get_template
    backend = get_backend("default")
    template = get_template("sentiment")
    prompts = build_prompts(template, ["zero_shot", "few_shot", "cot"],
                            {"review": "The screen is sharp, but the battery died in a day."})
    texts = [backend.format_prompt(p) for p in prompts]
    params = GenerationParams(max_new_tokens=40)
    batched = [g[0] for g in backend.generate(texts, params)]
    single = [backend.generate([t], params)[0][0] for t in texts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.completion_tokens for g in batched] == [g.completion_tokens for g in single]
    assert batched[0].completion_tokens < batched[2].completion_tokens  # rows really ended apart
    assert batched[0].latency_ms < batched[2].latency_ms  # each row has its own latency


def test_label_probabilities_equal_a_full_forward_pass(default_model_dir, home):
    """score_choices shares the prompt prefix and the suffix across choices; the scores must still equal
    the log-likelihood of prompt + choice computed in one plain forward pass."""
    import torch

    from prompt_lab import build_prompts, get_template
    backend = get_backend("default")
    template = get_template("sentiment")
    reviews = ["I love it, best purchase ever.", "Broke after one day and support ignored me.", "It is a phone case."]
    # the shipped choices: one of several tokens ('Neutral'), which rides in the first pass; then two of several
    # tokens each, which need the second pass
    for strategy, choices in (("zero_shot", template.choices), ("few_shot", template.choices),
                              ("zero_shot", ["Neutral", "Mostly positive", "Positive"])):
        texts = [backend.format_prompt(build_prompts(template, [strategy], {"review": r})[0]) for r in reviews]
        scores = backend.score_choices(texts, [choices] * len(texts))
        for text, row in zip(texts, scores):
            prompt = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
            assert sum(len(backend._continuation_ids(text, prompt, c)) > 1 for c in choices) == (
                1 if choices is template.choices else 2)
            for choice, score in zip(choices, row):
                cont = backend._continuation_ids(text, prompt, choice)
                with torch.inference_mode():
                    logits = backend.model(input_ids=torch.tensor([prompt + cont])).logits[0].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                expected = sum(float(logprobs[len(prompt) - 1 + i, t]) for i, t in enumerate(cont))
                assert abs(score - expected) < 1e-3, (strategy, choice)


def test_stop_keeps_the_answers_that_had_finished(default_model_dir, home):
    """Stop mid-compare: the zero-shot label (done in a few tokens) keeps its answer; chain of thought, still
    writing, ends "cancelled" with its text so far and no answer; the run is logged as cancelled."""
    import threading

    cancel = threading.Event()

    def on_update(grid):
        if len(grid[0][1]) > 40:  # the CoT column is well under way
            cancel.set()

    result = compare("sentiment", {"review": "Great phone, the battery lasts two days."},
                     strategies=["zero_shot", "cot"], params=GenerationParams(max_new_tokens=300), cancel=cancel,
                     on_update=on_update)
    zero, cot = (o.generations[0] for o in result.outputs)
    assert result.cancelled
    assert zero.finish_reason == "eos" and result.outputs[0].answers == ["Positive"]
    assert cot.finish_reason == "cancelled" and len(cot.text) > 40 and result.outputs[1].answers == [None]
    rows = run_generations(open_db(), result.run_id)
    assert [(r["strategy"], r["finish_reason"], r["answer"]) for r in rows] == [
        ("zero_shot", "eos", "Positive"), ("cot", "cancelled", None)]
    assert open_db().execute("select status from runs where id = ?", [result.run_id]).fetchone() == ("cancelled",)


def test_label_scoring_passes_stay_within_their_row_and_token_budgets():
    """Rows go shortest first, up to SCORE_CHUNK_ROWS a pass, fewer when rows x the longest suffix would pass
    SCORE_CHUNK_TOKENS; a row longer than the budget still goes, alone."""
    from types import SimpleNamespace

    from prompt_lab.models.local.choices import ChoiceScoring

    budget = SimpleNamespace(SCORE_CHUNK_ROWS=3, SCORE_CHUNK_TOKENS=100)
    lengths = [20, 30, 30, 40, 500]
    assert ChoiceScoring._next_chunk(budget, [0, 1, 2, 3, 4], lengths) == [0, 1, 2]  # the row cap
    assert ChoiceScoring._next_chunk(budget, [2, 3, 4], lengths) == [2, 3]  # 2 x 40 fit; 3 x 500 do not
    assert ChoiceScoring._next_chunk(budget, [3, 4], lengths) == [3]
    assert ChoiceScoring._next_chunk(budget, [4], lengths) == [4]
