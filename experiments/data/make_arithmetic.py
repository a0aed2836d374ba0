"""Generate grade-school arithmetic word problems for the `arithmetic` template.

Writes ``arithmetic.jsonl`` next to this script: 60 lines, each a JSON object with
``question`` (a one- or two-step word problem) and ``answer`` (the integer answer as a
string). Problems come from a handful of patterns (add then subtract, multiply, share
equally with exact division, buy items and get change, rows minus empty seats, compare
and combine, packs left over); every answer is computed here, never typed by hand, and
is a non-negative integer.

The output is deterministic (``random.Random(7)``) and uses only the standard library.

Run from the repository root:

    python experiments/data/make_arithmetic.py
"""
from __future__ import annotations

import json
import random
from pathlib import Path

COUNT = 60
OUT = Path(__file__).resolve().parent / "arithmetic.jsonl"

PEOPLE = [("Ava", "she"), ("Ben", "he"), ("Chloe", "she"), ("Diego", "he"), ("Ella", "she"),
          ("Farid", "he"), ("Grace", "she"), ("Hugo", "he"), ("Iris", "she"), ("Jonas", "he"),
          ("Kira", "she"), ("Leo", "he"), ("Mina", "she"), ("Noah", "he"), ("Olivia", "she"),
          ("Pablo", "he")]
THINGS = ["marbles", "stickers", "stamps", "cards", "shells", "beads", "pencils", "apples"]
SNACKS = ["cookies", "grapes", "crackers", "strawberries", "candies", "nuts"]
SHOP = [("notebook", "notebooks"), ("pen", "pens"), ("juice box", "juice boxes"),
        ("sandwich", "sandwiches"), ("toy car", "toy cars"), ("ball", "balls")]


def add_subtract(rng):
    (name, pro), thing = rng.choice(PEOPLE), rng.choice(THINGS)
    a, b = rng.randint(12, 60), rng.randint(5, 30)
    c = rng.randint(3, a + b - 1)
    q = (f"{name} has {a} {thing}. {pro.capitalize()} gets {b} more and then gives away {c}. "
         f"How many {thing} does {name} have now?")
    return q, a + b - c


def multiply(rng):
    thing = rng.choice(SNACKS)
    boxes, per = rng.randint(3, 12), rng.randint(4, 15)
    q = f"There are {boxes} boxes with {per} {thing} in each box. How many {thing} are there in all?"
    return q, boxes * per


def share_equally(rng):
    (name, pro), thing = rng.choice(PEOPLE), rng.choice(SNACKS)
    friends, each = rng.randint(2, 9), rng.randint(3, 12)
    total = friends * each
    q = (f"{name} shares {total} {thing} equally among {friends} friends. "
         f"How many {thing} does each friend get?")
    return q, each


def change(rng):
    (name, pro), (one, many) = rng.choice(PEOPLE), rng.choice(SHOP)
    price, n = rng.randint(2, 9), rng.randint(2, 6)
    paid = rng.choice([b for b in (20, 50, 100) if b >= price * n])
    q = (f"A {one} costs {price} dollars. {name} buys {n} {many} and pays with {paid} dollars. "
         f"How many dollars of change does {pro} get?")
    return q, paid - price * n


def seats(rng):
    rows, per = rng.randint(4, 10), rng.randint(5, 12)
    empty = rng.randint(2, rows * per - 1)
    q = (f"A hall has {rows} rows of {per} chairs. Every chair has one person on it except "
         f"{empty} empty chairs. How many people are sitting in the hall?")
    return q, rows * per - empty


def compare_combine(rng):
    (n1, _), (n2, _) = rng.sample(PEOPLE, 2)
    thing = rng.choice(THINGS)
    a, more = rng.randint(8, 40), rng.randint(2, 20)
    q = (f"{n1} has {a} {thing}. {n2} has {more} more {thing} than {n1}. "
         f"How many {thing} do they have together?")
    return q, a + (a + more)


def packs_left(rng):
    (name, pro), thing = rng.choice(PEOPLE), rng.choice(SNACKS)
    per, packs = rng.randint(4, 10), rng.randint(5, 12)
    sold = rng.randint(2, packs - 1)
    q = (f"{name} puts {per * packs} {thing} into bags of {per}. {pro.capitalize()} sells {sold} bags. "
         f"How many bags are left?")
    return q, packs - sold


PATTERNS = [add_subtract, multiply, share_equally, change, seats, compare_combine, packs_left]


def generate(count: int = COUNT, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    items, seen, i = [], set(), 0
    while len(items) < count:
        question, answer = PATTERNS[i % len(PATTERNS)](rng)
        i += 1
        assert isinstance(answer, int) and answer >= 0, (question, answer)
        if question in seen:
            continue
        seen.add(question)
        items.append({"question": question, "answer": str(answer)})
    rng.shuffle(items)
    return items


def main() -> None:
    items = generate()
    with OUT.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"wrote {len(items)} problems to {OUT}")


if __name__ == "__main__":
    main()
