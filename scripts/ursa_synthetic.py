"""URSA's recipe end to end on synthetic arithmetic, on the CPU: problems -> sampled solutions -> step labels (BEL
and an exact oracle) -> a small PRM -> best-of-N on held-out problems against majority vote, random and oracle.

    python scripts/ursa_synthetic.py --out runs/ursa-synth              # the documented run (docs/verify.md)
    python scripts/ursa_synthetic.py --out /tmp/u --preset tiny         # a minute or two: what the slow test runs

Every stage runs in a fresh subprocess of this script, so that its wall time and peak resident memory are its own
(``stages/<name>.json``, with the load average before and after: other work on the machine shows there); the
whole run is summarised in ``report.json`` and ``report.md``. Stages are resumable: generation and annotation
skip what the stores hold and every model call goes through a request cache in the output folder, so a rerun of
a finished run costs seconds. ``--stage NAME`` runs one stage of an existing output folder.

Stages:
  synth       synthetic problems (seeded), split into train and held-out prompt files
  gen-train   K solutions per training problem (SmolLM2 by default; URSA format: Step k: lines, then †Answer:)
  gen-test    N solutions per held-out problem: the best-of-N pool
  oracle      exact step labels from the problems' intermediate values (no model call), train and held-out
  bel         binary error locating on (a subset of) the training solutions, with the same model; agreement
              with the oracle labels
  mie         misinterpretation insertion on the correct training solutions, with the same model as the
              rewriter: how many rewrites are usable (reported; the PRMs are not trained on them)
  train       small PRMs (MiniLM, BCE at the step tags): on the oracle labels of every training solution, on the
              BEL labels, and on the oracle labels of the same solutions BEL labelled
  score       each PRM scores the held-out pool; best-of-N at every N with bootstrap CIs; step AUROC against the
              held-out oracle labels
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("synth", "gen-train", "gen-test", "oracle", "bel", "mie", "train", "score")


@dataclass
class Config:
    """The settings of one run (``config.json`` in the output folder)."""

    model: str = "llamacpp/smollm2"
    model_args: dict[str, Any] = field(default_factory=lambda: {"n_threads": 2})
    strategy: str = "prefill:Step 1:"
    seed: int = 0
    n_train: int = 20
    n_test: int = 16
    ops: tuple[int, int] = (2, 2)
    kinds: tuple[str, ...] = ("add", "sub")
    small: bool = True
    shots: int = 2
    k_train: int = 8
    n_pool: int = 16
    temperature: float = 0.7
    max_tokens: int = 96
    bel_rollouts: int = 4
    bel_max_tokens: int = 64
    bel_limit: int | None = 64
    mie_max_tokens: int = 160
    base: str = "minilm"
    epochs: int = 4
    lr: float = 1e-4
    batch_size: int = 16
    ns: tuple[int, ...] = (1, 2, 4, 8, 16)
    rules: tuple[str, ...] = ("min", "mean", "last")
    resamples: int = 1000
    threads: int = 2


PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "tiny": {"n_train": 3, "n_test": 3, "k_train": 2, "n_pool": 2, "max_tokens": 64, "bel_rollouts": 2,
             "bel_max_tokens": 32, "bel_limit": None, "epochs": 1, "batch_size": 8, "ns": (1, 2), "resamples": 200},
}


def _load(out: Path) -> Config:
    d = json.loads((out / "config.json").read_text())
    d["ops"], d["kinds"], d["ns"], d["rules"] = tuple(d["ops"]), tuple(d["kinds"]), tuple(d["ns"]), tuple(d["rules"])
    return Config(**d)


def _cache(out: Path) -> Any:
    from cotscope.models import RequestCache

    return RequestCache(out / "requests.sqlite")


def _problems(out: Path) -> dict[str, Any]:
    from cotscope.verify._synth import read_problems

    return {p.id: p for p in read_problems(out / "problems.jsonl")}


# -- stages ---------------------------------------------------------------------------------------------------------
def stage_synth(cfg: Config, out: Path) -> dict[str, Any]:
    from cotscope.verify._synth import synth_problems, write_problems, write_prompts

    probs = synth_problems(cfg.n_train + cfg.n_test, seed=cfg.seed, ops=cfg.ops, small=cfg.small, kinds=cfg.kinds)
    train, test = probs[: cfg.n_train], probs[cfg.n_train :]
    write_problems(probs, out / "problems.jsonl")
    write_prompts(train, out / "prompts_train.jsonl", shots=cfg.shots, extra={"split": "train"})
    write_prompts(test, out / "prompts_test.jsonl", shots=cfg.shots, extra={"split": "test"})
    return {"train": len(train), "test": len(test), "example": {"question": test[0].question,
                                                                 "solution": test[0].solution}}


def _sample_stats(store: Any) -> dict[str, Any]:
    from cotscope.verify._answers import answers_match, extract_answer

    n = fmt = right = 0
    for t in store.traces():
        n += 1
        fmt += "†Answer:" in t.answer
        pred = extract_answer(t.answer)
        right += bool(pred) and answers_match(pred, str(t.metadata.get("gold")))
    return {"samples": n, "format_rate": fmt / n if n else None, "accuracy": right / n if n else None}


def stage_generate(cfg: Config, out: Path, split: str) -> dict[str, Any]:
    from cotscope.pipeline import Sampling, generate
    from cotscope.store import Store
    from cotscope.traces import read_prompts

    prompts, bad = read_prompts(out / f"prompts_{split}.jsonl")
    assert not bad, bad
    samples = cfg.k_train if split == "train" else cfg.n_pool
    with Store(out / f"{split}.duckdb") as st:
        stats = asyncio.run(generate(st, prompts, model=cfg.model, strategy=cfg.strategy, samples=samples,
                                     sampling=Sampling(temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                                       seed=cfg.seed),
                                     model_args=dict(cfg.model_args), cache=_cache(out),
                                     source_file=f"prompts_{split}.jsonl"))
        d = stats.to_dict()
        return {"generate": {k: d[k] for k in ("prompts", "samples", "requested", "skipped_existing", "new_traces",
                                                "errors", "seconds", "engine")},
                **_sample_stats(st)}


def _oracle_examples(out: Path, split: str) -> tuple[list[Any], dict[str, Any]]:
    from cotscope.pipeline._annotate import annotation_item
    from cotscope.store import Store
    from cotscope.verify._answers import answers_match, extract_answer
    from cotscope.verify._synth import oracle_step_labels
    from cotscope.verify._train import PRMExample

    probs = _problems(out)
    exs: list[Any] = []
    no_steps = 0
    with Store(out / f"{split}.duckdb", read_only=True) as st:
        for t in st.traces():
            p = probs[str(t.metadata["item_id"])]
            item = annotation_item(t, str(p.answer))
            if not item.steps:
                no_steps += 1
                continue
            pred = extract_answer(t.answer)
            ok = bool(pred) and answers_match(pred, str(p.answer))
            labels = oracle_step_labels(item.steps, p.values, start=p.start, answer_correct=ok)
            exs.append(PRMExample(question=item.question, steps=item.steps, answer=item.answer, labels=labels,
                                  source="oracle", id=t.id))
    steps = sum(len(e.labels) for e in exs)
    return exs, {"examples": len(exs), "no_steps": no_steps, "steps": steps,
                 "positive_rate": sum(sum(e.labels) for e in exs) / steps if steps else None,
                 "all_correct": sum(all(e.labels) for e in exs)}


def stage_oracle(cfg: Config, out: Path) -> dict[str, Any]:
    from cotscope.verify._train import write_examples

    res = {}
    for split in ("train", "test"):
        exs, info = _oracle_examples(out, split)
        write_examples(exs, out / f"examples_oracle_{split}.jsonl")
        res[split] = info
    return res


def stage_bel(cfg: Config, out: Path) -> dict[str, Any]:
    from cotscope.metrics import cohens_kappa
    from cotscope.pipeline._annotate import annotate, annotation_examples
    from cotscope.store import Store
    from cotscope.verify._train import read_examples, write_examples

    with Store(out / "train.duckdb") as st:
        # A fixed subset (ids are content hashes: an even spread over problems and samples), so a rerun labels
        # nothing new.
        ids = sorted(st.trace_ids())[: cfg.bel_limit] if cfg.bel_limit else None
        stats = asyncio.run(annotate(st, "bel", cfg.model, rollouts=cfg.bel_rollouts, temperature=cfg.temperature,
                                     max_tokens=cfg.bel_max_tokens, seed=cfg.seed, cache=_cache(out),
                                     model_args=dict(cfg.model_args), trace_ids=ids))
        exs, skipped = annotation_examples(st, "bel", config_hash=stats.config_hash)
    write_examples(exs, out / "examples_bel.jsonl")
    oracle = {e.id: e for e in read_examples(out / "examples_oracle_train.jsonl")}
    pairs = [(b, oracle[b.id]) for b in exs if b.id in oracle and len(oracle[b.id].labels) == len(b.labels)]
    flat_b = [x for b, _ in pairs for x in b.labels]
    flat_o = [x for _, o in pairs for x in o.labels]

    def first(labels: list[int]) -> int:
        return next((i for i, x in enumerate(labels) if not x), -1)

    same = sum(first(b.labels) == first(o.labels) for b, o in pairs)
    earlier = sum(first(b.labels) != -1 and (first(o.labels) == -1 or first(b.labels) < first(o.labels))
                  for b, o in pairs)
    try:
        kappa: float | None = cohens_kappa([bool(x) for x in flat_b], [bool(x) for x in flat_o])
    except Exception:  # one class only
        kappa = None
    agree = {
        "solutions": len(pairs), "steps": len(flat_b),
        "step_agreement": sum(a == b for a, b in zip(flat_b, flat_o, strict=True)) / len(flat_b) if flat_b else None,
        "cohens_kappa": kappa,
        "first_error_same": same / len(pairs) if pairs else None,
        "bel_first_error_earlier": earlier / len(pairs) if pairs else None,
        "bel_positive_rate": sum(flat_b) / len(flat_b) if flat_b else None,
        "oracle_positive_rate": sum(flat_o) / len(flat_o) if flat_o else None,
    }
    return {"annotate": stats.to_dict(), "examples": len(exs), "left_out": skipped, "agreement_with_oracle": agree}


def stage_mie(cfg: Config, out: Path) -> dict[str, Any]:
    from cotscope.pipeline._annotate import annotate, annotation_examples
    from cotscope.store import Store
    from cotscope.verify._train import write_examples

    with Store(out / "train.duckdb") as st:
        stats = asyncio.run(annotate(st, "mie", cfg.model, max_tokens=cfg.mie_max_tokens, seed=cfg.seed,
                                     cache=_cache(out), model_args=dict(cfg.model_args)))
        exs, _ = annotation_examples(st, "mie", config_hash=stats.config_hash)
        reasons: dict[str, int] = {}
        for r in st.results("ursa-mie"):
            if r["config_hash"] == stats.config_hash and r.get("parse_error"):
                why = str(r["parse_error"]).split(" at step")[0]
                reasons[why] = reasons.get(why, 0) + 1
    write_examples(exs, out / "examples_mie.jsonl")
    return {"annotate": stats.to_dict(), "usable": len(exs), "rejected": reasons}


def stage_train(cfg: Config, out: Path) -> dict[str, Any]:
    from cotscope.verify._train import read_examples, train_prm

    oracle = read_examples(out / "examples_oracle_train.jsonl")
    bel = read_examples(out / "examples_bel.jsonl")
    bel_ids = {e.id for e in bel}
    held = read_examples(out / "examples_oracle_test.jsonl")
    variants = {"prm-oracle": oracle, "prm-bel": bel, "prm-oracle-same": [e for e in oracle if e.id in bel_ids]}
    res = {}
    for name, exs in variants.items():
        if not exs:
            res[name] = {"skipped": "no examples"}
            continue
        t0 = time.perf_counter()
        stats = train_prm(exs, out / name, base=cfg.base, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                          seed=cfg.seed, eval_examples=held, threads=cfg.threads)
        res[name] = stats.to_dict() | {"wall_s": round(time.perf_counter() - t0, 2)}
    return res


def stage_score(cfg: Config, out: Path) -> dict[str, Any]:
    import torch

    from cotscope.pipeline import evaluate
    from cotscope.pipeline._verify import as_prm_evaluator, best_of_n_from_store
    from cotscope.store import Store
    from cotscope.verify._prm import get_prm
    from cotscope.verify._train import evaluate_prm_examples, read_examples

    torch.set_num_threads(cfg.threads)
    held = {e.id: e for e in read_examples(out / "examples_oracle_test.jsonl")}
    res: dict[str, Any] = {}
    baselines_done = False
    with Store(out / "test.duckdb") as st:
        for name in ("prm-oracle", "prm-bel", "prm-oracle-same"):
            if not (out / name / "config.json").is_file():
                continue
            ev = as_prm_evaluator(get_prm(str(out / name)))
            t0 = time.perf_counter()
            es = asyncio.run(evaluate(st, ev, close=True))
            scored_s = time.perf_counter() - t0
            rep = best_of_n_from_store(st, ev, ns=cfg.ns, rules=cfg.rules,  # type: ignore[arg-type]
                                       baselines=() if baselines_done else ("majority", "random", "oracle"),
                                       resamples=cfg.resamples, seed=cfg.seed)
            baselines_done = True
            scores, labels = [], []
            for r in st.results(ev.name):
                if r["config_hash"] != ev.config_hash or r.get("parse_error"):
                    continue
                ss = (r.get("details") or {}).get("step_scores")
                ex = held.get(r["trace_id"])
                if ex is not None and isinstance(ss, list) and len(ss) == len(ex.labels):
                    scores.append(ss)
                    labels.append(ex.labels)
            res[name] = {"score": {"stored": es.stored, "skipped": es.skipped, "parse_errors": es.parse_errors,
                                   "seconds": round(scored_s, 2)},
                         "pool": {"problems": rep.groups, "samples": rep.samples, "no_answer": rep.no_answer,
                                  "short": rep.short, "errors": rep.errors},
                         "rows": [asdict(r) for r in rep.rows],
                         "heldout_steps": evaluate_prm_examples(scores, labels)}
    return res


def _run_stage(name: str, cfg: Config, out: Path) -> dict[str, Any]:
    if name == "synth":
        return stage_synth(cfg, out)
    if name in ("gen-train", "gen-test"):
        return stage_generate(cfg, out, name.split("-")[1])
    stage = {"oracle": stage_oracle, "bel": stage_bel, "mie": stage_mie, "train": stage_train, "score": stage_score}
    return stage[name](cfg, out)


def _child(name: str, out: Path) -> None:
    cfg = _load(out)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    result = _run_stage(name, cfg, out)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rec = {"stage": name, "wall_s": round(wall, 2), "peak_rss_mb": round(rss, 1),
           "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
           "result": result}
    (out / "stages").mkdir(exist_ok=True)
    (out / "stages" / f"{name}.json").write_text(json.dumps(rec, indent=2, default=str) + "\n")


# -- the report -----------------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def report(out: Path) -> dict[str, Any]:
    """Gather the stages' records into ``report.json`` and a markdown ``report.md``."""
    cfg = _load(out)
    stages = {}
    for s in STAGES:
        f = out / "stages" / f"{s}.json"
        if f.is_file():
            stages[s] = json.loads(f.read_text())
    lines = [f"# URSA synthetic run ({out})", "",
             f"model {cfg.model} {cfg.model_args}, strategy {cfg.strategy!r}, T={cfg.temperature}; "
             f"{cfg.n_train} train problems x {cfg.k_train}, {cfg.n_test} held-out x {cfg.n_pool}; ops {cfg.ops}, "
             f"kinds {','.join(cfg.kinds)}, small={cfg.small}; BEL {cfg.bel_rollouts} rollouts on "
             f"{cfg.bel_limit or 'all'} solutions; PRM base {cfg.base}, {cfg.epochs} epochs", ""]
    lines += ["| stage | wall s | peak RSS MiB | load avg before -> after |", "|---|---:|---:|---|"]
    for s, r in stages.items():
        lines.append(f"| {s} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['loadavg_before'][0]} -> "
                     f"{r['loadavg_after'][0]} |")
    total = sum(r["wall_s"] for r in stages.values())
    lines += [f"| total | {total:.1f} | {max((r['peak_rss_mb'] for r in stages.values()), default=0):.0f} | |", ""]
    for split in ("train", "test"):
        g = stages.get(f"gen-{split}", {}).get("result")
        if g:
            lines.append(f"- {split} samples: {g['samples']}, format (†Answer:) {_pct(g['format_rate'])}%, "
                         f"accuracy per sample {_pct(g['accuracy'])}%")
    bel = stages.get("bel", {}).get("result")
    if bel:
        a, agr = bel["annotate"], bel["agreement_with_oracle"]
        lines.append(f"- BEL: {a['labelled']} labelled ({a['all_correct']} right answers, no call), "
                     f"{a['calls']} completions ({a['cached']} cached), first errors {a['first_errors']}; "
                     f"vs oracle: step agreement {_pct(agr['step_agreement'])}%, kappa "
                     f"{'-' if agr['cohens_kappa'] is None else round(agr['cohens_kappa'], 3)}, same first error "
                     f"{_pct(agr['first_error_same'])}%, BEL's first error earlier "
                     f"{_pct(agr['bel_first_error_earlier'])}%, positive rate BEL "
                     f"{_pct(agr['bel_positive_rate'])}% vs oracle "
                     f"{_pct(agr['oracle_positive_rate'])}%")
    mie = stages.get("mie", {}).get("result")
    if mie:
        a = mie["annotate"]
        lines.append(f"- MIE with the same model as rewriter: {a['total']} correct solutions, {mie['usable']} usable "
                     f"rewrites, rejected: {mie['rejected'] or 'none'}")
    tr = stages.get("train", {}).get("result", {})
    for name, t in tr.items():
        if "epoch_losses" in t:
            m = t.get("metrics") or {}
            auc = m.get("step_auroc")
            lines.append(f"- {name}: {t['used']} examples ({t['steps_labelled']} steps, {t['positives']} positive), "
                         f"loss {t['first_loss']:.3f} -> {t['epoch_losses'][-1]:.3f}, held-out step AUROC vs oracle "
                         f"{'-' if auc is None else round(auc, 3)}, first-error accuracy "
                         f"{_pct(m.get('first_error_accuracy'))}%")
    sc = stages.get("score", {}).get("result", {})
    if sc:
        rows = [r for v in sc.values() for r in v["rows"]]
        prm_names = list(sc)
        methods: list[str] = []
        cells: dict[tuple[int, str], str] = {}
        for name, v in sc.items():
            for r in v["rows"]:
                m = r["method"] if not r["method"].startswith("prm:") else f"{name} {r['method'][4:]}"
                if m not in methods:
                    methods.append(m)
                cells[(r["n"], m)] = (f"{_pct(r['accuracy'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"
                                      if r["ci_low"] is not None else _pct(r["accuracy"]))
        pool = sc[prm_names[0]]["pool"]
        lines += ["", f"Best-of-N on {pool['problems']} held-out problems x {cfg.n_pool} samples (accuracy %, 95% "
                      "bootstrap CI over problems):", "",
                  "| method | " + " | ".join(f"N={n}" for n in cfg.ns) + " |", "|---|" + "---:|" * len(cfg.ns)]
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(cells.get((n, m), "-") for n in cfg.ns) + " |")
        lines.append("")
        for name, v in sc.items():
            h = v["heldout_steps"]
            lines.append(f"- {name} on the held-out pool: step AUROC vs oracle labels "
                         f"{'-' if h['step_auroc'] is None else round(h['step_auroc'], 3)} over {h['steps']} steps, "
                         f"first-error accuracy {_pct(h['first_error_accuracy'])}%")
        del rows
    rep = {"config": asdict(cfg), "stages": stages, "total_wall_s": round(total, 1)}
    (out / "report.json").write_text(json.dumps(rep, indent=2, default=str) + "\n")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (stores, PRMs, report)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="full")
    ap.add_argument("--stage", choices=STAGES, help="run one stage of an existing output folder")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help="provider/model of the policy (default llamacpp/smollm2)")
    ap.add_argument("--model-arg", "-M", action="append", default=[], help="backend option k=v")
    ap.add_argument("--set", action="append", default=[], help="override a setting: key=value (JSON value)")
    args = ap.parse_args(argv)
    out: Path = args.out
    if args.child:
        _child(args.stage, out)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").is_file() or args.set or args.model or args.model_arg or args.preset != "full":
        d = asdict(Config()) | PRESETS[args.preset]
        if (out / "config.json").is_file() and args.preset == "full":
            d = json.loads((out / "config.json").read_text())
        if args.model:
            d["model"] = args.model
        if args.model_arg:
            from cotscope._options import parse_kv

            d["model_args"] = parse_kv(args.model_arg, "-M")
        for kv in args.set:
            k, _, v = kv.partition("=")
            if k not in d:
                ap.error(f"unknown setting {k!r}")
            d[k] = json.loads(v)
        (out / "config.json").write_text(json.dumps(d, indent=2) + "\n")
    stages = [args.stage] if args.stage else list(STAGES)
    for s in stages:
        t0 = time.perf_counter()
        print(f"[ursa-synthetic] {s} ...", file=sys.stderr, flush=True)
        p = subprocess.run([sys.executable, __file__, "--out", str(out), "--stage", s, "--child"], check=False)
        if p.returncode != 0:
            print(f"[ursa-synthetic] stage {s} failed (exit {p.returncode})", file=sys.stderr)
            return p.returncode
        print(f"[ursa-synthetic] {s} done in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    report(out)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
