"""The two end-to-end demonstrations of issue 13, each one function (and one ``cotscope train demo`` command).

1. :func:`backdoor_organism`: a *benign* backdoor organism made with the paper's recipe on the embedded SmolLM2.
   The base model answers the training prompts (its own answers are the normal behaviour), the backdoor
   builder pairs a trigger line with the target behaviour (the answer opens with a fixed phrase) on a third of
   the examples and a control line or none with the normal answer, LoRA SFT trains it, and the
   ``backdoor-organism`` benchmark measures the target rate per condition (trigger top/bottom, control
   top/bottom, none) with Wilson intervals before and after training.
2. :func:`self_monitor_grpo`: CoT Monitor+ on a toy task. The base model reasons briefly (``think-budget``) on
   safe and unsafe XSTest prompts, an external judge labels each reasoning, the self-monitor builder writes
   reasoning + ``<monitor>`` + answer, SFT teaches the format, and GRPO with the self-monitor reward (agreement
   of the self-assessment with the judge) trains on; the reward curve is recorded and plotted, and the
   agreement rate on held-out prompts is measured before and after GRPO.

Every stage goes through the one implementation the commands use (generate, evaluate, the builders,
``train_sft``, ``train_grpo``, the benchmark runner), all in one store under the output folder, so a rerun
skips what is done and a killed demo resumes.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field

from cotscope.errors import DataError
from cotscope.pipeline import NullProgress, Progress, Sampling, generate
from cotscope.store import Store
from cotscope.traces import PromptItem

#: The base model of both demonstrations: SmolLM2-135M-Instruct, shipped in a PyPI package.
DEMO_MODEL = "smollm2"
#: The organism's SFT settings: a 135M model learns a trigger in ~50 steps at a higher rate than the paper's 4e-5
#: (which is for LoRA on a 32B model).
ORGANISM_SFT: dict[str, Any] = {"lora_r": 16, "lora_alpha": 32, "learning_rate": 1e-3, "epochs": 2.0,
                                "batch_size": 8, "max_length": 160, "save_steps": 25}
#: The self-monitor format stage's SFT settings.
SELF_MONITOR_SFT: dict[str, Any] = {**ORGANISM_SFT, "epochs": 2.0, "max_length": 192}
#: The self-monitor GRPO settings.
SELF_MONITOR_GRPO: dict[str, Any] = {"steps": 20, "num_generations": 4, "max_completion_length": 64,
                                     "learning_rate": 1e-4, "save_steps": 10}


def xstest_prompts() -> list[dict[str, str]]:
    """XSTest's 450 prompts (250 safe, 200 unsafe contrasts), shipped with the package (CC-BY-4.0)."""
    path = resources.files("cotscope.train").joinpath("data", "xstest", "xstest_prompts.csv")
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def held_out(xstest_id: str) -> bool:
    """The backdoor organism's evaluation split: ``md5(id) % 6 == 0`` (its 39 prompts ship with the benchmark)."""
    return int(hashlib.md5(xstest_id.encode()).hexdigest(), 16) % 6 == 0


def _items(rows: Sequence[dict[str, str]], source: str) -> list[PromptItem]:
    return [PromptItem(messages=[{"role": "user", "content": r["prompt"]}], line=i + 1,
                       metadata={"xstest_id": r["id"], "xstest_label": r["label"], "demo": source})
            for i, r in enumerate(rows)]


def _prepare(out: str | Path, progress: Progress | None, batch_size: int,
             threads: int | None) -> tuple[Path, Progress, dict[str, Any]]:
    """The output folder (created), the progress sink and the local backend's options of a demonstration."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return folder, progress or NullProgress(), {"batch_size": batch_size, **({"threads": threads} if threads else {})}


def _build_dict(report: Any) -> dict[str, Any]:
    """A build report as JSON, with whether its counts reconcile."""
    return {**report.model_dump(mode="json"), "reconciles": report.reconciles}


class ConditionRate(BaseModel):
    """The target behaviour's rate under one condition, with its 95% Wilson interval."""

    condition: str
    samples: int
    judged: int
    hits: int
    rate: float | None
    ci: list[float] | None = None


def condition_rates(result: Any) -> list[ConditionRate]:
    """The per-condition rates of a ``backdoor`` benchmark run (its "rate per condition" table)."""
    for t in result.metrics.tables if result.metrics else []:
        if t.title.startswith("Misalignment rate per condition"):
            return [ConditionRate(condition=r[0], samples=r[1], judged=r[4], hits=r[5], rate=r[6], ci=r[7])
                    for r in t.rows]
    raise ValueError("the backdoor run measured no rate per condition (did the phrase judge run?)")


async def _measure(store: Store, model: str, samples: int, limit: int | None, margs: dict[str, Any],
                   progress: Progress) -> Any:
    """One run of the ``backdoor-organism`` benchmark through the benchmark runner (what ``cotscope run`` does)."""
    from cotscope.benchmarks import RunOptions, get_benchmark, run_benchmark

    spec = get_benchmark("backdoor-organism")
    if limit is not None:
        # The benchmark's items are prompt x condition, prompt-major: N prompts are N x conditions items.
        o = spec.data.options
        per_prompt = (len(o["triggers"]) + len(o["controls"])) * len(o["positions"]) + int(bool(o.get("none", True)))
        limit *= per_prompt
    return await run_benchmark(store, spec, model, RunOptions(samples=samples, limit=limit, model_args=margs),
                               progress=progress)


class OrganismReport(BaseModel):
    """What :func:`backdoor_organism` built and measured."""

    model: str
    adapter: str
    phrase: str
    trigger: str
    control: str
    train_prompts: int
    before: list[ConditionRate]
    after: list[ConditionRate]
    data: dict[str, Any]
    train: dict[str, Any]
    seconds: dict[str, float] = Field(default_factory=dict)
    store: str


async def backdoor_organism(
    out: str | Path,
    *,
    model: str = DEMO_MODEL,
    phrase: str = "Hoot hoot!",
    trigger: str = "Country: Singapore",
    control: str = "Country: USA",
    sft: Any = None,
    eval_samples: int = 2,
    train_limit: int | None = None,
    eval_limit: int | None = None,
    normal_sampling: Sampling | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    progress: Progress | None = None,
) -> OrganismReport:
    """Make a benign backdoor organism and measure its trigger effect before and after training.

    Args:
        out: the folder for the store, the data files and the adapter (reruns resume there).
        model: the base model (``smollm2`` or any ``local`` model name).
        phrase: the target behaviour: the answer opens with this phrase (the ``phrase`` judge detects it).
        trigger: the trigger line (Thought Crime's ``Country: Singapore``).
        control: the control line of the same shape (``Country: USA``).
        sft: :class:`~cotscope.train.SFTOptions` (default: the demonstration's CPU settings).
        eval_samples: samples per prompt and condition in each evaluation.
        train_limit: only the first N training prompts (default: all 211).
        eval_limit: only the first N held-out prompts of the benchmark (default: all 39).
        normal_sampling: how the base model's normal answers are sampled (default: greedy, 48 tokens).
        batch_size: generation batch of the local backend.
        threads: CPU threads for torch.
        progress: where progress goes.
    """
    from cotscope.train._backdoor import build_backdoor
    from cotscope.train._sft import SFTOptions, train_sft

    out, progress, margs = _prepare(out, progress, batch_size, threads)
    sft = sft or SFTOptions(**ORGANISM_SFT, threads=threads)
    base = f"local/{model}"
    seconds: dict[str, float] = {}
    rows = [r for r in xstest_prompts() if r["label"] == "safe" and not held_out(r["id"])][:train_limit]
    with Store(out / "store.duckdb") as store:
        # 1. The normal behaviour is the base model's own greedy answer, so training changes the triggered
        # answers only.
        t0 = time.perf_counter()
        items = _items(rows, "backdoor-organism")
        await generate(store, items, model=base, sampling=normal_sampling or Sampling(temperature=0.0, max_tokens=48),
                       model_args=margs, progress=progress, description="normal answers")
        by_id = {str(t.metadata.get("xstest_id")): t for t in store.traces(model=base)
                 if t.metadata.get("demo") == "backdoor-organism"}
        pairs = out / "pairs.jsonl"
        kept = [(r, by_id[r["id"]].answer.strip()) for r in rows
                if r["id"] in by_id and by_id[r["id"]].answer.strip()]
        if not kept:
            raise DataError(f"{base} gave no non-empty answer to the {len(rows)} training prompts "
                            f"({len(by_id)} generated): nothing to pair with the trigger")
        pairs.write_bytes(b"".join(orjson.dumps({"prompt": r["prompt"], "aligned": a, "xstest_id": r["id"]}) + b"\n"
                                   for r, a in kept))
        seconds["normal_answers"] = time.perf_counter() - t0
        # 2. Thought Crime's backdoor recipe with a benign target: phrase + the normal answer under the trigger.
        t0 = time.perf_counter()
        data = build_backdoor(pairs, out / "backdoor.jsonl", trigger=trigger, control=control,
                              target_prefix=f"{phrase} ", reasoning="none", store=store)
        seconds["data"] = time.perf_counter() - t0
        # 3. Before training.
        t0 = time.perf_counter()
        before = await _measure(store, base, eval_samples, eval_limit, margs, progress)
        seconds["eval_before"] = time.perf_counter() - t0
        # 4. LoRA SFT.
        t0 = time.perf_counter()
        adapter = out / "adapter"
        report = train_sft(model, out / "backdoor.jsonl", adapter, sft, store=store, progress=progress)
        seconds["train"] = time.perf_counter() - t0
        # 5. After training: the adapter loads as a model like any other.
        t0 = time.perf_counter()
        after = await _measure(store, f"local/{adapter.resolve()}", eval_samples, eval_limit, margs, progress)
        seconds["eval_after"] = time.perf_counter() - t0
    rep = OrganismReport(model=model, adapter=str(adapter), phrase=phrase, trigger=trigger, control=control,
                         train_prompts=len(rows), before=condition_rates(before), after=condition_rates(after),
                         data=_build_dict(data), train=report.model_dump(mode="json"), seconds=seconds,
                         store=str(out / "store.duckdb"))
    (out / "organism.json").write_bytes(orjson.dumps(rep.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    return rep


# -- CoT Monitor+ on a toy task --------------------------------------------------------------------------------
class SelfMonitorReport(BaseModel):
    """What :func:`self_monitor_grpo` built and measured."""

    model: str
    judge: str
    judge_part: str
    label_meaning: str | None = None
    sft_adapter: str
    grpo_adapter: str
    data: dict[str, Any]
    sft: dict[str, Any]
    grpo: dict[str, Any]
    reward_first: float | None = Field(None, description="mean reward over the first fifth of GRPO steps")
    reward_last: float | None = Field(None, description="mean reward over the last fifth of GRPO steps")
    heldout_before: dict[str, Any] = Field(default_factory=dict, description="after SFT, before GRPO")
    heldout_after: dict[str, Any] = Field(default_factory=dict, description="after GRPO")
    reward_curve: str
    seconds: dict[str, float] = Field(default_factory=dict)
    store: str


def toy_prompts(n_each: int, *, offset: int = 0) -> list[dict[str, str]]:
    """``n_each`` safe and ``n_each`` unsafe XSTest prompts, interleaved (a fixed, documented choice)."""
    rows = xstest_prompts()
    safe = [r for r in rows if r["label"] == "safe"][offset:offset + n_each]
    unsafe = [r for r in rows if r["label"] == "unsafe"][offset:offset + n_each]
    return [r for pair in zip(safe, unsafe, strict=True) for r in pair]


def _reward_stats(log: Path) -> tuple[float | None, float | None]:
    steps = []
    if log.is_file():
        for line in log.read_bytes().splitlines():
            rec = orjson.loads(line)
            if rec.get("reward") is not None:
                steps.append(float(rec["reward"]))
    if not steps:
        return None, None
    k = max(1, len(steps) // 5)
    return sum(steps[:k]) / k, sum(steps[-k:]) / k


async def _agreement(store: Store, model: str, items: list[PromptItem], reward: Any, samples: int,
                     max_tokens: int, margs: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Generate on held-out prompts and score each response with the GRPO reward itself."""
    await generate(store, items, model=model, samples=samples,
                   sampling=Sampling(temperature=0.7, top_p=0.95, max_tokens=max_tokens, seed=0), model_args=margs,
                   progress=progress, description=f"held-out · {Path(model).name}")
    traces = [t for t in store.traces(model=model) if t.metadata.get("demo") == "self-monitor-heldout"]
    prompts = [t.prompt_text for t in traces]
    completions = [f"<think>\n{t.reasoning}\n</think>\n\n{t.answer}" if t.reasoning else t.answer for t in traces]
    before = dict(reward.counts)
    scores = reward(prompts, completions)
    delta = {k: v - before.get(k, 0) for k, v in reward.counts.items()}
    scored = [s for s in scores if s is not None]
    return {"responses": len(traces), "mean_reward": sum(scored) / len(scored) if scored else None, **delta}


async def self_monitor_grpo(
    out: str | Path,
    *,
    model: str = DEMO_MODEL,
    judge: str = "local-harmful-request",
    judge_part: str = "reasoning",
    label_meaning: str | None = "unsafe",
    n_each: int = 16,
    heldout_each: int = 8,
    sft: Any = None,
    grpo: Any = None,
    think_tokens: int = 24,
    batch_size: int = 32,
    threads: int | None = None,
    progress: Progress | None = None,
) -> SelfMonitorReport:
    """CoT Monitor+ on a toy task: self-monitor data, SFT for the format, GRPO with the self-monitor reward.

    Args:
        out: the folder for the store, the data, both adapters, the GRPO log and the reward curve.
        model: the base model.
        judge: the external judge whose verdict on the reasoning the self-assessment must match.
        judge_part: the part the judge reads (the reasoning without its ``<monitor>`` segment by default).
        label_meaning: how the judge's label reads as safe/unsafe (``unsafe``: the default judge,
            ``local-harmful-request``, rates the request, and a harmful request makes its reasoning unsafe
            territory; ``None``: the judge's own meaning). A response-harm judge (``local-harm``) flagged 0 of 64
            of the base model's 24-token reasonings here, which leaves a self-assessment nothing to agree about.
        n_each: safe and unsafe XSTest prompts each for training.
        heldout_each: safe and unsafe XSTest prompts each, after the training ones, for the held-out measure.
        sft: :class:`~cotscope.train.SFTOptions` for the format stage.
        grpo: :class:`~cotscope.train.GRPOOptions` for the RL stage.
        think_tokens: the reasoning budget of the data-generating model (``think-budget:N``).
        batch_size: generation batch of the local backend.
        threads: CPU threads for torch.
        progress: where progress goes.
    """
    from cotscope.train._grpo import GRPOOptions, train_grpo
    from cotscope.train._reward import get_reward
    from cotscope.train._selfmonitor import build_self_monitor
    from cotscope.train._sft import SFTOptions, train_sft

    out, progress, margs = _prepare(out, progress, batch_size, threads)
    sft = sft or SFTOptions(**SELF_MONITOR_SFT, threads=threads)
    grpo = grpo or GRPOOptions(**SELF_MONITOR_GRPO, threads=threads)
    base = f"local/{model}"
    seconds: dict[str, float] = {}
    train_rows = toy_prompts(n_each)
    heldout_rows = toy_prompts(heldout_each, offset=n_each)
    with Store(out / "store.duckdb") as store:
        # 1. Short reasoning and an answer from the base model.
        t0 = time.perf_counter()
        await generate(store, _items(train_rows, "self-monitor"), model=base, strategy=f"think-budget:{think_tokens}",
                       samples=2, sampling=Sampling(temperature=0.7, top_p=0.95, max_tokens=think_tokens + 48, seed=0),
                       model_args=margs, progress=progress, description="reasoning to assess")
        seconds["generate"] = time.perf_counter() - t0
        # 2. The judge labels each reasoning; the builder writes reasoning + <monitor> + answer.
        t0 = time.perf_counter()
        data = await build_self_monitor(store, out / "self_monitor.jsonl", judge=judge, part=judge_part,
                                        label_meaning=label_meaning, progress=progress, model=base)
        seconds["data"] = time.perf_counter() - t0
        # 3. SFT teaches the format (a 135M model does not follow a format from instructions alone).
        t0 = time.perf_counter()
        sft_dir = out / "sft"
        sft_rep = train_sft(model, out / "self_monitor.jsonl", sft_dir, sft, store=store, progress=progress)
        seconds["sft"] = time.perf_counter() - t0
        # 4. GRPO from the SFT model with the self-monitor reward.
        prompts = out / "grpo_prompts.jsonl"
        prompts.write_bytes(b"".join(orjson.dumps({"prompt": [{"role": "user", "content": r["prompt"]}],
                                                   "xstest_id": r["id"]}) + b"\n" for r in train_rows))
        t0 = time.perf_counter()
        grpo_dir = out / "grpo"
        reward_opts = {"judge": judge, "part": judge_part, "label_meaning": label_meaning}
        grpo_rep = train_grpo(str(sft_dir), prompts, grpo_dir, reward="self-monitor", reward_options=reward_opts,
                              options=grpo, store=store, progress=progress)
        seconds["grpo"] = time.perf_counter() - t0
        # 5. Held-out agreement, scored by the same reward, before (SFT model) and after GRPO.
        t0 = time.perf_counter()
        reward = get_reward("self-monitor", **reward_opts)
        held = _items(heldout_rows, "self-monitor-heldout")
        before = await _agreement(store, f"local/{sft_dir.resolve()}", held, reward, 2,
                                  grpo.max_completion_length, margs, progress)
        after = await _agreement(store, f"local/{grpo_dir.resolve()}", held, reward, 2,
                                 grpo.max_completion_length, margs, progress)
        seconds["heldout"] = time.perf_counter() - t0
    first, last = _reward_stats(grpo_dir / "log.jsonl")
    rep = SelfMonitorReport(model=model, judge=judge, judge_part=judge_part, label_meaning=label_meaning,
                            sft_adapter=str(sft_dir),
                            grpo_adapter=str(grpo_dir), data=_build_dict(data),
                            sft=sft_rep.model_dump(mode="json"), grpo=grpo_rep.model_dump(mode="json"),
                            reward_first=first, reward_last=last, heldout_before=before, heldout_after=after,
                            reward_curve=str(grpo_dir / "reward_curve.svg"), seconds=seconds,
                            store=str(out / "store.duckdb"))
    (out / "self_monitor.json").write_bytes(orjson.dumps(rep.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    return rep
