"""Benchmark: the embedded local monitor over stored traces vs the bare sentence-transformers encoder.

Builds a store of N traces (real response texts from ``data/train``, made unique per trace), then times

- ``floor``: ``SentenceTransformer.encode`` on exactly the texts the monitor must embed (the chunks of
  every trace), with the same batch size: the cost no implementation can avoid;
- ``monitor``: the whole ``cotscope monitor --monitor local-refusal`` path (read traces from the store,
  chunk, encode, head, verify evidence, write results to the store).

and reports traces/s and the ratio ``monitor traces/s / floor traces/s`` (target >= 0.9). The machine is
shared and its load drifts, so the two are timed interleaved, slice by slice (each slice is one group id
of the store), alternating which runs first.
Scaling: the same measurement at several sizes; time per trace that stays flat means linear scaling,
and 100k is extrapolated from the per-trace time at the largest measured size when not run directly.

Usage: ``HF_HUB_OFFLINE=1 nice python bench/monitor_bench.py --sizes 1000,3000,10000 [--batch-size 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def texts_pool() -> list[tuple[str, str]]:
    """(prompt, response) pairs from the XSTest completions shipped in data/train."""
    out = []
    for model in ("gpt4", "llama2orig"):
        with (ROOT / "data/train/xstest" / f"xstest_v2_completions_{model}.csv").open(newline="") as f:
            out += [(r["prompt"], r["completion"]) for r in csv.DictReader(f)]
    return out


def build_store(path: Path, n: int, max_chars: int, slices: int) -> None:
    from cotscope.store import Store
    from cotscope.traces import Message, Trace

    pool = texts_pool()
    with Store(path) as st:
        batch = []
        for i in range(n):
            p, a = pool[i % len(pool)]
            # A per-trace suffix makes every trace (and so every chunk) distinct: no accidental dedup.
            batch.append(Trace(prompt=[Message(role="user", content=p)], reasoning="",
                               answer=f"{a[:max_chars]} [{i}]", model="bench", sample_index=i,
                               group_id=f"slice{i * slices // n}"))
            if len(batch) == 5000:
                st.add_traces(batch)
                batch = []
        st.add_traces(batch)


def floor_seconds(texts: list[str], batch_size: int) -> float:
    from cotscope.judges._local import get_encoder

    model = get_encoder().model
    t0 = time.perf_counter()
    model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                 show_progress_bar=False)
    return time.perf_counter() - t0


def measure(n: int, batch_size: int, max_chars: int, slices: int) -> dict[str, Any]:
    """Monitor and floor timed slice by slice, alternating which goes first.

    The machine is shared; interleaving in slices makes both measurements see the same load, and
    alternating the order cancels drift within a slice.
    """
    from cotscope.judges._local import chunk_spans
    from cotscope.monitors import get_monitor
    from cotscope.pipeline import evaluate
    from cotscope.store import Store

    mon = get_monitor("local-refusal", batch_size=batch_size, part="answer")
    floor_s = mon_s = 0.0
    n_chunks = 0
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.duckdb"
        build_store(path, n, max_chars, slices)
        with Store(path) as st:
            by_slice: dict[str, list[str]] = {}
            for t in st.traces():
                by_slice.setdefault(str(t.group_id), []).append(t.answer)
            for k in range(slices):
                # Slice k is the traces of group "slice{k}": the monitor scores exactly those (filter by
                # group id), the floor encodes exactly their chunks.
                texts = [a[s:e] for a in by_slice.get(f"slice{k}", []) for s, e in chunk_spans(a)]
                n_chunks += len(texts)

                def run_monitor(k: int = k) -> float:
                    t0 = time.perf_counter()
                    asyncio.run(evaluate(st, mon, batch_size=batch_size * 32, group_id=f"slice{k}"))
                    return time.perf_counter() - t0

                if k % 2:
                    floor_s += floor_seconds(texts, batch_size)
                    mon_s += run_monitor()
                else:
                    mon_s += run_monitor()
                    floor_s += floor_seconds(texts, batch_size)
            stored = st.con.execute("SELECT count(*) FROM results").fetchone()
    assert stored is not None and stored[0] == n, f"stored {stored} of {n}"
    return {"traces": n, "chunks": n_chunks, "batch_size": batch_size, "slices": slices,
            "floor_s": round(floor_s, 2), "monitor_s": round(mon_s, 2),
            "floor_traces_per_s": round(n / floor_s, 1), "monitor_traces_per_s": round(n / mon_s, 1),
            "ratio": round(floor_s / mon_s, 3), "monitor_ms_per_trace": round(1000 * mon_s / n, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,3000,10000")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-chars", type=int, default=400, help="truncate response texts (CPU budget)")
    ap.add_argument("--slices", type=int, default=10, help="interleaved monitor/floor slices")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    from cotscope.judges._local import get_encoder

    get_encoder().model  # load once, outside the timings  # noqa: B018
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        r = measure(n, args.batch_size, args.max_chars, args.slices)
        print(json.dumps(r), file=sys.stderr)
        rows.append(r)
    last = rows[-1]
    result = {"torch_threads": torch.get_num_threads(), "rows": rows,
              "extrapolated_100k_s": round(last["monitor_ms_per_trace"] * 100_000 / 1000, 1),
              "extrapolation": f"per-trace time at n={last['traces']} times 100000"}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
