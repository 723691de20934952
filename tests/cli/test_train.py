"""``cotscope train sft|grpo``: JSON report, bad records named, the adapter used by ``cotscope generate``, option
checks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.store import Store

_spec = importlib.util.spec_from_file_location("tinylm_for_cli", Path(__file__).parents[1] / "train" / "tinylm.py")
assert _spec is not None and _spec.loader is not None
tinylm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tinylm)

runner = CliRunner()


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTSCOPE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("trl")
    return tinylm.build_tiny_lm(tmp_path_factory.mktemp("tiny-cli"))


def test_sft_json_then_generate_with_the_adapter(tiny: Path, tmp_path: Path) -> None:
    data = tinylm.write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "response": "hello", "reasoning": "greet"},
                                                     {"messages": [{"role": "user", "content": "bye"}]},
                                                     {"prompt": "yo", "response": "hey"}])
    out, store = tmp_path / "adapter", tmp_path / "s.duckdb"
    res = runner.invoke(app, ["train", "sft", "--model", str(tiny), "--data", str(data), "--out", str(out),
                              "--steps", "2", "--lora-r", "4", "--lora-alpha", "8", "--batch-size", "2",
                              "--max-length", "64", "--reasoning", "strip", "--threads", "2", "--store", str(store),
                              "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["recipe"] == "sft" and rep["steps"] == 2 and rep["records"]["rejected"] == 1
    assert rep["errors"][0].startswith(f"{data}:2: ")
    assert rep["adapter"] == str(out)
    prompts = tinylm.write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    res = runner.invoke(app, ["generate", "-m", f"local/{out}", "-p", str(prompts), "-s", str(store),
                              "--max-tokens", "4", "--json"])
    assert res.exit_code == 0, res.output
    with Store(store, read_only=True) as st:
        rows = list(st.iter_rows())
        kinds = sorted((r["kind"], r["name"]) for r in st.runs())
    assert len(rows) == 1 and rows[0]["model"] == f"local/{out}"
    assert rows[0]["metadata"]["base_model"] == str(tiny)
    assert kinds == [("generate", f"local/{out}"), ("train", "sft")]


def test_option_errors_are_one_line(tiny: Path, tmp_path: Path) -> None:
    data = tinylm.write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "response": "hello"}])
    res = runner.invoke(app, ["train", "sft", "-m", str(tiny), "-d", str(data), "-o", str(tmp_path / "o"),
                              "--reasoning", "drop"])
    assert res.exit_code == 2 and "--reasoning" in res.output
    res = runner.invoke(app, ["train", "sft", "-m", str(tiny), "-d", str(tmp_path / "none.jsonl"),
                              "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no such data file" in res.output
    res = runner.invoke(app, ["train", "grpo", "-m", str(tiny), "-p", str(data), "-o", str(tmp_path / "g")])
    assert res.exit_code == 2 and "--judge" in res.output
    res = runner.invoke(app, ["train", "grpo", "-m", str(tiny), "-p", str(data), "-o", str(tmp_path / "g"),
                              "--judge", "refusal-strings", "--num-generations", "4", "--batch-size", "6"])
    assert res.exit_code == 2 and "multiple" in res.output
    res = runner.invoke(app, ["train", "grpo", "-m", str(tiny), "-p", str(data), "-o", str(tmp_path / "g"),
                              "--reward", "nope"])
    assert res.exit_code == 2 and "self-monitor" in res.output
