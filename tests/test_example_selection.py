"""Few-shot example selection (random, fixed, similar): which demonstrations a query is shown, on shipped templates;
the query and its exact duplicates never among them; the choice threaded through experiments, evaluate and compare."""
import csv
import random
import re

import pytest

from conftest import ROOT

from prompt_lab.errors import TemplateError, UnknownChoiceError
from prompt_lab.evaluation.experiments import EvalSpec, ExperimentError, load_spec
from prompt_lab.prompts.selection import SELECTIONS, candidates, is_own_example, select_examples
from prompt_lab.prompts.strategies import build_prompts
from prompt_lab.prompts.templates import get_template, list_templates, parse_template

PLOT = {"review": "The plot was predictable and the acting was painfully stiff."}


def positions(template, examples) -> list[int]:
    return [template.examples.index(e) for e in examples]


def shown(template, prompt) -> list[int]:
    """The template examples a prompt shows as demonstrations, in the order it shows them."""
    turns = [m["content"] for m in prompt.messages[1:-1:2]]
    return [next(i for i, e in enumerate(template.examples) if e.inputs["review"] in t) for t in turns]


def old_pick_examples(template, strategy, k, seed, values):
    """strategies._pick_examples as it was before selection policies (commit e349622), verbatim but for names."""
    pool = template.examples
    if any(is_own_example(template, e, values) for e in pool):
        pool = [e for e in pool if not is_own_example(template, e, values)]
        if not pool:
            raise TemplateError("no example left")
    if strategy == "few_shot_cot":
        pool = [e for e in pool if e.rationale]
        if not pool:
            raise TemplateError("no rationale")
    elif not pool:
        raise TemplateError("no examples")
    k = max(1, min(int(k), len(pool)))
    return random.Random(seed).sample(pool, k)


def shipped_with_examples():
    templates = [t for t in list_templates() if t.examples]  # a fresh data dir: the shipped ones
    assert {t.name for t in templates} >= {"sentiment", "arithmetic", "plausibility", "translate_fr"}
    return templates


# ---- each policy's choice on the shipped sentiment template ------------------------------------------------------

def test_each_policy_picks_these_examples_for_a_movie_review(home):
    sentiment = get_template("sentiment")
    # 1 "The plot made no sense ...", 7 "... the wooden acting and a painfully slow second half"
    assert positions(sentiment, select_examples(sentiment, PLOT, 3, "similar")) == [7, 1, 0]
    assert positions(sentiment, select_examples(sentiment, PLOT, 3, "fixed")) == [0, 1, 2]
    assert positions(sentiment, select_examples(sentiment, PLOT, 3, "random", seed=0)) == [6, 7, 3]
    assert positions(sentiment, select_examples(sentiment, PLOT, 3)) == [6, 7, 3]  # random is the default
    assert positions(sentiment, select_examples(sentiment, PLOT, 3, "random", seed=1)) != [6, 7, 3]
    # the same choice is what build_prompts shows, for few_shot and few_shot_cot alike
    few, few_cot = build_prompts(sentiment, ["few_shot", "few_shot_cot"], PLOT, k=3, selection="similar")
    assert shown(sentiment, few) == shown(sentiment, few_cot) == [7, 1, 0]
    assert shown(sentiment, build_prompts(sentiment, ["few_shot"], PLOT, k=2, selection="fixed")[0]) == [0, 1]


def test_similar_picks_the_example_sharing_the_querys_words(home):
    sentiment = get_template("sentiment")
    zipper = {"review": "The zipper on my jacket broke and customer service was useless."}
    assert positions(sentiment, select_examples(sentiment, zipper, 1, "similar")) == [4]  # "The zipper broke ..."
    blender = {"review": "Does this blender crush ice? It cleans up easily, the reviews say."}
    assert positions(sentiment, select_examples(sentiment, blender, 1, "similar")) == [0]
    # no word in common with any example: every score ties, so template order decides (what fixed shows)
    nothing = {"review": "Meh."}
    assert select_examples(sentiment, nothing, 3, "similar") == select_examples(sentiment, nothing, 3, "fixed")
    # stopwords alone do not make an example similar
    assert select_examples(sentiment, {"review": "it is the and of a"}, 2, "similar") == sentiment.examples[:2]


def test_similar_is_lexical_over_the_inputs_and_breaks_ties_by_template_order(home):
    template = parse_template("name: t\ninstruction: Say.\nvariables: [q]\ninput: 'Q: {{ q }}'\nexamples:\n"
                              "  - {inputs: {q: red green}, output: a}\n  - {inputs: {q: blue sky}, output: b}\n"
                              "  - {inputs: {q: green red}, output: c}\n  - {inputs: {q: red apple pie}, output: d}\n")
    picked = [e.output for e in select_examples(template, {"q": "red or green"}, 4, "similar")]
    assert picked == ["a", "c", "d", "b"]  # a and c tie (same words): template order; d shares one word
    assert [e.output for e in select_examples(template, {"q": "Red  GREEN"}, 3, "similar")] == ["c", "d", "b"]
    assert [e.output for e in select_examples(template, {"q": "blue"}, 2, "similar")] == ["b", "a"]


def test_fixed_is_the_first_k_examples_and_k_sweeps_work_for_every_policy(home):
    arithmetic = get_template("arithmetic")
    query = {"question": "A farmer has 12 cows and buys 5 more. How many cows?"}
    for k in (1, 3, 6):
        assert select_examples(arithmetic, query, k, "fixed") == arithmetic.examples[:k]
    for policy in SELECTIONS:
        picks = {k: select_examples(arithmetic, query, k, policy, seed=4) for k in (1, 3, 6)}
        assert [len(p) for p in picks.values()] == [1, 3, 6], policy
        assert all(len({id(e) for e in p}) == len(p) for p in picks.values()), policy
    similar = [select_examples(arithmetic, query, k, "similar") for k in (1, 3, 6)]
    assert similar[0] == similar[1][:1] and similar[1] == similar[2][:3]  # a larger k adds the next most similar


# ---- the query itself and its duplicates are never demonstrations ------------------------------------------------

def variants_of(text: str) -> list[str]:
    return [text, text.upper(), "  " + text.replace(" ", "   ") + "\n", text.casefold()]


def test_no_query_is_ever_among_its_own_demonstrations_for_any_policy_or_k(home):
    for template in shipped_with_examples():
        for own in template.examples:
            for text_variant in range(4):
                query = {v: variants_of(own.inputs.get(v, ""))[text_variant] for v in template.variables}
                for need_rationale in (False, True):
                    try:
                        pool = candidates(template, query, need_rationale)
                    except TemplateError:
                        assert need_rationale  # only few_shot_cot without rationales may run out
                        continue
                    for policy in SELECTIONS:
                        for k in range(1, len(pool) + 2):
                            picked = select_examples(template, query, k, policy, seed=k, need_rationale=need_rationale)
                            where = (template.name, own.inputs, policy, k, text_variant)
                            assert own not in picked, where
                            assert not any(is_own_example(template, e, query) for e in picked), where
                            assert len(picked) == min(k, len(pool)), where


def test_duplicates_of_the_query_and_among_examples_are_left_out(home):
    template = parse_template(
        "name: dupes\ninstruction: Classify.\nvariables: [text]\ninput: '{{ text }}'\nexamples:\n"
        "  - {inputs: {text: Great value.}, output: pos}\n"
        "  - {inputs: {text: '  great   VALUE. '}, output: pos}\n"  # the query's exact duplicate (case, spacing)
        "  - {inputs: {text: Broke at once.}, output: neg}\n"
        "  - {inputs: {text: broke at ONCE.}, output: neg}\n"  # a duplicate of the example above
        "  - {inputs: {text: It is a cable.}, output: neutral}\n"
        "  - {inputs: {text: Great cable value.}, output: pos}\n")
    query = {"text": "great value."}
    for policy in SELECTIONS:
        for k in range(1, 8):
            picked = select_examples(template, query, k, policy, seed=k)
            texts = [" ".join(e.inputs["text"].split()).casefold() for e in picked]
            assert len(texts) == len(set(texts)) == min(k, 3), (policy, k, texts)  # 3 distinct questions remain
            assert "great value." not in texts, (policy, k)
    assert [e.inputs["text"] for e in select_examples(template, query, 3, "fixed")] == [
        "Broke at once.", "It is a cable.", "Great cable value."]
    assert select_examples(template, query, 1, "similar")[0].inputs["text"] == "Great cable value."
    with pytest.raises(TemplateError, match="few_shot has no example left once the query itself is left out"):
        select_examples(parse_template("name: one\ninstruction: C.\nvariables: [text]\ninput: '{{ text }}'\n"
                                       "examples:\n  - {inputs: {text: A b.}, output: x}\n"), {"text": "a  B."}, 2,
                        "similar")


def test_random_chooses_what_it_chose_before_there_was_a_choice(home):
    """Existing runs must not change: same template, query, strategy, k and seed -> the same examples, same order."""
    checked = 0
    for template in shipped_with_examples():
        queries = [{v: "a question no example asks" for v in template.variables}]
        queries += [dict(e.inputs) for e in template.examples[:3]]  # the query is one of the examples
        for query in queries:
            for strategy in ("few_shot", "few_shot_cot"):
                for k in (1, 2, 3, 6, 50):
                    for seed in (0, 1, 7, 2**32 - 1):
                        try:
                            before = old_pick_examples(template, strategy, k, seed, query)
                        except TemplateError:
                            continue
                        now = select_examples(template, query, k, "random", seed, strategy == "few_shot_cot")
                        assert now == before, (template.name, query, strategy, k, seed)
                        checked += 1
    assert checked > 500
    sentiment = get_template("sentiment")  # and the prompts themselves: the default is random
    assert build_prompts(sentiment, ["few_shot"], PLOT, k=2, seed=3) == build_prompts(
        sentiment, ["few_shot"], PLOT, k=2, seed=3, selection="random")


# ---- refusals --------------------------------------------------------------------------------------------------

def test_an_unknown_policy_is_refused_with_the_allowed_ones(home, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("template: sentiment\ndataset: d.csv\nexample_selection: nearest\n")
    with pytest.raises(ExperimentError) as info:
        load_spec(path)
    assert str(info.value) == (f"{path}, line 3: field 'example_selection': 'nearest' is not one of: "
                               "random, fixed, similar")
    with pytest.raises(UnknownChoiceError, match="unknown example selection 'nearest'; choose one of: random, fixed, "
                                                 "similar"):
        build_prompts(get_template("sentiment"), ["zero_shot"], PLOT, selection="nearest")
    from prompt_lab.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "-t", "sentiment", "--examples", "nearest"])


def test_experiment_files_take_the_policy_and_old_runs_still_load(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("template: sentiment\ndataset: d.csv\nk_shot: [1, 3, 6]\nexample_selection: similar\n")
    spec = load_spec(path)
    assert spec.example_selection == "similar" and spec.to_dict()["example_selection"] == "similar"
    old = EvalSpec(template="sentiment", dataset="d.csv").to_dict()
    del old["example_selection"]  # the params logged by a run from before the field existed
    assert EvalSpec(**old).validate().example_selection == "random"
    from prompt_lab.specs import spec_help

    assert "similar" in next(f.help for f in spec_help(EvalSpec) if f.name == "example_selection")


def test_a_report_of_an_old_few_shot_run_says_its_examples_were_random(home):
    from prompt_lab.reporting.summary import eval_report
    from prompt_lab.reporting.text import report_json, report_lines
    from prompt_lab.runlog.store import open_db

    from test_report import eval_run, item

    db = open_db()
    run = eval_run(db, [item(i, "Positive", "Positive", strategy="few_shot", k_shot=3) for i in range(4)], items=4)
    report = eval_report(run, db)
    assert report.example_selection == "random" and report_json(report)["example_selection"] == "random"
    assert report_lines(report)[0].endswith("· method generate · examples random")


# ---- through evaluate and compare -------------------------------------------------------------------------------

def test_an_evaluation_with_similar_examples_logs_the_most_similar_demonstrations(home, default_model_dir, tmp_path):
    from prompt_lab.evaluation.evaluate import evaluate
    from prompt_lab.reporting.summary import eval_report
    from prompt_lab.reporting.text import report_json, report_lines
    from prompt_lab.runlog.store import get_run, open_db

    experiment = tmp_path / "similar.yaml"
    experiment.write_text(f"template: sentiment\ndataset: {ROOT / 'experiments/data/sentiment.csv'}\n"
                          "columns: {variables: {review: review}, target: label}\nstrategies: [few_shot]\n"
                          "models: [default]\nmethod: label_probs\nk_shot: [1, 3]\nexample_selection: similar\n"
                          "limit: 8\n")
    run_id = evaluate(load_spec(experiment))
    db = open_db()
    run = get_run(db, run_id)
    assert run["status"] == "completed" and run["params"]["example_selection"] == "similar"
    rows = list(db.query("select item_index, k_shot, prompt, variables_json from generations where run_id = ?",
                         [run_id]))
    assert len(rows) == 16
    sentiment = get_template("sentiment")
    reviews = [r["review"] for r in csv.DictReader((ROOT / "experiments/data/sentiment.csv").open())][:8]
    expected = {(reviews.index(PLOT["review"]), 3): [7, 1, 0], (reviews.index(PLOT["review"]), 1): [7]}
    for row in rows:
        query = {"review": reviews[row["item_index"]]}
        in_prompt = sorted((row["prompt"].find(e.inputs["review"]), i) for i, e in enumerate(sentiment.examples)
                           if e.inputs["review"] in row["prompt"])
        demos = [i for _, i in in_prompt]
        assert demos == positions(sentiment, select_examples(sentiment, query, row["k_shot"], "similar"))
        assert demos == expected.get((row["item_index"], row["k_shot"]), demos)
        assert row["prompt"].count(query["review"]) == 1  # the query once, as the question; never a demonstration
    report = eval_report(run_id)
    assert report_json(report)["example_selection"] == "similar"
    assert re.search(r"· metric accuracy · method label_probs · format chat · examples similar · 16 items in \d+\.\d s, "
                     r"\d+\.\d items/s$", report_lines(report)[0])


def test_compare_logs_the_policy_and_run_again_repeats_it(home, tiny_model_dir):
    from prompt_lab.compare import compare, logged_result, rerun
    from prompt_lab.models import GenerationParams
    from prompt_lab.runlog.store import get_run, open_db, run_generations

    sentiment = get_template("sentiment")
    first = compare("sentiment", PLOT, strategies=["few_shot"], models=str(tiny_model_dir), k=2,
                    params=GenerationParams(max_new_tokens=2), selection="similar")
    assert "--k 2 --examples similar --temperature" in first.command and first.example_selection == "similar"
    prompt = first.outputs[0].prompt
    assert prompt.find(sentiment.examples[7].inputs["review"]) < prompt.find(sentiment.examples[1].inputs["review"])
    assert sentiment.examples[0].inputs["review"] not in prompt
    again = rerun(first.run_id)
    db = open_db()
    assert get_run(db, again.run_id)["options"] == get_run(db, first.run_id)["options"] == {
        "k": 2, "example_selection": "similar"}
    assert [g["prompt"] for g in run_generations(db, again.run_id)] == [prompt]
    assert logged_result(first.run_id).example_selection == "similar"


def test_the_cli_renders_with_the_policy_asked_for(home, tiny_model_dir, capsys):
    import json

    from prompt_lab.cli import main

    args = ["render", "-t", "sentiment", "--var", f"review={PLOT['review']}", "--strategies", "few_shot", "--k", "2",
            "--model", str(tiny_model_dir), "--json"]
    sentiment = get_template("sentiment")
    for policy, expected in (("fixed", [0, 1]), ("similar", [7, 1])):
        assert main(args + ["--examples", policy]) == 0
        (rendered,) = json.loads(capsys.readouterr().out)
        assert [i for i, e in enumerate(sentiment.examples)
                if e.inputs["review"] in rendered["prompt"]] == sorted(expected), policy
