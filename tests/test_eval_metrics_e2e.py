"""End-to-end evaluations on the embedded SmolLM2-135M-Instruct (real weights, CPU): self-consistency votes and the
contains, regex, BLEU and ROUGE metrics. Each report is checked against values recomputed here, from the logged
generations and the dataset files, with code written independently of prompt_lab's (a vote spelled out below,
sacrebleu and rouge_score called directly)."""
import json
import re
from collections import defaultdict
from decimal import Decimal

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from conftest import ROOT

from prompt_lab.answers import metrics
from prompt_lab.evaluation.evaluate import evaluate
from prompt_lab.evaluation.experiments import EvalSpec
from prompt_lab.reporting.summary import eval_report
from prompt_lab.runlog.store import connect, run_generations

pytestmark = pytest.mark.integration

DATA = ROOT / "experiments" / "data"


def logged(db, run_id) -> list[dict]:
    with connect(db) as conn:
        return run_generations(conn, run_id)


def gold_by_input(path, key: str, gold: str) -> dict[str, str]:
    """The dataset file's own gold answers, by input text (so the test does not trust the logged target)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row[key]: row[gold] for row in rows}


# --- self-consistency ------------------------------------------------------------------------------------------

# Lines of experiments/data/arithmetic.jsonl (0-based) where the model's samples disagree: it is right on some
# items and wrong on others, gives no number on some samples, and ties between answers.
ARITHMETIC_LINES = (22, 25, 36, 42, 47)
SAMPLES = 5


def as_number(answer: str):
    """A number as a number ('9' == '9.0' == '9.00'); any other text by its case-folded form."""
    text = answer.strip().replace(",", "")
    return Decimal(text) if re.fullmatch(r"-?\d+(?:\.\d+)?", text) else text.casefold()


def vote(answers: list[str | None]) -> tuple[str | None, int]:
    """The most common valid answer (numbers compared as numbers) and its count; ties go to the answer seen first;
    None (no answer extracted) never votes. (None, 0) when no sample has an answer."""
    counts: dict = {}
    first: dict = {}
    for answer in answers:
        if answer is None:
            continue
        key = as_number(answer)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, answer)
    if not counts:
        return None, 0
    top = max(counts.values())
    winner = next(key for key, count in counts.items() if count == top)  # insertion order: first seen wins a tie
    return first[winner], top


def right(answer: str | None, gold: str) -> int:
    return int(answer is not None and as_number(answer) == as_number(gold))


def test_self_consistency_votes_valid_answers_by_number_and_is_deterministic(default_model_dir, home, tmp_path):
    lines = (DATA / "arithmetic.jsonl").read_text(encoding="utf-8").splitlines()
    data = tmp_path / "arithmetic.jsonl"
    data.write_text("".join(lines[i] + "\n" for i in ARITHMETIC_LINES), encoding="utf-8")
    gold = gold_by_input(data, "question", "answer")
    spec = EvalSpec(template="arithmetic", dataset=str(data), strategies=["few_shot"], k_shot=[1], seeds=[3],
                    samples=SAMPLES, temperature=0.5, max_new_tokens=6, batch_size=8)
    db = tmp_path / "runs.db"
    run_id = evaluate(spec, db_path=db)
    rows = logged(db, run_id)
    report = eval_report(run_id, db_path=db)
    assert report.metric == "accuracy" and [c["seed"] for c in report.conditions] == [3]

    ties = none_outvotes = nones = 0
    all_verdicts = []
    for condition, row in zip(report.conditions, report.rows):
        mine = [r for r in rows if r["seed"] == condition["seed"]]
        by_item: dict[int, list[dict]] = defaultdict(list)
        for r in sorted(mine, key=lambda r: (r["item_index"], r["sample_index"])):
            by_item[r["item_index"]].append(r)
        assert sorted(by_item) == condition["item_index"] == list(range(len(ARITHMETIC_LINES)))
        # each item has exactly `samples` generations, one per sample index
        assert all([r["sample_index"] for r in samples] == list(range(SAMPLES)) for samples in by_item.values())
        assert condition["samples"] == row.samples == SAMPLES and condition["generations"] == len(mine)

        verdicts, no_vote, wrong, shares, first_samples = [], 0, 0, [], []
        for index in condition["item_index"]:
            samples = by_item[index]
            answers = [r["answer"] for r in samples]
            item_gold = gold[json.loads(samples[0]["variables_json"])["question"]]
            winner, count = vote(answers)
            verdicts.append(right(winner, item_gold))
            no_vote += winner is None
            wrong += winner is not None and not verdicts[-1]
            shares.append(count / SAMPLES)  # invalid samples count in the denominator, never as a vote
            first_samples.append(right(answers[0], item_gold))
            valid = [as_number(a) for a in answers if a is not None]
            ties += sum(valid.count(k) == count for k in set(valid)) > 1
            nones += answers.count(None)
            none_outvotes += answers.count(None) >= count > 0
            # each logged sample's own verdict is the same rule on its own answer
            assert [r["correct"] for r in samples] == [right(a, item_gold) for a in answers]
        all_verdicts += verdicts

        assert condition["correct"] == verdicts  # the report counts the recomputed vote as each item's answer
        assert condition["accuracy"] == row.value == sum(verdicts) / len(verdicts)
        curve = condition["self_consistency"]["curve"]
        assert [p["k"] for p in curve] == list(range(1, SAMPLES + 1)) and row.self_consistency == curve
        assert curve[-1]["accuracy"] == row.value  # k = samples: the vote over all samples
        # k = 1: one sample drawn at random, estimated over resamples; it is the mean of the per-sample verdicts
        per_sample = [r["correct"] for r in mine]
        assert curve[0]["accuracy"] == pytest.approx(sum(per_sample) / len(per_sample), abs=0.1)
        assert condition["self_consistency"]["agreement"] == pytest.approx(shares)
        assert condition["self_consistency"]["single_sample_accuracy"] == sum(first_samples) / len(first_samples)
        # invalid answers are counted apart: as format failures per sample, as no answer per item, never as wrong
        assert condition["format_failures_flexible"] == sum(r["answer"] is None for r in mine)
        assert condition["no_answer"] == row.no_answer == no_vote
        assert condition["wrong_answers"] == row.wrong == wrong
        assert no_vote + wrong + sum(verdicts) == len(verdicts)

    # the run exercises every rule: right and wrong votes, samples with no answer, items where the invalid samples
    # outnumber or equal the winning answer (they would win if they voted), and ties broken by first appearance
    assert 0 < sum(all_verdicts) < len(all_verdicts)
    assert nones > 0 and none_outvotes > 0 and ties > 0

    again = evaluate(spec, db_path=db)
    assert again != run_id
    first_outputs = [(r["seed"], r["item_index"], r["sample_index"], r["output"]) for r in rows]
    assert [(r["seed"], r["item_index"], r["sample_index"], r["output"]) for r in logged(db, again)] == first_outputs
    repeat = eval_report(again, db_path=db)
    assert [c["correct"] for c in repeat.conditions] == [c["correct"] for c in report.conditions]
    assert [r.self_consistency for r in repeat.rows] == [r.self_consistency for r in report.rows]


# --- contains and regex ----------------------------------------------------------------------------------------

# (country, gold text or pattern, whether the model's answer has it). zero_shot answers in a sentence ("The capital of
# Kazakhstan is Almaty."); few_shot answers with the city alone ("Paris", "São Paulo" for Brazil).
CONTAINS = [("France", "paris", 1), ("Canada", "Ottawa", 1), ("Kazakhstan", "Astana", 0),
            ("Burkina Faso", "Ouagadougou", 0)]
REGEX = [("France", r"^Paris$", 1), ("Germany", r"\bberlin\b", 1), ("Brazil", r"^Bras[ií]lia$", 0),
         ("Australia", r"\bCanberra\b", 0)]


def text_answer(output: str, prefix: str = "The answer is") -> str | None:
    """A text answer: what follows the template's answer prefix on its line when the output has it (without a
    final period), else the whole output stripped."""
    found = list(re.finditer(re.escape(prefix) + r"\s*:?\s*", output, flags=re.IGNORECASE))
    if found:
        answer = output[found[-1].end():].split("\n", 1)[0].strip().rstrip(".")
    else:
        answer = output.strip()
    return answer or None


@pytest.mark.parametrize("metric, strategy, items", [("contains", "zero_shot", CONTAINS),
                                                     ("regex", "few_shot", REGEX)])
def test_contains_and_regex_judge_the_extracted_answer(default_model_dir, home, tmp_path, metric, strategy, items):
    data = tmp_path / "capitals.jsonl"
    data.write_text("".join(json.dumps({"country": c, "target": t}) + "\n" for c, t, _ in items), encoding="utf-8")
    db = tmp_path / "runs.db"
    run_id = evaluate(EvalSpec(template=str(ROOT / "tests/data/capital.yaml"), dataset=str(data),
                               strategies=[strategy], k_shot=[2], metric=metric, max_new_tokens=12, batch_size=8),
                      db_path=db)
    rows = sorted(logged(db, run_id), key=lambda r: r["item_index"])
    report = eval_report(run_id, db_path=db)
    assert report.metric == metric and len(rows) == len(items)
    check = metrics.contains if metric == "contains" else metrics.matches_regex
    verdicts = []
    for row, (country, target, expected) in zip(rows, items):
        assert json.loads(row["variables_json"]) == {"country": country} and row["target"] == target
        assert row["answer"] == text_answer(row["output"])  # the flexible answer of a text template
        verdict = int(check(row["answer"], target))
        assert row["correct"] == verdict, (country, row["answer"])
        verdicts.append(verdict)
    assert verdicts == [expected for _, _, expected in items]  # right and wrong, so the test can fail both ways
    (condition,), (row,) = report.conditions, report.rows
    assert condition["correct"] == verdicts and row.kind == "accuracy"
    assert row.value == condition["accuracy"] == sum(verdicts) / len(verdicts)
    assert row.ci_low <= row.value <= row.ci_high and row.ci_low < row.ci_high
    assert row.no_answer == 0 and row.wrong == verdicts.count(0)


# --- BLEU and ROUGE --------------------------------------------------------------------------------------------

def score_run(template: str, strategy: str, items: int, tmp_path):
    db = tmp_path / "runs.db"
    run_id = evaluate(EvalSpec(template=template, dataset=str(DATA / f"{template}.jsonl"), strategies=[strategy],
                               k_shot=[2], limit=items, max_new_tokens=32, batch_size=8), db_path=db)
    rows = sorted(logged(db, run_id), key=lambda r: r["item_index"])
    report = eval_report(run_id, db_path=db)
    assert len(rows) == items and len(report.rows) == 1 and report.rows[0].kind == "score"
    return rows, report


def check_mean_and_ci(report, scores: list[float]) -> None:
    (row,), (condition,) = report.rows, report.conditions
    assert condition["correct"] == pytest.approx(scores, abs=1e-9)
    assert row.value == pytest.approx(sum(scores) / len(scores), abs=1e-9)
    # a bootstrap CI of a mean lies within the smallest and largest item score, around the mean
    assert min(scores) <= row.ci_low <= row.value <= row.ci_high <= max(scores)
    assert row.ci_low < row.ci_high  # the items differ, so the interval has a width


def test_bleu_report_equals_sacrebleu_on_the_logged_answers(default_model_dir, home, tmp_path):
    rows, report = score_run("translate_fr", "few_shot", 4, tmp_path)
    gold = gold_by_input(DATA / "translate_fr.jsonl", "sentence", "reference")
    refs = [gold[json.loads(r["variables_json"])["sentence"]] for r in rows]
    hyps = [r["answer"] or "" for r in rows]
    assert report.metric == "bleu" and [r["target"] for r in rows] == refs
    scores = [sacrebleu.sentence_bleu(h, [ref]).score for h, ref in zip(hyps, refs)]
    assert [r["score"] for r in rows] == pytest.approx(scores, abs=1e-9)
    assert scores == pytest.approx([metrics.sentence_bleu(h, ref) for h, ref in zip(hyps, refs)], abs=1e-9)
    corpus = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert corpus > 0 and report.rows[0].corpus == {"bleu": pytest.approx(corpus, abs=1e-9)}
    check_mean_and_ci(report, scores)


def test_rouge_report_equals_rouge_score_on_the_logged_answers(default_model_dir, home, tmp_path):
    rows, report = score_run("summarize", "zero_shot", 3, tmp_path)
    gold = gold_by_input(DATA / "summarize.jsonl", "text", "reference")
    refs = [gold[json.loads(r["variables_json"])["text"]] for r in rows]
    hyps = [r["answer"] or "" for r in rows]
    assert report.metric == "rouge" and [r["target"] for r in rows] == refs
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    pairs = [scorer.score(ref, hyp) for hyp, ref in zip(hyps, refs)]
    scores = [p["rougeL"].fmeasure for p in pairs]
    assert [r["score"] for r in rows] == pytest.approx(scores, abs=1e-9)
    assert scores == pytest.approx([metrics.rouge_l(h, ref) for h, ref in zip(hyps, refs)], abs=1e-9)
    assert all(s > 0 for s in scores)
    assert report.rows[0].corpus == pytest.approx({"rouge1": sum(p["rouge1"].fmeasure for p in pairs) / len(pairs),
                                                   "rougeL": sum(scores) / len(scores)}, abs=1e-9)
    check_mean_and_ci(report, scores)
