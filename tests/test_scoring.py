import pytest

from prompt_lab.answers.scoring import (answer_key, extract_for, extract_strict, is_correct, normalize_label,
                                        normalize_number, number_value, same_answer)
from prompt_lab.prompts.templates import get_template, parse_template


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


# ---------------------------------------------------------------- templates as authors write them


def make_template(answer: str, *, choices: str | None = None, prefix: str | None = None):
    """A template the way an author writes it in YAML: `answer` is the inline answer mapping."""
    text = f"name: judge\ninstruction: Judge the claim.\nvariables: [claim]\nanswer: {answer}\n"
    if choices:
        text += f"choices: {choices}\n"
    if prefix:
        text += f"answer_prefix: {prefix}\n"
    return parse_template(text)


VERDICT = dict(choices="[Approve, Reject, Escalate]", prefix='"Final verdict:"')


@pytest.mark.parametrize("raw, number", [
    ("$1,234.50", "1234.5"),
    ("12.", "12"),
    ("100", "100"),  # zeros of a whole number stay
    ("2,000", "2000"),
    ("2.00", "2"),
    ("-3.50", "-3.5"),
    ("0.25", "0.25"),
    ("2.50.", "2.5"),  # the period ending a sentence, after the decimals
])
def test_numbers_are_normalized_as_people_write_them(raw, number):
    assert normalize_number(raw) == number


@pytest.mark.parametrize("raw, label", [
    ("Positive!", "positive"),
    ('  "Neutral." ', "neutral"),
    ("Not sure", "not sure"),
    ("well-known", "well-known"),
])
def test_labels_are_normalized_ignoring_case_punctuation_and_spaces(raw, label):
    assert normalize_label(raw) == label


# ---------------------------------------------------------------- flexible extraction without a regex


@pytest.mark.parametrize("output, answer", [
    # the label after the answer prefix counts, even when other labels appear before it
    ("Not negative at all. Final verdict: reject.", "Reject"),
    # the last prefix counts: the model corrected itself
    ("Final verdict: Approve.\nOn second thought... final verdict: ESCALATE", "Escalate"),
    # only the prefix's own line counts
    ("Final verdict: approve\nNote: reject claims without receipts.", "Approve"),
    # a prefix followed by no label: the one label in the text
    ("I would reject this claim. Final verdict: see above.", "Reject"),
    # labels are whole words: "approved" and "Rejection" are not labels
    ("The claim was approved before. Rejection is unlikely.", None),
    # two different labels and no prefix naming one: no answer
    ("Approve or reject, hard to say.", None),
    # the same label twice is still one answer
    ("Approve. Definitely approve!", "Approve"),
])
def test_choice_answer_is_read_after_the_templates_own_prefix(output, answer):
    template = make_template("{type: choice}", **VERDICT)
    assert extract_for(template, output).answer == answer


def test_choice_span_marks_the_label_the_answer_came_from():
    template = make_template("{type: choice}", **VERDICT)
    output = "Approve? No. Final verdict: reject."
    found = extract_for(template, output)
    assert found.answer == "Reject" and found.span == (28, 34) and output[28:34] == "reject"
    assert extract_strict(template, output).span == (28, 34)


def test_choice_match_first_takes_the_first_label_after_the_prefix():
    output = "Final verdict: Reject (or Escalate if unsure)."
    assert extract_for(make_template("{type: choice, match: first}", **VERDICT), output).answer == "Reject"
    assert extract_for(make_template("{type: choice, match: last}", **VERDICT), output).answer == "Escalate"


def test_items_own_choices_replace_the_templates():
    template = make_template("{type: choice}", **VERDICT)
    found = extract_for(template, "Final verdict: Maybe.", choices=["Yes", "No", "Maybe"])
    assert found.answer == "Maybe"
    assert extract_for(template, "Final verdict: Maybe.").answer is None


@pytest.mark.parametrize("output, answer, span", [
    # the last number of the answer line counts; a check on the next line does not
    ("The answer is 31.\nCheck: 31 + 5 = 36", "31", (14, 16)),
    ("The answer is 31.\nCheck: 31 + 5 = 36.\nThanks!", "31", (14, 16)),
    # the last "The answer is" counts
    ("The answer is 3.\nNo wait, the answer is 5.", "5", (40, 41)),
    # a prefix without a number: the last number in the whole text
    ("5 + 7 = 12 apples. The answer is above.", "12", (8, 10)),
    ("the answer is -4", "-4", (14, 16)),
])
def test_number_answer_comes_from_the_answer_line(home, output, answer, span):
    found = extract_for(get_template("arithmetic"), output)
    assert (found.answer, found.span) == (answer, span)


def test_number_match_first_takes_the_first_number():
    template = make_template("{type: number, match: first}")
    assert extract_for(template, "First 3, then 4, finally 7.5").answer == "3"
    assert extract_for(template, "No numbers here.").answer is None


@pytest.mark.parametrize("output, answer, span", [
    ('{"name": "Ana", "city": "São Paulo", "age": 31}', '{"age": 31, "city": "São Paulo", "name": "Ana"}', (0, 47)),
    # a model echoing the template's double braces: the inner object is the answer
    ('Output: {{"name": "Ana"}}', '{"name": "Ana"}', (9, 24)),
    ('Name {unknown}, so: {"name": null}', '{"name": null}', (20, 34)),
    ('Draft: {"name": "Ana"} Final: {"name": "Ana Lima"}', '{"name": "Ana"}', (7, 22)),
    ('From {name} to {"name": "Ana"}, not {"name": "Bo"}', '{"name": "Ana"}', (15, 30)),
])
def test_json_answer_is_the_first_object_that_parses(home, output, answer, span):
    found = extract_for(get_template("extract_json"), output)
    assert (found.answer, found.span) == (answer, span)


@pytest.mark.parametrize("output, answer, span", [
    # with the prefix: the rest of that line, without the sentence's period
    ("Let me translate. The translation is Le chat dort.\nHope it helps", "Le chat dort", (37, 50)),
    ("the translation is: J'ai faim.", "J'ai faim", (20, 30)),
    ("The translation is Je vais à Aix.", "Je vais à Aix", (19, 33)),
    ("The translation is Lisez le chapitre IX.", "Lisez le chapitre IX", (19, 40)),
    # without it: the whole output, as written
    ("Le chat dort.", "Le chat dort.", (0, 13)),
    ("  Il pleut.  ", "Il pleut.", (0, 13)),
    # a prefix with nothing after it is no answer
    ("The translation is:", None, None),
    ("", None, None),
])
def test_text_answer_is_what_follows_the_prefix(home, output, answer, span):
    found = extract_for(get_template("translate_fr"), output)
    assert (found.answer, found.span) == (answer, span)


def test_a_prefix_written_with_a_trailing_space_still_matches_without_one():
    template = make_template("{type: text}", prefix='"Final verdict: "')
    assert extract_for(template, "Final verdict:approved").answer == "approved"
    assert extract_strict(template, "Final verdict:approved").answer == "approved"


# ---------------------------------------------------------------- the template's regex


REGEX_VERDICT = r"'^verdict:\s*(\w+)'"


@pytest.mark.parametrize("match, answer, span", [("last", "Reject", (53, 59)), ("first", "Approve", (9, 16))])
def test_a_regex_reads_the_answer_case_insensitively_on_any_line(match, answer, span):
    template = make_template(f"{{type: choice, pattern: {REGEX_VERDICT}, match: {match}}}", **VERDICT)
    output = "Verdict: approve\nHmm, the cost is too high.\nVERDICT: REJECT"
    found = extract_for(template, output)
    assert (found.answer, found.span) == (answer, span)
    assert extract_strict(template, output).answer == answer


def test_a_regex_match_that_is_not_a_label_is_no_answer_but_is_marked():
    template = make_template(f"{{type: choice, pattern: {REGEX_VERDICT}}}", **VERDICT)
    found = extract_for(template, "Verdict: maybe")
    assert (found.answer, found.span) == (None, (9, 14))
    assert extract_for(template, "Verdict: maybe", choices=["Maybe", "Never"]).answer == "Maybe"
    assert extract_for(template, "No verdict today.").answer is None


@pytest.mark.parametrize("answer, output, expected", [
    # number: the captured text is normalized
    (r"{type: number, pattern: 'Total:\s*(\S+)'}", "Items: 3\nTotal: $1,200.00", "1200"),
    # text: surrounding spaces go, case and punctuation stay
    (r"{type: text, pattern: 'Title:(.*)$'}", "Title:   The Long Road!  \nBy: Ana", "The Long Road!"),
    # group 0 is the whole match
    (r"{type: text, pattern: '[A-Z]{3}-\d+', group: 0}", "See ticket abc-12 and ABC-34.", "ABC-34"),
    # an optional group that did not take part in the match is no answer
    (r"{type: number, pattern: 'Score: (\d+)|(N/A)'}", "Score: N/A", None),
    # a text template's choices are not forced on its regex answers
    (r"{type: text, pattern: 'Tag: (\w+)'}", "Tag: urgent", "urgent"),
])
def test_a_regex_answer_is_shaped_by_its_type(answer, output, expected):
    template = make_template(answer, choices="[Approve, Reject]")
    assert extract_for(template, output).answer == expected


# ---------------------------------------------------------------- strict extraction


@pytest.mark.parametrize("output, answer", [
    ("**Answer:** 42", "42"),
    ("Final answer: 42", "42"),
    ("answer : 18!", "18"),
    ("  \"7\"  ", "7"),
    ("`1,250`", "1250"),
    # the prefix on its own line, then more text below
    ("36 - 5 = 31.\nThe answer is 31.\nI hope this helps!", "31"),
    ("The answer is 30.\nWait: the answer is 31.", "31"),
    ("the answer is $12.50", "12.5"),
    ("The answer is 31...", "31"),
    ("The answer is 31 apples.", None),
    ("31 apples", None),
])
def test_strict_number_answers_need_the_expected_format(home, output, answer):
    assert extract_strict(get_template("arithmetic"), output).answer == answer


@pytest.mark.parametrize("template, output, answer", [
    ("arithmetic", "**42**.", "42"),
    ("arithmetic", '"42".', "42"),
    ("translate_fr", '"Le chat dort".', "Le chat dort"),
])
def test_strict_reads_a_bold_or_quoted_answer_followed_by_a_period(home, template, output, answer):
    assert extract_strict(get_template(template), output).answer == answer


@pytest.mark.parametrize("output, answer, span", [
    ("**Answer:** Positive", "Positive", (12, 20)),
    ("'Negative!!'", "Negative", (1, 9)),
    ("The answer is neutral.", "Neutral", (14, 21)),
    ("Positively great", None, None),
])
def test_strict_choice_answer_and_where_it_is(home, output, answer, span):
    found = extract_strict(get_template("sentiment"), output)
    assert (found.answer, found.span) == (answer, span)


def test_strict_number_span_marks_the_number(home):
    found = extract_strict(get_template("arithmetic"), "So 36 - 5 = 31.\nThe answer is $31.")
    assert (found.answer, found.span) == ("31", (30, 33))


def test_strict_choice_uses_the_items_own_choices(home):
    assert extract_strict(get_template("sentiment"), "Mixed", choices=["Mixed", "Clear"]).answer == "Mixed"


@pytest.mark.parametrize("output, answer", [
    ('{"name": "Ana", "age": 31}', '{"age": 31, "name": "Ana"}'),
    ('```json\n{"city": "São Paulo", "age": 7}\n```', '{"age": 7, "city": "São Paulo"}'),
    ('```\n{"age": 7}\n```', '{"age": 7}'),
    ('Here it is: {"age": 7}', None),
    ('[{"age": 7}]', None),
    ('{"age": 7', None),
])
def test_strict_json_must_be_only_an_object(home, output, answer):
    found = extract_strict(get_template("extract_json"), output)
    assert found.answer == answer
    assert found.span == ((0, len(output)) if answer else None)


@pytest.mark.parametrize("output, answer, span", [
    ("The translation is Le chat dort.", "Le chat dort", (19, 31)),
    ("Answer: Il pleut.", "Il pleut", (8, 16)),
    ("The translation is Je vais à Aix.", "Je vais à Aix", (19, 32)),
    ("The translation is Lisez le chapitre IX.", "Lisez le chapitre IX", (19, 39)),
    ("Xavier dort.", "Xavier dort", (0, 11)),
    ("   ", None, None),
])
def test_strict_text_answer(home, output, answer, span):
    found = extract_strict(get_template("translate_fr"), output)
    assert (found.answer, found.span) == (answer, span)


# ---------------------------------------------------------------- same_answer


@pytest.mark.parametrize("name, predicted, gold, same", [
    ("arithmetic", " 42 ", "42.0", True),
    ("arithmetic", "1,200", "$1200", True),
    ("arithmetic", "42", "24", False),
    ("arithmetic", None, "42", False),
    ("arithmetic", "42", None, False),
    ("extract_json", '{"age": 31, "name": "Ana"}', '{"name": "Ana", "age": 31}', True),
    ("extract_json", '{"age": 31}', '{"age": 32}', False),
    ("extract_json", "not json", '{"age": 31}', False),
    ("sentiment", "positive!", "Positive", True),
    ("sentiment", "Positive", "Negative", False),
    ("translate_fr", " Le chat dort ", "le chat dort", True),
    ("translate_fr", "Le chat dort", "Le chat dort.", False),
])
def test_same_answer_compares_by_answer_type(home, name, predicted, gold, same):
    assert same_answer(get_template(name), predicted, gold) is same


@pytest.mark.parametrize("name, predicted, gold, same", [
    ("arithmetic", "10", "10.0", True),
    ("arithmetic", "ten", "10", True),
    ("arithmetic", "10", "ten", True),
    ("arithmetic", "twenty-one", "21", True),
    ("arithmetic", "one hundred and five", "105", True),
    ("arithmetic", "minus three", "-3", True),
    ("arithmetic", "a", "0", False),
    ("arithmetic", "eleven", "10", False),
    ("arithmetic", "0.50", ".5", True),
    ("arithmetic", "12", ["11", "twelve"], True),  # several acceptable answers: any one
    ("arithmetic", "13", ["11", "twelve"], False),
    ("sentiment", "Negative", ["Positive", "negative."], True),
    ("sentiment", None, ["Positive"], False),
    ("translate_fr", "le chat", [], False),
])
def test_numbers_match_as_numbers_and_any_of_several_golds(home, name, predicted, gold, same):
    assert same_answer(get_template(name), predicted, gold) is same


def test_answer_keys_group_the_same_answer_spelled_differently(home):
    arithmetic, sentiment, extract = get_template("arithmetic"), get_template("sentiment"), get_template("extract_json")
    assert {answer_key(arithmetic, a) for a in ("10", "10.0", "ten", "$10", "10.")} == {"10"}
    assert answer_key(arithmetic, "1,000.50") == "1000.5" and answer_key(arithmetic, "many") == "many"
    assert answer_key(sentiment, " POSITIVE! ") == "positive" and answer_key(sentiment, None) is None
    assert answer_key(extract, '{"b": 1, "a": 2}') == answer_key(extract, '{"a":2,"b":1}') == '{"a": 2, "b": 1}'
    assert number_value("seven thousand two hundred") == 7200 and number_value("1/2") is None


@pytest.mark.parametrize("metric, answer, gold, right", [
    ("accuracy", "Paris", "paris", True),
    ("accuracy", "The capital is Paris", "Paris", False),
    ("contains", "The capital is Paris", "paris", True),
    ("contains", "The capital is Lyon", ["Paris", "Lutetia"], False),
    ("contains", "It was Lutetia", ["Paris", "Lutetia"], True),
    ("regex", "Paris, France", r"^paris\b", True),
    ("regex", "not Paris", r"^paris\b", False),
    ("regex", "Lyon", [r"^paris$", r"^lyon$"], True),
    ("contains", None, "Paris", False),
    ("regex", None, ".*", False),  # an invalid extraction is never right, even for a pattern that matches anything
])
def test_one_rule_judges_every_metric(home, metric, answer, gold, right):
    assert is_correct(get_template("translate_fr"), metric, answer, gold) is right


def test_score_metrics_have_no_right_or_wrong(home):
    with pytest.raises(ValueError, match=r"metric 'bleu' scores items, it has no right or wrong \(use one of "
                                         r"accuracy, contains, regex\)"):
        is_correct(get_template("translate_fr"), "bleu", "x", "x")


@pytest.mark.parametrize("template, extract, output, answer, method", [
    (None, extract_for, "Verdict: reject", "Reject", "pattern"),
    (None, extract_for, "Verdict: maybe", None, "pattern"),
    (None, extract_for, "No verdict.", None, "pattern"),
    (None, extract_strict, "Verdict: reject", "Reject", "pattern"),
    ("sentiment", extract_for, "The answer is Positive.", "Positive", "choice"),
    ("sentiment", extract_for, "Positive or negative?", None, "choice"),
    ("sentiment", extract_for, "Cannot tell.", None, "choice"),
    ("arithmetic", extract_for, "The answer is 7.", "7", "number"),
    ("arithmetic", extract_for, "No idea.", None, "number"),
    ("extract_json", extract_for, 'Here: {"age": 7}', '{"age": 7}', "json"),
    ("extract_json", extract_for, "No object.", None, "json"),
    ("translate_fr", extract_for, "Le chat dort.", "Le chat dort.", "text"),
    ("sentiment", extract_strict, "Positive", "Positive", "strict"),
    ("arithmetic", extract_strict, "42", "42", "strict"),
    ("arithmetic", extract_strict, "forty-two", None, "strict"),
    ("extract_json", extract_strict, '{"age": 7}', '{"age": 7}', "strict"),
    ("extract_json", extract_strict, '{"age": 7', None, "strict"),
    ("extract_json", extract_strict, "[7]", None, "strict"),
    ("translate_fr", extract_strict, "Le chat dort.", "Le chat dort", "strict"),
])
def test_an_extraction_says_which_rule_read_the_answer(home, template, extract, output, answer, method):
    """`method` tells a reader why an answer was (not) found: the template's regex, the rule for its answer type,
    or the strict format."""
    t = make_template(f"{{type: choice, pattern: {REGEX_VERDICT}}}", **VERDICT) if template is None \
        else get_template(template)
    found = extract(t, output)
    assert (found.answer, found.method) == (answer, method)


def test_the_default_answer_prefix_is_the_gsm8k_one():
    from prompt_lab.answers.scoring import extract_answer
    from prompt_lab.prompts.templates import AnswerSpec

    found = extract_answer("So 3 + 4 = 7.\nThe answer is 7.\nThen 8 more words 9.", AnswerSpec(type="number"))
    assert found.answer == "7"
