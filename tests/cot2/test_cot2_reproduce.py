"""The reproduction driver's table rendering."""

from __future__ import annotations

from cotscope.cot2._reproduce import render_tables


def test_render_tables_marks_matching_pass_at_k() -> None:
    pk = {str(k): min(1.0, 0.5 + 0.05 * k) for k in range(1, 17)}
    results = {
        "mnns_csft_L2_d24_s0": {"test_accuracy": 0.71},
        "mnns_discrete_L2_d24_s0": {"test_accuracy": 0.55, "pass_at_k": pk},
        "mnns_csft_B2_L2_d24_s0": {"test_accuracy": 0.6},
        "grpo_mts_k3_geometric_from_x_s0": {
            "init_greedy_accuracy": 0.5, "init_test_accuracy": 0.4, "test_accuracy": 0.6, "greedy_accuracy": 0.55,
            "continuous_accuracy": 0.5, "init_continuous_accuracy": 0.45, "mts_ratio": "geometric"},
        "grpo_mts_k3_geometric_from_x_s1": {
            "init_greedy_accuracy": 0.5, "init_test_accuracy": 0.4, "test_accuracy": 0.8, "greedy_accuracy": 0.55,
            "continuous_accuracy": 0.5, "init_continuous_accuracy": 0.45, "mts_ratio": "geometric"},
    }
    text = render_tables(results)
    assert "| 2 | 24 | 1 | 71.0 | 55.0 | 55.0 |" in text
    assert text.splitlines()[2].endswith("| 5 |")  # pass@5 = 0.75 is the first >= 0.71
    assert "| 24 | - | 60.0 | - | - | 71.0 |" in text
    # GRPO seeds are grouped: mean before -> mean after (each seed's after).
    assert ("| grpo_mts_k3_geometric | geometric | x | 2 | 40.0 -> 70.0 (60.0, 80.0) | 50.0 -> 55.0 (55.0, 55.0) "
            "| 45.0 -> 50.0 (50.0, 50.0) |") in text
