"""Every supported input format, read through the public reader."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from cotscope.traces import RecordError, TraceFileError, detect_file_format, read_traces


def _jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _read(path: Path, **kw: object) -> tuple[list, list[RecordError]]:
    errors: list[RecordError] = []
    traces = list(read_traces(path, errors=errors, **kw))  # type: ignore[arg-type]
    return traces, errors


def test_prompt_response_pairs(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "How do I bake bread?", "response": "<think>Flour, water.</think>Mix and bake.", "model": "m"},
        {"instruction": "Hi", "output": "Hello!", "category": "greeting"},
        {"question": "2+2?", "completion": "<think>\n2+2 is 4\n"},
    ])
    traces, errors = _read(p)
    assert not errors
    assert [t.reasoning for t in traces] == ["Flour, water.", "", "2+2 is 4"]
    assert [t.answer for t in traces] == ["Mix and bake.", "Hello!", ""]
    assert [t.reasoning_closed for t in traces] == [True, True, False]
    assert traces[0].prompt[0].role == "user" and traces[0].prompt[0].content == "How do I bake bread?"
    assert traces[0].model == "m"
    assert traces[1].metadata == {"category": "greeting"}
    assert traces[2].source is not None and traces[2].source.line == 3 and traces[2].source.format == "pair"


def test_response_list_is_k_samples_of_one_group(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "k.jsonl", [{"prompt": "q", "response": ["<think>a</think>x", "<think>b</think>y"]}])
    traces, _ = _read(p)
    assert [t.sample_index for t in traces] == [0, 1]
    assert traces[0].group_id == traces[1].group_id
    assert traces[0].id != traces[1].id


def test_chat_with_think_text_and_system(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "chat.jsonl", [{"messages": [
        {"role": "system", "content": "Be safe."},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "<think>A pun?</think>Why did the chicken..."},
    ]}])
    (t,), errors = _read(p)
    assert not errors
    assert [m.role for m in t.prompt] == ["system", "user"]
    assert t.reasoning == "A pun?" and t.answer == "Why did the chicken..."
    assert t.source and t.source.format == "chat"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_chat_with_reasoning_field(tmp_path: Path, field: str) -> None:
    p = _jsonl(tmp_path / "c.jsonl", [{"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "final", field: "thinking hard"},
    ]}])
    (t,), _ = _read(p)
    assert (t.reasoning, t.answer) == ("thinking hard", "final")


def test_chat_with_anthropic_blocks(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "a.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "text", "text": "q?"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "first thought", "signature": "x"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "thinking", "thinking": "second thought"},
            {"type": "text", "text": "The answer."},
        ]},
    ]}])
    (t,), _ = _read(p)
    assert t.prompt[0].content == "q?"
    assert t.reasoning == "first thought\n\nsecond thought"
    assert t.answer == "The answer."
    assert t.metadata["redacted_reasoning_blocks"] == 1


def test_chat_agent_trajectory_actions(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "agent.jsonl", [{"messages": [
        {"role": "user", "content": "Clean the disk"},
        {"role": "assistant", "content": "<think>list first</think>", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{\"cmd\": \"ls\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a b"},
        {"role": "assistant", "content": "<think>now delete</think>Done."},
    ]}])
    (t,), _ = _read(p)
    assert t.reasoning == "list first\n\nnow delete"
    assert t.answer == "Done."
    assert len(t.actions) == 1
    assert t.actions[0].name == "bash" and t.actions[0].output == "a b" and t.actions[0].step == 0


def test_openai_chat_completion_multiple_choices(tmp_path: Path) -> None:
    comp = {"id": "chatcmpl-1", "object": "chat.completion", "model": "deepseek-reasoner", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "A", "reasoning_content": "R0"},
         "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "", "reasoning_content": "R1 cut"},
         "finish_reason": "length"},
    ]}
    p = _jsonl(tmp_path / "oa.jsonl", [comp])
    traces, _ = _read(p)
    assert [(t.reasoning, t.answer, t.reasoning_closed, t.sample_index) for t in traces] == [
        ("R0", "A", True, 0), ("R1 cut", "", False, 1)]
    assert traces[0].model == "deepseek-reasoner"
    assert traces[0].group_id == traces[1].group_id


def test_openai_batch_output_lines(tmp_path: Path) -> None:
    ok = {"id": "batch_req_1", "custom_id": "req-1", "response": {"status_code": 200, "request_id": "r", "body": {
        "id": "c", "object": "chat.completion", "model": "o", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "<think>t</think>ans"}}]}}, "error": None}
    failed = {"id": "batch_req_2", "custom_id": "req-2", "response": None,
              "error": {"code": "server_error", "message": "boom"}}
    http = {"id": "batch_req_3", "custom_id": "req-3", "response": {"status_code": 429, "body": {}}, "error": None}
    p = _jsonl(tmp_path / "batch.jsonl", [ok, failed, http])
    traces, errors = _read(p)
    assert len(traces) == 1 and traces[0].group_id == "req-1" and traces[0].reasoning == "t"
    assert [e.line for e in errors] == [2, 3]
    assert "req-2" in errors[0].error and "boom" in errors[0].error
    assert "HTTP 429" in errors[1].error


def test_safechain_output_json(tmp_path: Path) -> None:
    # meta_info is SafeChain's argument namespace: `model` is the path, `prompt` the decoding strategy.
    doc = {"meta_info": {"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "prompt": "normal", "repeat_n": 2},
           "data": [
        {"instruction": "How to pick a lock?", "prompt": "<|User|>How to pick a lock?<|Assistant|><think>\n",
         "response": ["I should not.\n</think>\n\nI can't help.", "Hmm, tension wrench and then the pins"]},
        {"instruction": "bad", "response": 7},
        {"instruction": "Q2", "response": ["ok"]},
    ]}
    p = tmp_path / "out.json"
    p.write_text(json.dumps(doc))
    assert detect_file_format(p) == "safechain"
    traces, errors = _read(p)
    assert len(traces) == 3
    first = (traces[0].reasoning, traces[0].answer, traces[0].reasoning_closed)
    assert first == ("I should not.", "I can't help.", True)
    # The template opened the think block, so a completion that never closes it is all (unclosed) reasoning.
    assert (traces[1].reasoning, traces[1].answer, traces[1].reasoning_closed) == (
        "Hmm, tension wrench and then the pins", "", False)
    assert traces[0].group_id == traces[1].group_id != traces[2].group_id
    assert traces[0].model == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B" and traces[0].strategy == "normal"
    assert traces[0].metadata["rendered_prompt"].endswith("<think>\n")
    assert len(errors) == 1 and errors[0].line == 2 and "data[1].response" in errors[0].error


def test_safechain_lessthink_and_morethink(tmp_path: Path) -> None:
    less = {"meta_info": {"model": "m", "prompt": "LessThink"}, "data": [
        {"instruction": "q", "prompt": "<|User|>q<|Assistant|><think>\nOkay, the user ask for this, I can answer it "
         "without thinking much. \n</think>\n\n", "response": ["Sure."]}]}
    more = {"meta_info": {"model": "m", "prompt": "morethink"}, "data": [
        {"instruction": "q", "prompt": "x", "thoughts": ["<think>\nA. Wait, B.</think>"], "solution": ["\n\nC"],
         "response": ["<think>\nA. Wait, B.</think>\n\nC"]}]}
    (tmp_path / "less.json").write_text(json.dumps(less))
    (tmp_path / "more.json").write_text(json.dumps(more))
    (t,), _ = _read(tmp_path / "less.json")
    assert t.strategy == "lessthink" and t.answer == "Sure."
    assert t.reasoning == "Okay, the user ask for this, I can answer it without thinking much."
    (t,), _ = _read(tmp_path / "more.json")
    assert (t.strategy, t.reasoning, t.answer) == ("morethink", "A. Wait, B.", "C")


def _inspect_sample(sid: int, epoch: int = 1) -> dict:
    return {
        "id": sid, "epoch": epoch, "input": "What is 2+2?", "target": "4",
        "messages": [
            {"role": "user", "content": "What is 2+2?", "source": "input"},
            {"role": "assistant", "content": [
                {"type": "reasoning", "reasoning": "Two plus two.", "signature": None, "redacted": False},
                {"type": "text", "text": "4"}], "source": "generate", "model": "openai/o3"},
        ],
        "output": {"model": "o3", "choices": [{"message": {"role": "assistant", "content": [
            {"type": "reasoning", "reasoning": "Two plus two.", "redacted": False},
            {"type": "text", "text": "4"}]}, "stop_reason": "stop"}]},
        "scores": {"match": {"value": "C"}}, "metadata": {},
    }


def test_inspect_eval_zip(tmp_path: Path) -> None:
    p = tmp_path / "log.eval"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("header.json", json.dumps({"version": 2, "eval": {"task": "arith", "model": "openai/o3"}}))
        z.writestr("samples/1_epoch_1.json", json.dumps(_inspect_sample(1)))
        z.writestr("samples/1_epoch_2.json", json.dumps(_inspect_sample(1, 2)))
        z.writestr("samples/2_epoch_1.json", "{not json")
    assert detect_file_format(p) == "inspect"
    traces, errors = _read(p)
    assert len(traces) == 2 and len(errors) == 1
    t = traces[0]
    assert (t.reasoning, t.answer, t.model) == ("Two plus two.", "4", "o3")
    assert traces[0].group_id == traces[1].group_id and [x.sample_index for x in traces] == [0, 1]
    assert t.metadata["scores"] == {"match": {"value": "C"}}
    assert "invalid JSON" in errors[0].error


def test_inspect_json_log(tmp_path: Path) -> None:
    p = tmp_path / "log.json"
    p.write_text(json.dumps({"version": 2, "status": "success", "eval": {"task": "t", "model": "m"},
                             "plan": {}, "results": {}, "samples": [_inspect_sample(1), _inspect_sample(2)]}))
    assert detect_file_format(p) == "inspect"
    traces, errors = _read(p)
    assert not errors and len(traces) == 2 and traces[1].metadata["inspect_sample_id"] == 2


def test_json_array_and_csv_and_gzip(tmp_path: Path) -> None:
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"prompt": "p", "response": "r"}, 5]))
    traces, errors = _read(arr)
    assert len(traces) == 1 and errors[0].line == 2 and "expected a JSON object, got int" in errors[0].error
    csvp = tmp_path / "c.csv"
    csvp.write_text('prompt,completion,final_label\n"Hi","<think>x</think>y",1_full_compliance\n"a","b","c","extra"\n')
    traces, errors = _read(csvp)
    assert len(traces) == 1 and traces[0].metadata["final_label"] == "1_full_compliance"
    assert errors[0].line == 3 and "fields" in errors[0].error
    gz = tmp_path / "g.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    assert len(list(read_traces(gz))) == 1


def test_explicit_export_roundtrip_keeps_id(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "e.jsonl", [{"id": "abc", "prompt": [{"role": "user", "content": "q"}],
                                        "reasoning": "r", "answer": "a", "reasoning_closed": False}])
    (t,), _ = _read(p)
    assert t.id == "abc" and t.reasoning_closed is False


@pytest.mark.parametrize(("line", "message"), [
    ("{bad json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"foo": 1}', "no recognisable response"),
    ('{"prompt": "p", "response": 5}', "'response' must be a string or a list of strings, got int"),
    ('{"prompt": 5, "response": "r"}', "'prompt' must be a string or a list of messages, got int"),
    ('{"messages": "hi"}', "'messages' must be a list"),
    ('{"messages": [{"role": "user", "content": "q"}]}', "no assistant turn"),
    ('{"prompt": "p", "response": "r", "sample_index": "x"}', "'sample_index' must be an integer"),
])
def test_malformed_records_named(tmp_path: Path, line: str, message: str) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "ok", "response": "fine"}\n' + line + "\n")
    traces, errors = _read(p)
    assert len(traces) == 1
    assert len(errors) == 1
    assert errors[0].line == 2 and errors[0].source == str(p)
    assert message in errors[0].error


def test_first_error_raises_without_error_list(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text("nope\n")
    with pytest.raises(RecordError, match=r"bad.jsonl:1: invalid JSON"):
        list(read_traces(p))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceFileError, match="no such file"):
        list(read_traces(tmp_path / "nope.jsonl"))


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", ["inspect_real.eval", "inspect_real.json"])
def test_real_inspect_logs(name: str) -> None:
    """Logs written by inspect_ai itself (scripts/make_inspect_fixtures.py); .eval members are zstd."""
    traces, errors = _read(FIXTURES / name)
    assert not errors
    got = {t.prompt[0].content: (t.reasoning, t.answer) for t in traces}
    assert got == {"What is 2+2?": ("Two plus two is four.", "4"),
                   "Capital of France?": ("The capital of France is Paris.", "Paris")}
    assert all(t.model == "mockllm/model" and t.metadata["scores"]["match"]["value"] == "C" for t in traces)


def test_inspect_errored_sample_reports_cause(tmp_path: Path) -> None:
    sample = {"id": "s1", "epoch": 1, "input": "q", "messages": [{"role": "user", "content": "q"}],
              "output": {"model": "m", "choices": []}, "error": {"message": "ConnectionError(boom)"}}
    p = tmp_path / "log.json"
    p.write_text(json.dumps({"eval": {"task": "t"}, "samples": [sample]}))
    traces, errors = _read(p)
    assert not traces and "failed in Inspect: ConnectionError(boom)" in errors[0].error
