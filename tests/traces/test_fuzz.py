"""Thousands of randomly corrupted records: nothing crashes and the counts always reconcile."""

from __future__ import annotations

import json
import random
from pathlib import Path

from cotscope import Store
from cotscope.traces import ReadStats, iter_row_batches

GOOD = [
    {"prompt": "p", "response": "<think>r</think>a"},
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x", "reasoning_content": "y"}]},
    {"object": "chat.completion", "model": "m",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "<think>t</think>o"}}]},
    {"custom_id": "c", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "z"}}]}}},
    {"prompt": "p", "response": ["a", "<think>b</think>c"]},
]


def _corrupt(rng: random.Random, rec: dict) -> str:
    text = json.dumps(rec)
    op = rng.randrange(8)
    if op == 0:  # truncate
        return text[: rng.randrange(1, len(text))]
    if op == 1:  # flip a character
        i = rng.randrange(len(text))
        return text[:i] + rng.choice('{}[]",:0a\\') + text[i + 1 :]
    if op == 2:  # wrong type for a random key
        key = rng.choice(list(rec))
        return json.dumps({**rec, key: rng.choice([None, 1, 2.5, True, [], {}, "s", [1, "x"]])})
    if op == 3:  # drop a key
        key = rng.choice(list(rec))
        return json.dumps({k: v for k, v in rec.items() if k != key})
    if op == 4:  # not an object
        return json.dumps(rng.choice([[rec], "str", 3, None]))
    if op == 5:  # binary garbage
        return "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(1, 40))).replace("\n", " ")
    return text  # unchanged


def test_fuzzed_records_reconcile(tmp_path: Path) -> None:
    rng = random.Random(1234)
    lines = []
    for i in range(4000):
        rec = json.loads(json.dumps(rng.choice(GOOD)))
        # make records distinct so that duplicates do not blur the counts
        if "prompt" in rec:
            rec["prompt"] = f"p{i}"
        elif "messages" in rec:
            rec["messages"][0]["content"] = f"q{i}"
        elif "custom_id" in rec:
            rec["custom_id"] = f"c{i}"
        else:
            rec["id"] = f"cmp{i}"
        lines.append(_corrupt(rng, rec))
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    stats = ReadStats()
    rows = [r for b in iter_row_batches(path, stats=stats, batch_size=100) for r in b]
    nonblank = sum(1 for line in lines if line.strip())
    assert stats.records == nonblank
    assert stats.records == stats.accepted + stats.rejected
    assert stats.traces == len(rows)
    assert stats.rejected > 500 and stats.accepted > 1500  # the corruption did bite, and good data got through
    assert all(e.line is not None and e.source == str(path) and e.error for e in stats.errors)
    with Store(tmp_path / "s.duckdb") as st:
        report = st.ingest([path])
        assert report.records == report.accepted + report.rejected == nonblank
        assert report.traces == report.new + report.duplicates
        assert st.count() == len({r["id"] for r in rows}) == report.new
