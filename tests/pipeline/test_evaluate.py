"""Judges over a store: results keyed per (trace, judge, config, part), reruns skip, failures retried."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cotscope.judges import get_judge
from cotscope.models import ModelOutput
from cotscope.pipeline import evaluate as run_judge
from cotscope.store import Store
from cotscope.traces import Message, Trace


def make_store(path: Path, answers: list[str]) -> Store:
    st = Store(path)
    st.add_traces(Trace(prompt=[Message(role="user", content=f"q{i}")], reasoning=f"think {i}", answer=a,
                        model="m", group_id=f"g{i // 2}", sample_index=i % 2) for i, a in enumerate(answers))
    return st


def test_run_stores_and_rerun_skips(tmp_path: Path) -> None:
    st = make_store(tmp_path / "s.duckdb", ["I'm sorry", "Sure: steps", "Sorry no", "ok"])
    j = get_judge("refusal-strings")
    s1 = asyncio.run(run_judge(st, j, "answer", batch_size=3))
    assert (s1.total, s1.stored, s1.skipped, s1.label_true, s1.label_false) == (4, 4, 0, 2, 2)
    rows = st.results("refusal-strings")
    assert len(rows) == 4 and {r["part"] for r in rows} == {"answer"} and all(r["kind"] == "judge" for r in rows)
    assert any(r["evidence"] and r["evidence"][0]["verified"] for r in rows)
    s2 = asyncio.run(run_judge(st, j, "answer"))
    assert (s2.stored, s2.skipped) == (0, 4)
    # Another part is another key.
    s3 = asyncio.run(run_judge(st, j, "reasoning"))
    assert s3.stored == 4
    st.close()


def test_parse_errors_stored_backend_errors_retried(tmp_path: Path, fake: Any) -> None:
    st = make_store(tmp_path / "s.duckdb", ["GOOD", "GARBLE", "FAIL", "GOOD too"])
    state = {"fail": True}

    def reply(req: Any) -> Any:
        t = fake.text(req)
        if "FAIL" in t and state["fail"]:
            return ModelOutput(error="timeout")
        return "the model rambles" if "GARBLE" in t else "safe"

    m = fake.model("run", reply)
    s1 = asyncio.run(run_judge(st, get_judge("llama-guard", model=m, cache=False), "answer"))
    assert (s1.stored, s1.parse_errors, s1.errors, s1.label_false) == (3, 1, 1, 2)
    bad = [r for r in st.results("llama-guard") if r["parse_error"]]
    assert len(bad) == 1 and bad[0]["raw"] == "the model rambles" and bad[0]["label"] is None
    assert bad[0]["score"] is None
    state["fail"] = False
    n_calls = len(fake.calls("run"))
    s2 = asyncio.run(run_judge(st, get_judge("llama-guard", model=m, cache=False), "answer"))
    assert (s2.stored, s2.skipped, s2.errors) == (1, 3, 0)
    assert len(fake.calls("run")) == n_calls + 1  # only the failed trace was sent again
    st.close()


def test_changed_config_is_a_new_key(tmp_path: Path, fake: Any) -> None:
    st = make_store(tmp_path / "s.duckdb", ["a", "b"])
    asyncio.run(run_judge(st, get_judge("llama-guard", model=fake.model("c1", lambda r: "safe")), "answer"))
    s = asyncio.run(run_judge(st, get_judge("llama-guard", model=fake.model("c2", lambda r: "safe")), "answer"))
    assert s.stored == 2
    assert len({r["config_hash"] for r in st.results("llama-guard")}) == 2
    st.close()
