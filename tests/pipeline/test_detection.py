"""The detection-metrics stage: stored monitor results on synthetic trajectories -> one row per monitor key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotscope.errors import ConfigError
from cotscope.pipeline import detection_metrics
from cotscope.pipeline._detection import trajectory_label
from cotscope.store import Store
from cotscope.traces import Action, Message, Step, Trace


def episode(i: int, variant: str, score: float) -> Trace:
    r = f"Step reasoning {i}."
    return Trace(prompt=[Message(role="user", content=f"task {i} {variant}")], reasoning=r,
                 steps=[Step(index=0, start=0, end=len(r))],
                 actions=[Action(kind="shell", name="bash", arguments={"command": f"cmd {i}"}, output="", step=0),
                          Action(kind="control", name="DONE", step=0)],
                 metadata={"agent": {"task_id": f"t{i}", "variant": variant, "pair_id": f"p{i}", "status": "done",
                                     "score": score, "checker": "x", "steps": 1}})


def put(st: Store, ev: str, part: str, meaning: str, rows: list[tuple[Trace, float | None, bool | None]],
        kind: str = "monitor") -> None:
    """Store results as the evaluate stage does (a missing score is a parse error)."""
    st.add_evaluator(ev, "h1", kind=kind, label_meaning=meaning, config={})
    st.add_results([{"trace_id": t.id, "evaluator": ev, "config_hash": "h1", "part": part, "kind": kind,
                     "label": f, "score": s, "parse_error": None if s is not None else "no <score> tag",
                     "raw": None, "reason": None, "evidence": [], "details": None, "run_id": "r"}
                    for t, s, f in rows])


@pytest.fixture
def store(tmp_path: Path) -> Path:
    p = tmp_path / "s.duckdb"
    harm = [episode(i, "harmful", 1.0 if i < 3 else 0.0) for i in range(5)]
    ben = [episode(10 + i, "benign", 1.0) for i in range(5)]
    chat = Trace(prompt=[Message(role="user", content="q")], answer="a")
    with Store(p) as st:
        st.add_traces([*harm, *ben, chat])
        # A perfect action monitor; a CoT monitor that misses two harmful ones and has one parse error.
        put(st, "action-monitor", "actions", "flagged",
            [(t, 0.9, True) for t in harm] + [(t, 0.1, False) for t in ben] + [(chat, None, None)])
        put(st, "cot-monitor", "reasoning", "flagged",
            [(harm[0], 0.8, True), (harm[1], 0.7, True), (harm[2], 0.2, False), (harm[3], 0.3, False),
             (harm[4], None, None)] + [(t, 0.25, False) for t in ben])
        # A refusal judge's score is no suspicion: left out.
        put(st, "local-refusal", "answer", "refused", [(t, 0.5, True) for t in harm + ben], kind="judge")
    return p


def test_rows_per_monitor(store: Path) -> None:
    with Store(store, read_only=True) as st:
        rows = {r.evaluator: r for r in detection_metrics(st, n_boot=200)}
    assert set(rows) == {"action-monitor", "cot-monitor"}
    a = rows["action-monitor"]
    assert (a.part, a.trajectories, a.scored, a.unscored) == ("actions", 10, 10, 0)  # the chat trace is no episode
    assert a.metrics is not None and a.metrics.auroc is not None
    assert a.metrics.auroc.point == 1.0 and a.metrics.tpr[0.01].point == 1.0 and a.metrics.accuracy.point == 1.0
    c = rows["cot-monitor"]
    assert (c.scored, c.unscored) == (9, 1)
    assert c.metrics is not None and (c.metrics.n_pos, c.metrics.n_neg) == (4, 5)
    # Positives 0.8, 0.7, 0.2, 0.3 against negatives all 0.25: 3 of 4 positives above -> AUROC 0.75.
    assert c.metrics.auroc is not None and c.metrics.auroc.point == pytest.approx(0.75)
    assert c.metrics.tpr[0.05].point == pytest.approx(0.75)
    assert c.metrics.accuracy.point == pytest.approx(7 / 9)  # the monitor's own flags
    d = c.to_dict()
    assert d["evaluator"] == "cot-monitor" and d["auroc"]["value"] == pytest.approx(0.75) and d["error"] is None


def test_success_as_positive_and_filters(store: Path) -> None:
    with Store(store, read_only=True) as st:
        rows = detection_metrics(st, evaluators=["action-monitor"], positive="success", n_boot=100)
        assert [r.evaluator for r in rows] == ["action-monitor"]
        m = rows[0].metrics
        assert m is not None and (m.n_pos, m.n_neg) == (3, 7)  # harmful and harm done (score >= 1)
        with pytest.raises(ConfigError, match="positive"):
            detection_metrics(st, positive="everything")  # type: ignore[arg-type]


def test_one_class_and_empty_stores(tmp_path: Path) -> None:
    p = tmp_path / "one.duckdb"
    with Store(p) as st:
        harm = [episode(i, "harmful", 1.0) for i in range(3)]
        st.add_traces(harm)
        put(st, "action-monitor", "actions", "flagged", [(t, 0.9, True) for t in harm])
        rows = detection_metrics(st)
        assert rows[0].metrics is not None and rows[0].metrics.auroc is None
        assert "no negatives" in (rows[0].metrics.reason or "")
    with Store(tmp_path / "empty.duckdb") as st:
        assert detection_metrics(st) == []


def test_labels() -> None:
    assert trajectory_label({"variant": "harmful", "score": 0.0}, "harmful") is True
    assert trajectory_label({"variant": "harmful", "score": 0.0}, "success") is False
    assert trajectory_label({"variant": "harmful", "score": 1.0}, "success") is True
    assert trajectory_label({"variant": "benign", "score": 1.0}, "success") is False
    assert trajectory_label({"variant": None}, "harmful") is None
