"""The generated arithmetic word problems: every rationale's equations are right and chained, the
answer is where ``answer_of`` finds it, values and operation counts stay in range, generation is
fixed by seed, the split does not leak, the wording varies while the vocabulary stays small."""
from __future__ import annotations

import re
import time
from collections import defaultdict

import pytest

from distill.data.arithmetic import (ANSWER_MARKER, ITEMS, NAMES, PLACES, Problem, answer_of,
                                     make_problems, split_problems)

EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")
APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
         "/": lambda a, b: a // b if b and a % b == 0 else None}
MASKS = {**{name: "NAME" for names in NAMES.values() for name in names},
         **{item: "ITEM" for item in ITEMS}, **{place: "PLACE" for place in PLACES},
         **{word: "PRO" for word in ("he", "she", "it", "him", "her", "his", "its")}}


def equations(problem: Problem) -> list[tuple[int, str, int, int]]:
    return [(int(a), op, int(b), int(c)) for a, op, b, c in EQUATION.findall(problem.rationale)]


def masked(text: str) -> str:
    """The text with numbers, names, items, places and pronouns replaced by placeholders."""
    return " ".join("N" if t.isdigit() else MASKS.get(t, t) for t in TOKEN.findall(text))


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return make_problems(1000, seed=0)


def test_equations_are_right_chained_and_end_in_the_answer(problems):
    for problem in problems:
        steps = equations(problem)
        assert len(steps) == problem.operations, problem.rationale
        start = int(re.search(r"\d+", problem.rationale).group())
        assert start == int(re.search(r"\d+", problem.question).group())
        previous = start
        for a, op, b, c in steps:
            assert a == previous and APPLY[op](a, b) == c, problem.rationale
            previous = c
        assert previous == problem.answer
        assert problem.rationale.endswith(f"{ANSWER_MARKER} {problem.answer}")
        assert answer_of(problem.rationale) == str(problem.answer)


def test_one_sentence_per_step_in_plain_lower_case_text(problems):
    for problem in problems:
        for text in (problem.question, problem.rationale):
            assert re.fullmatch(r"[a-z0-9 .,?=*/+-]+", text) and "  " not in text, text
            assert " ".join(TOKEN.findall(text)) == re.sub(r"([.,?])", r" \1", text)
        assert problem.question.endswith("?") and problem.question.count("?") == 1
        sentences = problem.rationale.split(". ")
        assert len(sentences) == problem.operations + 2
        assert all(len(EQUATION.findall(s)) == 1 for s in sentences[1:-1])


def test_operation_counts_and_values_stay_in_range(problems):
    assert {p.operations for p in problems} == {2, 3, 4}
    for problem in problems:
        numbers = [int(n) for n in re.findall(r"\d+", problem.question + problem.rationale)]
        assert all(0 <= n <= 99 for n in numbers), problem.rationale
    assert {op for p in problems for _, op, _, _ in equations(p)} == {"+", "-", "*", "/"}
    assert all(b in (2, 3, 4) for p in problems for _, op, b, _ in equations(p) if op in "*/")


def test_the_arguments_change_what_is_generated(problems):
    assert all(p.operations == 2 for p in make_problems(300, 0, max_ops=2))
    assert all(p.operations == 4 for p in make_problems(300, 0, min_ops=4))
    assert all(p.operations == 1 for p in make_problems(300, 0, min_ops=1, max_ops=1))
    small = make_problems(300, 0, max_value=20)
    values = [int(n) for p in small for n in re.findall(r"\d+", p.question + p.rationale)]
    assert max(values) == 20 and all(v >= 0 for v in values)
    assert max(p.answer for p in problems) > 20
    for problem in small:
        assert all(a <= 20 and c <= 20 for a, _, _, c in equations(problem))
    for bad in ({"min_ops": 0}, {"min_ops": 3, "max_ops": 2}, {"max_value": 1}):
        with pytest.raises(ValueError):
            make_problems(0, 0, **bad)
        with pytest.raises(ValueError):
            split_problems(5, 5, 0, **bad)


def test_the_seed_fixes_the_problems():
    assert make_problems(300, 7) == make_problems(300, 7)
    assert make_problems(300, 7)[:100] == make_problems(100, 7)
    other = make_problems(300, 8)
    assert sum(a != b for a, b in zip(make_problems(300, 7), other)) > 290


def test_the_split_is_fixed_by_seed_and_does_not_leak():
    train, test = split_problems(2000, 500, seed=3)
    assert len(train) == 2000 and len(test) == 500
    questions = [p.question for p in train + test]
    assert len(set(questions)) == len(questions)
    assert split_problems(2000, 500, seed=3) == (train, test)
    assert split_problems(2000, 500, seed=4)[1] != test
    short, _ = split_problems(300, 50, seed=3, max_ops=2)
    assert all(p.operations == 2 for p in short)
    # one step from 2 apart: repeats are common, and removed
    tiny = {"min_ops": 1, "max_ops": 1, "max_value": 2}
    assert len({p.question for p in make_problems(5000, 0, **tiny)}) < 4900
    train, test = split_problems(4000, 1000, seed=0, **tiny)
    assert len({p.question for p in train + test}) == 5000
    assert split_problems(0, 5, seed=0)[0] == [] and len(split_problems(5, 0, seed=0)[1]) == 0
    with pytest.raises(ValueError):
        split_problems(-1, 5, seed=0)


def test_the_wording_varies(problems):
    openings = {masked(p.question.split(".")[0]) for p in problems}
    assert len(openings) >= 8, openings
    phrasings = defaultdict(set)
    for problem in problems:
        for sentence in problem.rationale.split(". ")[1:-1]:
            clause, equation = sentence.split(", so ")
            phrasings[EQUATION.search(equation).group(2)].add(masked(clause))
    assert set(phrasings) == {"+", "-", "*", "/"}
    assert all(len(p) >= 8 for p in phrasings.values()), phrasings
    assert len({masked(p.question.split(". ")[-1]) for p in problems}) >= 8


def test_the_vocabulary_is_small():
    words = {w for p in make_problems(2000, 1)
             for w in re.findall(r"[a-z]+", p.question + " " + p.rationale)}
    assert 100 < len(words) < 400


def test_generation_is_fast():
    began = time.perf_counter()
    make_problems(3000, 0)
    assert time.perf_counter() - began < 1.0


@pytest.mark.parametrize("text,answer", [
    ("so 2 + 3 = 5. the answer is 5", "5"),
    ("the answer is 12.", "12"),
    ("the answer is 7 . \n", "7"),
    ("the answer is 3. no, the answer is 4", "4"),
    ("the answer is 3. the answer is", None),
    ("the answer is .", None),
    ("so 2 + 3 = 5", None),
    ("", None),
])
def test_answer_of(text, answer):
    assert answer_of(text) == answer
