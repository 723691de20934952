"""The one record reader and the one prompt-field list: every format, bad records with file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard

from cotscope.traces import (
    PROMPT_FIELDS,
    RecordError,
    TraceFileError,
    iter_records,
    read_labelled,
    read_prompts,
    read_record_file,
    record_messages,
)
from cotscope.traces._formats import PROMPT_KEYS


def test_jsonl_bad_middle_line_is_reported_and_the_rest_read(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a"}\n{broken\n\n{"goal": "b"}\n')
    recs, errs = read_record_file(f)
    assert recs == [(1, {"prompt": "a"}), (4, {"goal": "b"})]
    assert [(e.source, e.line) for e in errs] == [(str(f), 2)] and str(errs[0]).startswith(f"{f}:2: invalid JSON")
    with pytest.raises(RecordError, match=r"p\.jsonl:2"):
        list(iter_records(f))  # without an error list the first bad record raises


def test_json_list_object_and_csv(tmp_path: Path) -> None:
    j = tmp_path / "l.json"
    j.write_text(json.dumps([{"a": 1}, "x", 2.5]))
    assert list(iter_records(j)) == [(1, {"a": 1}), (2, "x"), (3, 2.5)]
    o = tmp_path / "o.json"
    o.write_text(json.dumps({"meta": {"v": 1}, "rows": [{"a": 1}, {"a": 2}]}))
    assert [r for _, r in iter_records(o)] == [{"a": 1}, {"a": 2}]
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}))
    assert [r for _, r in iter_records(one)] == [{"messages": [{"role": "user", "content": "hi"}]}]
    c = tmp_path / "c.csv"
    c.write_text('prompt,category\nhello,x\n"multi\nline",y\nbad,z,extra\nlast,w\n')
    recs, errs = read_record_file(c)
    assert recs == [(2, {"prompt": "hello", "category": "x"}), (4, {"prompt": "multi\nline", "category": "y"}),
                    (6, {"prompt": "last", "category": "w"})]
    assert [(e.line, e.error) for e in errs] == [(5, "row has 3 fields, header has 2")]


def test_truncated_json_list_keeps_the_items_before_the_error(tmp_path: Path) -> None:
    j = tmp_path / "t.json"
    j.write_text('[{"a": 1}, {"a": 2}, {"a": ')
    recs, errs = read_record_file(j)
    assert [r for _, r in recs] == [{"a": 1}, {"a": 2}] and [e.line for e in errs] == [3]


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_compressed_files(tmp_path: Path, suffix: str) -> None:
    data = b'{"prompt": "a"}\nnope\n{"prompt": "b"}\n'
    f = tmp_path / f"p.jsonl{suffix}"
    f.write_bytes(gzip.compress(data) if suffix == ".gz" else zstandard.ZstdCompressor().compress(data))
    recs, errs = read_record_file(f)
    assert [n for n, _ in recs] == [1, 3] and [e.line for e in errs] == [2]


def test_unreadable_files_raise_trace_file_error(tmp_path: Path) -> None:
    with pytest.raises(TraceFileError, match="no such file"):
        list(iter_records(tmp_path / "missing.jsonl"))
    empty = tmp_path / "e.json"
    empty.write_text("  ")
    with pytest.raises(TraceFileError, match="empty"):
        list(iter_records(empty))
    with pytest.raises(TraceFileError):
        list(iter_records(tmp_path))


def test_one_prompt_field_list() -> None:
    assert PROMPT_FIELDS[0] == "messages" and {"goal", "behavior", "query", "forbidden_prompt"} <= set(PROMPT_FIELDS)
    assert PROMPT_FIELDS[1:] == PROMPT_KEYS  # ingest reads the same fields, chat messages apart
    assert record_messages({"goal": "g", "target": "t", "n": 1}) == ([{"role": "user", "content": "g"}],
                                                                       {"target": "t", "n": 1})
    assert record_messages({"prompt": "p", "system": "s"})[0] == [{"role": "system", "content": "s"},
                                                                  {"role": "user", "content": "p"}]
    with pytest.raises(ValueError, match="no prompt field"):
        record_messages({"nothing": 1})


def test_read_prompts_reads_goal_and_reports_a_bad_middle_line(tmp_path: Path) -> None:
    f = tmp_path / "advbench.jsonl"
    f.write_text('{"goal": "Write a tutorial", "target": "Sure"}\nnot json\n{"behavior": "b"}\n{"x": 1}\n')
    items, errs = read_prompts(f)
    assert [(it.line, it.messages[-1]["content"]) for it in items] == [(1, "Write a tutorial"), (3, "b")]
    assert items[0].metadata == {"target": "Sure"}
    assert [(e.source, e.line) for e in errs] == [(str(f), 2), (str(f), 4)]
    assert "no prompt field" in errs[1].error


def test_read_prompts_formats(tmp_path: Path) -> None:
    c = tmp_path / "p.csv"
    c.write_text("instruction,category\nhello,x\n,y\n")
    items, errs = read_prompts(c)
    assert [it.messages for it in items] == [[{"role": "user", "content": "hello"}]] and errs[0].line == 3
    js = tmp_path / "p.json"
    js.write_text(json.dumps(["x", {"question": "y"}, 5]))
    items, errs = read_prompts(js)
    assert [it.messages[0]["content"] for it in items] == ["x", "y"] and errs[0].line == 3


def test_read_labelled_reports_every_bad_record(tmp_path: Path) -> None:
    f = tmp_path / "l.jsonl"
    f.write_text("\n".join([
        json.dumps({"prompt": "q", "answer": "a", "label": True}),
        json.dumps({"prompt": "q", "answer": "b", "label": "maybe"}),
        "{oops",
        json.dumps({"prompt": "q", "answer": "c", "metadata": {"label": 0}}),
        json.dumps({"prompt": 5, "answer": "d", "label": 1}),
    ]) + "\n")
    traces, labels, errs = read_labelled(f)
    assert [t.answer for t in traces] == ["a", "c"] and labels == [True, False]
    assert [e.line for e in errs] == [2, 3, 5]
    assert "label must be" in errs[0].error and "not a trace" in errs[2].error
