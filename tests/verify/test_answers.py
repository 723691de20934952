"""Answer extraction and checking: every equivalence has a test, and so has a near miss that must not match."""

from __future__ import annotations

import pytest

from cotscope.verify._answers import answers_match, extract_answer, normalize_answer
from cotscope.verify._ursa_data import ursa_mathvista

# ------------------------------------------------------------------------------------------- extract_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step 1: 2 + 2 = 4\n\n†Answer: 4", "4"),  # URSA's dagger; its "Answer:" label dropped
        ("x\n†Answer: C\n", "C"),
        ("a † b † Answer: 12 cm", "12 cm"),  # the last dagger
        ("We add them. Therefore, the total is 9", "the total is 9"),
        ("So, it is 3. Thus, 4", "4"),  # the last keyword
        ("answer: 5 and more", "5 and more"),
        ("Also, the sides are equal. Hence 7", "Also, the sides are equal. Hence 7"),  # "also," is not "so,"
        ("We get $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),  # no marker: the last \boxed{}
        ("just a sentence", "just a sentence"),  # nothing found: the whole text
        ("[UNUSED_TOKEN_145]†Answer: B[UNUSED_TOKEN_145]", "B"),
        ("", ""),
    ],
)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


# ------------------------------------------------------------------------------------------- answers_match

EQUIVALENT = [
    ("42", "42"),
    (" 42 ", "42"),  # whitespace
    ("42.", "42"),  # a trailing full stop
    ("Answer: 5", "5"),  # labels
    ("The answer is 5", "5"),
    ("'blue'", "blue"),  # quotes
    ("**B**", "B"),  # markdown
    ("The answer is **42**.", "42"),
    ("`7`", "7"),
    ("Yes.", "YES"),  # case
    ("\\boxed{7}", "7"),  # wrappers
    ("$7$", "7"),
    ("$\\boxed{7}$", "7"),
    ("\\(5\\)", "5"),
    ("\\text{blue}", "Blue"),
    ("\\left(3\\right)", "3"),
    ("42.0", "42"),  # numbers
    ("3.50", "3.5"),
    ("-3", "−3"),  # Unicode minus
    ("1.5e3", "1500"),
    ("1,000", "1000"),  # thousands separators
    ("1,234,567.5", "1234567.5"),
    ("$5", "5"),  # currency
    ("0.5", "1/2"),  # fractions
    ("2/4", "0.5"),
    ("\\frac{1}{2}", "0.5"),
    ("\\dfrac{3}{4}", "0.75"),
    ("\\tfrac12", "0.5"),
    ("-\\frac{1}{2}", "-0.5"),
    ("\\frac{-1}{2}", "-0.5"),
    ("0.333333333", "1/3"),  # relative tolerance 1e-6
    ("1.2000001", "1.2"),
    ("1.23", "1.2"),  # rounded to the gold's decimals
    ("1.25", "1.3"),  # half up
    ("50%", "50"),  # percent
    ("50\\%", "0.5"),
    ("6 cm", "6"),  # units
    ("1000g", "1000"),
    ("145°", "145"),
    ("145^\\circ", "145°"),
    ("145^{\\circ}", "145"),
    ("5 m/s", "5"),
    ("0.40 \\mathrm{~kg}", "0.4"),
    ("12 cm^2", "12"),
    ("8 apples", "8"),
    ("two", "2"),  # number words
    ("x = 5", "5"),  # a variable named before the value
    ("$x=5$", "5"),
    ("d_1 = 3 cm", "3"),
    ("(A)", "A"),  # choice letters
    ("A.", "a"),
    ("A)", "A"),
    ("Option A", "A"),
    ("(C) 145°", "C"),
]

NOT_EQUIVALENT = [
    ("42", "43"),
    ("", "5"),  # an empty prediction never matches
    ("", ""),
    ("yes", "no"),
    ("**B**", "C"),
    ("**42**", "4.2"),
    ("blue", "blues"),
    ("42.", "4.2"),
    ("Answer: 5", "6"),
    ("\\boxed{7}", "8"),
    ("$7$", "77"),
    ("\\text{blue}", "red"),
    ("-3", "3"),
    ("1.5e3", "150"),
    ("1,000", "100"),
    ("1,2", "12"),  # not a thousands separator
    ("0.5", "1/3"),
    ("\\frac{1}{2}", "0.6"),
    ("\\frac{x}{2}", "0.5"),  # not a number
    ("0.1", "0.10001"),  # outside 1e-6 and the gold has 5 decimals
    ("1.26", "1.2"),  # rounds to 1.3
    ("1.24", "1.3"),
    ("3.4", "3"),  # an integer gold is not rounded to
    ("2.5", "3"),
    ("12", "1.2"),
    ("50%", "5"),
    ("6 cm", "7"),
    ("145°", "135"),
    ("2 or 3", "2"),  # not a unit
    ("ten", "1"),
    ("x = 5", "6"),
    ("(A)", "B"),
    ("A.", "b"),
    ("Option A", "C"),
    ("a square", "A"),  # a word, not a letter
    ("1/0", "0"),
]


@pytest.mark.parametrize(("predicted", "gold"), EQUIVALENT)
def test_equivalent(predicted: str, gold: str) -> None:
    assert answers_match(predicted, gold)


@pytest.mark.parametrize(("predicted", "gold"), NOT_EQUIVALENT)
def test_not_equivalent(predicted: str, gold: str) -> None:
    assert not answers_match(predicted, gold)


ANGLES = ["135°", "140°", "145°", "150°"]


@pytest.mark.parametrize("predicted", ["C", "(C)", "C.", "c", "Option C", "C. 145°", "(C) 145°", "145°", "145"])
def test_choice_letter_or_text_names_the_gold(predicted: str) -> None:
    assert answers_match(predicted, "145°", choices=ANGLES)
    assert answers_match(predicted, "C", choices=ANGLES)  # a gold given as a letter


@pytest.mark.parametrize("predicted", ["B", "(B)", "D.", "140°", "E", "(E)", "a square"])
def test_choice_other_option_does_not_match(predicted: str) -> None:
    assert not answers_match(predicted, "145°", choices=ANGLES)


def test_choices_that_are_letters() -> None:
    letters = ["A", "B", "C", "D", "E"]
    assert answers_match("E", "E", choices=letters)
    assert answers_match("(E)", "E", choices=letters)
    assert not answers_match("A", "E", choices=letters)


def test_choices_that_are_numbers() -> None:
    numbers = ["15", "13", "11", "8"]
    assert answers_match("D", "8", choices=numbers)
    assert answers_match("8", "8", choices=numbers)  # the text, not letter "h"
    assert not answers_match("A", "8", choices=numbers)
    assert not answers_match("13", "8", choices=numbers)


def test_choice_text_with_a_letter_inside() -> None:
    samples = ["neither; the samples have the same temperature", "sample A", "sample B"]
    assert answers_match("B", "sample A", choices=samples)
    assert not answers_match("A", "sample A", choices=samples)
    assert not answers_match("C", "sample A", choices=samples)


# ---------------------------------------------------------------------------------------- normalize_answer


def test_normalize_answer_keys() -> None:
    assert {normalize_answer(x) for x in ["1,000", "1000.0", "\\boxed{1000}", "$1000$", "1000 g"]} == {"1000"}
    assert normalize_answer("1/2") == normalize_answer("0.5") == normalize_answer("\\frac{1}{2}") == "0.5"
    assert normalize_answer("(A)") == normalize_answer("A.") == "a"
    assert normalize_answer("  Blue ") == "blue"
    assert normalize_answer("2") != normalize_answer("3")
    assert normalize_answer("145°", choices=ANGLES) == normalize_answer("C", choices=ANGLES) == "c"
    assert normalize_answer("146°", choices=ANGLES) == "146"


def test_same_key_means_match() -> None:
    answers = ["1,000", "1000.0", "0.5", "1/2", "(A)", "a", "Blue", "x = 3", "3", "50%", "50"]
    for a in answers:
        for b in answers:
            if normalize_answer(a) == normalize_answer(b):
                assert answers_match(a, b), (a, b)


# ------------------------------------------------------------------------------------------- MathVista rows

# Rows where URSA's `match` verdict disagrees with cotscope and the response shows `match` is wrong:
WRONG_MATCH = {
    "64": "answers B = 'sample A', the gold; match says wrong",
    "79": "the response is cut off before any answer; match says right",
    "688": "answers C = '6-10', the gold is E = '0-5'; match says right",
}


def test_mathvista_agreement_with_ursa() -> None:
    items = ursa_mathvista()
    disagree = {
        it.pid
        for it in items
        if answers_match(extract_answer(it.response), it.answer, choices=it.choices) != it.correct
    }
    assert disagree == set(WRONG_MATCH)
    assert len(items) - len(disagree) == 197


def test_mathvista_extraction_is_ursas() -> None:
    for it in ursa_mathvista():
        if "†" in it.response:
            assert extract_answer(it.response) == it.extraction.removeprefix("Answer:").strip(), it.pid
