"""What the proposer model is asked, and how its reply becomes a candidate instruction (or is refused, with why).

The proposer sees the task, the instruction it improves on (as the scored model read it, Jinja already rendered),
that instruction's dev score and some dev items it got wrong, and is asked for one new instruction. Its reply is
cleaned of the preambles and quotes small models add; a reply that is no instruction, repeats a candidate, or
holds template syntax (it would run as Jinja) is refused and logged with the reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from prompt_lab.prompts.strategies import Prompt

MAX_CHARS = 600  # one instruction, not an essay: longer replies are cut at a sentence end
MAX_INPUT_CHARS = 240  # each failure's input, as shown to the proposer
PROPOSER_SYSTEM = ("You improve the instruction that tells an assistant how to do a task. Read the task, the current "
                   "instruction and inputs it got wrong, then write one new instruction that would get more of them "
                   "right. Reply with the new instruction only: one to three sentences, no preamble, no list.")
_LABEL = re.compile(r"^\W*(?:here(?:'s| is)\b[^:]*|output|answer|response|(?:the\s+)?(?:new|improved|better|revised|"
                    r"updated)?\s*(?:instruction|prompt)(?:\s+\w+){0,2})\s*:\s*", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'“])")
MAX_SENTENCES = 3
_TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#")
_WORD = re.compile(r"[^\W\d_]{2,}")
_ECHO = re.compile(r"correct answer:|it answered:|practice inputs right|current instruction:|inputs it got wrong",
                   re.I)  # the request's own scaffolding, copied back by a small model


@dataclass(frozen=True)
class Failure:
    """A dev item the parent got wrong: its inputs, the gold answer and what the model answered."""
    inputs: dict
    expected: str
    answered: str | None


def _shorten(text: str, size: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= size else flat[:size - 1].rstrip() + "…"


def proposal_prompt(task: str, instruction: str, score: float, dev_n: int, failures: list[Failure],
                    choices: list[str] | None = None) -> Prompt:
    """The chat the proposer answers: the task, the current instruction and score, and its failures."""
    lines = [f"Task: {_shorten(task, 400)}"]
    if choices:
        lines.append(f"Allowed answers: {', '.join(choices)}")
    lines += [f'Current instruction: "{_shorten(instruction, MAX_CHARS)}"',
              f"It gets {score:.0%} of {dev_n} practice inputs right."]
    if failures:
        lines.append("Inputs it got wrong:")
        for f in failures:
            shown = "; ".join(f"{k}: {_shorten(v, MAX_INPUT_CHARS)}" for k, v in f.inputs.items())
            lines.append(f"- {shown} | correct answer: {f.expected} | it answered: {f.answered or '(no answer)'}")
    lines.append("Write the new instruction.")
    return Prompt("proposal", [{"role": "system", "content": PROPOSER_SYSTEM},
                               {"role": "user", "content": "\n".join(lines)}])


def normalized(text: str) -> str:
    """The form in which two instructions count as the same (case, spacing and end punctuation ignored)."""
    return " ".join(text.casefold().split()).rstrip(".!")


def clean_proposal(reply: str, taken: list[str]) -> tuple[str, str | None]:
    """(instruction, None) from the proposer's reply, or (what it said, the reason it is refused). `taken`: the
    instructions already candidates in this search (a repeat is refused)."""
    lines = [line.strip() for line in reply.strip().splitlines()]
    while lines and (not lines[0] or (lines[0].endswith(":") and len(lines[0]) <= 80)):
        lines.pop(0)  # "Here is a better instruction:" on a line of its own
    paragraph: list[str] = []
    for line in lines:
        if not line:
            if paragraph:
                break
            continue
        paragraph.append(line.lstrip("-*• ").strip())
    text = _LABEL.sub("", " ".join(paragraph)).strip().strip("\"'`“”‘’").strip()
    text = " ".join(_SENTENCE_END.split(text)[:MAX_SENTENCES])  # asked for one to three sentences
    if len(text) > MAX_CHARS:
        cut = max(text.rfind(end, 0, MAX_CHARS) for end in (". ", "! ", "? "))
        text = text[:cut + 1] if cut > MAX_CHARS // 3 else text[:MAX_CHARS].rstrip() + "…"
    if len(_WORD.findall(text)) < 3:
        return text, "not an instruction: fewer than three words"
    if _ECHO.search(text):
        return text, "copies the request back instead of writing an instruction"
    if _TEMPLATE_SYNTAX.search(text):
        return text, "holds template syntax ({{, {% or {#), which the template would run as Jinja"
    same = [i for i, t in enumerate(taken) if normalized(t) == normalized(text)]
    if same:
        return text, "repeats an instruction already tried" if same[0] else "repeats the original instruction"
    return text, None
