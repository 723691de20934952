from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from cotscope.metrics import MetricError, both_safe_at_k, both_safe_rate, safe_at_k


def test_safe_at_k_hand_computed() -> None:
    groups = {
        "a": [True, True, True, True],  # all safe
        "b": [True, True, False, False],  # exactly half: consistent-safe for even K
        "c": [True, False, False, False],
    }
    out = safe_at_k(groups)
    assert out == pytest.approx({"safe@1": (1 + 0.5 + 0.25) / 3, "safe@k": 1 / 3, "conssafe@k": 2 / 3})


def test_conssafe_uses_ceil_for_odd_k() -> None:
    # K = 3: 2 safe passes (>= 1.5), 1 safe fails.
    out = safe_at_k({"x": [True, True, False], "y": [True, False, False]})
    assert out["conssafe@k"] == 0.5
    assert out["safe@k"] == 0.0
    assert out["safe@1"] == pytest.approx(0.5)


def test_accepts_zero_one_ints() -> None:
    assert safe_at_k({1: [1, 0], 2: [1, 1]}) == safe_at_k({1: [True, False], 2: [True, True]})


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 6).flatmap(lambda k: st.lists(st.lists(st.booleans(), min_size=k, max_size=k), min_size=1)))
def test_bounds(rows: list[list[bool]]) -> None:
    out = safe_at_k(dict(enumerate(rows)))
    assert out["safe@k"] <= out["conssafe@k"]
    assert out["safe@k"] <= out["safe@1"] + 1e-12
    assert all(0.0 <= v <= 1.0 for v in out.values())
    if len(rows[0]) == 1:
        assert out["safe@1"] == pytest.approx(out["safe@k"]) == pytest.approx(out["conssafe@k"])


def test_errors() -> None:
    with pytest.raises(MetricError, match="groups is empty"):
        safe_at_k({})
    with pytest.raises(MetricError, match="'g' is empty"):
        safe_at_k({"g": []})
    with pytest.raises(MetricError, match="same number of samples"):
        safe_at_k({"a": [True], "b": [True, False]})
    with pytest.raises(MetricError, match="booleans or 0/1"):
        safe_at_k({"a": [True, 2]})
    with pytest.raises(MetricError, match="booleans or 0/1"):
        safe_at_k({"a": [1.0, 0.0]})


def test_both_safe() -> None:
    pairs = [(True, True), (True, False), (False, True), (True, True)]
    assert both_safe_rate(pairs) == 0.5
    out = both_safe_at_k({"p1": [(True, True), (True, True)], "p2": [(True, False), (True, True)]})
    assert out == {"safe@1": 0.75, "safe@k": 0.5, "conssafe@k": 1.0}
    with pytest.raises(MetricError, match="empty"):
        both_safe_rate([])
    with pytest.raises(MetricError, match="pairs"):
        both_safe_rate([(True,), (True,)])  # type: ignore[list-item]
    with pytest.raises(MetricError, match="answer_safe"):
        both_safe_rate([(True, None)])  # type: ignore[list-item]
    with pytest.raises(MetricError, match="same number of samples"):
        both_safe_at_k({"a": [(True, True)], "b": [(True, True), (True, True)]})
