"""Aggregation of step scores: hand-computed values, URSA's empty case, and the errors."""

from __future__ import annotations

import math

import pytest

from cotscope.errors import ConfigError, DataError
from cotscope.verify._aggregate import RULES, aggregate


def test_rules() -> None:
    assert RULES == ("min", "mean", "last", "product")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("min", 0.25), ("mean", (0.9 + 0.25 + 0.5) / 3), ("last", 0.5), ("product", 0.9 * 0.25 * 0.5)],
)
def test_hand_computed(rule: str, expected: float) -> None:
    assert aggregate([0.9, 0.25, 0.5], rule) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("rule", RULES)
def test_one_step_is_its_score(rule: str) -> None:
    assert aggregate([0.7], rule) == pytest.approx(0.7)


@pytest.mark.parametrize("rule", RULES)
def test_empty_is_zero_as_ursa(rule: str) -> None:
    assert aggregate([], rule) == 0.0


def test_bounds_inclusive_and_tuples() -> None:
    assert aggregate((0.0, 1.0), "mean") == 0.5
    assert aggregate((1.0, 1.0), "product") == 1.0


@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan, math.inf])
def test_out_of_range_names_the_rule(bad: float) -> None:
    with pytest.raises(DataError, match=r"rule='min'.*step 1"):
        aggregate([0.5, bad], "min")


def test_unknown_rule() -> None:
    with pytest.raises(ConfigError, match="avg"):
        aggregate([0.5], "avg")
