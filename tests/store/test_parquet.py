"""Parquet datasets: partitioned export, ingest of the export, and stores reading a dataset in place."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotscope import Store, Trace
from cotscope.judges import get_judge
from cotscope.pipeline import evaluate
from cotscope.store import export_traces
from cotscope.store._dataset import dataset_patterns
from cotscope.traces import Message, TraceFileError
from cotscope.traces._read import dataset_files, hive_values
from cotscope.traces._rows import row_spans

#: What a trace is, provenance aside (ingest records the file it read; a dataset keeps the export's source).
CONTENT = ("prompt", "reasoning", "answer", "reasoning_closed", "actions", "model", "strategy", "group_id",
           "sample_index", "metadata")
MODELS = ("A", "org/model b", None)


def _traces() -> list[Trace]:
    out = []
    for m in MODELS:
        for i in range(4):
            out.append(Trace(
                prompt=[Message(role="system", content="be brief"), Message(role="user", content=f"q{i} of {m}")],
                reasoning=f"First, {i}.\n\nWait, let me check {m}.", answer="I'm sorry, I can't." if i % 2 else "Sure.",
                reasoning_closed=i != 3, model=m, strategy="normal" if i < 3 else None, group_id=f"{m}:{i // 2}",
                sample_index=i % 2, metadata={"k": [1, i], "note": "it's"},
                actions=[{"kind": "tool_call", "name": "sh", "arguments": {"cmd": "ls"}}] if i == 1 else []))
    return out


def _content(rows: Any) -> dict[str, dict[str, Any]]:
    return {r["id"]: {**{c: r[c] for c in CONTENT}, "steps": [tuple(s) for s in row_spans(r)]} for r in rows}


@pytest.fixture
def source(tmp_path: Path) -> Store:
    st = Store(tmp_path / "src.duckdb")
    st.add_traces(_traces())
    yield st
    st.close()


@pytest.fixture
def dataset(source: Store, tmp_path: Path) -> Path:
    out = tmp_path / "ds"
    assert export_traces(source, out, "parquet", partition_by=["model", "strategy"], chunk=3) == 12
    return out


def test_partitioned_export_layout_and_schema(source: Store, dataset: Path, tmp_path: Path) -> None:
    files = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*.parquet"))
    dirs = {f.rsplit("/", 1)[0] for f in files}
    # Values are URL-encoded (a model name may hold '/'); a missing value is Hive's default partition.
    assert dirs == {f"model={m}/strategy={s}" for m in ("A", "org%2Fmodel%20b", "__HIVE_DEFAULT_PARTITION__")
                    for s in ("normal", "__HIVE_DEFAULT_PARTITION__")}
    assert hive_values(dataset / "model=org%2Fmodel%20b/strategy=__HIVE_DEFAULT_PARTITION__/x.parquet") == {
        "model": "org/model b", "strategy": None}
    export_traces(source, tmp_path / "one.parquet", "parquet")
    single = pq.read_schema(tmp_path / "one.parquet")
    # Every file has the single-file schema, partition columns included: one schema for every reader.
    for f in dataset.rglob("*.parquet"):
        assert pq.read_schema(f).remove_metadata().equals(single.remove_metadata()), f
    table = pq.read_table(tmp_path / "one.parquet")
    parts = pa.concat_tables(pq.read_table(f) for f in sorted(dataset.rglob("*.parquet")))
    assert sorted(parts.column("id").to_pylist()) == sorted(table.column("id").to_pylist())


def test_partitioned_export_refuses_bad_requests(source: Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot partition by group_id"):
        export_traces(source, tmp_path / "a", "parquet", partition_by=["group_id"])
    with pytest.raises(ValueError, match="writes Parquet"):
        export_traces(source, tmp_path / "b", "jsonl", partition_by=["model"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        export_traces(source, tmp_path / "full", "parquet", partition_by=["model"])
    assert (tmp_path / "full" / "x.txt").read_text() == "keep me"


def test_export_then_ingest_round_trips_ids_and_content(source: Store, dataset: Path, tmp_path: Path) -> None:
    want = _content(source.iter_rows())
    with Store(tmp_path / "fresh.duckdb") as st:
        report = st.ingest(dataset_files(dataset))
        assert (report.records, report.rejected, report.new) == (12, 0, 12)
        assert _content(st.iter_rows()) == want
        assert st.ingest(dataset_files(dataset)).new == 0
    export_traces(source, tmp_path / "one.parquet", "parquet", with_results=True)
    with Store(tmp_path / "single.duckdb") as st:
        report = st.ingest([tmp_path / "one.parquet"])
        assert report.rejected == 0
        assert _content(st.iter_rows()) == want


def test_ingest_fills_partition_columns_from_the_path(source: Store, tmp_path: Path) -> None:
    # A dataset written without partition columns in its files (DuckDB's default) still reads them back.
    export_traces(source, tmp_path / "one.parquet", "parquet")
    out = tmp_path / "plain"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM read_parquet('{tmp_path / 'one.parquet'}')) TO '{out}' "
                "(FORMAT parquet, PARTITION_BY (model))")
    with Store(tmp_path / "fresh.duckdb") as st:
        assert st.ingest(dataset_files(out)).rejected == 0
        assert _content(st.iter_rows()) == _content(source.iter_rows())
    with Store(tmp_path / "attached.duckdb") as st:
        st.attach_traces(out)
        assert _content(st.iter_rows()) == _content(source.iter_rows())


def test_attached_dataset_reads_like_the_ingested_traces(source: Store, dataset: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "r.duckdb") as st:
        st.attach_traces(dataset)
        assert st.attached_traces == (str(dataset / "**" / "*.parquet"),)
        assert _content(st.iter_rows()) == _content(source.iter_rows())
        assert st.count() == 12 and st.count(model="A") == 4 and st.count(model="org/model b", strategy="normal") == 3
        assert st.trace_ids() == source.trace_ids()
        assert st.existing_samples(model="A") == source.existing_samples(model="A")
        assert st.ids_by_group() == source.ids_by_group()
        one = next(iter(source.trace_ids(model="A")))
        t = st.get(one[:10])
        # Here the export's source (none: these traces were added by the API) is kept as it was.
        assert t is not None and t.model_dump() == source.get(one).model_dump()  # type: ignore[union-attr]
        assert len(list(st.traces(limit=5))) == 5
        df = st.traces_df(model="A")
        assert sorted(df["id"]) == sorted(source.trace_ids(model="A")) and df["prompt"].str.startswith("q").all()


def test_attach_replaces_the_file_traces_until_detached(dataset: Path, tmp_path: Path) -> None:
    own = Trace(prompt=[Message(role="user", content="own")], reasoning="", answer="mine", model="Z")
    with Store(tmp_path / "r.duckdb") as st:
        st.add_traces([own])
        st.attach_traces(dataset)
        assert st.count() == 12 and own.id not in st.trace_ids() and st.get(own.id) is None
        st.detach_traces()
        assert st.attached_traces is None and st.trace_ids() == {own.id}


def test_attach_sources_file_glob_url_and_several(dataset: Path, tmp_path: Path) -> None:
    files = sorted(dataset.rglob("*.parquet"))
    with Store(tmp_path / "r.duckdb") as st:
        st.attach_traces(files[0])
        assert st.count() == pq.read_metadata(files[0]).num_rows
        st.attach_traces(str(dataset / "model=A" / "*" / "*.parquet"))
        assert st.count() == 4 and st.count(model="A") == 4
        st.attach_traces(f"file://{dataset}")
        assert st.count() == 12
        st.attach_traces([files[0], files[1]])
        assert st.count() == sum(pq.read_metadata(f).num_rows for f in files[:2])


def test_attach_on_a_read_only_store(dataset: Path, tmp_path: Path) -> None:
    Store(tmp_path / "r.duckdb").close()
    with Store(tmp_path / "r.duckdb", read_only=True) as st:
        st.attach_traces(dataset)
        assert st.count() == 12


def test_bad_datasets_give_errors_naming_them(tmp_path: Path) -> None:
    with Store(tmp_path / "r.duckdb") as st:
        with pytest.raises(TraceFileError, match="nowhere: no such trace dataset"):
            st.attach_traces(tmp_path / "nowhere")
        (tmp_path / "empty").mkdir()
        with pytest.raises(TraceFileError, match=r"empty: trace dataset folder holds no \.parquet files"):
            st.attach_traces(tmp_path / "empty")
        with pytest.raises(TraceFileError, match="no files match"):
            st.attach_traces(str(tmp_path / "*.parquet"))
        pq.write_table(pa.table({"prompt": ["q"], "response": ["a"]}), tmp_path / "raw.parquet")
        with pytest.raises(TraceFileError, match=r"raw\.parquet: trace dataset has no 'id' or 'answer' column"):
            st.attach_traces(tmp_path / "raw.parquet")
        (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
        with pytest.raises(TraceFileError, match=r"junk\.parquet: cannot read trace dataset"):
            st.attach_traces(tmp_path / "junk.parquet")
        assert st.attached_traces is None  # a failed attach leaves the store as it was


def test_object_store_urls_go_to_duckdb(tmp_path: Path) -> None:
    # A prefix is a folder of Parquet files; a file, a glob and an https URL are kept as they are.
    assert dataset_patterns("s3://bucket/corpus/") == ["s3://bucket/corpus/**/*.parquet"]
    assert dataset_patterns("gs://b/c/part-0.parquet") == ["gs://b/c/part-0.parquet"]
    assert dataset_patterns("s3://b/c/model=*/*.parquet") == ["s3://b/c/model=*/*.parquet"]
    assert dataset_patterns("https://host/x.parquet") == ["https://host/x.parquet"]
    con = duckdb.connect()
    try:
        con.execute("LOAD httpfs")
    except duckdb.Error:
        pass
    else:
        pytest.skip("httpfs is installed here: reading s3:// would go to the network")
    with Store(tmp_path / "r.duckdb") as st, pytest.raises(TraceFileError) as e:
        st.attach_traces("s3://cotscope-no-such-bucket/corpus")
    assert "s3://cotscope-no-such-bucket/corpus" in str(e.value) and "httpfs" in str(e.value)


def test_evaluate_in_place_keys_results_by_the_ingested_ids(source: Store, dataset: Path, tmp_path: Path) -> None:
    judge = get_judge("refusal-strings", scope="part")
    with Store(tmp_path / "r.duckdb") as st:
        st.attach_traces(dataset)
        stats = asyncio.run(evaluate(st, judge, "answer", batch_size=5, limit=7))
        assert (stats.total, stats.skipped, stats.stored) == (7, 0, 7)
        stats = asyncio.run(evaluate(st, judge, "answer", batch_size=5, model="A"))
        assert stats.skipped + stats.stored == 4
        stats = asyncio.run(evaluate(st, judge, "answer", batch_size=5))
        assert stats.skipped + stats.stored == 12 and stats.skipped >= 7
        rerun = asyncio.run(evaluate(st, judge, "answer"))
        assert (rerun.total, rerun.skipped, rerun.stored) == (12, 12, 0)
        results = {r["trace_id"]: r["label"] for r in st.results()}
        assert st.count_pending("refusal-strings", stats.config_hash, "answer") == 0
    # The same judge over the traces ingested gives the same results under the same keys.
    with Store(tmp_path / "ingested.duckdb") as st:
        st.ingest(dataset_files(dataset))
        asyncio.run(evaluate(st, judge, "answer"))
        assert {r["trace_id"]: r["label"] for r in st.results()} == results
    assert set(results) == source.trace_ids()
    assert sum(results.values()) == 6  # the odd samples refuse


def test_pending_traces_stream_what_has_no_result(dataset: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "r.duckdb") as st:
        st.attach_traces(dataset)
        ids = sorted(st.trace_ids(model="A"))
        st.add_results([{"trace_id": i, "evaluator": "e", "config_hash": "h", "part": "answer"} for i in ids[:3]])
        assert st.count_pending("e", "h", "answer") == 9
        assert st.count_pending("e", "h", "answer", model="A") == 1
        assert st.count_pending("e", "other", "answer") == 12
        assert [t.id for t in st.pending_traces("e", "h", "answer", model="A")] == ids[3:]
        assert len(list(st.pending_rows("e", "h", "answer", limit=4, chunk=2))) == 4
