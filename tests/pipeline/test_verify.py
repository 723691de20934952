"""PRM step scores through the evaluate stage, then best-of-N from the store: hand-computed cases, resume, errors."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cotscope.errors import ConfigError, DataError
from cotscope.pipeline import evaluate
from cotscope.pipeline._verify import (
    PRM_KIND,
    PRM_PART,
    as_prm_evaluator,
    best_of_n_from_store,
    prm_input_of,
    resolve_prm_key,
)
from cotscope.store import Store
from cotscope.traces import Message, Trace
from cotscope.verify._prm import PRMError, PRMInput, get_prm

_spec = importlib.util.spec_from_file_location("prm_fixtures",
                                               Path(__file__).parents[1] / "verify" / "prm_fixtures.py")
assert _spec is not None and _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


class ScriptedPRM:
    """Step score 0.1 for a step saying BAD, 0.4 for MEH, else 0.9; a question saying ERR cannot be scored, one
    saying FLAKY fails as a backend would until ``flaky`` is cleared."""

    name = "scripted"
    preferred_batch = 3

    def __init__(self, version: int = 1) -> None:
        self.version = version
        self.flaky = True
        self.seen: list[PRMInput] = []

    def config(self) -> dict[str, Any]:
        return {"prm": self.name, "version": self.version}

    async def score(self, items: Sequence[PRMInput]) -> list[list[float] | str]:
        self.seen.extend(items)
        out: list[list[float] | str] = []
        for it in items:
            if "ERR" in it.question:
                out.append(PRMError("cannot read this one"))
            elif "FLAKY" in it.question and self.flaky:
                out.append(PRMError("backend error: timeout", transient=True))
            else:
                out.append([0.1 if "BAD" in s else 0.4 if "MEH" in s else 0.9 for s in it.steps])
        return out

    async def aclose(self) -> None:
        return None


def sol(*steps: str, answer: str) -> str:
    return "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1)) + f"\n†Answer: {answer}"


#: group -> (question, gold or None, [solution texts])
GROUPS: dict[str, tuple[str, str | None, list[str]]] = {
    # PRM picks the right one; majority ties and takes the first (wrong).
    "A": ("What is 2 + 3?", "5", [sol("2 + 3 = 4 BAD", answer="4"), sol("2 + 3 = 5", answer="5")]),
    # PRM is fooled: the wrong one scores high.
    "B": ("What is 3 + 4?", "7", [sol("3 + 4 = 8", answer="8"), sol("3 + 4 = 7 BAD", answer="7")]),
    # min picks the wrong one (0.4 > 0.1), mean the right one (0.633 > 0.4).
    "C": ("What is 1 + 2?", "3", [sol("start", "go on", "1 + 2 = 3 BAD", answer="3"),
                                  sol("MEH 1 + 2", "MEH = 4", answer="4")]),
}


def make_store(path: Path, extra: bool = False) -> Store:
    st = Store(path)
    traces = []
    groups = dict(GROUPS)
    if extra:
        groups["D"] = ("ERR: what is 1 + 1?", "2", [sol("1 + 1 = 2", answer="2"), sol("1 + 1 = 3", answer="3")])
        groups["E"] = ("What is 2 * 2?", None, [sol("2 * 2 = 4", answer="4"), sol("2 * 2 = 5", answer="5")])
    for g, (q, gold, sols) in groups.items():
        for i, text in enumerate(sols):
            traces.append(Trace(prompt=[Message(role="user", content=q)], answer=text, model="m", group_id=g,
                                sample_index=i, metadata={"answer": gold} if gold is not None else {}))
    st.add_traces(traces)
    return st


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def rows_by(rep: Any) -> dict[tuple[int, str], float]:
    return {(r.n, r.method): r.accuracy for r in rep.rows}


def test_prm_input_of_a_trace() -> None:
    t = Trace(prompt=[Message(role="user", content="What is 2 + 3?")], answer=sol("2 + 3 = 5", "so 5", answer="5"),
              metadata={"image": "images/1.jpg"})
    item = prm_input_of(t)
    assert item == PRMInput("What is 2 + 3?", ["2 + 3 = 5", "so 5"], "5", "images/1.jpg")
    free = Trace(prompt=[Message(role="user", content="q")], reasoning="First this.\n\nThen that.", answer="42")
    item = prm_input_of(free)
    assert item.steps[-1] == "42" and item.answer == "42" and item.image is None  # the answer part is a step


def test_evaluator_stores_step_scores_and_every_aggregate(tmp_path: Path) -> None:
    st = make_store(tmp_path / "s.duckdb")
    prm = ScriptedPRM()
    stats = run(evaluate(st, as_prm_evaluator(prm, rule="mean")))
    assert (stats.total, stats.stored, stats.parse_errors, stats.errors, stats.no_label) == (6, 6, 0, 0, 6)
    res = {r["trace_id"]: r for r in st.results("scripted")}
    assert {r["kind"] for r in res.values()} == {PRM_KIND} and {r["part"] for r in res.values()} == {PRM_PART}
    c0 = next(r for r in res.values() if r["details"]["steps"][0] == "start")
    d = c0["details"]
    assert d["step_scores"] == [0.9, 0.9, 0.1] and d["rule"] == "mean" and d["answer"] == "3"
    assert d["steps"] == ["start", "go on", "1 + 2 = 3 BAD"]
    assert d["aggregates"]["min"] == pytest.approx(0.1) and d["aggregates"]["last"] == pytest.approx(0.1)
    assert d["aggregates"]["mean"] == pytest.approx(1.9 / 3) and d["aggregates"]["product"] == pytest.approx(0.081)
    assert c0["score"] == pytest.approx(1.9 / 3) and c0["label"] is None
    assert {e["kind"] for e in st.evaluators()} == {PRM_KIND}
    st.close()


def test_resume_skips_scored_traces_and_the_rule_is_not_in_the_key(tmp_path: Path) -> None:
    st = make_store(tmp_path / "s.duckdb")
    prm = ScriptedPRM()
    s1 = run(evaluate(st, as_prm_evaluator(prm), limit=2))
    assert (s1.stored, s1.skipped) == (2, 0)
    s2 = run(evaluate(st, as_prm_evaluator(prm, rule="product")))
    assert (s2.stored, s2.skipped) == (4, 2) and len(prm.seen) == 6  # nothing scored twice
    s3 = run(evaluate(st, as_prm_evaluator(prm, rule="last")))
    assert (s3.stored, s3.skipped) == (0, 6)
    # Another PRM configuration is another key.
    s4 = run(evaluate(st, as_prm_evaluator(ScriptedPRM(version=2))))
    assert s4.stored == 6
    st.close()


def test_errors_are_stored_without_a_score_and_backend_failures_retried(tmp_path: Path) -> None:
    st = make_store(tmp_path / "s.duckdb", extra=True)
    with st:
        st.add_traces([Trace(prompt=[Message(role="user", content="FLAKY q")], answer=sol("x", answer="1"),
                             group_id="F", metadata={"answer": "1"})])
        prm = ScriptedPRM()
        s1 = run(evaluate(st, as_prm_evaluator(prm)))
        # D's two samples (ERR in the question) are stored unscorable; F's backend failure is not stored.
        assert (s1.stored, s1.parse_errors, s1.errors) == (10, 2, 1)
        bad = [r for r in st.results("scripted") if r["parse_error"]]
        assert len(bad) == 2 and {r["score"] for r in bad} == {None} and "cannot read" in bad[0]["parse_error"]
        assert sorted(r["details"]["steps"][0] for r in bad) == ["1 + 1 = 2", "1 + 1 = 3"]
        prm.flaky = False
        s2 = run(evaluate(st, as_prm_evaluator(prm)))
        assert (s2.stored, s2.skipped, s2.errors) == (1, 10, 0)


def test_best_of_n_hand_computed_paper_form(tmp_path: Path) -> None:
    with make_store(tmp_path / "s.duckdb") as st:
        run(evaluate(st, as_prm_evaluator(ScriptedPRM())))
        rep = best_of_n_from_store(st, "scripted", ns=[1, 2], rules=["min", "mean"],
                                   baselines=["majority", "random", "oracle"], form="paper")
    acc = rows_by(rep)
    # N=1: the first sample of each problem: A wrong, B wrong, C right.
    assert {m: acc[(1, m)] for m in ("prm:min", "prm:mean", "majority", "random", "oracle")} == pytest.approx(
        {"prm:min": 1 / 3, "prm:mean": 1 / 3, "majority": 1 / 3, "random": 1 / 3, "oracle": 1 / 3})
    # N=2: min picks A right, B wrong, C wrong; mean A right, B wrong, C right; majority ties -> first sample.
    assert acc[(2, "prm:min")] == pytest.approx(1 / 3)
    assert acc[(2, "prm:mean")] == pytest.approx(2 / 3)
    assert acc[(2, "majority")] == pytest.approx(1 / 3)
    assert acc[(2, "random")] == pytest.approx(0.5)
    assert acc[(2, "oracle")] == pytest.approx(1.0)
    assert (rep.groups, rep.samples, rep.sizes, rep.unscored, rep.errors, rep.no_gold) == (3, 6, (2, 2), 0, 0, 0)


def test_best_of_n_resampled_rows_have_intervals(tmp_path: Path) -> None:
    with make_store(tmp_path / "s.duckdb") as st:
        run(evaluate(st, as_prm_evaluator(ScriptedPRM())))
        rep = best_of_n_from_store(st, "scripted", ns=[1, 2], rules=["mean"], resamples=200, seed=1)
    assert [(r.n, r.method) for r in rep.rows] == [(1, "prm:mean"), (1, "majority"), (1, "random"),
                                                   (2, "prm:mean"), (2, "majority"), (2, "random")]
    acc = rows_by(rep)
    assert acc[(1, "prm:mean")] == pytest.approx(0.5) and acc[(2, "prm:mean")] == pytest.approx(2 / 3)
    for r in rep.rows:
        assert r.ci_low is not None and r.ci_high is not None and r.ci_low <= r.accuracy <= r.ci_high
        assert r.problems == 3 and r.resamples == 200
    d = rep.to_dict()
    assert d["rows"][0]["method"] == "prm:mean" and d["evaluator"] == "scripted" and d["sizes"] == [2, 2]


def test_pool_leaves_out_unscored_unscorable_and_goldless_and_says_so(tmp_path: Path) -> None:
    with make_store(tmp_path / "s.duckdb", extra=True) as st:
        skip = st.ids_by_group()["A"][0]
        run(evaluate(st, as_prm_evaluator(ScriptedPRM()), trace_ids=[i for i in st.trace_ids() if i != skip]))
        rep = best_of_n_from_store(st, "scripted", ns=[1], rules=["min"], form="paper")
        # 10 traces: D's two samples are unscorable (ERR in the question), one of A's is not scored yet, E has no
        # gold answer: A (one sample), B and C remain.
        assert rep.errors == 2 and rep.unscored == 1 and rep.no_gold == 1 and rep.groups == 3
        assert rep.error_examples and "cannot read" in rep.error_examples[0]
        run(evaluate(st, as_prm_evaluator(ScriptedPRM())))
        # Gold by group: E gets one; N=2 needs two scored samples per problem.
        rep = best_of_n_from_store(st, "scripted", gold={"E": "4"}, ns=[1, 2], rules=["min"], form="paper")
        assert rep.groups == 4 and rep.no_gold == 0 and rep.short == 0
        assert rows_by(rep)[(2, "prm:min")] == pytest.approx(2 / 4)  # A, E right (tie -> first); B, C wrong
        with pytest.raises(DataError, match="fewer than N=3"):
            best_of_n_from_store(st, "scripted", ns=[3], rules=["min"])


def test_choices_and_answer_equivalence(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as st:
        q = [Message(role="user", content="Which is largest?")]
        st.add_traces([
            Trace(prompt=q, answer=sol("compare", answer="B"), group_id="g", sample_index=0,
                  metadata={"answer": "9", "choices": "['3', '9', '5']"}),
            Trace(prompt=q, answer=sol("compare BAD", answer="\\boxed{9}"), group_id="g", sample_index=1,
                  metadata={"answer": "9", "choices": "['3', '9', '5']"}),
        ])
        run(evaluate(st, as_prm_evaluator(ScriptedPRM())))
        rep = best_of_n_from_store(st, "scripted", ns=[2], rules=["min"], baselines=["majority", "oracle"],
                                   form="paper")
    acc = rows_by(rep)
    assert acc[(2, "prm:min")] == 1.0 and acc[(2, "majority")] == 1.0 and acc[(2, "oracle")] == 1.0


def test_resolve_prm_key(tmp_path: Path) -> None:
    with make_store(tmp_path / "s.duckdb") as st:
        with pytest.raises(ConfigError, match="run `cotscope verify score` first"):
            resolve_prm_key(st, "scripted")
        run(evaluate(st, as_prm_evaluator(ScriptedPRM())))
        ev = as_prm_evaluator(ScriptedPRM())
        assert resolve_prm_key(st, "scripted") == ("scripted", ev.config_hash)
        run(evaluate(st, as_prm_evaluator(ScriptedPRM(version=2))))
        with pytest.raises(ConfigError, match="several PRM keys named 'scripted'"):
            resolve_prm_key(st, "scripted")
        assert resolve_prm_key(st, f"scripted@{ev.config_hash[:6]}") == ("scripted", ev.config_hash)
        assert resolve_prm_key(st, ScriptedPRM()) == ("scripted", ev.config_hash)
        assert resolve_prm_key(st, ev) == ("scripted", ev.config_hash)
        with pytest.raises(ConfigError, match="unknown aggregation rule"):
            as_prm_evaluator(ScriptedPRM(), rule="max")


def test_token_cls_prm_end_to_end_on_the_store(tmp_path: Path) -> None:
    model_dir = fixtures.tiny_prm(tmp_path / "prm")
    with make_store(tmp_path / "s.duckdb") as st:
        prm = get_prm(model_dir, device="cpu")
        s1 = run(evaluate(st, as_prm_evaluator(prm), batch_size=4, close=True))
        assert (s1.stored, s1.parse_errors) == (6, 0)
        for r in st.results("local"):
            d = r["details"]
            assert len(d["step_scores"]) == len(d["steps"]) and all(0 < v < 1 for v in d["step_scores"])
            assert r["score"] == pytest.approx(min(d["step_scores"]))
        s2 = run(evaluate(st, as_prm_evaluator(get_prm(model_dir))))
        assert (s2.stored, s2.skipped) == (0, 6)
        rep = best_of_n_from_store(st, get_prm(model_dir), ns=[1, 2], rules=["min", "product"])
        assert len(rep.rows) == 2 * 4 and rep.groups == 3
