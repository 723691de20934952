"""SafeChain SFT data on a scripted model and a scripted Llama-Guard: the all-K-safe filter, resume."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cotscope.models import GenerateRequest, ModelOutput
from cotscope.store import Store
from cotscope.traces import PromptItem
from cotscope.train import build_safechain, read_sft_records

K = 3


def _prompts() -> list[PromptItem]:
    texts = ["p-safe", "p-unsafe", "p-mixed", "p-garble", "p-safe"]  # the last one repeats the first
    return [PromptItem(messages=[{"role": "user", "content": t}], line=i + 1) for i, t in enumerate(texts)]


@pytest.fixture
def scripted(fake: Any) -> tuple[str, str]:
    mixed = {"n": 0}

    def gen(req: GenerateRequest) -> ModelOutput:
        p = fake.text(req)
        reasoning, answer = "Thinking calmly.", "Here is a cake recipe."
        if p == "p-unsafe":
            answer = "BOMB steps."
        elif p == "p-mixed":
            mixed["n"] += 1
            reasoning = "Let me plan a BOMB." if mixed["n"] == 2 else reasoning
        elif p == "p-garble":
            answer = "GARBLE"
        return ModelOutput(text=f"<think>{reasoning}</think>{answer}", reasoning=reasoning, answer=answer)

    def guard(req: GenerateRequest) -> str:
        text = fake.text(req)
        return "unsafe\nS1" if "BOMB" in text else "not a verdict" if "GARBLE" in text else "safe"

    return fake.model("gen", gen), fake.model("guard", guard)


def test_filter_counts_output_and_rerun(tmp_path: Path, fake: Any, scripted: tuple[str, str]) -> None:
    gen, guard = scripted
    out = tmp_path / "sc.jsonl"

    def build(st: Store) -> Any:
        return asyncio.run(build_safechain(st, _prompts(), out, model=gen, samples=K, judge="llama-guard",
                                           judge_model=guard, seed=7, source_file="prompts.jsonl"))

    with Store(tmp_path / "s.duckdb") as st:
        rep = build(st)
        assert st.count() == 4 * K
        n_results = len(st.results())
        gen_calls, guard_calls = len(fake.calls("gen")), len(fake.calls("guard"))
        assert n_results == 2 * 4 * K and gen_calls == 4 * K
        d = rep.details
        assert rep.read == 4 and d["duplicate_prompts"] == 1
        assert (d["kept"], d["dropped_unsafe"], d["dropped_incomplete"]) == (1, 2, 1)
        assert rep.written == {"safechain": 1} and rep.rejected == 3 and rep.reconciles
        # The parse-error prompt is incomplete (never safe), named by its file and line.
        assert len(rep.errors) == 1 and rep.errors[0].startswith("prompts.jsonl:4: dropped incomplete")
        assert "parse error" in rep.errors[0]
        (rec,), errs = read_sft_records(out)
        assert errs == []
        assert rec.completion() == "<think>\nThinking calmly.\n</think>\n\nHere is a cake recipe."
        assert rec.prompt_messages() == [{"role": "user", "content": "p-safe"}]
        m = rec.metadata
        assert m["builder"] == "safechain" and m["model"] == gen and m["strategy"] == "normal"
        assert m["judge"] == "llama-guard" and m["source"] == {"trace_id": m["trace_id"]}
        kept = st.get(m["trace_id"])
        assert kept is not None and kept.group_id == m["group_id"] and kept.prompt_text == "p-safe"

        # A rerun on the same store generates and judges nothing new, and writes the same file.
        first = out.read_bytes()
        rep2 = build(st)
        assert (len(fake.calls("gen")), len(fake.calls("guard"))) == (gen_calls, guard_calls)
        assert st.count() == 4 * K and len(st.results()) == n_results
        assert rep2.details["generate"]["new_traces"] == 0
        assert all(s["stored"] == 0 for s in rep2.details["evaluate"].values())
        assert out.read_bytes() == first
        runs = [r for r in st.runs() if r["kind"] == "data"]
        assert len(runs) == 2 and all(r["status"] == "done" and r["name"] == "safechain" for r in runs)
        assert runs[0]["config"]["samples"] == K and runs[0]["config"]["judge"] == "llama-guard"


def test_missing_samples_are_incomplete(tmp_path: Path, fake: Any) -> None:
    def gen(req: GenerateRequest) -> ModelOutput:
        if "p-flaky" in fake.text(req):
            return ModelOutput(error="server down")
        return ModelOutput(text="x", reasoning="Fine.", answer="Fine.")

    model, guard = fake.model("gen2", gen), fake.model("guard2", lambda r: "safe")
    prompts = [PromptItem(messages=[{"role": "user", "content": t}], line=i + 1)
               for i, t in enumerate(["p-ok", "p-flaky"])]
    with Store(tmp_path / "s.duckdb") as st:
        rep = asyncio.run(build_safechain(st, prompts, tmp_path / "o.jsonl", model=model, samples=2,
                                          judge_model=guard))
    assert (rep.details["kept"], rep.details["dropped_incomplete"]) == (1, 1)
    assert "prompt 2: dropped incomplete: 2 of 2 samples missing" in rep.errors[0]


def test_judge_without_safe_reading_is_refused(tmp_path: Path) -> None:
    from cotscope.errors import ConfigError

    with Store(tmp_path / "s.duckdb") as st, pytest.raises(ConfigError, match="no safe/unsafe reading"):
        asyncio.run(build_safechain(st, _prompts(), tmp_path / "o.jsonl", model="fake/model",
                                    judge="local-harmful-request"))
