"""The papers' exact CoT2 definitions (issue 10, items 2 and 3), each pinned by a hand-computed value.

Sources: Gozeten et al. 2025 (arXiv 2505.23648) and the official code, github.com/alperengozeten/CoT2:
``train/continuous_train_grpo_mts.py`` (``rollout_grpo_batch``), ``train/continuous_train_grpo_dirichlet.py``
(``rollout_grpo_batch``) and ``train/continuous_train.py`` (``FourDigitsSoftDataset``,
``train_soft_steps_batch``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cotscope.cot2 import (
    CoT2Model,
    GRPOConfig,
    MNNSConfig,
    MNNSTask,
    ModelConfig,
    MTSRatio,
    TaskConfig,
    TrainConfig,
    run_grpo,
    train,
)
from cotscope.cot2._sampling import (
    dirichlet_log_prob,
    mts_log_prob,
    official_dirichlet_concentration,
    official_dirichlet_support,
    rollout_log_probs,
    sample_rollouts,
)

# p_old = (0.5, 0.25, 0.25), p_new = (0.2, 0.6, 0.2), K = 3 tokens drawn: (0, 1, 1).
P_OLD = torch.tensor([0.5, 0.25, 0.25])
P_NEW = torch.tensor([0.2, 0.6, 0.2])
ACTS = torch.tensor([0, 1, 1])


def _ratio(form: str) -> float:
    lp_new = mts_log_prob(P_NEW.log(), ACTS, form)  # type: ignore[arg-type]
    lp_old = mts_log_prob(P_OLD.log(), ACTS, form)  # type: ignore[arg-type]
    return float(torch.exp(lp_new - lp_old))


def test_mts_geometric_ratio_is_the_papers_geometric_mean() -> None:
    # Per-token ratios 0.2/0.5 = 0.4, 0.6/0.25 = 2.4, 2.4: product 2.304, geometric mean 2.304^(1/3).
    assert _ratio("geometric") == pytest.approx(1.3207709, rel=1e-6)
    # The old cotscope ratio (the full product) is its K-th power.
    assert _ratio("geometric") ** 3 == pytest.approx(2.304, rel=1e-5)


def test_mts_official_ratio_is_the_product_under_softmax_over_k() -> None:
    # Tokens from softmax(z / 3) = p^(1/3) / S with S = sum_i p_i^(1/3):
    # S_old = 0.5^(1/3) + 2 * 0.25^(1/3) = 2.0536216, S_new = 2 * 0.2^(1/3) + 0.6^(1/3) = 2.0130398.
    # Product of the three tempered ratios = (0.4 * 2.4 * 2.4)^(1/3) * (S_old / S_new)^3 = 1.4022701.
    assert _ratio("official") == pytest.approx(1.4022701, rel=1e-6)


def test_mts_ratio_forms_equal_one_for_k1_discrete_ratio() -> None:
    # K = 1: both forms are the plain discrete-token ratio 0.6 / 0.25.
    one = torch.tensor([1])
    forms: tuple[MTSRatio, ...] = ("geometric", "official")
    for form in forms:
        r = torch.exp(mts_log_prob(P_NEW.log(), one, form) - mts_log_prob(P_OLD.log(), one, form))
        assert float(r) == pytest.approx(2.4, rel=1e-6)


def _peaked_model() -> CoT2Model:
    torch.manual_seed(0)
    m = CoT2Model(ModelConfig(layers=1, heads=2, dim=16), vocab_size=6, max_len=4).eval()
    with torch.no_grad():
        m.tok.weight.mul_(60.0)  # far from uniform logits, so the temperature matters
    return m


def test_mts_official_samples_from_softmax_over_k_and_geometric_from_softmax() -> None:
    m = _peaked_model()
    prompts = torch.zeros(20000, 2, dtype=torch.long)
    z = m.forward_mixed(prompts[:1], torch.zeros(1, 0, 6))[0, -1].float()
    for form, temp in (("geometric", 1.0), ("official", 3.0)):
        ro = sample_rollouts(m, prompts, 1, "mts", k=3, generator=torch.Generator().manual_seed(0),
                             mts_ratio=form)  # type: ignore[arg-type]
        assert ro.actions is not None
        freq = torch.bincount(ro.actions[:, 0].reshape(-1), minlength=6).float() / ro.actions[:, 0].numel()
        assert torch.allclose(freq, torch.softmax(z / temp, -1), atol=0.01)


def test_official_dirichlet_support_clamp_and_density() -> None:
    # p = (0.7, 0.2995, 0.0005): the support is the first two tokens (p >= 1e-3); parameter = p / 0.9995.
    logits = torch.tensor([0.7, 0.2995, 0.0005]).log()
    sup = official_dirichlet_support(logits)
    assert sup.tolist() == [True, True, False]
    conc = official_dirichlet_concentration(logits, sup)
    assert conc.tolist() == pytest.approx([0.7 / 0.9995, 0.2995 / 0.9995, 0.0], rel=1e-5)
    # Density of (0.6, 0.4) on that face: a Beta(a, b) density, a = 0.7 / 0.9995, b = 0.2995 / 0.9995.
    a, b = 0.7 / 0.9995, 0.2995 / 0.9995
    expect = (a - 1) * math.log(0.6) + (b - 1) * math.log(0.4) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    log_alpha = torch.tensor([0.6, 0.4, 1e-9]).log()  # the off-support coordinate is ignored
    assert float(dirichlet_log_prob(logits, log_alpha, 20.0, sup)) == pytest.approx(expect, rel=1e-5)
    # A newer policy with p < 1e-3 on the (fixed) support is clamped up to 1e-3, then renormalised.
    new = torch.tensor([0.9995, 0.0004, 0.0001]).log()
    assert official_dirichlet_concentration(new, sup).tolist() == pytest.approx(
        [0.9995 / 1.0005, 0.001 / 1.0005, 0.0], rel=1e-5
    )


def test_official_dirichlet_rollouts_live_on_the_support() -> None:
    m = _peaked_model()
    ro = sample_rollouts(m, torch.zeros(64, 2, dtype=torch.long), 2, "dirichlet",
                         generator=torch.Generator().manual_seed(0), dirichlet="official")
    assert ro.support is not None and ro.log_fed is not None
    assert bool((ro.fed[~ro.support] == 0).all())
    assert torch.allclose(ro.fed.sum(-1), torch.ones(64, 2), atol=1e-5)
    # log alpha-hat is -inf off the support; the policy gradient must still be finite.
    lp, _ = rollout_log_probs(m, ro, "dirichlet")
    lp.sum().backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in m.parameters() if p.grad is not None)


def test_mnns_layout_m4_is_three_steps_then_the_answer() -> None:
    task = MNNSTask(MNNSConfig(num_digits=4, digit_min=1, digit_max=4))
    data = task.build(np.array([[1, 2, 3, 4]]))
    v = task.vocab
    assert task.num_steps == data.num_steps == 3  # m - 1 continuous steps; the answer is step m = 4
    # Optimal totals are 0 (+1-2-3+4 and -1+2+3-4); the first in +/- order gives the trace 1, -1, -4.
    assert v.decode(data.traces[0].tolist()) == ["s+1", "s-1", "s-4"]
    assert v.decode([int(data.answers[0])]) == ["s+0"]
    dist = data.target_dists(None, len(v))[0]
    # Step 3 holds the 8 prefixes +-1 +-2 +-3 = 6, 0, 2, -4, 4, -2, 0, -6: 0 twice -> 2/8.
    assert float(dist[2, v.id("s+0")]) == pytest.approx(0.25)
    assert float(dist[2, v.id("s+6")]) == pytest.approx(0.125)
    assert float(dist[0, v.id("s+1")]) == float(dist[0, v.id("s-1")]) == 0.5


def test_grpo_results_record_ratio_form_and_start_from_csft(tmp_path: Path) -> None:
    cfg = TrainConfig(task=TaskConfig(name="mnns", mnns=MNNSConfig(num_digits=3, digit_max=4)),
                      model=ModelConfig(layers=1, heads=2, dim=16), epochs=1, batch_size=32, device="cpu")
    train(cfg, tmp_path / "csft")
    m = run_grpo(tmp_path / "csft", GRPOConfig(steps=1, group_size=2, prompts_per_step=2, device="cpu"))
    assert m["mts_ratio"] == "geometric" and "geometric mean" in m["policy_ratio"]
    assert m["init_method"] == "csft"
    o = run_grpo(tmp_path / "csft", GRPOConfig(steps=1, group_size=2, prompts_per_step=2, device="cpu",
                                               mts_ratio="official"))
    assert o["mts_ratio"] == "official" and "softmax(z/K)" in o["policy_ratio"]
    d = run_grpo(tmp_path / "csft", GRPOConfig(sampling="dirichlet", dirichlet="official", steps=1,
                                               group_size=2, prompts_per_step=2, device="cpu"))
    assert d["dirichlet"] == "official" and "p >= 1e-3" in d["policy_ratio"]
