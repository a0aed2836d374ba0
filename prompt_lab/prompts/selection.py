"""Few-shot example selection: which k of a template's examples a query is shown as demonstrations.

random   k examples drawn with a seeded RNG (the default: what every run did before there was a choice)
fixed    the first k examples in the template's order
similar  the k examples whose inputs are lexically closest to the query's by BM25; ties go to template order

Every policy first leaves out the query itself and its exact duplicates (`is_own_example`: the same inputs,
ignoring case and spacing), then any example that repeats an earlier one's inputs, so k distinct
demonstrations are shown and none of them hands the model the query's own answer.
"""
from __future__ import annotations

import logging
import random

from prompt_lab.errors import TemplateError, UnknownChoiceError
from prompt_lab.prompts.templates import Example, Template

SELECTIONS = ("random", "fixed", "similar")


def check_selection(policy: str) -> str:
    """The policy name, or UnknownChoiceError listing the valid ones."""
    if policy not in SELECTIONS:
        raise UnknownChoiceError(f"unknown example selection '{policy}'; choose one of: {', '.join(SELECTIONS)}")
    return policy


def _same_text(value) -> str:
    return " ".join(str(value).split()).casefold()


def is_own_example(template: Template, example, values: dict) -> bool:
    """Whether an example asks the same question as the query (its inputs equal the query's, ignoring case and
    spacing): shown as a demonstration, it would hand the model the query's own answer."""
    return all(_same_text(example.inputs.get(v, "")) == _same_text(values.get(v, "")) for v in template.variables)


def candidates(template: Template, values: dict, need_rationale: bool = False) -> list[Example]:
    """The examples a query may be shown, in template order: not the query or its duplicates, with a rationale
    when `need_rationale` (few_shot_cot), and each question once (the first of examples with equal inputs)."""
    strategy = "few_shot_cot" if need_rationale else "few_shot"
    pool = template.examples
    if any(is_own_example(template, e, values) for e in pool):  # never the query among its own demonstrations
        pool = [e for e in pool if not is_own_example(template, e, values)]
        if not pool:
            raise TemplateError(f"template '{template.name}': {strategy} has no example left once the query itself "
                                "is left out (it is the template's only example); add examples or pick another input")
    if need_rationale:
        pool = [e for e in pool if e.rationale]
        if not pool:
            raise TemplateError(
                f"template '{template.name}': few_shot_cot needs examples with a 'rationale'; this template has none"
            )
    elif not pool:
        raise TemplateError(f"template '{template.name}': few_shot needs 'examples'; this template has none")
    seen, distinct = set(), []
    for example in pool:  # without repeats the pool is the one random sampled before: seeded picks do not change
        key = tuple(_same_text(example.inputs.get(v, "")) for v in template.variables)
        if key not in seen:
            seen.add(key)
            distinct.append(example)
    return distinct


def select_examples(template: Template, query_values: dict, k: int, policy: str = "random", seed: int = 0,
                    need_rationale: bool = False) -> list[Example]:
    """k demonstrations for the query (k clamped to 1..the examples there are), chosen by `policy`."""
    check_selection(policy)
    pool = candidates(template, query_values, need_rationale)
    k = max(1, min(int(k), len(pool)))
    if policy == "random":
        return random.Random(seed).sample(pool, k)
    if policy == "fixed":
        return pool[:k]
    order = most_similar(template, pool, query_values)
    return [pool[i] for i in order[:k]]


def _text(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def most_similar(template: Template, pool: list[Example], query_values: dict) -> list[int]:
    """Positions in `pool`, most similar to the query first: BM25 (bm25s, English stopwords dropped) of each
    example's input values against the query's, ties in template order.

    Why BM25 rather than embeddings: it is lexical, needs no model call (an evaluation builds a prompt per item,
    and the model under test may be remote or tiny, its embeddings no judge of meaning), takes well under a
    millisecond for a template's examples, and is deterministic, so a run repeats exactly. The values are scored,
    not the rendered input: the template's own layout words are the same in every example and would only skew
    BM25's length normalisation. Scores are compared to 6 decimals, so ties do not hang on float rounding."""
    import bm25s  # imported when asked for: ~0.2 s, and only the similar policy needs it

    # bm25s sets its own logger to DEBUG on import: its "Building index" line would print once per evaluated item
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    def tokens(values: dict) -> list[str]:
        text = "\n".join(_text(values.get(v, "")) for v in template.variables)
        return bm25s.tokenize([text], stopwords="en", show_progress=False, return_ids=False)[0]

    corpus = [tokens(e.inputs) for e in pool]
    query = tokens(query_values)
    if not query or not any(corpus):  # no word to match (bm25s refuses an empty query or corpus): template order
        return list(range(len(pool)))
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)
    scores = index.get_scores(query)
    return sorted(range(len(pool)), key=lambda i: (-round(float(scores[i]), 6), i))
