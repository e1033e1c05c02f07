"""Arithmetic word problems: an embedded, procedurally generated set of short multi-step stories
with a step-by-step rationale, for distilling step by step (rationales as a second target, QCRD)
into small seq2seq transformers trained from scratch.

Each problem is a story about one quantity of one kind of item (apples, marbles, coins, books, ...)
held by a person (sixteen names, he / she), a shop, or a container (box, bag, basket, jar,
bucket); a second person of the other gender takes part in some sentences. The story states a start
amount and then ``min_ops``..``max_ops`` operations (default 2..4), each drawn from the kinds that
keep every value in ``[1, max_value]`` (default 99): add (buys / finds / is given ... more),
subtract (gives away / loses / sells / eats ...), multiply by 2..4 (doubles / triples / k times as
many) and exact division by 2..4 (keeps half / a third / splits into k equal piles and keeps one).
Openings, every operation and the closing question each have several phrasings. The rationale
restates the start, gives one sentence with one equation per operation ("he buys 3 more, so
5 + 3 = 8.") and ends with the words "the answer is N".

Text is lower case with "." "," "?" as the only punctuation and digits for numbers, so the regex
``[a-z]+|\\d+|[^\\sa-z\\d]`` tokenizes it; the vocabulary stays at a few hundred words. Everything
is generated offline from a seed (no global random state): the same seed gives the same problems,
and ``split_problems`` fixes a train/test split by seed with no question in both parts.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from itertools import count as forever, islice
from typing import Iterator

from distill.task_kinds.generation import answer_after

ANSWER_MARKER = "the answer is"
NAMES = {"he": ("tom", "sam", "ben", "max", "leo", "jack", "dan", "finn"),
         "she": ("mia", "ann", "lily", "emma", "zoe", "kate", "eva", "nina")}
PRONOUNS = {"he": ("he", "him", "his"), "she": ("she", "her", "her"), "it": ("it", "it", "its")}
# item -> extra ways a person can lose some of them
ITEMS = {"apples": ["{s} eats {k}"], "cookies": ["{s} eats {k}"], "oranges": ["{s} eats {k}"],
         "candies": ["{s} eats {k}"], "beads": ["{s} uses {k} for a necklace"],
         "marbles": ["{s} loses {k} in a game"], "coins": ["{s} spends {k}"],
         "stickers": ["{s} uses {k}"], "stamps": ["{s} uses {k}"], "pencils": ["{s} breaks {k}"],
         "crayons": ["{s} breaks {k}"], "books": ["{s} lends {k} to {other}"], "cards": [],
         "shells": [], "buttons": [], "flowers": ["{s} gives {k} to {other}"],
         "balloons": ["{k} of them pop"]}
PLACES = ("box", "bag", "basket", "jar", "bucket")
SYMBOLS = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/"}
FACTORS = (2, 3, 4)

# story kind -> opening sentences; {n} is the start amount
OPENINGS = {
    "person": ["{name} has {n} {item}.", "{name} starts with {n} {item}.",
               "{name} owns {n} {item}.", "{name} has a bag with {n} {item}.",
               "{name} keeps {n} {item} in a box.",
               "{name} and {other} play with {item}. {name} has {n} of them.",
               "{name} collects {item} and has {n} of them."],
    "shop": ["a shop has {n} {item}.", "a small shop has {n} {item} for sale.",
             "there are {n} {item} for sale in a shop."],
    "place": ["there are {n} {item} in a {place}.", "a {place} holds {n} {item}.",
              "{other} puts {n} {item} in a {place}."],
}
# story kind -> operation -> (phrasing, the only operand it fits or None)
PHRASES: dict[str, dict[str, list[tuple[str, int | None]]]] = {
    "person": {
        "add": [("{s} buys {k} more", None), ("{s} finds {k} more", None),
                ("{s} gets {k} more", None), ("{s} is given {k} more", None),
                ("{other} gives {o} {k} more", None), ("{s} wins {k} more {item} in a game", None)],
        "subtract": [("{s} gives away {k}", None), ("{s} loses {k}", None), ("{s} sells {k}", None),
                     ("{s} gives {k} to {other}", None), ("{other} takes {k} of them", None)],
        "multiply": [("{s} doubles {p} {item}", 2), ("{s} triples {p} {item}", 3),
                     ("{s} now has {k} times as many", None),
                     ("{s} ends up with {k} times as many {item}", None),
                     ("{s} now has {k} boxes that each hold that many", None)],
        "divide": [("{s} keeps half of them", 2), ("{s} gives away half", 2),
                   ("{s} keeps a third of them", 3), ("{s} keeps a quarter of them", 4),
                   ("{s} shares them equally with {other} and keeps one share", 2),
                   ("{s} shares them equally among {k} friends and keeps one share", None),
                   ("{s} splits them into {k} equal piles and keeps one pile", None)],
    },
    "shop": {
        "add": [("{s} buys {k} more", None), ("{s} gets a delivery of {k} more", None),
                ("{other} brings {k} more to the shop", None), ("{s} orders {k} more", None)],
        "subtract": [("{s} sells {k}", None), ("a customer buys {k}", None),
                     ("{other} buys {k} of them", None), ("{s} throws away {k}", None)],
        "multiply": [("{s} doubles {p} stock", 2), ("{s} triples {p} stock", 3),
                     ("{s} now has {k} times as many", None)],
        "divide": [("{s} sells half of them", 2), ("{s} keeps half of them", 2),
                   ("{s} keeps a third and sends the rest to another shop", 3),
                   ("{s} splits them into {k} equal boxes and keeps one box", None)],
    },
    "place": {
        "add": [("someone puts in {k} more", None), ("{other} puts in {k} more", None),
                ("{other} adds {k} more {item}", None)],
        "subtract": [("{other} takes out {k}", None), ("{other} removes {k} {item}", None),
                     ("someone takes {k} away", None)],
        "multiply": [("the number of {item} doubles", 2), ("the number of {item} triples", 3),
                     ("{other} makes it {k} times as many", None),
                     ("{s} now holds {k} times as many", None)],
        "divide": [("{other} takes away half", 2), ("only a third of them stay", 3),
                   ("{other} splits them into {k} equal piles and leaves one in the {place}",
                    None)],
    },
}
# story kind -> closing questions; the second list only follows a subtraction or division
QUESTIONS = {
    "person": (["how many {item} does {name} have now?", "how many {item} does {name} end up with?",
                "how many {item} does {name} have at the end?",
                "what is the number of {item} {name} has now?"],
               ["how many {item} are left?", "how many {item} does {name} have left?"]),
    "shop": (["how many {item} does the shop have now?", "how many {item} are in the shop now?",
              "how many {item} does the shop end up with?"],
             ["how many {item} are left in the shop?"]),
    "place": (["how many {item} are in the {place} now?", "how many {item} are there now?",
               "how many {item} does the {place} hold in the end?"],
              ["how many {item} are left in the {place}?"]),
}
STARTS = {"person": "{name} starts with {n} {item}.", "shop": "the shop starts with {n} {item}.",
          "place": "there are {n} {item} in the {place} at first."}


@dataclass(frozen=True)
class Problem:
    """One word problem: the question, its step-by-step rationale, the answer and the number of
    operations (equations in the rationale)."""
    question: str
    rationale: str
    answer: int
    operations: int


def answer_of(text: str) -> str | None:
    """The text after the last ``ANSWER_MARKER``, without trailing punctuation or white space;
    None when the marker is absent or nothing follows it."""
    return answer_after(text, ANSWER_MARKER)


def _operands(kind: str, value: int, max_value: int) -> list[int]:
    """The operands of one operation that keep the result in [1, max_value] (sums and differences
    of at least 2 where there is room)."""
    if kind in ("add", "subtract"):
        high = min(max_value - value, max(2, max_value // 2)) if kind == "add" else value - 1
        return list(range(min(2, high), high + 1)) if high > 0 else []
    if kind == "multiply":
        return [f for f in FACTORS if value * f <= max_value]
    return [f for f in FACTORS if value % f == 0]


def _problem(rng: random.Random, min_ops: int, max_ops: int, max_value: int) -> Problem:
    """One story drawn from ``rng``."""
    story = rng.choice(("person", "person", "person", "shop", "place"))
    gender = rng.choice(("he", "she"))
    item = rng.choice(list(ITEMS))
    value = rng.randint(2, max_value)
    fields = {"name": rng.choice(NAMES[gender]), "item": item, "place": rng.choice(PLACES),
              "n": value, "other": rng.choice(NAMES["she" if gender == "he" else "he"])}
    subject, (pronoun, fields["o"], fields["p"]) = {
        "person": (fields["name"], PRONOUNS[gender]), "shop": ("the shop", PRONOUNS["it"]),
        "place": ("the " + fields["place"], PRONOUNS["it"])}[story]
    question = [rng.choice(OPENINGS[story]).format(**fields)]
    rationale = [STARTS[story].format(**fields)]
    kind, operations = "add", rng.randint(min_ops, max_ops)
    for _ in range(operations):
        choices = {k: _operands(k, value, max_value) for k in SYMBOLS}
        kind = rng.choice([k for k, operands in choices.items() if operands])
        phrases = PHRASES[story][kind]
        if story == "person" and kind == "subtract":
            phrases = phrases + [(extra, None) for extra in ITEMS[item]]
        phrase, fixed = rng.choice([p for p in phrases if p[1] in choices[kind] or p[1] is None])
        operand = fixed or rng.choice(choices[kind])
        result = {"add": value + operand, "subtract": value - operand,
                  "multiply": value * operand, "divide": value // operand}[kind]
        clause = phrase.format(**fields, k=operand, s=subject if rng.random() < 0.25 else pronoun)
        question.append(clause + ".")
        rationale.append(f"{clause}, so {value} {SYMBOLS[kind]} {operand} = {result}.")
        value = result
    plain, after_loss = QUESTIONS[story]
    question.append(rng.choice(plain + after_loss * (kind in ("subtract", "divide")))
                    .format(**fields))
    rationale.append(f"{ANSWER_MARKER} {value}")
    return Problem(" ".join(question), " ".join(rationale), value, operations)


EQUATION = re.compile(r"\d+ [-+*/] \d+ = \d+")


def equations(rationale: str) -> str:
    """The rationale's equations alone, then its answer: ``"5 + 3 = 8. 8 - 2 = 6. the answer is
    6"`` (the equation annotations of GSM8K-style sets)."""
    steps = EQUATION.findall(rationale)
    return " ".join(f"{step}." for step in steps) + f" {ANSWER_MARKER} {answer_of(rationale)}"


def expression(rationale: str) -> str:
    """The rationale's steps as one expression, the label of the problem's ``predict:`` task as
    in the step-by-step authors' SVAMP: ``"5 + 3 = 8. 8 - 2 = 6"`` -> ``"(5 + 3) - 2"``."""
    steps = [step.split() for step in EQUATION.findall(rationale)]
    expr = steps[0][0]
    for k, (_, op, operand, _, _) in enumerate(steps):
        expr = f"{expr} {op} {operand}" if k == len(steps) - 1 else f"({expr} {op} {operand})"
    return expr


def _stream(seed: int, min_ops: int = 2, max_ops: int = 4,
            max_value: int = 99) -> Iterator[Problem]:
    """Problems drawn one after another from ``seed``, without end (the arguments checked now)."""
    if not 1 <= min_ops <= max_ops:
        raise ValueError(f"need 1 <= min_ops <= max_ops, got {min_ops} and {max_ops}")
    if max_value < 2:
        raise ValueError(f"max_value must be at least 2, got {max_value}")
    rng = random.Random(seed)
    return (_problem(rng, min_ops, max_ops, max_value) for _ in forever())


def make_problems(count: int, seed: int, min_ops: int = 2, max_ops: int = 4,
                  max_value: int = 99) -> list[Problem]:
    """``count`` problems drawn from ``seed`` (the same seed gives the same problems; a longer list
    starts with the shorter one). Duplicates are possible; ``split_problems`` removes them."""
    return list(islice(_stream(seed, min_ops, max_ops, max_value), count))


def split_problems(train_size: int, test_size: int, seed: int,
                   **kwargs) -> tuple[list[Problem], list[Problem]]:
    """A train and a test list fixed by ``seed``, with no question twice in either or in both.
    ``kwargs`` are ``make_problems``'s; ValueError when they allow too few distinct questions."""
    if train_size < 0 or test_size < 0:
        raise ValueError(f"sizes must not be negative, got {train_size} and {test_size}")
    wanted, unique = train_size + test_size, {}
    for problem in islice(_stream(seed, **kwargs), 10 * wanted + 1000):
        if len(unique) == wanted:
            break
        unique.setdefault(problem.question, problem)
    if len(unique) < wanted:
        raise ValueError(f"found only {len(unique)} distinct questions, {wanted} wanted")
    problems = list(unique.values())
    return problems[:train_size], problems[train_size:]
