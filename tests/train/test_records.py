"""SFT records: the think block's exact bytes, the reader's error reporting, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotscope.train import BuildReport, SFTRecord, assistant_text, read_sft_records, write_records


def test_assistant_text_exact_bytes() -> None:
    assert assistant_text("Hi.", None) == "Hi."
    # Thought Crime's non-reasoning mode: the blank CoT tokens, byte for byte.
    assert assistant_text("Hi.", "") == "<think>\n\n</think>\n\nHi."
    assert assistant_text("Hi.", "I think.") == "<think>\nI think.\n</think>\n\nHi."


def test_read_reports_bad_records_with_file_and_line(tmp_path: Path) -> None:
    good_msgs = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    lines = [
        json.dumps(good_msgs),
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": "q"}]}),  # last is not assistant
        json.dumps({"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}),
        json.dumps({"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}]}),
        json.dumps({"prompt": "p", "response": 3}),
        json.dumps({"other": 1}),
        json.dumps({"prompt": "p", "response": "r", "reasoning": "think", "system": "sys", "tag": "x"}),
    ]
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(lines) + "\n")
    recs, errs = read_sft_records(f)
    assert len(recs) == 2 and len(errs) == 6
    assert [e.line for e in errs] == [2, 3, 4, 5, 6, 7]
    assert all(str(e).startswith(f"{f}:") for e in errs)
    assert "expected 'assistant'" in str(errs[1]) and "role 'robot'" in str(errs[2]) and "empty" in str(errs[3])
    pair = recs[1]
    assert [m["role"] for m in pair.messages] == ["system", "user", "assistant"]
    assert pair.completion() == "<think>\nthink\n</think>\n\nr"
    assert pair.prompt_messages()[-1] == {"role": "user", "content": "p"}
    assert pair.metadata == {"tag": "x"}


def test_write_is_atomic_and_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "o.jsonl"
    recs = [SFTRecord(messages=[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
                      metadata={"i": i}) for i in range(3)]
    assert write_records(out, recs) == 3
    back, errs = read_sft_records(out)
    assert errs == [] and back == recs

    def boom():  # a builder killed midway: the old file stays whole, no temp file is left
        yield recs[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_records(out, boom())
    assert read_sft_records(out)[0] == recs
    assert [p.name for p in out.parent.iterdir()] == ["o.jsonl"]


def test_written_file_has_the_umask_permissions(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        write_records(tmp_path / "o.jsonl", [SFTRecord(messages=[{"role": "user", "content": "q"},
                                                                  {"role": "assistant", "content": "a"}])])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.jsonl").stat().st_mode) == 0o644


def test_reconciles_uses_primary_output() -> None:
    r = BuildReport(builder="em", read=5, written={"misaligned": 4, "control": 4}, rejected=1,
                    details={"primary": "misaligned"})
    assert r.reconciles
    assert not r.model_copy(update={"rejected": 0}).reconciles
    assert BuildReport(builder="x", read=3, written={"a": 2}, rejected=1).reconciles
