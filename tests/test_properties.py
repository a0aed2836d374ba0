"""Property-based tests (hypothesis): invariants that must hold for every input, not only the examples we
thought of. Each property names what a user would see break if it failed."""
import re
import string

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from prompt_lab.evaluation import stats
from prompt_lab.evaluation.datasets import DatasetError, load_dataset_bytes
from prompt_lab.errors import CancelledError, PromptLabError
from prompt_lab.answers.scoring import extract_for, extract_strict, normalize_label, normalize_number, same_answer
from prompt_lab.prompts.templates import get_template, parse_template

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LABELS = ["Positive", "Negative", "Neutral"]
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)


def spelled_like(label: str):
    """The same label as people and models write it: another case, spaces around, a trailing period or
    exclamation mark, quotes."""
    return st.builds(lambda case, pad_l, pad_r, tail, quote: f"{pad_l}{quote}{case(label)}{tail}{quote}{pad_r}",
                     st.sampled_from([str.lower, str.upper, str.title, lambda s: s]),
                     st.sampled_from(["", " ", "\n", "\t "]), st.sampled_from(["", " ", "\n"]),
                     st.sampled_from(["", ".", "!", "..."]), st.sampled_from(["", '"', "'"]))


@pytest.fixture
def sentiment(home):
    return get_template("sentiment")


@FAST
@given(data=st.data())
def test_a_label_matches_its_gold_however_it_is_spelled(sentiment, data):
    gold = data.draw(st.sampled_from(LABELS))
    written = data.draw(spelled_like(gold))
    assert same_answer(sentiment, written, gold)
    assert same_answer(sentiment, gold, written)  # gold spelled differently from the label list, too
    other = data.draw(st.sampled_from([label for label in LABELS if label != gold]))
    assert not same_answer(sentiment, written, other)
    # the model writing it that way is read as that label, strict and flexible
    assert extract_for(sentiment, written).answer == gold
    assert extract_strict(sentiment, written).answer == gold


@FAST
@given(output=text)
@example(output="Positive, Negative or Neutral.")
@example(output="The answer is Neutral. Actually Negative")
def test_extraction_of_any_text_never_raises_and_gives_a_choice_or_nothing(sentiment, output):
    for found in (extract_for(sentiment, output), extract_strict(sentiment, output)):
        assert found.answer is None or found.answer in LABELS
        if found.answer is not None and found.span is not None:
            assert normalize_label(output[found.span[0]:found.span[1]]) == normalize_label(found.answer)


@FAST
@given(output=text)
def test_number_extraction_of_any_text_gives_a_number_or_nothing(home, output):
    arithmetic = get_template("arithmetic")
    for found in (extract_for(arithmetic, output), extract_strict(arithmetic, output)):
        assert found.answer is None or re.fullmatch(r"-?\d+(\.\d+)?", found.answer), found.answer


@FAST
@given(value=st.integers(min_value=-10**9, max_value=10**9), cents=st.sampled_from(["", ".0", ".00", ".50", ".5"]))
def test_numbers_match_however_they_are_written(home, value, cents):
    arithmetic = get_template("arithmetic")
    grouped = f"{value:,}{cents}"
    plain = f"{value}{cents}"
    assert normalize_number(grouped) == normalize_number(plain)
    assert same_answer(arithmetic, grouped, plain) and same_answer(arithmetic, f"${plain}" if value >= 0 else plain,
                                                                  plain)
    assert not same_answer(arithmetic, str(value + 1), str(value))


@FAST
@given(values=st.lists(st.sampled_from([0.0, 1.0]), min_size=1, max_size=300), seed=st.integers(0, 2**16),
       confidence=st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99]))
def test_a_bootstrap_ci_contains_its_point_estimate(values, seed, confidence):
    low, high = stats.bootstrap_ci(values, seed=seed, confidence=confidence, resamples=400)
    mean = sum(values) / len(values)
    assert 0.0 <= low <= mean <= high <= 1.0


@FAST
@given(pairs=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=300))
def test_mcnemar_is_symmetric_in_its_two_sides(pairs):
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    ab, ba = stats.mcnemar_exact(a, b), stats.mcnemar_exact(b, a)
    assert ab["p_value"] == ba["p_value"] and 0.0 < ab["p_value"] <= 1.0
    assert (ab["only_a"], ab["only_b"]) == (ba["only_b"], ba["only_a"])
    assert ab["both"] + ab["only_a"] + ab["only_b"] + ab["neither"] == ab["n"] == len(pairs)
    # agreeing on every item is never evidence of a difference
    assert stats.mcnemar_exact(a, a)["p_value"] == 1.0


@FAST
@given(answers=st.lists(st.one_of(st.none(), st.sampled_from(["a", "A ", "b", "c"])), max_size=20))
def test_invalid_answers_never_win_a_vote(answers):
    winner, share = stats.majority_vote(answers)
    valid = [a for a in answers if a is not None]
    if not valid:
        assert (winner, share) == (None, 0.0)
    else:
        assert winner is not None and winner in valid
        count = sum(a.strip().casefold() == winner.strip().casefold() for a in valid)
        assert share == count / len(answers)
        assert all(sum(x.strip().casefold() == v.strip().casefold() for x in valid) <= count for v in valid)


FORMATS = {
    ".csv": lambda rows, cell: "text\n" + "".join(f"{cell}\n" for _ in range(rows)),
    ".jsonl": lambda rows, cell: "".join(f'{{"text": "{cell}"}}\n' for _ in range(rows)),
    ".json": lambda rows, cell: "".join(f'{{"text": "{cell}"}}\n' for _ in range(rows)),
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from(sorted(FORMATS)), cap=st.integers(1, 40))
def test_row_cap_holds_at_the_exact_boundary_for_every_format(home, monkeypatch, suffix, cap):
    monkeypatch.setenv("PROMPT_LAB_MAX_ROWS", str(cap))
    write = FORMATS[suffix]
    assert len(load_dataset_bytes(write(cap, "x").encode(), f"d{suffix}").rows) == cap
    with pytest.raises(DatasetError, match=rf"d{re.escape(suffix)}: more than {cap} rows \(the limit is {cap}; "
                                           r"PROMPT_LAB_MAX_ROWS raises it\)"):
        load_dataset_bytes(write(cap + 1, "x").encode(), f"d{suffix}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from(sorted(FORMATS)), cap=st.integers(1, 60))
def test_cell_cap_holds_at_the_exact_boundary_for_every_format(home, monkeypatch, suffix, cap):
    monkeypatch.setenv("PROMPT_LAB_MAX_CELL_CHARS", str(cap))
    write = FORMATS[suffix]
    assert load_dataset_bytes(write(1, "y" * cap).encode(), f"d{suffix}").rows == [{"text": "y" * cap}]
    with pytest.raises(DatasetError, match=rf"d{re.escape(suffix)}, line 2?1?: column 'text' is longer than {cap} "
                                           "characters"):
        load_dataset_bytes(write(1, "y" * (cap + 1)).encode(), f"d{suffix}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from(sorted(FORMATS)), slack=st.integers(0, 30))
def test_size_cap_holds_at_the_exact_boundary_for_every_format(home, monkeypatch, suffix, slack):
    data = FORMATS[suffix](3, "z" * 5).encode()
    cap = len(data) + slack
    monkeypatch.setenv("PROMPT_LAB_MAX_UPLOAD_BYTES", str(cap))
    assert len(load_dataset_bytes(data, f"d{suffix}").rows) == 3
    bigger = data + b"\n" * (slack + 1)  # blank lines: only the size is wrong
    with pytest.raises(DatasetError, match=rf"d{re.escape(suffix)}: the file is .* \({len(bigger):,} bytes\), larger "
                                           "than the .* upload limit"):
        load_dataset_bytes(bigger, f"d{suffix}")


FAILURES = [CancelledError("stop"), PromptLabError("bad input"), ValueError("boom"), KeyError("k"),
            RuntimeError("crash"), KeyboardInterrupt()]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(failure=st.sampled_from([None] + FAILURES))
def test_the_run_log_records_the_right_status_after_every_kind_of_failure(home, failure):
    from prompt_lab.runlog.store import finishing, get_run, open_db, start_run

    db = open_db()
    run_id = start_run(db, kind="compare", template_name="sentiment")
    assert get_run(db, run_id)["status"] == "running"
    try:
        with finishing(db, run_id):
            if failure is not None:
                raise failure
    except BaseException as raised:
        assert raised is failure
    run = get_run(db, run_id)
    if failure is None:
        assert (run["status"], run["error"]) == ("completed", None)
    elif isinstance(failure, CancelledError):
        assert (run["status"], run["error"]) == ("cancelled", "stopped by the user") and failure.run_id == run_id
    else:
        assert run["status"] == "failed" and run["error"] == f"{type(failure).__name__}: {failure}"
    assert run["finished_utc"] >= run["created_utc"] and run["duration_ms"] >= 0
    db.conn.close()


TEMPLATE = """\
name: prefixed
instruction: Answer with one word.
variables: [q]
choices: [yes, no]
answer_prefix: "Final verdict:"
answer: {type: choice}
"""


@FAST
@given(label=st.sampled_from(["yes", "no"]), before=st.sampled_from(["", "Thinking it over, no doubt. ", "Yes and no. "]),
       spacing=st.sampled_from([" ", "  ", ""]))
def test_a_template_with_its_own_answer_prefix_is_read_by_that_prefix(home, label, before, spacing):
    template = parse_template(TEMPLATE)
    output = f"{before}Final verdict:{spacing}{label.upper()}."
    assert extract_for(template, output).answer == label
    assert extract_strict(template, output).answer == label


@st.composite
def label_lists(draw):
    return draw(st.lists(st.text(alphabet=string.ascii_letters, min_size=1, max_size=8), min_size=2, max_size=5,
                         unique_by=str.casefold))


@FAST
@given(labels=label_lists(), pick=st.integers(0, 4), noise=text)
def test_extraction_picks_only_from_the_items_own_choices(sentiment, labels, pick, noise):
    """Per-item choices (a dataset's choices column) replace the template's: the answer is one of them or none."""
    chosen = labels[pick % len(labels)]
    assume(all(normalize_label(c) for c in labels))
    found = extract_for(sentiment, f"{noise} The answer is {chosen}.", choices=labels)
    assert found.answer in labels + [None]
    assert extract_for(sentiment, f"The answer is {chosen}.", choices=labels).answer == chosen
