import pytest

from prompt_lab.errors import TemplateError, UnknownChoiceError
from prompt_lab.strategies import STRATEGIES, build_prompts
from prompt_lab.templates import get_template, parse_template

REVIEW = {"review": "Great value, works perfectly."}


def test_each_strategy_builds_its_own_message_layout(home):
    template = get_template("sentiment")
    zero, few, cot, few_cot = build_prompts(template, STRATEGIES, REVIEW, k=3, seed=1)
    assert [m["role"] for m in zero.messages] == ["system", "user"]
    assert zero.messages[-1]["content"] == "Review: Great value, works perfectly."
    assert zero.prefill is None
    # few-shot: k examples as alternating user/assistant turns, answers are bare labels
    assert [m["role"] for m in few.messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert all(m["content"] in template.choices for m in few.messages if m["role"] == "assistant")
    # zero-shot CoT: the answer is begun with the trigger
    assert cot.prefill == "Let's think step by step."
    assert [m["role"] for m in cot.messages] == ["system", "user"]
    # few-shot CoT: exemplar answers are rationale + "The answer is X."
    answers = [m["content"] for m in few_cot.messages if m["role"] == "assistant"]
    assert len(answers) == 3 and all(a.endswith(".") and "The answer is" in a for a in answers)


def test_few_shot_choice_is_seeded(home):
    template = get_template("sentiment")
    pick = lambda seed: [m["content"] for m in build_prompts(template, ["few_shot"], REVIEW, k=2, seed=seed)[0].messages]
    assert pick(3) == pick(3)
    assert any(pick(3) != pick(s) for s in range(4, 10))


def test_k_is_clamped_to_the_examples_there_are(home):
    template = get_template("sentiment")
    prompt = build_prompts(template, ["few_shot"], REVIEW, k=50)[0]
    assert sum(m["role"] == "assistant" for m in prompt.messages) == len(template.examples)


def test_plain_text_fallback_for_models_without_chat_template(home):
    prompt = build_prompts(get_template("sentiment"), ["cot"], REVIEW)[0]
    text = prompt.as_plain_text()
    assert text.startswith("Read the review")
    assert text.endswith("Review: Great value, works perfectly.\nAnswer: Let's think step by step.")


def test_unknown_strategy_lists_valid_ones(home):
    with pytest.raises(UnknownChoiceError, match="valid strategies: zero_shot, few_shot, cot, few_shot_cot"):
        build_prompts(get_template("sentiment"), ["tree_of_thought"], REVIEW)


def test_missing_variable_is_named(home):
    with pytest.raises(TemplateError, match="missing variable 'review'"):
        build_prompts(get_template("sentiment"), ["zero_shot"], {"text": "hi"})


def test_few_shot_cot_needs_rationales(home):
    template = parse_template("name: t\ninstruction: x\nvariables: [q]\nexamples:\n  - inputs: {q: a}\n    output: b\n")
    assert build_prompts(template, ["few_shot"], {"q": "z"})
    with pytest.raises(TemplateError, match="few_shot_cot needs examples with a 'rationale'"):
        build_prompts(template, ["few_shot_cot"], {"q": "z"})
