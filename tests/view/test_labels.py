"""Human labels in the store, and their export as a labelled file that `cotscope validate` and the agreement
benchmarks read (label -> export -> validate round trip)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotscope.benchmarks import DataSpec, load_items
from cotscope.cli import app
from cotscope.store import Label, Store, label_bool
from cotscope.traces import Message, Trace, read_labelled

Built = Any
runner = CliRunner()


def test_add_read_latest_and_unknown_trace(tmp_path: Path, make_store: Callable[[Path], Built]) -> None:
    b = make_store(tmp_path / "s.duckdb")
    with Store(b.path) as st:
        first = st.add_labels([Label(trace_id=b.flagged, name=" unsafe ", value="false", author="ann")])[0]
        st.add_labels([Label(trace_id=b.flagged, name="unsafe", value="true", note="second look", author="ann"),
                       Label(trace_id=b.flagged, name="unsafe", value="unsure", author="bob"),
                       Label(trace_id=b.sibling, name="deceptive", value="no", author="ann")])
        assert first.name == "unsafe" and first.id and first.created_at is not None
        assert [lab.value for lab in st.labels(trace_ids=[b.flagged])] == ["false", "true", "unsure"]
        latest = st.labels(name="unsafe", latest=True)
        assert sorted((lab.author, lab.value) for lab in latest) == [("ann", "true"), ("bob", "unsure")]
        assert [lab.value for lab in st.labels(author="bob")] == ["unsure"]
        with pytest.raises(KeyError, match="no-such"):
            st.add_labels([Label(trace_id=b.flagged, name="x", value="true"),
                           Label(trace_id="no-such", name="x", value="true")])
        assert st.labels(name="x") == []  # all or nothing
        df = st.labels_df(latest=True)
        assert len(df) == 3 and str(df["label"].dtype) == "boolean"
        assert df.set_index("value")["label"].to_dict()["no"] is False
    with pytest.raises(ValueError):
        Label(trace_id="t", name="", value="true")
    assert (label_bool("Yes"), label_bool("0"), label_bool("unsure")) == (True, False, None)


def _store_with_refusals(path: Path) -> list[str]:
    traces = [Trace(prompt=[Message(role="system", content="sys"), Message(role="user", content=f"request {i}")],
                    reasoning=f"reasoning {i}", answer="I'm sorry, I can't help." if i % 2 else "Here it is.",
                    model="m", strategy="normal") for i in range(12)]
    with Store(path) as st:
        st.add_traces(traces)
    return [t.id for t in traces]


def test_label_export_validate_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    ids = _store_with_refusals(path)
    with Store(path) as st:
        # A person labels "refused": the odd traces true, the even ones false; one changes their mind, one is
        # unsure, and another author's labels do not count when exporting one author's.
        st.add_labels([Label(trace_id=t, name="refused", value="false" if i == 3 else ("yes" if i % 2 else "no"),
                             author="ann") for i, t in enumerate(ids)])
        st.add_labels([Label(trace_id=ids[3], name="refused", value="true", author="ann"),
                       Label(trace_id=ids[10], name="refused", value="unsure", author="ann"),
                       Label(trace_id=ids[0], name="refused", value="true", author="bob")])
        buf = io.BytesIO()
        rep = st.export_labels(buf, name="refused", author="ann")
    assert (rep.traces, rep.written, rep.positives, rep.negatives, rep.not_boolean) == (12, 11, 6, 5, 1)
    assert rep.skipped == [{"trace_id": ids[10], "value": "unsure"}]
    out = tmp_path / "labels.jsonl"
    r = runner.invoke(app, ["export-labels", "--store", str(path), "--name", "refused", "--author", "ann",
                            "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["written"] == 11 and out.read_bytes() == buf.getvalue()
    # cotscope validate's reader: the traces come back whole, with the boolean labels.
    traces, labels, bad = read_labelled(out)
    assert not bad and len(traces) == 11 and sum(labels) == 6
    assert {t.id for t in traces} == set(ids) - {ids[10]}
    for t, lab in zip(traces, labels, strict=True):
        assert lab == (t.answer.startswith("I'm sorry")) and t.prompt[0].content == "request " + t.reasoning[10:]
    # The agreement benchmarks' loader: prompt text, response and label.
    items = load_items(DataSpec(loader="labelled", path=str(out), options={"label_meaning": "refused"}))
    assert [i.metadata["human_label"] for i in items] == labels
    by_prompt = {i.prompt: i.metadata for i in items}
    assert by_prompt["request 1"]["response"] == "I'm sorry, I can't help." and by_prompt["request 1"]["human_label"]
    assert by_prompt["request 3"]["human_label"] is True and "request 10" not in by_prompt
    # And the command itself: the refusal-strings monitor agrees with the human labels.
    r = runner.invoke(app, ["validate", "--monitor", "refusal-strings", "--labels", str(out), "--n-boot", "50",
                            "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["scored"] == 11 and res["positives"] == 6 and res["auroc"]["value"] == 1.0


def test_export_labels_cli_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    _store_with_refusals(path)
    r = runner.invoke(app, ["export-labels", "--store", str(path), "--name", "nothing", "--out",
                            str(tmp_path / "o.jsonl")])
    assert r.exit_code != 0 and "no trace labelled 'nothing'" in r.output
    r = runner.invoke(app, ["export-labels", "--store", str(tmp_path / "missing.duckdb"), "--name", "x", "--out",
                            str(tmp_path / "o.jsonl")])
    assert r.exit_code != 0 and "missing.duckdb" in r.output
