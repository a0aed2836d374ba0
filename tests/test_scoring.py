from prompt_lab.scoring import extract_for, normalize_number
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
