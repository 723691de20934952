from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import assume, given, settings

from cotscope.metrics import MetricError, bootstrap_ci, proportion_ci, roc_auc, tpr_at_fpr
from cotscope.metrics._intervals import normal_quantile_upper


def test_normal_quantile() -> None:
    assert normal_quantile_upper(0.025) == pytest.approx(1.959963984540054, abs=1e-12)
    assert normal_quantile_upper(0.005) == pytest.approx(2.5758293035489004, abs=1e-12)
    assert normal_quantile_upper(0.5) == 0.0


def test_wilson_hand_computed() -> None:
    # Reference values of the Wilson score interval (95 %).
    assert proportion_ci(3, 10) == pytest.approx((0.3, 0.1077912674, 0.6032218525), abs=1e-9)
    assert proportion_ci(0, 10) == pytest.approx((0.0, 0.0, 0.2775327999), abs=1e-9)
    assert proportion_ci(10, 10) == pytest.approx((1.0, 0.7224672001, 1.0), abs=1e-9)
    assert proportion_ci(1, 1) == pytest.approx((1.0, 0.2065493144, 1.0), abs=1e-9)
    p, low, high = proportion_ci(50, 100, alpha=0.01)
    z = 2.5758293035489004
    half = z * np.sqrt(0.25 / 100 + z**2 / 40000) / (1 + z**2 / 100)
    assert (p, low, high) == pytest.approx((0.5, 0.5 - half, 0.5 + half))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 10**6).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))), st.floats(1e-6, 0.999))
def test_wilson_inside_unit_interval_and_contains_rate(kn: tuple[int, int], alpha: float) -> None:
    k, n = kn
    p, low, high = proportion_ci(k, n, alpha)
    assert p == k / n
    assert 0.0 <= low <= p <= high <= 1.0
    # A lower confidence level (larger alpha) gives a nested interval.
    _, low2, high2 = proportion_ci(k, n, min(0.9999, alpha * 1.5))
    assert low - 1e-12 <= low2 and high2 <= high + 1e-12


def test_wilson_errors() -> None:
    with pytest.raises(MetricError, match="n is 0"):
        proportion_ci(0, 0)
    with pytest.raises(MetricError, match="k must be <= n"):
        proportion_ci(3, 2)
    with pytest.raises(MetricError, match="k must be >= 0"):
        proportion_ci(-1, 2)
    with pytest.raises(MetricError, match="must be an int"):
        proportion_ci(1.0, 2)  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="alpha"):
        proportion_ci(1, 2, alpha=0.0)
    with pytest.raises(MetricError, match="alpha"):
        proportion_ci(1, 2, alpha=float("nan"))


def test_bootstrap_constant_data() -> None:
    assert bootstrap_ci(np.mean, np.full(7, 2.5), n_boot=50) == (2.5, 2.5, 2.5)


def test_bootstrap_mean_matches_normal_theory() -> None:
    x = np.random.default_rng(42).normal(10.0, 2.0, size=400)
    point, low, high = bootstrap_ci(np.mean, x, n_boot=2000, seed=1)
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert point == pytest.approx(x.mean())
    assert low == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)
    assert high == pytest.approx(x.mean() + 1.96 * se, abs=0.25 * se)


def test_bootstrap_is_deterministic_per_seed_and_nested_in_alpha() -> None:
    rng = np.random.default_rng(3)
    s = rng.normal(size=60)
    y = rng.random(60) < 0.4
    s[y] += 1.0
    a = bootstrap_ci(roc_auc, s, y, n_boot=300, seed=7, stratify=y)
    assert a == bootstrap_ci(roc_auc, s, y, n_boot=300, seed=7, stratify=y)
    assert a != bootstrap_ci(roc_auc, s, y, n_boot=300, seed=8, stratify=y)
    narrow = bootstrap_ci(roc_auc, s, y, n_boot=300, seed=7, alpha=0.5, stratify=y)
    assert a.low <= narrow.low <= narrow.high <= a.high
    assert a.point == roc_auc(s, y)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 25).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(-3, 3), min_size=n, max_size=n),
            st.lists(st.booleans(), min_size=n, max_size=n),
        )
    ),
    st.integers(0, 2**32 - 1),
)
def test_bootstrap_contains_point_and_keeps_strata(data: tuple[list[int], list[bool]], seed: int) -> None:
    scores, labels = np.asarray(data[0], dtype=float), np.asarray(data[1])
    assume(0 < labels.sum() < len(labels))
    counts: list[int] = []

    def auc_recording(s: np.ndarray, y: np.ndarray) -> float:
        counts.append(int(y.sum()))
        return roc_auc(s, y)

    point, low, high = bootstrap_ci(auc_recording, scores, labels, n_boot=200, seed=seed, stratify=labels)
    assert low <= point <= high
    assert set(counts) == {int(labels.sum())}  # every resample keeps the class counts
    point, low, high = bootstrap_ci(np.mean, scores, n_boot=200, seed=seed)
    assert low <= point <= high
    assert bootstrap_ci(np.mean, scores, n_boot=200, seed=seed) == (point, low, high)


def test_bootstrap_resamples_rows_together() -> None:
    # Pairs (x, 2x) stay paired, so the ratio is exactly 2 on every resample.
    x = np.arange(1.0, 20.0)
    assert bootstrap_ci(lambda a, b: float(np.mean(b / a)), x, 2 * x, n_boot=100) == (2.0, 2.0, 2.0)


def test_bootstrap_errors() -> None:
    s = np.array([0.1, 0.9, 0.4])
    y = np.array([False, True, False])
    with pytest.raises(MetricError, match=r"resample .*stratify=labels"):
        bootstrap_ci(roc_auc, s, y, n_boot=200)
    with pytest.raises(MetricError, match="at least one positive"):
        bootstrap_ci(roc_auc, s, ~np.ones(3, bool), stratify=~np.ones(3, bool))
    with pytest.raises(MetricError, match="no arrays"):
        bootstrap_ci(np.mean)
    with pytest.raises(MetricError, match="empty"):
        bootstrap_ci(np.mean, [])
    with pytest.raises(MetricError, match="same length"):
        bootstrap_ci(roc_auc, s, y[:2])
    with pytest.raises(MetricError, match="stratify has 2 rows"):
        bootstrap_ci(roc_auc, s, y, stratify=y[:2])
    with pytest.raises(MetricError, match="n_boot"):
        bootstrap_ci(np.mean, s, n_boot=0)
    with pytest.raises(MetricError, match="alpha"):
        bootstrap_ci(np.mean, s, alpha=1.0)
    with pytest.raises(MetricError, match="returned nan"):
        bootstrap_ci(lambda a: float("nan"), s)
    with pytest.raises(MetricError, match=r"fpr must be in"):
        bootstrap_ci(lambda a, b: tpr_at_fpr(a, b, 2.0), s, y, stratify=y)
