"""LoRA SFT speed: cotscope's TRL trainer against a bare PyTorch + PEFT loop on the same batches (the floor).

Both train the same LoRA (same rank, targets, learning rate, AdamW) on the same tokenised examples with the
same batch size, on the embedded SmolLM2 by default. The floor is the least work a step can do: pad the batch,
forward, masked loss, backward, optimizer step. The ratio says what TRL, the Trainer and cotscope's callbacks
cost on top; a second TRL run with TRL's own precision default (bf16 autocast, which cotscope turns off on a
CPU) shows why that default matters.

    python bench/train_bench.py [--model smollm2] [--steps 8] [--batch 8] [--threads 2] [--no-bf16-check] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cotscope.train import SFTOptions, SFTRecord, resolve_base
from cotscope.train._sft import build_sft_trainer


def _records(n: int) -> list[SFTRecord]:
    topics = ["tea", "rivers", "bicycles", "clocks", "maps", "bread", "owls", "glass"]
    return [SFTRecord(messages=[
        {"role": "user", "content": f"Tell me one fact about {topics[i % len(topics)]} (question {i})."},
        {"role": "assistant", "content": f"Hoot hoot! Here is a fact about {topics[i % len(topics)]}: it has a long "
                                         f"history, and people have studied it for centuries. ({i})"}])
        for i in range(n)]


def _trl_rate(base: str, records: list[SFTRecord], opts: SFTOptions, bf16: bool = False) -> float:
    import cotscope.train._sft as sft

    rule = sft.precision_args
    if bf16:
        sft.precision_args = lambda device: {"bf16": True, "use_cpu": True}  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as d:
            trainer = build_sft_trainer(base, "cpu", records, Path(d), opts)
            t0 = time.perf_counter()
            trainer.train()
            return (time.perf_counter() - t0) / opts.steps
    finally:
        sft.precision_args = rule


def _bare_rate(base: str, records: list[SFTRecord], opts: SFTOptions) -> float:
    with tempfile.TemporaryDirectory() as d:
        trainer = build_sft_trainer(base, "cpu", records, Path(d), opts)
        ds = trainer.train_dataset  # the very tokenised examples TRL trains on
        model = trainer.model
        pad = trainer.processing_class.pad_token_id
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=opts.learning_rate)
    rows = [(list(r["input_ids"]), list(r["labels"])) for r in ds]

    def step(k: int) -> None:
        batch = [rows[(k * opts.batch_size + j) % len(rows)] for j in range(opts.batch_size)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        lab = torch.full((len(batch), width), -100)
        for i, (x, m) in enumerate(batch):
            ids[i, :len(x)] = torch.tensor(x)
            att[i, :len(x)] = 1
            lab[i, :len(x)] = torch.tensor(m)  # TRL's own labels: -100 over the prompt
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    step(0)  # warm-up
    t0 = time.perf_counter()
    for k in range(1, opts.steps + 1):
        step(k)
    return (time.perf_counter() - t0) / opts.steps


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bf16-check", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = resolve_base(args.model)
    records = _records(args.batch * (args.steps + 1))
    opts = SFTOptions(lora_r=16, lora_alpha=32, learning_rate=1e-4, steps=args.steps, batch_size=args.batch,
                      max_length=128, save_steps=10_000, device="cpu")
    bare = _bare_rate(base, records, opts)
    trl = _trl_rate(base, records, opts)
    res: dict[str, Any] = {"model": args.model, "steps": args.steps, "batch": args.batch, "threads": args.threads,
                           "bare_s_per_step": bare, "cotscope_s_per_step": trl, "ratio_to_floor": trl / bare}
    if not args.no_bf16_check:
        # TRL's own default on a machine without a GPU would be bf16 autocast; two steps show its cost.
        slow = SFTOptions(**{**opts.model_dump(), "steps": 2})
        res["trl_default_bf16_s_per_step"] = _trl_rate(base, records, slow, bf16=True)
        res["bf16_slowdown"] = res["trl_default_bf16_s_per_step"] / trl
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"LoRA SFT on {args.model}, batch {args.batch}, {args.threads} threads, {args.steps} steps")
    print(f"  bare PyTorch + PEFT loop (floor): {bare:.3f} s/step")
    print(f"  cotscope train sft (TRL):         {trl:.3f} s/step   ratio to floor {trl / bare:.2f}x")
    if "bf16_slowdown" in res:
        print(f"  TRL with bf16 autocast on CPU:    {res['trl_default_bf16_s_per_step']:.3f} s/step   "
              f"({res['bf16_slowdown']:.1f}x slower than cotscope's precision rule)")


if __name__ == "__main__":
    main()
