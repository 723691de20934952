"""Reproduction grid of the CoT2 paper's MNNS and graph results at CPU scale.

Run ``python -m cotscope.cot2._reproduce --out runs/cot2 --results docs/cot2_results.json``. Every run
is the in-process equivalent of the ``cotscope cot2`` command recorded next to its result, so a single
cell can be regenerated from the command line. Results are written after every run (a killed grid
keeps what it finished, and a rerun skips runs whose metrics.json exists).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cotscope.cot2._config import GRPOConfig, ModelConfig, TrainConfig, load_config
from cotscope.cot2._train import METRICS, run_grpo, train

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs" / "cot2"


def _sft_runs(epochs: int, seeds: list[int]) -> list[tuple[str, TrainConfig, str]]:
    """Supervised runs: the CSFT/discrete grid first, then graph, then the budget grid."""
    runs = []
    base_m = load_config(CONFIGS / "mnns_csft.yaml", TrainConfig)
    # Main comparison: CSFT (all paths) vs discrete CoT, by depth and width.
    for seed in seeds:
        for layers in (1, 2):
            for dim in (16, 24, 32):
                for method in ("csft", "discrete"):
                    name = f"mnns_{method}_L{layers}_d{dim}_s{seed}"
                    cfg = base_m.model_copy(update={
                        "method": method, "epochs": epochs, "seed": seed, "pass_k": 16,
                        "model": ModelConfig(layers=layers, heads=2, dim=dim)})
                    cmd = (f"cotscope cot2 train --config configs/cot2/mnns_csft.yaml --method {method} "
                           f"--layers {layers} --heads 2 --dim {dim} --epochs {epochs} --seed {seed} "
                           f"--out runs/cot2/{name}")
                    runs.append((name, cfg, cmd))
    # Budget x width (2 layers): B = 16 is the all-paths run above.
    for dim in (16, 32, 24):
        for budget in (1, 2, 4, 8):
            name = f"mnns_csft_B{budget}_L2_d{dim}_s{seeds[0]}"
            cfg = base_m.model_copy(update={
                "budget": budget, "epochs": epochs, "seed": seeds[0],
                "model": ModelConfig(layers=2, heads=2, dim=dim)})
            cmd = (f"cotscope cot2 train --config configs/cot2/mnns_csft.yaml --budget {budget} --layers 2 "
                   f"--heads 2 --dim {dim} --epochs {epochs} --seed {seeds[0]} --out runs/cot2/{name}")
            runs.append((name, cfg, cmd))
    for method in ("csft", "discrete"):
        cfg = load_config(CONFIGS / f"graph_{method}.yaml", TrainConfig)
        name = f"graph_{method}_L2_d{cfg.model.dim}_s0"
        cmd = f"cotscope cot2 train --config configs/cot2/graph_{method}.yaml --out runs/cot2/{name}"
        runs.append((name, cfg, cmd))
    return runs


def _grpo_runs(seed: int) -> list[tuple[str, str, GRPOConfig, str]]:
    mts = load_config(CONFIGS / "grpo_mts.yaml", GRPOConfig)
    dirich = load_config(CONFIGS / "grpo_dirichlet.yaml", GRPOConfig)
    runs = []
    for init in (f"mnns_discrete_L1_d16_s{seed}", f"mnns_discrete_L2_d24_s{seed}"):
        for k in (1, 3):
            name = f"grpo_mts_k{k}_from_{init}"
            runs.append((name, init, mts.model_copy(update={"k": k}),
                         f"cotscope cot2 grpo --config configs/cot2/grpo_mts.yaml --init runs/cot2/{init} "
                         f"--sampling mts --k {k} --out runs/cot2/{name}"))
    init = f"mnns_csft_L2_d24_s{seed}"
    runs.append((f"grpo_dirichlet_from_{init}", init, dirich,
                 f"cotscope cot2 grpo --config configs/cot2/grpo_dirichlet.yaml --init runs/cot2/{init} "
                 f"--sampling dirichlet --out runs/cot2/grpo_dirichlet_from_{init}"))
    return runs


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k not in ("history", "config", "grpo_config", "train_config")}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def render_tables(results: dict[str, Any]) -> str:
    """Markdown tables of a results dict (as stored in the results JSON)."""
    lines = ["| layers | width d | seeds | CoT2 (CSFT, all paths) | discrete greedy | discrete pass@1 | pass@2 "
             "| pass@4 | pass@8 | pass@10 | pass@16 | smallest k with pass@k >= CoT2 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for layers in (1, 2):
        for dim in (16, 24, 32):
            cs, ds = [], []
            for seed in range(10):
                c = results.get(f"mnns_csft_L{layers}_d{dim}_s{seed}")
                d = results.get(f"mnns_discrete_L{layers}_d{dim}_s{seed}")
                if c and d:
                    cs.append(c)
                    ds.append(d)
            if not cs:
                continue
            n = len(cs)
            acc = sum(c["test_accuracy"] for c in cs) / n
            pk = {k: sum(d["pass_at_k"][k] for d in ds) / n for k in ds[0]["pass_at_k"]}
            spread = ""
            if n > 1:
                spread = " (" + ", ".join(_pct(c["test_accuracy"]) for c in cs) + ")"
            dspread = ""
            if n > 1:
                dspread = " (" + ", ".join(_pct(d["test_accuracy"]) for d in ds) + ")"
            match = next((k for k in range(1, 17) if pk[str(k)] >= acc), None)
            lines.append(
                f"| {layers} | {dim} | {n} | {_pct(acc)}{spread} | "
                f"{_pct(sum(d['test_accuracy'] for d in ds) / n)}{dspread} | "
                + " | ".join(_pct(pk[k]) for k in ("1", "2", "4", "8", "10", "16"))
                + f" | {match if match else '>16'} |"
            )
    lines += ["", "| width d | B=1 | B=2 | B=4 | B=8 | B=16 (all) |", "|---|---|---|---|---|---|"]
    for dim in (16, 24, 32):
        row = [results.get(f"mnns_csft_B{b}_L2_d{dim}_s0") for b in (1, 2, 4, 8)]
        row.append(results.get(f"mnns_csft_L2_d{dim}_s0"))
        if any(row):
            lines.append(f"| {dim} | " + " | ".join(_pct(r["test_accuracy"]) if r else "-" for r in row) + " |")
    lines += ["", "| GRPO run | sampled: before -> after | greedy: before -> after "
              "| continuous: before -> after |", "|---|---|---|---|"]
    for name, r in results.items():
        if name.startswith("grpo"):
            cells = [f"{_pct(r['init_' + k])} -> {_pct(r[k])}"
                     for k in ("test_accuracy", "greedy_accuracy", "continuous_accuracy")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| graph | CoT2 (CSFT) | discrete greedy | discrete pass@1 | pass@2 | pass@4 | pass@16 |",
              "|---|---|---|---|---|---|---|"]
    c, d = results.get("graph_csft_L2_d32_s0"), results.get("graph_discrete_L2_d32_s0")
    if c and d:
        pk = d["pass_at_k"]
        lines.append(f"| depth 3, width 4, 2 layers, d 32 | {_pct(c['test_accuracy'])} | {_pct(d['test_accuracy'])} | "
                     + " | ".join(_pct(pk[k]) for k in ("1", "2", "4", "16")) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the grid (skipping finished runs) and write the results JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("runs/cot2"))
    ap.add_argument("--results", type=Path, default=Path("docs/cot2_results.json"))
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", default="", help="Run only names containing this substring.")
    ap.add_argument("--table", action="store_true", help="Only print the markdown tables of --results.")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    if args.results.exists():
        results = json.loads(args.results.read_text()).get("runs", {})
    if args.table:
        print(render_tables(results))
        return

    def save() -> None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps({"runs": results}, indent=1))

    def run_sft(runs: list[tuple[str, TrainConfig, str]]) -> None:
        for name, cfg, cmd in runs:
            if args.only not in name:
                continue
            d = args.out / name
            done = (d / METRICS).exists() and json.loads((d / METRICS).read_text()).get("epochs_done") == cfg.epochs
            if done:
                m = json.loads((d / METRICS).read_text())
            else:
                t = time.time()
                m = train(cfg, d).metrics
                print(f"{name}: test_accuracy={m['test_accuracy']:.4f} ({time.time() - t:.0f}s)", flush=True)
            results[name] = {"command": cmd, **_summary(m)}
            save()

    def run_rl() -> None:
        for name, init, gcfg, cmd in _grpo_runs(args.seeds[0]):
            if args.only not in name or not (args.out / init / "checkpoint.pt").exists():
                continue
            d = args.out / name
            if (d / METRICS).exists():
                m = json.loads((d / METRICS).read_text())
            else:
                t = time.time()
                m = run_grpo(args.out / init, gcfg, d)
                acc = f"{m['init_test_accuracy']:.4f} -> {m['test_accuracy']:.4f}"
                print(f"{name}: {acc} ({time.time() - t:.0f}s)", flush=True)
            results[name] = {"command": cmd, **_summary(m)}
            save()

    # Priority order, so that a grid cut short still holds the headline comparisons.
    sft = _sft_runs(args.epochs, args.seeds)
    run_sft([r for r in sft if "_B" not in r[0] and not r[0].startswith("graph")])
    run_rl()
    run_sft([r for r in sft if r[0].startswith("graph")])
    run_sft([r for r in sft if "_B" in r[0]])

if __name__ == "__main__":
    main()
