"""Detection metrics: hand-computed cases, intervals that cover the estimate, degenerate inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cotscope.metrics import MetricError, detection_metrics, fpr_key, roc_auc


def test_hand_computed_small_case() -> None:
    # Positives 0.9, 0.6, 0.4; negatives 0.5, 0.2, 0.1, 0.05.
    s = [0.9, 0.6, 0.4, 0.5, 0.2, 0.1, 0.05]
    y = [1, 1, 1, 0, 0, 0, 0]
    m = detection_metrics(s, y, n_boot=300)
    assert (m.n, m.n_pos, m.n_neg) == (7, 3, 4)
    # Pairs (pos > neg): 0.9 beats 4, 0.6 beats 4, 0.4 beats 3 -> 11 of 12.
    assert m.auroc is not None and m.auroc.point == pytest.approx(11 / 12)
    # At FPR <= 1% (or 5%) with 4 negatives no negative may be flagged: threshold = max negative = 0.5,
    # caught = positives strictly above it = 0.9 and 0.6.
    assert m.thresholds[0.01] == 0.5 and m.thresholds[0.05] == 0.5
    assert m.tpr[0.01].point == pytest.approx(2 / 3) and m.tpr[0.05].point == pytest.approx(2 / 3)
    # Flags default to score >= 0.5: 0.9, 0.6 right; 0.4 missed; 0.5 false alarm; others right -> 5/7.
    assert m.flags_from == "score>=0.5" and m.accuracy.point == pytest.approx(5 / 7)
    for iv in (m.accuracy, m.auroc, m.tpr[0.01], m.tpr[0.05]):
        assert iv.low <= iv.point <= iv.high
    d = m.to_dict()
    json.dumps(d)
    assert d["auroc"]["value"] == pytest.approx(11 / 12) and d[fpr_key(0.01)]["value"] == pytest.approx(2 / 3)
    assert d["threshold@1%fpr"] == 0.5 and fpr_key(0.05) == "tpr@5%fpr"


def test_the_monitors_flags_are_used_when_given() -> None:
    m = detection_metrics([0.9, 0.1, 0.8, 0.2], [True, False, True, False], flags=[True, True, False, False],
                          n_boot=50)
    assert m.flags_from == "flags" and m.accuracy.point == 0.5 and m.auroc is not None and m.auroc.point == 1.0


def test_a_larger_fpr_uses_the_right_order_statistic() -> None:
    # 20 negatives 0.00..0.95, 10 positives: at 5% FPR one negative may be flagged, so threshold = 2nd highest.
    neg = [i / 20 for i in range(20)]
    pos = [0.93, 0.96, 0.99, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0]
    m = detection_metrics(pos + neg, [1] * 10 + [0] * 20, n_boot=100)
    assert m.thresholds[0.05] == 0.9 and m.tpr[0.05].point == pytest.approx(0.3)
    assert m.thresholds[0.01] == 0.95 and m.tpr[0.01].point == pytest.approx(0.2)


def test_same_seed_same_intervals() -> None:
    rng = np.random.default_rng(1)
    s, y = rng.random(40), np.arange(40) % 3 == 0
    a, b = detection_metrics(s, y, n_boot=200, seed=3), detection_metrics(s, y, n_boot=200, seed=3)
    assert a == b


def test_one_class_gives_reasons_not_numbers() -> None:
    m = detection_metrics([0.9, 0.7, 0.2], [1, 1, 1])
    assert m.auroc is None and m.tpr == {} and m.n_neg == 0
    assert m.reason is not None and "no negatives" in m.reason
    assert m.accuracy.point == pytest.approx(2 / 3)
    assert detection_metrics([0.1], [0]).reason.startswith("no positives")  # type: ignore[union-attr]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"scores": [], "labels": []}, "empty"),
    ({"scores": [0.1, float("nan")], "labels": [0, 1]}, "NaN"),
    ({"scores": [0.1, 0.2], "labels": [0, 1, 1]}, "same length"),
    ({"scores": [0.1, 0.2], "labels": [0, 2]}, "0/1"),
    ({"scores": [0.1, 0.2], "labels": [0, 1], "flags": [True]}, "same length"),
    ({"scores": [0.1, 0.2], "labels": [0, 1], "fprs": (1.5,)}, "fpr"),
    ({"scores": [0.1, 0.2], "labels": [0, 1], "n_boot": 0}, "n_boot"),
])
def test_bad_inputs_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(MetricError, match=match):
        detection_metrics(**kwargs)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=2, max_size=30))
def test_interval_shape(rows: list[tuple[float, bool]]) -> None:
    s = [r[0] for r in rows]
    y = [r[1] for r in rows]
    m = detection_metrics(s, y, n_boot=50)
    assert m.accuracy.low <= m.accuracy.point <= m.accuracy.high
    if m.auroc is None:
        assert m.reason
        return
    # A percentile bootstrap interval need not contain the estimate on tiny skewed samples, so only the
    # interval's own shape is a property; coverage is checked on the hand-computed cases above.
    assert m.auroc.point == pytest.approx(roc_auc(s, y))
    assert 0.0 <= m.auroc.low <= m.auroc.high <= 1.0
    for iv in m.tpr.values():
        assert 0.0 <= iv.low <= iv.high <= 1.0 and 0.0 <= iv.point <= 1.0
    assert m.tpr[0.01].point <= m.tpr[0.05].point
