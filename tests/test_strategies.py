import re

import pytest

from prompt_lab.errors import TemplateError, UnknownChoiceError
from prompt_lab.prompts.strategies import STRATEGIES, build_prompts, check_strategies
from prompt_lab.prompts.templates import get_template, parse_template

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
    text = prompt.as_raw_text()
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


CLAIMS = """\
name: claims
instruction: |
  Judge the expense claim. Answer {{ choices|join(' or ') }}.
variables: [claim, source]
input: |
  Claim: {{ claim }}
  Source: {{ source }}
output_format: "Answer with one word."
choices: [Approve, Reject]
answer_prefix: "Final verdict:"
cot_trigger: "Let us check the receipts."
answer: {type: choice}
examples:
  - inputs: {claim: "Taxi, 40 EUR", source: receipt}
    output: Approve
    rationale: |
      A receipt backs the amount.
"""
CLAIM = {"claim": "Dinner, 300 EUR", "source": "none", "note": "not a template variable"}
SYSTEM = "Judge the expense claim. Answer Approve or Reject.\nAnswer with one word."
EXAMPLE = "Claim: Taxi, 40 EUR\nSource: receipt"
QUERY = "Claim: Dinner, 300 EUR\nSource: none"
REASON = '\nReason step by step, then finish with "Final verdict: <answer>."'


def test_each_strategy_sends_the_exact_messages(home):
    zero, few, cot, few_cot = build_prompts(parse_template(CLAIMS), STRATEGIES, CLAIM, k=1)
    assert (zero.strategy, zero.messages, zero.prefill) == ("zero_shot", [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": QUERY}], None)
    assert (few.strategy, few.messages, few.prefill) == ("few_shot", [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": EXAMPLE}, {"role": "assistant", "content": "Approve"},
        {"role": "user", "content": QUERY}], None)
    # chain of thought: the instruction asks for the template's own answer prefix; the answer starts with the trigger
    assert (cot.strategy, cot.messages, cot.prefill) == ("cot", [
        {"role": "system", "content": SYSTEM + REASON}, {"role": "user", "content": QUERY}],
        "Let us check the receipts.")
    assert (few_cot.strategy, few_cot.messages, few_cot.prefill) == ("few_shot_cot", [
        {"role": "system", "content": SYSTEM + REASON},
        {"role": "user", "content": EXAMPLE},
        {"role": "assistant", "content": "A receipt backs the amount. Final verdict: Approve."},
        {"role": "user", "content": QUERY}], None)


PER_ITEM = """\
name: quiz
instruction: "Pick one of: {{ choices|join(', ') }}."
variables: [question]
input: "{{ question }} ({{ choices|join('/') }})"
choices: [yes, no]
answer: {type: choice}
examples:
  - inputs: {question: "Is water wet?"}
    output: "yes"
"""


def test_choices_render_the_items_own_list_and_demonstrations_keep_the_templates(home):
    template = parse_template(PER_ITEM)
    question = {"question": "How many legs has a spider?"}
    zero, few = build_prompts(template, ["zero_shot", "few_shot"], question, k=1, choices=["6", "8", "10"])
    assert zero.messages == [{"role": "system", "content": "Pick one of: 6, 8, 10."},
                             {"role": "user", "content": "How many legs has a spider? (6/8/10)"}]
    assert few.messages == [{"role": "system", "content": "Pick one of: 6, 8, 10."},
                            {"role": "user", "content": "Is water wet? (yes/no)"},
                            {"role": "assistant", "content": "yes"},
                            {"role": "user", "content": "How many legs has a spider? (6/8/10)"}]
    # no list of its own (None or empty): the template's
    for choices in (None, []):
        [plain] = build_prompts(template, ["zero_shot"], question, choices=choices)
        assert plain.messages[-1]["content"] == "How many legs has a spider? (yes/no)"
    assert template.render("input", question, ["a", "b"]) == "How many legs has a spider? (a/b)"


def test_a_template_without_output_format_sends_the_instruction_alone(home):
    template = parse_template(CLAIMS.replace('output_format: "Answer with one word."\n', ""))
    zero, cot = build_prompts(template, ["zero_shot", "cot"], CLAIM)
    assert zero.messages[0]["content"] == "Judge the expense claim. Answer Approve or Reject."
    assert cot.messages[0]["content"] == "Judge the expense claim. Answer Approve or Reject." + REASON


def test_prompts_come_in_the_order_the_strategies_were_asked_for(home):
    prompts = build_prompts(parse_template(CLAIMS), ("few_shot_cot", "zero_shot"), CLAIM)
    assert [p.strategy for p in prompts] == ["few_shot_cot", "zero_shot"]


def test_plain_text_prompt_shows_examples_as_answered_questions(home):
    zero, few, cot = build_prompts(parse_template(CLAIMS), ["zero_shot", "few_shot", "cot"], CLAIM, k=1)
    assert zero.as_raw_text() == f"{SYSTEM}\n\n{QUERY}\nAnswer:"
    assert few.as_raw_text() == f"{SYSTEM}\n\n{EXAMPLE}\nAnswer: Approve\n\n{QUERY}\nAnswer:"
    assert cot.as_raw_text() == f"{SYSTEM}{REASON}\n\n{QUERY}\nAnswer: Let us check the receipts."



def test_plain_text_prompt_answers_each_example_right_after_it(home):
    extra = "  - inputs: {claim: \"Gift, 500 EUR\", source: none}\n    output: Reject\n"
    few = build_prompts(parse_template(CLAIMS + extra), ["few_shot"], CLAIM, k=2)[0]
    text = few.as_raw_text()
    assert text.startswith(f"{SYSTEM}\n\n") and text.endswith(f"\n\n{QUERY}\nAnswer:")
    assert f"\n\n{EXAMPLE}\nAnswer: Approve\n\n" in text
    assert "\n\nClaim: Gift, 500 EUR\nSource: none\nAnswer: Reject\n\n" in text


def test_chat_without_prefill_moves_the_trigger_into_the_last_user_turn(home):
    zero, cot = build_prompts(parse_template(CLAIMS), ["zero_shot", "cot"], CLAIM)
    assert cot.as_chat_without_prefill() == [
        {"role": "system", "content": SYSTEM + REASON},
        {"role": "user", "content": f"{QUERY}\n\nLet us check the receipts."}]
    # the prompt itself is unchanged: it is sent again the same way
    assert cot.messages[-1]["content"] == QUERY
    assert cot.as_chat_without_prefill()[-1]["content"] == f"{QUERY}\n\nLet us check the receipts."
    assert zero.as_chat_without_prefill() == zero.messages


@pytest.mark.parametrize("k, shown", [(0, 1), (-2, 1), ("2", 2), (2, 2), (9, 3)])
def test_k_is_at_least_one_and_at_most_the_examples_there_are(home, k, shown):
    template = get_template("sentiment-codes")  # three examples
    prompt = build_prompts(template, ["few_shot"], REVIEW, k=k)[0]
    assert sum(m["role"] == "assistant" for m in prompt.messages) == shown


def test_few_shot_cot_uses_only_the_examples_that_have_a_rationale(home):
    extra = ("  - inputs: {claim: \"Hotel, 90 EUR\", source: invoice}\n    output: Approve\n"
             "  - inputs: {claim: \"Gift, 500 EUR\", source: none}\n    output: Reject\n")
    template = parse_template(CLAIMS + extra)
    few_cot = build_prompts(template, ["few_shot_cot"], CLAIM, k=3)[0]
    assert [m["content"] for m in few_cot.messages if m["role"] == "assistant"] == [
        "A receipt backs the amount. Final verdict: Approve."]
    few = build_prompts(template, ["few_shot"], CLAIM, k=3)[0]
    assert sum(m["role"] == "assistant" for m in few.messages) == 3


def test_the_default_is_three_examples(home):
    prompt = build_prompts(get_template("sentiment"), ["few_shot"], REVIEW)[0]
    assert sum(m["role"] == "assistant" for m in prompt.messages) == 3


def test_few_shot_and_few_shot_cot_show_the_same_examples_for_a_seed(home):
    template = get_template("sentiment")
    few, few_cot = build_prompts(template, ["few_shot", "few_shot_cot"], REVIEW, k=2, seed=5)
    users = lambda p: [m["content"] for m in p.messages if m["role"] == "user"]
    assert users(few) == users(few_cot)
    by_input = {f"Review: {e.inputs['review']}": e for e in template.examples}
    for question, answer in zip(users(few)[:-1], [m["content"] for m in few.messages if m["role"] == "assistant"]):
        assert answer == by_input[question].output


def test_few_shot_without_examples_says_so(home):
    template = parse_template("name: bare\ninstruction: Judge.\nvariables: [claim]\n")
    with pytest.raises(TemplateError, match=r"^template 'bare': few_shot needs 'examples'; this template has none$"):
        build_prompts(template, ["few_shot"], {"claim": "x"})
    with pytest.raises(TemplateError, match=r"^template 'bare': few_shot_cot needs examples with a 'rationale'; "
                                            r"this template has none$"):
        build_prompts(template, ["few_shot_cot"], {"claim": "x"})
    # strategies without examples still work
    assert [p.strategy for p in build_prompts(template, ["zero_shot", "cot"], {"claim": "x"})] == ["zero_shot", "cot"]


def test_every_missing_variable_is_named_with_the_ones_the_template_takes(home):
    with pytest.raises(TemplateError, match=r"^template 'claims': missing variable 'claim', 'source' "
                                            r"\(this template takes: claim, source\)$"):
        build_prompts(parse_template(CLAIMS), ["zero_shot"], {"review": "x"})


@pytest.mark.parametrize("names, message", [
    (["zero_shot", "tree_of_thought", "self_ask"], "unknown strategy 'tree_of_thought'; valid strategies: "
                                                   "zero_shot, few_shot, cot, few_shot_cot"),
    ([], "choose at least one strategy: zero_shot, few_shot, cot, few_shot_cot"),
])
def test_strategy_choice_errors_list_the_valid_ones(names, message):
    with pytest.raises(UnknownChoiceError, match=f"^{re.escape(message)}$"):
        check_strategies(names)


def test_checked_strategies_come_back_as_a_list_in_order():
    assert check_strategies(("cot", "zero_shot")) == ["cot", "zero_shot"]
    assert check_strategies(s for s in STRATEGIES) == list(STRATEGIES)


def test_a_prefill_joins_the_last_turn_when_there_are_three(home):
    from prompt_lab.prompts.strategies import Prompt

    prompt = Prompt("cot", [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
                            {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}], "Let's think")
    assert [m["content"] for m in prompt.as_chat_without_prefill()] == ["S", "Q1", "A1", "Q2\n\nLet's think"]
    assert prompt.messages[-1]["content"] == "Q2"  # the prompt itself is not changed


def test_the_default_seed_is_zero(home):
    from prompt_lab.prompts.strategies import build_prompts
    from prompt_lab.prompts.templates import get_template

    template = get_template("sentiment")
    variables = {"review": "Fine."}
    assert build_prompts(template, ["few_shot"], variables, k=2, seed=1) != build_prompts(template, ["few_shot"],
                                                                                          variables, k=2, seed=0)
    assert build_prompts(template, ["few_shot"], variables, k=2) == build_prompts(template, ["few_shot"], variables,
                                                                                    k=2, seed=0)


def test_the_query_is_never_among_its_own_demonstrations(home):
    """Compare's Example buttons load a template example: few-shot must not show that example's answer."""
    from prompt_lab.prompts.strategies import build_prompts
    from prompt_lab.prompts.templates import get_template

    template = get_template("sentiment")
    first = template.examples[0].inputs["review"]
    query = {"review": "  " + first.upper().replace(" ", "   ") + "\n"}  # same text, other case and spacing
    for seed in range(5):
        for strategy in ("few_shot", "few_shot_cot"):
            try:
                prompt = build_prompts(template, [strategy], query, k=len(template.examples), seed=seed)[0]
            except Exception as exc:  # few_shot_cot needs rationales; the sentiment template may have none
                assert "rationale" in str(exc)
                continue
            shown = [m["content"] for m in prompt.messages[1:-1:2]]
            assert len(shown) == len(template.examples) - 1
            assert all(first not in text for text in shown), (seed, strategy)


def test_a_template_whose_only_example_is_the_query_says_so(home):
    from prompt_lab.errors import TemplateError
    from prompt_lab.prompts.strategies import build_prompts
    from prompt_lab.prompts.templates import parse_template

    template = parse_template("name: one\ninstruction: Classify.\nvariables: [text]\ninput: '{{ text }}'\n"
                              "examples:\n  - {inputs: {text: Fine.}, output: ok}\n")
    with pytest.raises(TemplateError, match="few_shot has no example left once the query itself is left out"):
        build_prompts(template, ["few_shot"], {"text": "fine."})
    assert len(build_prompts(template, ["few_shot"], {"text": "Bad."})[0].messages) == 4


def test_without_strategies_named_a_template_builds_those_it_supports(home):
    from prompt_lab.prompts.strategies import strategy_notes, supported_strategies

    # before: a template without examples failed every default render ("few_shot needs 'examples'")
    bare = parse_template("name: bare\ninstruction: Answer.\nvariables: [q]\n")
    assert supported_strategies(bare) == ["zero_shot", "cot"]
    assert strategy_notes(bare) == ["few_shot and few_shot_cot need examples: this template has none"]
    assert [p.strategy for p in build_prompts(bare, None, {"q": "why?"})] == ["zero_shot", "cot"]
    plain = parse_template("name: plain\ninstruction: Answer.\nvariables: [q]\n"
                           "examples:\n  - {inputs: {q: a}, output: b}\n")
    assert supported_strategies(plain) == ["zero_shot", "few_shot", "cot"]
    assert strategy_notes(plain) == ["few_shot_cot needs examples with a 'rationale': this template has none"]
    sentiment = get_template("sentiment")
    assert supported_strategies(sentiment) == list(STRATEGIES) and strategy_notes(sentiment) == []
    with pytest.raises(TemplateError, match=r"^template 'bare': few_shot needs 'examples'; this template has none$"):
        build_prompts(bare, ["few_shot"], {"q": "why?"})  # asked for by name, it is still refused with the reason


def test_no_instruction_sends_no_system_turn_so_the_models_own_default_applies(home, default_model_dir):
    """Issue 19: an absent, empty or blank instruction (and no output format) sends no system turn; the chat template
    then adds the model's own default system line, as lm-eval's prompts get it. CoT's reasoning line closes the
    question instead of making a system turn of its own."""
    from transformers import AutoTokenizer

    from prompt_lab.models.local.generation import format_prompt

    base = "name: bare\nvariables: [q]\ninput: 'Q: {{ q }}'\n"
    for text in (base, base + "instruction: ''\n", base + "instruction: '  '\n"):
        zero, cot = build_prompts(parse_template(text), ["zero_shot", "cot"], {"q": "Why <b>\"so\"</b>?"})
        assert zero.messages == [{"role": "user", "content": 'Q: Why <b>"so"</b>?'}]
        assert cot.messages == [{"role": "user", "content": 'Q: Why <b>"so"</b>?\nReason step by step, then finish '
                                                            'with "The answer is <answer>."'}]
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    text = format_prompt(tokenizer, zero)
    assert text == tokenizer.apply_chat_template(zero.messages, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")  # the model's default
    # an output format alone still makes a system turn
    (fmt,) = build_prompts(parse_template(base + "output_format: One word.\n"), ["zero_shot"], {"q": "Why?"})
    assert fmt.messages[0] == {"role": "system", "content": "One word."}
