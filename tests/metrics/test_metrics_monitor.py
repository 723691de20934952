from __future__ import annotations

import itertools

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from cotscope.metrics import (
    MetricError,
    audit_threshold,
    catch_rate,
    roc_auc,
    roc_curve,
    threshold_at_fpr,
    tpr_at_fpr,
)


@st.composite
def scored_labels(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Scores with plenty of ties, and labels holding both classes."""
    n = draw(st.integers(2, 30))
    labels = draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < len(v)))
    # A small integer grid, rescaled, so ties are common but scores are not always ints.
    grid = draw(st.lists(st.integers(-4, 4), min_size=n, max_size=n))
    scale = draw(st.sampled_from([1.0, 0.37, 1e3]))
    return np.asarray(grid, dtype=float) * scale, np.asarray(labels)


def brute_auc(s: np.ndarray, y: np.ndarray) -> float:
    pairs = list(itertools.product(s[y], s[~y]))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_roc_auc_hand_computed() -> None:
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert roc_auc([1, 2, 3], [False, True, True]) == 1.0
    assert roc_auc([3, 2, 1], [False, True, True]) == 0.0
    # Positive 2 ties one negative: 1/2 credit for that pair, 1 for the other.
    assert roc_auc([1, 2, 2], [0, 0, 1]) == 0.75
    assert roc_auc([5, 5, 5, 5], [0, 1, 0, 1]) == 0.5


@settings(max_examples=100, deadline=None)
@given(scored_labels())
def test_roc_auc_equals_pairwise_probability(data: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = data
    assert roc_auc(s, y) == pytest.approx(brute_auc(s, y), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(scored_labels(), st.sampled_from(["exp", "affine", "cube", "tanh"]))
def test_roc_auc_invariant_to_monotone_transforms(data: tuple[np.ndarray, np.ndarray], kind: str) -> None:
    s, y = data
    z = s / 1e3  # keep exp finite and tanh away from saturation (saturation would merge scores)
    transformed = {
        "exp": np.exp(z),
        "affine": 3.0 * s - 7.0,
        "cube": s**3,
        "tanh": np.tanh(z),
    }[kind]
    assert roc_auc(transformed, y) == pytest.approx(roc_auc(s, y), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(scored_labels())
def test_roc_auc_of_negated_scores(data: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = data
    assert roc_auc(-s, y) == pytest.approx(1.0 - roc_auc(s, y), abs=1e-12)


def test_roc_curve_hand_computed() -> None:
    fpr, tpr, thr = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    np.testing.assert_array_equal(thr, [0.8, 0.4, 0.35, 0.1, -np.inf])
    np.testing.assert_array_equal(fpr, [0.0, 0.0, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 0.5, 0.5, 1.0, 1.0])


def test_roc_curve_keeps_ties_together() -> None:
    fpr, tpr, thr = roc_curve([2, 2, 1], [1, 0, 0])
    np.testing.assert_array_equal(thr, [2, 1, -np.inf])
    np.testing.assert_array_equal(fpr, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 1.0, 1.0])


@settings(max_examples=60, deadline=None)
@given(scored_labels())
def test_roc_curve_matches_strict_rule_and_auc(data: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = data
    curve = roc_curve(s, y)
    assert np.all(np.diff(curve.thresholds) < 0)
    for f, t, thr in zip(curve.fpr, curve.tpr, curve.thresholds, strict=True):
        assert f == np.mean(s[~y] > thr)
        assert t == np.mean(s[y] > thr)
    assert (curve.fpr[0], curve.tpr[0], curve.fpr[-1], curve.tpr[-1]) == (0, 0, 1, 1)
    area = float(np.sum(np.diff(curve.fpr) * (curve.tpr[1:] + curve.tpr[:-1]) / 2))
    assert area == pytest.approx(roc_auc(s, y), abs=1e-12)


def test_tpr_at_fpr_hand_computed() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    labels = [1, 0, 1, 1, 0, 1, 0, 0]
    assert tpr_at_fpr(scores, labels, 0.0) == 0.25  # only the 0.9 positive is above the top negative
    assert threshold_at_fpr(scores, labels, 0.0) == 0.8
    assert tpr_at_fpr(scores, labels, 0.25) == 0.75  # one negative (0.8) allowed
    assert tpr_at_fpr(scores, labels, 0.49) == 0.75
    assert tpr_at_fpr(scores, labels, 0.5) == 1.0
    assert tpr_at_fpr(scores, labels, 1.0) == 1.0
    assert threshold_at_fpr(scores, labels, 1.0) == -np.inf


def test_tpr_at_fpr_with_tied_negative_is_conservative() -> None:
    # The positive ties a negative: catching it would also catch that negative.
    assert tpr_at_fpr([1.0, 1.0, 0.0], [1, 0, 0], 0.0) == 0.0
    assert tpr_at_fpr([1.0, 1.0, 0.0], [1, 0, 0], 0.5) == 1.0


@settings(max_examples=100, deadline=None)
@given(scored_labels(), st.floats(0, 1), st.floats(0, 1))
def test_tpr_at_fpr_is_monotone_and_respects_fpr(data: tuple[np.ndarray, np.ndarray], f1: float, f2: float) -> None:
    s, y = data
    lo, hi = min(f1, f2), max(f1, f2)
    assert tpr_at_fpr(s, y, lo) <= tpr_at_fpr(s, y, hi)
    thr = threshold_at_fpr(s, y, lo)
    assert np.mean(s[~y] > thr) <= lo
    assert tpr_at_fpr(s, y, lo) == np.mean(s[y] > thr)
    # Optimal: no candidate threshold with admissible FPR reaches a higher TPR.
    for cand in np.append(np.unique(s), -np.inf):
        if np.mean(s[~y] > cand) <= lo:
            assert np.mean(s[y] > cand) <= tpr_at_fpr(s, y, lo)


def test_audit_threshold_and_catch_rate() -> None:
    honest = [0.0, 1.0, 2.0, 3.0, 4.0]
    # 100 - 10 = 90th percentile, linear: position 0.9 * 4 = 3.6 -> 3.6.
    assert audit_threshold(honest, 10) == pytest.approx(3.6)
    assert audit_threshold(honest, 0) == 4.0
    assert audit_threshold(honest, 100) == 0.0
    assert audit_threshold(honest, 50) == 2.0
    # Strict >: an attack scoring exactly the threshold is not caught.
    assert catch_rate([2.0, 2.0, 3.0, 5.0], 2.0) == 0.5
    assert catch_rate([1.0], -np.inf) == 1.0
    assert catch_rate([1.0], np.inf) == 0.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.floats(0, 100))
def test_audit_threshold_is_numpy_percentile(honest: list[float], budget: float) -> None:
    assert audit_threshold(honest, budget) == np.percentile(honest, 100 - budget)


def test_errors_one_class_empty_nan() -> None:
    with pytest.raises(MetricError, match="at least one positive and one negative label; got 0 positives"):
        roc_auc([0.1, 0.2], [False, False])
    with pytest.raises(MetricError, match="got 2 positives and 0 negatives"):
        roc_curve([0.1, 0.2], [1, 1])
    with pytest.raises(MetricError, match="at least one positive"):
        tpr_at_fpr([0.1, 0.2], [0, 0], 0.1)
    with pytest.raises(MetricError, match="scores is empty"):
        roc_auc([], [])
    with pytest.raises(MetricError, match="NaN at index 2"):
        roc_auc([0.1, 0.2, float("nan")], [0, 1, 0])
    with pytest.raises(MetricError, match="infinite value at index 0"):
        roc_curve([float("-inf"), 0.2], [0, 1])
    with pytest.raises(MetricError, match="same length"):
        roc_auc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(MetricError, match=r"got 2 at index 1"):
        roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(MetricError, match="booleans or 0/1 ints"):
        roc_auc([0.1, 0.2], [0.0, 1.0])
    with pytest.raises(MetricError, match="booleans or 0/1 ints"):
        roc_auc([0.1, 0.2], ["no", "yes"])
    with pytest.raises(MetricError, match="real numbers"):
        roc_auc(["0.1", "0.2"], [0, 1])
    with pytest.raises(MetricError, match="fpr must be in"):
        tpr_at_fpr([0.1, 0.2], [0, 1], 1.5)
    with pytest.raises(MetricError, match="fpr must be in"):
        tpr_at_fpr([0.1, 0.2], [0, 1], float("nan"))
    with pytest.raises(MetricError, match="honest_scores is empty"):
        audit_threshold([], 1.0)
    with pytest.raises(MetricError, match="NaN at index 1"):
        audit_threshold([0.0, float("nan")], 1.0)
    with pytest.raises(MetricError, match="budget_percent"):
        audit_threshold([0.0, 1.0], 101)
    with pytest.raises(MetricError, match="attack_scores is empty"):
        catch_rate([], 0.5)
    with pytest.raises(MetricError, match="threshold"):
        catch_rate([1.0], float("nan"))
    with pytest.raises(MetricError, match="1-D"):
        roc_auc([[0.1, 0.2]], [[0, 1]])
