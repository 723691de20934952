"""CoT2 CPU benchmark on the MNNS configuration (4 digits from 1-9, 2 layers, width 24).

Prints training steps/s for CSFT (CoT2) and discrete CoT with their cost ratio measured in the same
run, evaluation examples/s, and GRPO rollouts/s for the batched sampler next to a per-rollout Python
loop (the loop is what the batched implementation avoids).

    python bench/cot2_bench.py [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from cotscope.cot2 import (
    CoT2Model,
    GRPOConfig,
    ModelConfig,
    TaskConfig,
    TrainConfig,
    eval_continuous,
    eval_greedy,
    make_task,
)
from cotscope.cot2._csft import csft_loss, fed_logits
from cotscope.cot2._grpo import grpo_train
from cotscope.cot2._sampling import sample_rollouts

#: The shared machines are often oversubscribed; rates are per second of this process's CPU time
#: (equal to wall time on an idle machine with one thread), and the wall-clock rate is kept alongside.
WALL: dict[str, float] = {}


def _rate(fn: Callable[[], object], units: int, min_s: float = 1.0, key: str = "") -> float:
    fn()  # warm-up
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.process_time() - c0 < min_s:
        fn()
        n += 1
    if key:
        WALL[key] = n * units / (time.perf_counter() - t0)
    return n * units / (time.process_time() - c0)


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = TrainConfig(task=TaskConfig(name="mnns"), model=ModelConfig(layers=2, heads=2, dim=24))
    task = make_task(cfg.task)
    train, test = task.split(0)
    v = len(task.vocab)
    model = CoT2Model(cfg.model, v, task.prompt_len + task.num_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    b = args.batch
    prompts, answers = train.prompts[:b], train.answers[:b]
    cot2_t, disc_t = train.target_dists(None, v)[:b], train.target_dists(1, v)[:b]

    def step(targets: torch.Tensor, teacher: float) -> Callable[[], None]:
        def run() -> None:
            s, a = fed_logits(model, prompts, targets, teacher)
            loss = csft_loss(s, a, targets, answers).total
            opt.zero_grad()
            loss.backward()
            opt.step()

        return run

    model.train()
    # Interleave the measurements so that load from other processes hits both alike.
    disc, cot2, selff = [], [], []
    for _ in range(2):
        disc.append(_rate(step(disc_t, 1.0), 1, key="train_steps_per_s_discrete"))
        cot2.append(_rate(step(cot2_t, 1.0), 1, key="train_steps_per_s_csft_teacher"))
        selff.append(_rate(step(cot2_t, 0.0), 1, key="train_steps_per_s_csft_self_feed"))
    r: dict[str, float] = {
        "train_steps_per_s_discrete": max(disc),
        "train_steps_per_s_csft_teacher": max(cot2),
        "train_steps_per_s_csft_self_feed": max(selff),
    }
    r["cost_ratio_csft_teacher_vs_discrete"] = (
        r["train_steps_per_s_discrete"] / r["train_steps_per_s_csft_teacher"]
    )
    r["cost_ratio_csft_self_feed_vs_discrete"] = (
        r["train_steps_per_s_discrete"] / r["train_steps_per_s_csft_self_feed"]
    )
    model.eval()
    n_eval = len(test)
    for key, fn in (("eval_examples_per_s_cot2_continuous", eval_continuous),
                    ("eval_examples_per_s_discrete_greedy", eval_greedy)):
        r[key] = _rate(lambda fn=fn: fn(model, test), n_eval, key=key)
    # GRPO rollouts: 32 prompts x 8 rollouts, MTS K = 3, batched vs one rollout at a time.
    g_prompts = train.prompts[:32].repeat_interleave(8, 0)
    gen = torch.Generator().manual_seed(0)
    r["rollouts_per_s_batched_mts_k3"] = _rate(
        lambda: sample_rollouts(model, g_prompts, task.num_steps, "mts", 3, generator=gen),
        g_prompts.shape[0],
        key="rollouts_per_s_batched_mts_k3",
    )
    r["rollouts_per_s_batched_dirichlet"] = _rate(
        lambda: sample_rollouts(model, g_prompts, task.num_steps, "dirichlet", gamma=20.0, generator=gen),
        g_prompts.shape[0],
        key="rollouts_per_s_batched_dirichlet",
    )
    loop = g_prompts[:32]
    r["rollouts_per_s_python_loop_mts_k3"] = _rate(
        lambda: [sample_rollouts(model, loop[i : i + 1], task.num_steps, "mts", 3, generator=gen)
                 for i in range(loop.shape[0])],
        loop.shape[0],
        key="rollouts_per_s_python_loop_mts_k3",
    )
    r["rollout_speedup_batched_vs_loop"] = (
        r["rollouts_per_s_batched_mts_k3"] / r["rollouts_per_s_python_loop_mts_k3"]
    )
    gcfg = GRPOConfig(steps=5, group_size=8, prompts_per_step=32, k=3, device="cpu")
    t0, c0 = time.perf_counter(), time.process_time()
    grpo_train(model, train, gcfg, torch.Generator().manual_seed(0))
    r["grpo_steps_per_s_mts_k3_256_rollouts"] = gcfg.steps / (time.process_time() - c0)
    WALL["grpo_steps_per_s_mts_k3_256_rollouts"] = gcfg.steps / (time.perf_counter() - t0)
    if args.json:
        print(json.dumps({"per_cpu_second": r, "wall_clock": WALL}, indent=2))
        return
    print(f"CoT2 benchmark: MNNS 4 digits 1-9, 2 layers, width 24, batch {b}, {args.threads} thread(s)")
    print(f"  {'figure (per CPU-second of this process)':45s} {'value':>12s} {'wall-clock':>12s}")
    for k, val in r.items():
        wall = f"{WALL[k]:12.2f}" if k in WALL else ""
        print(f"  {k:45s} {val:12.2f} {wall}")


if __name__ == "__main__":
    main()
