"""The stages' fan-out path without a cluster: the inline executor runs the same units, jobs and driver-side
store writes as the Ray one, so identity with the in-process path and resume are checked here quickly."""

from __future__ import annotations

import asyncio
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from cotscope.judges import get_judge
from cotscope.models._fakeserver import serve_in_thread
from cotscope.monitors import get_monitor
from cotscope.pipeline import (
    Executor,
    ExecutorStats,
    InlineExecutor,
    as_evaluator,
    evaluate,
    generate,
    get_executor,
    node_url,
    rebuilder,
)
from cotscope.pipeline._executor import NODE_IP_ENV, batches
from cotscope.pipeline._generate import GenerateJob
from cotscope.store import Store
from cotscope.thinking import get_strategy
from cotscope.traces import PromptItem


def prompts(n: int) -> list[PromptItem]:
    return [PromptItem(messages=[{"role": "user", "content": f"question {i}"}], line=i + 1,
                       metadata={"item_id": f"q{i}"}) for i in range(n)]


def snapshot(st: Store) -> list[tuple[Any, ...]]:
    """What must not depend on how the traces were made: ids, content, group and sample."""
    return sorted((r["id"], r["group_id"], r["sample_index"], r["reasoning"], r["answer"])
                  for r in st.iter_rows())


def gen(st: Store, url: str, ray: Any = None, n: int = 10, k: int = 2) -> Any:
    return asyncio.run(generate(st, prompts(n), model="openai/fake", samples=k, model_base_url=url,
                                model_args={"max_connections": 4}, ray=ray, flush_every=4))


def test_import_never_imports_ray() -> None:
    import subprocess

    code = "import sys, cotscope, cotscope.pipeline, cotscope.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_ray_means_in_process() -> None:
    assert get_executor(None) is None and get_executor("") is None
    ex = InlineExecutor(3)
    assert get_executor(ex) is ex and isinstance(ex, Executor)


def test_batches_keep_groups_whole_and_spread_over_workers() -> None:
    items = [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1), ("d", 0), ("d", 1)]
    out = batches(items, lambda x: x[0], workers=2, max_items=64)
    assert [x for b in out for x in b] == items
    assert all(len({x[0] for x in b}) == len(b) // 2 for b in out)  # no group is split
    assert len(out) == 4
    # A group larger than the cap stays whole; the cap bounds the rest.
    big = [("g", i) for i in range(10)] + [("h", 0)]
    assert [len(b) for b in batches(big, lambda x: x[0], workers=1, max_items=3)] == [10, 1]
    assert batches([], lambda x: x, 4, 8) == []


def test_node_url_names_the_workers_node(monkeypatch: pytest.MonkeyPatch) -> None:
    assert node_url(None) is None and node_url("http://h:1/v1") == "http://h:1/v1"
    monkeypatch.setenv(NODE_IP_ENV, "10.0.0.7")
    assert node_url("http://{node_ip}:8000/v1") == "http://10.0.0.7:8000/v1"


def test_jobs_travel_without_their_backend() -> None:
    job = GenerateJob("openai/fake", "http://x/v1", {}, get_strategy("zerothink"))
    job.backend = object()  # a started worker's backend (open connections) must never be pickled
    back = pickle.loads(pickle.dumps(job))
    assert back.backend is None and back.strategy.name == "zerothink"


def test_generate_fanned_out_equals_in_process_and_resumes(tmp_path: Path) -> None:
    with serve_in_thread() as srv:
        local = Store(tmp_path / "local.duckdb")
        s0 = gen(local, srv.base_url)
        fan = Store(tmp_path / "fan.duckdb")
        s1 = gen(fan, srv.base_url, ray=InlineExecutor(3))
        assert snapshot(local) == snapshot(fan) and len(snapshot(fan)) == 20
        assert (s1.generated, s1.new_traces, s1.error_count) == (s0.generated, s0.new_traces, 0) == (20, 20, 0)
        assert "executor" not in s0.to_dict()
        assert s1.executor is not None and s1.executor["name"] == "inline" and s1.executor["workers"] == 3
        assert s1.engine["completed"] == 20
        # A rerun has nothing left; more samples fan out only the missing ones.
        assert gen(fan, srv.base_url, ray=InlineExecutor(3)).requested == 0
        s3 = asyncio.run(generate(fan, prompts(10), model="openai/fake", samples=3, model_base_url=srv.base_url,
                                  ray=InlineExecutor(2)))
        assert (s3.requested, s3.new_traces) == (10, 10)
        local.close()
        fan.close()


def test_evaluate_fanned_out_equals_in_process(tmp_path: Path) -> None:
    with serve_in_thread() as srv:
        st = Store(tmp_path / "s.duckdb")
        gen(st, srv.base_url, n=12, k=1)
        j = get_judge("refusal-strings")
        a = asyncio.run(evaluate(st, j, "answer", batch_size=5))
        other = Store(tmp_path / "o.duckdb")
        gen(other, srv.base_url, n=12, k=1)
        b = asyncio.run(evaluate(other, get_judge("refusal-strings"), "answer", batch_size=5, ray=InlineExecutor(3)))

        def res(s: Store) -> list[tuple[Any, ...]]:
            return sorted((r["trace_id"], r["config_hash"], r["label"], r["score"]) for r in s.results())

        assert res(st) == res(other) and len(res(st)) == 12
        assert (a.stored, b.stored, b.errors) == (12, 12, 0) and b.executor is not None
        assert asyncio.run(evaluate(other, get_judge("refusal-strings"), "answer", ray=InlineExecutor(3))).stored == 0
        st.close()
        other.close()


def test_judges_and_monitors_rebuild_with_the_same_key() -> None:
    for obj, part in ((get_judge("refusal-strings"), "answer"), (get_monitor("refusal-strings"), None),
                      (get_judge("llama-guard", model="openai/x", base_url="http://h/v1"), "both")):
        build = rebuilder(obj)  # type: ignore[arg-type]
        assert build is not None
        again = pickle.loads(pickle.dumps(build))()
        assert as_evaluator(again, part).config_hash == as_evaluator(obj, part).config_hash  # type: ignore[arg-type]
    j = get_judge("llama-guard", model="openai/x")
    j.base_url = "http://set-later/v1"  # as `cotscope run --judge-base-url` does
    rb = rebuilder(j)
    assert rb is not None and rb().base_url == "http://set-later/v1"  # type: ignore[union-attr]


def test_an_evaluator_that_cannot_be_rebuilt_is_refused(tmp_path: Path) -> None:
    from cotscope.errors import ConfigError

    st = Store(tmp_path / "s.duckdb")
    with serve_in_thread() as srv:
        gen(st, srv.base_url, n=2, k=1)
    ev = as_evaluator(get_judge("refusal-strings"), "answer")
    ev.rebuild = None
    with pytest.raises(ConfigError, match="cannot be sent to workers"):
        asyncio.run(evaluate(st, ev, ray=InlineExecutor(2)))
    st.close()


def test_stats_report_the_executor() -> None:
    assert ExecutorStats(workers=2, units=5, retried=1, lost_workers=1).to_dict() == {
        "workers": 2, "units": 5, "retried": 1, "lost_workers": 1}


def test_agent_episodes_fanned_out_equal_in_process(tmp_path: Path, namespace_provider: Any) -> None:
    import json

    from cotscope.agents import load_tasks
    from cotscope.pipeline import run_agent

    tasks = [t for t in load_tasks("cuaharm-all").tasks if not t.unsupported][:3]
    script = tmp_path / "s.jsonl"
    script.write_text("".join(json.dumps({"task": t.id, "actions": ["echo hi"]}) + "\n" for t in tasks))
    model = f"script/{script}"

    def run(st: Store, ray: Any) -> Any:
        return asyncio.run(run_agent(st, tasks, model=model, sandbox=namespace_provider, samples=2, ray=ray))

    local, fan = Store(tmp_path / "l.duckdb"), Store(tmp_path / "f.duckdb")
    a, b = run(local, None), run(fan, InlineExecutor(2))
    assert [(o.task, o.sample_index, o.status, o.score) for o in a.outcomes] == [
        (o.task, o.sample_index, o.status, o.score) for o in b.outcomes]
    assert b.new_traces == a.new_traces == 6 and b.executor is not None and "executor" in b.to_dict()
    assert sorted(r["id"] for r in local.iter_rows()) == sorted(r["id"] for r in fan.iter_rows())
    assert run(fan, InlineExecutor(2)).skipped_existing == 6
    local.close()
    fan.close()


def test_a_benchmark_run_fans_out_every_phase_like_in_process(tmp_path: Path) -> None:
    import cotscope_test_fakes as fakes

    from cotscope.benchmarks import RunOptions, run_benchmark

    spec = str(fakes.tiny_safechain_spec(tmp_path))

    def run(name: str, ray: Any) -> tuple[Store, Any]:
        st = Store(tmp_path / name)
        res = asyncio.run(run_benchmark(st, spec, "fake/model", RunOptions(no_cache=True, ray=ray)))
        return st, res

    local, a = run("l.duckdb", None)
    fan, b = run("f.duckdb", InlineExecutor(2))
    assert snapshot(local) == snapshot(fan) and len(snapshot(fan)) == 12
    assert sorted((r["trace_id"], r["config_hash"], r["part"], r["label"]) for r in local.results()) == sorted(
        (r["trace_id"], r["config_hash"], r["part"], r["label"]) for r in fan.results())
    assert (b.generated, b.judged, b.generation_errors, b.judge_errors) == (a.generated, a.judged, 0, 0)
    assert (b.generated, b.judged) == (12, 24)
    local.close()
    fan.close()
