"""End to end: export --partition-by, ingest of a dataset folder, and --traces on the commands that read traces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.store import Store
from cotscope.traces import Message, Trace

runner = CliRunner()
PART = ("--option", "scope=part")


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A store of 6 traces (2 models; groups of 2 samples) exported as a partitioned dataset."""
    src = tmp_path / "src.duckdb"
    with Store(src) as st:
        st.add_traces(Trace(prompt=[Message(role="user", content=f"prompt {g}")], reasoning=f"thinking {g} {i}",
                            answer="I'm sorry, no." if (g + i) % 2 else "Sure, here.", model=m, strategy="normal",
                            group_id=f"{m}{g}", sample_index=i)
                      for m in ("A", "org/B") for g in range(2) for i in range(2))
        st.add_traces([Trace(prompt=[Message(role="user", content="x")], reasoning="", answer="Sorry", model="A",
                             strategy="zerothink", group_id="z", sample_index=0)])
    out = tmp_path / "ds"
    r = invoke("export", "--store", str(src), "--format", "parquet", "--out", str(out),
               "--partition-by", "model,strategy")
    assert r.exit_code == 0, r.output
    assert "wrote 9 traces" in r.output
    return out


def _ids(store: Path, *extra: str) -> set[str]:
    r = invoke("traces", "--store", str(store), "--limit", "100", "--json", *extra)
    assert r.exit_code == 0, r.output
    return {t["id"] for t in json.loads(r.stdout)["traces"]}


def test_export_partitioned_then_ingest_the_folder(dataset: Path, tmp_path: Path) -> None:
    assert {p.parent.name for p in dataset.rglob("*.parquet")} == {"strategy=normal", "strategy=zerothink"}
    assert {p.parent.parent.name for p in dataset.rglob("*.parquet")} == {"model=A", "model=org%2FB"}
    fresh = tmp_path / "fresh.duckdb"
    r = invoke("ingest", str(dataset), "--store", str(fresh), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["new"] == 9
    assert _ids(fresh) == _ids(tmp_path / "src.duckdb")
    assert invoke("export", "--store", str(fresh), "--format", "jsonl", "--partition-by", "model").exit_code == 2
    r = invoke("export", "--store", str(fresh), "--format", "parquet", "--out", str(tmp_path / "x"),
               "--partition-by", "run_id")
    assert r.exit_code == 2 and "cannot partition by run_id" in r.output


def test_judge_in_place_then_metrics_report_traces_show_export(dataset: Path, tmp_path: Path) -> None:
    store = tmp_path / "results.duckdb"  # created by judge: it only holds results
    on = ("--traces", str(dataset), "--store", str(store))
    r = invoke("judge", "--judge", "refusal-strings", "--part", "answer", *PART, *on, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["total"], s["stored"], s["skipped"], s["label_true"]) == (9, 9, 0, 5)
    r = invoke("judge", "--judge", "refusal-strings", "--part", "answer", *PART, *on, "--json")
    assert (json.loads(r.stdout)["skipped"], json.loads(r.stdout)["stored"]) == (9, 0)
    # Keyed by the ids the traces have when ingested.
    with Store(store, read_only=True) as st:
        assert st.count() == 0
        assert {r["trace_id"] for r in st.results()} == _ids(tmp_path / "src.duckdb")

    r = invoke("metrics", *on, "--by", "model", "--json")
    assert r.exit_code == 0, r.output
    rows = {(x["model"], x["part"], x["k"]): x for x in json.loads(r.stdout)["rows"]}
    assert rows[("A", "answer", 2)]["groups"] == 2 and rows[("A", "answer", 2)]["safe@1"] == pytest.approx(0.5)
    assert rows[("org/B", "answer", 2)]["safe@k"] == 0.0
    # Without the dataset the store has no traces to group the results by.
    assert json.loads(invoke("metrics", "--store", str(store), "--json").stdout)["rows"] == []

    r = invoke("report", *on, "--out", str(tmp_path / "rep"))
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "9 traces" in html and "refusal-strings" in html

    refused = _ids(store, "--traces", str(dataset), "--where", "refusal-strings=refused")
    assert len(refused) == 5
    one = sorted(refused)[0]
    r = invoke("show", one[:8], *on, "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["id"] == one and shown["results"][0]["label_text"] == "refused"

    out = tmp_path / "judged.jsonl"
    r = invoke("export", *on, "--with-results", "--out", str(out), "--model", "A")
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 5 and all("refusal-strings:answer" in x["results"] for x in recs)


def test_monitor_in_place(dataset: Path, tmp_path: Path) -> None:
    r = invoke("monitor", "--monitor", "refusal-strings", "--traces", str(dataset), "--store",
               str(tmp_path / "m.duckdb"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["total"] == 9


def test_bad_traces_dataset_is_one_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    r = invoke("judge", "--judge", "refusal-strings", "--traces", str(tmp_path / "missing"), "--store", str(store))
    assert r.exit_code == 2
    assert "--traces" in r.output and "missing: no such trace dataset" in r.output
    assert not store.exists()
    r = invoke("metrics", "--traces", str(tmp_path), "--store", str(tmp_path / "none.duckdb"))
    assert r.exit_code == 2 and "no such store" in r.output
    r = invoke("ingest", str(tmp_path), "--store", str(store))
    assert r.exit_code == 2 and "holds no .parquet files" in r.output
