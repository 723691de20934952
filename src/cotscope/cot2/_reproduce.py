"""Reproduction grid of the CoT2 paper's MNNS and graph results at CPU scale.

Run ``python -m cotscope.cot2._reproduce --out runs/cot2 --results docs/cot2_results.json --seeds 0 1 2``.
``--grid headline`` runs only the 3-seed rows (CSFT vs discrete at 2 layers, width 24 and 32; GRPO from
the CSFT checkpoint with the paper's MTS ratio, the official MTS ratio and the official Dirichlet);
``--grid full`` (the default) adds the single-seed controls and grids. Every run is the in-process
equivalent of the ``cotscope cot2`` command recorded next to its result, so a single cell can be
regenerated from the command line. Results are written after every run (a killed grid keeps what it
finished, and a rerun skips runs whose metrics.json exists). ``--jobs N`` runs N at a time, one CPU
thread each.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from cotscope.cot2._config import GRPOConfig, ModelConfig, TrainConfig, load_config
from cotscope.cot2._train import METRICS, run_grpo, train

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs" / "cot2"


#: What every result of this grid used (also written into the results JSON).
DEFINITIONS = {
    "mnns_layout": "m - 1 continuous steps (partial sums after digits 1..m-1), answer at step m "
                   "(paper; official train/continuous_train.py)",
    "mts_ratio": "per-run field mts_ratio: geometric = paper (geometric mean of the K token ratios, tokens "
                 "from softmax(z)); official = official code default (tokens from softmax(z/K), product ratio)",
    "dirichlet": "per-run field dirichlet: official = scale 1 over tokens with p >= 1e-3 "
                 "(train/continuous_train_grpo_dirichlet.py); scaled = Dir(gamma * softmax(z) + 1e-3)",
    "grpo_init": "MTS and Dirichlet GRPO start from the teacher-forced CSFT checkpoint, as the official code; "
                 "runs named ..._from_mnns_discrete_... are the discrete-SFT controls",
    "pass_at_k": "unbiased estimator 1 - C(n-c, k) / C(n, k) from n = 16 temperature-1 samples per test prompt",
}

#: Headline cells: run with every seed given.
HEADLINE_SFT = ((2, 24), (2, 32))
#: GRPO variants from the CSFT checkpoint of the headline width 24 (every seed).
HEADLINE_GRPO = (("mts_k3_geometric", {"sampling": "mts", "k": 3, "mts_ratio": "geometric"}),
                 ("mts_k3_official", {"sampling": "mts", "k": 3, "mts_ratio": "official"}),
                 ("dirichlet_official", {"sampling": "dirichlet", "dirichlet": "official"}))
GRPO_INIT = "mnns_csft_L2_d24"


def _mnns_run(method: str, layers: int, dim: int, epochs: int, seed: int,
              budget: int | None = None) -> tuple[str, TrainConfig, str]:
    base = load_config(CONFIGS / "mnns_csft.yaml", TrainConfig)
    tag = f"_B{budget}" if budget is not None else ""
    name = f"mnns_{method}{tag}_L{layers}_d{dim}_s{seed}"
    cfg = base.model_copy(update={
        "method": method, "budget": budget, "epochs": epochs, "seed": seed, "pass_k": 16,
        "model": ModelConfig(layers=layers, heads=2, dim=dim)})
    opt = f"--budget {budget}" if budget is not None else f"--method {method}"
    cmd = (f"cotscope cot2 train --config configs/cot2/mnns_csft.yaml {opt} --layers {layers} --heads 2 "
           f"--dim {dim} --epochs {epochs} --seed {seed} --out runs/cot2/{name}")
    return name, cfg, cmd


def _sft_runs(epochs: int, seeds: list[int], grid: str) -> list[tuple[str, TrainConfig, str]]:
    """Supervised runs in priority order: the headline pairs (every seed), then the rest (first seed)."""
    runs = [_mnns_run(method, layers, dim, epochs, seed)
            for seed in seeds for layers, dim in HEADLINE_SFT for method in ("csft", "discrete")]
    if grid == "headline":
        return runs
    s0 = seeds[0]
    for layers, dim in ((1, 16), (1, 24), (1, 32), (2, 16)):
        for method in ("csft", "discrete"):
            runs.append(_mnns_run(method, layers, dim, epochs, s0))
    for method in ("csft", "discrete"):
        cfg = load_config(CONFIGS / f"graph_{method}.yaml", TrainConfig)
        name = f"graph_{method}_L2_d{cfg.model.dim}_s0"
        cmd = f"cotscope cot2 train --config configs/cot2/graph_{method}.yaml --out runs/cot2/{name}"
        runs.append((name, cfg, cmd))
    for dim in (16, 24, 32):
        for budget in (1, 2, 4, 8):
            runs.append(_mnns_run("csft", 2, dim, epochs, s0, budget))
    return runs


def _grpo_runs(seeds: list[int], grid: str) -> list[tuple[str, str, GRPOConfig, str]]:
    """GRPO runs: the headline variants from CSFT (every seed), then controls (first seed)."""
    mts = load_config(CONFIGS / "grpo_mts.yaml", GRPOConfig)
    dirich = load_config(CONFIGS / "grpo_dirichlet.yaml", GRPOConfig)

    def one(tag: str, upd: dict[str, Any], init: str) -> tuple[str, str, GRPOConfig, str]:
        base, yaml = (mts, "grpo_mts") if upd["sampling"] == "mts" else (dirich, "grpo_dirichlet")
        cfg = base.model_copy(update={**upd, "seed": int(init.rsplit("_s", 1)[1])})
        opts = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in upd.items())
        name = f"grpo_{tag}_from_{init}"
        cmd = (f"cotscope cot2 grpo --config configs/cot2/{yaml}.yaml --init runs/cot2/{init} {opts} "
               f"--seed {cfg.seed} --out runs/cot2/{name}")
        return name, init, cfg, cmd

    runs = [one(tag, upd, f"{GRPO_INIT}_s{seed}") for seed in seeds for tag, upd in HEADLINE_GRPO]
    if grid == "headline":
        return runs
    s0 = seeds[0]
    runs.append(one("dirichlet_scaled", {"sampling": "dirichlet", "dirichlet": "scaled"}, f"{GRPO_INIT}_s{s0}"))
    for k in (1, 3):
        runs.append(one(f"mts_k{k}_geometric", {"sampling": "mts", "k": k, "mts_ratio": "geometric"},
                        f"mnns_discrete_L2_d24_s{s0}"))
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
    lines += ["", "| GRPO run | policy ratio | init | seeds | sampled: before -> after | greedy: before -> after "
              "| continuous: before -> after |", "|---|---|---|---|---|---|---|"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, r in results.items():
        if name.startswith("grpo"):
            groups.setdefault(name.rsplit("_s", 1)[0], []).append(r)
    for key, rs in groups.items():
        n = len(rs)

        def cell(k: str, rs: list[dict[str, Any]] = rs, n: int = n) -> str:
            before = sum(r["init_" + k] for r in rs) / n
            after = sum(r[k] for r in rs) / n
            spread = " (" + ", ".join(_pct(r[k]) for r in rs) + ")" if n > 1 else ""
            return f"{_pct(before)} -> {_pct(after)}{spread}"

        variant, init = key.split("_from_")
        ratio = rs[0].get("mts_ratio") or rs[0].get("dirichlet") or "-"
        lines.append(f"| {variant} | {ratio} | {init} | {n} | "
                     + " | ".join(cell(k) for k in ("test_accuracy", "greedy_accuracy", "continuous_accuracy"))
                     + " |")
    lines += ["", "| graph | CoT2 (CSFT) | discrete greedy | discrete pass@1 | pass@2 | pass@4 | pass@16 |",
              "|---|---|---|---|---|---|---|"]
    c, d = results.get("graph_csft_L2_d32_s0"), results.get("graph_discrete_L2_d32_s0")
    if c and d:
        pk = d["pass_at_k"]
        lines.append(f"| depth 3, width 4, 2 layers, d 32 | {_pct(c['test_accuracy'])} | {_pct(d['test_accuracy'])} | "
                     + " | ".join(_pct(pk[k]) for k in ("1", "2", "4", "16")) + " |")
    return "\n".join(lines)


def _train_job(name: str, cfg: TrainConfig, out: Path) -> tuple[str, dict[str, Any], float]:
    t = time.time()
    return name, train(cfg, out).metrics, time.time() - t


def _grpo_job(name: str, init: Path, cfg: GRPOConfig, out: Path) -> tuple[str, dict[str, Any], float]:
    t = time.time()
    return name, run_grpo(init, cfg, out), time.time() - t


def main(argv: list[str] | None = None) -> None:
    """Run the grid (skipping finished runs) and write the results JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("runs/cot2"))
    ap.add_argument("--results", type=Path, default=Path("docs/cot2_results.json"))
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--grid", choices=("headline", "full"), default="full",
                    help="headline: the 3-seed rows only; full: also the single-seed controls and grids.")
    ap.add_argument("--jobs", type=int, default=1, help="Runs in parallel (one CPU thread each).")
    ap.add_argument("--only", default="", help="Run only names containing this substring.")
    ap.add_argument("--table", action="store_true", help="Only print the markdown tables of --results.")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    extra: dict[str, Any] = {}  # other top-level blocks of the file (e.g. a measured "cost"), kept as they are
    if args.results.exists():
        doc = json.loads(args.results.read_text())
        results = doc.pop("runs", {})
        extra = {k: v for k, v in doc.items() if k != "definitions"}
    if args.table:
        print(render_tables(results))
        return

    def save() -> None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps({"definitions": DEFINITIONS, **extra, "runs": results}, indent=1))

    def record(name: str, cmd: str, m: dict[str, Any], secs: float | None) -> None:
        if secs is not None:
            print(f"{name}: test_accuracy={m['test_accuracy']:.4f} ({secs:.0f}s)", flush=True)
            m = {**m, "driver_wall_seconds": secs}
        results[name] = {"command": cmd, **_summary(m)}
        save()

    def finished(d: Path, epochs: int | None) -> dict[str, Any] | None:
        if not (d / METRICS).exists():
            return None
        m: dict[str, Any] = json.loads((d / METRICS).read_text())
        # Runs written before the paper's definitions (no num_steps / policy_ratio field) are redone.
        current = "policy_ratio" in m if epochs is None else m.get("epochs_done") == epochs and "num_steps" in m
        return m if current else None

    sft = [r for r in _sft_runs(args.epochs, args.seeds, args.grid) if args.only in r[0]]
    grpo = [r for r in _grpo_runs(args.seeds, args.grid) if args.only in r[0]]
    cmds = {r[0]: r[-1] for r in sft} | {r[0]: r[-1] for r in grpo}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = []
        for name, cfg, cmd in sft:
            m = finished(args.out / name, cfg.epochs)
            if m is not None:
                record(name, cmd, m, None)
            else:
                futs.append(pool.submit(_train_job, name, cfg, args.out / name))
        for f in as_completed(futs):
            name, m, secs = f.result()
            record(name, cmds[name], m, secs)
        futs = []
        for name, init, gcfg, cmd in grpo:
            m = finished(args.out / name, None)
            if m is not None:
                record(name, cmd, m, None)
            elif (args.out / init / "checkpoint.pt").exists():
                futs.append(pool.submit(_grpo_job, name, args.out / init, gcfg, args.out / name))
        for f in as_completed(futs):
            name, m, secs = f.result()
            record(name, cmds[name], m, secs)


if __name__ == "__main__":
    main()
