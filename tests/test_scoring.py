import pytest

from prompt_lab.scoring import extract_for, extract_strict, normalize_number
from prompt_lab.templates import get_template


def test_choice_extraction(home):
    sentiment = get_template("sentiment")
    assert extract_for(sentiment, "Positive").answer == "Positive"
    assert extract_for(sentiment, "negative.").answer == "Negative"
    assert extract_for(sentiment, "It praises the food. The answer is Positive.").answer == "Positive"
    # CoT that weighs both sides: the answer after "The answer is" counts
    assert extract_for(sentiment, "Not negative at all... The answer is positive.").answer == "Positive"
    # naming every label picks none
    assert extract_for(sentiment, "Positive, Negative or Neutral.").answer is None
    assert extract_for(sentiment, "I cannot tell.").answer is None


def test_number_extraction(home):
    arithmetic = get_template("arithmetic")
    assert extract_for(arithmetic, "3 boxes of 12 is 36, minus 5 is 31. The answer is 31.").answer == "31"
    assert extract_for(arithmetic, "It costs $1,250.").answer == "1250"
    assert normalize_number("12.50") == "12.5" and normalize_number("7.") == "7"


def test_json_extraction(home):
    extract = get_template("extract_json")
    found = extract_for(extract, 'Here: {"name": "Ana", "age": 31, "city": "Porto"} done')
    assert found.answer == '{"age": 31, "city": "Porto", "name": "Ana"}'
    assert extract_for(extract, "no json {here").answer is None


# Outputs SmolLM2-135M-Instruct wrote in this project's runs (sentiment and arithmetic templates).
REAL_OUTPUTS = [
    ("sentiment", "Positive, Negative or Neutral.", None, None),
    ("sentiment", "Neutral", "Neutral", "Neutral"),
    ("sentiment", "The answer is Positive.", "Positive", "Positive"),
    ("sentiment", "\n\nStep 1: Identify the main action (the pasta was cold).\nStep 2: Identify the action", None, None),
    ("sentiment", "The reviewer loved the phone. Five stars. The sentiment is positive.", None, "Positive"),
    ("arithmetic", "He has 3 boxes of 12 pens, so 3 x 12 = 36 pens. He gives away 5, so 36 - 5 = 31. "
                   "The answer is 31.", "31", "31"),
    ("arithmetic", "Tom has 36 pens and gives 5 away, leaving 31 pens.", None, "31"),
]


@pytest.mark.parametrize("template, output, strict, flexible", REAL_OUTPUTS)
def test_strict_and_flexible_on_real_outputs(home, template, output, strict, flexible):
    t = get_template(template)
    assert extract_strict(t, output).answer == strict
    assert extract_for(t, output).answer == flexible


@pytest.mark.parametrize("output, strict, flexible", [
    # gsm8k conventions: strict "The answer is N." / flexible: the last number in the text
    ("Natalia sold 48/2 = 24 clips in May. 48+24 = 72. The answer is 72.", "72", "72"),
    ("The answer is $1,200.", "1200", "1200"),
    ("So she has 5 + 7 = 12 apples left", None, "12"),
    ("The answer is twelve.", None, None),
    ("42", "42", "42"),
    ("Answer: 18.", "18", "18"),
    ("First 3, then 4, finally 7.5", None, "7.5"),
])
def test_gsm8k_conventions(home, output, strict, flexible):
    arithmetic = get_template("arithmetic")
    assert extract_strict(arithmetic, output).answer == strict
    assert extract_for(arithmetic, output).answer == flexible


def test_matched_span_points_at_the_answer(home):
    t = get_template("arithmetic")
    text = "36 - 5 = 31. The answer is 31."
    found = extract_for(t, text)
    assert text[found.span[0]:found.span[1]] == "31" and found.span[0] > 10
