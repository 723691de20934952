from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import assume, given, settings

from cotscope.metrics import (
    MetricError,
    accuracy,
    agreement,
    cohens_kappa,
    f1_score,
    pearson,
    precision,
    recall,
)

PRED = [1, 1, 0, 0, 1]
HUMAN = [1, 0, 0, 1, 1]  # tp=2, fp=1, fn=1, tn=1


def test_hand_computed() -> None:
    assert accuracy(PRED, HUMAN) == pytest.approx(3 / 5)
    assert precision(PRED, HUMAN) == pytest.approx(2 / 3)
    assert recall(PRED, HUMAN) == pytest.approx(2 / 3)
    assert f1_score(PRED, HUMAN) == pytest.approx(2 / 3)
    # p_o = 0.6, p_e = 0.6 * 0.6 + 0.4 * 0.4 = 0.52.
    assert cohens_kappa(PRED, HUMAN) == pytest.approx((0.6 - 0.52) / 0.48)
    # phi = (tp tn - fp fn) / sqrt(3 * 2 * 3 * 2).
    assert pearson(PRED, HUMAN) == pytest.approx(1 / 6)
    assert agreement(PRED, HUMAN) == pytest.approx(
        {"accuracy": 0.6, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "kappa": 1 / 6, "pearson": 1 / 6}
    )


def test_precision_recall_are_asymmetric() -> None:
    pred, human = [True, True, True, False], [True, False, False, False]
    assert precision(pred, human) == pytest.approx(1 / 3)
    assert recall(pred, human) == 1.0


def test_pearson_continuous() -> None:
    # dx = (-1, 0, 1), dy = (-13, -1, 14) / 6: r = 4.5 / sqrt(2 * 366 / 36).
    assert pearson([1.0, 2.0, 3.0], [2.0, 4.0, 6.5]) == pytest.approx(4.5 / np.sqrt(2 * 366 / 36), abs=1e-12)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1e300, -1e300], [1.0, 0.0]) == pytest.approx(1.0)  # no overflow


labels_pairs = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n), st.lists(st.booleans(), min_size=n, max_size=n)
    )
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=40))
def test_kappa_one_for_identical_labels(labels: list[bool]) -> None:
    assume(0 < sum(labels) < len(labels))
    assert cohens_kappa(labels, labels) == 1.0
    assert pearson(labels, labels) == pytest.approx(1.0)
    assert accuracy(labels, labels) == 1.0


@settings(max_examples=80, deadline=None)
@given(labels_pairs)
def test_agreement_properties(pair: tuple[list[bool], list[bool]]) -> None:
    pred, human = pair
    out = agreement(pred, human)
    assert out["accuracy"] == pytest.approx(np.mean(np.asarray(pred) == np.asarray(human)))
    if not math.isnan(out["kappa"]):
        assert -1.0 <= out["kappa"] <= 1.0
        assert out["kappa"] == pytest.approx(cohens_kappa(human, pred))  # symmetric
    if not (math.isnan(out["precision"]) or math.isnan(out["recall"])) and out["precision"] + out["recall"] > 0:
        harmonic = 2 * out["precision"] * out["recall"] / (out["precision"] + out["recall"])
        assert out["f1"] == pytest.approx(harmonic)
    for key in ("precision", "recall", "f1", "pearson"):
        # Undefined means NaN, never a silent 0 in place of an error.
        v = out[key]
        assert math.isnan(v) or -1.0 <= v <= 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=3, max_size=30),
    st.floats(0.1, 10),
    st.floats(-5, 5),
)
def test_pearson_properties(points: list[tuple[float, float]], scale: float, shift: float) -> None:
    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    assume(np.ptp(x) > 1e-3 and np.ptp(y) > 1e-3)
    r = pearson(x, y)
    assert -1.0 <= r <= 1.0
    assert r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
    assert pearson(scale * x + shift, y) == pytest.approx(r, abs=1e-9)
    assert pearson(-x, y) == pytest.approx(-r, abs=1e-9)


def test_undefined_cases_raise_or_are_nan() -> None:
    never = [False, False, False]
    human = [True, False, False]
    with pytest.raises(MetricError, match="precision is undefined"):
        precision(never, human)
    with pytest.raises(MetricError, match="recall is undefined"):
        recall(human, never)
    with pytest.raises(MetricError, match="f1_score is undefined"):
        f1_score(never, never)
    with pytest.raises(MetricError, match="cohens_kappa is undefined"):
        cohens_kappa(never, never)
    assert cohens_kappa([True, True], [False, False]) == 0.0  # p_e = 0: defined
    with pytest.raises(MetricError, match="x is constant"):
        pearson([1, 1, 1], [1, 2, 3])
    with pytest.raises(MetricError, match="at least 2"):
        pearson([1.0], [2.0])
    out = agreement(never, human)
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["f1"] == 0.0  # defined: 2 tp / (2 tp + fp + fn) = 0 / 1
    assert math.isnan(out["precision"]) and math.isnan(out["pearson"])
    assert out["recall"] == 0.0
    assert out["kappa"] == 0.0


def test_input_errors() -> None:
    with pytest.raises(MetricError, match="pred is empty"):
        agreement([], [])
    with pytest.raises(MetricError, match="same length"):
        accuracy([1, 0], [1])
    with pytest.raises(MetricError, match="booleans or 0/1 ints"):
        agreement([0.5, 1.0], [True, False])
    with pytest.raises(MetricError, match="booleans or 0/1 ints; got None at index 1"):
        cohens_kappa([True, None], [True, False])  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="NaN at index 1"):
        pearson([1.0, float("nan")], [1.0, 2.0])
