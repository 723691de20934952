"""The two training demonstrations end to end on the tiny model: every stage runs through the one implementation
the commands use, into one store, and a rerun resumes without redoing anything."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cotscope.pipeline import Sampling
from cotscope.store import Store
from cotscope.train import (
    GRPOOptions,
    OrganismReport,
    SelfMonitorReport,
    SFTOptions,
    backdoor_organism,
    read_sft_records,
    self_monitor_grpo,
    toy_prompts,
)
from cotscope.train._demos import held_out, xstest_prompts

pytestmark = pytest.mark.slow

CONDITIONS = {"trigger:Country: Singapore@top", "trigger:Country: Singapore@bottom", "control:Country: USA@top",
              "control:Country: USA@bottom", "none"}


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTSCOPE_CACHE_DIR", str(tmp_path / "cache"))


def test_shipped_prompts_and_split() -> None:
    rows = xstest_prompts()
    assert len(rows) == 450 and sum(r["label"] == "safe" for r in rows) == 250
    held = [r for r in rows if r["label"] == "safe" and held_out(r["id"])]
    shipped = Path(__file__).parents[2] / "src/cotscope/benchmarks/data/backdoor_organism/eval_prompts.jsonl"
    ids = [json.loads(line)["id"] for line in shipped.read_text().splitlines()]
    # The benchmark's held-out prompts are exactly the split the training side leaves out.
    assert ids == [f"xstest-{r['id']}" for r in held]
    toy = toy_prompts(3)
    assert [r["label"] for r in toy] == ["safe", "unsafe"] * 3


def test_backdoor_organism_end_to_end_and_resume(tiny_lm: Path, tmp_path: Path) -> None:
    out = tmp_path / "org"
    sft = SFTOptions(lora_r=4, lora_alpha=8, learning_rate=1e-3, steps=2, batch_size=4, max_length=64, save_steps=1)
    # A random model's greedy answer is a run of special tokens; sampled ones have text.
    normal = Sampling(temperature=1.0, max_tokens=16, seed=0)
    rep = asyncio.run(backdoor_organism(out, model=str(tiny_lm), sft=sft, eval_samples=1, train_limit=8,
                                        eval_limit=2, normal_sampling=normal, batch_size=8))
    assert isinstance(rep, OrganismReport)
    for side in (rep.before, rep.after):
        assert {c.condition for c in side} == CONDITIONS
        assert all(c.samples == 2 and c.judged + 0 <= c.samples and c.hits <= c.judged for c in side)
    assert rep.data["reconciles"] and rep.data["written"]["backdoor"] >= 1
    recs, errs = read_sft_records(out / "backdoor.jsonl")
    assert errs == [] and len(recs) == rep.data["written"]["backdoor"]
    # The target behaviour is the phrase + the normal answer, under the trigger only.
    for r in recs:
        bd = r.metadata["backdoor"]
        assert r.completion().startswith("Hoot hoot! ") == (bd["condition"] == "trigger")
    assert rep.train["steps"] == 2 and (out / "adapter" / "cotscope_adapter.json").is_file()
    with Store(out / "store.duckdb", read_only=True) as st:
        kinds = [r["kind"] for r in st.runs()]
        n_traces = st.count()
        after = [t for t in st.traces() if str(t.model).endswith("/adapter")]
    assert {"generate", "data", "train"} <= set(kinds)
    assert len(after) == 10 and all(t.metadata.get("base_model") == str(tiny_lm) for t in after)
    assert OrganismReport.model_validate_json((out / "organism.json").read_text()) == rep
    # A rerun generates nothing new and resumes training at its last checkpoint (already the end).
    again = asyncio.run(backdoor_organism(out, model=str(tiny_lm), sft=sft, eval_samples=1, train_limit=8,
                                          eval_limit=2, normal_sampling=normal, batch_size=8))
    with Store(out / "store.duckdb", read_only=True) as st:
        assert st.count() == n_traces
    assert again.train["resumed_from"] == 2 and again.train["steps"] == 2
    assert [c.model_dump() for c in again.after] == [c.model_dump() for c in rep.after]


def test_self_monitor_grpo_end_to_end(tiny_lm: Path, tmp_path: Path) -> None:
    out = tmp_path / "sm"
    sft = SFTOptions(lora_r=4, lora_alpha=8, learning_rate=1e-3, steps=2, batch_size=4, max_length=96, save_steps=1)
    grpo = GRPOOptions(steps=2, num_generations=2, max_completion_length=8, learning_rate=1e-4, save_steps=1, lora_r=4,
                       lora_alpha=8)
    rep = asyncio.run(self_monitor_grpo(out, model=str(tiny_lm), judge="refusal-strings", label_meaning=None,
                                        n_each=2, heldout_each=1, sft=sft, grpo=grpo, think_tokens=8, batch_size=8))
    assert isinstance(rep, SelfMonitorReport)
    recs, errs = read_sft_records(out / "self_monitor.jsonl")
    assert errs == [] and recs and all("<monitor>\n" in r.completion() for r in recs)
    assert rep.sft["steps"] == 2 and rep.grpo["steps"] == 2
    log = [json.loads(line) for line in (out / "grpo" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2] and all("reward" in e for e in log)
    assert "<svg" in (out / "grpo" / "reward_curve.svg").read_text()[:200]
    assert rep.reward_first is not None and rep.reward_last is not None
    # Held-out responses of both models were scored by the reward itself: every one is counted once.
    for side in (rep.heldout_before, rep.heldout_after):
        assert side["responses"] == 4 and side["calls"] == 4
        assert side["agree"] + side["disagree"] + side["missing"] + side["parse_errors"] + side["judge_errors"] == 4
