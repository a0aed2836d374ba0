"""Prompting strategies: a template plus input values become chat messages.

zero_shot     instruction, then the input
few_shot      k examples (chosen by prompts.selection) as alternating user/assistant turns, then the input
cot           zero-shot chain of thought: the answer is begun with the CoT trigger
few_shot_cot  k examples whose answers are worked rationales ending in the answer
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from prompt_lab.errors import TemplateError, UnknownChoiceError
from prompt_lab.prompts.selection import check_selection, is_own_example, select_examples  # noqa: F401 (re-export)
from prompt_lab.prompts.templates import FORMATS, Template

STRATEGIES = ("zero_shot", "few_shot", "cot", "few_shot_cot")
STRATEGY_LABELS = {
    "zero_shot": "Zero-shot",
    "few_shot": "Few-shot",
    "cot": "Chain-of-thought",
    "few_shot_cot": "Few-shot CoT",
}


@dataclass
class Prompt:
    """Chat messages plus an optional start of the answer (prefill) the model continues from, and the format they
    reach a model in: `chat` (the model's chat template) or `raw` (as_raw_text)."""

    strategy: str
    messages: list[dict] = field(default_factory=list)
    prefill: str | None = None
    format: str = "chat"
    separator: str = "\n\n"  # raw: between the system text, each demonstration and the query
    answer_label: str = "Answer:"  # raw: closes each input; the answer follows it after one space
    block_start: str = ""  # raw: the fixed text every input starts with ("Question:"); a raw CoT answer ends there

    def as_raw_text(self) -> str:
        """The prompt as plain text, laid out as lm-eval's default prompts are: the system text, each demonstration
        (its input, a newline, the answer label, a space, its answer) and the query (its input, a newline, the
        label) joined by the separator; a prefill (the CoT trigger) follows the label after a space. Also the
        prompt of a model without a chat template."""
        label = f"\n{self.answer_label}" if self.answer_label else ""
        parts = []
        for message in self.messages:
            if message["role"] == "assistant":
                parts[-1] += f" {message['content']}"
            elif message["role"] == "user":
                parts.append(message["content"] + label)
            else:
                parts.append(message["content"])
        if self.prefill:
            parts[-1] += f" {self.prefill}"
        return self.separator.join(parts)

    def as_chat_without_prefill(self) -> list[dict]:
        """Messages for APIs that cannot continue a started answer: the prefill joins the last user turn."""
        messages = [dict(m) for m in self.messages]
        if self.prefill:
            messages[-1]["content"] += f"\n\n{self.prefill}"
        return messages


def check_strategies(names) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise UnknownChoiceError(f"unknown strategy '{unknown[0]}'; valid strategies: {', '.join(STRATEGIES)}")
    if not names:
        raise UnknownChoiceError(f"choose at least one strategy: {', '.join(STRATEGIES)}")
    return names


def supported_strategies(template: Template) -> list[str]:
    """The strategies a template can build, in STRATEGIES order: few_shot needs examples, few_shot_cot examples
    with a rationale; zero_shot and cot need neither."""
    return [s for s in STRATEGIES
            if not (s == "few_shot" and not template.examples)
            and not (s == "few_shot_cot" and not any(e.rationale for e in template.examples))]


def strategy_notes(template: Template) -> list[str]:
    """Why a strategy is missing from supported_strategies, one line each (empty when all are supported)."""
    if not template.examples:
        return ["few_shot and few_shot_cot need examples: this template has none"]
    if not any(e.rationale for e in template.examples):
        return ["few_shot_cot needs examples with a 'rationale': this template has none"]
    return []


def fit_strategies(template: Template, asked) -> tuple[list[str], list[str]]:
    """The asked strategies this template can build, and a note for each one left out (few-shot without examples,
    few-shot CoT without rationales); asked for none it can build: an error naming why."""
    asked = check_strategies(asked)
    usable = supported_strategies(template)
    kept = [s for s in asked if s in usable]
    dropped = [s for s in asked if s not in usable]
    if not kept:
        raise TemplateError(f"template '{template.name}' cannot build {', '.join(dropped)}: "
                            f"{'; '.join(strategy_notes(template))}; use {' or '.join(usable)}")
    notes = [f"{', '.join(dropped)} left out: {'; '.join(strategy_notes(template))}"] if dropped else []
    return kept, notes


def _pick_examples(template: Template, strategy: str, k: int, seed: int, values: dict, selection: str = "random"):
    return select_examples(template, values, k, selection, seed, need_rationale=strategy == "few_shot_cot")


def check_format(name: str | None, template: Template | None = None) -> str:
    """A prompt format asked for (None: the template's, else chat), or UnknownChoiceError naming the valid ones."""
    if name in (None, ""):
        return template.format if template is not None else "chat"
    if name not in FORMATS:
        raise UnknownChoiceError(f"unknown prompt format {str(name)[:40]!r}; use one of: {', '.join(FORMATS)} (chat: the "
                                 "model's chat template; raw: plain text, as lm-eval's default prompts)")
    return name


def build_prompts(template: Template, strategies, variables: dict, *, k: int = 3, seed: int = 0,
                  choices: list[str] | None = None, selection: str = "random",
                  prompt_format: str | None = None) -> list[Prompt]:
    """One Prompt per strategy (None: those the template supports), rendered in a single round trip to the template
    sandbox. `choices` (an item's own answer choices) is what `{{ choices }}` shows for the query; demonstrations
    keep the template's choices. `selection`: how the few-shot examples are chosen (prompts.selection.SELECTIONS).
    `prompt_format`: chat or raw (None: the template's format)."""
    strategies = check_strategies(supported_strategies(template) if strategies is None else strategies)
    check_selection(selection)
    layout = {"format": check_format(prompt_format, template), "separator": template.separator,
              "answer_label": template.answer_label,
              "block_start": re.split(r"\{[{%#]", template.input, maxsplit=1)[0].strip()}
    missing = [v for v in template.variables if v not in variables]
    if missing:
        raise TemplateError(
            f"template '{template.name}': missing variable {', '.join(repr(m) for m in missing)} "
            f"(this template takes: {', '.join(template.variables)})"
        )
    values = {v: variables[v] for v in template.variables}
    chosen = {s: _pick_examples(template, s, k, seed, values, selection) if s in ("few_shot", "few_shot_cot") else [] for s in strategies}
    requests = [("instruction", values, choices), ("output_format", values, choices), ("input", values, choices)]
    example_index = {}
    for examples in chosen.values():
        for example in examples:
            if id(example) not in example_index:
                example_index[id(example)] = len(requests)
                requests.append(("input", example.inputs))
    rendered = template.render_many(requests)
    instruction, output_format, user_input = (r.strip() for r in rendered[:3])
    prompts = []
    for strategy in strategies:
        cot = strategy in ("cot", "few_shot_cot")
        reason = f'Reason step by step, then finish with "{template.answer_prefix} <answer>."' if cot else ""
        system = "\n".join(part for part in (instruction, output_format) if part)
        # no instruction and no output format: no system turn at all, so the model's own default applies (as in
        # lm-eval); CoT's reasoning line then closes the question instead
        messages = [{"role": "system", "content": f"{system}\n{reason}" if reason else system}] if system else []
        for example in chosen[strategy]:
            messages.append({"role": "user", "content": rendered[example_index[id(example)]].strip()})
            answer = example.output
            if strategy == "few_shot_cot":
                answer = f"{example.rationale.strip()} {template.answer_prefix} {example.output}."
            messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": f"{user_input}\n{reason}" if reason and not system else user_input})
        prompts.append(Prompt(strategy, messages, template.cot_trigger if strategy == "cot" else None, **layout))
    return prompts
