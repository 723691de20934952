"""The bulk (DuckDB) ingest path stores exactly what the Python readers store."""

from __future__ import annotations

import json
import random
from pathlib import Path

from cotscope import Store

EDGE = [
    {"prompt": "p", "response": "<think>r</think>a"},
    {"prompt": "p\u00e9", "response": "\u00a0<think>\u2003r\n</think>\u3000a\u00a0"},
    {"prompt": "only close", "response": "reason</think>ans"},
    {"prompt": "unclosed", "response": "x<think>never ends"},
    {"prompt": "close before open", "response": "r1</think>a1<think>r2"},
    {"prompt": "blank", "response": "<think>\n\n</think>\n\nA"},
    {"prompt": "none", "response": "plain answer"},
    {"prompt": "other tags", "response": "<thinking>t</thinking>a"},
    {"prompt": "answer tags", "response": "<think>t</think><answer>4</answer>"},
    {"instruction": "alt keys", "output": "<think>t</think>a", "category": "c", "n": 1.5},
    {"prompt": "two prompts", "question": "q", "response": "a"},
    {"prompt": "model", "response": "a", "model": "m", "strategy": "zerothink", "extra": {"k": [1, None]}},
    {"prompt": "empty model", "response": "a", "model": ""},
    {"prompt": "bad model", "response": "a", "model": 3},
    {"prompt": "list", "response": ["a", "b"]},
    {"prompt": "esc \\u0041 \"q\"", "response": "\\n<think>\\t</think>x"},
    {"prompt": "emoji 🧠", "response": "<think>🤔 hmm</think>🙂"},
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
]


def _rows(store: Store) -> dict[str, dict]:
    out = {}
    for r in store.iter_rows():
        r = dict(r)
        r["metadata"] = json.loads(json.dumps(r["metadata"], sort_keys=True))
        out[r["id"]] = r
    return out


def _both(tmp_path: Path, path: Path, **kw: object) -> tuple[dict, dict, object, object]:
    with Store(tmp_path / "bulk.duckdb") as a, Store(tmp_path / "slow.duckdb") as b:
        ra = a.ingest([path], bulk=True, **kw)  # type: ignore[arg-type]
        rb = b.ingest([path], bulk=False, **kw)  # type: ignore[arg-type]
        return _rows(a), _rows(b), ra, rb


def test_bulk_equals_python_on_edge_cases(tmp_path: Path) -> None:
    lines = [json.dumps(r, ensure_ascii=i % 2 == 0) for i, r in enumerate(EDGE)]
    lines.insert(3, "{broken json")
    lines.insert(5, "")
    lines.append("[1, 2]")
    p = tmp_path / "edge.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    a, b, ra, rb = _both(tmp_path, p, model="default-model")
    assert a == b
    assert len(a) == len(EDGE) + 1 - 1  # the list response gives two traces; the bad model is rejected
    assert (ra.records, ra.accepted, ra.rejected, ra.traces) == (rb.records, rb.accepted, rb.rejected, rb.traces)
    assert sorted((e["line"], e["error"]) for e in ra.errors) == sorted((e["line"], e["error"]) for e in rb.errors)


def test_bulk_equals_python_on_random_records(tmp_path: Path) -> None:
    rng = random.Random(7)
    alphabet = "ab <>/\n\t\u00a0\u2028é🧠think"
    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
    lines = []
    for i in range(3000):
        resp = text()
        if rng.random() < 0.5:
            resp = text() + rng.choice(["<think>", "</think>", ""]) + resp + rng.choice(["</think>", "", "<think>"])
        rec = {rng.choice(["prompt", "question", "instruction"]): f"{i}{text()}", "response": resp}
        if rng.random() < 0.2:
            rec["model"] = rng.choice(["m1", "", None, 5])
        if rng.random() < 0.2:
            rec["tag"] = text()
        lines.append(json.dumps(rec, ensure_ascii=rng.random() < 0.5))
    p = tmp_path / "rand.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    a, b, ra, rb = _both(tmp_path, p)
    assert a == b
    assert ra.records == rb.records == ra.accepted + ra.rejected
    assert ra.new == rb.new == len(a)


def test_bulk_ids_match_trace_model(tmp_path: Path) -> None:
    p = tmp_path / "one.jsonl"
    p.write_text(json.dumps({"prompt": "q", "response": "<think>r</think>a", "model": "m"}) + "\n")
    from cotscope import read_traces

    (t,) = list(read_traces(p))
    with Store(tmp_path / "s.duckdb") as st:
        st.ingest([p])
        assert st.trace_ids() == {t.id}
        got = st.get(t.id)
        assert got is not None and got.model_dump() == t.model_dump()
