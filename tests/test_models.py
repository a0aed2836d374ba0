"""Backend plumbing on a tiny random-weight Llama (no claims about quality here)."""
import threading

import pytest

from prompt_lab.errors import CancelledError, ModelLoadError, PromptLabError
from prompt_lab.models import GenerationParams, get_backend, resolve
from prompt_lab.models.base import Backend
from prompt_lab.settings import get_settings
from prompt_lab.prompts.strategies import build_prompts
from prompt_lab.prompts.templates import get_template


@pytest.fixture
def tiny(tiny_model_dir, home):
    return get_backend(str(tiny_model_dir))


def test_one_backend_per_process_even_under_concurrent_callers(tiny_model_dir, home):
    got = []
    threads = [threading.Thread(target=lambda: got.append(get_backend(str(tiny_model_dir)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(b) for b in got}) == 1
    assert got[0].device == "cpu" and got[0].revision.startswith("files:")
    assert isinstance(got[0], Backend) and got[0].is_local and got[0].can_tune


def test_batched_generate_returns_counts_and_timing_per_prompt(tiny):
    texts = ["Hello", "A much longer prompt with many more words in it than the first one", "Third"]
    results = tiny.generate(texts, GenerationParams(max_new_tokens=6))
    assert len(results) == 3
    for text, (gen,) in zip(texts, results):
        assert gen.prompt_tokens == tiny.count_tokens(text)
        assert 0 < gen.completion_tokens <= 6
        assert gen.latency_ms > 0 and gen.tokens_per_s > 0
        assert gen.finish_reason in ("length", "eos")


def test_stream_ends_with_the_same_text_as_generate(tiny):
    params = GenerationParams(max_new_tokens=8)
    (expected,), = tiny.generate(["Stream me"], params)
    events = list(tiny.stream("Stream me", params))
    assert events[-1].generation is not None
    assert events[-1].text == expected.text
    assert len(events) > 2  # text arrived in pieces
    lengths = [len(e.text) for e in events]
    assert lengths == sorted(lengths)


def test_n_samples_are_seeded(tiny):
    params = GenerationParams(temperature=1.0, top_p=0.95, max_new_tokens=6, n=3, seed=11)
    first = [g.text for g in tiny.generate(["Sample"], params)[0]]
    again = [g.text for g in tiny.generate(["Sample"], params)[0]]
    assert len(first) == 3 and first == again
    assert len(set(first)) > 1


def test_stop_sequence_cuts_the_text(tiny):
    (full,), = tiny.generate(["Stop here"], GenerationParams(max_new_tokens=12))
    stop = full.text[len(full.text) // 2:][:3]
    assert stop.strip()
    (cut,), = tiny.generate(["Stop here"], GenerationParams(max_new_tokens=12, stop=[stop]))
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop"


def test_max_new_tokens_is_clamped_with_a_warning(tiny, monkeypatch):
    monkeypatch.setenv("PROMPT_LAB_MAX_NEW_TOKENS", "5")
    params, warnings = GenerationParams(max_new_tokens=10_000).clamped(get_settings())
    assert params.max_new_tokens == 5
    assert warnings == ["max_new_tokens 10000 is above the cap; clamped to 5"]
    (gen,), = tiny.generate(["x"], params)
    assert gen.completion_tokens <= 5


def test_cancel_stops_generation_and_keeps_what_was_written(tiny):
    cancel = threading.Event()
    cancel.set()
    (gen,), = tiny.generate(["x"], GenerationParams(max_new_tokens=50), cancel=cancel)
    assert gen.finish_reason == "cancelled" and gen.completion_tokens < 50


def test_cancel_before_a_compare_starts_logs_a_cancelled_run(tiny, home):
    from prompt_lab.compare import compare

    cancel = threading.Event()
    cancel.set()
    result = compare("sentiment", {"review": "fine"}, strategies=["zero_shot", "cot"], models=tiny.spec,
                     params=GenerationParams(max_new_tokens=20), cancel=cancel)
    assert result.cancelled and [o.generations[0].finish_reason for o in result.outputs] == ["cancelled"] * 2
    assert [o.answers for o in result.outputs] == [[None], [None]]  # nothing is extracted from a cut answer
    import sqlite3
    status, error = sqlite3.connect(home / "runs.db").execute(
        "select status, error from runs where id = ?", [result.run_id]).fetchone()
    assert (status, error) == ("cancelled", "stopped by the user")


def test_prompts_use_the_chat_template(tiny, home):
    prompt = build_prompts(get_template("sentiment"), ["cot"], {"review": "fine"})[0]
    text = tiny.format_prompt(prompt)
    assert text.startswith("<|im_start|>system\nRead the review")
    assert text.endswith("<|im_start|>assistant\nLet's think step by step.")


@pytest.mark.parametrize("spec, message", [
    ("no/such-model-here", "could not load Hub model 'no/such-model-here': the Hub is switched off"),
    ("./missing.gguf", "no such .gguf file"),
    ("not a model", "not found: it is not 'default', not an existing folder, not a .gguf file"),
])
def test_unknown_models_say_what_was_tried(spec, message, home):
    with pytest.raises(ModelLoadError, match=message):
        get_backend(spec)


def test_a_file_that_is_not_gguf_is_refused_by_the_converting_process_and_leaves_no_copy(tmp_path, home):
    """The conversion runs in a child process (so the app never holds its memory peak); its failure still comes
    back as one line naming the file and why, and no half-written copy is left in the model cache."""
    bad = tmp_path / "notes.gguf"
    bad.write_text("these are notes, not weights\n")
    with pytest.raises(ModelLoadError, match=r"^could not convert notes\.gguf to a safetensors copy: .*GGUF magic"):
        get_backend(str(bad))
    cache = home / "models"
    assert not cache.exists() or not [p for p in cache.iterdir() if p.name.startswith("notes")]


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="has no config.json"):
        resolve(str(tmp_path))


@pytest.mark.parametrize("seed, message", [
    (10**30, r"field 'seed': must be between 0 and 4294967295, got 1000000000000000000000000000000"),
    (2**32, r"field 'seed': must be between 0 and 4294967295, got 4294967296"),
    (-1, r"field 'seed': must be between 0 and 4294967295, got -1"),
    (1.5, r"field 'seed': must be a whole number, got 1.5"),
    ("7", r"field 'seed': must be a whole number, got '7'"),
    (10**5000, r"field 'seed': must be between 0 and 4294967295, got a number of 16610 bits"),  # too long to print
], ids=["10**30", "2**32", "-1", "1.5", "'7'", "10**5000"])
def test_a_seed_outside_0_to_2_32_is_refused_with_the_range_before_anything_runs(tiny_model_dir, home, seed,
                                                                                  message):
    """The attack: seed=10**30 reached the sampler and failed with 'Overflow when unpacking long long'."""
    import sqlite3

    from prompt_lab.compare import compare

    with pytest.raises(PromptLabError, match=message):
        compare("sentiment", {"review": "fine"}, strategies=["zero_shot"], models=[str(tiny_model_dir)],
                params=GenerationParams(temperature=1.0, max_new_tokens=2, seed=seed))
    assert not (home / "runs.db").exists() or sqlite3.connect(home / "runs.db").execute(
        "select count(*) from runs").fetchone() == (0,)
    assert GenerationParams(seed=2**32 - 1).validate().seed == 2**32 - 1
