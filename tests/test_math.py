"""Answer extraction, equivalence through math-verify, grading and the majority vote."""

import pytest

from cope.tasks.math import equivalent, extract_answer, grade, last_boxed, majority_vote


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $\\boxed{42}$.", "42"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("nested \\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("braceless \\boxed 7 here", "7"),
        ("\\fbox{x+1}", "x+1"),
        ("good \\boxed{3} then broken \\boxed{4", "3"),
        ("no box", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "text, fallback, expected",
    [
        ("Therefore, the final answer is: $\\boxed{18}$. I hope it is correct.", False, "18"),
        ("The final answer is 1,234.", False, "1234"),
        ("The final answer is: $x^2$", False, "x^2"),
        ("blah\n#### 72", False, "72"),
        ("She makes 18 dollars, then spends 3.", True, "3"),
        ("She makes 18 dollars, then spends 3.", False, None),
        ("", True, None),
        ("so she pays 7, and keeps 3, then", True, "3"),
        ("It costs 1,250, in total", True, "1250"),
        ("Therefore, the final answer is: $\\boxed{answer}$.", False, None),
        ("The final answer is: answer", False, None),
        ("no numbers at all", True, None),
    ],
)
def test_extract_answer(text, fallback, expected):
    assert extract_answer(text, last_number_fallback=fallback) == expected


@pytest.mark.parametrize(
    "a, b",
    [
        ("\\frac{1}{2}", "0.5"),
        ("1/2", "\\frac12"),
        ("\\dfrac{3}{4}", "0.75"),
        ("18", "18.00"),
        ("\\$18", "18"),
        ("18 \\text{ dollars}", "18"),
        ("90^\\circ", "90"),
        ("864 \\mbox{ inches}^2", "864"),
        ("10,\\!080", "10080"),
        ("(1,2]", "(1, 2]"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
        ("x=3", "3"),
        ("2x+1", "1+2x"),
    ],
)
def test_equivalent(a, b):
    assert equivalent(a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("\\frac{1}{3}", "0.33"),
        ("[1,2)", "(1,2]"),
        ("17", "18"),
        ("x+1", "x-1"),
        (None, "1"),
        ("1", None),
    ],
)
def test_not_equivalent(a, b):
    assert not equivalent(a, b)


def test_grade_is_a_function_of_response_and_gold():
    assert grade("Adding gives $\\boxed{\\frac{14}{3}}$.", "\\frac{14}{3}")
    assert grade("Therefore, the final answer is: $\\boxed{4.6}$", "\\frac{14}{3}") is False
    assert grade("The final answer is 0.5", "\\frac{1}{2}")
    assert not grade("I cannot solve this.", "3")


def test_majority_vote_groups_equivalent_forms():
    vote = majority_vote(["1/2", "0.5", "\\frac{1}{2}", "3", None, "3", "0.50", None])
    assert vote.answer == "1/2"
    assert vote.confidence == 4 / 8  # abstentions stay in the denominator
    assert vote.support == [0, 1, 2, 6]


def test_majority_vote_tie_goes_to_the_group_seen_first_without_rng():
    vote = majority_vote(["5", "7", "7", "5"])
    assert vote.answer == "5"
    assert vote.confidence == 0.5 and vote.tied == 2
    assert vote.support == [0, 3]


def test_majority_vote_tie_drawn_with_rng():
    import random

    winners = {majority_vote(["5", "7", "7", "5"], random.Random(seed)).answer for seed in range(20)}
    assert winners == {"5", "7"}


def test_majority_vote_all_abstain():
    vote = majority_vote([None, None, None])
    assert vote.answer is None
    assert vote.confidence == 0.0
    assert vote.support == []


@pytest.mark.parametrize("answer, gold", [
    ("18", "0"), ("18", "18.0"), ("007", "7"), ("-0", "0"), ("0.1234567", "0.1234568"),
    ("3", ".5"), ("100", "1000"), ("12", "-12"), ("0.33", "0.333333"), ("5", "5.00001"),
    ("5", "5.0001"), ("2.5", "5/2"), ("1000", "1,000"),
])
def test_plain_numbers_are_graded_as_math_verify_grades_them(answer, gold):
    """Plain numbers far apart skip math-verify's parse; the vote must not change."""
    from math_verify import verify

    from cope.tasks.math import _parsed

    expected = bool(verify(list(_parsed(gold)), list(_parsed(answer))))
    assert equivalent(answer, gold) == (expected or answer == gold)
