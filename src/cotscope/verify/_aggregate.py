"""Aggregation of a solution's step scores into one solution score."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

from cotscope.errors import ConfigError, DataError

__all__ = ["RULES", "Rule", "aggregate"]

#: How step scores become a solution score: the weakest step, the average, the final step, or all steps right.
Rule = Literal["min", "mean", "last", "product"]
#: Every rule, in a fixed order.
RULES: tuple[Rule, ...] = get_args(Rule)


def aggregate(step_scores: Sequence[float], rule: Rule) -> float:
    """One score for a solution from the scores of its steps.

    ``min`` and ``mean`` are URSA's two (``return_score`` of ``inference/prm_infer_score.py``, ``'min'`` and
    ``'avg'``); ``last`` is the final step's score and ``product`` the product of all, the probability that every
    step is right if the scores were independent. A solution without scored steps gets 0.0, as in URSA.

    Args:
        step_scores: per-step probabilities that the step is correct, each in [0, 1].
        rule: ``min``, ``mean``, ``last`` or ``product``.

    Returns:
        The solution's score in [0, 1].

    Raises:
        ConfigError: an unknown rule.
        DataError: a score outside [0, 1] or NaN (the message names the rule and the step).
    """
    if rule not in RULES:
        raise ConfigError(f"unknown aggregation rule {rule!r}; choose one of {', '.join(RULES)}")
    scores = [float(x) for x in step_scores]
    for i, x in enumerate(scores):
        if not 0.0 <= x <= 1.0:  # also false for NaN
            raise DataError(f"aggregate(rule={rule!r}): step {i} has score {x!r}, outside [0, 1]")
    if not scores:
        return 0.0
    if rule == "min":
        return min(scores)
    if rule == "mean":
        return math.fsum(scores) / len(scores)
    if rule == "last":
        return scores[-1]
    return math.prod(scores)
