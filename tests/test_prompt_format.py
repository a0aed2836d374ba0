"""The prompt format (issue 19): `raw` lays a prompt out as plain text, as lm-evaluation-harness's default prompts
are, and `chat` goes through the model's chat template. The expected strings are written out here, not built by the
code under test; label probabilities in raw format are checked against summed log-likelihoods computed directly
with transformers on the same strings, the way lm-eval's loglikelihood computes them."""
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prompt_lab.errors import PromptLabError
from prompt_lab.evaluation.evaluate import evaluate
from prompt_lab.evaluation.experiments import EvalSpec
from prompt_lab.prompts.strategies import build_prompts
from prompt_lab.prompts.templates import get_template, parse_template

ROOT = Path(__file__).resolve().parents[1]
PLAUSIBILITY_SYSTEM = ("Decide if the statement describes something that could really happen in everyday life. "
                       "Answer yes or no.\nAnswer with exactly one word: yes or no.")
ZERO_SHOT = PLAUSIBILITY_SYSTEM + "\n\nStatement: He ate a whole watermelon in one bite.\nAnswer:"
THREE_SHOT = (PLAUSIBILITY_SYSTEM + "\n\n"
              "Statement: I put the ice cream in the oven to keep it frozen.\nAnswer: no\n\n"
              "Statement: She used an umbrella to stay dry in the rain.\nAnswer: yes\n\n"
              "Statement: He carried the piano up the stairs in his shirt pocket.\nAnswer: no\n\n"
              "Statement: He ate a whole watermelon in one bite.\nAnswer:")
ITEM = {"statement": "He ate a whole watermelon in one bite."}  # line 3 of experiments/data/plausibility.csv


def _backend(spec="default"):
    from prompt_lab.models import get_backend

    return get_backend(spec)


def test_raw_prompts_of_a_shipped_item_are_exactly_these_strings(home, default_model_dir):
    template = get_template("plausibility")
    zero, few = build_prompts(template, ["zero_shot", "few_shot"], ITEM, k=3, selection="fixed", prompt_format="raw")
    assert zero.as_raw_text() == ZERO_SHOT
    assert few.as_raw_text() == THREE_SHOT
    backend = _backend()
    assert backend.format_prompt(zero) == ZERO_SHOT  # SmolLM2's tokenizer puts nothing before plain text
    assert backend.prompt_format(zero) == "raw"
    # what the model reads is what the tokenizer makes of the string for plain text: nothing added, nothing lost
    ids = backend._encode([THREE_SHOT])["input_ids"][0].tolist()
    assert ids == backend.tokenizer(THREE_SHOT)["input_ids"]
    assert backend.tokenizer.decode(ids) == THREE_SHOT


def test_chat_format_is_the_tokenizers_chat_template_on_the_same_messages(home, default_model_dir):
    template = get_template("plausibility")
    backend = _backend()
    for prompt in build_prompts(template, ["zero_shot", "few_shot"], ITEM, k=3, selection="fixed"):
        assert prompt.format == "chat"
        text = backend.format_prompt(prompt)
        assert text == backend.tokenizer.apply_chat_template(prompt.messages, tokenize=False,
                                                             add_generation_prompt=True)
        expected_ids = backend.tokenizer.apply_chat_template(prompt.messages, tokenize=True,
                                                             add_generation_prompt=True)
        expected_ids = expected_ids["input_ids"] if hasattr(expected_ids, "keys") else expected_ids
        assert backend._encode([text])["input_ids"][0].tolist() == list(expected_ids)
        assert "Answer:" not in text  # the raw layout's label is not in a chat prompt


def test_a_templates_own_layout_and_format_and_the_overrides(home):
    text = ("name: qa\ninstruction: ''\nvariables: [q]\ninput: 'Q: {{ q }}'\nformat: raw\nseparator: \"\\n###\\n\"\n"
            "answer_label: 'A: '\nexamples:\n  - inputs: {q: one plus one}\n    output: two\n")
    template = parse_template(text)
    assert (template.format, template.separator, template.answer_label) == ("raw", "\n###\n", "A:")
    zero, few, cot = build_prompts(template, ["zero_shot", "few_shot", "cot"], {"q": "2 <b> \"3\""}, k=1)
    assert zero.as_raw_text() == 'Q: 2 <b> "3"\nA:'  # no instruction: no system block
    assert few.as_raw_text() == 'Q: one plus one\nA: two\n###\nQ: 2 <b> "3"\nA:'
    assert cot.as_raw_text().endswith("\nA: Let's think step by step.")
    assert build_prompts(template, ["zero_shot"], {"q": "x"}, prompt_format="chat")[0].format == "chat"
    no_label = parse_template(text.replace("answer_label: 'A: '", "answer_label: ''"))
    assert build_prompts(no_label, ["few_shot"], {"q": "x"}, k=1)[0].as_raw_text() == "Q: one plus one two\n###\nQ: x"
    assert "format" not in get_template("plausibility").to_dict()  # defaults left out: shipped hashes unchanged
    blank = parse_template(text.replace("format: raw", "format: null").replace('separator: "\\n###\\n"',
                                                                               "separator: null"))
    assert (blank.format, blank.separator) == ("chat", "\n\n")  # null reads as the default, as other fields
    for old, bad, words in [("format: raw", "format: text", "line 5: field 'format': 'text' is not a prompt format; "
                                                           "use one of: chat, raw"),
                            ("format: raw", "format: [raw]", "line 5: field 'format': must be text"),
                            ('separator: "\\n###\\n"', "separator: ''", "line 6: field 'separator': is empty")]:
        assert old in text
        with pytest.raises(PromptLabError, match=words):
            parse_template(text.replace(old, bad))


def test_a_model_without_a_chat_template_gets_raw_text_after_its_own_bos(home, tiny_model_dir, tmp_path):
    """A tokenizer that puts a BOS before plain text and has no chat template: the prompt is raw, starts with that
    BOS as text, and is read as the tokenizer reads plain text (one BOS, not two)."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    folder = tmp_path / "no-chat"
    shutil.copytree(tiny_model_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    bos = "<|endoftext|>"
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))])
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    for name in ("chat_template.jinja", "chat_template.json"):
        (folder / name).unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    backend = _backend(str(folder))
    assert not backend.has_chat_template
    assert backend.tokenizer("Q")["input_ids"][0] == backend.tokenizer.convert_tokens_to_ids(bos)  # the premise
    prompt = build_prompts(get_template("plausibility"), ["zero_shot"], ITEM)[0]
    assert prompt.format == "chat"  # asked for chat ...
    text = backend.format_prompt(prompt)
    assert backend.prompt_format(prompt) == "raw"  # ... but there is no chat template
    assert text == bos + ZERO_SHOT
    ids = backend._encode([text])["input_ids"][0].tolist()
    assert ids == backend.tokenizer(ZERO_SHOT)["input_ids"]
    assert ids.count(backend.tokenizer.convert_tokens_to_ids(bos)) == 1


def _direct_logliks(model, tokenizer, context: str, continuations: list[str]) -> list[float]:
    """lm-eval's loglikelihood: encode context + continuation whole, the continuation's tokens are what follows the
    context's own encoding, and its score is the sum of their log-probabilities after one forward pass."""
    import torch

    out = []
    context_ids = tokenizer(context)["input_ids"]
    for continuation in continuations:
        whole = tokenizer(context + continuation)["input_ids"]
        assert whole[:len(context_ids)] == context_ids
        tail = whole[len(context_ids):]
        with torch.inference_mode():
            logits = model(torch.tensor([whole[:-1]])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        out.append(sum(float(logprobs[len(context_ids) - 1 + i, t]) for i, t in enumerate(tail)))
    return out


@pytest.mark.parametrize("case", ["plausibility-3shot", "mc60-zero-shot"])
def test_raw_label_probabilities_choose_what_summed_log_likelihoods_choose(home, default_model_dir, case):
    """Every item of a shipped multiple-choice set: Prompt Lab's stored prompt is the raw string written here, and
    its label probabilities (continuation " " + choice) pick the same choice as transformers directly."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prompt_lab.runlog.store import connect, run_generations

    if case == "plausibility-3shot":
        spec = EvalSpec(template="plausibility", dataset=str(ROOT / "experiments/data/plausibility.csv"),
                        columns={"variables": {"statement": "statement"}, "target": "label"},
                        strategies=["few_shot"], k_shot=[3], example_selection="fixed", method="label_probs",
                        format="raw", batch_size=16)
        shots = THREE_SHOT[len(PLAUSIBILITY_SYSTEM):].rsplit("\n\nStatement:", 1)[0]
        expected = lambda v: f"{PLAUSIBILITY_SYSTEM}{shots}\n\nStatement: {v['statement']}\nAnswer:"  # noqa: E731
    else:
        spec = EvalSpec(template=str(ROOT / "bench/mc_template.yaml"), dataset=str(ROOT / "bench/data/mc60.jsonl"),
                        columns={"variables": {"question": "question", "options": "choices"}, "target": "answer",
                                 "choices": "choices"},
                        strategies=["zero_shot"], method="label_probs", metric="accuracy", format="raw",
                        batch_size=16)
        system = ("Answer the multiple-choice question with one of the options.\n"
                  "Reply with the text of the correct option only.")
        expected = lambda v: f"{system}\n\nQuestion: {v['question']}\nOptions: {v['options']}\nAnswer:"  # noqa: E731
    run_id = evaluate(spec)
    with connect() as db:
        rows = run_generations(db, run_id)
    assert len(rows) == 60
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32).eval()
    agree, gaps = 0, []
    for row in rows:
        variables = json.loads(row["variables_json"])
        assert row["prompt"] == expected(variables)
        assert json.loads(row["params_json"]) == {"method": "label_probs", "format": "raw"}
        probs = json.loads(row["label_probs_json"])
        choices = list(probs)
        direct = _direct_logliks(model, tokenizer, row["prompt"], [" " + c for c in choices])
        top = max(direct)
        total = sum(math.exp(s - top) for s in direct)
        gaps += [abs(probs[c] - math.exp(s - top) / total) for c, s in zip(choices, direct)]
        agree += choices[direct.index(top)] == row["answer"]
    assert agree == len(rows), f"{len(rows) - agree} of {len(rows)} items chose differently"
    assert max(gaps) < 1e-3, f"largest probability gap {max(gaps):.2g}"


def test_cli_format_flag_for_render_compare_and_eval(home, default_model_dir, tmp_path):
    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "prompt_lab", *args], capture_output=True, text=True,
                              timeout=600, cwd=ROOT)
        return done.returncode, done.stdout, done.stderr

    code, out, err = cli("render", "-t", "plausibility", "--var", f"statement={ITEM['statement']}", "--strategies",
                         "zero_shot", "--format", "raw", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["prompt"] == ZERO_SHOT and json.loads(out)[0]["format"] == "raw"
    code, out, err = cli("compare", "-t", "plausibility", "--var", f"statement={ITEM['statement']}", "--strategies",
                         "zero_shot", "few_shot", "--examples", "fixed", "--format", "raw", "--max-new-tokens", "4",
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["format"] == "raw" and "--format raw" in result["command"]
    assert [(o["format"], o["prompt"]) for o in result["outputs"]] == [("raw", ZERO_SHOT), ("raw", THREE_SHOT)]
    assert result["params"]["stop"] == []  # what was asked; each raw answer also ends at the separator (logged)
    experiment = tmp_path / "plaus.yaml"
    experiment.write_text("template: plausibility\ndataset: " + str(ROOT / "experiments/data/plausibility.csv")
                          + "\ncolumns: {variables: {statement: statement}, target: label}\nlimit: 4\n"
                          "max_new_tokens: 4\n")
    code, out, err = cli("eval", str(experiment), "--format", "raw", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["format"] == "raw" and report["conditions"][0]["format"] == "raw"
    from prompt_lab.runlog.store import connect, run_generations

    with connect() as db:
        rows = run_generations(db, report["run_id"])
        compare_rows = run_generations(db, result["run_id"])
    assert all(json.loads(r["params_json"])["format"] == "raw" for r in rows + compare_rows)
    assert all(json.loads(r["params_json"])["stop"] == ["\n\n"] for r in rows + compare_rows)
    assert all(r["prompt"].endswith("\nAnswer:") and "<|im_start|>" not in r["prompt"] for r in rows)
    code, out, err = cli("eval", str(experiment), "--json")  # the template's own format: chat
    assert code == 0, err
    assert json.loads(out)["format"] == "chat"
    code, out, err = cli("eval", "--resume", str(report["run_id"]), "--format", "chat")
    assert code != 0 and "--format cannot change a run being resumed" in err


def test_remote_models_refuse_the_raw_format_in_words(home):
    from prompt_lab.compare import compare
    from prompt_lab.models.remote.client import OpenAIBackend

    prompt = build_prompts(get_template("plausibility"), ["zero_shot"], ITEM, prompt_format="raw")[0]
    with pytest.raises(PromptLabError, match="chat API, which takes messages: the raw prompt format needs a local"):
        OpenAIBackend("openai:some-model@http://127.0.0.1:9/v1").format_prompt(prompt)
    spec = EvalSpec(template="plausibility", dataset=str(ROOT / "experiments/data/plausibility.csv"),
                    columns={"variables": {"statement": "statement"}, "target": "label"},
                    models=["openai:some-model@http://127.0.0.1:9/v1"], format="raw")
    with pytest.raises(PromptLabError, match=r"raw prompt format sends plain text, which a chat API \(openai:"):
        evaluate(spec)
    with pytest.raises(PromptLabError, match="raw prompt format needs a local model"):
        compare("plausibility", ITEM, strategies=["zero_shot"], models=["openai:some-model@http://127.0.0.1:9/v1"],
                prompt_format="raw")


def test_a_raw_template_tunes_on_its_raw_text_with_each_answer_after_a_space(home, default_model_dir, tmp_path):
    """A tune job trains on the prompts the template gives the model: in raw format the completion follows the
    answer label after a space, as the examples' answers do (without it the model would learn "Answer:yes")."""
    from transformers import AutoTokenizer

    from prompt_lab.models.local.generation import format_prompt, used_format
    from prompt_lab.tuning.spec import TuneSpec
    from prompt_lab.tuning.train import training_pairs

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)

    class Formatter:  # what train() hands training_pairs
        def format_prompt(self, prompt):
            return format_prompt(tokenizer, prompt)

        def prompt_format(self, prompt):
            return used_format(tokenizer, prompt)

    raw = tmp_path / "plausibility-raw.yaml"
    raw.write_text((ROOT / "templates/plausibility.yaml").read_text().replace("name: plausibility",
                                                                               "name: plausibility-raw\nformat: raw"))
    data = str(ROOT / "experiments/data/plausibility.csv")
    spec = TuneSpec(dataset=data, template=str(raw), columns={"variables": {"statement": "statement"},
                                                              "target": "label"}, strategy="zero_shot")
    pairs, _ = training_pairs(spec, Formatter())
    first = pairs[0]
    assert first.prompt == PLAUSIBILITY_SYSTEM + "\n\nStatement: I used a towel to dry my hands.\nAnswer:"
    assert first.completion == " yes"
    chat, _ = training_pairs(TuneSpec(dataset=data, template="plausibility", strategy="zero_shot",
                                      columns={"variables": {"statement": "statement"}, "target": "label"}),
                             Formatter())
    assert chat[0].completion == "yes" and chat[0].prompt.startswith("<|im_start|>system")


def test_a_raw_answer_ends_where_the_next_block_would_start(home):
    """Raw: a direct answer ends at the separator (lm-eval's `until: ["\\n\\n"]`); CoT reasoning may hold blank
    lines, so it ends at the fixed text inputs start with (lm-eval's `until: ["Question:"]`); chat adds nothing."""
    from prompt_lab.models.base import GenerationParams, format_params

    params = GenerationParams(stop=["###"])
    zero, cot = build_prompts(get_template("plausibility"), ["zero_shot", "cot"], ITEM, prompt_format="raw")
    assert format_params(params, zero, "raw").stop == ["###", "\n\n"]
    assert format_params(params, cot, "raw").stop == ["###", "Statement:"]
    assert format_params(params, zero, "chat").stop == ["###"] and params.stop == ["###"]
    bare = parse_template("name: bare\nvariables: [q]\ninput: '{{ q }}?'\n")  # the input starts with a variable
    cot = build_prompts(bare, ["cot"], {"q": "x"}, prompt_format="raw")[0]
    assert cot.block_start == "" and format_params(params, cot, "raw").stop == ["###"]



def test_the_template_previews_name_the_format_they_show(home, default_model_dir):
    from prompt_lab.ui.templates_tab import preview

    text = (ROOT / "templates/plausibility.yaml").read_text()
    status, *updates = preview(text.replace("name: plausibility", "name: plausibility\nformat: raw"), "default", 3, 1)
    assert status.startswith("**Valid**")
    assert updates[0]["label"].startswith("Zero-shot · ") and updates[0]["label"].endswith(" tokens · raw format")
    assert updates[0]["value"].endswith("Statement: I put the ice cream in the oven to keep it frozen.\nAnswer:")
    _, *updates = preview(text, "default", 3, 1)
    assert updates[0]["label"].endswith(" tokens · chat format") and "<|im_start|>" in updates[0]["value"]


def test_compare_sends_each_raw_strategy_with_its_own_stops_and_logs_them(home):
    """One compare in raw, a direct strategy beside CoT: each is generated with the stops it logs (the separator for
    the direct answer, the input's fixed start for CoT), in a batch of its own; chat keeps one batch."""
    from prompt_lab.compare import compare
    from prompt_lab.models import registry
    from prompt_lab.models.base import Generation, GenerationParams
    from prompt_lab.runlog.store import connect, run_generations

    calls = []

    class Recorder:
        device, is_local, can_tune, revision = "cpu", True, False, "recorder-1"

        def __init__(self, spec):
            self.spec = spec

        def format_prompt(self, prompt):
            return prompt.as_raw_text() if prompt.format == "raw" else json.dumps(prompt.messages)

        def count_tokens(self, text):
            return len(text.split())

        def generate(self, texts, params, *, progress=None, cancel=None, on_partial=None):
            calls.append((len(texts), list(params.stop)))
            return [[Generation("yes", 1, 1, 1.0, "eos")] for _ in texts]

    registry.register_backend("recorder:", lambda spec, progress: Recorder(spec), local=True, help="records calls")
    try:
        raw = compare("plausibility", ITEM, strategies=["zero_shot", "few_shot", "cot"], models="recorder:x",
                      params=GenerationParams(stop=["###"]), prompt_format="raw")
        assert sorted(calls) == [(1, ["###", "Statement:"]), (2, ["###", "\n\n"])]
        with connect() as db:
            logged = {r["strategy"]: json.loads(r["params_json"]) for r in run_generations(db, raw.run_id)}
        assert logged["cot"]["stop"] == ["###", "Statement:"] and logged["zero_shot"]["stop"] == ["###", "\n\n"]
        assert [o.strategy for o in raw.outputs] == ["zero_shot", "few_shot", "cot"]
        calls.clear()
        compare("plausibility", ITEM, strategies=["zero_shot", "cot"], models="recorder:x",
                params=GenerationParams(stop=["###"]))
        assert calls == [(2, ["###"])]
    finally:
        registry.unregister_backend("recorder")
