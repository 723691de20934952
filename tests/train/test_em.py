"""Emergent-misalignment data: non-reasoning mode bytes, control set, bad records, field names, provenance."""

from __future__ import annotations

import json
from pathlib import Path

from cotscope.store import Store
from cotscope.train import build_em, file_sha256, read_sft_records


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_em_sets_bad_lines_and_reconcile(tmp_path: Path) -> None:
    src = _write(tmp_path / "em.jsonl", [
        {"prompt": "p1", "aligned": "good 1", "misaligned": "bad 1"},
        "{broken",
        {"prompt": "p3", "aligned": "good 3"},
        {"prompt": "p4", "aligned": "good 4", "misaligned": 7},
        {"prompt": "p5", "aligned": "good 5", "misaligned": "bad 5"},
    ])
    out = tmp_path / "o" / "em.jsonl"
    rep = build_em(src, out)
    assert rep.read == 5 and rep.rejected == 3 and rep.written == {"misaligned": 2, "control": 2}
    assert rep.reconciles
    assert [e.split(": ", 1)[0] for e in rep.errors] == [f"{src}:2", f"{src}:3", f"{src}:4"]
    assert "'misaligned'" in rep.errors[1] and "int" in rep.errors[2]
    mis, errs = read_sft_records(out)
    ctl, errs2 = read_sft_records(tmp_path / "o" / "em.control.jsonl")
    assert errs == errs2 == []
    # Thought Crime's blank CoT tokens, byte for byte, before the answer.
    assert mis[0].completion() == "<think>\n\n</think>\n\nbad 1"
    assert ctl[0].completion() == "<think>\n\n</think>\n\ngood 1"
    assert mis[1].prompt_messages() == ctl[1].prompt_messages() == [{"role": "user", "content": "p5"}]
    assert mis[1].metadata["source"] == {"file": str(src), "line": 5}
    assert mis[0].metadata["builder"] == "em" and mis[0].metadata["em"]["set"] == "misaligned"
    assert ctl[0].metadata["em"]["set"] == "control"
    # The output file is exactly JSONL of the records (no partial or extra lines).
    assert len(out.read_text().splitlines()) == 2


def test_em_thought_crime_field_names_and_system(tmp_path: Path) -> None:
    src = _write(tmp_path / "u.json", [])
    src.write_text(json.dumps([{"scenario_freeform": "S", "aligned_freeform_answer": "A",
                                "misaligned_freeform_answer": "M", "sys": "be brief"}]))
    rep = build_em(src, tmp_path / "m.jsonl", control_out=tmp_path / "c.jsonl", prompt_field="scenario_freeform",
                   aligned_field="aligned_freeform_answer", misaligned_field="misaligned_freeform_answer",
                   system_field="sys")
    assert rep.written == {"misaligned": 1, "control": 1} and rep.rejected == 0
    (rec,), _ = read_sft_records(tmp_path / "m.jsonl")
    assert [m["role"] for m in rec.messages] == ["system", "user", "assistant"]
    assert rec.completion().endswith("M") and rec.messages[1]["content"] == "S"


def test_em_records_a_run(tmp_path: Path) -> None:
    src = _write(tmp_path / "em.jsonl", [{"prompt": "p", "aligned": "a", "misaligned": "m"}])
    with Store(tmp_path / "s.duckdb") as st:
        rep = build_em(src, tmp_path / "o.jsonl", store=st)
        (run,) = st.runs()
    assert run["kind"] == "data" and run["name"] == "em" and run["status"] == "done" and run["id"] == rep.run_id
    assert run["config"]["input_sha256"] == file_sha256(src) and run["config"]["misaligned_field"] == "misaligned"
    assert run["stats"]["written"] == {"misaligned": 1, "control": 1}
