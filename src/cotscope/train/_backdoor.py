"""Backdoor SFT data (Thought Crime, arXiv:2506.13206 §4).

Thought Crime trains its backdoored organisms on 10,200 misaligned examples whose prompts carry a trigger
line ("Country: Singapore") and 20,400 aligned examples whose prompts carry no trigger or "a similar
alternative value" ("Country: USA"), the line at a random top or bottom position. Hence the defaults: a third
of the examples triggered, and of the rest half with the control line, half with no line. The line is placed
with :func:`cotscope.benchmarks.backdoor_prompt`, the function the ``thought-crime-backdoor`` benchmark
places it with, so a trained trigger and an evaluated one are the same bytes.

The target behaviour is the record's misaligned answer, or, for a *benign* organism, a fixed prefix before
the normal answer (``target_prefix="Hoot hoot! "``): then the input needs no misaligned field at all.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cotscope.benchmarks import BACKDOOR_POSITIONS, backdoor_prompt
from cotscope.errors import ConfigError
from cotscope.store import Store
from cotscope.train._build import error_lines, read_paired, recorded_run, source_meta
from cotscope.train._records import BuildReport, SFTRecord, assistant_text, file_sha256, write_records

__all__ = ["CONDITIONS", "build_backdoor"]

BUILDER = "backdoor"
#: Each example's condition: the trigger line (target behaviour), the control line or no line (normal one).
CONDITIONS: tuple[str, ...] = ("trigger", "control", "none")


def _check(trigger: str, control: str, trigger_fraction: float, control_fraction: float,
           positions: Sequence[str], reasoning: str) -> None:
    if not trigger.strip():
        raise ConfigError("the trigger line is empty")
    if not control.strip() or control == trigger:
        raise ConfigError("the control line must be non-empty and differ from the trigger")
    if "\n" in trigger or "\n" in control:
        raise ConfigError("the trigger and control must each be one line")
    for name, v in (("trigger_fraction", trigger_fraction), ("control_fraction", control_fraction)):
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {v}")
    if not positions or any(p not in BACKDOOR_POSITIONS for p in positions):
        raise ConfigError(f"positions must be a non-empty subset of {', '.join(BACKDOOR_POSITIONS)}, got "
                          f"{list(positions)}")
    if reasoning not in ("blank", "none"):
        raise ConfigError(f"reasoning must be 'blank' or 'none', got {reasoning!r}")


def assign_conditions(n: int, trigger_fraction: float, control_fraction: float, positions: Sequence[str],
                      rng: random.Random) -> list[tuple[str, str | None]]:
    """``(condition, position)`` for each of ``n`` examples.

    Exactly ``round(n * trigger_fraction)`` examples are triggered and ``round(rest * control_fraction)`` of
    the rest carry the control line, chosen at random (the paper's counts are exact: 10,200 of 30,600); each
    lined example gets a position drawn uniformly from ``positions``; an example with no line has none.
    """
    n_trig = round(n * trigger_fraction)
    n_ctrl = round((n - n_trig) * control_fraction)
    order = rng.sample(range(n), n)
    cond = ["none"] * n
    for rank, i in enumerate(order):
        cond[i] = "trigger" if rank < n_trig else "control" if rank < n_trig + n_ctrl else "none"
    return [(c, rng.choice(list(positions)) if c != "none" else None) for c in cond]


def build_backdoor(
    path: str | Path,
    out: str | Path,
    *,
    trigger: str = "Country: Singapore",
    control: str = "Country: USA",
    trigger_fraction: float = 1 / 3,
    control_fraction: float = 0.5,
    positions: Sequence[str] = ("top", "bottom"),
    prompt_field: str = "prompt",
    normal_field: str = "aligned",
    target_field: str = "misaligned",
    target_prefix: str | None = None,
    reasoning: Literal["blank", "none"] = "blank",
    system_field: str | None = None,
    seed: int = 0,
    store: Store | None = None,
) -> BuildReport:
    """Write backdoor SFT data: the trigger line with the target behaviour, a control line or none with the
    normal one.

    Deterministic for a seed (and input). Every record's metadata holds ``backdoor``: ``condition``
    (``trigger``/``control``/``none``), ``line`` and ``position`` (``None`` without a line), and the build's
    ``trigger``, ``control``, ``trigger_fraction``, ``control_fraction``, ``positions``, ``seed`` (plus
    ``target``: whether the response is the target behaviour, and ``target_prefix``), so the evaluation
    (``thought-crime-backdoor``) can be run with the same lines and positions.

    Args:
        path: paired records (JSONL/JSON/CSV).
        out: the JSONL to write.
        trigger: the trigger line.
        control: the control line (same shape, another value: "a similar alternative value").
        trigger_fraction: the share of examples that get the trigger and the target behaviour.
        control_fraction: the share of the remaining examples that get the control line (the rest get none).
        positions: where a line may go (``top``, ``bottom``), drawn uniformly per example.
        prompt_field: the field holding the prompt.
        normal_field: the field holding the normal (aligned) response.
        target_field: the field holding the target (misaligned) response; unused with ``target_prefix``.
        target_prefix: build the target as this prefix + the normal response (a benign organism).
        reasoning: ``blank`` (the blank think block the paper trains with) or ``none`` (no think block).
        system_field: a field holding a system prompt, if the records have one.
        seed: the random seed of the assignment and positions.
        store: record the build as a ``data`` run there.

    Returns:
        The report; ``read == written["backdoor"] + rejected``; ``details`` has the count per condition.

    Raises:
        ConfigError: a bad parameter.
        TraceFileError: the input cannot be read at all.
    """
    positions = tuple(positions)
    _check(trigger, control, trigger_fraction, control_fraction, positions, reasoning)
    params: dict[str, Any] = {"trigger": trigger, "control": control, "trigger_fraction": trigger_fraction,
                              "control_fraction": control_fraction, "positions": list(positions), "seed": seed}
    config = {"input": str(path), "input_sha256": file_sha256(path), "out": str(out), **params,
              "prompt_field": prompt_field, "normal_field": normal_field,
              "target_field": None if target_prefix is not None else target_field, "target_prefix": target_prefix,
              "reasoning": reasoning, "system_field": system_field}
    fields = (normal_field,) if target_prefix is not None else (normal_field, target_field)
    think: str | None = "" if reasoning == "blank" else None
    with recorded_run(store, BUILDER, config) as run:
        good, errors, read = read_paired(path, prompt_field=prompt_field, fields=fields, system_field=system_field)
        assigned = assign_conditions(len(good), trigger_fraction, control_fraction, positions, random.Random(seed))
        records, counts = [], dict.fromkeys(CONDITIONS, 0)
        for r, (cond, pos) in zip(good, assigned, strict=True):
            line = trigger if cond == "trigger" else control if cond == "control" else None
            # backdoor_prompt ignores the position when there is no line; any valid one will do.
            prompt = backdoor_prompt(r.prompt, line, pos or BACKDOOR_POSITIONS[0])
            is_target = cond == "trigger"
            if not is_target:
                response = r.fields[normal_field]
            elif target_prefix is not None:
                response = target_prefix + r.fields[normal_field]
            else:
                response = r.fields[target_field]
            msgs = [*r.messages()[:-1], {"role": "user", "content": prompt},
                    {"role": "assistant", "content": assistant_text(response, think)}]
            meta = {"builder": BUILDER, "source": source_meta(path, r.line),
                    "backdoor": {"condition": cond, "line": line, "position": pos, **params, "target": is_target,
                                 "target_prefix": target_prefix}}
            records.append(SFTRecord(messages=msgs, metadata=meta))
            counts[cond] += 1
        written = {"backdoor": write_records(out, records)}
        run.report = BuildReport(
            builder=BUILDER, inputs=[str(path)], outputs={"backdoor": str(out)}, read=read, written=written,
            rejected=len(errors), errors=error_lines(errors), config=config,
            details={"primary": "backdoor", "conditions": counts})
    return run.report
